-- 0011_unschedulable_queued: the scheduler asks every pass whether a queued
-- run has been unschedulable too long (store/sched.c). With the index on
-- unschedulable_since alone SQLite chose runs_queue (status = 'queued') and
-- read every queued run's row: a quarter of the server's time with 27,000
-- runs queued (B1). With status first the question is one index probe.
DROP INDEX runs_unschedulable;
CREATE INDEX runs_unschedulable ON runs(status, unschedulable_since)
    WHERE unschedulable_since IS NOT NULL;
