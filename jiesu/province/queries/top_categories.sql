-- The month's top five top-level categories (一级分类) of requests in each city.
-- Variables: root (the export's directory), month (YYYY-MM).
--   SET VARIABLE root = '/data/province'; SET VARIABLE month = '2026-11';
WITH orders AS (
    SELECT *
    FROM read_parquet(getvariable('root') || '/orders/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false)
    WHERE month = getvariable('month')
),
categories AS (
    SELECT *
    FROM read_parquet(getvariable('root') || '/categories/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false)
),
counted AS (
    SELECT o.city,
           coalesce(c.top_code, '(none)') AS top_code,
           count(*) AS orders
    FROM orders AS o
    LEFT JOIN categories AS c ON c.city = o.city AND c.code = o.category_code
    GROUP BY ALL
)
SELECT counted.city,
       rank() OVER (PARTITION BY counted.city ORDER BY orders DESC) AS place,
       counted.top_code,
       top.name AS top_name,
       orders,
       round(100.0 * orders / sum(orders) OVER (PARTITION BY counted.city), 2) AS share_pct
FROM counted
LEFT JOIN categories AS top ON top.city = counted.city AND top.code = counted.top_code
QUALIFY place <= 5
ORDER BY counted.city, place, counted.top_code;
