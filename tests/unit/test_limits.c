/* test_limits.c - what keeps one client's input from costing others:
 * the duplicate-key check, log escaping, stall accounting and reading a
 * run's log from a cursor. */
#include "tests/unit/unit.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/stall.h"
#include "common/timeutil.h"
#include "store/store.h"

static void duplicate_key_is_the_first_repeated(void)
{
    cJSON *o = cJSON_Parse("{\"a\":1,\"b\":2,\"c\":3,\"b\":4,\"a\":5}");
    cJSON *p = cJSON_Parse("{\"x\":1,\"y\":2,\"z\":3,\"y\":4}");
    cJSON *q = cJSON_Parse("{\"x\":1,\"y\":2}");

    ASSERT_STR_EQ(json_duplicate_key(o), "a");
    ASSERT_STR_EQ(json_duplicate_key(p), "y");
    ASSERT_TRUE(json_duplicate_key(q) == NULL);
    ASSERT_TRUE(json_duplicate_key(NULL) == NULL);
    cJSON_Delete(o);
    cJSON_Delete(p);
    cJSON_Delete(q);
}

/* The body: 87,000 keys, the repeated one last. */
static void duplicate_key_found_among_many(void)
{
    struct buf b;
    cJSON *o;
    int i;

    buf_init(&b);
    buf_addc(&b, '{');
    for (i = 0; i < 87000; i++)
        buf_printf(&b, "\"k%06d\":1,", i);
    buf_adds(&b, "\"k086999\":2}");
    o = json_parse(b.data, b.len);
    ASSERT_TRUE(o != NULL);
    ASSERT_STR_EQ(json_duplicate_key(o), "k086999");
    cJSON_Delete(o);
    buf_release(&b);
}

static void log_escape_keeps_one_event_per_line(void)
{
    char out[256];

    log_escape("GET /x\n2026-01-01T00:00:00Z info forged\r\x1b[31m", 45, out, sizeof(out));
    ASSERT_STR_EQ(out, "GET /x\\x0a2026-01-01T00:00:00Z info forged\\x0d\\x1b[31m");
    log_escape("a\\b \x7f", 6, out, sizeof(out));
    ASSERT_STR_EQ(out, "a\\\\b \\x7f");
    /* UTF-8 stays, C1 controls and stray bytes do not. */
    log_escape("caf\xc3\xa9 \xc2\x85 \xff", 11, out, sizeof(out));
    ASSERT_STR_EQ(out, "caf\xc3\xa9 \\xc2\\x85 \\xff");
    /* A short buffer is cut, never overrun, and stays terminated. */
    ASSERT_EQ(log_escape("\n\n\n\n", 4, out, 10), 8);
    ASSERT_STR_EQ(out, "\\x0a\\x0a");
}

static void stall_time_is_the_union_since(void)
{
    int64_t now = time_mono_us() / 1000;

    ASSERT_EQ(stall_ms_since(now - 60000), 0);
    stall_record(now - 5000, now - 2000);
    stall_record(now - 4000, now - 2500); /* inside the first */
    stall_record(now - 9000, now - 8500); /* too short to count */
    ASSERT_EQ(stall_ms_since(now - 10000), 3000);
    ASSERT_EQ(stall_ms_since(now - 3000), 1000);
    ASSERT_EQ(stall_ms_since(now - 1000), 0);
    /* A callback still running for a while counts up to now. */
    {
        int64_t token = stall_enter();

        (void)token;
        ASSERT_EQ(stall_ms_since(now - 1000), 0);
    }
}

static void log_cursor_reads_only_what_is_new(void)
{
    char dir[] = "/tmp/trainyard-unit-XXXXXX";
    char path[256];
    struct store *s;
    struct store_log_cursor cur;
    struct buf out;
    struct buf all;
    sqlite3 *db;
    bool ended = true;

    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/t.db", dir);
    ASSERT_EQ(store_open(path, STORE_SYNC_NORMAL, &s), 0);
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "INSERT INTO experiments(name, created_at, last_activity, run_count) "
                           "VALUES ('exp', 1, 1, 1);"
                           "INSERT INTO runs(seq, id, experiment, status, spec, pool, priority, "
                           "created_at) VALUES (7, 'run-m', 'exp', 'running', "
                           "'{\"tags\": {}}', 'default', 0, 1);"
                           "INSERT INTO tasks(id, run_seq, attempt, ord, name, type, idx, node, "
                           "gpus, status, started_at, held) VALUES "
                           "('run-m-a1-a', 7, 1, 0, 'a', 'worker', 0, 'n1', '[]', 'running', 4, "
                           "1), ('run-m-a1-b', 7, 1, 1, 'b', 'worker', 1, 'n1', '[]', "
                           "'running', 4, 1);"
                           "INSERT INTO log_chunks(run_seq, task_id, offset, data) VALUES "
                           "(7, 'run-m-a1-a', 0, 'one\ntw'), (7, 'run-m-a1-b', 0, 'x\n');",
                           NULL, NULL, NULL),
              SQLITE_OK);
    store_log_cursor_init(&cur);
    buf_init(&out);
    ASSERT_EQ(store_run_log_next(s, "run-m", NULL, &cur, 1 << 20, &out, &ended), 0);
    ASSERT_STR_EQ(out.data, "[a] one\n[b] x\n");
    ASSERT_TRUE(!ended);
    buf_reset(&out);
    ASSERT_EQ(store_run_log_next(s, "run-m", NULL, &cur, 1 << 20, &out, &ended), 0);
    ASSERT_EQ(out.len, 0);
    ASSERT_EQ(sqlite3_exec(db,
                           "INSERT INTO log_chunks(run_seq, task_id, offset, data) VALUES "
                           "(7, 'run-m-a1-a', 6, 'o\nthree\nfour');"
                           "UPDATE runs SET status = 'completed' WHERE seq = 7;",
                           NULL, NULL, NULL),
              SQLITE_OK);
    ASSERT_EQ(store_run_log_next(s, "run-m", NULL, &cur, 1 << 20, &out, &ended), 0);
    /* The held-back line joins up; the unfinished last one goes out at
     * the end. */
    ASSERT_STR_EQ(out.data, "[a] two\n[a] three\n[a] four\n");
    ASSERT_TRUE(ended);
    store_log_cursor_release(&cur);
    /* The whole read gives the same text as the pieces. */
    buf_init(&all);
    ASSERT_EQ(store_run_log(s, "run-m", NULL, &all, &ended), 0);
    ASSERT_STR_EQ(all.data, "[a] one\n[b] x\n[a] two\n[a] three\n[a] four\n");
    /* One task, unprefixed; an unknown one is not found. */
    buf_reset(&all);
    ASSERT_EQ(store_run_log(s, "run-m", "b", &all, &ended), 0);
    ASSERT_STR_EQ(all.data, "x\n");
    ASSERT_EQ(store_run_log(s, "run-m", "zz", &all, &ended), ERR_NOT_FOUND);
    buf_release(&all);
    buf_release(&out);
    sqlite3_close(db);
    store_free(s);
}

UNIT_LIST(limits_tests) = {
    { "limits/duplicate_key_is_the_first_repeated", duplicate_key_is_the_first_repeated },
    { "limits/duplicate_key_found_among_many", duplicate_key_found_among_many },
    { "limits/log_escape_keeps_one_event_per_line", log_escape_keeps_one_event_per_line },
    { "limits/stall_time_is_the_union_since", stall_time_is_the_union_since },
    { "limits/log_cursor_reads_only_what_is_new", log_cursor_reads_only_what_is_new },
    { NULL, NULL },
};
