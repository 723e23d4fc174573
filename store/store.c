/*
 * store.c - connections, the statement cache, migrations and the group
 * commit writer. See store.h for the model.
 */
#include "store/internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "store/migrations.h"
#include "common/banned.h"

/* A queued write. A waiting caller's lives on its stack; an asynchronous
 * one (done_fn set), with a copy of its argument after it, is allocated
 * and freed by the writer after done_fn. */
struct write_op {
    store_write_fn fn;
    void *arg;
    int rc;
    bool done;
    pthread_cond_t *done_cv; /* its caller waits on it; NULL for the writer's own */
    store_done_fn done_fn;
    void *done_arg;
    struct write_op *next;
};

struct store {
    char *path;
    enum store_sync sync;
    int schema_version;
    struct conn *writer_conn;

    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* the writer waits for queued writes */
    struct write_op *head;
    struct write_op *tail;
    bool stopping;

    pthread_key_t reader_key;
    pthread_mutex_t conns_mu;
    struct conn *conns; /* every read connection, closed at store_free */

    /* Heartbeats that changed nothing else, by node name (store_seen_*):
     * written to SQLite by the writer at most HEARTBEAT_FLUSH_MS later. */
    pthread_mutex_t seen_mu;
    struct seen *seen; /* open addressing, seen_cap a power of two */
    size_t seen_cap;
    size_t seen_len;
    size_t seen_dirty; /* atomic: entries not yet written */

    uint64_t generation; /* atomic: committed batches (store_generation) */
    void (*on_commit)(void *arg); /* set before the first write */
    void *on_commit_arg;
    int64_t seen_flushed_ms; /* writer thread only */
    struct store_quotas quotas; /* set before the first write */

    /* The rows a batch changes (SQLite's update hook on the writer),
     * published to changes after its commit (store_changes_take). */
    struct store_changes batch_changes; /* writer thread only */
    bool changes_muted; /* writer thread only: during the heartbeat flush */
    pthread_mutex_t changes_mu;
    struct store_changes changes;
    /* Held by the writer from a batch's start to its changes' publishing:
     * store_quiet() holds it to see commits and their changes as one. */
    pthread_mutex_t commit_mu;
};

struct seen {
    char *name; /* NULL: empty slot */
    int64_t ms;
    bool dirty;
};

#define HEARTBEAT_FLUSH_MS 250

/* The ERR_* for an SQLite result code: a full disk is the client's to
 * hear about (507), the rest is ours. */
static int sqlite_err(int rc)
{
    return (rc & 0xff) == SQLITE_FULL ? ERR_NO_SPACE : ERR_INTERNAL;
}

int conn_fail(struct conn *c, const char *what)
{
    log_error("store: %s: %s", what, sqlite3_errmsg(c->db));
    return sqlite_err(sqlite3_errcode(c->db));
}

int conn_exec(struct conn *c, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("store: '%.60s': %s", sql, msg ? msg : sqlite3_errmsg(c->db));
        sqlite3_free(msg);
        return sqlite_err(sqlite3_errcode(c->db));
    }
    return 0;
}

sqlite3_stmt *conn_stmt(struct conn *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int i;

    for (i = 0; i < c->n_stmts; i++) {
        if (c->stmts[i].sql == sql) {
            st = c->stmts[i].stmt;
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return st;
        }
    }
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_error("store: cannot prepare '%.60s': %s", sql, sqlite3_errmsg(c->db));
        return NULL;
    }
    /* The cache is sized for every statement in store/; a full one means a
     * new statement was added without growing it: still correct, slower. */
    if (c->n_stmts < CONN_MAX_STMTS) {
        c->stmts[c->n_stmts].sql = sql;
        c->stmts[c->n_stmts].stmt = st;
        c->n_stmts++;
    } else {
        log_warn("store: statement cache full; raise CONN_MAX_STMTS");
    }
    return st;
}

int stmt_done(struct conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int ret = 0;

    if (rc == SQLITE_CONSTRAINT)
        ret = ERR_CONFLICT;
    else if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = conn_fail(c, "step");
    sqlite3_reset(st);
    return ret;
}

/* Runs a cached statement that returns no rows (BEGIN, COMMIT, ...): they
 * run for every request, so they are not parsed every time. */
static int conn_run(struct conn *c, const char *sql)
{
    sqlite3_stmt *st = conn_stmt(c, sql);
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        log_error("store: '%s': %s", sql, sqlite3_errmsg(c->db));
        return sqlite_err(rc);
    }
    return 0;
}

