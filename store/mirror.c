/*
 * mirror.c - the rows the scheduler keeps in memory (scheduler/mirror.c),
 * read whole at its start and then by the rowids each commit changed
 * (store_changes_take() in store.c).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/xalloc.h"
#include "store/internal.h"
#include "common/banned.h"

#define RUN_COLUMNS                                                                                \
    "seq, id, experiment, status, priority, attempt, pool, reason, "                               \
    "COALESCE(unschedulable_since, 0), deadline"
#define TASK_COLUMNS                                                                               \
    "seq, id, run_seq, attempt, ord, name, type, idx, node, address, cpus, memory_mb, gpus, "      \
    "COALESCE(port, 0), argv, env, status, pushed, stop_pending, stopping, held"
#define NODE_COLUMNS                                                                               \
    "seq, name, pool, agent_url, secret, gpus, labels, features, state, cpus, memory_mb, "         \
    "port_min, port_max, last_heartbeat"

static const char *text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

static void run_row(sqlite3_stmt *st, const struct store_mirror_fns *fns)
{
    struct store_run_row r = {
        .seq = sqlite3_column_int64(st, 0),
        .id = text(st, 1),
        .experiment = text(st, 2),
        .status = run_status_of(text(st, 3)),
        .priority = sqlite3_column_int64(st, 4),
        .attempt = sqlite3_column_int64(st, 5),
        .pool = text(st, 6),
        .reason = text(st, 7),
        .unschedulable_since = sqlite3_column_int64(st, 8),
        .deadline = sqlite3_column_int64(st, 9),
    };

    fns->run(fns->arg, r.seq, &r);
}

static void task_row(sqlite3_stmt *st, const struct store_mirror_fns *fns)
{
    int type = task_type_parse(text(st, 6));
    int status = task_status_parse(text(st, 16));
    struct store_task_row t = {
        .seq = sqlite3_column_int64(st, 0),
        .id = text(st, 1),
        .run_seq = sqlite3_column_int64(st, 2),
        .attempt = sqlite3_column_int64(st, 3),
        .ord = sqlite3_column_int(st, 4),
        .name = text(st, 5),
        .type = type < 0 ? TASK_MAIN : (enum task_type)type,
        .index = sqlite3_column_int(st, 7),
        .node = text(st, 8),
        .address = text(st, 9),
        .cpus = sqlite3_column_double(st, 10),
        .memory_mb = sqlite3_column_int64(st, 11),
        .gpus = text(st, 12),
        .port = sqlite3_column_int(st, 13),
        .argv = text(st, 14),
        .env = text(st, 15),
        .status = status < 0 ? TASK_FAILED : (enum task_status)status,
        .pushed = sqlite3_column_int(st, 17) != 0,
        .stop_pending = sqlite3_column_int(st, 18) != 0,
        .stopping = sqlite3_column_int(st, 19) != 0,
        .held = sqlite3_column_int(st, 20) != 0,
    };

    assert(type >= 0 && status >= 0);
    fns->task(fns->arg, t.seq, &t);
}

static void node_row(sqlite3_stmt *st, const struct store_mirror_fns *fns)
{
    struct store_node_row n = {
        .seq = sqlite3_column_int64(st, 0),
        .name = text(st, 1),
        .pool = text(st, 2),
        .agent_url = text(st, 3),
        .secret = text(st, 4),
        .gpus = text(st, 5),
        .labels = text(st, 6),
        .features = text(st, 7),
        .state = text(st, 8),
        .cpus = sqlite3_column_double(st, 9),
        .memory_mb = sqlite3_column_int64(st, 10),
        .port_min = sqlite3_column_int(st, 11),
        .port_max = sqlite3_column_int(st, 12),
        .last_heartbeat = sqlite3_column_int64(st, 13),
    };

    fns->node(fns->arg, n.seq, &n);
}

typedef void (*row_fn)(sqlite3_stmt *st, const struct store_mirror_fns *fns);

/* Every row of a query. */
static int read_all(struct conn *c, const char *sql, row_fn row, const struct store_mirror_fns *fns)
{
    sqlite3_stmt *st = conn_stmt(c, sql);
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        row(st, fns);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "read the scheduler's rows");
}

/* The rows of rowids, by a query with one parameter (the rowid). */
static int read_rows(struct conn *c, const char *sql, const int64_t *rowids, size_t n,
                     enum store_table table, row_fn row, const struct store_mirror_fns *fns)
{
    size_t i;

    for (i = 0; i < n; i++) {
        sqlite3_stmt *st = conn_stmt(c, sql);
        int rc;

        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, rowids[i]);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            row(st, fns);
        } else if (rc == SQLITE_DONE) {
            if (table == STORE_RUNS)
                fns->run(fns->arg, rowids[i], NULL);
            else if (table == STORE_TASKS)
                fns->task(fns->arg, rowids[i], NULL);
            else
                fns->node(fns->arg, rowids[i], NULL);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return conn_fail(c, "read a changed row");
    }
    return 0;
}

