/*
 * sched.c - what the scheduler writes: the placements, reasons, what
 * agents made of assignments and stops, and the time-driven rules (nodes
 * going down, run deadlines). What it reads is its state in memory
 * (scheduler/mirror.c, from store/mirror.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend.h"
#include "common/err.h"
#include "common/json.h"
#include "common/metrics.h"
#include "common/xalloc.h"
#include "store/internal.h"
#include "common/banned.h"

#define LIVE "('assigned', 'preparing', 'running')"

void sched_node_use_port(struct sched_node *n, int port)
{
    if (n->n_used_ports == n->cap_used_ports) {
        n->cap_used_ports = n->cap_used_ports ? 2 * n->cap_used_ports : 4;
        n->used_ports = xrealloc(n->used_ports, (size_t)n->cap_used_ports * sizeof(int));
    }
    n->used_ports[n->n_used_ports++] = port;
}

static void nodes_release(struct sched_node *nodes, int n)
{
    int i;
    int k;

    for (i = 0; i < n; i++) {
        free(nodes[i].name);
        free(nodes[i].pool);
        free(nodes[i].host);
        free(nodes[i].agent_url);
        free(nodes[i].used_ports);
        for (k = 0; k < 2 * nodes[i].n_labels; k++)
            free(nodes[i].labels[k]);
        free(nodes[i].labels);
    }
    free(nodes);
}

void store_sched_state_release(struct sched_state *state)
{
    int i;

    nodes_release(state->nodes, state->n_nodes);
    nodes_release(state->absent, state->n_absent);
    state->absent = NULL;
    state->n_absent = 0;
    for (i = 0; i < state->n_other_ports; i++)
        free(state->other_ports[i].host);
    free(state->other_ports);
    state->other_ports = NULL;
    state->n_other_ports = 0;
    for (i = 0; i < state->n_runs; i++) {
        if (state->runs[i].release)
            state->runs[i].release(state->runs[i].owned);
    }
    free(state->runs);
    state->nodes = NULL;
    state->n_nodes = 0;
    state->runs = NULL;
    state->n_runs = 0;
}

void sched_placements_init(struct sched_placements *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->text);
}

void sched_placements_release(struct sched_placements *p)
{
    free(p->runs);
    free(p->tasks);
    free(p->reasons);
    buf_release(&p->text);
    memset(p, 0, sizeof(*p));
}

size_t sched_text_add(struct sched_placements *p, const char *s, size_t len)
{
    size_t off = p->text.len;

    buf_add(&p->text, s, len);
    buf_addc(&p->text, '\0');
    return off;
}

const char *sched_text(const struct sched_placements *p, size_t off)
{
    return p->text.data + off;
}

struct place {
    const struct sched_placements *pl;
    int64_t now;
};

static int place_fn(struct conn *c, void *arg)
{
    struct place *p = arg;
    const struct sched_placements *pl = p->pl;
    size_t r;
    size_t i;
    int rc;

    for (r = 0; r < pl->n_runs; r++) {
        const struct sched_run_place *run = &pl->runs[r];
        sqlite3_stmt *st = conn_stmt(c, "SELECT seq FROM runs WHERE id = ? AND "
                                        "status = 'queued'");
        int64_t seq;
        cJSON *data;

        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, run->run);
        if (sqlite3_step(st) != SQLITE_ROW) {
            /* Canceled meanwhile: nothing to place. */
            sqlite3_reset(st);
            continue;
        }
        seq = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);

        for (i = run->first; i < run->first + run->n; i++) {
            const struct sched_task_place *t = &pl->tasks[i];

            st = conn_stmt(c, "UPDATE tasks SET status = 'assigned', node = ?, gpus = ?, "
                              "port = ?, address = ?, cpus = ?, memory_mb = ?, argv = ?, "
                              "env = ?, assigned_at = ?, pushed = 0, push_fails = 0, held = 1 "
                              "WHERE id = ? AND status = 'pending'");
            if (st == NULL)
                return ERR_INTERNAL;
            /* The texts outlive the step: bound without a copy. */
            bind_text(st, 1, t->node);
            sqlite3_bind_text(st, 2, sched_text(pl, t->gpus), -1, SQLITE_STATIC);
            if (t->port) {
                sqlite3_bind_int(st, 3, t->port);
                sqlite3_bind_text(st, 4, sched_text(pl, t->address), -1, SQLITE_STATIC);
            } else {
                sqlite3_bind_null(st, 3);
                sqlite3_bind_null(st, 4);
            }
            sqlite3_bind_double(st, 5, t->cpus);
            sqlite3_bind_int64(st, 6, t->memory_mb);
            sqlite3_bind_text(st, 7, sched_text(pl, t->argv), -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 8, sched_text(pl, t->env), -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 9, p->now);
            bind_text(st, 10, t->id);
            if ((rc = stmt_done(c, st)) < 0)
                return rc;
        }
        st = conn_stmt(c, "UPDATE runs SET status = 'starting', reason = NULL, "
                          "unschedulable_since = NULL, "
                          "started_at = COALESCE(started_at, ?1), deadline = ?2 WHERE seq = ?3");
        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, p->now);
        sqlite3_bind_int64(st, 2,
                           run->max_duration_s > 0 ? p->now + run->max_duration_s * 1000 : 0);
        sqlite3_bind_int64(st, 3, seq);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
        data = cJSON_CreateObject();
        cJSON_AddStringToObject(data, "status", "starting");
        rc = run_event(c, seq, p->now, "status", data);
        cJSON_Delete(data);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int store_sched_place(struct store *store, const struct sched_placements *placements,
                      int64_t now_ms)
{
    struct place p = { placements, now_ms };

    return store_write(store, place_fn, &p);
}

