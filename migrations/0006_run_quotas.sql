-- 0006_run_quotas: what each run has stored of its log and metric points,
-- so the per-run quotas (trainyard server --max-log-mb,
-- --max-metric-points) are checked with one row read per report, and
-- whether either was cut short. Runs from before count what they hold.
ALTER TABLE runs ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN metric_points INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0; -- 1: log, 2: metrics
UPDATE runs SET
    log_bytes = (SELECT COALESCE(SUM(length(data)), 0) FROM log_chunks WHERE run_seq = runs.seq),
    metric_points = (SELECT COALESCE(SUM(count), 0) FROM metric_summary WHERE run_seq = runs.seq);