int store_mirror_read(struct store *store, const struct store_changes *which,
                      const struct store_mirror_fns *fns)
{
    struct conn *c = store_reader(store);
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    if (which == NULL) {
        rc = read_all(c, "SELECT " NODE_COLUMNS " FROM nodes", node_row, fns);
        if (rc == 0)
            rc = read_all(c,
                          "SELECT " RUN_COLUMNS " FROM runs WHERE status IN "
                          "('queued', 'starting', 'running')",
                          run_row, fns);
        /* Each condition has its index: tasks_to_push (status), tasks_held,
         * tasks_to_stop. */
        if (rc == 0)
            rc = read_all(c,
                          "SELECT " TASK_COLUMNS " FROM tasks WHERE status IN ('assigned', "
                          "'preparing', 'running') UNION SELECT " TASK_COLUMNS
                          " FROM tasks WHERE held = 1 UNION SELECT " TASK_COLUMNS
                          " FROM tasks WHERE stop_pending = 1",
                          task_row, fns);
    } else {
        rc = read_rows(c, "SELECT " NODE_COLUMNS " FROM nodes WHERE seq = ?",
                       which->rows[STORE_NODES], which->n[STORE_NODES], STORE_NODES, node_row, fns);
        if (rc == 0)
            rc = read_rows(c, "SELECT " RUN_COLUMNS " FROM runs WHERE seq = ?",
                           which->rows[STORE_RUNS], which->n[STORE_RUNS], STORE_RUNS, run_row, fns);
        if (rc == 0)
            rc = read_rows(c, "SELECT " TASK_COLUMNS " FROM tasks WHERE seq = ?",
                           which->rows[STORE_TASKS], which->n[STORE_TASKS], STORE_TASKS, task_row,
                           fns);
    }
    conn_end_read(c);
    return rc;
}

/* The pending tasks of run seq's attempt, in task order, into *tasks
 * (their ids and names in names, one after the other, until the next
 * call). The unary + keeps SQLite on tasks_by_run: by status it could
 * scan every pending task. */
static int pending_tasks(struct conn *c, int64_t seq, int64_t attempt, struct buf *names,
                         struct sched_task_in **tasks, int *cap, int *ret_n)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT id, name, type, idx FROM tasks "
                                    "WHERE run_seq = ? AND attempt = ? AND +status = 'pending' "
                                    "ORDER BY ord");
    const char *p;
    int n = 0;
    int rc;
    int i;

    if (st == NULL)
        return ERR_INTERNAL;
    buf_reset(names);
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, attempt);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int type = task_type_parse(text(st, 2));

        assert(type >= 0);
        if (n == *cap) {
            *cap = *cap ? 2 * *cap : 16;
            *tasks = xrealloc(*tasks, (size_t)*cap * sizeof(**tasks));
        }
        buf_add(names, text(st, 0), strlen(text(st, 0)) + 1);
        buf_add(names, text(st, 1), strlen(text(st, 1)) + 1);
        (*tasks)[n].type = type < 0 ? TASK_MAIN : (enum task_type)type;
        (*tasks)[n].index = sqlite3_column_int(st, 3);
        n++;
    }
    sqlite3_reset(st);
    /* Only now: names moved as it grew. */
    for (i = 0, p = names->data; i < n; i++) {
        (*tasks)[i].id = p;
        p += strlen(p) + 1;
        (*tasks)[i].name = p;
        p += strlen(p) + 1;
    }
    *ret_n = n;
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "read a run's pending tasks");
}

int store_run_specs(struct store *store, const int64_t *seqs, size_t n, bool pending,
                    void (*fn)(void *arg, int64_t seq, int64_t attempt, const char *spec,
                               const struct sched_task_in *tasks, int n_tasks),
                    void *arg)
{
    struct conn *c = store_reader(store);
    struct sched_task_in *tasks = NULL;
    struct buf names;
    int cap = 0;
    size_t i;
    int rc = 0;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    buf_init(&names);
    for (i = 0; i < n && rc == 0; i++) {
        sqlite3_stmt *st = conn_stmt(c, "SELECT spec, attempt FROM runs WHERE seq = ?");
        int n_tasks = 0;

        if (st == NULL) {
            rc = ERR_INTERNAL;
            break;
        }
        sqlite3_bind_int64(st, 1, seqs[i]);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && pending &&
            pending_tasks(c, seqs[i], sqlite3_column_int64(st, 1), &names, &tasks, &cap, &n_tasks) <
                0) {
            sqlite3_reset(st);
            rc = ERR_INTERNAL;
            break;
        }
        if (rc == SQLITE_ROW)
            fn(arg, seqs[i], sqlite3_column_int64(st, 1), text(st, 0), tasks, n_tasks);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : conn_fail(c, "read run specs");
        sqlite3_reset(st);
    }
    conn_end_read(c);
    buf_release(&names);
    free(tasks);
    return rc;
}
