/*
 * commands.c - the client commands that read or change one resource:
 * runs, run, logs, cancel, nodes and drain. Each prints a table or a short
 * summary, or with --json the server's JSON as it came.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/backend.h"
#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* How long --follow waits before taking up a stream the server ended early. */
#define FOLLOW_RETRY_S 1

/* ---- option parsing -------------------------------------------------------- */

int cli_parse_args(struct cli *c, int argc, char **argv,
                   int (*own)(struct cli *c, void *state, int opt, const char *arg), void *state,
                   int min, int max, const char **pos, const char *pos_names)
{
    int rc = -1;
    int opt;
    int i;

    assert(min <= max);
    opterr = 0;
    optind = 1;
    while (rc < 0 &&
           (opt = getopt_long(argc, argv, c->cmd->optstring, c->cmd->longopts, NULL)) != -1) {
        if (cli_common_option(c, opt, optarg))
            continue;
        if (opt == 'h') {
            fputs(c->cmd->usage, stdout);
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
    if (argc - optind < min)
        return cli_usage_error(c, "missing %s", pos_names);
    if (argc - optind > max)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind + max]);
    for (i = 0; i < max; i++) {
        pos[i] = optind + i < argc ? argv[optind + i] : NULL;
        if (pos[i] && pos[i][0] == '\0')
            return cli_usage_error(c, "%s must not be empty", pos_names);
    }
    return cli_resolve(c) == 0 ? -1 : CLI_EXIT_USAGE;
}

/* ---- requests ------------------------------------------------------------- */

int cli_call(struct cli *c, const char *method, const char *path, const char *json_body,
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

void cli_table_init(struct cli_table *t, size_t columns, const char *const *header)
{
    char *row[CLI_TABLE_MAX_COLUMNS];
    size_t i;

    assert(columns > 0 && columns <= CLI_TABLE_MAX_COLUMNS);
    memset(t, 0, sizeof(*t));
    t->columns = columns;
    for (i = 0; i < columns; i++)
        row[i] = xstrdup(header[i]);
    cli_table_add(t, row);
}

void cli_table_add(struct cli_table *t, char **row)
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

void cli_table_print(const struct cli_table *t)
{
    struct buf b;

    buf_init(&b);
    cli_table_format(t, &b);
    fwrite(b.data, 1, b.len, stdout);
    buf_release(&b);
}

void cli_table_format(const struct cli_table *t, struct buf *out)
{
    size_t width[CLI_TABLE_MAX_COLUMNS] = { 0 };
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
                buf_printf(out, "%s\n", cell);
            else
                buf_printf(out, "%-*s  ", (int)width[i], cell);
        }
    }
}

void cli_table_release(struct cli_table *t)
{
    size_t i;

    for (i = 0; i < t->rows * t->columns; i++)
        free(t->cells[i]);
    free(t->cells);
}

char *cli_field_text(const cJSON *object, const char *key)
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

char *cli_pairs_text(const cJSON *object, bool exact)
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
            if (exact)
                cli_format_exact(item->valuedouble, num, sizeof(num));
            else
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
    return cli_field_text(object, key);
}

/* Warns on stderr that a listing has more pages than were shown. */
static void note_more(const cJSON *page, const char *what)
{
    if (cJSON_IsString(json_get(page, "next_cursor")))
        fprintf(stderr, "trainyard: more %s than shown; use --limit or narrower filters\n", what);
}

int cli_list_all(struct cli *c, const char *path, struct cli_table *t,
                 void (*row)(const cJSON *item, struct cli_table *t))
{
    const char *sep = strchr(path, '?') ? "&" : "?";
    cJSON *page = NULL;
    const cJSON *item;
    char *cursor = NULL;
    char *url = NULL;
    int rc;

    /* With --json the first page is the answer; the table gathers every page. */
    do {
        const char *next;

        free(url);
        url = xasprintf("%s%slimit=1000%s%s", path, sep, cursor ? "&cursor=" : "",
                        cursor ? cursor : "");
        rc = cli_call(c, "GET", url, NULL, c->json ? NULL : &page);
        if (rc != 0 || c->json)
            break;
        cJSON_ArrayForEach(item, json_get(page, "items")) {
            row(item, t);
        }
        free(cursor);
        next = json_get_string(page, "next_cursor");
        cursor = next ? cli_escape(c, next) : NULL;
        cJSON_Delete(page);
        page = NULL;
    } while (cursor);
    cJSON_Delete(page);
    free(cursor);
    free(url);
    return rc;
}

