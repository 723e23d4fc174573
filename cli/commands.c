/*
 * commands.c - the client commands that read or change one resource:
 * runs, run, logs, cancel, nodes and drain. Each prints a table or a short
 * summary, or with --json the server's JSON as it came.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define TABLE_MAX_COLUMNS 8
/* How long --follow waits before taking up a stream the server ended early. */
#define FOLLOW_RETRY_S 1

/* ---- option parsing -------------------------------------------------------- */

/*
 * Parses argv with the common options plus longopts' own ones, which go to
 * own (it returns -1 to go on, else an exit code), and expects exactly npos
 * positional arguments, stored in pos[]. Then resolves the server and
 * token. Returns -1 when the command should go on, else the exit code (help
 * printed, or bad usage).
 */
static int parse(struct cli *c, int argc, char **argv, const struct option *longopts,
                 const char *optstring, const char *usage,
                 int (*own)(struct cli *c, void *state, int opt, const char *arg), void *state,
                 int npos, const char **pos, const char *pos_names)
{
    int rc = -1;
    int opt;
    int i;

    opterr = 0;
    optind = 1;
    while (rc < 0 && (opt = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        if (cli_common_option(c, opt, optarg))
            continue;
        if (opt == 'h') {
            fputs(usage, stdout);
            rc = CLI_EXIT_OK;
        } else if (opt == '?' || opt == ':') {
            rc = cli_bad_option(c, opt, argv);
        } else if (own) {
            rc = own(c, state, opt, optarg);
        } else {
            rc = cli_usage_error(c, "unexpected option");
        }
    }
    if (rc >= 0)
        return rc;
    if (argc - optind < npos)
        return cli_usage_error(c, "missing %s", pos_names);
    if (argc - optind > npos)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind + npos]);
    for (i = 0; i < npos; i++) {
        if (argv[optind + i][0] == '\0')
            return cli_usage_error(c, "%s must not be empty", pos_names);
        pos[i] = argv[optind + i];
    }
    return cli_resolve(c) == 0 ? -1 : CLI_EXIT_USAGE;
}

/* ---- requests ------------------------------------------------------------- */

/*
 * Sends a request and, on a 2xx answer with a JSON body, returns it in
 * *ret_json (caller frees; may be NULL when not wanted). Prints the error
 * and returns CLI_EXIT_FAILED otherwise. With c->json the body is printed
 * as is.
 */
