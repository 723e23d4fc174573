/*
 * tasks.c - what agents report about tasks (status, logs, metrics,
 * artifacts) and the run rules that follow from it (SPEC §4): a run is
 * running when its gang runs, completed by its backend's rule, and when
 * one task fails or is lost every other task is stopped and the run is
 * retried from scratch while max_retries allows, else failed.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "store/internal.h"
#include "common/banned.h"

#define LIVE_STATUSES "('assigned', 'preparing', 'running')"
#define ENDED_STATUSES "('succeeded', 'failed', 'killed', 'lost')"

int tasks_kill_live(struct conn *c, int64_t run_seq, int64_t attempt, int64_t now)
{
    /* What an agent has keeps its resources until the agent lets go. */
    sqlite3_stmt *st = conn_stmt(c, "UPDATE tasks SET status = 'killed', ended_at = ?1, "
                                    "stop_pending = (node IS NOT NULL), "
                                    "held = CASE WHEN pushed = 1 THEN held ELSE 0 END "
                                    "WHERE run_seq = ?2 AND attempt = ?3 "
                                    "AND status NOT IN " ENDED_STATUSES);

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, run_seq);
    sqlite3_bind_int64(st, 3, attempt);
    return stmt_done(c, st);
}

/* Starts attempt+1: fresh pending tasks with the same names, run queued. */
static int retry(struct conn *c, int64_t seq, const char *run_id, int64_t attempt, int64_t now,
                 const char *error)
{
    sqlite3_stmt *st;
    char reason[600];
    cJSON *data;
    int rc;

    st = conn_stmt(c, "INSERT INTO tasks(id, run_seq, attempt, ord, name, type, idx, status) "
                      "SELECT ?1 || '-a' || ?3 || '-' || name, run_seq, ?3, ord, name, type, idx, "
                      "'pending' FROM tasks WHERE run_seq = ?2 AND attempt = ?4");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, run_id);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, attempt + 1);
    sqlite3_bind_int64(st, 4, attempt);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    snprintf(reason, sizeof(reason), "retrying (attempt %lld) after: %s", (long long)attempt + 1,
             error);
    st = conn_stmt(c, "UPDATE runs SET status = 'queued', attempt = ?1, reason = ?2, "
                      "deadline = 0 WHERE seq = ?3");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, attempt + 1);
    bind_text(st, 2, reason);
    sqlite3_bind_int64(st, 3, seq);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "status", "queued");
    cJSON_AddNumberToObject(data, "attempt", (double)attempt + 1);
    cJSON_AddStringToObject(data, "error", error);
    rc = run_event(c, seq, now, "retry", data);
    cJSON_Delete(data);
    return rc;
}

static int finish_run(struct conn *c, int64_t seq, int64_t attempt, int64_t now,
                      enum run_status status, const char *error)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = tasks_kill_live(c, seq, attempt, now)) < 0)
        return rc;
    st = conn_stmt(c, "UPDATE runs SET status = ?1, error = ?2, ended_at = ?3, reason = NULL "
                      "WHERE seq = ?4");
    if (st == NULL)
        return ERR_INTERNAL;
    assert(run_status_is_final(status));
    bind_text(st, 1, run_status_name(status));
    bind_text(st, 2, error);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, seq);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    return run_status_event(c, seq, now, status, error);
}

/*
 * tasks.stopping: 0 while the run goes on; else the run is done and the
 * task is being stopped, which is not a failure: it ends killed, or, for a
 * task that only hosted the work of others (an mpi worker, whose node's
 * ranks the launcher ran and saw succeed), succeeded.
 */
enum task_stopping {
    TASK_STOPPING_NO = 0,
    TASK_STOPPING_KILLED = 1,
    TASK_STOPPING_SUCCEEDED = 2,
};

/* Asks the run's live tasks to stop; completes the run when none is live.
 * hosts_succeed: its backend's live_tasks_succeed (mpi: the workers end
 * succeeded). */
