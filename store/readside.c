/* readside.c - what clients read of a run: metrics, series, artifacts, logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/json.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "store/internal.h"
#include "common/banned.h"

/* The seq and status of a run; ERR_NOT_FOUND when unknown. */
static int run_seq_of(struct conn *c, const char *run_id, int64_t *ret_seq, bool *ret_ended)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT seq, status FROM runs WHERE id = ?");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, run_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *status = (const char *)sqlite3_column_text(st, 1);

        *ret_seq = sqlite3_column_int64(st, 0);
        if (ret_ended)
            *ret_ended = run_status_is_final((enum run_status)run_status_parse(status));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "find run");
    }
    sqlite3_reset(st);
    return rc;
}

/*
 * Starts a read of a run's rows: a read transaction, the run
 * (ERR_NOT_FOUND when unknown; *ret_ended, may be NULL, when it has ended)
 * and sql prepared with ?1 bound to the run's seq. On success the caller
 * ends the read (conn_end_read); on failure nothing is left open.
 */
static int run_read(struct store *store, const char *run_id, const char *sql, struct conn **ret_c,
                    int64_t *ret_seq, bool *ret_ended, sqlite3_stmt **ret_st)
{
    struct conn *c = store_reader(store);
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    if ((rc = run_seq_of(c, run_id, ret_seq, ret_ended)) < 0) {
        conn_end_read(c);
        return rc;
    }
    if ((*ret_st = conn_stmt(c, sql)) == NULL) {
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    sqlite3_bind_int64(*ret_st, 1, *ret_seq);
    *ret_c = c;
    return 0;
}

/* Builds one list item from a row. */
typedef cJSON *(*row_fn)(sqlite3_stmt *st);

/*
 * {"items": [...]} of a run: sql (one parameter, the run's seq) gives the
 * rows, row() turns each into an item. ERR_NOT_FOUND for an unknown run.
 */
static int run_items(struct store *store, const char *run_id, const char *sql, row_fn row,
                     const char *what, cJSON **ret_list)
{
    struct conn *c;
    sqlite3_stmt *st;
    cJSON *list;
    cJSON *items;
    int64_t seq;
    int rc;

    if ((rc = run_read(store, run_id, sql, &c, &seq, NULL, &st)) < 0)
        return rc;
    list = cJSON_CreateObject();
    items = cJSON_AddArrayToObject(list, "items");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cJSON_AddItemToArray(items, row(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        rc = conn_fail(c, what);
    } else {
        *ret_list = list;
        rc = 0;
    }
    conn_end_read(c);
    return rc;
}

static cJSON *metric_row(sqlite3_stmt *st)
{
    cJSON *m = cJSON_CreateObject();

    col_add_string(st, 0, m, "name");
    cJSON_AddNumberToObject(m, "last", sqlite3_column_double(st, 1));
    cJSON_AddNumberToObject(m, "min", sqlite3_column_double(st, 2));
    cJSON_AddNumberToObject(m, "max", sqlite3_column_double(st, 3));
    cJSON_AddNumberToObject(m, "count", (double)sqlite3_column_int64(st, 4));
    cJSON_AddNumberToObject(m, "last_step", (double)sqlite3_column_int64(st, 5));
    return m;
}

int store_run_metrics(struct store *store, const char *run_id, cJSON **ret_summary)
{
    return run_items(store, run_id,
                     "SELECT name, last, min, max, count, last_step FROM metric_summary "
                     "WHERE run_seq = ? ORDER BY name",
                     metric_row, "read metrics", ret_summary);
}

struct point {
    int64_t step;
    int64_t time;
    double value;
};

static void add_point(cJSON *points, const struct point *p)
{
    char when[TIME_RFC3339_LEN];
    cJSON *row = cJSON_CreateArray();

    time_format_rfc3339(p->time, when);
    cJSON_AddItemToArray(row, cJSON_CreateNumber((double)p->step));
    cJSON_AddItemToArray(row, cJSON_CreateString(when));
    cJSON_AddItemToArray(row, cJSON_CreateNumber(p->value));
    cJSON_AddItemToArray(points, row);
}

/* Emits a bucket's min and max points in step order (once when the same). */
static void emit_bucket(cJSON *points, const struct point *lo, const struct point *hi)
{
    if (lo->step == hi->step && lo->time == hi->time && lo->value == hi->value) {
        add_point(points, lo);
    } else if (lo->step < hi->step || (lo->step == hi->step && lo->time <= hi->time)) {
        add_point(points, lo);
        add_point(points, hi);
    } else {
        add_point(points, hi);
        add_point(points, lo);
    }
}

/* A series from the rollups of one level: each bucket's lowest and
 * highest points, in step order. */
static int rollup_series(struct conn *c, int64_t seq, const char *name, int level,
                         cJSON **ret_series)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT min_step, min_time, min_value, max_step, max_time, "
                                    "max_value FROM metric_rollups WHERE run_seq = ? AND name = ? "
                                    "AND level = ? ORDER BY bucket");
    cJSON *series;
    cJSON *points;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int64(st, 1, seq);
    bind_text(st, 2, name);
    sqlite3_bind_int(st, 3, level);
    series = cJSON_CreateObject();
    cJSON_AddStringToObject(series, "name", name);
    points = cJSON_AddArrayToObject(series, "points");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct point lo = { sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                            sqlite3_column_double(st, 2) };
        struct point hi = { sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
                            sqlite3_column_double(st, 5) };

        emit_bucket(points, &lo, &hi);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(series);
        return conn_fail(c, "read rollups");
    }
    *ret_series = series;
    return 0;
}