static int call(struct cli *c, const char *method, const char *path, const char *json_body,
                cJSON **ret_json)
{
    struct cli_response r;
    cJSON *root = NULL;
    int rc = CLI_EXIT_OK;

    cli_response_init(&r);
    if (cli_request(c, method, path, json_body ? "application/json" : NULL, json_body,
                    json_body ? strlen(json_body) : 0, CLI_TIMEOUT_MS, &r) < 0) {
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    if (!cli_response_ok(&r)) {
        rc = cli_report_error(c, &r);
        goto out;
    }
    if (c->json)
        cli_print_body(&r);
    if (ret_json) {
        root = json_parse(r.body.data, r.body.len);
        if (root == NULL) {
            rc = cli_fail("the server's answer to %s %s is not JSON", method, path);
            goto out;
        }
        *ret_json = root;
    }
out:
    cli_response_release(&r);
    return rc;
}

/* ---- output helpers -------------------------------------------------------- */

/* Rows of cells, printed with columns as wide as their widest cell. */
struct table {
    size_t columns;
    size_t rows;
    size_t cap;
    char **cells; /* rows * columns, owned */
};

static void table_add(struct table *t, char **row)
{
    size_t i;

    if (t->rows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = xrealloc(t->cells, t->cap * t->columns * sizeof(*t->cells));
    }
    for (i = 0; i < t->columns; i++)
        t->cells[t->rows * t->columns + i] = row[i];
    t->rows++;
}

static void table_print(struct table *t)
{
    size_t width[TABLE_MAX_COLUMNS] = { 0 };
    size_t r;
    size_t i;

    for (r = 0; r < t->rows; r++) {
        for (i = 0; i < t->columns; i++) {
            size_t n = strlen(t->cells[r * t->columns + i]);

            if (n > width[i])
                width[i] = n;
        }
    }
    for (r = 0; r < t->rows; r++) {
        for (i = 0; i < t->columns; i++) {
            const char *cell = t->cells[r * t->columns + i];

            if (i + 1 == t->columns)
                printf("%s\n", cell);
            else
                printf("%-*s  ", (int)width[i], cell);
        }
    }
}

static void table_release(struct table *t)
{
    size_t i;

    for (i = 0; i < t->rows * t->columns; i++)
        free(t->cells[i]);
    free(t->cells);
}

/* A field as display text: strings as they are, numbers compact, else "-". */
static char *field_text(const cJSON *object, const char *key)
{
    const cJSON *item = object ? json_get(object, key) : NULL;
    char num[64];

    if (cJSON_IsString(item) && item->valuestring[0])
        return xstrdup(item->valuestring);
    if (cJSON_IsNumber(item)) {
        cli_format_number(item->valuedouble, num, sizeof(num));
        return xstrdup(num);
    }
    if (cJSON_IsBool(item))
        return xstrdup(cJSON_IsTrue(item) ? "true" : "false");
    return xstrdup("-");
}

/* "name=value name=value" of an object of numbers, or "-". */
static char *pairs_text(const cJSON *object)
{
    const cJSON *item;
    struct buf b;
    char num[64];
    char *text;

    buf_init(&b);
    cJSON_ArrayForEach(item, object) {
        if (b.len)
            buf_addc(&b, ' ');
        if (cJSON_IsNumber(item)) {
            cli_format_number(item->valuedouble, num, sizeof(num));
            buf_printf(&b, "%s=%s", item->string, num);
        } else if (cJSON_IsString(item)) {
            buf_printf(&b, "%s=%s", item->string, item->valuestring);
        }
    }
    if (b.len == 0)
        buf_adds(&b, "-");
    text = buf_detach(&b, NULL);
    /* buf_detach() leaves b initialised, holding fresh memory. */
    buf_release(&b);
    return text;
}

/* A count: a number as is, an array by its length. */
static char *count_text(const cJSON *object, const char *key)
{
    const cJSON *item = object ? json_get(object, key) : NULL;

    if (cJSON_IsArray(item))
        return xasprintf("%d", cJSON_GetArraySize(item));
    return field_text(object, key);
}

/* Warns on stderr that a listing has more pages than were shown. */
static void note_more(const cJSON *page, const char *what)
{
    if (cJSON_IsString(json_get(page, "next_cursor")))
        fprintf(stderr, "trainyard: more %s than shown; use --limit or narrower filters\n", what);
}

bool cli_run_status_final(const char *status)
{
    return status && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
                      strcmp(status, "canceled") == 0);
}

/* ---- runs ----------------------------------------------------------------- */

static const char runs_usage[] =
    "usage: trainyard runs [options]\n"
    "\n"
    "Lists runs, newest first: ID, EXPERIMENT, OWNER, STATUS, CREATED, METRICS.\n"
    "OWNER is the name of the token that submitted the run ('-' for runs from\n"
    "before owners were recorded).\n"
    "\n"
    "  --experiment E    only runs of experiment E\n"
    "  --owner NAME      only runs submitted by tokens named NAME\n"
    "  --status S        only runs in status S (queued, starting, running, completed,\n"
    "                    failed, canceled)\n"
    "  --tag K:V         only runs with tag K set to V\n"
    "  --limit N         at most N runs, 1 to 1000 (default: the server's, 100)\n"
    "\n" CLI_COMMON_HELP;

enum runs_opt {
    OPT_EXPERIMENT = CLI_OPT_FIRST_OWN,
    OPT_OWNER,
    OPT_STATUS,
    OPT_TAG,
    OPT_LIMIT,
    OPT_UNDO,
    OPT_TASK,
};

