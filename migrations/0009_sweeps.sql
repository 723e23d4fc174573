-- 0009_sweeps: hyperparameter sweeps (issue 12). A sweep is a template run
-- spec and a parameter space; its trials are ordinary runs that point back
-- at it (runs.sweep_seq) with their number (runs.trial, from 0) and their
-- parameter values (runs.parameters, JSON). n_trials is the next trial's
-- number: a trial and the count are written in one transaction, and
-- (sweep_seq, trial) is unique, so no trial is sampled twice or lost
-- across a restart. The sampler's state is rebuilt from the trials.
CREATE TABLE sweeps (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,     -- 'swp-<12 hex>'
    experiment TEXT NOT NULL,
    owner      TEXT,                     -- name of the submitting token
    status     TEXT NOT NULL,            -- running | completed | canceled | failed
    spec       TEXT NOT NULL,            -- JSON: the normalised sweep spec
    seed       INTEGER NOT NULL,
    n_trials   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    ended_at   INTEGER,
    error      TEXT
);
CREATE INDEX sweeps_by_status ON sweeps(status, seq);

ALTER TABLE runs ADD COLUMN sweep_seq INTEGER REFERENCES sweeps(seq);
ALTER TABLE runs ADD COLUMN trial INTEGER;
ALTER TABLE runs ADD COLUMN parameters TEXT;
CREATE UNIQUE INDEX runs_by_sweep ON runs(sweep_seq, trial) WHERE sweep_seq IS NOT NULL;
