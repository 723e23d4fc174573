/* runs.c - runs, their tasks, tags and experiments. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "store/internal.h"
#include "common/banned.h"

static const char *const run_statuses[] = { "queued",    "starting", "running",
                                            "completed", "failed",   "canceled" };

#define RUN_COLUMNS                                                                                \
    "seq, id, experiment, status, spec, created_at, started_at, ended_at, attempt, error, "        \
    "reason, owner, truncated, (SELECT id FROM sweeps WHERE seq = runs.sweep_seq), trial, "        \
    "parameters"

/* ---- create ---- */

int run_event(struct conn *c, int64_t run_seq, int64_t now, const char *type, const cJSON *data)
{
    sqlite3_stmt *st = conn_stmt(c, "INSERT INTO run_events(run_seq, time, type, data) "
                                    "VALUES (?, ?, ?, ?)");
    char *text;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    text = json_print(data);
    sqlite3_bind_int64(st, 1, run_seq);
    sqlite3_bind_int64(st, 2, now);
    bind_text(st, 3, type);
    bind_text(st, 4, text);
    rc = stmt_done(c, st);
    free(text);
    return rc;
}

enum run_status run_status_of(const char *text)
{
    int status = run_status_parse(text);

    return status < 0 ? RUN_FAILED : (enum run_status)status;
}

int run_status_event(struct conn *c, int64_t run_seq, int64_t now, enum run_status status,
                     const char *error)
{
    cJSON *data = cJSON_CreateObject();
    int rc;

    cJSON_AddStringToObject(data, "status", run_status_name(status));
    if (error)
        cJSON_AddStringToObject(data, "error", error);
    rc = run_event(c, run_seq, now, "status", data);
    cJSON_Delete(data);
    return rc;
}

/* The last id chosen by any store of the process: chosen ids only grow. */
static uint64_t run_id_last;

#define RUN_ID_MASK ((UINT64_C(1) << 48) - 1)

/* The next id above both the last one and floor, at least the second of
 * now_ms followed by a zero count. */
static uint64_t run_id_next(int64_t now_ms, uint64_t floor)
{
    uint64_t base = (uint64_t)(now_ms / 1000) << 16;
    uint64_t last = __atomic_load_n(&run_id_last, __ATOMIC_RELAXED);
    uint64_t v;

    do {
        v = last + 1 > base ? last + 1 : base;
        if (v <= floor)
            v = floor + 1;
    } while (!__atomic_compare_exchange_n(&run_id_last, &last, v, false, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return v & RUN_ID_MASK;
}

static void run_id_format(uint64_t v, char *out)
{
    snprintf(out, STORE_RUN_ID_SIZE, "run-%012llx", (unsigned long long)v);
}

/* After a chosen id was taken (a store written by another process, whose
 * clock ran ahead): the highest id within 2^32 above it, which the next
 * choice must pass; false when there is none (the clash was not the id). */
static bool run_id_taken_up_to(struct conn *c, uint64_t taken, uint64_t *ret_floor)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT max(id) FROM runs WHERE id >= ? AND id < ?");
    uint64_t top = taken + (UINT64_C(1) << 32);
    char lo[STORE_RUN_ID_SIZE];
    char hi[STORE_RUN_ID_SIZE];
    const char *max;
    bool found = false;

    if (st == NULL)
        return false;
    run_id_format(taken, lo);
    run_id_format(top > RUN_ID_MASK ? RUN_ID_MASK : top, hi);
    bind_text(st, 1, lo);
    bind_text(st, 2, hi);
    if (sqlite3_step(st) == SQLITE_ROW &&
        (max = (const char *)sqlite3_column_text(st, 0)) != NULL && strlen(max) == 16) {
        *ret_floor = strtoull(max + 4, NULL, 16);
        found = true;
    }
    sqlite3_reset(st);
    return found;
}

static int run_row_insert(struct conn *c, const struct store_new_run *r, const char *id)
{
    sqlite3_stmt *st = conn_stmt(c, "INSERT INTO runs(id, experiment, status, spec, pool, "
                                    "priority, created_at, attempt, reason, owner, sweep_seq, "
                                    "trial, parameters) "
                                    "VALUES (?, ?, 'queued', ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)");

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, id);
    bind_text(st, 2, r->experiment);
    bind_text(st, 3, r->spec);
    bind_text(st, 4, r->pool);
    sqlite3_bind_int64(st, 5, r->priority);
    sqlite3_bind_int64(st, 6, r->created_at);
    bind_text(st, 7, r->reason);
    bind_text(st, 8, r->owner);
    if (r->sweep_seq > 0) {
        sqlite3_bind_int64(st, 9, r->sweep_seq);
        sqlite3_bind_int(st, 10, r->trial);
        bind_text(st, 11, r->parameters);
    } else {
        sqlite3_bind_null(st, 9);
        sqlite3_bind_null(st, 10);
        sqlite3_bind_null(st, 11);
    }
    return stmt_done(c, st);
}

