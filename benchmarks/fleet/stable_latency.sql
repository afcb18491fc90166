-- Stable latency by GPU model, engine and gap, over a fleet dataset written by
-- `record --dataset fleet`. A run's stable latency is the median of its last 100 iterations per
-- engine and condition (what
-- `gpuwatch analyze fleet` reports as late_p50_ms); the answer is their median over runs.
-- Run from the directory holding fleet/ (the path below is relative), with DuckDB's command-line
-- tool or its Python package (what the [fleet] extra installs):
--   duckdb -c ".read /path/to/stable_latency.sql"
--   python -c "import duckdb, sys; duckdb.sql(open(sys.argv[1]).read()).show()" /path/to/stable_latency.sql
WITH inf AS (
    SELECT gpu_model, host, run, name AS engine, condition, gap_ms, iteration, gpu_ms
    FROM read_parquet('fleet/*/*/*/trace.parquet', hive_partitioning = true)
    WHERE table_name = 'inferences' AND kind = 'inference' AND NOT warmup
      AND gpu_ms IS NOT NULL AND error IS NULL
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY host, run, engine, condition ORDER BY iteration DESC) AS k
    FROM inf
), per_run AS (
    SELECT gpu_model, engine, gap_ms, host, run, condition, median(gpu_ms) AS late_p50_ms
    FROM ranked WHERE k <= 100
    GROUP BY ALL
)
SELECT gpu_model, engine, gap_ms, count(*) AS runs, median(late_p50_ms) AS stable_ms
FROM per_run
GROUP BY ALL
ORDER BY gpu_model, engine, gap_ms;