int conn_begin_read(struct conn *c)
{
    return conn_run(c, "BEGIN");
}

void conn_end_read(struct conn *c)
{
    conn_run(c, "COMMIT");
}

void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

void col_add_string(sqlite3_stmt *st, int col, cJSON *obj, const char *key)
{
    const char *s = (const char *)sqlite3_column_text(st, col);

    json_add_string_or_null(obj, key, s);
}

void col_add_time(sqlite3_stmt *st, int col, cJSON *obj, const char *key)
{
    json_add_time(obj, key, sqlite3_column_int64(st, col));
}

void col_add_json(sqlite3_stmt *st, int col, cJSON *obj, const char *key)
{
    const char *s = (const char *)sqlite3_column_text(st, col);

    if (s == NULL)
        cJSON_AddNullToObject(obj, key);
    else
        cJSON_AddItemToObject(obj, key, json_parse_trusted(s));
}

cJSON *list_new(cJSON **ret_items)
{
    cJSON *list = cJSON_CreateObject();

    *ret_items = cJSON_AddArrayToObject(list, "items");
    cJSON_AddNullToObject(list, "next_cursor");
    return list;
}

void list_set_cursor(cJSON *list, const char *cursor)
{
    cJSON_ReplaceItemInObjectCaseSensitive(list, "next_cursor", cJSON_CreateString(cursor));
}

const char *node_state_now(const char *stored, int64_t last_heartbeat, int64_t now_ms,
                           int64_t timeout_ms)
{
    if (strcmp(stored, "down") != 0 && now_ms - last_heartbeat > timeout_ms)
        return "down";
    return stored;
}

/* ---- connections ---- */

static int conn_open(const char *path, enum store_sync sync, bool writer, struct conn **ret)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);

    if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
        log_error("store: cannot open database '%s': %s", path,
                  c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return ERR_INTERNAL;
    }
    sqlite3_busy_timeout(c->db, 5000);
    /* A reader per HTTP thread: small page caches (the OS caches the
     * file for all of them); the writer keeps SQLite's default 2 MiB. */
    if (conn_exec(c, "PRAGMA foreign_keys = ON") < 0 ||
        (writer && conn_exec(c, "PRAGMA journal_mode = WAL") < 0) ||
        (writer && conn_exec(c, "PRAGMA temp_store = MEMORY") < 0) ||
        (!writer && conn_exec(c, "PRAGMA cache_size = -256") < 0) ||
        conn_exec(c, sync == STORE_SYNC_FULL ? "PRAGMA synchronous = FULL"
                                             : "PRAGMA synchronous = NORMAL") < 0) {
        sqlite3_close(c->db);
        free(c);
        return ERR_INTERNAL;
    }
    *ret = c;
    return 0;
}

static void conn_close(struct conn *c)
{
    int i;

    if (c == NULL)
        return;
    for (i = 0; i < c->n_stmts; i++)
        sqlite3_finalize(c->stmts[i].stmt);
    if (sqlite3_close(c->db) != SQLITE_OK)
        log_error("store: close: %s", sqlite3_errmsg(c->db));
    free(c);
}

struct conn *store_reader(struct store *store)
{
    struct conn *c = pthread_getspecific(store->reader_key);

    if (c)
        return c;
    if (conn_open(store->path, store->sync, false, &c) < 0)
        return NULL;
    pthread_setspecific(store->reader_key, c);
    pthread_mutex_lock(&store->conns_mu);
    c->next = store->conns;
    store->conns = c;
    pthread_mutex_unlock(&store->conns_mu);
    return c;
}

/* ---- migrations ---- */

int store_migration_count(void)
{
    return migrations_count;
}

void store_on_commit(struct store *store, void (*fn)(void *arg), void *arg)
{
    store->on_commit = fn;
    store->on_commit_arg = arg;
}

void store_set_quotas(struct store *store, const struct store_quotas *quotas)
{
    assert(quotas->max_log_bytes > 0 && quotas->max_metric_points > 0);
    store->quotas = *quotas;
}

const struct store_quotas *store_quotas(const struct store *store)
{
    return &store->quotas;
}

static int user_version(struct conn *c, int *ret)
{
    sqlite3_stmt *st = conn_stmt(c, "PRAGMA user_version");

    if (st == NULL)
        return ERR_INTERNAL;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return conn_fail(c, "read user_version");
    }
    *ret = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return 0;
}