static int complete_when_stopped(struct conn *c, int64_t run_seq, int64_t attempt, int64_t now,
                                 bool hosts_succeed)
{
    sqlite3_stmt *st;
    int64_t live = 0;
    int rc;

    /* Never started on its agent: nothing to wait for. (The unary + keeps
     * SQLite on the run's index: by push state it would scan every task
     * waiting for a push.) */
    st = conn_stmt(c, "UPDATE tasks SET status = 'killed', ended_at = ?3, stop_pending = 1, "
                      "held = 0 WHERE run_seq = ?1 AND attempt = ?2 AND +status = 'assigned' "
                      "AND +pushed = 0");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_int64(st, 3, now);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    st = conn_stmt(c, "UPDATE tasks SET stopping = CASE WHEN ?3 AND type = 'worker' THEN ?4 "
                      "ELSE ?5 END, stop_pending = (node IS NOT NULL) WHERE run_seq = ?1 "
                      "AND attempt = ?2 AND status IN " LIVE_STATUSES " AND stopping = 0");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_int(st, 3, hosts_succeed);
    sqlite3_bind_int(st, 4, TASK_STOPPING_SUCCEEDED);
    sqlite3_bind_int(st, 5, TASK_STOPPING_KILLED);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    st = conn_stmt(c, "SELECT count(*) FROM tasks WHERE run_seq = ? AND attempt = ? "
                      "AND status IN " LIVE_STATUSES);
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    sqlite3_bind_int64(st, 2, attempt);
    if (sqlite3_step(st) == SQLITE_ROW)
        live = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (live > 0)
        return 0;
    return finish_run(c, run_seq, attempt, now, RUN_COMPLETED, NULL);
}

int run_evaluate(struct conn *c, int64_t run_seq, int64_t now)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT id, status, attempt, spec FROM runs WHERE seq = ?");
    char run_id[64];
    int status;
    char error[512] = "";
    struct run_shape shape;
    const struct backend_rules *rules;
    struct task_tally tally;
    struct run_spec spec;
    int64_t attempt;
    int64_t max_retries;
    bool all_running = true;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return ERR_NOT_FOUND;
    }
    snprintf(run_id, sizeof(run_id), "%s", sqlite3_column_text(st, 0));
    attempt = sqlite3_column_int64(st, 2);
    status = run_status_parse((const char *)sqlite3_column_text(st, 1));
    if (status != RUN_STARTING && status != RUN_RUNNING) {
        sqlite3_reset(st);
        return 0;
    }
    rc = run_spec_parse((const char *)sqlite3_column_text(st, 3), &spec);
    sqlite3_reset(st);
    if (rc < 0) {
        log_error("store: run %s has a spec that is not a canonical run spec", run_id);
        return ERR_INTERNAL;
    }
    shape = spec.shape;
    rules = backend_rules(shape.backend);
    max_retries = spec.max_retries;
    run_spec_release(&spec);

    st = conn_stmt(c, "SELECT name, type, status, exit_code, message FROM tasks "
                      "WHERE run_seq = ? AND attempt = ? ORDER BY ord");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    sqlite3_bind_int64(st, 2, attempt);
    memset(&tally, 0, sizeof(tally));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int type = task_type_parse((const char *)sqlite3_column_text(st, 1));
        int ts = task_status_parse((const char *)sqlite3_column_text(st, 2));
        const char *message = (const char *)sqlite3_column_text(st, 4);
        bool ok = ts == TASK_SUCCEEDED;

        assert(type >= 0 && ts >= 0);
        if (!task_type_decides((enum task_type)type))
            continue;
        if (error[0] == '\0' && (ts == TASK_FAILED || ts == TASK_LOST)) {
            if (ts == TASK_LOST)
                snprintf(error, sizeof(error), "task %s was lost%s%s", name, message ? ": " : "",
                         message ? message : "");
            else if (sqlite3_column_type(st, 3) != SQLITE_NULL)
                snprintf(error, sizeof(error), "task %s failed with exit code %d%s%s", name,
                         sqlite3_column_int(st, 3), message ? ": " : "", message ? message : "");
            else
                snprintf(error, sizeof(error), "task %s failed%s%s", name, message ? ": " : "",
                         message ? message : "");
        }
        if (ts != TASK_RUNNING && !ok)
            all_running = false;
        tally.n[type]++;
        tally.succeeded[type] += ok;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return conn_fail(c, "evaluate run");

    if (rules->done(&shape, &tally)) {
        /* The run is done once the tasks still running (parameter servers,
         * mpi workers, an evaluator) have been stopped and have delivered
         * what they wrote: the run completes when the last one has ended. */
        return complete_when_stopped(c, run_seq, attempt, now, rules->live_tasks_succeed);
    }
    if (error[0]) {
        if (attempt <= max_retries) {
            if ((rc = tasks_kill_live(c, run_seq, attempt, now)) < 0)
                return rc;
            return retry(c, run_seq, run_id, attempt, now, error);
        }
        return finish_run(c, run_seq, attempt, now, RUN_FAILED, error);
    }
    if (status == RUN_STARTING && all_running) {
        st = conn_stmt(c, "UPDATE runs SET status = 'running' WHERE seq = ?");
        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, run_seq);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
        return run_status_event(c, run_seq, now, RUN_RUNNING, NULL);
    }
    return 0;
}

