-- 0001_init: the first schema of trainyard.
-- Times are integer milliseconds since the epoch (0 or NULL = not yet).
-- JSON columns hold text written by the server itself.

CREATE TABLE experiments (
    name          TEXT PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    last_activity INTEGER NOT NULL,
    run_count     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE snapshots (
    id         TEXT PRIMARY KEY,          -- 'sha256:<hex>'
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- seq orders runs by submission and is the list cursor.
CREATE TABLE runs (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    experiment TEXT NOT NULL REFERENCES experiments(name),
    status     TEXT NOT NULL,
    spec       TEXT NOT NULL,             -- JSON, defaults filled
    pool       TEXT NOT NULL,
    priority   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    attempt    INTEGER NOT NULL DEFAULT 1,
    error      TEXT,
    reason     TEXT,
    deadline   INTEGER NOT NULL DEFAULT 0 -- ms; set when placed with max_run_duration_seconds
);
CREATE INDEX runs_by_experiment ON runs(experiment, seq);
CREATE INDEX runs_by_status ON runs(status, seq);

CREATE TABLE run_tags (
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    PRIMARY KEY (key, value, run_seq)
) WITHOUT ROWID;

CREATE TABLE tasks (
    id         TEXT PRIMARY KEY,          -- '<run id>-a<attempt>-<name>'
    run_seq    INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    ord        INTEGER NOT NULL,          -- position in the run's task list
    name       TEXT NOT NULL,
    type       TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    node       TEXT,
    address    TEXT,
    cpus       REAL NOT NULL DEFAULT 0,   -- resources held while live
    memory_mb  INTEGER NOT NULL DEFAULT 0,
    gpus       TEXT NOT NULL DEFAULT '[]', -- JSON array of GPU indices
    port       INTEGER,                   -- allocated on node while live
    argv       TEXT,                      -- JSON array, set at placement
    env        TEXT,                      -- JSON object, set at placement
    status     TEXT NOT NULL,
    exit_code  INTEGER,
    message    TEXT,
    started_at INTEGER,
    ended_at   INTEGER,
    assigned_at INTEGER,
    pushed     INTEGER NOT NULL DEFAULT 0, -- the agent has accepted the assignment
    push_fails INTEGER NOT NULL DEFAULT 0,
    stop_pending INTEGER NOT NULL DEFAULT 0, -- the agent must be told to stop it
    stopping   INTEGER NOT NULL DEFAULT 0, -- its run is done; its end is not a failure
    held       INTEGER NOT NULL DEFAULT 0, -- its resources are held on node until its agent lets go
    log_size   INTEGER NOT NULL DEFAULT 0, -- bytes of log received (the next offset)
    metrics_seq INTEGER NOT NULL DEFAULT -1 -- last metric batch applied
) WITHOUT ROWID;
CREATE INDEX tasks_by_run ON tasks(run_seq, attempt, ord);
CREATE INDEX tasks_by_node ON tasks(node, status);
CREATE INDEX tasks_to_push ON tasks(status, pushed);
CREATE INDEX tasks_to_stop ON tasks(stop_pending) WHERE stop_pending = 1;

-- Task output as received, in arrival order; a run's log is read from here.
CREATE TABLE log_chunks (
    seq     INTEGER PRIMARY KEY,
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    offset  INTEGER NOT NULL,             -- of data[0] in the task's log
    data    BLOB NOT NULL
);
CREATE INDEX log_chunks_by_run ON log_chunks(run_seq, seq);
CREATE INDEX log_chunks_by_task ON log_chunks(task_id, offset);

-- Files tasks wrote under ./outputs, stored under <data>/artifacts/.
CREATE TABLE artifacts (
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    task    TEXT NOT NULL,                -- task name
    path    TEXT NOT NULL,                -- relative to outputs/
    size    INTEGER NOT NULL,
    PRIMARY KEY (run_seq, path, task)
) WITHOUT ROWID;

CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    pool           TEXT NOT NULL,
    agent_url      TEXT NOT NULL,
    cpus           REAL NOT NULL,
    memory_mb      INTEGER NOT NULL,
    gpus           TEXT NOT NULL,         -- JSON array of {index,name,memory_mb,uuid}
    labels         TEXT NOT NULL,         -- JSON object
    features       TEXT NOT NULL,         -- JSON array
    state          TEXT NOT NULL,         -- 'ready' | 'draining' | 'down'
    secret         TEXT NOT NULL,
    port_min       INTEGER NOT NULL DEFAULT 20000,
    port_max       INTEGER NOT NULL DEFAULT 29999,
    registered_at  INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nodes_by_pool ON nodes(pool);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,             -- 'admin' | 'user' | 'viewer' | 'agent'
    node       TEXT,                      -- agent tokens: the node it may act for
    hash       TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the secret
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Metric points as reported, and a per-run summary kept at ingest.
CREATE TABLE metric_points (
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    step    INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    value   REAL NOT NULL,
    task    TEXT NOT NULL
);
CREATE INDEX metric_points_by_series ON metric_points(run_seq, name, step);

-- Rollups kept at ingest: per metric, per bucket of 2^level steps, the
-- bucket's lowest and highest points. A downsampled series reads these
-- (a few hundred rows) instead of every point.
CREATE TABLE metric_rollups (
    run_seq   INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    level     INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,           -- step >> level
    min_step  INTEGER NOT NULL,
    min_time  INTEGER NOT NULL,
    min_value REAL NOT NULL,
    max_step  INTEGER NOT NULL,
    max_time  INTEGER NOT NULL,
    max_value REAL NOT NULL,
    PRIMARY KEY (run_seq, name, level, bucket)
) WITHOUT ROWID;

CREATE TABLE metric_summary (
    run_seq   INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    last      REAL NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    count     INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    PRIMARY KEY (run_seq, name)
) WITHOUT ROWID;

-- What happened to a run, in order: status changes, retries, errors.
CREATE TABLE run_events (
    seq     INTEGER PRIMARY KEY,
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    time    INTEGER NOT NULL,
    type    TEXT NOT NULL,
    data    TEXT NOT NULL                 -- JSON object
);
CREATE INDEX run_events_by_run ON run_events(run_seq, seq);
