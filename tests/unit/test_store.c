/* test_store.c - the store on a real SQLite file: migrations, group commit,
 * runs, nodes and tokens. */
#include "tests/unit/unit.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/err.h"
#include "common/json.h"
#include "store/migrations.h"
#include "store/store.h"

static const struct store_page all_page = { NULL, 1000 };

static char *temp_db(void)
{
    static char dir[] = "/tmp/trainyard-unit-XXXXXX";
    static char path[256];

    if (mkdtemp(dir) == NULL)
        UNIT_FAIL("mkdtemp failed");
    snprintf(path, sizeof(path), "%s/t.db", dir);
    return path;
}

/* A run of experiment "exp" in pool "default" with the given tasks. */
static struct store_new_run new_run(const char *id, const char *spec_text, const cJSON *spec,
                                    struct store_new_task *tasks, int n_tasks)
{
    struct store_new_run run = { 0 };

    run.id = id;
    run.experiment = "exp";
    run.spec = spec_text;
    run.tags = json_get(spec, "tags");
    run.pool = "default";
    run.tasks = tasks;
    run.n_tasks = n_tasks;
    return run;
}

static void migrates_and_reopens(void)
{
    char *path = temp_db();
    struct store *s = NULL;

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_schema_version(s), store_migration_count());
    store_free(s);
    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_schema_version(s), store_migration_count());
    store_free(s);
}

static void refuses_newer_database(void)
{
    char *path = temp_db();
    char cmd[512];
    struct store *s = NULL;

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    store_free(s);
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'PRAGMA user_version = 999'", path);
    ASSERT_EQ(system(cmd), 0);
    s = NULL;
    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), ERR_INTERNAL);
    ASSERT_TRUE(s == NULL);
}

/* Migrations 0004 and 0005 rebuild the tasks and metric_points tables: a
 * database made by 0001-0003 keeps its tasks, their columns and order, and
 * its metric points. */
static void tasks_and_points_survive_the_rebuilds(void)
{
    char *path = temp_db();
    sqlite3 *db;
    struct store *s;
    cJSON *run;
    cJSON *tasks;
    cJSON *series;
    cJSON *points;
    int i;

    ASSERT_TRUE(migrations_count >= 5);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    for (i = 0; i < 3; i++)
        ASSERT_EQ(sqlite3_exec(db, migrations[i].sql, NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA user_version = 3;"
                           "INSERT INTO experiments(name, created_at, last_activity, run_count) "
                           "VALUES ('exp', 1, 1, 1);"
                           "INSERT INTO runs(seq, id, experiment, status, spec, pool, priority, "
                           "created_at) VALUES (7, 'run-m', 'exp', 'running', "
                           "'{\"tags\": {}}', 'default', 0, 1);"
                           "INSERT INTO tasks(id, run_seq, attempt, ord, name, type, idx, node, "
                           "gpus, status, started_at, held) VALUES "
                           "('run-m-a1-worker-1', 7, 1, 1, 'worker-1', 'worker', 1, 'n2', '[1]', "
                           "'running', 5, 1), "
                           "('run-m-a1-chief-0', 7, 1, 0, 'chief-0', 'chief', 0, 'n1', '[0]', "
                           "'running', 4, 1);"
                           "INSERT INTO metric_points(run_seq, name, step, time, value, task) "
                           "VALUES (7, 'loss', 1, 10, 0.5, 'run-m-a1-chief-0'), "
                           "(7, 'loss', 2, 20, 0.25, 'run-m-a1-worker-1');",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_schema_version(s), store_migration_count());
    ASSERT_EQ(store_run_get(s, "run-m", &run), 0);
    tasks = json_get(run, "tasks");
    ASSERT_EQ(cJSON_GetArraySize(tasks), 2);
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(tasks, 0), "id"), "run-m-a1-chief-0");
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(tasks, 0), "node"), "n1");
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(tasks, 1), "id"), "run-m-a1-worker-1");
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(tasks, 1), "status"), "running");
    ASSERT_EQ(cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(tasks, 1), "gpus"), 0)->valueint, 1);
    cJSON_Delete(run);
    ASSERT_EQ(store_run_metric_series(s, "run-m", "loss", 0, &series), 0);
    points = json_get(series, "points");
    ASSERT_EQ(cJSON_GetArraySize(points), 2);
    ASSERT_EQ(cJSON_GetArrayItem(cJSON_GetArrayItem(points, 1), 0)->valueint, 2);
    ASSERT_TRUE(cJSON_GetArrayItem(cJSON_GetArrayItem(points, 1), 2)->valuedouble == 0.25);
    cJSON_Delete(series);
    store_free(s);
}