/* ---- agent reports ---- */

struct task_ref {
    int64_t seq;
    int64_t run_seq;
    int64_t attempt;
    enum task_status status;
    bool has_exit;
    int64_t log_size;
    int64_t metrics_seq;
    enum task_stopping stopping;
};

/* Loads a task and checks that node (when not "") holds it. */
static int load_task(struct conn *c, const char *id, const char *node, struct task_ref *t)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT run_seq, attempt, status, node, exit_code, log_size, "
                                    "metrics_seq, stopping, seq FROM tasks WHERE id = ?");
    const char *held_by;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "load task");
    }
    held_by = (const char *)sqlite3_column_text(st, 3);
    if (node && node[0] && (held_by == NULL || strcmp(held_by, node) != 0)) {
        sqlite3_reset(st);
        return ERR_PERMISSION;
    }
    t->run_seq = sqlite3_column_int64(st, 0);
    t->attempt = sqlite3_column_int64(st, 1);
    rc = task_status_parse((const char *)sqlite3_column_text(st, 2));
    assert(rc >= 0); /* only this program writes it */
    t->status = (enum task_status)rc;
    t->has_exit = sqlite3_column_type(st, 4) != SQLITE_NULL;
    t->log_size = sqlite3_column_int64(st, 5);
    t->metrics_seq = sqlite3_column_int64(st, 6);
    t->seq = sqlite3_column_int64(st, 8);
    /* Only this file writes it: 0, 1 or 2. */
    t->stopping = (enum task_stopping)sqlite3_column_int(st, 7);
    sqlite3_reset(st);
    return 0;
}

struct report {
    const char *id, *node;
    enum task_status status;
    const char *message;
    int exit_code;
    int64_t now;
};

/* {"task", "status", "message"}: what the agent is doing for a task. */
static int progress_event(struct conn *c, int64_t run_seq, const struct report *r)
{
    cJSON *data = cJSON_CreateObject();
    int rc;

    cJSON_AddStringToObject(data, "task", r->id);
    cJSON_AddStringToObject(data, "status", task_status_name(r->status));
    cJSON_AddStringToObject(data, "message", r->message);
    rc = run_event(c, run_seq, r->now, "progress", data);
    cJSON_Delete(data);
    return rc;
}

static int report_fn(struct conn *c, void *arg)
{
    struct report *r = arg;
    struct task_ref t;
    sqlite3_stmt *st;
    bool final = task_status_is_ended(r->status);
    int rc;

    if ((rc = load_task(c, r->id, r->node, &t)) < 0)
        return rc;
    if (t.status == TASK_PENDING)
        return ERR_CONFLICT;
    if (task_status_is_ended(t.status)) {
        /* Stopped by the server first: keep its status, record the exit;
         * the agent has let go of it, so its resources are free. */
        if (final) {
            st = conn_stmt(c, "UPDATE tasks SET held = 0, exit_code = CASE WHEN exit_code IS NULL "
                              "AND ?1 >= 0 THEN ?1 ELSE exit_code END WHERE id = ?2");
            if (st == NULL)
                return ERR_INTERNAL;
            sqlite3_bind_int(st, 1, r->exit_code);
            bind_text(st, 2, r->id);
            return stmt_done(c, st);
        }
        return 0;
    }
    /* A task stopped because its run was done ended as asked, not failed
     * (it may also have finished on its own first): killed, or succeeded
     * for an mpi worker, whose ranks succeeded (SPEC §3: killed is for
     * cancel, deadline and the gang rule). */
    if (final && t.stopping != TASK_STOPPING_NO && r->status == TASK_FAILED)
        r->status = t.stopping == TASK_STOPPING_SUCCEEDED ? TASK_SUCCEEDED : TASK_KILLED;
    st = conn_stmt(c, "UPDATE tasks SET status = ?1, pushed = 1, "
                      "started_at = CASE WHEN ?1 = 'running' AND started_at IS NULL THEN ?2 "
                      "ELSE started_at END, "
                      "ended_at = CASE WHEN ?3 THEN ?2 ELSE ended_at END, "
                      "held = CASE WHEN ?3 THEN 0 ELSE held END, "
                      "exit_code = CASE WHEN ?3 AND ?4 >= 0 THEN ?4 ELSE exit_code END, "
                      "message = COALESCE(?5, message) WHERE id = ?6");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, task_status_name(r->status));
    sqlite3_bind_int64(st, 2, r->now);
    sqlite3_bind_int(st, 3, final);
    sqlite3_bind_int(st, 4, r->exit_code);
    /* The message of a report before the end is a step the agent took
     * (pulling an image, building one): an event of the run, not the
     * task's message, which says why it ended. */
    bind_text(st, 5, final ? r->message : NULL);
    bind_text(st, 6, r->id);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    if (!final && r->message && (rc = progress_event(c, t.run_seq, r)) < 0)
        return rc;
    return run_evaluate(c, t.run_seq, r->now);
}

