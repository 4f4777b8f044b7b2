"""province: analysis across cities on the Parquet that `jiesu export parquet` writes
(docs/province.md). `spark_job.py` is the province's PySpark job (it imports nothing from jiesu:
it runs on a cluster with only PySpark); `queries/*.sql` are DuckDB questions over the same files."""