int store_run_metric_series(struct store *store, const char *run_id, const char *name,
                            int max_points, cJSON **ret_series)
{
    struct conn *c;
    sqlite3_stmt *st;
    cJSON *series;
    cJSON *points;
    struct point p;
    struct point lo;
    struct point hi;
    int64_t seq;
    int64_t count = 0;
    int64_t i = 0;
    int64_t buckets;
    int64_t bucket = -1;
    int rc;

    /* The count kept at ingest: counting the points would read them all. */
    if ((rc = run_read(store, run_id,
                       "SELECT count FROM metric_summary WHERE run_seq = ? AND name = ?", &c, &seq,
                       NULL, &st)) < 0)
        return rc;
    bind_text(st, 2, name);
    if (sqlite3_step(st) == SQLITE_ROW)
        count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    /* Downsampling a long series: the coarsest-enough rollup level that
     * gives at most max_points/2 buckets, read in bucket order. */
    if (max_points > 1 && count > max_points) {
        int64_t lo_step = 0;
        int64_t hi_step = 0;
        int level;

        /* Two index probes (one SELECT of min() and max() would scan). */
        st = conn_stmt(c, "SELECT step FROM metric_points WHERE run_seq = ? AND name = ? "
                          "ORDER BY step LIMIT 1");
        if (st == NULL) {
            rc = ERR_INTERNAL;
            goto out;
        }
        sqlite3_bind_int64(st, 1, seq);
        bind_text(st, 2, name);
        if (sqlite3_step(st) == SQLITE_ROW)
            lo_step = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        st = conn_stmt(c, "SELECT step FROM metric_points WHERE run_seq = ? AND name = ? "
                          "ORDER BY step DESC LIMIT 1");
        if (st == NULL) {
            rc = ERR_INTERNAL;
            goto out;
        }
        sqlite3_bind_int64(st, 1, seq);
        bind_text(st, 2, name);
        if (sqlite3_step(st) == SQLITE_ROW)
            hi_step = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        for (level = 4; level <= 20; level += 2) {
            if ((hi_step >> level) - (lo_step >> level) + 1 <= max_points / 2)
                break;
        }
        if (level <= 20) {
            rc = rollup_series(c, seq, name, level, ret_series);
            goto out;
        }
    }
    /* Streamed in step order: memory stays O(max_points) however long
     * the series, and the index gives the order without a sort. */
    st = conn_stmt(c, "SELECT step, time, value FROM metric_points WHERE run_seq = ? AND name = ? "
                      "ORDER BY step");
    if (st == NULL) {
        rc = ERR_INTERNAL;
        goto out;
    }
    sqlite3_bind_int64(st, 1, seq);
    bind_text(st, 2, name);
    series = cJSON_CreateObject();
    cJSON_AddStringToObject(series, "name", name);
    points = cJSON_AddArrayToObject(series, "points");
    buckets = max_points > 1 ? max_points / 2 : 1;
    memset(&lo, 0, sizeof(lo));
    memset(&hi, 0, sizeof(hi));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t b;

        p.step = sqlite3_column_int64(st, 0);
        p.time = sqlite3_column_int64(st, 1);
        p.value = sqlite3_column_double(st, 2);
        if (max_points <= 0 || count <= max_points) {
            add_point(points, &p);
            i++;
            continue;
        }
        if (max_points == 1) {
            lo = p; /* the last point */
            i++;
            continue;
        }
        /* min/max per bucket keeps peaks and dips: at most 2 per bucket. */
        b = i * buckets / count;
        if (b != bucket) {
            if (bucket >= 0)
                emit_bucket(points, &lo, &hi);
            bucket = b;
            lo = p;
            hi = p;
        } else {
            if (p.value < lo.value)
                lo = p;
            if (p.value > hi.value)
                hi = p;
        }
        i++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(series);
        rc = conn_fail(c, "read series");
        goto out;
    }
    if (max_points == 1 && count > 1)
        add_point(points, &lo);
    else if (bucket >= 0)
        emit_bucket(points, &lo, &hi);
    *ret_series = series;
    rc = 0;
