-- 0008_unschedulable: when a queued run was first found unschedulable (no
-- node of its pool, ready or not, could ever hold it; its reason starts
-- "unschedulable:"), in ms; NULL while it merely waits. The scheduler fails
-- it --unschedulable-timeout after that.
ALTER TABLE runs ADD COLUMN unschedulable_since INTEGER;
CREATE INDEX runs_unschedulable ON runs(unschedulable_since)
    WHERE unschedulable_since IS NOT NULL;
