-- 0010_nodes_rowid: nodes get an integer key, like tasks (0004). The
-- scheduler keeps its state in memory and learns what each commit changed
-- from SQLite's update hook, which reports rowids and is silent for tables
-- WITHOUT ROWID. Columns and names are unchanged; name stays unique.
CREATE TABLE nodes_new (
    seq            INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
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
);
INSERT INTO nodes_new(name, pool, agent_url, cpus, memory_mb, gpus, labels, features, state,
                      secret, port_min, port_max, registered_at, last_heartbeat)
    SELECT name, pool, agent_url, cpus, memory_mb, gpus, labels, features, state,
           secret, port_min, port_max, registered_at, last_heartbeat
    FROM nodes ORDER BY name;
DROP TABLE nodes;
ALTER TABLE nodes_new RENAME TO nodes;
CREATE INDEX nodes_by_pool ON nodes(pool);