/* Migration 0006 counts what older runs hold against the quotas, and the
 * log quota then keeps the bytes up to the limit, a marker line, and no
 * more, while acknowledging everything the agent sent. */
static void quotas_count_old_runs_and_cut_logs(void)
{
    char *path = temp_db();
    sqlite3 *db;
    struct store *s;
    struct store_quotas q = { 20, 1000 };
    struct buf log;
    cJSON *run;
    int64_t size = 0;
    bool ended;
    int i;

    ASSERT_TRUE(migrations_count >= 6);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    for (i = 0; i < 5; i++)
        ASSERT_EQ(sqlite3_exec(db, migrations[i].sql, NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA user_version = 5;"
                           "INSERT INTO experiments(name, created_at, last_activity, run_count) "
                           "VALUES ('exp', 1, 1, 1);"
                           "INSERT INTO runs(seq, id, experiment, status, spec, pool, priority, "
                           "created_at) VALUES (3, 'run-q', 'exp', 'running', "
                           "'{\"tags\": {}}', 'default', 0, 1);"
                           "INSERT INTO tasks(id, run_seq, attempt, ord, name, type, idx, node, "
                           "status, log_size) VALUES ('run-q-a1-main', 3, 1, 0, 'main', 'main', "
                           "0, 'n1', 'running', 12);"
                           "INSERT INTO log_chunks(run_seq, task_id, offset, data) VALUES "
                           "(3, 'run-q-a1-main', 0, CAST('0123456789a\n' AS BLOB));"
                           "INSERT INTO metric_summary(run_seq, name, last, min, max, count, "
                           "last_step) VALUES (3, 'loss', 1, 1, 1, 7, 6);",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    store_set_quotas(s, &q);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    {
        sqlite3_stmt *st;

        ASSERT_EQ(
            sqlite3_prepare_v2(db, "SELECT log_bytes, metric_points FROM runs", -1, &st, NULL),
            SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_EQ(sqlite3_column_int64(st, 0), 12);
        ASSERT_EQ(sqlite3_column_int64(st, 1), 7);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    /* 12 of 20 bytes used: "abcdefgh" fits, the rest is cut and marked. */
    ASSERT_EQ(store_task_logs(s, "run-q-a1-main", "", 12, "abcdefghijklmnop\n", 17, &size), 0);
    ASSERT_EQ(size, 29);
    /* Later bytes are acknowledged (the agent moves on) and dropped. */
    ASSERT_EQ(store_task_logs(s, "run-q-a1-main", "", 29, "more\n", 5, &size), 0);
    ASSERT_EQ(size, 34);
    buf_init(&log);
    ASSERT_EQ(store_run_log(s, "run-q", NULL, &log, &ended), 0);
    buf_add(&log, "", 1);
    ASSERT_TRUE(strstr(log.data, "0123456789a\nabcdefgh\n[trainyard] the run's log reached its "
                                 "limit of 20 bytes") != NULL);
    ASSERT_TRUE(strstr(log.data, "ijkl") == NULL && strstr(log.data, "more") == NULL);
    buf_release(&log);
    ASSERT_EQ(store_run_get(s, "run-q", &run), 0);
    ASSERT_TRUE(cJSON_IsTrue(json_get(run, "log_truncated")));
    ASSERT_TRUE(cJSON_IsFalse(json_get(run, "metrics_truncated")));
    cJSON_Delete(run);
    store_free(s);
}

/* Migration 0007 gives runs and snapshots an owner: a database made by
 * 0001-0005 keeps its runs, which have no owner (null), which only an
 * admin (owner NULL) may cancel; new runs record theirs and list by it. */
static void runs_from_before_owners_have_none(void)
{
    char *path = temp_db();
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"tags\": {}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run fresh;
    struct store_run_filter f;
    char owner[64];
    sqlite3 *db;
    struct store *s;
    cJSON *run;
    cJSON *list;
    int i;

    ASSERT_TRUE(migrations_count >= 6);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    for (i = 0; i < 5; i++)
        ASSERT_EQ(sqlite3_exec(db, migrations[i].sql, NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA user_version = 5;"
                           "INSERT INTO experiments(name, created_at, last_activity, run_count) "
                           "VALUES ('exp', 1, 1, 1);"
                           "INSERT INTO snapshots(id, size, created_at) VALUES ('sha256:aa', 3, 1);"
                           "INSERT INTO runs(seq, id, experiment, status, spec, pool, priority, "
                           "created_at) VALUES (3, 'run-old', 'exp', 'running', "
                           "'{\"tags\": {}}', 'default', 0, 1);",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_schema_version(s), store_migration_count());
    ASSERT_EQ(store_run_get(s, "run-old", &run), 0);
    ASSERT_TRUE(cJSON_IsNull(json_get(run, "owner")));
    ASSERT_STR_EQ(json_get_string(run, "status"), "running");
    cJSON_Delete(run);
    ASSERT_EQ(store_run_cancel(s, "run-old", "alice", 10, &run), ERR_PERMISSION);
    ASSERT_EQ(store_snapshot_put(s, "sha256:aa", 3, "bob", 10, owner, sizeof(owner)), 0);
    ASSERT_STR_EQ(owner, "");

    fresh = new_run("run-new", spec_text, spec, &task, 1);
    fresh.owner = "alice";
    ASSERT_EQ(store_run_create(s, &fresh), 0);
    memset(&f, 0, sizeof(f));
    f.limit = 10;
    f.owner = "alice";
    ASSERT_EQ(store_run_list(s, &f, &list), 0);
    ASSERT_EQ(cJSON_GetArraySize(json_get(list, "items")), 1);
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(json_get(list, "items"), 0), "owner"),
                  "alice");
    cJSON_Delete(list);
    ASSERT_EQ(store_run_cancel(s, "run-new", "bob", 10, &run), ERR_PERMISSION);
    ASSERT_EQ(store_run_cancel(s, "run-new", "alice", 10, &run), 0);
    ASSERT_STR_EQ(json_get_string(run, "status"), "canceled");
    cJSON_Delete(run);
    ASSERT_EQ(store_run_cancel(s, "run-old", NULL, 10, &run), 0);
    ASSERT_STR_EQ(json_get_string(run, "status"), "canceled");
    cJSON_Delete(run);
    cJSON_Delete(spec);
    store_free(s);
}

/* An asynchronous write is reported once it is committed, with the error a
 * waiting write would get. */
struct async_box {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int rc;
};

static void async_done(void *arg, int rc)
{
    struct async_box *b = arg;

    pthread_mutex_lock(&b->mu);
    b->calls++;
    b->rc = rc;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int async_wait(struct async_box *b, int calls)
{
    pthread_mutex_lock(&b->mu);
    while (b->calls < calls)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    return b->rc;
}

static void async_write_reports_after_commit(void)
{
    struct store *s;
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"tags\": {}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run run = { 0 };
    struct async_box box = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1 };
    cJSON *got = NULL;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    run = new_run("run-async", spec_text, spec, &task, 1);
    ASSERT_EQ(store_run_create_async(s, &run, async_done, &box), 0);
    ASSERT_EQ(async_wait(&box, 1), 0);
    ASSERT_EQ(store_run_get(s, "run-async", &got), 0);
    ASSERT_STR_EQ(json_get_string(got, "status"), "queued");
    cJSON_Delete(got);
    /* The same id again: the conflict comes back through the callback. */
    ASSERT_EQ(store_run_create_async(s, &run, async_done, &box), 0);
    ASSERT_EQ(async_wait(&box, 2), ERR_CONFLICT);
    ASSERT_EQ(box.calls, 2);
    cJSON_Delete(spec);
    store_free(s);
}

static struct store *shared;

static void *submit_many(void *arg)
{
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"experiment\": \"exp\", \"tags\": {\"k\": \"v\"}}";
    cJSON *spec = cJSON_Parse(spec_text);
    char id[64];
    int i;

    for (i = 0; i < 50; i++) {
        struct store_new_run run = { 0 };

        snprintf(id, sizeof(id), "run-%ld-%d", (long)(intptr_t)arg, i);
        run = new_run(id, spec_text, spec, &task, 1);
        run.reason = "waiting";
        run.created_at = 1000 + i;
        if (store_run_create(shared, &run) != 0)
            UNIT_FAIL("create %s failed", id);
    }
    cJSON_Delete(spec);
    return NULL;
}

static void concurrent_writers_all_commit(void)
{
    pthread_t threads[8];
    struct store_run_filter f = { 0 };
    cJSON *list;
    cJSON *exps;
    long i;
    int total = 0;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &shared), 0);
    for (i = 0; i < 8; i++)
        pthread_create(&threads[i], NULL, submit_many, (void *)(intptr_t)i);
    for (i = 0; i < 8; i++)
        pthread_join(threads[i], NULL);

    /* Every run exactly once, walking the pages. */
    f.limit = 37;
    f.experiment = "exp";
    for (;;) {
        const char *next;

        ASSERT_EQ(store_run_list(shared, &f, &list), 0);
        total += cJSON_GetArraySize(json_get(list, "items"));
        next = json_get_string(list, "next_cursor");
        if (next == NULL) {
            cJSON_Delete(list);
            break;
        }
        f.before_seq = strtoll(next, NULL, 10);
        cJSON_Delete(list);
    }
    ASSERT_EQ(total, 400);
    ASSERT_EQ(store_experiment_list(shared, &all_page, &exps), 0);
    ASSERT_EQ(json_get(cJSON_GetArrayItem(json_get(exps, "items"), 0), "run_count")->valueint, 400);
    cJSON_Delete(exps);
    store_free(shared);
}

static void duplicate_run_id_writes_nothing(void)
{
    struct store *s;
    struct store_new_task tasks[2] = { { "a", "main", 0 }, { "a", "main", 0 } };
    const char *spec_text = "{\"tags\": {}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run run = { 0 };
    cJSON *exps;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    run = new_run("run-x", spec_text, spec, tasks,
                  2); /* the second task clashes: the whole run must roll back */
    ASSERT_EQ(store_run_create(s, &run), ERR_CONFLICT);
    ASSERT_EQ(store_experiment_list(s, &all_page, &exps), 0);
    ASSERT_EQ(cJSON_GetArraySize(json_get(exps, "items")), 0);
    cJSON_Delete(exps);
    cJSON *got = NULL;
    ASSERT_EQ(store_run_get(s, "run-x", &got), ERR_NOT_FOUND);
    cJSON_Delete(spec);
    store_free(s);
}

/* Ids the store chooses grow with time and step over ids already taken
 * (a database written by another process whose clock ran ahead). */
static void chosen_run_ids_grow_and_skip_taken(void)
{
    struct store *s;
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"tags\": {}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run run = { 0 };
    /* Far ahead of any other test's created_at: this second's ids are free. */
    const int64_t second = INT64_C(3000000000);
    char taken[32];
    char want[64];
    char first[STORE_RUN_ID_SIZE];
    char second_id[STORE_RUN_ID_SIZE];
    cJSON *got = NULL;
    int i;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    for (i = 0; i < 3; i++) {
        snprintf(taken, sizeof(taken), "run-%012llx", (unsigned long long)((second << 16) + i));
        run = new_run(taken, spec_text, spec, &task, 1);
        ASSERT_EQ(store_run_create(s, &run), 0);
    }
    run = new_run(NULL, spec_text, spec, &task, 1);
    run.new_id = first;
    run.created_at = second * 1000 + 500;
    ASSERT_EQ(store_run_create(s, &run), 0);
    snprintf(want, sizeof(want), "run-%012llx", (unsigned long long)((second << 16) + 3));
    ASSERT_STR_EQ(first, want);
    run.new_id = second_id;
    ASSERT_EQ(store_run_create(s, &run), 0);
    ASSERT_TRUE(strcmp(second_id, first) > 0);
    ASSERT_EQ(store_run_get(s, second_id, &got), 0);
    snprintf(want, sizeof(want), "%s-a1-main", second_id);
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(json_get(got, "tasks"), 0), "id"), want);
    cJSON_Delete(got);
    cJSON_Delete(spec);
    store_free(s);
}