out:
    conn_end_read(c);
    return rc;
}

static cJSON *artifact_row(sqlite3_stmt *st)
{
    cJSON *a = cJSON_CreateObject();

    col_add_string(st, 0, a, "path");
    cJSON_AddNumberToObject(a, "size", (double)sqlite3_column_int64(st, 1));
    col_add_string(st, 2, a, "task");
    return a;
}

int store_run_artifacts(struct store *store, const char *run_id, cJSON **ret_list)
{
    return run_items(store, run_id,
                     "SELECT path, size, task FROM artifacts WHERE run_seq = ? ORDER BY path, task",
                     artifact_row, "read artifacts", ret_list);
}

int store_artifact_find(struct store *store, const char *run_id, const char *path, const char *task,
                        char *ret_task, size_t task_size)
{
    struct conn *c;
    sqlite3_stmt *st;
    int64_t seq;
    int rc;

    if ((rc = run_read(store, run_id,
                       "SELECT task FROM artifacts WHERE run_seq = ? AND path = ? "
                       "AND (?3 IS NULL OR task = ?3) ORDER BY task LIMIT 1",
                       &c, &seq, NULL, &st)) < 0)
        return rc;
    bind_text(st, 2, path);
    bind_text(st, 3, task);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(ret_task, task_size, "%s", sqlite3_column_text(st, 0));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "find artifact");
    }
    sqlite3_reset(st);
    conn_end_read(c);
    return rc;
}

/* A task's unfinished last line while a run's log is assembled. */
struct store_log_partial {
    char *task_id;
    char *name;
    struct buf line;
};

void store_log_cursor_init(struct store_log_cursor *cur)
{
    memset(cur, 0, sizeof(*cur));
}

void store_log_cursor_release(struct store_log_cursor *cur)
{
    size_t i;

    for (i = 0; i < cur->n_partials; i++) {
        free(cur->partials[i].task_id);
        free(cur->partials[i].name);
        buf_release(&cur->partials[i].line);
    }
    free(cur->partials);
    store_log_cursor_init(cur);
}

/* Runs have a handful of tasks writing at once: a short list. */
static struct store_log_partial *partial_for(struct store_log_cursor *cur, const char *task_id,
                                             const char *name)
{
    struct store_log_partial *p;
    size_t i;

    for (i = 0; i < cur->n_partials; i++) {
        if (strcmp(cur->partials[i].task_id, task_id) == 0)
            return &cur->partials[i];
    }
    cur->partials = xrealloc(cur->partials, (cur->n_partials + 1) * sizeof(*cur->partials));
    p = &cur->partials[cur->n_partials++];
    p->task_id = xstrdup(task_id);
    p->name = xstrdup(name);
    buf_init(&p->line);
    return p;
}

static void emit_line(struct buf *out, const char *prefix, const char *a, size_t a_len,
                      const char *b, size_t b_len)
{
    if (prefix) {
        buf_addc(out, '[');
        buf_adds(out, prefix);
        buf_add(out, "] ", 2);
    }
    buf_add(out, a, a_len);
    buf_add(out, b, b_len);
    buf_addc(out, '\n');
}

/* Appends the whole lines of a chunk, the task's partial line first, and
 * keeps the chunk's unfinished tail: each byte is looked at and copied a
 * bounded number of times (a memmove per line made 6 MiB of short lines
 * take 16 s). */
static void add_chunk(struct buf *out, struct store_log_partial *p, const char *prefix,
                      const char *data, size_t len)
{
    const char *end = data + len;
    const char *nl;

    while ((nl = memchr(data, '\n', (size_t)(end - data))) != NULL) {
        emit_line(out, prefix, p->line.data, p->line.len, data, (size_t)(nl - data));
        buf_reset(&p->line);
        data = nl + 1;
    }
    buf_add(&p->line, data, (size_t)(end - data));
}