static int migrate(struct conn *c, int *ret_version)
{
    int version = 0;
    int i;
    char bump[64];

    if (user_version(c, &version) < 0)
        return ERR_INTERNAL;
    if (version > migrations_count) {
        log_error("store: database schema version %d is newer than this trainyard (%d); "
                  "refusing to open it",
                  version, migrations_count);
        return ERR_INTERNAL;
    }
    for (i = version; i < migrations_count; i++) {
        if (conn_exec(c, "BEGIN IMMEDIATE") < 0)
            return ERR_INTERNAL;
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", i + 1);
        if (conn_exec(c, migrations[i].sql) < 0 || conn_exec(c, bump) < 0) {
            log_error("store: migration '%s' failed", migrations[i].name);
            conn_exec(c, "ROLLBACK");
            return ERR_INTERNAL;
        }
        if (conn_exec(c, "COMMIT") < 0)
            return ERR_INTERNAL;
        log_info("store: applied migration %s", migrations[i].name);
    }
    *ret_version = migrations_count;
    return 0;
}

/* ---- heartbeats kept in memory ---- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* The slot of name, or the empty slot where it would go. seen_mu held. */
static struct seen *seen_slot(struct seen *table, size_t cap, const char *name)
{
    size_t i = (size_t)name_hash(name) & (cap - 1);

    while (table[i].name && strcmp(table[i].name, name) != 0)
        i = (i + 1) & (cap - 1);
    return &table[i];
}

void store_seen_record(struct store *store, const char *name, int64_t ms)
{
    struct seen *e;
    bool wake = false;

    pthread_mutex_lock(&store->seen_mu);
    if (2 * (store->seen_len + 1) > store->seen_cap) {
        size_t cap = store->seen_cap ? 2 * store->seen_cap : 1024;
        struct seen *table = xcalloc(cap, sizeof(*table));
        size_t i;

        for (i = 0; i < store->seen_cap; i++) {
            if (store->seen[i].name)
                *seen_slot(table, cap, store->seen[i].name) = store->seen[i];
        }
        free(store->seen);
        store->seen = table;
        store->seen_cap = cap;
    }
    e = seen_slot(store->seen, store->seen_cap, name);
    if (e->name == NULL) {
        e->name = xstrdup(name);
        store->seen_len++;
    }
    if (ms > e->ms)
        e->ms = ms;
    if (!e->dirty) {
        e->dirty = true;
        wake = __atomic_add_fetch(&store->seen_dirty, 1, __ATOMIC_RELAXED) == 1;
    }
    pthread_mutex_unlock(&store->seen_mu);
    /* The first pending time starts the writer's quarter-second clock
     * (under mu: the writer checks seen_dirty under it before waiting). */
    if (wake) {
        pthread_mutex_lock(&store->mu);
        pthread_cond_signal(&store->work_cv);
        pthread_mutex_unlock(&store->mu);
    }
}

int64_t store_seen_get(struct store *store, const char *name)
{
    int64_t ms = 0;

    pthread_mutex_lock(&store->seen_mu);
    if (store->seen_cap) {
        const struct seen *e = seen_slot(store->seen, store->seen_cap, name);

        if (e->name)
            ms = e->ms;
    }
    pthread_mutex_unlock(&store->seen_mu);
    return ms;
}

int store_seen_flush(struct store *store, struct conn *c)
{
    struct {
        const char *name; /* entries are never freed before the store */
        int64_t ms;
    } * pending;
    size_t n = 0;
    size_t i;
    sqlite3_stmt *st;
    int rc = 0;

    store->seen_flushed_ms = time_now_ms();
    if (__atomic_load_n(&store->seen_dirty, __ATOMIC_RELAXED) == 0)
        return 0;
    pthread_mutex_lock(&store->seen_mu);
    pending = xcalloc(store->seen_dirty + 1, sizeof(*pending));
    for (i = 0; i < store->seen_cap; i++) {
        struct seen *e = &store->seen[i];

        if (e->name && e->dirty) {
            pending[n].name = e->name;
            pending[n++].ms = e->ms;
            e->dirty = false;
        }
    }
    __atomic_store_n(&store->seen_dirty, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&store->seen_mu);
    st = conn_stmt(c, "UPDATE nodes SET last_heartbeat = ?1 WHERE name = ?2 "
                      "AND last_heartbeat < ?1");
    /* Not a change for the mirror: it asks store_nodes_seen(). */
    store->changes_muted = true;
    for (i = 0; i < n && st && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, pending[i].ms);
        bind_text(st, 2, pending[i].name);
        rc = stmt_done(c, st);
    }
    store->changes_muted = false;
    if (st == NULL || rc < 0) {
        /* Not written: pending again, for the next flush. */
        for (i = 0; i < n; i++)
            store_seen_record(store, pending[i].name, pending[i].ms);
        rc = ERR_INTERNAL;
    }
    free(pending);
    return rc;
}