/* Runs stored before migration 0012 kept their "queued" creation event; it
 * is derived now, and shows once, before the ones still stored. */
static void stored_creation_events_show_once(void)
{
    char *path = temp_db();
    sqlite3 *db;
    struct store *s;
    cJSON *run;
    cJSON *events;
    int i;

    ASSERT_TRUE(migrations_count >= 12);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    for (i = 0; i < 11; i++)
        ASSERT_EQ(sqlite3_exec(db, migrations[i].sql, NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA user_version = 11;"
                           "INSERT INTO experiments(name, created_at, last_activity, run_count) "
                           "VALUES ('exp', 1, 1, 1);"
                           "INSERT INTO runs(seq, id, experiment, status, spec, pool, priority, "
                           "created_at) VALUES (3, 'run-old', 'exp', 'running', "
                           "'{\"tags\": {}}', 'default', 0, 7000);"
                           "INSERT INTO run_events(run_seq, time, type, data) VALUES "
                           "(3, 7000, 'status', '{\"status\":\"queued\"}'),"
                           "(3, 8000, 'status', '{\"status\":\"running\"}'),"
                           "(3, 9000, 'status', '{\"status\":\"queued\"}');",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_run_get(s, "run-old", &run), 0);
    events = json_get(run, "events");
    ASSERT_EQ(cJSON_GetArraySize(events), 3);
    ASSERT_STR_EQ(json_get_string(json_get(cJSON_GetArrayItem(events, 0), "data"), "status"),
                  "queued");
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(events, 0), "time"),
                  json_get_string(run, "created_at"));
    ASSERT_STR_EQ(json_get_string(json_get(cJSON_GetArrayItem(events, 1), "data"), "status"),
                  "running");
    ASSERT_STR_EQ(json_get_string(json_get(cJSON_GetArrayItem(events, 2), "data"), "status"),
                  "queued");
    cJSON_Delete(run);

    /* The latest 200: with 199 stored the creation is the first; with 200
     * it is left out like any older event. */
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                           "WHERE i < 197) INSERT INTO run_events(run_seq, time, type, data) "
                           "SELECT 3, 10000 + i, 'progress', '{}' FROM n;",
                           NULL, NULL, NULL),
              SQLITE_OK);
    ASSERT_EQ(store_run_get(s, "run-old", &run), 0);
    events = json_get(run, "events");
    ASSERT_EQ(cJSON_GetArraySize(events), 200);
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(events, 0), "time"),
                  json_get_string(run, "created_at"));
    cJSON_Delete(run);
    ASSERT_EQ(sqlite3_exec(db,
                           "INSERT INTO run_events(run_seq, time, type, data) "
                           "VALUES (3, 20000, 'progress', '{}');",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    ASSERT_EQ(store_run_get(s, "run-old", &run), 0);
    events = json_get(run, "events");
    ASSERT_EQ(cJSON_GetArraySize(events), 200);
    ASSERT_STR_EQ(json_get_string(json_get(cJSON_GetArrayItem(events, 0), "data"), "status"),
                  "running");
    cJSON_Delete(run);
    store_free(s);
}

/* The 201 of a submission is printed without reading the run back: it is
 * byte for byte what a read of the run prints then. */
static void created_run_prints_as_read(void)
{
    struct store *s;
    struct store_new_task tasks[2] = { { "worker-0", "worker", 0 }, { "ps-0", "ps", 0 } };
    const char *spec_text = "{\"experiment\":\"exp\",\"tags\":{\"k\":\"v \\\"q\\\"\"},"
                            "\"node_count\":2}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run run = { 0 };
    char id[STORE_RUN_ID_SIZE];
    struct buf created;
    cJSON *got = NULL;
    char *read;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    run = new_run(NULL, spec_text, spec, tasks, 2);
    run.new_id = id;
    run.owner = "alice";
    run.reason = "pool 'default' has 0 ready node(s)";
    run.created_at = 1700000000123;
    ASSERT_EQ(store_run_create(s, &run), 0);
    run.id = id;
    buf_init(&created);
    store_run_created_json(&run, &created);
    buf_addc(&created, '\0');
    ASSERT_EQ(store_run_get(s, id, &got), 0);
    read = json_print(got);
    ASSERT_STR_EQ(created.data, read);
    free(read);
    cJSON_Delete(got);
    buf_release(&created);
    cJSON_Delete(spec);
    store_free(s);
}

static void cancel_is_idempotent(void)
{
    struct store *s;
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"tags\": {}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run run = { 0 };
    cJSON *got;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    run = new_run("run-c", spec_text, spec, &task, 1);
    ASSERT_EQ(store_run_create(s, &run), 0);
    ASSERT_EQ(store_run_cancel(s, "run-c", NULL, 5000, &got), 0);
    ASSERT_STR_EQ(json_get_string(got, "status"), "canceled");
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(json_get(got, "tasks"), 0), "status"),
                  "killed");
    cJSON_Delete(got);
    ASSERT_EQ(store_run_cancel(s, "run-c", NULL, 6000, &got), 0);
    cJSON_Delete(got);
    ASSERT_EQ(store_run_cancel(s, "nope", NULL, 6000, &got), ERR_NOT_FOUND);
    cJSON_Delete(spec);
    store_free(s);
}

