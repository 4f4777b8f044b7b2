-- The streets (街道/乡镇) with the lowest 解决率 (evaluated solved / evaluated) this month, across
-- every city, among those with at least 5 evaluations: the same counters jiesu sums (the facts
-- that count: `counted` = 1, not returned, escalated away or exempted).
-- Variables: root, month.
WITH facts AS (
    SELECT *
    FROM read_parquet(getvariable('root') || '/facts/**/*.parquet',
                      hive_partitioning = true, hive_types_autocast = false)
    WHERE month = getvariable('month') AND unit_kind = 'street'
)
SELECT city,
       district_code,
       unit_code,
       unit_name,
       sum(solved) AS solved,
       sum(evaluated) AS evaluated,
       sum(solved) / sum(evaluated) AS resolution
FROM facts
GROUP BY ALL
HAVING sum(evaluated) >= 5
ORDER BY resolution, evaluated DESC, city, unit_code
LIMIT 20;
