-- 0007_run_owners: runs and snapshots record who submitted them, as the
-- name of the submitting token (owner). Rows from before this migration
-- have no owner (NULL, shown as null): nobody can tell who sent them, so
-- only an admin may cancel such a run. Runs are listed by owner newest
-- first, like by experiment.
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE snapshots ADD COLUMN owner TEXT;
CREATE INDEX runs_by_owner ON runs(owner, seq);