static void node_goes_down_without_heartbeat(void)
{
    struct store *s;
    struct store_node_reg reg = { 0 };
    cJSON *empty_arr = cJSON_CreateArray();
    cJSON *empty_obj = cJSON_CreateObject();
    cJSON *node;
    cJSON *stop;
    cJSON *reported = cJSON_Parse("[{\"id\": \"ghost\", \"status\": \"running\"}]");
    const char *path = temp_db();
    const char *state;
    bool changed;

    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    reg.name = "n1";
    reg.pool = "default";
    reg.agent_url = "http://127.0.0.1:1";
    reg.cpus = 4;
    reg.gpus = empty_arr;
    reg.labels = empty_obj;
    reg.features = empty_arr;
    reg.secret = "s";
    reg.now_ms = 1000;
    ASSERT_EQ(store_node_register(s, &reg), 0);
    ASSERT_EQ(store_node_get(s, "n1", 2000, 15000, &node), 0);
    ASSERT_STR_EQ(json_get_string(node, "state"), "ready");
    cJSON_Delete(node);
    ASSERT_EQ(store_node_get(s, "n1", 17000, 15000, &node), 0);
    ASSERT_STR_EQ(json_get_string(node, "state"), "down");
    cJSON_Delete(node);
    ASSERT_EQ(store_node_heartbeat(s, "n1", reported, 17000, 15000, true, &stop, &changed, &state),
              0);
    ASSERT_EQ(cJSON_GetArraySize(stop), 1);
    ASSERT_TRUE(changed); /* it was silent past its timeout */
    ASSERT_STR_EQ(state, "ready");
    cJSON_Delete(stop);
    ASSERT_EQ(store_node_get(s, "n1", 17001, 15000, &node), 0);
    ASSERT_STR_EQ(json_get_string(node, "state"), "ready");
    ASSERT_STR_EQ(json_get_string(node, "last_heartbeat"), "1970-01-01T00:00:17.000Z");
    cJSON_Delete(node);
    /* A heartbeat that changes nothing else is kept in memory ... */
    ASSERT_EQ(store_node_heartbeat(s, "n1", NULL, 18000, 15000, true, &stop, &changed, &state), 0);
    ASSERT_TRUE(!changed);
    ASSERT_EQ(cJSON_GetArraySize(stop), 0);
    cJSON_Delete(stop);
    ASSERT_EQ(store_node_heartbeat(s, "n2", NULL, 1, 15000, true, &stop, &changed, &state),
              ERR_NOT_FOUND);
    /* ... and written before the store closes. */
    store_free(s);
    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_node_get(s, "n1", 18001, 15000, &node), 0);
    ASSERT_STR_EQ(json_get_string(node, "last_heartbeat"), "1970-01-01T00:00:18.000Z");
    cJSON_Delete(node);
    /* A node the store marked down comes back through a write: a caller
     * that may not wait is told so, and nothing changes. */
    ASSERT_EQ(store_sched_expire(s, 40000, 15000, &changed), 0);
    ASSERT_EQ(store_node_heartbeat(s, "n1", NULL, 40001, 15000, false, &stop, &changed, &state),
              STORE_WOULD_WAIT);
    ASSERT_EQ(store_node_get(s, "n1", 40001, 15000, &node), 0);
    ASSERT_STR_EQ(json_get_string(node, "state"), "down");
    cJSON_Delete(node);
    ASSERT_EQ(store_node_heartbeat(s, "n1", NULL, 40002, 15000, true, &stop, &changed, &state), 0);
    ASSERT_TRUE(changed);
    cJSON_Delete(stop);
    ASSERT_EQ(store_node_get(s, "n1", 40003, 15000, &node), 0);
    ASSERT_STR_EQ(json_get_string(node, "state"), "ready");
    cJSON_Delete(node);
    ASSERT_EQ(store_node_delete(s, "n1"), 0);
    ASSERT_EQ(store_node_delete(s, "n1"), ERR_NOT_FOUND);
    cJSON_Delete(reported);
    cJSON_Delete(empty_arr);
    cJSON_Delete(empty_obj);
    store_free(s);
}

