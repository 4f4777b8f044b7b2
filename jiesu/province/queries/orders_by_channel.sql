-- The month's requests by channel (电话, 网站, 微信 …) in each city, with the share of each and
-- how many were urgent. Variables: root, month.
WITH orders AS (
    SELECT city, channel, urgent
    FROM read_parquet(getvariable('root') || '/orders/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false)
    WHERE month = getvariable('month')
),
counted AS (
    SELECT city, channel, count(*) AS orders, count(*) FILTER (WHERE urgent) AS urgent
    FROM orders
    GROUP BY city, channel
),
totals AS (
    SELECT city, sum(orders) AS total FROM counted GROUP BY city
)
SELECT counted.city,
       counted.channel,
       counted.orders,
       round(100.0 * counted.orders / totals.total, 2) AS share_pct,
       counted.urgent
FROM counted
JOIN totals USING (city)
ORDER BY counted.city, counted.orders DESC, counted.channel;