/* Inserts the run's row under its given id, or under one chosen here
 * (written to r->new_id). */
static int run_row_insert_id(struct conn *c, const struct store_new_run *r, const char **ret_id)
{
    uint64_t floor = 0;
    uint64_t v;
    int tries;
    int rc;

    if (r->id) {
        *ret_id = r->id;
        return run_row_insert(c, r, r->id);
    }
    assert(r->new_id != NULL);
    for (tries = 0; tries < 3; tries++) {
        v = run_id_next(r->created_at, floor);
        run_id_format(v, r->new_id);
        rc = run_row_insert(c, r, r->new_id);
        if (rc != ERR_CONFLICT) {
            *ret_id = r->new_id;
            return rc;
        }
        if (!run_id_taken_up_to(c, v, &floor))
            break;
    }
    log_error("store: no free run id after %s", r->new_id);
    return ERR_INTERNAL;
}

static int run_create_fn(struct conn *c, void *arg)
{
    const struct store_new_run *r = arg;
    const cJSON *tag;
    const char *id;
    sqlite3_stmt *st;
    int64_t seq;
    char task_id[256];
    int rc;
    int i;

    st = conn_stmt(c, "INSERT INTO experiments(name, created_at, last_activity, run_count) "
                      "VALUES (?1, ?2, ?2, 1) ON CONFLICT(name) DO UPDATE SET "
                      "run_count = run_count + 1, last_activity = ?2");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, r->experiment);
    sqlite3_bind_int64(st, 2, r->created_at);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;

    if ((rc = run_row_insert_id(c, r, &id)) < 0)
        return rc;
    seq = sqlite3_last_insert_rowid(c->db);

    cJSON_ArrayForEach(tag, r->tags) {
        st = conn_stmt(c, "INSERT INTO run_tags(key, value, run_seq) VALUES (?, ?, ?)");
        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, tag->string);
        bind_text(st, 2, tag->valuestring);
        sqlite3_bind_int64(st, 3, seq);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }

    for (i = 0; i < r->n_tasks; i++) {
        st = conn_stmt(c, "INSERT INTO tasks(id, run_seq, attempt, ord, name, type, idx, status) "
                          "VALUES (?, ?, 1, ?, ?, ?, ?, 'pending')");
        if (st == NULL)
            return ERR_INTERNAL;
        snprintf(task_id, sizeof(task_id), "%s-a1-%s", id, r->tasks[i].name);
        bind_text(st, 1, task_id);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int(st, 3, i);
        bind_text(st, 4, r->tasks[i].name);
        bind_text(st, 5, r->tasks[i].type);
        sqlite3_bind_int(st, 6, r->tasks[i].index);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    /* The first event, "queued" at created_at, is not stored: add_events()
     * derives it from the run's row (migration 0012 removed the stored ones). */
    return 0;
}

int run_insert(struct conn *c, const struct store_new_run *run)
{
    return run_create_fn(c, (void *)run);
}

int store_run_create(struct store *store, const struct store_new_run *run)
{
    return store_write(store, run_create_fn, (void *)run);
}