static int seen_flush_fn(struct conn *c, void *arg)
{
    return store_seen_flush(arg, c);
}

/* ---- what commits changed, for the scheduler's mirror ---- */

/* More changed rows than this between two takes: the taker reads all. */
#define MAX_CHANGES (1u << 20)

static void changes_add(struct store_changes *ch, enum store_table t, int64_t rowid)
{
    if (ch->overflow)
        return;
    if (ch->n[t] == ch->cap[t]) {
        if (ch->cap[t] >= MAX_CHANGES) {
            store_changes_release(ch);
            ch->overflow = true;
            return;
        }
        ch->cap[t] = ch->cap[t] ? 2 * ch->cap[t] : 256;
        ch->rows[t] = xrealloc(ch->rows[t], ch->cap[t] * sizeof(int64_t));
    }
    ch->rows[t][ch->n[t]++] = rowid;
}

static void on_update(void *arg, int op, const char *db, const char *table, sqlite3_int64 rowid)
{
    struct store *store = arg;

    (void)op;
    (void)db;
    if (strcmp(table, "tasks") == 0)
        changes_add(&store->batch_changes, STORE_TASKS, rowid);
    else if (strcmp(table, "runs") == 0)
        changes_add(&store->batch_changes, STORE_RUNS, rowid);
    else if (strcmp(table, "nodes") == 0 && !store->changes_muted)
        changes_add(&store->batch_changes, STORE_NODES, rowid);
}

/* After a batch's commit (or rollback: naming rows that did not change is
 * harmless): its changes become the taker's. */
static void changes_publish(struct store *store)
{
    struct store_changes *b = &store->batch_changes;
    size_t t;
    size_t i;

    pthread_mutex_lock(&store->changes_mu);
    if (b->overflow) {
        store_changes_release(&store->changes);
        store->changes.overflow = true;
    }
    for (t = 0; t < 3; t++) {
        for (i = 0; i < b->n[t]; i++)
            changes_add(&store->changes, (enum store_table)t, b->rows[t][i]);
        b->n[t] = 0;
    }
    b->overflow = false;
    pthread_mutex_unlock(&store->changes_mu);
}

void store_changes_take(struct store *store, struct store_changes *ret)
{
    pthread_mutex_lock(&store->changes_mu);
    *ret = store->changes;
    memset(&store->changes, 0, sizeof(store->changes));
    pthread_mutex_unlock(&store->changes_mu);
}

void store_changes_release(struct store_changes *ch)
{
    size_t t;

    for (t = 0; t < 3; t++)
        free(ch->rows[t]);
    memset(ch, 0, sizeof(*ch));
}

void store_quiet(struct store *store, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&store->commit_mu);
    fn(arg);
    pthread_mutex_unlock(&store->commit_mu);
}

void store_nodes_seen(struct store *store, const char *const *names, size_t n, int64_t *ret_ms)
{
    size_t i;

    pthread_mutex_lock(&store->seen_mu);
    for (i = 0; i < n; i++) {
        const struct seen *e =
            store->seen_cap ? seen_slot(store->seen, store->seen_cap, names[i]) : NULL;

        ret_ms[i] = e && e->name ? e->ms : 0;
    }
    pthread_mutex_unlock(&store->seen_mu);
}

/* ---- the writer ---- */

static void run_batch(struct store *store, struct write_op *ops)
{
    struct conn *c = store->writer_conn;
    struct write_op *op;
    int batch_rc;

    if ((batch_rc = conn_run(c, "BEGIN IMMEDIATE")) < 0)
        goto failed;
    for (op = ops; op; op = op->next) {
        if ((batch_rc = conn_run(c, "SAVEPOINT op")) < 0)
            goto rollback;
        op->rc = op->fn(c, op->arg);
        /* SQLite may have rolled the whole transaction back (a full disk
         * does): then nothing of the batch is kept, and the ops after this
         * one must not run outside a transaction. */
        if (sqlite3_get_autocommit(c->db)) {
            batch_rc = op->rc < 0 ? op->rc : ERR_INTERNAL;
            goto failed;
        }
        if (op->rc < 0)
            conn_run(c, "ROLLBACK TO op");
        conn_run(c, "RELEASE op");
    }
    if ((batch_rc = conn_run(c, "COMMIT")) == 0)
        return;
rollback:
    conn_exec(c, "ROLLBACK");
failed:
    for (op = ops; op; op = op->next)
        op->rc = batch_rc;
}