int store_task_report(struct store *store, const char *task_id, const char *node,
                      enum task_status status, int exit_code, const char *message, int64_t now_ms)
{
    struct report r = { task_id, node, status, message, exit_code, now_ms };

    if (!task_status_is_reportable(status))
        return ERR_INVALID;
    return store_write(store, report_fn, &r);
}

int store_task_report_async(struct store *store, const char *task_id, const char *node,
                            enum task_status status, int exit_code, const char *message,
                            int64_t now_ms, store_done_fn done, void *done_arg)
{
    struct report r = { task_id, node, status, message, exit_code, now_ms };

    if (!task_status_is_reportable(status))
        return ERR_INVALID;
    return store_write_async(store, report_fn, &r, sizeof(r), done, done_arg);
}

struct logs {
    const char *id, *node;
    int64_t offset;
    const unsigned char *data;
    size_t len;
    int64_t *log_size; /* out: after this write (or the size a gap is past) */
    int64_t max_bytes; /* the run's log quota */
};

/* What a run has stored against its quotas (runs.log_bytes, ...). */
struct run_usage {
    int64_t log_bytes;
    int64_t metric_points;
    int truncated; /* RUN_TRUNCATED_* */
};

enum run_truncated {
    RUN_TRUNCATED_LOG = 1 << 0,
    RUN_TRUNCATED_METRICS = 1 << 1,
};

static int usage_load(struct conn *c, int64_t run_seq, struct run_usage *ret_usage)
{
    sqlite3_stmt *st =
        conn_stmt(c, "SELECT log_bytes, metric_points, truncated FROM runs WHERE seq = ?");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "load run usage");
    }
    ret_usage->log_bytes = sqlite3_column_int64(st, 0);
    ret_usage->metric_points = sqlite3_column_int64(st, 1);
    ret_usage->truncated = sqlite3_column_int(st, 2);
    sqlite3_reset(st);
    return 0;
}

static int usage_add(struct conn *c, int64_t run_seq, int64_t log_bytes, int64_t points,
                     int truncated)
{
    sqlite3_stmt *st = conn_stmt(c, "UPDATE runs SET log_bytes = log_bytes + ?1, "
                                    "metric_points = metric_points + ?2, "
                                    "truncated = truncated | ?3 WHERE seq = ?4");

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, log_bytes);
    sqlite3_bind_int64(st, 2, points);
    sqlite3_bind_int(st, 3, truncated);
    sqlite3_bind_int64(st, 4, run_seq);
    return stmt_done(c, st);
}

/* Records that a quota cut what a run keeps: an event a user can see. */
static int quota_event(struct conn *c, int64_t run_seq, const char *type, const char *task_id,
                       int64_t limit)
{
    cJSON *data = cJSON_CreateObject();
    int rc;

    cJSON_AddStringToObject(data, "task", task_id);
    cJSON_AddNumberToObject(data, "limit", (double)limit);
    rc = run_event(c, run_seq, time_now_ms(), type, data);
    cJSON_Delete(data);
    return rc;
}

static int chunk_insert(struct conn *c, int64_t run_seq, const char *task_id, int64_t offset,
                        const void *data, size_t len)
{
    sqlite3_stmt *st = conn_stmt(c, "INSERT INTO log_chunks(run_seq, task_id, offset, data) "
                                    "VALUES (?, ?, ?, ?)");

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, run_seq);
    bind_text(st, 2, task_id);
    sqlite3_bind_int64(st, 3, offset);
    sqlite3_bind_blob64(st, 4, data, len, SQLITE_STATIC);
    return stmt_done(c, st);
}