int store_run_create_async(struct store *store, const struct store_new_run *run, store_done_fn done,
                           void *done_arg)
{
    return store_write_async(store, run_create_fn, run, sizeof(*run), done, done_arg);
}

/* A run's first event, its creation, which is not stored (add_events()). */
static cJSON *queued_event(int64_t created_at)
{
    cJSON *ev = cJSON_CreateObject();

    json_add_time(ev, "time", created_at);
    cJSON_AddStringToObject(ev, "type", "status");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ev, "data"), "status", "queued");
    return ev;
}

/* A string member, or null. */
static void put_key(struct buf *out, const char *key)
{
    buf_adds(out, ",\"");
    buf_adds(out, key);
    buf_adds(out, "\":");
}

static void put_string(struct buf *out, const char *key, const char *value)
{
    put_key(out, key);
    if (value)
        json_buf_string(out, value);
    else
        buf_adds(out, "null");
}

/* A time as json_add_time() gives it: RFC 3339 text, or null for 0. */
static void put_time_value(struct buf *out, int64_t ms)
{
    char when[TIME_RFC3339_LEN];

    if (ms == 0) {
        buf_adds(out, "null");
        return;
    }
    time_format_rfc3339(ms, when);
    buf_addc(out, '"');
    buf_adds(out, when);
    buf_addc(out, '"');
}

static void put_time(struct buf *out, const char *key, int64_t ms)
{
    put_key(out, key);
    put_time_value(out, ms);
}

void store_run_created_json(const struct store_new_run *run, struct buf *out)
{
    char task_id[256];
    int i;

    assert(run->id != NULL && run->tags != NULL);
    /* One allocation for the whole text in the common case. */
    buf_grow(out, strlen(run->spec) + 1024 + 256 * (size_t)run->n_tasks);
    /* The fields and order of run_from_row() and add_events(), printed as
     * json_print() prints them, for a run just stored. */
    buf_adds(out, "{\"id\":");
    json_buf_string(out, run->id);
    put_string(out, "experiment", run->experiment);
    put_string(out, "owner", run->owner);
    /* The text stored, as it is: not a tree copied and printed again. */
    buf_adds(out, ",\"status\":\"queued\",\"spec\":");
    buf_adds(out, run->spec);
    put_time(out, "created_at", run->created_at);
    buf_adds(out, ",\"started_at\":null,\"ended_at\":null,\"attempt\":1,\"error\":null");
    put_string(out, "reason", run->reason);
    /* Trials are created by the scheduler (scheduler/sweeps.c), not here. */
    buf_adds(out, ",\"log_truncated\":false,\"metrics_truncated\":false,\"sweep_id\":null,"
                  "\"trial\":null,\"parameters\":null,\"tags\":");
    json_buf_value(out, run->tags);
    buf_adds(out, ",\"tasks\":[");
    for (i = 0; i < run->n_tasks; i++) {
        snprintf(task_id, sizeof(task_id), "%s-a1-%s", run->id, run->tasks[i].name);
        buf_adds(out, i ? ",{\"id\":" : "{\"id\":");
        json_buf_string(out, task_id);
        put_string(out, "name", run->tasks[i].name);
        put_string(out, "type", run->tasks[i].type);
        buf_printf(out,
                   ",\"index\":%d,\"node\":null,\"address\":null,\"gpus\":[],"
                   "\"status\":\"pending\",\"exit_code\":null,\"started_at\":null,"
                   "\"ended_at\":null,\"env\":null}",
                   run->tasks[i].index);
    }
    /* Its creation, as add_events() derives it (queued_event()). */
    buf_adds(out, "],\"metrics\":{},\"events\":[{\"time\":");
    put_time_value(out, run->created_at);
    buf_adds(out, ",\"type\":\"status\",\"data\":{\"status\":\"queued\"}}]}");
}

/* ---- read ---- */