/* Waits for queued writes, or until pending heartbeats are due. mu held. */
static void writer_wait(struct store *store)
{
    while (store->head == NULL && !store->stopping) {
        int64_t due;
        struct timespec ts;

        if (__atomic_load_n(&store->seen_dirty, __ATOMIC_RELAXED) == 0) {
            pthread_cond_wait(&store->work_cv, &store->mu);
            continue;
        }
        due = store->seen_flushed_ms + HEARTBEAT_FLUSH_MS;
        if (time_now_ms() >= due)
            return;
        ts.tv_sec = (time_t)(due / 1000);
        ts.tv_nsec = (long)(due % 1000) * 1000000;
        pthread_cond_timedwait(&store->work_cv, &store->mu, &ts);
    }
}

static void *writer_main(void *arg)
{
    struct store *store = arg;
    struct write_op *ops;
    struct write_op *op;

    pthread_setname_np(pthread_self(), "ty-writer");
    struct write_op *next;
    struct write_op *async;
    struct write_op flush = { .fn = seen_flush_fn, .arg = store };
    bool stopping;

    pthread_mutex_lock(&store->mu);
    for (;;) {
        writer_wait(store);
        stopping = store->stopping;
        ops = store->head;
        store->head = NULL;
        store->tail = NULL;
        pthread_mutex_unlock(&store->mu);

        /* Pending heartbeats ride along with the batch when due, and are
         * all written before the writer stops. */
        if ((ops == NULL || stopping ||
             time_now_ms() >= store->seen_flushed_ms + HEARTBEAT_FLUSH_MS) &&
            __atomic_load_n(&store->seen_dirty, __ATOMIC_RELAXED) > 0) {
            flush.next = ops;
            ops = &flush;
        }
        if (ops) {
            pthread_mutex_lock(&store->commit_mu);
            run_batch(store, ops);
            changes_publish(store);
            pthread_mutex_unlock(&store->commit_mu);
        }
        /* Before any writer returns: a read after a write sees a new
         * generation. */
        __atomic_add_fetch(&store->generation, 1, __ATOMIC_RELEASE);
        if (ops && store->on_commit)
            store->on_commit(store->on_commit_arg);

        /* Each caller is woken alone: a broadcast woke every waiting
         * HTTP thread at every commit. Asynchronous writes are told after
         * the lock is let go (their callbacks resume connections). */
        async = NULL;
        pthread_mutex_lock(&store->mu);
        for (op = ops; op; op = next) {
            next = op->next;
            if (op->done_fn) {
                op->next = async;
                async = op;
                continue;
            }
            op->done = true;
            if (op->done_cv)
                pthread_cond_signal(op->done_cv);
        }
        if (async) {
            pthread_mutex_unlock(&store->mu);
            for (op = async; op; op = next) {
                next = op->next;
                op->done_fn(op->done_arg, op->rc);
                free(op);
            }
            pthread_mutex_lock(&store->mu);
        }
        /* Stopping: once nothing is queued and the last flush was tried. */
        if (store->head == NULL && store->stopping && stopping)
            break;
    }
    pthread_mutex_unlock(&store->mu);
    return NULL;
}

/* Appends op to the queue and wakes the writer; false when stopping. */
static bool enqueue(struct store *store, struct write_op *op)
{
    if (store->stopping)
        return false;
    if (store->tail)
        store->tail->next = op;
    else
        store->head = op;
    store->tail = op;
    pthread_cond_signal(&store->work_cv);
    return true;
}

int store_write_async(struct store *store, store_write_fn fn, const void *arg, size_t size,
                      store_done_fn done, void *done_arg)
{
    /* The argument is copied next to the op: the caller's goes out of scope. */
    struct write_op *op = xcalloc(1, sizeof(*op) + size);
    bool queued;

    memcpy(op + 1, arg, size);
    op->fn = fn;
    op->arg = op + 1;
    op->done_fn = done;
    op->done_arg = done_arg;
    pthread_mutex_lock(&store->mu);
    queued = enqueue(store, op);
    pthread_mutex_unlock(&store->mu);
    if (!queued) {
        free(op);
        return ERR_UNAVAILABLE;
    }
    return 0;
}