static int logs_fn(struct conn *c, void *arg)
{
    struct logs *l = arg;
    struct task_ref t;
    struct run_usage u;
    sqlite3_stmt *st;
    const unsigned char *data;
    int64_t len;
    int64_t keep;
    int64_t stored;
    int truncated = 0;
    int rc;

    if ((rc = load_task(c, l->id, l->node, &t)) < 0)
        return rc;
    *l->log_size = t.log_size;
    if (l->offset > t.log_size)
        return ERR_CONFLICT;
    if (t.log_size - l->offset >= (int64_t)l->len)
        return 0;
    data = l->data + (t.log_size - l->offset);
    len = (int64_t)l->len - (t.log_size - l->offset);
    if ((rc = usage_load(c, t.run_seq, &u)) < 0)
        return rc;
    keep = l->max_bytes - u.log_bytes;
    keep = keep < 0 ? 0 : keep < len ? keep : len;
    if (keep > 0 && (rc = chunk_insert(c, t.run_seq, l->id, t.log_size, data, (size_t)keep)) < 0)
        return rc;
    stored = keep;
    if (keep < len && !(u.truncated & RUN_TRUNCATED_LOG)) {
        /* The first bytes past the quota: one line says so, where they
         * would have been. */
        char *marker =
            xasprintf("%s[trainyard] the run's log reached its limit of %lld bytes: the "
                      "rest is not kept (trainyard server --max-log-mb)\n",
                      keep > 0 && data[keep - 1] != '\n' ? "\n" : "", (long long)l->max_bytes);

        rc = chunk_insert(c, t.run_seq, l->id, t.log_size + keep, marker, strlen(marker));
        stored += (int64_t)strlen(marker);
        free(marker);
        if (rc < 0 || (rc = quota_event(c, t.run_seq, "log_truncated", l->id, l->max_bytes)) < 0)
            return rc;
        truncated = RUN_TRUNCATED_LOG;
    }
    if ((stored > 0 || truncated) && (rc = usage_add(c, t.run_seq, stored, 0, truncated)) < 0)
        return rc;
    st = conn_stmt(c, "UPDATE tasks SET log_size = ? WHERE id = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    *l->log_size = t.log_size + len;
    sqlite3_bind_int64(st, 1, *l->log_size);
    bind_text(st, 2, l->id);
    return stmt_done(c, st);
}

int store_task_logs(struct store *store, const char *task_id, const char *node, int64_t offset,
                    const void *data, size_t len, int64_t *ret_log_size)
{
    struct logs l = {
        task_id, node, offset, data, len, ret_log_size, store_quotas(store)->max_log_bytes
    };

    return store_write(store, logs_fn, &l);
}

int store_task_logs_async(struct store *store, const char *task_id, const char *node,
                          int64_t offset, const void *data, size_t len, int64_t *ret_log_size,
                          store_done_fn done, void *done_arg)
{
    struct logs l = {
        task_id, node, offset, data, len, ret_log_size, store_quotas(store)->max_log_bytes
    };

    return store_write_async(store, logs_fn, &l, sizeof(l), done, done_arg);
}

struct metrics {
    const char *id, *node;
    int64_t seq;
    const struct store_point *points;
    size_t n;
    bool *duplicate; /* out: the batch was applied before */
    int64_t max_points; /* the run's quota */
};

/* Rollup levels: buckets of 2^4 .. 2^20 steps. */
#define ROLLUP_MIN_LEVEL 4
#define ROLLUP_MAX_LEVEL 20
#define ROLLUP_LEVEL_STEP 2

struct rollup {
    const char *name;
    size_t metric; /* its metric's index in the batch */
    int level;
    int64_t bucket;
    int64_t min_step, min_time, max_step, max_time;
    double min_value, max_value;
};

#define ROLLUP_LEVELS ((ROLLUP_MAX_LEVEL - ROLLUP_MIN_LEVEL) / ROLLUP_LEVEL_STEP + 1)

/* A metric of the batch: its summary, and where its rollups are. */
struct summary {
    const char *name;
    double last, min, max;
    int64_t count, last_step;
    size_t rollup[ROLLUP_LEVELS]; /* 1 + index of its latest bucket per level; 0: none yet */
};

/*
 * The batch's rollups, found by (metric, level, bucket) through an open
 * hash whose seed is this process's: a batch of many metrics or scattered
 * steps costs what a tidy one does (a scan of the rollups per point made a
 * batch of 10,000 names hold the writer for seconds).
 */
struct rollups {
    struct rollup *r;
    size_t n, cap;
    size_t *slot; /* 1 + index into r; 0: empty */
    size_t n_slots; /* a power of two, at least twice n */
};

static uint64_t rollup_hash(size_t metric, int level, int64_t bucket)
{
    static uint64_t seed; /* the writer thread's own */
    uint64_t x;

    if (seed == 0)
        seed = ((uint64_t)time_mono_us() * 0x9e3779b97f4a7c15ULL) | 1;
    x = seed ^ ((uint64_t)metric * 0xbf58476d1ce4e5b9ULL) ^ ((uint64_t)level << 56) ^
        (uint64_t)bucket;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t *rollup_find(struct rollups *rs, size_t metric, int level, int64_t bucket)
{
    size_t mask = rs->n_slots - 1;
    size_t i = (size_t)rollup_hash(metric, level, bucket) & mask;

    while (rs->slot[i] != 0) {
        const struct rollup *x = &rs->r[rs->slot[i] - 1];

        if (x->metric == metric && x->level == level && x->bucket == bucket)
            break;
        i = (i + 1) & mask;
    }
    return &rs->slot[i];
}

static void rollups_grow(struct rollups *rs)
{
    size_t i;

    free(rs->slot);
    rs->n_slots = rs->n_slots ? rs->n_slots * 2 : 256;
    rs->slot = xcalloc(rs->n_slots, sizeof(*rs->slot));
    for (i = 0; i < rs->n; i++)
        *rollup_find(rs, rs->r[i].metric, rs->r[i].level, rs->r[i].bucket) = i + 1;
}

/* Folds one point of metric m (index metric) into the batch's rollups.
 * Steps mostly grow, so a point usually lands in its metric's latest
 * bucket of each level; others are looked up. */
static void rollup_add(struct rollups *rs, struct summary *m, size_t metric, int64_t step,
                       int64_t time, double value)
{
    int l;

    for (l = 0; l < ROLLUP_LEVELS; l++) {
        int level = ROLLUP_MIN_LEVEL + l * ROLLUP_LEVEL_STEP;
        int64_t bucket = step >> level;
        size_t i = m->rollup[l];
        size_t *slot = NULL;

        if (i == 0 || rs->r[i - 1].bucket != bucket) {
            if (2 * (rs->n + 1) > rs->n_slots)
                rollups_grow(rs);
            slot = rollup_find(rs, metric, level, bucket);
            i = *slot;
        }
        if (i > 0) {
            struct rollup *x = &rs->r[i - 1];

            if (value < x->min_value) {
                x->min_value = value;
                x->min_step = step;
                x->min_time = time;
            }
            if (value > x->max_value) {
                x->max_value = value;
                x->max_step = step;
                x->max_time = time;
            }
            m->rollup[l] = i;
            continue;
        }
        if (rs->n == rs->cap) {
            rs->cap = rs->cap ? rs->cap * 2 : 64;
            rs->r = xrealloc(rs->r, rs->cap * sizeof(*rs->r));
        }
        rs->r[rs->n] =
            (struct rollup){ m->name, metric, level, bucket, step, time, step, time, value, value };
        rs->n++;
        *slot = rs->n;
        m->rollup[l] = rs->n;
    }
}

static int rollups_write(struct conn *c, int64_t run_seq, const struct rollup *r, size_t n)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        sqlite3_stmt *st = conn_stmt(
            c, "INSERT INTO metric_rollups(run_seq, name, level, bucket, min_step, min_time, "
               "min_value, max_step, max_time, max_value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
               "?9, ?10) ON CONFLICT(run_seq, name, level, bucket) DO UPDATE SET "
               "min_step = CASE WHEN ?7 < min_value THEN ?5 ELSE min_step END, "
               "min_time = CASE WHEN ?7 < min_value THEN ?6 ELSE min_time END, "
               "min_value = min(min_value, ?7), "
               "max_step = CASE WHEN ?10 > max_value THEN ?8 ELSE max_step END, "
               "max_time = CASE WHEN ?10 > max_value THEN ?9 ELSE max_time END, "
               "max_value = max(max_value, ?10)");

        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, run_seq);
        bind_text(st, 2, r[i].name);
        sqlite3_bind_int(st, 3, r[i].level);
        sqlite3_bind_int64(st, 4, r[i].bucket);
        sqlite3_bind_int64(st, 5, r[i].min_step);
        sqlite3_bind_int64(st, 6, r[i].min_time);
        sqlite3_bind_double(st, 7, r[i].min_value);
        sqlite3_bind_int64(st, 8, r[i].max_step);
        sqlite3_bind_int64(st, 9, r[i].max_time);
        sqlite3_bind_double(st, 10, r[i].max_value);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    return 0;
}