static int add_tasks(struct conn *c, int64_t seq, int64_t attempt, cJSON *run)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT id, name, type, idx, node, address, gpus, status, "
                                    "exit_code, started_at, ended_at, env FROM tasks "
                                    "WHERE run_seq = ? AND attempt = ? ORDER BY ord");
    cJSON *tasks = cJSON_AddArrayToObject(run, "tasks");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, attempt);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *t = cJSON_CreateObject();

        col_add_string(st, 0, t, "id");
        col_add_string(st, 1, t, "name");
        col_add_string(st, 2, t, "type");
        cJSON_AddNumberToObject(t, "index", sqlite3_column_int(st, 3));
        col_add_string(st, 4, t, "node");
        col_add_string(st, 5, t, "address");
        col_add_json(st, 6, t, "gpus");
        col_add_string(st, 7, t, "status");
        if (sqlite3_column_type(st, 8) == SQLITE_NULL)
            cJSON_AddNullToObject(t, "exit_code");
        else
            cJSON_AddNumberToObject(t, "exit_code", sqlite3_column_int(st, 8));
        col_add_time(st, 9, t, "started_at");
        col_add_time(st, 10, t, "ended_at");
        /* What the task was given (TF_CONFIG, RANK, ...), set at placement;
         * the MPI exec secret stays between the server and the agents. */
        if (sqlite3_column_type(st, 11) != SQLITE_NULL) {
            col_add_json(st, 11, t, "env");
            cJSON_DeleteItemFromObjectCaseSensitive(json_get(t, "env"), "TRAINYARD_MPI_SECRET");
        } else {
            cJSON_AddNullToObject(t, "env");
        }
        cJSON_AddItemToArray(tasks, t);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "read tasks");
}

static int add_metrics(struct conn *c, int64_t seq, cJSON *run)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT name, last FROM metric_summary WHERE run_seq = ? "
                                    "ORDER BY name");
    cJSON *metrics = cJSON_AddObjectToObject(run, "metrics");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cJSON_AddNumberToObject(metrics, (const char *)sqlite3_column_text(st, 0),
                                sqlite3_column_double(st, 1));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "read metric summary");
}

/* Builds the run resource from a row of RUN_COLUMNS. */
static int run_from_row(struct conn *c, sqlite3_stmt *st, cJSON **ret_run)
{
    cJSON *run = cJSON_CreateObject();
    cJSON *spec;
    int64_t seq = sqlite3_column_int64(st, 0);
    int64_t attempt = sqlite3_column_int64(st, 8);
    int rc;

    col_add_string(st, 1, run, "id");
    col_add_string(st, 2, run, "experiment");
    col_add_string(st, 11, run, "owner");
    col_add_string(st, 3, run, "status");
    col_add_json(st, 4, run, "spec");
    col_add_time(st, 5, run, "created_at");
    col_add_time(st, 6, run, "started_at");
    col_add_time(st, 7, run, "ended_at");
    cJSON_AddNumberToObject(run, "attempt", (double)attempt);
    col_add_string(st, 9, run, "error");
    col_add_string(st, 10, run, "reason");
    /* Set once a quota cut the run's log or metrics short (store/tasks.c). */
    cJSON_AddBoolToObject(run, "log_truncated", sqlite3_column_int(st, 12) & 1);
    cJSON_AddBoolToObject(run, "metrics_truncated", sqlite3_column_int(st, 12) & 2);
    /* A sweep's trial: the sweep, its number and its parameter values. */
    col_add_string(st, 13, run, "sweep_id");
    if (sqlite3_column_type(st, 14) == SQLITE_NULL)
        cJSON_AddNullToObject(run, "trial");
    else
        cJSON_AddNumberToObject(run, "trial", sqlite3_column_int(st, 14));
    if (sqlite3_column_type(st, 15) == SQLITE_NULL)
        cJSON_AddNullToObject(run, "parameters");
    else
        col_add_json(st, 15, run, "parameters");
    spec = json_get(run, "spec");
    cJSON_AddItemToObject(run, "tags", cJSON_Duplicate(json_get(spec, "tags"), 1));
    if ((rc = add_tasks(c, seq, attempt, run)) < 0 || (rc = add_metrics(c, seq, run)) < 0) {
        cJSON_Delete(run);
        return rc;
    }
    *ret_run = run;
    return 0;
}

/* The most events a run resource shows: the latest. */
#define RUN_EVENTS_SHOWN 200