bool cli_run_status_final(const char *status)
{
    int s = run_status_parse(status);

    return s >= 0 && run_status_is_final((enum run_status)s);
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

static const struct option runs_opts[] = {
    { "experiment", required_argument, NULL, OPT_EXPERIMENT },
    { "owner", required_argument, NULL, OPT_OWNER },
    { "status", required_argument, NULL, OPT_STATUS },
    { "tag", required_argument, NULL, OPT_TAG },
    { "limit", required_argument, NULL, OPT_LIMIT },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int runs_main(struct cli *c, int argc, char **argv)
{
    static const char *const header[] = { "ID",     "EXPERIMENT", "OWNER",
                                          "STATUS", "CREATED",    "METRICS" };
    struct runs_query rq;
    struct cli_table t = { 6, 0, 0, NULL };
    cJSON *page = NULL;
    const cJSON *run;
    char *path = NULL;
    char *row[6];
    size_t i;
    int rc;

    buf_init(&rq.q);
    rc = cli_parse_args(c, argc, argv, runs_option, &rq, 0, 0, NULL, "");
    if (rc >= 0)
        goto out;
    path = xasprintf("/api/v1/runs%s%s", rq.q.len ? "?" : "", rq.q.len ? rq.q.data + 1 : "");
    rc = cli_call(c, "GET", path, NULL, c->json ? NULL : &page);
    if (rc != 0 || c->json)
        goto out;
    for (i = 0; i < 6; i++)
        row[i] = xstrdup(header[i]);
    cli_table_add(&t, row);
    cJSON_ArrayForEach(run, json_get(page, "items")) {
        row[0] = cli_field_text(run, "id");
        row[1] = cli_field_text(run, "experiment");
        row[2] = cli_field_text(run, "owner");
        row[3] = cli_field_text(run, "status");
        row[4] = cli_field_text(run, "created_at");
        row[5] = cli_pairs_text(json_get(run, "metrics"), false);
        cli_table_add(&t, row);
    }
    cli_table_print(&t);
    note_more(page, "runs");
out:
    cli_table_release(&t);
    cJSON_Delete(page);
    free(path);
    buf_release(&rq.q);
    return rc;
}

const struct cli_command cli_cmd_runs = {
    .name = "runs",
    .summary = "list runs",
    .usage = runs_usage,
    .longopts = runs_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = runs_main,
};

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
    char *text = cli_field_text(object, key);

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
    struct cli_table t = { 6, 0, 0, NULL };
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
        cli_table_add(&t, row);
        cJSON_ArrayForEach(task, tasks) {
            char *name = cli_field_text(task, "name");

            row[0] = xasprintf("  %s", name);
            free(name);
            row[1] = cli_field_text(task, "type");
            row[2] = cli_field_text(task, "node");
            row[3] = cli_field_text(task, "status");
            row[4] = cli_field_text(task, "exit_code");
            row[5] = cli_field_text(task, "address");
            cli_table_add(&t, row);
        }
        cli_table_print(&t);
        cli_table_release(&t);
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

static const struct option run_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int run_main(struct cli *c, int argc, char **argv)
{
    const char *id = NULL;
    cJSON *run = NULL;
    char *esc = NULL;
    char *path = NULL;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 1, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    esc = cli_escape(c, id);
    path = xasprintf("/api/v1/runs/%s", esc);
    rc = cli_call(c, "GET", path, NULL, c->json ? NULL : &run);
    if (rc == 0 && !c->json)
        print_run(run);
    cJSON_Delete(run);
    free(path);
    free(esc);
    return rc;
}

const struct cli_command cli_cmd_run = {
    .name = "run",
    .summary = "show a run: status, tasks, metrics",
    .usage = run_usage,
    .longopts = run_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = run_main,
};

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

static const struct option logs_opts[] = {
    { "follow", no_argument, NULL, 'f' },
    { "task", required_argument, NULL, OPT_TASK },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int logs_main(struct cli *c, int argc, char **argv)
{
    struct logs_opts lo = { NULL, false };
    const char *id = NULL;
    int rc;

    rc = cli_parse_args(c, argc, argv, logs_option, &lo, 1, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    return cli_stream_logs(c, id, lo.task, lo.follow);
}

const struct cli_command cli_cmd_logs = {
    .name = "logs",
    .summary = "print a run's logs (-f to follow)",
    .usage = logs_usage,
    .longopts = logs_opts,
    .optstring = ":hf",
    .operand = NULL,
    .run = logs_main,
};

/* ---- cancel --------------------------------------------------------------- */

static const char cancel_usage[] =
    "usage: trainyard cancel ID [options]\n"
    "\n"
    "Cancels a run: every task is stopped and the run ends as canceled. Cancelling a\n"
    "canceled run changes nothing; a run that has completed or failed cannot be canceled.\n"
    "\n" CLI_COMMON_HELP;

static const struct option cancel_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int cancel_main(struct cli *c, int argc, char **argv)
{
    const char *id = NULL;
    cJSON *run = NULL;
    char *esc = NULL;
    char *path = NULL;
    char *status;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 1, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    esc = cli_escape(c, id);
    path = xasprintf("/api/v1/runs/%s/cancel", esc);
    rc = cli_call(c, "POST", path, NULL, c->json ? NULL : &run);
    if (rc == 0 && !c->json) {
        status = cli_field_text(run, "status");
        printf("%s %s\n", id, status);
        free(status);
    }
    cJSON_Delete(run);
    free(path);
    free(esc);
    return rc;
}

const struct cli_command cli_cmd_cancel = {
    .name = "cancel",
    .summary = "cancel a run",
    .usage = cancel_usage,
    .longopts = cancel_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = cancel_main,
};

/* ---- nodes ---------------------------------------------------------------- */

static const char nodes_usage[] =
    "usage: trainyard nodes [options]\n"
    "\n"
    "Lists the registered nodes: NAME, POOL, STATE (ready, draining, down), CPUS, GPUS\n"
    "and what is ALLOCATED to its live (assigned, preparing or running) tasks.\n"
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

static const struct option nodes_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/* One row of the nodes table. */
static void node_row(const cJSON *node, struct cli_table *t)
{
    char *row[6];

    row[0] = cli_field_text(node, "name");
    row[1] = cli_field_text(node, "pool");
    row[2] = cli_field_text(node, "state");
    row[3] = cli_field_text(node, "cpus");
    row[4] = count_text(node, "gpus");
    row[5] = allocated_text(node);
    cli_table_add(t, row);
}

static int nodes_main(struct cli *c, int argc, char **argv)
{
    static const char *const header[] = { "NAME", "POOL", "STATE", "CPUS", "GPUS", "ALLOCATED" };
    struct cli_table t;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 0, 0, NULL, "");
    if (rc >= 0)
        return rc;
    cli_table_init(&t, 6, header);
    rc = cli_list_all(c, "/api/v1/nodes", &t, node_row);
    if (rc == 0 && !c->json)
        cli_table_print(&t);
    cli_table_release(&t);
    return rc;
}

const struct cli_command cli_cmd_nodes = {
    .name = "nodes",
    .summary = "list the nodes",
    .usage = nodes_usage,
    .longopts = nodes_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = nodes_main,
};

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

static const struct option drain_opts[] = {
    { "undo", no_argument, NULL, OPT_UNDO },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int drain_main(struct cli *c, int argc, char **argv)
{
    const char *name = NULL;
    cJSON *node = NULL;
    char *esc = NULL;
    char *path = NULL;
    char *state;
    bool undo = false;
    int rc;

    rc = cli_parse_args(c, argc, argv, drain_option, &undo, 1, 1, &name, "NODE");
    if (rc >= 0)
        return rc;
    esc = cli_escape(c, name);
    path = xasprintf("/api/v1/nodes/%s/drain", esc);
    rc = cli_call(c, "POST", path, undo ? "{\"drain\":false}" : "{\"drain\":true}",
                  c->json ? NULL : &node);
    if (rc == 0 && !c->json) {
        state = cli_field_text(node, "state");
        printf("%s %s\n", name, state);
        free(state);
    }
    cJSON_Delete(node);
    free(path);
    free(esc);
    return rc;
}

const struct cli_command cli_cmd_drain = {
    .name = "drain",
    .summary = "stop placing tasks on a node (--undo to undo)",
    .usage = drain_usage,
    .longopts = drain_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = drain_main,
};