int store_write(struct store *store, store_write_fn fn, void *arg)
{
    pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
    struct write_op op = {
        .fn = fn, .arg = arg, .rc = 0, .done = false, .done_cv = &done_cv, .next = NULL
    };

    pthread_mutex_lock(&store->mu);
    if (!enqueue(store, &op)) {
        pthread_mutex_unlock(&store->mu);
        return ERR_UNAVAILABLE;
    }
    while (!op.done)
        pthread_cond_wait(&done_cv, &store->mu);
    pthread_mutex_unlock(&store->mu);
    pthread_cond_destroy(&done_cv);
    return op.rc;
}

/* ---- open / close ---- */

/* SQLite counts every allocation under a global mutex unless told not to;
 * nothing here reads those counts. It must precede any other SQLite call:
 * if something in the process initialised SQLite first, the call fails
 * (SQLITE_MISUSE) and only the counting stays on. */
static void sqlite_configure(void)
{
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
        log_warn("store: SQLite was initialised already; its allocation counting stays on");
}

int store_open(const char *path, enum store_sync sync, struct store **ret_store)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct store *store;

    pthread_once(&once, sqlite_configure);
    store = xcalloc(1, sizeof(*store));

    store->path = xstrdup(path);
    store->quotas =
        (struct store_quotas){ STORE_DEFAULT_MAX_LOG_BYTES, STORE_DEFAULT_MAX_METRIC_POINTS };
    store->sync = sync;
    pthread_mutex_init(&store->mu, NULL);
    pthread_cond_init(&store->work_cv, NULL);
    pthread_mutex_init(&store->conns_mu, NULL);
    pthread_mutex_init(&store->seen_mu, NULL);
    pthread_mutex_init(&store->changes_mu, NULL);
    pthread_mutex_init(&store->commit_mu, NULL);
    if (pthread_key_create(&store->reader_key, NULL) != 0)
        goto err_free;
    if (conn_open(path, sync, true, &store->writer_conn) < 0)
        goto err_key;
    if (migrate(store->writer_conn, &store->schema_version) < 0)
        goto err_close;
    sqlite3_update_hook(store->writer_conn->db, on_update, store);
    /* Generations of stores opened one after another in a process never
     * overlap, so a cache keyed by them cannot mistake an old store's. */
    {
        static uint64_t opened;

        store->generation = __atomic_add_fetch(&opened, 1, __ATOMIC_RELAXED) << 40;
    }
    if (pthread_create(&store->writer, NULL, writer_main, store) != 0) {
        log_error("store: cannot start the writer thread");
        goto err_close;
    }
    *ret_store = store;
    return 0;

err_close:
    conn_close(store->writer_conn);
err_key:
    pthread_key_delete(store->reader_key);
err_free:
    pthread_mutex_destroy(&store->mu);
    pthread_cond_destroy(&store->work_cv);
    pthread_mutex_destroy(&store->conns_mu);
    pthread_mutex_destroy(&store->seen_mu);
    pthread_mutex_destroy(&store->changes_mu);
    pthread_mutex_destroy(&store->commit_mu);
    free(store->path);
    free(store);
    return ERR_INTERNAL;
}

void store_free(struct store *store)
{
    size_t i;
    struct conn *c;
    struct conn *next;

    if (store == NULL)
        return;
    pthread_mutex_lock(&store->mu);
    store->stopping = true;
    pthread_cond_signal(&store->work_cv);
    pthread_mutex_unlock(&store->mu);
    pthread_join(store->writer, NULL);

    for (c = store->conns; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    /* A clean close checkpoints the WAL into the main file. */
    conn_close(store->writer_conn);
    pthread_key_delete(store->reader_key);
    pthread_mutex_destroy(&store->mu);
    pthread_cond_destroy(&store->work_cv);
    pthread_mutex_destroy(&store->conns_mu);
    for (i = 0; i < store->seen_cap; i++)
        free(store->seen[i].name);
    free(store->seen);
    pthread_mutex_destroy(&store->seen_mu);
    store_changes_release(&store->batch_changes);
    store_changes_release(&store->changes);
    pthread_mutex_destroy(&store->changes_mu);
    pthread_mutex_destroy(&store->commit_mu);
    free(store->path);
    free(store);
}

uint64_t store_generation(struct store *store)
{
    return __atomic_load_n(&store->generation, __ATOMIC_ACQUIRE);
}

int store_schema_version(struct store *store)
{
    return store->schema_version;
}