struct reasons {
    const struct sched_placements *p;
    int64_t now;
};

static int reasons_fn(struct conn *c, void *arg)
{
    const struct reasons *rs = arg;
    size_t i;
    int rc;

    for (i = 0; i < rs->p->n_reasons; i++) {
        const struct sched_reason *r = &rs->p->reasons[i];
        /* unschedulable_since: kept while the run stays unschedulable
         * (whatever the words), cleared when it merely waits. */
        sqlite3_stmt *st = conn_stmt(
            c, "UPDATE runs SET reason = ?1, unschedulable_since = CASE WHEN "
               "substr(?1, 1, 14) = 'unschedulable:' THEN COALESCE(unschedulable_since, ?3) "
               "END WHERE id = ?2 AND status = 'queued' AND reason IS NOT ?1");

        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, sched_text(rs->p, r->reason));
        bind_text(st, 2, r->run);
        sqlite3_bind_int64(st, 3, rs->now);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    return 0;
}

int store_sched_reasons(struct store *store, const struct sched_placements *p, int64_t now_ms)
{
    struct reasons rs = { p, now_ms };

    if (p->n_reasons == 0)
        return 0;
    return store_write(store, reasons_fn, &rs);
}

struct unschedulable {
    int64_t now, timeout;
    int failed;
};

static int unschedulable_fn(struct conn *c, void *arg)
{
    struct unschedulable *u = arg;
    sqlite3_stmt *st;
    int rc;

    /* One run at a time: each one failed leaves the query. */
    for (;;) {
        int64_t seq;
        int64_t attempt;
        char *error;

        st = conn_stmt(c, "SELECT seq, attempt, reason FROM runs WHERE unschedulable_since "
                          "IS NOT NULL AND unschedulable_since <= ? AND status = 'queued' "
                          "LIMIT 1");
        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, u->now - u->timeout);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(st);
            return rc == SQLITE_DONE ? 0 : conn_fail(c, "unschedulable runs");
        }
        seq = sqlite3_column_int64(st, 0);
        attempt = sqlite3_column_int64(st, 1);
        error = xstrdup(sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2)
                                                   : "unschedulable");
        sqlite3_reset(st);
        /* Its tasks never started: they fail with it (killed is for
         * cancel, deadline and the gang rule). */
        st = conn_stmt(c, "UPDATE tasks SET status = 'failed', ended_at = ?1 "
                          "WHERE run_seq = ?2 AND attempt = ?3 AND status = 'pending'");
        if (st == NULL) {
            free(error);
            return ERR_INTERNAL;
        }
        sqlite3_bind_int64(st, 1, u->now);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int64(st, 3, attempt);
        if ((rc = stmt_done(c, st)) < 0) {
            free(error);
            return rc;
        }
        st = conn_stmt(c, "UPDATE runs SET status = 'failed', error = ?1, ended_at = ?2, "
                          "reason = NULL, unschedulable_since = NULL WHERE seq = ?3");
        if (st == NULL) {
            free(error);
            return ERR_INTERNAL;
        }
        bind_text(st, 1, error);
        sqlite3_bind_int64(st, 2, u->now);
        sqlite3_bind_int64(st, 3, seq);
        rc = stmt_done(c, st);
        if (rc == 0)
            rc = run_status_event(c, seq, u->now, RUN_FAILED, error);
        free(error);
        if (rc < 0)
            return rc;
        u->failed++;
    }
}

