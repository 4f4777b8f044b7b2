-- Each city's requests, 解决率 and 满意率 this month against the month before (环比).
-- 满意率 uses each city's own satisfaction scores of the month (the rules table), as jiesu does.
-- Variables: root, month.
WITH months AS (
    SELECT getvariable('month') AS month,
           strftime(CAST(getvariable('month') || '-01' AS DATE) - INTERVAL 1 MONTH, '%Y-%m')
               AS before
),
orders AS (
    SELECT city, month, count(*) AS orders
    FROM read_parquet(getvariable('root') || '/orders/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false)
    WHERE month IN (SELECT month FROM months UNION ALL SELECT before FROM months)
    GROUP BY ALL
),
rules AS (
    SELECT city, month, CAST(satisfaction_scores AS JSON) AS scores
    FROM read_parquet(getvariable('root') || '/rules/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false)
),
facts AS (
    SELECT f.city, f.month,
           sum(f.solved) AS solved,
           sum(f.evaluated) AS evaluated,
           sum(f.level_very_satisfied * coalesce(CAST(r.scores->>'very_satisfied' AS DOUBLE), 1.0)
               + f.level_satisfied * coalesce(CAST(r.scores->>'satisfied' AS DOUBLE), 1.0)
               + f.level_basically_satisfied
                 * coalesce(CAST(r.scores->>'basically_satisfied' AS DOUBLE), 0.8)
               + f.level_dissatisfied * coalesce(CAST(r.scores->>'dissatisfied' AS DOUBLE), 0.0)
               + f.level_very_dissatisfied
                 * coalesce(CAST(r.scores->>'very_dissatisfied' AS DOUBLE), 0.0)) AS points
    FROM read_parquet(getvariable('root') || '/facts/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false) AS f
    LEFT JOIN rules AS r USING (city, month)
    WHERE f.month IN (SELECT month FROM months UNION ALL SELECT before FROM months)
      AND NOT f.is_centre
    GROUP BY ALL
),
per_month AS (
    SELECT o.city, o.month, o.orders,
           f.solved / nullif(f.evaluated, 0) AS resolution,
           f.points / nullif(f.evaluated, 0) AS satisfaction
    FROM orders AS o
    LEFT JOIN facts AS f USING (city, month)
)
SELECT now.city,
       now.orders,
       before.orders AS orders_before,
       round(100.0 * (now.orders - before.orders) / nullif(before.orders, 0), 2) AS orders_change_pct,
       now.resolution,
       now.resolution - before.resolution AS resolution_change,
       now.satisfaction,
       now.satisfaction - before.satisfaction AS satisfaction_change
FROM per_month AS now
LEFT JOIN per_month AS before
    ON before.city = now.city AND before.month = (SELECT before FROM months)
WHERE now.month = (SELECT month FROM months)
ORDER BY now.city;