int store_run_log_next(struct store *store, const char *run_id, const char *task,
                       struct store_log_cursor *cur, size_t max_bytes, struct buf *out,
                       bool *ret_ended)
{
    struct conn *c;
    sqlite3_stmt *st;
    int64_t seq;
    int64_t n_tasks = 0;
    size_t start = out->len;
    bool ended = false;
    bool prefix;
    size_t i;
    int rc;

    if ((rc = run_read(store, run_id,
                       "SELECT count(*) FROM tasks WHERE run_seq = ?1 AND attempt = "
                       "(SELECT attempt FROM runs WHERE seq = ?1)",
                       &c, &seq, &ended, &st)) < 0)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        n_tasks = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (task) {
        st = conn_stmt(c, "SELECT 1 FROM tasks WHERE run_seq = ? AND (id = ?2 OR name = ?2)");
        if (st == NULL) {
            rc = ERR_INTERNAL;
            goto out;
        }
        sqlite3_bind_int64(st, 1, seq);
        bind_text(st, 2, task);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) {
            rc = ERR_NOT_FOUND;
            goto out;
        }
    }
    prefix = task == NULL && n_tasks > 1;
    /* Chunks are numbered in commit order (one writer), so the cursor's
     * last number is where the next read starts. */
    st = conn_stmt(c, "SELECT l.seq, l.task_id, t.name, l.data FROM log_chunks l "
                      "JOIN tasks t ON t.id = l.task_id WHERE l.run_seq = ?1 AND l.seq > ?3 "
                      "AND (?2 IS NULL OR t.id = ?2 OR t.name = ?2) ORDER BY l.seq");
    if (st == NULL) {
        rc = ERR_INTERNAL;
        goto out;
    }
    sqlite3_bind_int64(st, 1, seq);
    bind_text(st, 2, task);
    sqlite3_bind_int64(st, 3, cur->after);
    while (out->len - start < max_bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *data = sqlite3_column_blob(st, 3);
        size_t len = (size_t)sqlite3_column_bytes(st, 3);
        struct store_log_partial *p = partial_for(cur, (const char *)sqlite3_column_text(st, 1),
                                                  (const char *)sqlite3_column_text(st, 2));

        cur->after = sqlite3_column_int64(st, 0);
        add_chunk(out, p, prefix ? p->name : NULL, data, len);
    }
    sqlite3_reset(st);
    if (out->len - start >= max_bytes) {
        /* More may follow: not the end yet. */
        *ret_ended = false;
        rc = 0;
        goto out;
    }
    if (rc != SQLITE_DONE) {
        rc = conn_fail(c, "read logs");
        goto out;
    }
    if (ended && !cur->flushed) {
        for (i = 0; i < cur->n_partials; i++) {
            if (cur->partials[i].line.len)
                emit_line(out, prefix ? cur->partials[i].name : NULL, cur->partials[i].line.data,
                          cur->partials[i].line.len, "", 0);
            buf_reset(&cur->partials[i].line);
        }
        cur->flushed = true;
    }
    *ret_ended = ended;
    rc = 0;
out:
    conn_end_read(c);
    return rc;
}

int store_run_log(struct store *store, const char *run_id, const char *task, struct buf *out,
                  bool *ret_ended)
{
    struct store_log_cursor cur;
    int rc;

    store_log_cursor_init(&cur);
    rc = store_run_log_next(store, run_id, task, &cur, SIZE_MAX, out, ret_ended);
    store_log_cursor_release(&cur);
    return rc;
}

int store_run_points_since(struct store *store, const char *run_id, int64_t after_id, int limit,
                           cJSON **ret_points, int64_t *ret_last_id)
{
    struct conn *c;
    sqlite3_stmt *st;
    cJSON *points;
    int64_t seq;
    int64_t last = after_id;
    int rc;

    if ((rc = run_read(store, run_id,
                       "SELECT rowid, name, step, time, value FROM metric_points "
                       "WHERE run_seq = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                       &c, &seq, NULL, &st)) < 0)
        return rc;
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int(st, 3, limit);
    points = cJSON_CreateArray();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *p = cJSON_CreateObject();

        last = sqlite3_column_int64(st, 0);
        col_add_string(st, 1, p, "name");
        cJSON_AddNumberToObject(p, "step", (double)sqlite3_column_int64(st, 2));
        col_add_time(st, 3, p, "time");
        cJSON_AddNumberToObject(p, "value", sqlite3_column_double(st, 4));
        cJSON_AddItemToArray(points, p);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(points);
        rc = conn_fail(c, "read points");
        goto out;
    }
    *ret_points = points;
    *ret_last_id = last;
    rc = 0;
out:
    conn_end_read(c);
    return rc;
}
