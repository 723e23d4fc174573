/*
 * store.h - trainyard's durable state: one SQLite database in WAL mode.
 *
 * This module is the only code that speaks SQL. It owns the database file,
 * the schema (migrations/NNNN_*.sql, applied in order at open, one
 * transaction each) and every connection.
 *
 * Writes: every write is a small transaction function run by one writer
 * thread. Callers from any thread queue it and wait; the writer takes all
 * that are queued, runs them in one BEGIN IMMEDIATE ... COMMIT (each inside
 * its own SAVEPOINT so a failing one undoes only itself) and then wakes the
 * callers. A write function returning 0 means its changes are committed
 * (group commit: one fsync for many requests).
 *
 * Reads: each calling thread gets its own read connection on first use;
 * a read sees every write that returned before it started.
 *
 * Resources come back as cJSON trees in the shapes of the REST API (the
 * store knows the columns; the JSON mirrors them). The caller owns them
 * (cJSON_Delete). Strings passed in are borrowed.
 *
 * Errors: 0, or ERR_NOT_FOUND / ERR_CONFLICT / ERR_INVALID as documented
 * per function, ERR_INTERNAL when SQLite fails (logged here).
 */
#ifndef TRAINYARD_STORE_H
#define TRAINYARD_STORE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

struct store;

enum store_sync {
    STORE_SYNC_FULL,   /* fsync at every commit: a 201 survives power loss */
    STORE_SYNC_NORMAL, /* WAL default: survives a crash of the process */
};

/*
 * Opens (creating it if needed) the database at path, applies pending
 * migrations and starts the writer thread. Refuses a database written by a
 * newer trainyard. Call from the main thread; returns 0 and *ret_store, or
 * ERR_INTERNAL with the reason logged.
 */
int store_open(const char *path, enum store_sync sync, struct store **ret_store);
/* Stops the writer (after the queued writes), closes every connection.
 * No other thread may be using the store. NULL is a no-op. */
void store_free(struct store *store);
/* The schema version of the open database (the last migration applied). */
int store_schema_version(struct store *store);
/* Number of migrations built into this binary. */
int store_migration_count(void);

/* ---- tokens ---- */

struct store_token {
    char id[32];
    char role[16];
    char node[129]; /* empty when not bound */
};

/* Adds a token. ERR_CONFLICT when the hash or id exists. */
int store_token_create(struct store *store, const char *id, const char *name, const char *role,
                       const char *node, const char *hash, int64_t now_ms);
/* Finds the token whose secret hashes to hash; ERR_NOT_FOUND when none. */
int store_token_lookup(struct store *store, const char *hash, struct store_token *ret_token);
/* Binds an unbound agent token to node; a no-op when already bound to it,
 * ERR_CONFLICT when bound to another node. */
int store_token_bind(struct store *store, const char *id, const char *node);
int store_token_count(struct store *store, int64_t *ret_count);
/* A page of names in order: after is the previous page's next_cursor (NULL
 * for the first page); next_cursor is set when more remain. */
struct store_page {
    const char *after;
    int limit;
};

/* {"items": [...], "next_cursor": ...} by id, no secrets. */
int store_token_list(struct store *store, const struct store_page *page, cJSON **ret_list);
int store_token_get(struct store *store, const char *id, cJSON **ret_token);
/* ERR_NOT_FOUND when absent. */
int store_token_delete(struct store *store, const char *id);

/* ---- snapshots ---- */

/* Records a snapshot whose file is already in place; a no-op if known. */
int store_snapshot_put(struct store *store, const char *id, int64_t size, int64_t now_ms);
/* ERR_NOT_FOUND when unknown; *ret_size may be NULL. */
int store_snapshot_get(struct store *store, const char *id, int64_t *ret_size);

/* ---- runs ---- */

struct store_new_task {
    const char *name;
    const char *type;
    int index;
};

struct store_new_run {
    const char *id;
    const char *experiment;
    const cJSON *spec; /* normalised spec, defaults filled */
    const char *pool;
    int64_t priority;
    const char *reason;
    int64_t created_at;
    const struct store_new_task *tasks;
    int n_tasks;
};

/* Stores a queued run, its tags and its first attempt's pending tasks and
 * creates the experiment on first use. ERR_CONFLICT when the id exists. */
int store_run_create(struct store *store, const struct store_new_run *run);
/* The run resource. ERR_NOT_FOUND when unknown. */
int store_run_get(struct store *store, const char *id, cJSON **ret_run);

struct store_run_filter {
    const char *experiment; /* NULL = any */
    const char *status;
    const char *tag_key;
    const char *tag_value;
    int64_t before_seq; /* cursor: only runs older than this; 0 = newest */
    int limit;
};

/* {"items": [...], "next_cursor": "<seq>"|null}, newest first. */
int store_run_list(struct store *store, const struct store_run_filter *filter, cJSON **ret_list);
/*
 * Cancels a run that has not ended: status canceled, unfinished tasks
 * killed. A canceled run is returned unchanged. ERR_CONFLICT when it
 * completed or failed, ERR_NOT_FOUND when unknown. *ret_run gets the run.
 */
int store_run_cancel(struct store *store, const char *id, int64_t now_ms, cJSON **ret_run);
/* {"items": [{name, run_count, created_at, last_activity}], "next_cursor"} by name. */
int store_experiment_list(struct store *store, const struct store_page *page, cJSON **ret_list);
/* Counts of runs per status, as {"queued": 3, ...} (every status present). */
int store_run_counts(struct store *store, cJSON **ret_counts);

/* ---- nodes ---- */

struct store_node_reg {
    const char *name;
    const char *pool;
    const char *agent_url;
    double cpus;
    int64_t memory_mb;
    const cJSON *gpus;     /* validated array */
    const cJSON *labels;   /* validated object */
    const cJSON *features; /* validated array */
    const char *secret;
    int64_t now_ms;
};

/* Inserts or updates a node; its state becomes ready unless it was draining. */
int store_node_register(struct store *store, const struct store_node_reg *reg);
/*
 * The node resource; a node not heard from for node_timeout_ms reads
 * "down". ERR_NOT_FOUND when unknown.
 */
int store_node_get(struct store *store, const char *name, int64_t now_ms, int64_t node_timeout_ms,
                   cJSON **ret_node);
/* Nodes by name, a page at a time. */
int store_node_list(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                    const struct store_page *page, cJSON **ret_list);
/*
 * Records a heartbeat. reported is the agent's [{"id", "status"}] list;
 * *ret_stop gets a JSON array of the reported task ids the server does not
 * want running (unknown, ended, or not placed on this node).
 * ERR_NOT_FOUND when the node is unknown.
 */
int store_node_heartbeat(struct store *store, const char *name, const cJSON *reported,
                         int64_t now_ms, cJSON **ret_stop);
int store_node_drain(struct store *store, const char *name, bool drain);
/* ERR_NOT_FOUND, or ERR_CONFLICT while tasks are live on it. */
int store_node_delete(struct store *store, const char *name);
/* Ready nodes in pool and how many of them have every feature in features
 * (a JSON array of strings, may be NULL). */
int store_pool_nodes(struct store *store, const char *pool, const cJSON *features,
                     int64_t now_ms, int64_t node_timeout_ms, int64_t *ret_ready,
                     int64_t *ret_with_features);
/* Pools with capacity: {"items": [...], "next_cursor": null}. */
int store_compute(struct store *store, int64_t now_ms, int64_t node_timeout_ms, cJSON **ret_list);
/* Counts of nodes per state, as {"ready": 1, "draining": 0, "down": 0}. */
int store_node_counts(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                      cJSON **ret_counts);

#endif
