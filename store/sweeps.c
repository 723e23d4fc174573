/* sweeps.c - sweeps and their trials (issue 12): the resource, the rows
 * the sampler rebuilds its state from, and its writes. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "store/internal.h"
#include "common/banned.h"

static const char *const trial_statuses[] = { "queued",    "starting", "running",
                                              "completed", "failed",   "canceled" };

#define SWEEP_COLUMNS                                                                              \
    "seq, id, experiment, owner, status, spec, seed, n_trials, created_at, ended_at, error"

/* ---- create ---- */

static int sweep_create_fn(struct conn *c, void *arg)
{
    const struct store_new_sweep *w = arg;
    sqlite3_stmt *st = conn_stmt(c, "INSERT INTO sweeps(id, experiment, owner, status, spec, "
                                    "seed, created_at) VALUES (?, ?, ?, 'running', ?, ?, ?)");

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, w->id);
    bind_text(st, 2, w->experiment);
    bind_text(st, 3, w->owner);
    bind_text(st, 4, w->spec);
    sqlite3_bind_int64(st, 5, w->seed);
    sqlite3_bind_int64(st, 6, w->created_at);
    return stmt_done(c, st);
}

int store_sweep_create(struct store *store, const struct store_new_sweep *sweep)
{
    return store_write(store, sweep_create_fn, (void *)sweep);
}

/* ---- read ---- */

static int add_trial_counts(struct conn *c, int64_t seq, int64_t n_trials, cJSON *sweep)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT status, count(*), "
                                    "sum(reason IS NOT NULL AND reason = 'early_terminated') "
                                    "FROM runs WHERE sweep_seq = ? GROUP BY status");
    cJSON *counts = cJSON_AddObjectToObject(sweep, "trials");
    int64_t early = 0;
    size_t i;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    cJSON_AddNumberToObject(counts, "created", (double)n_trials);
    for (i = 0; i < sizeof(trial_statuses) / sizeof(trial_statuses[0]); i++)
        cJSON_AddNumberToObject(counts, trial_statuses[i], 0);
    sqlite3_bind_int64(st, 1, seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON_ReplaceItemInObjectCaseSensitive(
            counts, (const char *)sqlite3_column_text(st, 0),
            cJSON_CreateNumber((double)sqlite3_column_int64(st, 1)));
        early += sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    cJSON_AddNumberToObject(counts, "early_terminated", (double)early);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "count trials");
}

/* The primary metric and its goal, from a sweep's spec. */
static void sweep_metric(const cJSON *spec, const char **ret_name, bool *ret_maximize)
{
    const cJSON *pm = json_get(spec, "primary_metric");
    const char *goal = json_get_string(pm, "goal");

    *ret_name = json_get_string(pm, "name");
    *ret_maximize = goal && strcmp(goal, "maximize") == 0;
}

static int add_best_run(struct conn *c, int64_t seq, const cJSON *spec, cJSON *sweep)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT r.id, r.trial, r.parameters, m.last FROM runs r "
                                    "JOIN metric_summary m ON m.run_seq = r.seq AND m.name = ?2 "
                                    "WHERE r.sweep_seq = ?1 AND r.status = 'completed' "
                                    "ORDER BY CASE WHEN ?3 THEN -m.last ELSE m.last END, r.trial "
                                    "LIMIT 1");
    const char *metric;
    bool maximize;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sweep_metric(spec, &metric, &maximize);
    sqlite3_bind_int64(st, 1, seq);
    bind_text(st, 2, metric ? metric : "");
    sqlite3_bind_int(st, 3, maximize);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cJSON *best = cJSON_AddObjectToObject(sweep, "best_run");

        col_add_string(st, 0, best, "id");
        cJSON_AddNumberToObject(best, "trial", sqlite3_column_int(st, 1));
        col_add_json(st, 2, best, "parameters");
        cJSON_AddNumberToObject(best, "value", sqlite3_column_double(st, 3));
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE) {
        cJSON_AddNullToObject(sweep, "best_run");
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "find best trial");
}