/* What happened to the run (status changes, retries, quotas, early
 * termination), oldest first: {"time", "type", "data"}. The first, its
 * creation ("queued" at created_at), comes from the run's row. */
static int add_events(struct conn *c, int64_t seq, int64_t created_at, cJSON *run)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT time, type, data FROM (SELECT seq, time, type, data "
                                    "FROM run_events WHERE run_seq = ? ORDER BY seq DESC "
                                    "LIMIT ?) ORDER BY seq");
    cJSON *events = cJSON_AddArrayToObject(run, "events");
    int n = 0;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int(st, 2, RUN_EVENTS_SHOWN);
    cJSON_AddItemToArray(events, queued_event(created_at));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *e = cJSON_CreateObject();

        col_add_time(st, 0, e, "time");
        col_add_string(st, 1, e, "type");
        col_add_json(st, 2, e, "data");
        cJSON_AddItemToArray(events, e);
        n++;
    }
    sqlite3_reset(st);
    /* The latest RUN_EVENTS_SHOWN: the creation is among them only while
     * fewer are stored. */
    if (n == RUN_EVENTS_SHOWN)
        cJSON_DeleteItemFromArray(events, 0);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "read run events");
}

static int run_get(struct conn *c, const char *id, cJSON **ret_run)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rc = run_from_row(c, st, ret_run);
        if (rc == 0 && (rc = add_events(c, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 5),
                                        *ret_run)) < 0)
            cJSON_Delete(*ret_run);
    } else
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "get run");
    sqlite3_reset(st);
    return rc;
}

int store_run_get(struct store *store, const char *id, cJSON **ret_run)
{
    struct conn *c = store_reader(store);
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    rc = run_get(c, id, ret_run);
    conn_end_read(c);
    return rc;
}

int store_run_list(struct store *store, const struct store_run_filter *f, cJSON **ret_list)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *list;
    cJSON *items;
    int64_t last_seq = 0;
    int n = 0;
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    st = conn_stmt(c, "SELECT " RUN_COLUMNS " FROM runs WHERE seq < ?1 "
                      "AND (?2 IS NULL OR experiment = ?2) AND (?3 IS NULL OR status = ?3) "
                      "AND (?4 IS NULL OR seq IN (SELECT run_seq FROM run_tags "
                      "WHERE key = ?4 AND value = ?5)) AND (?7 IS NULL OR owner = ?7) "
                      "AND (?8 IS NULL OR sweep_seq = (SELECT seq FROM sweeps WHERE id = ?8)) "
                      "ORDER BY seq DESC LIMIT ?6");
    if (st == NULL) {
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    sqlite3_bind_int64(st, 1, f->before_seq > 0 ? f->before_seq : INT64_MAX);
    bind_text(st, 2, f->experiment);
    bind_text(st, 3, f->status);
    bind_text(st, 4, f->tag_key);
    bind_text(st, 5, f->tag_value ? f->tag_value : "");
    /* One more than asked tells whether there is a next page. */
    sqlite3_bind_int(st, 6, f->limit + 1);
    bind_text(st, 7, f->owner);
    bind_text(st, 8, f->sweep);
    list = list_new(&items);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *run;

        if (n == f->limit) {
            char cursor[32];

            snprintf(cursor, sizeof(cursor), "%lld", (long long)last_seq);
            cJSON_ReplaceItemInObject(list, "next_cursor", cJSON_CreateString(cursor));
            rc = SQLITE_DONE;
            break;
        }
        if (run_from_row(c, st, &run) < 0) {
            rc = SQLITE_ERROR;
            break;
        }
        cJSON_AddItemToArray(items, run);
        last_seq = sqlite3_column_int64(st, 0);
        n++;
    }
    sqlite3_reset(st);
    conn_end_read(c);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        return conn_fail(c, "list runs");
    }
    *ret_list = list;
    return 0;
}

/* ---- cancel ---- */