struct runs_query {
    struct buf q; /* "&k=v" pairs */
};

static int runs_option(struct cli *c, void *state, int opt, const char *arg)
{
    struct runs_query *rq = state;
    const char *key;
    char *esc;
    long v;

    switch (opt) {
    case OPT_EXPERIMENT:
        key = "experiment";
        break;
    case OPT_OWNER:
        key = "owner";
        break;
    case OPT_STATUS:
        key = "status";
        break;
    case OPT_TAG:
        if (strchr(arg, ':') == NULL || arg[0] == ':')
            return cli_usage_error(c, "--tag takes KEY:VALUE, not '%s'", arg);
        key = "tag";
        break;
    case OPT_LIMIT:
        if (!cli_parse_long(arg, 1, 1000, &v))
            return cli_usage_error(c, "--limit must be 1 to 1000, not '%s'", arg);
        key = "limit";
        break;
    default:
        return cli_usage_error(c, "unexpected option");
    }
    esc = cli_escape(c, arg);
    buf_printf(&rq->q, "&%s=%s", key, esc);
    free(esc);
    return -1;
}

int cli_runs(struct cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "experiment", required_argument, NULL, OPT_EXPERIMENT },
        { "owner", required_argument, NULL, OPT_OWNER },
        { "status", required_argument, NULL, OPT_STATUS },
        { "tag", required_argument, NULL, OPT_TAG },
        { "limit", required_argument, NULL, OPT_LIMIT },
        CLI_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    static const char *const header[] = { "ID",     "EXPERIMENT", "OWNER",
                                          "STATUS", "CREATED",    "METRICS" };
    struct runs_query rq;
    struct table t = { 6, 0, 0, NULL };
    cJSON *page = NULL;
    const cJSON *run;
    char *path = NULL;
    char *row[6];
    size_t i;
    int rc;

    buf_init(&rq.q);
    rc = parse(c, argc, argv, longopts, ":h", runs_usage, runs_option, &rq, 0, NULL, "");
    if (rc >= 0)
        goto out;
    path = xasprintf("/api/v1/runs%s%s", rq.q.len ? "?" : "", rq.q.len ? rq.q.data + 1 : "");
    rc = call(c, "GET", path, NULL, c->json ? NULL : &page);
    if (rc != 0 || c->json)
        goto out;
    for (i = 0; i < 6; i++)
        row[i] = xstrdup(header[i]);
    table_add(&t, row);
    cJSON_ArrayForEach(run, json_get(page, "items")) {
        row[0] = field_text(run, "id");
        row[1] = field_text(run, "experiment");
        row[2] = field_text(run, "owner");
        row[3] = field_text(run, "status");
        row[4] = field_text(run, "created_at");
        row[5] = pairs_text(json_get(run, "metrics"));
        table_add(&t, row);
    }
    table_print(&t);
    note_more(page, "runs");
out:
    table_release(&t);
    cJSON_Delete(page);
    free(path);
    buf_release(&rq.q);
    return rc;
}

/* ---- run ------------------------------------------------------------------ */

static const char run_usage[] =
    "usage: trainyard run ID [options]\n"
    "\n"
    "Shows a run: status, attempt, error, reason, its tasks (node, status, exit code)\n"
    "and its latest metrics.\n"
    "\n" CLI_COMMON_HELP;

/* Prints "label:  value" when the field has a value (always when always). */
static void print_field(const char *label, const cJSON *object, const char *key, bool always)
{
    char *text = field_text(object, key);

    if (always || strcmp(text, "-") != 0)
        printf("%-12s%s\n", label, text);
    free(text);
}