static void token_binds_once(void)
{
    struct store *s;
    struct store_token t;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_token_create(s, "tok-1", "a", "agent", NULL, "h1", 1), 0);
    ASSERT_EQ(store_token_create(s, "tok-2", "b", "agent", NULL, "h1", 1), ERR_CONFLICT);
    ASSERT_EQ(store_token_bind(s, "tok-1", "n1"), 0);
    ASSERT_EQ(store_token_bind(s, "tok-1", "n1"), 0);
    ASSERT_EQ(store_token_bind(s, "tok-1", "n2"), ERR_CONFLICT);
    ASSERT_EQ(store_token_lookup(s, "h1", &t), 0);
    ASSERT_STR_EQ(t.node, "n1");
    ASSERT_EQ(store_token_delete(s, "tok-1"), 0);
    ASSERT_EQ(store_token_lookup(s, "h1", &t), ERR_NOT_FOUND);
    store_free(s);
}

static void series_downsamples_keeping_extremes(void)
{
    struct store *s;
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"tags\": {}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_run run = { 0 };
    struct store_point *points = calloc(20000, sizeof(*points));
    cJSON *series;
    const cJSON *p;
    bool dup = false;
    bool saw_min = false;
    bool saw_max = false;
    int64_t last_step = -1;
    int i;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    run = new_run("run-m", spec_text, spec, &task, 1);
    ASSERT_EQ(store_run_create(s, &run), 0);
    for (i = 0; i < 20000; i++) {
        points[i].name = "loss";
        /* A dip at 7777 and a spike at 12345 must survive downsampling. */
        points[i].value = i == 7777 ? -5.0 : i == 12345 ? 9.0 : 1.0;
        points[i].step = i;
        points[i].time = 1000 + i;
    }
    ASSERT_EQ(store_task_metrics(s, "run-m-a1-main", "", 1, points, 20000, &dup), 0);
    ASSERT_TRUE(!dup);
    ASSERT_EQ(store_task_metrics(s, "run-m-a1-main", "", 1, points, 20000, &dup), 0);
    ASSERT_TRUE(dup);
    ASSERT_EQ(store_run_metric_series(s, "run-m", "loss", 100, &series), 0);
    ASSERT_TRUE(cJSON_GetArraySize(json_get(series, "points")) <= 100);
    ASSERT_TRUE(cJSON_GetArraySize(json_get(series, "points")) >= 10);
    cJSON_ArrayForEach(p, json_get(series, "points")) {
        int64_t step = (int64_t)cJSON_GetArrayItem(p, 0)->valuedouble;
        double v = cJSON_GetArrayItem(p, 2)->valuedouble;

        ASSERT_TRUE(step > last_step);
        last_step = step;
        if (v == -5.0 && step == 7777)
            saw_min = true;
        if (v == 9.0 && step == 12345)
            saw_max = true;
    }
    ASSERT_TRUE(saw_min && saw_max);
    cJSON_Delete(series);
    ASSERT_EQ(store_run_metric_series(s, "run-m", "loss", 0, &series), 0);
    ASSERT_EQ(cJSON_GetArraySize(json_get(series, "points")), 20000);
    cJSON_Delete(series);
    free(points);
    cJSON_Delete(spec);
    store_free(s);
}