struct name_ref {
    const char *name;
    size_t pos;
};

static int name_ref_cmp(const void *a, const void *b)
{
    const struct name_ref *x = a;
    const struct name_ref *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Numbers the batch's metrics by sorting the points' names (n log n, not a
 * scan of the metrics per point): ids[i] is point i's metric; returns how
 * many metrics there are. */
static size_t metric_ids(const struct store_point *p, size_t n, size_t *ids)
{
    struct name_ref *refs = xcalloc(n + 1, sizeof(*refs));
    size_t k = 0;
    size_t i;

    for (i = 0; i < n; i++)
        refs[i] = (struct name_ref){ p[i].name, i };
    qsort(refs, n, sizeof(*refs), name_ref_cmp);
    for (i = 0; i < n; i++) {
        if (i > 0 && strcmp(refs[i - 1].name, refs[i].name) != 0)
            k++;
        ids[refs[i].pos] = k;
    }
    free(refs);
    return n > 0 ? k + 1 : 0;
}

/* Folds one point into its metric's summary (one upsert per metric per
 * batch, not per point). */
static void summary_add(struct summary *s, const char *name, int64_t step, double value)
{
    if (s->count == 0)
        *s = (struct summary){
            .name = name, .last = value, .min = value, .max = value, .count = 0, .last_step = step
        };
    s->last = value;
    s->last_step = step;
    s->min = value < s->min ? value : s->min;
    s->max = value > s->max ? value : s->max;
    s->count++;
}

static int summaries_write(struct conn *c, int64_t run_seq, const struct summary *s, size_t n)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        sqlite3_stmt *st = conn_stmt(
            c, "INSERT INTO metric_summary(run_seq, name, last, min, max, count, last_step) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(run_seq, name) DO UPDATE SET "
               "last = ?3, min = min(min, ?4), max = max(max, ?5), count = count + ?6, "
               "last_step = ?7");

        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, run_seq);
        bind_text(st, 2, s[i].name);
        sqlite3_bind_double(st, 3, s[i].last);
        sqlite3_bind_double(st, 4, s[i].min);
        sqlite3_bind_double(st, 5, s[i].max);
        sqlite3_bind_int64(st, 6, s[i].count);
        sqlite3_bind_int64(st, 7, s[i].last_step);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    return 0;
}

