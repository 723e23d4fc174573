-- 0005_lean_metric_points: a metric point is the row written most often (a
-- 1,000-point batch writes 1,000), so it carries only what is read or
-- needed. The reporting task is its integer key (tasks.seq), not its text
-- id repeated in every row. run_seq is no longer a foreign key: the check
-- was a lookup in runs (and a statement journal) per point, runs are never
-- deleted, and ingest takes run_seq from the task it loaded. Row ids are
-- kept: live views use them as cursors.
CREATE TABLE metric_points_new (
    run_seq  INTEGER NOT NULL,            -- runs(seq)
    name     TEXT NOT NULL,
    step     INTEGER NOT NULL,
    time     INTEGER NOT NULL,
    value    REAL NOT NULL,
    task_seq INTEGER NOT NULL             -- tasks(seq) of the task that reported it
);
INSERT INTO metric_points_new(rowid, run_seq, name, step, time, value, task_seq)
    SELECT p.rowid, p.run_seq, p.name, p.step, p.time, p.value, COALESCE(t.seq, 0)
    FROM metric_points p LEFT JOIN tasks t ON t.id = p.task ORDER BY p.rowid;
DROP TABLE metric_points;
ALTER TABLE metric_points_new RENAME TO metric_points;
CREATE INDEX metric_points_by_series ON metric_points(run_seq, name, step);
