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
 * per function, ERR_NO_SPACE when the disk is full, ERR_INTERNAL when
 * SQLite fails otherwise (logged here).
 */
#ifndef TRAINYARD_STORE_H
#define TRAINYARD_STORE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/backend.h"
#include "common/buf.h"

struct store;
struct run_spec; /* common/spec.h */

enum store_sync {
    STORE_SYNC_FULL, /* fsync at every commit: a 201 survives power loss */
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
/*
 * Changes each time the writer commits, before the writers of that batch
 * return. Anything derived from reads made after seeing generation g is
 * current for as long as store_generation() still returns g.
 */
uint64_t store_generation(struct store *store);
/* fn(arg) is called on the writer thread after each commit of writes (so
 * that readers waiting for news look now); it must be quick and must not
 * use the store. Call before any write, from the thread that opened it. */
void store_on_commit(struct store *store, void (*fn)(void *arg), void *arg);
/* Number of migrations built into this binary. */
int store_migration_count(void);

/* Per-run quotas (SPEC §9, issue 11): bytes of log and metric points a run
 * may store; what comes after is acknowledged and dropped, once marked
 * (a line in the log, an event, the run's log_truncated /
 * metrics_truncated). */
struct store_quotas {
    int64_t max_log_bytes;
    int64_t max_metric_points;
};

#define STORE_DEFAULT_MAX_LOG_BYTES (256 * 1024 * 1024LL)
#define STORE_DEFAULT_MAX_METRIC_POINTS 10000000LL

/* Sets the quotas (both > 0). Call before any write, from the thread that
 * opened the store. */
void store_set_quotas(struct store *store, const struct store_quotas *quotas);

/* ---- tokens ---- */

struct store_token {
    char id[32];
    char name[129];
    char role[16];
    char node[129]; /* empty when not bound */
};

/* Adds a token. ERR_CONFLICT when the hash or id exists. */
int store_token_create(struct store *store, const char *id, const char *name, const char *role,
                       const char *node, const char *hash, int64_t now_ms);
/* Adds an agent token bound to node, only when node belongs to nobody (as
 * store_token_bind decides): ERR_PERMISSION when it is taken, ERR_CONFLICT
 * when the hash or id exists. One transaction: nothing is added on error. */
int store_token_claim(struct store *store, const char *id, const char *name, const char *node,
                      const char *hash, int64_t now_ms);
/* Finds the token whose secret hashes to hash; ERR_NOT_FOUND when none. */
int store_token_lookup(struct store *store, const char *hash, struct store_token *ret_token);
/* Binds an unbound agent token to node; a no-op when already bound to it,
 * ERR_CONFLICT when bound to another node, ERR_PERMISSION when the token is
 * unbound and node is taken (a node of that name exists, or another token
 * is bound to that name). */
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
/* ERR_NOT_FOUND when absent, ERR_CONFLICT when it is the last admin token. */
int store_token_delete(struct store *store, const char *id);

/* ---- snapshots ---- */

/* Records a snapshot whose file is already in place, uploaded by owner (a
 * token name); a no-op if known. ret_owner (size bytes) gets the owner as
 * stored: the first uploader's name, or "" for one uploaded before owners
 * were recorded. */
int store_snapshot_put(struct store *store, const char *id, int64_t size, const char *owner,
                       int64_t now_ms, char *ret_owner, size_t size_owner);
/* ERR_NOT_FOUND when unknown; *ret_size may be NULL. */
int store_snapshot_get(struct store *store, const char *id, int64_t *ret_size);

/* ---- runs ---- */

struct store_new_task {
    const char *name;
    const char *type;
    int index;
};

/* "run-" and 12 hex digits, and a NUL. */
#define STORE_RUN_ID_SIZE 17

struct store_new_run {
    /* NULL: the store chooses the id (store_run_create) and writes it to
     * new_id, STORE_RUN_ID_SIZE bytes that must live until the write ends. */
    const char *id;
    char *new_id;
    const char *experiment;
    const char *owner; /* name of the submitting token */
    const char *spec; /* normalised spec (JSON text), defaults filled */
    const cJSON *tags; /* the spec's tags object, or NULL */
    const char *pool;
    int64_t priority;
    const char *reason;
    int64_t created_at;
    const struct store_new_task *tasks;
    int n_tasks;
    /* A sweep's trial (store_sweep_add_trial()); 0 otherwise. */
    int64_t sweep_seq;
    int trial;
    const char *parameters; /* JSON object of the trial's values */
};

/* Stores a queued run, its tags and its first attempt's pending tasks and
 * creates the experiment on first use. ERR_CONFLICT when the given id
 * exists. An id the store chooses is new: "run-" and 48 bits that grow with
 * time (the Unix second, then a count within it), so that new entries in
 * the indexes of run and task ids go to their end, not to a random page
 * each (half of what a submission wrote to the WAL). */
int store_run_create(struct store *store, const struct store_new_run *run);
/* Told on the writer thread how an asynchronous write ended (0 or an ERR_*
 * code, as the waiting call would return). */
typedef void (*store_done_fn)(void *arg, int rc);
/* store_run_create() without waiting: 0, then done(done_arg, rc) once the
 * run is committed (run must live until then); ERR_UNAVAILABLE at once when
 * the store is stopping. Lets an HTTP thread serve other requests while
 * the writer gathers a larger batch. */
int store_run_create_async(struct store *store, const struct store_new_run *run, store_done_fn done,
                           void *done_arg);
/* Appends the resource of a run store_run_create() just stored, as
 * store_run_get() would return it then, printed as json_print() prints it,
 * without reading it back or building a tree; the spec is run->spec's
 * text as it is. run->id and run->tags must be set. */
void store_run_created_json(const struct store_new_run *run, struct buf *out);
/* The run resource. ERR_NOT_FOUND when unknown. */
int store_run_get(struct store *store, const char *id, cJSON **ret_run);

struct store_run_filter {
    const char *experiment; /* NULL = any */
    const char *owner;
    const char *status;
    const char *tag_key;
    const char *tag_value;
    const char *sweep; /* a sweep id: only its trials */
    int64_t before_seq; /* cursor: only runs older than this; 0 = newest */
    int limit;
};

/* {"items": [...], "next_cursor": "<seq>"|null}, newest first. */
int store_run_list(struct store *store, const struct store_run_filter *filter, cJSON **ret_list);
/*
 * Cancels a run that has not ended: status canceled, unfinished tasks
 * killed. A canceled run is returned unchanged. owner: NULL cancels any
 * run; else only a run of that owner, ERR_PERMISSION for another's (or
 * one without an owner). ERR_CONFLICT when it completed or failed,
 * ERR_NOT_FOUND when unknown. *ret_run gets the run.
 */
int store_run_cancel(struct store *store, const char *id, const char *owner, int64_t now_ms,
                     cJSON **ret_run);
/* {"items": [{name, run_count, created_at, last_activity}], "next_cursor"} by name. */
int store_experiment_list(struct store *store, const struct store_page *page, cJSON **ret_list);
/* Counts of runs per status, as {"queued": 3, ...} (every status present). */
int store_run_counts(struct store *store, cJSON **ret_counts);

/* ---- sweeps (issue 12; the sampler is scheduler/sweeps.c) ---- */

struct store_new_sweep {
    const char *id;
    const char *experiment;
    const char *owner;
    const char *spec; /* normalised sweep spec (JSON text) */
    int64_t seed;
    int64_t created_at;
};

/* Stores a running sweep with no trials. ERR_CONFLICT when the id exists. */
int store_sweep_create(struct store *store, const struct store_new_sweep *sweep);
/*
 * The sweep resource: its fields, spec, trial counts by status
 * ({"created", "queued", ..., "canceled", "early_terminated"}) and
 * best_run ({"id", "trial", "parameters", "value"} of the completed trial
 * with the best last value of the primary metric, or null).
 * ERR_NOT_FOUND when unknown.
 */
int store_sweep_get(struct store *store, const char *id, cJSON **ret_sweep);
/* Sweeps newest first: {"items", "next_cursor"}; status may be NULL. */
int store_sweep_list(struct store *store, const char *status, int64_t before_seq, int limit,
                     cJSON **ret_list);
/* How trials are ordered by store_sweep_runs(). */
enum store_trial_sort { STORE_TRIAL_BY_NUMBER, STORE_TRIAL_BY_VALUE };
/*
 * A sweep's trials: {"items": [{"id", "trial", "status", "reason",
 * "parameters", "value", "created_at", "started_at", "ended_at"}]}, by
 * number or by value (trials without a value last), descending if desc.
 */
int store_sweep_runs(struct store *store, const char *id, enum store_trial_sort sort, bool desc,
                     cJSON **ret_list);
/* Cancels a running sweep and its unfinished trials; a canceled sweep is
 * returned unchanged. owner as store_run_cancel(). ERR_CONFLICT when it
 * ended otherwise, ERR_NOT_FOUND when unknown. *ret_sweep gets it. */
int store_sweep_cancel(struct store *store, const char *id, const char *owner, int64_t now_ms,
                       cJSON **ret_sweep);

/* A running sweep as the sampler reads it. */
struct store_sweep_row {
    int64_t seq;
    char id[32];
    char *spec; /* JSON text, owned */
    char *owner; /* may be NULL; owned */
    int64_t seed;
    int n_trials;
    int64_t created_at;
};
/* The running sweeps; free with store_sweep_rows_free(). */
int store_sweeps_running(struct store *store, struct store_sweep_row **ret_rows, int *ret_n);
void store_sweep_rows_free(struct store_sweep_row *rows, int n);

/* A trial as the sampler reads it. */
struct store_trial_row {
    int trial;
    int64_t run_seq;
    char run_id[32];
    enum run_status status;
    bool early_terminated;
    char *parameters; /* JSON text, owned */
};
/* The trials of sweep seq by number; free with store_trial_rows_free(). */
int store_sweep_trials(struct store *store, int64_t sweep_seq, struct store_trial_row **ret_rows,
                       int *ret_n);
void store_trial_rows_free(struct store_trial_row *rows, int n);

/* A metric point of a trial, with its row id (arrival order). */
struct store_trial_point {
    int64_t rowid;
    int64_t step;
    double value;
};
/* The points of metric name of run run_seq after row after_rowid, in
 * arrival order, at most max; *ret_points is freed with free(). */
int store_trial_points(struct store *store, int64_t run_seq, const char *name, int64_t after_rowid,
                       size_t max, struct store_trial_point **ret_points, size_t *ret_n);

/* Stores run as trial run->trial of sweep run->sweep_seq, if the sweep is
 * running and has exactly run->trial trials: ERR_CONFLICT otherwise (the
 * trial exists, or the sweep ended). */
int store_sweep_add_trial(struct store *store, const struct store_new_run *run);
/* Cancels a trial that has not ended with reason "early_terminated" and
 * an "early_terminated" event with data (the policy's numbers); a no-op
 * for a trial that ended. */
int store_sweep_stop_trial(struct store *store, int64_t run_seq, const cJSON *data, int64_t now_ms);
/* Ends a running sweep with status (a sweep's statuses are running and
 * the final ones of runs: completed, failed, canceled) and error (may be
 * NULL), canceling its unfinished trials; a no-op when it is no longer
 * running. */
int store_sweep_finish(struct store *store, int64_t sweep_seq, enum run_status status,
                       const char *error, int64_t now_ms);

/* ---- nodes ---- */

struct store_node_reg {
    const char *name;
    const char *pool;
    const char *agent_url;
    double cpus;
    int64_t memory_mb;
    const cJSON *gpus; /* validated array */
    const cJSON *labels; /* validated object */
    const cJSON *features; /* validated array */
    const char *secret;
    int port_min; /* ports the agent offers tasks */
    int port_max;
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
 * want running (unknown, ended, or not placed on this node). Tasks the
 * agent accepted more than grace_ms ago but does not report are lost.
 * *ret_changed: whether anything placement cares about changed (the node
 * came back, tasks were lost or let go). A heartbeat that changes only
 * the time is not a write: it is kept in memory and written in a batch
 * within a quarter second. *ret_state: the node's state now ("ready" or
 * "draining", static). ERR_NOT_FOUND when the node is unknown.
 * The common case never waits; the rest waits on the writer.
 */
int store_node_heartbeat(struct store *store, const char *name, const cJSON *reported,
                         int64_t now_ms, int64_t grace_ms, bool may_wait, cJSON **ret_stop,
                         bool *ret_changed, const char **ret_state);
/* What store_node_heartbeat() returns, without doing anything, when it
 * would have to wait on a write and may_wait is false. */
#define STORE_WOULD_WAIT 1
int store_node_drain(struct store *store, const char *name, bool drain);
/* ERR_NOT_FOUND, or ERR_CONFLICT while tasks are live on it. */
int store_node_delete(struct store *store, const char *name);
/* How many ready nodes of pool have every feature in features (a JSON
 * array of strings, may be NULL), counting no further than limit: a
 * submission asks whether node_count of them exist, and the answer costs
 * O(limit), not O(nodes). */
int store_pool_nodes(struct store *store, const char *pool, const cJSON *features, int64_t now_ms,
                     int64_t node_timeout_ms, int64_t limit, int64_t *ret_suitable);
/* Pools with capacity: {"items": [...], "next_cursor": null}. */
int store_compute(struct store *store, int64_t now_ms, int64_t node_timeout_ms, cJSON **ret_list);
/* Counts of nodes per state, as {"ready": 1, "draining": 0, "down": 0}. */
int store_node_counts(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                      cJSON **ret_counts);

/* ---- tasks: what agents report, and the run rules (SPEC §4 gang rule) ---- */

/*
 * Records a task status reported by the agent of node ("" for an admin):
 * preparing, running, succeeded or failed, with exit_code (or -1) and
 * message (may be NULL). Reports about ended tasks are accepted and
 * ignored. Then applies the run rules: completion, gang failure (stop the
 * rest, retry or fail). ERR_NOT_FOUND for an unknown task, ERR_PERMISSION
 * when the task is not on node, ERR_INVALID for a status agents may not
 * report.
 */
int store_task_report(struct store *store, const char *task_id, const char *node,
                      enum task_status status, int exit_code, const char *message, int64_t now_ms);
/* The same without waiting, as store_run_create_async(); the strings must
 * live until done. So for the _async forms of logs and metrics below, and
 * their data, points and ret_ pointers, which are written before done. */
int store_task_report_async(struct store *store, const char *task_id, const char *node,
                            enum task_status status, int exit_code, const char *message,
                            int64_t now_ms, store_done_fn done, void *done_arg);
/*
 * Appends log bytes data[0..len) that start at byte offset of the task's
 * log. Bytes already received are skipped, so a retry is harmless.
 * *ret_log_size gets the task's log size after it. ERR_CONFLICT when
 * offset is past the end received (a gap), with *ret_log_size set. Bytes
 * past the run's log quota are counted as received but not stored; the
 * first write to reach it stores a marker line instead.
 */
int store_task_logs(struct store *store, const char *task_id, const char *node, int64_t offset,
                    const void *data, size_t len, int64_t *ret_log_size);
int store_task_logs_async(struct store *store, const char *task_id, const char *node,
                          int64_t offset, const void *data, size_t len, int64_t *ret_log_size,
                          store_done_fn done, void *done_arg);
/* A metric point (time in ms). name is borrowed. */
struct store_point {
    const char *name;
    double value;
    int64_t step;
    int64_t time;
};

/*
 * Applies a batch of n metric points once: a batch whose seq is not above
 * the last applied one is a duplicate and changes nothing
 * (*ret_duplicate = true). Points past the run's quota are dropped (the
 * batch still counts as applied).
 */
int store_task_metrics(struct store *store, const char *task_id, const char *node, int64_t seq,
                       const struct store_point *points, size_t n, bool *ret_duplicate);
int store_task_metrics_async(struct store *store, const char *task_id, const char *node,
                             int64_t seq, const struct store_point *points, size_t n,
                             bool *ret_duplicate, store_done_fn done, void *done_arg);
/* The run id and task name of a task the agent of node may report for. */
int store_task_owner(struct store *store, const char *task_id, const char *node, char *ret_run_id,
                     size_t run_id_size, char *ret_task_name, size_t name_size);
/* Records an artifact whose file is in place. */
int store_artifact_put(struct store *store, const char *task_id, const char *path, int64_t size);

/* ---- read side ---- */

/* {"items": [{name, last, min, max, count, last_step}]} of a run. */
int store_run_metrics(struct store *store, const char *run_id, cJSON **ret_summary);
/*
 * The series of one metric: {"name", "points": [[step, time, value], ...]}
 * ordered by step, downsampled to at most max_points (0 = all) keeping
 * each bucket's min and max points, so peaks and dips survive.
 * ERR_NOT_FOUND when the run is unknown.
 */
int store_run_metric_series(struct store *store, const char *run_id, const char *name,
                            int max_points, cJSON **ret_series);
/* {"items": [{"path", "size", "task"}]}. */
int store_run_artifacts(struct store *store, const char *run_id, cJSON **ret_list);
/* The task name that holds path for run (task may name one), for reading the file. */
int store_artifact_find(struct store *store, const char *run_id, const char *path, const char *task,
                        char *ret_task, size_t task_size);

/*
 * The log text of a run, all attempts, in arrival order: each line
 * prefixed "[task] " when the run has several tasks; only one task's lines
 * when task (an id or a name) is given, unprefixed. Appends to out the
 * complete lines; a partial last line of a task is held back until the
 * run has ended, so the text only ever grows. *ret_ended tells whether the
 * run has ended. ERR_NOT_FOUND for an unknown run or task.
 */
struct buf;
int store_run_log(struct store *store, const char *run_id, const char *task, struct buf *out,
                  bool *ret_ended);
/*
 * Where a reader of a run's log is: the last chunk read and each task's
 * unfinished line. A follower keeps one, so each read costs what is new.
 */
struct store_log_partial;
struct store_log_cursor {
    int64_t after; /* log_chunks.seq last read */
    struct store_log_partial *partials;
    size_t n_partials;
    bool flushed; /* the unfinished lines went out at the run's end */
};
void store_log_cursor_init(struct store_log_cursor *cur);
void store_log_cursor_release(struct store_log_cursor *cur);
/*
 * Appends to out the log text after cur, as store_run_log() would, and
 * moves cur; stops after the chunk that takes it past max_bytes (then
 * *ret_ended is false: there may be more). The unfinished last lines are
 * appended once, when the run has ended.
 */
int store_run_log_next(struct store *store, const char *run_id, const char *task,
                       struct store_log_cursor *cur, size_t max_bytes, struct buf *out,
                       bool *ret_ended);

/* ---- scheduler ---- */

/* A ready node as placement sees it, with what its held tasks use. */
#define STORE_MAX_GPUS 64

struct sched_node {
    char *name;
    char *pool;
    char *host; /* of agent_url: where its tasks are reached */
    char *agent_url;
    double cpus;
    double used_cpus;
    int64_t memory_mb;
    int64_t used_memory_mb;
    int n_gpus;
    int gpus[STORE_MAX_GPUS]; /* indices */
    bool gpu_used[STORE_MAX_GPUS];
    int port_min;
    int port_max;
    int *used_ports;
    int n_used_ports;
    int cap_used_ports;
    unsigned features; /* FEATURE_* (common/backend.h) */
    /* Its --label pairs: labels[2i] is a key, labels[2i + 1] its value. */
    char **labels;
    int n_labels;
};

/* A port held by a task on a node that is not in the state (another
 * pool, or not ready): nodes that advertise the same host share one port
 * space, so placement must not give it out there either. */
struct sched_host_port {
    char *host;
    int port;
};

/* A task of a queued run, as placement sees it. */
struct sched_task_in {
    const char *id;
    const char *name;
    enum task_type type;
    int index;
};

/* A queued run, as placement sees it: its spec and tasks are borrowed. */
struct sched_run {
    const char *id;
    const char *reason; /* the one it has now; NULL: none */
    int64_t attempt;
    const struct run_spec *spec;
    const struct sched_task_in *tasks; /* in task order */
    int n_tasks;
    /* A run built by hand (placement_add_run()): what
     * store_sched_state_release() frees, with release. */
    void *owned;
    void (*release)(void *owned);
};

/*
 * Everything placement needs: the ready nodes of the pools the queue's
 * head wants, and that head (queued runs in priority order, higher first,
 * then older), all as C structs; and the ports held on
 * other nodes, by host. The scheduler builds it from its state in memory
 * (mirror_state() in scheduler/mirror.h).
 */
struct sched_state {
    struct sched_node *nodes;
    int n_nodes;
    struct sched_run *runs;
    int n_runs;
    struct sched_host_port *other_ports;
    int n_other_ports;
    /* The other nodes of those pools (draining, down): never placed on,
     * but what they could hold tells unschedulable runs from waiting ones.
     * Their used_* and port fields are not filled. */
    struct sched_node *absent;
    int n_absent;
};

/* Frees a state whose strings it owns (one built by hand), with its runs'
 * owned parts. */
void store_sched_state_release(struct sched_state *state);
/* Records port as used on n. */
void sched_node_use_port(struct sched_node *n, int port);
/*
 * What a pass decided (placement_pass()): the runs it placed, for
 * store_sched_place(), and the new reasons of those it did not, for
 * store_sched_reasons(). Strings that are pointers are borrowed from the
 * pass's sched_state; the others are offsets of NUL-terminated text in
 * text (sched_text()): gpus, argv and env are JSON, as stored. Built as C
 * and text, not as a JSON tree: a tree per task cost more than the placing.
 */
struct sched_task_place {
    const char *id;
    const char *node;
    size_t gpus, argv, env;
    size_t address; /* with port 0: none */
    int port; /* 0: none */
    double cpus;
    int64_t memory_mb;
};
struct sched_run_place {
    const char *run;
    int64_t max_duration_s; /* 0: none */
    size_t first, n; /* its tasks: tasks[first] .. tasks[first + n - 1] */
};
/* Why a run waits, where that differs from the reason it had. */
struct sched_reason {
    const char *run;
    size_t reason;
};
struct sched_placements {
    struct sched_run_place *runs;
    size_t n_runs, cap_runs;
    struct sched_task_place *tasks;
    size_t n_tasks, cap_tasks;
    struct sched_reason *reasons;
    size_t n_reasons, cap_reasons;
    struct buf text;
};
void sched_placements_init(struct sched_placements *p);
void sched_placements_release(struct sched_placements *p);
/* The text at off. */
const char *sched_text(const struct sched_placements *p, size_t off);
/* Appends len bytes of s and a NUL to p's text; returns their offset. */
size_t sched_text_add(struct sched_placements *p, const char *s, size_t len);
/* Applies placements: the tasks get their node, resources, argv and env; a
 * run no longer queued is skipped. Sets runs to starting. */
int store_sched_place(struct store *store, const struct sched_placements *placements,
                      int64_t now_ms);
/* Updates the reason of the queued runs of p's reasons; a reason starting
 * "unschedulable:" starts (or keeps) the run's unschedulable clock, any
 * other stops it. */
int store_sched_reasons(struct store *store, const struct sched_placements *p, int64_t now_ms);
/* Fails the queued runs unschedulable (reason "unschedulable: ...") since
 * timeout_ms or longer, with that reason as their error; *ret_failed says
 * how many. */
int store_sched_unschedulable(struct store *store, int64_t now_ms, int64_t timeout_ms,
                              int *ret_failed);
/* The agent refused or was unreachable for an assignment; after a few
 * failures the task fails and the run rules apply. */
int store_sched_push_failed(struct store *store, const char *task_id, const char *error,
                            int64_t now_ms);
/* Agents accepted these n assignments: one write for all of them. */
int store_sched_pushed_ok(struct store *store, const char *const *task_ids, size_t n);
/* The agent was told to stop the task; gone: it no longer has it (404),
 * so an ended task's resources are free. */
int store_sched_stopped(struct store *store, const char *task_id, bool gone);
/*
 * Time-driven rules: nodes silent past node_timeout_ms become down and
 * their tasks lost; runs past their deadline fail. *ret_changed is true
 * when anything changed.
 */
int store_sched_expire(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                       bool *ret_changed);
/* A node (re-)registered: the tasks its agent had are lost to it. */
int store_node_restarted(struct store *store, const char *name, int64_t now_ms);

/* ---- the scheduler's state in memory (scheduler/mirror.c) ---- */

/*
 * The rows of runs, tasks and nodes (their rowids) that commits changed
 * since the last store_changes_take(): SQLite's update hook on the writer
 * tells them, and they are published once their batch has committed, so
 * a read begun after the take sees every change the take names. A row
 * named may be unchanged (a rolled-back savepoint), never the reverse.
 * overflow: more than the store keeps were changed; read everything.
 * The heartbeat times kept in memory (store_seen_*) are not changes: read
 * them with store_nodes_seen().
 */
struct store_changes {
    int64_t *rows[3]; /* by enum store_table */
    size_t n[3], cap[3];
    bool overflow;
};
enum store_table { STORE_RUNS, STORE_TASKS, STORE_NODES };
void store_changes_take(struct store *store, struct store_changes *ret);
void store_changes_release(struct store_changes *ch);
/* Runs fn(arg) while no batch commits: every commit a read made inside fn
 * sees is named by a store_changes_take() made inside it (to compare a
 * state kept by changes with a fresh read). fn must not write. */
void store_quiet(struct store *store, void (*fn)(void *arg), void *arg);
/* The last heartbeat kept in memory of each of n nodes (0 when none),
 * under one lock: the scheduler asks for 10,000 nodes at a time. */
void store_nodes_seen(struct store *store, const char *const *names, size_t n, int64_t *ret_ms);

/* Rows as the scheduler keeps them. Strings are valid during the callback. */
struct store_run_row {
    int64_t seq;
    const char *id;
    const char *experiment;
    enum run_status status;
    int64_t priority;
    int64_t attempt;
    const char *pool;
    const char *reason; /* NULL: none */
    int64_t unschedulable_since; /* 0: not unschedulable */
    int64_t deadline; /* 0: none */
};
struct store_task_row {
    int64_t seq;
    const char *id;
    int64_t run_seq;
    int64_t attempt;
    int ord;
    const char *name;
    enum task_type type;
    int index;
    const char *node; /* NULL: not placed */
    const char *address;
    double cpus;
    int64_t memory_mb;
    const char *gpus; /* JSON array of indices */
    int port; /* 0: none */
    const char *argv, *env; /* JSON, NULL before placement */
    enum task_status status;
    bool pushed, stop_pending, stopping, held;
};
struct store_node_row {
    int64_t seq;
    const char *name, *pool, *agent_url, *secret;
    const char *gpus, *labels, *features; /* JSON */
    const char *state; /* ready, draining, down */
    double cpus;
    int64_t memory_mb;
    int port_min, port_max;
    int64_t last_heartbeat;
};
/* Called for each row read; row NULL: the row with that rowid is gone. */
struct store_mirror_fns {
    void *arg;
    void (*run)(void *arg, int64_t rowid, const struct store_run_row *row);
    void (*task)(void *arg, int64_t rowid, const struct store_task_row *row);
    void (*node)(void *arg, int64_t rowid, const struct store_node_row *row);
};
/*
 * Reads, in one snapshot, the rows which names (nodes first, then runs,
 * then tasks), or with which NULL every row the scheduler keeps: every
 * node, the runs not ended, and the tasks that are placed and not ended,
 * hold resources or wait for a stop. Pending tasks that do neither are
 * read with their run's spec (store_run_specs()) when it is placed.
 */
int store_mirror_read(struct store *store, const struct store_changes *which,
                      const struct store_mirror_fns *fns);
/* Calls fn with the attempt and spec (JSON text) of each run of seqs that
 * exists and, with pending, the pending tasks of that attempt in task
 * order (else none); all borrowed for the call. */
int store_run_specs(struct store *store, const int64_t *seqs, size_t n, bool pending,
                    void (*fn)(void *arg, int64_t seq, int64_t attempt, const char *spec,
                               const struct sched_task_in *tasks, int n_tasks),
                    void *arg);

/*
 * Metric points of a run added after row after_id, at most limit, as
 * [{"name", "step", "time", "value"}]; *ret_last_id gets the last row id
 * (after_id when none). For live views.
 */
int store_run_points_since(struct store *store, const char *run_id, int64_t after_id, int limit,
                           cJSON **ret_points, int64_t *ret_last_id);

#endif