/* Trial numbers are allocated with the trial: a number is used once, in
 * order, and only while the sweep runs; ending it cancels what is live. */
static void sweep_trials_are_numbered_once(void)
{
    struct store *s;
    struct store_new_task task = { "main", "main", 0 };
    const char *spec_text = "{\"tags\": {}}";
    const char *sweep_spec = "{\"primary_metric\": {\"name\": \"acc\", \"goal\": "
                             "\"maximize\"}}";
    cJSON *spec = cJSON_Parse(spec_text);
    struct store_new_sweep sweep = { "swp-1", "exp", "alice", sweep_spec, 7, 1000 };
    struct store_sweep_row *rows;
    struct store_trial_row *trials;
    struct store_new_run run;
    cJSON *got;
    int n;

    ASSERT_EQ(store_open(temp_db(), STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(store_sweep_create(s, &sweep), 0);
    ASSERT_EQ(store_sweep_create(s, &sweep), ERR_CONFLICT);
    ASSERT_EQ(store_sweeps_running(s, &rows, &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(rows[0].seed, 7);
    ASSERT_EQ(rows[0].n_trials, 0);
    run = new_run("run-t0", spec_text, spec, &task, 1);
    run.sweep_seq = rows[0].seq;
    run.trial = 1; /* not the next number */
    run.parameters = "{\"x\": 1}";
    ASSERT_EQ(store_sweep_add_trial(s, &run), ERR_CONFLICT);
    run.trial = 0;
    ASSERT_EQ(store_sweep_add_trial(s, &run), 0);
    run.id = "run-t0b"; /* the same number again */
    ASSERT_EQ(store_sweep_add_trial(s, &run), ERR_CONFLICT);
    run.id = "run-t1";
    run.trial = 1;
    ASSERT_EQ(store_sweep_add_trial(s, &run), 0);
    ASSERT_EQ(store_run_get(s, "run-t0b", &got), ERR_NOT_FOUND);
    ASSERT_EQ(store_sweep_trials(s, rows[0].seq, &trials, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(trials[1].trial, 1);
    ASSERT_EQ(trials[1].status, RUN_QUEUED);
    store_trial_rows_free(trials, n);
    ASSERT_EQ(store_run_get(s, "run-t1", &got), 0);
    ASSERT_STR_EQ(json_get_string(got, "sweep_id"), "swp-1");
    ASSERT_EQ(json_get(json_get(got, "parameters"), "x")->valueint, 1);
    cJSON_Delete(got);

    ASSERT_EQ(store_sweep_finish(s, rows[0].seq, RUN_COMPLETED, NULL, 2000), 0);
    run.id = "run-t2";
    run.trial = 2;
    ASSERT_EQ(store_sweep_add_trial(s, &run), ERR_CONFLICT); /* it ended */
    ASSERT_EQ(store_sweep_get(s, "swp-1", &got), 0);
    ASSERT_STR_EQ(json_get_string(got, "status"), "completed");
    ASSERT_EQ(json_get(json_get(got, "trials"), "created")->valueint, 2);
    ASSERT_EQ(json_get(json_get(got, "trials"), "canceled")->valueint, 2);
    cJSON_Delete(got);
    ASSERT_EQ(store_sweep_cancel(s, "swp-1", NULL, 3000, &got), ERR_CONFLICT);
    store_sweep_rows_free(rows, 1);
    ASSERT_EQ(store_sweeps_running(s, &rows, &n), 0);
    ASSERT_EQ(n, 0);
    store_sweep_rows_free(rows, n);
    cJSON_Delete(spec);
    store_free(s);
}

UNIT_LIST(store_tests) = {
    { "store/sweep_trials_are_numbered_once", sweep_trials_are_numbered_once },
    { "store/series_downsamples_keeping_extremes", series_downsamples_keeping_extremes },
    { "store/migrates_and_reopens", migrates_and_reopens },
    { "store/quotas_count_old_runs_and_cut_logs", quotas_count_old_runs_and_cut_logs },
    { "store/refuses_newer_database", refuses_newer_database },
    { "store/tasks_and_points_survive_the_rebuilds", tasks_and_points_survive_the_rebuilds },
    { "store/runs_from_before_owners_have_none", runs_from_before_owners_have_none },
    { "store/async_write_reports_after_commit", async_write_reports_after_commit },
    { "store/concurrent_writers_all_commit", concurrent_writers_all_commit },
    { "store/duplicate_run_id_writes_nothing", duplicate_run_id_writes_nothing },
    { "store/chosen_run_ids_grow_and_skip_taken", chosen_run_ids_grow_and_skip_taken },
    { "store/stored_creation_events_show_once", stored_creation_events_show_once },
    { "store/created_run_prints_as_read", created_run_prints_as_read },
    { "store/cancel_is_idempotent", cancel_is_idempotent },
    { "store/node_goes_down_without_heartbeat", node_goes_down_without_heartbeat },
    { "store/token_binds_once", token_binds_once },
    { NULL, NULL },
};