/* Builds the sweep resource from a row of SWEEP_COLUMNS. */
static int sweep_from_row(struct conn *c, sqlite3_stmt *st, cJSON **ret_sweep)
{
    cJSON *sweep = cJSON_CreateObject();
    int64_t seq = sqlite3_column_int64(st, 0);
    int rc;

    col_add_string(st, 1, sweep, "id");
    col_add_string(st, 2, sweep, "experiment");
    col_add_string(st, 3, sweep, "owner");
    col_add_string(st, 4, sweep, "status");
    col_add_string(st, 10, sweep, "error");
    col_add_time(st, 8, sweep, "created_at");
    col_add_time(st, 9, sweep, "ended_at");
    col_add_json(st, 5, sweep, "spec");
    if ((rc = add_trial_counts(c, seq, sqlite3_column_int64(st, 7), sweep)) < 0 ||
        (rc = add_best_run(c, seq, json_get(sweep, "spec"), sweep)) < 0) {
        cJSON_Delete(sweep);
        return rc;
    }
    *ret_sweep = sweep;
    return 0;
}

static int sweep_get(struct conn *c, const char *id, cJSON **ret_sweep)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT " SWEEP_COLUMNS " FROM sweeps WHERE id = ?");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = sweep_from_row(c, st, ret_sweep);
    else
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "get sweep");
    sqlite3_reset(st);
    return rc;
}

int store_sweep_get(struct store *store, const char *id, cJSON **ret_sweep)
{
    struct conn *c = store_reader(store);
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    rc = sweep_get(c, id, ret_sweep);
    conn_end_read(c);
    return rc;
}

int store_sweep_list(struct store *store, const char *status, int64_t before_seq, int limit,
                     cJSON **ret_list)
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
    st = conn_stmt(c, "SELECT " SWEEP_COLUMNS " FROM sweeps WHERE seq < ?1 "
                      "AND (?2 IS NULL OR status = ?2) ORDER BY seq DESC LIMIT ?3");
    if (st == NULL) {
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    sqlite3_bind_int64(st, 1, before_seq > 0 ? before_seq : INT64_MAX);
    bind_text(st, 2, status);
    sqlite3_bind_int(st, 3, limit + 1);
    list = list_new(&items);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *sweep;

        if (n == limit) {
            char cursor[32];

            snprintf(cursor, sizeof(cursor), "%lld", (long long)last_seq);
            list_set_cursor(list, cursor);
            rc = SQLITE_DONE;
            break;
        }
        if (sweep_from_row(c, st, &sweep) < 0) {
            rc = SQLITE_ERROR;
            break;
        }
        cJSON_AddItemToArray(items, sweep);
        last_seq = sqlite3_column_int64(st, 0);
        n++;
    }
    sqlite3_reset(st);
    conn_end_read(c);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        return conn_fail(c, "list sweeps");
    }
    *ret_list = list;
    return 0;
}

int store_sweep_runs(struct store *store, const char *id, enum store_trial_sort sort, bool desc,
                     cJSON **ret_list)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *list;
    cJSON *items;
    cJSON *sweep;
    const char *metric;
    bool maximize;
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    if ((rc = sweep_get(c, id, &sweep)) < 0) {
        conn_end_read(c);
        return rc;
    }
    sweep_metric(json_get(sweep, "spec"), &metric, &maximize);
    /* Trials without a value sort last either way. */
    st = conn_stmt(c, "SELECT r.id, r.trial, r.status, r.reason, r.parameters, m.last, "
                      "r.created_at, r.started_at, r.ended_at FROM runs r "
                      "LEFT JOIN metric_summary m ON m.run_seq = r.seq AND m.name = ?2 "
                      "WHERE r.sweep_seq = (SELECT seq FROM sweeps WHERE id = ?1) "
                      "ORDER BY CASE WHEN ?3 THEN m.last IS NULL ELSE 0 END, "
                      "CASE WHEN ?3 THEN (CASE WHEN ?4 THEN -m.last ELSE m.last END) "
                      "ELSE (CASE WHEN ?4 THEN -r.trial ELSE r.trial END) END, r.trial");
    if (st == NULL) {
        cJSON_Delete(sweep);
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    bind_text(st, 1, id);
    bind_text(st, 2, metric ? metric : "");
    sqlite3_bind_int(st, 3, sort == STORE_TRIAL_BY_VALUE);
    sqlite3_bind_int(st, 4, desc);
    cJSON_Delete(sweep);
    list = list_new(&items);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *t = cJSON_CreateObject();

        col_add_string(st, 0, t, "id");
        cJSON_AddNumberToObject(t, "trial", sqlite3_column_int(st, 1));
        col_add_string(st, 2, t, "status");
        col_add_string(st, 3, t, "reason");
        col_add_json(st, 4, t, "parameters");
        if (sqlite3_column_type(st, 5) == SQLITE_NULL)
            cJSON_AddNullToObject(t, "value");
        else
            cJSON_AddNumberToObject(t, "value", sqlite3_column_double(st, 5));
        col_add_time(st, 6, t, "created_at");
        col_add_time(st, 7, t, "started_at");
        col_add_time(st, 8, t, "ended_at");
        cJSON_AddItemToArray(items, t);
    }
    sqlite3_reset(st);
    conn_end_read(c);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        return conn_fail(c, "list trials");
    }
    *ret_list = list;
    return 0;
}