int store_sched_unschedulable(struct store *store, int64_t now_ms, int64_t timeout_ms,
                              int *ret_failed)
{
    struct unschedulable u = { now_ms, timeout_ms, 0 };
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    int rc;

    /* Every pass asks; a write (a turn of the writer, with its commit)
     * only when a run is due, which a read on the partial index tells. */
    *ret_failed = 0;
    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    st = conn_stmt(c, "SELECT 1 FROM runs WHERE unschedulable_since IS NOT NULL "
                      "AND unschedulable_since <= ? AND status = 'queued' LIMIT 1");
    if (st == NULL) {
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    sqlite3_bind_int64(st, 1, now_ms - timeout_ms);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        rc = conn_fail(c, "unschedulable runs");
    sqlite3_reset(st);
    conn_end_read(c);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : rc;
    rc = store_write(store, unschedulable_fn, &u);
    *ret_failed = rc < 0 ? 0 : u.failed;
    return rc;
}

struct push_failed {
    const char *id, *error;
    int64_t now;
};

/* After this many failed pushes the task fails and the gang rule applies. */
#define MAX_PUSH_FAILS 5

static int push_failed_fn(struct conn *c, void *arg)
{
    struct push_failed *p = arg;
    sqlite3_stmt *st;
    int64_t seq;
    int fails;
    int rc;

    st = conn_stmt(c, "UPDATE tasks SET push_fails = push_fails + 1 WHERE id = ? "
                      "AND status = 'assigned' RETURNING push_fails, run_seq");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, p->id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return 0;
    }
    fails = sqlite3_column_int(st, 0);
    seq = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if (fails < MAX_PUSH_FAILS)
        return 0;
    st = conn_stmt(c, "UPDATE tasks SET status = 'failed', ended_at = ?, message = ? "
                      "WHERE id = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, p->now);
    bind_text(st, 2, p->error ? p->error : "the agent did not accept the task");
    bind_text(st, 3, p->id);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    return run_evaluate(c, seq, p->now);
}

struct pushed_ok {
    const char *const *ids;
    size_t n;
};

static int pushed_ok_fn(struct conn *c, void *arg)
{
    struct pushed_ok *p = arg;
    size_t i;
    int rc;

    for (i = 0; i < p->n; i++) {
        sqlite3_stmt *st = conn_stmt(c, "UPDATE tasks SET pushed = 1 WHERE id = ?");

        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, p->ids[i]);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    return 0;
}

int store_sched_pushed_ok(struct store *store, const char *const *task_ids, size_t n)
{
    struct pushed_ok p = { task_ids, n };

    return n == 0 ? 0 : store_write(store, pushed_ok_fn, &p);
}

int store_sched_push_failed(struct store *store, const char *task_id, const char *error,
                            int64_t now_ms)
{
    struct push_failed p = { task_id, error, now_ms };

    return store_write(store, push_failed_fn, &p);
}

struct stopped {
    const char *id;
    bool gone;
};

static int stopped_fn(struct conn *c, void *arg)
{
    struct stopped *s = arg;
    sqlite3_stmt *st = conn_stmt(c, "UPDATE tasks SET stop_pending = 0, "
                                    "held = CASE WHEN ?2 AND status NOT IN " LIVE
                                    " THEN 0 ELSE held END WHERE id = ?1");

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, s->id);
    sqlite3_bind_int(st, 2, s->gone);
    return stmt_done(c, st);
}

int store_sched_stopped(struct store *store, const char *task_id, bool gone)
{
    struct stopped s = { task_id, gone };

    return store_write(store, stopped_fn, &s);
}

/* Marks the live tasks of node lost with message and applies the run
 * rules; with only_pushed, tasks its agent never accepted are kept (they
 * are pushed again, to the agent's new address). */
static int lose_node_tasks(struct conn *c, const char *node, const char *message, int64_t now,
                           bool only_pushed, bool *changed)
{
    sqlite3_stmt *st = conn_stmt(c, "UPDATE tasks SET status = 'lost', ended_at = ?, message = ?, "
                                    "held = 0 WHERE node = ? AND status IN " LIVE
                                    " AND (pushed = 1 OR NOT ?4) RETURNING run_seq");
    int64_t *seqs = NULL;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, now);
    bind_text(st, 2, message);
    bind_text(st, 3, node);
    sqlite3_bind_int(st, 4, only_pushed);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            seqs = xrealloc(seqs, cap * sizeof(*seqs));
        }
        seqs[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(seqs);
        return conn_fail(c, "lose tasks");
    }
    /* Evaluating a run twice (several of its tasks were here) is harmless. */
    for (i = 0; i < n; i++) {
        if ((rc = run_evaluate(c, seqs[i], now)) < 0) {
            free(seqs);
            return rc;
        }
        *changed = true;
    }
    free(seqs);
    /* Stopped tasks whose agent is gone hold nothing any more either. */
    st = conn_stmt(c,
                   "UPDATE tasks SET held = 0 WHERE node = ? AND held = 1 AND status NOT IN " LIVE);
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, node);
    return stmt_done(c, st);
}

