-- 0004_tasks_rowid: tasks get an integer key, in the order they are
-- created. As a table keyed by its text id, each new task's wide row, and
-- its entries in the indexes on status and node, went to a random page of
-- the B-tree (the id starts with the run's random id): a submission wrote
-- about five scattered pages to the WAL. Now the row and those entries are
-- appended, and only the small id index takes a random page. Columns and
-- ids are unchanged.
CREATE TABLE tasks_new (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,      -- '<run id>-a<attempt>-<name>'
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
);
INSERT INTO tasks_new(id, run_seq, attempt, ord, name, type, idx, node, address, cpus,
                      memory_mb, gpus, port, argv, env, status, exit_code, message,
                      started_at, ended_at, assigned_at, pushed, push_fails, stop_pending,
                      stopping, held, log_size, metrics_seq)
    SELECT id, run_seq, attempt, ord, name, type, idx, node, address, cpus,
           memory_mb, gpus, port, argv, env, status, exit_code, message,
           started_at, ended_at, assigned_at, pushed, push_fails, stop_pending,
           stopping, held, log_size, metrics_seq
    FROM tasks ORDER BY run_seq, attempt, ord;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_by_run ON tasks(run_seq, attempt, ord);
CREATE INDEX tasks_by_node ON tasks(node, status);
CREATE INDEX tasks_to_push ON tasks(status, pushed);
CREATE INDEX tasks_to_stop ON tasks(stop_pending) WHERE stop_pending = 1;
CREATE INDEX tasks_held ON tasks(node) WHERE held = 1;