/* ---- the sampler's reads ---- */

int store_sweeps_running(struct store *store, struct store_sweep_row **ret_rows, int *ret_n)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    struct store_sweep_row *rows = NULL;
    int n = 0;
    int cap = 0;
    int rc;

    if (c == NULL ||
        (st = conn_stmt(c, "SELECT seq, id, spec, owner, seed, n_trials, created_at "
                           "FROM sweeps WHERE status = 'running' ORDER BY seq")) == NULL)
        return ERR_INTERNAL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_sweep_row *r;
        const char *owner = (const char *)sqlite3_column_text(st, 3);

        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            rows = xrealloc(rows, (size_t)cap * sizeof(*rows));
        }
        r = &rows[n++];
        memset(r, 0, sizeof(*r));
        r->seq = sqlite3_column_int64(st, 0);
        snprintf(r->id, sizeof(r->id), "%s", sqlite3_column_text(st, 1));
        r->spec = xstrdup((const char *)sqlite3_column_text(st, 2));
        r->owner = owner ? xstrdup(owner) : NULL;
        r->seed = sqlite3_column_int64(st, 4);
        r->n_trials = sqlite3_column_int(st, 5);
        r->created_at = sqlite3_column_int64(st, 6);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_sweep_rows_free(rows, n);
        return conn_fail(c, "read running sweeps");
    }
    *ret_rows = rows;
    *ret_n = n;
    return 0;
}

void store_sweep_rows_free(struct store_sweep_row *rows, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(rows[i].spec);
        free(rows[i].owner);
    }
    free(rows);
}

int store_sweep_trials(struct store *store, int64_t sweep_seq, struct store_trial_row **ret_rows,
                       int *ret_n)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    struct store_trial_row *rows = NULL;
    int n = 0;
    int cap = 0;
    int rc;

    if (c == NULL ||
        (st = conn_stmt(c, "SELECT trial, seq, id, status, reason, parameters FROM runs "
                           "WHERE sweep_seq = ? ORDER BY trial")) == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, sweep_seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_trial_row *r;
        const char *reason = (const char *)sqlite3_column_text(st, 4);

        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            rows = xrealloc(rows, (size_t)cap * sizeof(*rows));
        }
        r = &rows[n++];
        memset(r, 0, sizeof(*r));
        r->trial = sqlite3_column_int(st, 0);
        r->run_seq = sqlite3_column_int64(st, 1);
        snprintf(r->run_id, sizeof(r->run_id), "%s", sqlite3_column_text(st, 2));
        r->status = run_status_of((const char *)sqlite3_column_text(st, 3));
        r->early_terminated = reason && strcmp(reason, "early_terminated") == 0;
        r->parameters = xstrdup((const char *)sqlite3_column_text(st, 5));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_trial_rows_free(rows, n);
        return conn_fail(c, "read trials");
    }
    *ret_rows = rows;
    *ret_n = n;
    return 0;
}

void store_trial_rows_free(struct store_trial_row *rows, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(rows[i].parameters);
    free(rows);
}

int store_trial_points(struct store *store, int64_t run_seq, const char *name, int64_t after_rowid,
                       size_t max, struct store_trial_point **ret_points, size_t *ret_n)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    struct store_trial_point *points = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rc;

    if (c == NULL ||
        (st = conn_stmt(c, "SELECT rowid, step, value FROM metric_points WHERE run_seq = ? "
                           "AND name = ? AND rowid > ? ORDER BY rowid LIMIT ?")) == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, after_rowid);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            points = xrealloc(points, cap * sizeof(*points));
        }
        points[n].rowid = sqlite3_column_int64(st, 0);
        points[n].step = sqlite3_column_int64(st, 1);
        points[n].value = sqlite3_column_double(st, 2);
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(points);
        return conn_fail(c, "read trial points");
    }
    *ret_points = points;
    *ret_n = n;
    return 0;
}

/* ---- the sampler's writes ---- */