/* Prints the run's command, when it has one, as its words. */
static void print_command(const cJSON *spec)
{
    const cJSON *word;
    const char *sep = "";

    if (!cJSON_IsArray(json_get(spec, "command")))
        return;
    printf("%-12s", "command:");
    cJSON_ArrayForEach(word, json_get(spec, "command")) {
        if (cJSON_IsString(word)) {
            printf("%s%s", sep, word->valuestring);
            sep = " ";
        }
    }
    printf("\n");
}

static void print_run(const cJSON *run)
{
    static const char *const header[] = { "  TASK", "TYPE", "NODE", "STATUS", "EXIT", "ADDRESS" };
    struct table t = { 6, 0, 0, NULL };
    const cJSON *spec = json_get(run, "spec");
    const cJSON *tasks = json_get(run, "tasks");
    const cJSON *metrics = json_get(run, "metrics");
    const cJSON *task;
    const cJSON *metric;
    char *row[6];
    char num[64];
    size_t i;

    print_field("id:", run, "id", true);
    print_field("experiment:", run, "experiment", true);
    print_field("owner:", run, "owner", true);
    print_field("status:", run, "status", true);
    print_field("attempt:", run, "attempt", true);
    print_field("error:", run, "error", false);
    print_field("reason:", run, "reason", false);
    print_field("entry:", spec, "entry_script", false);
    print_command(spec);
    print_field("backend:", spec, "distributed_backend", false);
    print_field("pool:", spec, "compute_target", false);
    print_field("created:", run, "created_at", true);
    print_field("started:", run, "started_at", false);
    print_field("ended:", run, "ended_at", false);
    if (cJSON_GetArraySize(tasks) > 0) {
        printf("tasks:\n");
        for (i = 0; i < 6; i++)
            row[i] = xstrdup(header[i]);
        table_add(&t, row);
        cJSON_ArrayForEach(task, tasks) {
            char *name = field_text(task, "name");

            row[0] = xasprintf("  %s", name);
            free(name);
            row[1] = field_text(task, "type");
            row[2] = field_text(task, "node");
            row[3] = field_text(task, "status");
            row[4] = field_text(task, "exit_code");
            row[5] = field_text(task, "address");
            table_add(&t, row);
        }
        table_print(&t);
        table_release(&t);
    }
    if (cJSON_GetArraySize(metrics) > 0) {
        printf("metrics:\n");
        cJSON_ArrayForEach(metric, metrics) {
            if (cJSON_IsNumber(metric)) {
                cli_format_number(metric->valuedouble, num, sizeof(num));
                printf("  %-20s %s\n", metric->string, num);
            }
        }
    }
}