/* Points go in 32 to a statement: a statement's fixed cost was about half
 * of a point's. */
#define POINT_ROW "(?,?,?,?,?,?)"
#define POINT_ROWS_4 POINT_ROW "," POINT_ROW "," POINT_ROW "," POINT_ROW
#define POINT_ROWS_16 POINT_ROWS_4 "," POINT_ROWS_4 "," POINT_ROWS_4 "," POINT_ROWS_4
#define POINTS_PER_INSERT 32
#define POINTS_INSERT                                                                              \
    "INSERT INTO metric_points(run_seq, name, step, time, value, task_seq) VALUES "

static int points_insert(struct conn *c, const struct task_ref *t, const struct store_point *p,
                         size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k = n - i >= POINTS_PER_INSERT ? POINTS_PER_INSERT : 1;
        sqlite3_stmt *st = conn_stmt(c, k > 1 ? POINTS_INSERT POINT_ROWS_16 "," POINT_ROWS_16
                                              : POINTS_INSERT POINT_ROW);
        size_t j;
        int rc;

        if (st == NULL)
            return ERR_INTERNAL;
        for (j = 0; j < k; j++, i++) {
            int b = (int)j * 6;

            /* The name outlives the step: bound without a copy. */
            sqlite3_bind_int64(st, b + 1, t->run_seq);
            sqlite3_bind_text(st, b + 2, p[i].name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, b + 3, p[i].step);
            sqlite3_bind_int64(st, b + 4, p[i].time);
            sqlite3_bind_double(st, b + 5, p[i].value);
            sqlite3_bind_int64(st, b + 6, t->seq);
        }
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    return 0;
}