static int sweep_add_trial_fn(struct conn *c, void *arg)
{
    const struct store_new_run *run = arg;
    sqlite3_stmt *st = conn_stmt(c, "UPDATE sweeps SET n_trials = n_trials + 1 WHERE seq = ? "
                                    "AND status = 'running' AND n_trials = ?");
    int rc;

    assert(run->sweep_seq > 0);
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run->sweep_seq);
    sqlite3_bind_int(st, 2, run->trial);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    if (sqlite3_changes(c->db) != 1)
        return ERR_CONFLICT;
    return run_insert(c, run);
}

int store_sweep_add_trial(struct store *store, const struct store_new_run *run)
{
    return store_write(store, sweep_add_trial_fn, (void *)run);
}

struct trial_stop {
    int64_t run_seq;
    const cJSON *data;
    int64_t now;
};

static int sweep_stop_trial_fn(struct conn *c, void *arg)
{
    struct trial_stop *t = arg;
    sqlite3_stmt *st = conn_stmt(c, "SELECT status, attempt FROM runs WHERE seq = ?");
    int64_t attempt;
    bool live;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, t->run_seq);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "stop trial");
    }
    live = !run_status_is_final(run_status_of((const char *)sqlite3_column_text(st, 0)));
    attempt = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if (!live)
        return 0;
    if ((rc = run_event(c, t->run_seq, t->now, "early_terminated", t->data)) < 0)
        return rc;
    return run_cancel_seq(c, t->run_seq, attempt, t->now, "early_terminated");
}

int store_sweep_stop_trial(struct store *store, int64_t run_seq, const cJSON *data, int64_t now_ms)
{
    struct trial_stop arg = { run_seq, data, now_ms };

    return store_write(store, sweep_stop_trial_fn, &arg);
}

/* Cancels the unfinished trials of sweep seq. */
static int cancel_trials(struct conn *c, int64_t seq, int64_t now)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT seq, attempt FROM runs WHERE sweep_seq = ? AND "
                                    "status IN ('queued', 'starting', 'running')");
    int64_t *runs = NULL;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 16;
            runs = xrealloc(runs, cap * sizeof(*runs));
        }
        runs[n++] = sqlite3_column_int64(st, 0);
        runs[n++] = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(runs);
        return conn_fail(c, "find unfinished trials");
    }
    for (i = 0, rc = 0; i < n && rc == 0; i += 2)
        rc = run_cancel_seq(c, runs[i], runs[i + 1], now, NULL);
    free(runs);
    return rc;
}

struct sweep_end {
    int64_t seq;
    const char *id; /* or by id */
    const char *owner; /* store_sweep_cancel(): who may */
    enum run_status status;
    const char *error;
    int64_t now;
};

static int sweep_end_fn(struct conn *c, void *arg)
{
    struct sweep_end *e = arg;
    sqlite3_stmt *st = conn_stmt(c, "SELECT seq, status, owner FROM sweeps WHERE seq = ?1 OR "
                                    "id = ?2");
    const char *owner;
    enum run_status status;
    int rc;

    assert(run_status_is_final(e->status));
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, e->seq);
    bind_text(st, 2, e->id ? e->id : "");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "end sweep");
    }
    e->seq = sqlite3_column_int64(st, 0);
    status = run_status_of((const char *)sqlite3_column_text(st, 1));
    owner = (const char *)sqlite3_column_text(st, 2);
    rc = e->owner && (owner == NULL || strcmp(owner, e->owner) != 0) ? ERR_PERMISSION : 0;
    sqlite3_reset(st);
    if (rc < 0)
        return rc;
    if (status != RUN_RUNNING)
        return e->id && status != e->status ? ERR_CONFLICT : 0;

    st = conn_stmt(c, "UPDATE sweeps SET status = ?, ended_at = ?, error = ? WHERE seq = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, run_status_name(e->status));
    sqlite3_bind_int64(st, 2, e->now);
    bind_text(st, 3, e->error);
    sqlite3_bind_int64(st, 4, e->seq);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    return cancel_trials(c, e->seq, e->now);
}

int store_sweep_finish(struct store *store, int64_t sweep_seq, enum run_status status,
                       const char *error, int64_t now_ms)
{
    struct sweep_end arg = { sweep_seq, NULL, NULL, status, error, now_ms };

    return store_write(store, sweep_end_fn, &arg);
}

int store_sweep_cancel(struct store *store, const char *id, const char *owner, int64_t now_ms,
                       cJSON **ret_sweep)
{
    struct sweep_end arg = { 0, id, owner, RUN_CANCELED, NULL, now_ms };
    int rc = store_write(store, sweep_end_fn, &arg);

    if (rc < 0)
        return rc;
    return store_sweep_get(store, id, ret_sweep);
}