int cli_run(struct cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    const char *id = NULL;
    cJSON *run = NULL;
    char *esc = NULL;
    char *path = NULL;
    int rc;

    rc = parse(c, argc, argv, longopts, ":h", run_usage, NULL, NULL, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    esc = cli_escape(c, id);
    path = xasprintf("/api/v1/runs/%s", esc);
    rc = call(c, "GET", path, NULL, c->json ? NULL : &run);
    if (rc == 0 && !c->json)
        print_run(run);
    cJSON_Delete(run);
    free(path);
    free(esc);
    return rc;
}

/* ---- logs ----------------------------------------------------------------- */

static const char logs_usage[] =
    "usage: trainyard logs ID [options]\n"
    "\n"
    "Prints a run's logs as text; in a run of several tasks each line starts with\n"
    "its task's name, as in '[worker-1] '.\n"
    "\n"
    "  -f, --follow      keep printing new lines until the run ends\n"
    "  --task T          only the task T (a task id or name)\n"
    "\n" CLI_COMMON_HELP;

struct logs_opts {
    const char *task;
    bool follow;
};

static int logs_option(struct cli *c, void *state, int opt, const char *arg)
{
    struct logs_opts *lo = state;

    if (opt == 'f') {
        lo->follow = true;
        return -1;
    }
    if (opt == OPT_TASK) {
        lo->task = arg;
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

/* GETs the run and says whether it has ended; false also on errors. */
static bool run_has_ended(struct cli *c, const char *esc_id, int *ret_rc)
{
    struct cli_response r;
    char *path = xasprintf("/api/v1/runs/%s", esc_id);
    cJSON *run = NULL;
    bool ended = false;

    *ret_rc = 0;
    cli_response_init(&r);
    if (cli_request(c, "GET", path, NULL, NULL, 0, CLI_TIMEOUT_MS, &r) < 0) {
        *ret_rc = CLI_EXIT_FAILED;
    } else if (!cli_response_ok(&r)) {
        *ret_rc = cli_report_error(c, &r);
    } else {
        run = json_parse(r.body.data, r.body.len);
        ended = run && cli_run_status_final(json_get_string(run, "status"));
    }
    cJSON_Delete(run);
    cli_response_release(&r);
    free(path);
    return ended;
}

int cli_stream_logs(struct cli *c, const char *run_id, const char *task, bool follow)
{
    struct cli_response r;
    char *esc_id = cli_escape(c, run_id);
    char *esc_task = task ? cli_escape(c, task) : NULL;
    char *path = NULL;
    size_t offset = 0;
    size_t copied;
    int rc = 0;
    int err;

    cli_response_init(&r);
    for (;;) {
        free(path);
        path = xasprintf("/api/v1/runs/%s/logs?follow=%d&offset=%zu%s%s", esc_id, follow ? 1 : 0,
                         offset, esc_task ? "&task=" : "", esc_task ? esc_task : "");
        copied = 0;
        err = cli_stream(c, path, stdout, follow ? 0L : CLI_DOWNLOAD_TIMEOUT_MS, &copied, &r);
        /* Only a dropped connection is worth taking up again. */
        if (err < 0 && (!follow || err != ERR_UNAVAILABLE)) {
            rc = CLI_EXIT_FAILED;
            break;
        }
        offset += copied;
        if (r.status != 0 && !cli_response_ok(&r)) {
            rc = cli_report_error(c, &r);
            break;
        }
        if (!follow || run_has_ended(c, esc_id, &rc) || rc != 0)
            break;
        /* The stream ended before the run did (a restart, a dropped
         * connection): take it up again where it stopped. */
        sleep(FOLLOW_RETRY_S);
    }
    cli_response_release(&r);
    free(path);
    free(esc_task);
    free(esc_id);
    return rc;
}

int cli_logs(struct cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "follow", no_argument, NULL, 'f' },
        { "task", required_argument, NULL, OPT_TASK },
        CLI_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    struct logs_opts lo = { NULL, false };
    const char *id = NULL;
    int rc;

    rc = parse(c, argc, argv, longopts, ":hf", logs_usage, logs_option, &lo, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    return cli_stream_logs(c, id, lo.task, lo.follow);
}

/* ---- cancel --------------------------------------------------------------- */

static const char cancel_usage[] =
    "usage: trainyard cancel ID [options]\n"
    "\n"
    "Cancels a run: every task is stopped and the run ends as canceled. Cancelling a\n"
    "canceled run changes nothing; a run that has completed or failed cannot be canceled.\n"
    "\n" CLI_COMMON_HELP;

int cli_cancel(struct cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    const char *id = NULL;
    cJSON *run = NULL;
    char *esc = NULL;
    char *path = NULL;
    char *status;
    int rc;

    rc = parse(c, argc, argv, longopts, ":h", cancel_usage, NULL, NULL, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    esc = cli_escape(c, id);
    path = xasprintf("/api/v1/runs/%s/cancel", esc);
    rc = call(c, "POST", path, NULL, c->json ? NULL : &run);
    if (rc == 0 && !c->json) {
        status = field_text(run, "status");
        printf("%s %s\n", id, status);
        free(status);
    }
    cJSON_Delete(run);
    free(path);
    free(esc);
    return rc;
}

/* ---- nodes ---------------------------------------------------------------- */

static const char nodes_usage[] =
    "usage: trainyard nodes [options]\n"
    "\n"
    "Lists the registered nodes: NAME, POOL, STATE (ready, draining, down), CPUS, GPUS\n"
    "and what is ALLOCATED to running tasks.\n"
    "\n" CLI_COMMON_HELP;

static char *allocated_text(const cJSON *node)
{
    const cJSON *a = json_get(node, "allocated");
    char *cpus;
    char *gpus;
    char *mem;
    char *text;

    if (!cJSON_IsObject(a))
        return xstrdup("-");
    cpus = count_text(a, "cpus");
    gpus = count_text(a, "gpus");
    mem = count_text(a, "memory_mb");
    text = xasprintf("cpus=%s gpus=%s memory_mb=%s", cpus, gpus, mem);
    free(cpus);
    free(gpus);
    free(mem);
    return text;
}

int cli_nodes(struct cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    static const char *const header[] = { "NAME", "POOL", "STATE", "CPUS", "GPUS", "ALLOCATED" };
    struct table t = { 6, 0, 0, NULL };
    cJSON *page = NULL;
    const cJSON *node;
    char *path = NULL;
    char *cursor = NULL;
    char *row[6];
    size_t i;
    int rc;

    rc = parse(c, argc, argv, longopts, ":h", nodes_usage, NULL, NULL, 0, NULL, "");
    if (rc >= 0)
        return rc;
    for (i = 0; i < 6; i++)
        row[i] = xstrdup(header[i]);
    table_add(&t, row);
    /* With --json the first page is the answer; the table gathers every page. */
    do {
        const char *next;

        free(path);
        path = xasprintf("/api/v1/nodes?limit=1000%s%s", cursor ? "&cursor=" : "",
                         cursor ? cursor : "");
        rc = call(c, "GET", path, NULL, c->json ? NULL : &page);
        if (rc != 0 || c->json)
            goto out;
        cJSON_ArrayForEach(node, json_get(page, "items")) {
            row[0] = field_text(node, "name");
            row[1] = field_text(node, "pool");
            row[2] = field_text(node, "state");
            row[3] = field_text(node, "cpus");
            row[4] = count_text(node, "gpus");
            row[5] = allocated_text(node);
            table_add(&t, row);
        }
        free(cursor);
        next = json_get_string(page, "next_cursor");
        cursor = next ? cli_escape(c, next) : NULL;
        cJSON_Delete(page);
        page = NULL;
    } while (cursor);
    table_print(&t);
out:
    table_release(&t);
    cJSON_Delete(page);
    free(cursor);
    free(path);
    return rc;
}

/* ---- drain ---------------------------------------------------------------- */

static const char drain_usage[] =
    "usage: trainyard drain NODE [options]\n"
    "\n"
    "Drains a node: it takes no new tasks; running ones go on. Needs an admin token.\n"
    "\n"
    "  --undo            make the node ready again\n"
    "\n" CLI_COMMON_HELP;

static int drain_option(struct cli *c, void *state, int opt, const char *arg)
{
    bool *undo = state;

    (void)arg;
    if (opt == OPT_UNDO) {
        *undo = true;
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

int cli_drain(struct cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "undo", no_argument, NULL, OPT_UNDO },
        CLI_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    const char *name = NULL;
    cJSON *node = NULL;
    char *esc = NULL;
    char *path = NULL;
    char *state;
    bool undo = false;
    int rc;

    rc = parse(c, argc, argv, longopts, ":h", drain_usage, drain_option, &undo, 1, &name, "NODE");
    if (rc >= 0)
        return rc;
    esc = cli_escape(c, name);
    path = xasprintf("/api/v1/nodes/%s/drain", esc);
    rc = call(c, "POST", path, undo ? "{\"drain\":false}" : "{\"drain\":true}",
              c->json ? NULL : &node);
    if (rc == 0 && !c->json) {
        state = field_text(node, "state");
        printf("%s %s\n", name, state);
        free(state);
    }
    cJSON_Delete(node);
    free(path);
    free(esc);
    return rc;
}