static int metrics_fn(struct conn *c, void *arg)
{
    struct metrics *m = arg;
    struct task_ref t;
    struct run_usage u;
    int64_t room;
    size_t n;
    int truncated = 0;
    size_t i;
    sqlite3_stmt *st;
    struct rollups rs = { 0 };
    struct summary *sums;
    size_t *ids;
    size_t n_sums;
    int rc;

    if ((rc = load_task(c, m->id, m->node, &t)) < 0)
        return rc;
    if (m->seq <= t.metrics_seq) {
        *m->duplicate = true;
        return 0;
    }
    if ((rc = usage_load(c, t.run_seq, &u)) < 0)
        return rc;
    room = m->max_points - u.metric_points;
    n = room <= 0 ? 0 : (size_t)room < m->n ? (size_t)room : m->n;
    if (n < m->n && !(u.truncated & RUN_TRUNCATED_METRICS)) {
        if ((rc = quota_event(c, t.run_seq, "metrics_truncated", m->id, m->max_points)) < 0)
            return rc;
        truncated = RUN_TRUNCATED_METRICS;
    }
    if ((n > 0 || truncated) && (rc = usage_add(c, t.run_seq, 0, (int64_t)n, truncated)) < 0)
        return rc;
    if ((rc = points_insert(c, &t, m->points, n)) < 0)
        return rc;
    ids = xcalloc(n + 1, sizeof(*ids));
    n_sums = metric_ids(m->points, n, ids);
    sums = xcalloc(n_sums + 1, sizeof(*sums));
    for (i = 0; i < n; i++) {
        const struct store_point *p = &m->points[i];

        summary_add(&sums[ids[i]], p->name, p->step, p->value);
        rollup_add(&rs, &sums[ids[i]], ids[i], p->step, p->time, p->value);
    }
    free(ids);
    rc = summaries_write(c, t.run_seq, sums, n_sums);
    free(sums);
    if (rc == 0)
        rc = rollups_write(c, t.run_seq, rs.r, rs.n);
    free(rs.r);
    free(rs.slot);
    if (rc < 0)
        return rc;
    st = conn_stmt(c, "UPDATE tasks SET metrics_seq = ? WHERE id = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, m->seq);
    bind_text(st, 2, m->id);
    return stmt_done(c, st);
}

int store_task_metrics(struct store *store, const char *task_id, const char *node, int64_t seq,
                       const struct store_point *points, size_t n, bool *ret_duplicate)
{
    struct metrics m = {
        task_id, node, seq, points, n, ret_duplicate, store_quotas(store)->max_metric_points
    };

    *ret_duplicate = false;
    return store_write(store, metrics_fn, &m);
}

int store_task_metrics_async(struct store *store, const char *task_id, const char *node,
                             int64_t seq, const struct store_point *points, size_t n,
                             bool *ret_duplicate, store_done_fn done, void *done_arg)
{
    struct metrics m = {
        task_id, node, seq, points, n, ret_duplicate, store_quotas(store)->max_metric_points
    };

    *ret_duplicate = false;
    return store_write_async(store, metrics_fn, &m, sizeof(m), done, done_arg);
}

int store_task_owner(struct store *store, const char *task_id, const char *node, char *ret_run_id,
                     size_t run_id_size, char *ret_task_name, size_t name_size)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    const char *held_by;
    int rc;

    if (c == NULL || (st = conn_stmt(c, "SELECT r.id, t.name, t.node FROM tasks t "
                                        "JOIN runs r ON r.seq = t.run_seq WHERE t.id = ?")) == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, task_id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "task owner");
    }
    held_by = (const char *)sqlite3_column_text(st, 2);
    if (node && node[0] && (held_by == NULL || strcmp(held_by, node) != 0)) {
        sqlite3_reset(st);
        return ERR_PERMISSION;
    }
    snprintf(ret_run_id, run_id_size, "%s", sqlite3_column_text(st, 0));
    snprintf(ret_task_name, name_size, "%s", sqlite3_column_text(st, 1));
    sqlite3_reset(st);
    return 0;
}

struct artifact {
    const char *task_id, *path;
    int64_t size;
};

static int artifact_fn(struct conn *c, void *arg)
{
    struct artifact *a = arg;
    sqlite3_stmt *st = conn_stmt(c, "INSERT OR REPLACE INTO artifacts(run_seq, task, path, size) "
                                    "SELECT run_seq, name, ?, ? FROM tasks WHERE id = ?");

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, a->path);
    sqlite3_bind_int64(st, 2, a->size);
    bind_text(st, 3, a->task_id);
    return stmt_done(c, st);
}

int store_artifact_put(struct store *store, const char *task_id, const char *path, int64_t size)
{
    struct artifact a = { task_id, path, size };

    return store_write(store, artifact_fn, &a);
}