int run_cancel_seq(struct conn *c, int64_t seq, int64_t attempt, int64_t now, const char *reason)
{
    sqlite3_stmt *st = conn_stmt(c, "UPDATE runs SET status = 'canceled', ended_at = ?, "
                                    "reason = ? WHERE seq = ?");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    bind_text(st, 2, reason);
    sqlite3_bind_int64(st, 3, seq);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    if ((rc = tasks_kill_live(c, seq, attempt, now)) < 0)
        return rc;
    return run_status_event(c, seq, now, RUN_CANCELED, NULL);
}

struct run_cancel {
    const char *id;
    const char *owner;
    int64_t now;
};

static int run_cancel_fn(struct conn *c, void *arg)
{
    struct run_cancel *rc_arg = arg;
    sqlite3_stmt *st = conn_stmt(c, "SELECT seq, status, attempt, owner FROM runs WHERE id = ?");
    const char *owner;
    int64_t seq;
    int64_t attempt;
    int status;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, rc_arg->id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "cancel run");
    }
    seq = sqlite3_column_int64(st, 0);
    status = run_status_parse((const char *)sqlite3_column_text(st, 1));
    attempt = sqlite3_column_int64(st, 2);
    owner = (const char *)sqlite3_column_text(st, 3);
    /* Checked here, in the write, so that whose run it is and the cancel
     * are one decision. */
    rc = rc_arg->owner && (owner == NULL || strcmp(owner, rc_arg->owner) != 0) ? ERR_PERMISSION : 0;
    sqlite3_reset(st);
    if (rc < 0)
        return rc;

    assert(status >= 0); /* only this program writes it */
    if (status == RUN_CANCELED)
        return 0;
    if (run_status_is_final((enum run_status)status))
        return ERR_CONFLICT;

    return run_cancel_seq(c, seq, attempt, rc_arg->now, NULL);
}

int store_run_cancel(struct store *store, const char *id, const char *owner, int64_t now_ms,
                     cJSON **ret_run)
{
    struct run_cancel arg = { id, owner, now_ms };
    int rc = store_write(store, run_cancel_fn, &arg);

    if (rc < 0)
        return rc;
    return store_run_get(store, id, ret_run);
}

/* ---- experiments and counts ---- */

int store_experiment_list(struct store *store, const struct store_page *page, cJSON **ret_list)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *list;
    cJSON *items;
    int n = 0;
    int rc;

    if (c == NULL || (st = conn_stmt(c, "SELECT name, run_count, created_at, last_activity "
                                        "FROM experiments WHERE name > ? ORDER BY name "
                                        "LIMIT ?")) == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, page->after ? page->after : "");
    sqlite3_bind_int(st, 2, page->limit + 1);
    list = list_new(&items);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *e;

        if (n++ == page->limit) {
            list_set_cursor(list,
                            json_get_string(cJSON_GetArrayItem(items, page->limit - 1), "name"));
            rc = SQLITE_DONE;
            break;
        }
        e = cJSON_CreateObject();

        col_add_string(st, 0, e, "name");
        cJSON_AddNumberToObject(e, "run_count", (double)sqlite3_column_int64(st, 1));
        col_add_time(st, 2, e, "created_at");
        col_add_time(st, 3, e, "last_activity");
        cJSON_AddItemToArray(items, e);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        return conn_fail(c, "list experiments");
    }
    *ret_list = list;
    return 0;
}

int store_run_counts(struct store *store, cJSON **ret_counts)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *counts;
    size_t i;
    int rc;

    if (c == NULL ||
        (st = conn_stmt(c, "SELECT status, count(*) FROM runs GROUP BY status")) == NULL)
        return ERR_INTERNAL;
    counts = cJSON_CreateObject();
    for (i = 0; i < sizeof(run_statuses) / sizeof(run_statuses[0]); i++)
        cJSON_AddNumberToObject(counts, run_statuses[i], 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cJSON_ReplaceItemInObjectCaseSensitive(
            counts, (const char *)sqlite3_column_text(st, 0),
            cJSON_CreateNumber((double)sqlite3_column_int64(st, 1)));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(counts);
        return conn_fail(c, "count runs");
    }
    *ret_counts = counts;
    return 0;
}