struct expire {
    struct store *store;
    int64_t now, timeout;
    bool changed;
    int lost; /* nodes marked down */
};

static int expire_fn(struct conn *c, void *arg)
{
    struct expire *e = arg;
    sqlite3_stmt *st;
    int64_t seqs[64];
    int n = 0;
    int i;
    int rc;

    /* Heartbeats kept in memory count: write them first. */
    if ((rc = store_seen_flush(e->store, c)) < 0)
        return rc;
    st = conn_stmt(c, "UPDATE nodes SET state = 'down' WHERE state != 'down' "
                      "AND last_heartbeat < ?");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, e->now - e->timeout);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    e->lost = sqlite3_changes(c->db);
    /* Every down node that still has live tasks, one at a time, however
     * many went down at once. */
    for (;;) {
        char message[256];
        char name[129];

        st = conn_stmt(c, "SELECT t.node FROM tasks t JOIN nodes n ON n.name = t.node "
                          "WHERE n.state = 'down' AND t.status IN " LIVE " LIMIT 1");
        if (st == NULL)
            return ERR_INTERNAL;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(st);
            if (rc != SQLITE_DONE)
                return conn_fail(c, "expire nodes");
            break;
        }
        snprintf(name, sizeof(name), "%s", sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        snprintf(message, sizeof(message), "node %.128s stopped sending heartbeats", name);
        e->changed = true;
        if ((rc = lose_node_tasks(c, name, message, e->now, false, &e->changed)) < 0)
            return rc;
    }

    /* Past-deadline runs, a batch at a time until none is left. */
again:
    n = 0;
    st = conn_stmt(c, "SELECT seq FROM runs WHERE status IN ('starting', 'running') "
                      "AND deadline > 0 AND deadline < ? LIMIT 64");
    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, e->now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n < 64)
            seqs[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return conn_fail(c, "expire runs");
    for (i = 0; i < n; i++) {
        st = conn_stmt(c, "SELECT attempt, spec FROM runs WHERE seq = ?");
        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, seqs[i]);
        if (sqlite3_step(st) == SQLITE_ROW) {
            int64_t attempt = sqlite3_column_int64(st, 0);
            cJSON *spec = json_parse_trusted((const char *)sqlite3_column_text(st, 1));
            char error[128];
            sqlite3_stmt *up;

            snprintf(error, sizeof(error), "the run exceeded max_run_duration_seconds (%.0f s)",
                     json_get(spec, "max_run_duration_seconds")->valuedouble);
            cJSON_Delete(spec);
            sqlite3_reset(st);
            if ((rc = tasks_kill_live(c, seqs[i], attempt, e->now)) < 0)
                return rc;
            up = conn_stmt(c, "UPDATE runs SET status = 'failed', error = ?, ended_at = ? "
                              "WHERE seq = ?");
            if (up == NULL)
                return ERR_INTERNAL;
            bind_text(up, 1, error);
            sqlite3_bind_int64(up, 2, e->now);
            sqlite3_bind_int64(up, 3, seqs[i]);
            if ((rc = stmt_done(c, up)) < 0 ||
                (rc = run_status_event(c, seqs[i], e->now, RUN_FAILED, error)) < 0)
                return rc;
            e->changed = true;
        } else {
            sqlite3_reset(st);
        }
    }
    if (n == 64)
        goto again; /* each run handled left the query: this ends */
    return 0;
}

int store_sched_expire(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                       bool *ret_changed)
{
    struct expire e = { store, now_ms, node_timeout_ms, false, 0 };
    int rc = store_write(store, expire_fn, &e);

    if (rc == 0) {
        *ret_changed = e.changed;
        if (e.lost > 0)
            metrics_nodes_lost((uint64_t)e.lost);
    }
    return rc;
}

struct restarted {
    const char *name;
    int64_t now;
};

static int restarted_fn(struct conn *c, void *arg)
{
    struct restarted *r = arg;
    char message[256];
    bool changed = false;

    snprintf(message, sizeof(message), "the agent on node %s restarted", r->name);
    return lose_node_tasks(c, r->name, message, r->now, true, &changed);
}

int store_node_restarted(struct store *store, const char *name, int64_t now_ms)
{
    struct restarted r = { name, now_ms };

    return store_write(store, restarted_fn, &r);
}
