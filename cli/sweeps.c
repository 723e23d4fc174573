/*
 * sweeps.c - the client commands that read or stop sweeps: sweeps (the
 * list), sweep-show (a sweep, its policy, best trial and trials) and
 * sweep-cancel; and following a sweep live from its event stream
 * (GET /api/v1/sweeps/{id}/events, Server-Sent Events), for sweep-show
 * --follow and sweep --follow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/backend.h"
#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* How long following waits before taking up a stream that ended early. */
#define FOLLOW_RETRY_S 1
/* The most bytes of one unfinished event kept while following. */
#define FOLLOW_MAX_EVENT ((size_t)16 << 20)
/* A terminal's size when it does not say. */
#define DEFAULT_ROWS 24
#define DEFAULT_COLUMNS 80

enum sweeps_opt {
    OPT_STATUS = CLI_OPT_FIRST_OWN,
    OPT_SORT,
    OPT_FOLLOW,
};

/* "/api/v1/sweeps/ID" + suffix with ID escaped; caller frees. */
static char *sweep_path(struct cli *c, const char *id, const char *suffix)
{
    char *esc = cli_escape(c, id);
    char *path = xasprintf("/api/v1/sweeps/%s%s", esc, suffix);

    free(esc);
    return path;
}

/* The sweep's primary metric name and whether higher is better. */
static const char *sweep_metric(const cJSON *sweep, bool *ret_maximize)
{
    const cJSON *pm = json_get(json_get(sweep, "spec"), "primary_metric");
    const char *goal = json_get_string(pm, "goal");
    const char *name = json_get_string(pm, "name");

    if (ret_maximize)
        *ret_maximize = goal == NULL || strcmp(goal, "minimize") != 0;
    return name ? name : "value";
}

/* True while the sweep's status is running (or unknown). */
static bool sweep_running(const cJSON *sweep)
{
    const char *status = json_get_string(sweep, "status");

    return status == NULL || run_status_parse(status) == RUN_RUNNING;
}

static double count_of(const cJSON *sweep, const char *status)
{
    const cJSON *n = json_get(json_get(sweep, "trials"), status);

    return cJSON_IsNumber(n) ? n->valuedouble : 0;
}

/* A trial's status as shown: early-terminated trials say so. */
static char *trial_status_text(const cJSON *trial)
{
    const char *reason = json_get_string(trial, "reason");

    if (reason && strcmp(reason, "early_terminated") == 0)
        return xstrdup("early_terminated");
    return cli_field_text(trial, "status");
}

/* The trials table: TRIAL, STATUS, the metric, RUN, PARAMETERS. */
static void trials_table(struct cli_table *t, const char *metric)
{
    char header[136];
    const char *cols[5] = { "TRIAL", "STATUS", header, "RUN", "PARAMETERS" };
    size_t i;

    for (i = 0; metric[i] && i + 1 < sizeof(header); i++)
        header[i] =
            (char)(metric[i] >= 'a' && metric[i] <= 'z' ? metric[i] - 'a' + 'A' : metric[i]);
    header[i] = '\0';
    cli_table_init(t, 5, cols);
}

static void trial_row(const cJSON *trial, struct cli_table *t)
{
    char *row[5];

    row[0] = cli_field_text(trial, "trial");
    row[1] = trial_status_text(trial);
    row[2] = cli_field_text(trial, "value");
    row[3] = cli_field_text(trial, "id");
    row[4] = cli_pairs_text(json_get(trial, "parameters"), true);
    cli_table_add(t, row);
}

/* "trial 3 (run-...): accuracy=0.93  --lr=0.001 --hidden=64", or NULL when
 * the sweep has no best trial yet; caller frees. */
static char *best_text(const cJSON *sweep)
{
    const cJSON *best = json_get(sweep, "best_run");
    char *trial;
    char *id;
    char *value;
    char *params;
    char *text;

    if (!cJSON_IsObject(best))
        return NULL;
    trial = cli_field_text(best, "trial");
    id = cli_field_text(best, "id");
    value = cli_field_text(best, "value");
    params = cli_pairs_text(json_get(best, "parameters"), true);
    text =
        xasprintf("trial %s (%s): %s=%s  %s", trial, id, sweep_metric(sweep, NULL), value, params);
    free(trial);
    free(id);
    free(value);
    free(params);
    return text;
}

/* "12/40 trials: 2 running, 8 completed, ..." (counts that are not 0). */
static char *counts_text(const cJSON *sweep)
{
    static const char *const statuses[] = { "queued",    "starting", "running",
                                            "completed", "failed",   "canceled" };
    const cJSON *total = json_get(json_get(sweep, "spec"), "max_total_runs");
    struct buf b;
    char *text;
    size_t i;
    double early = count_of(sweep, "early_terminated");

    buf_init(&b);
    buf_printf(&b, "%.0f/%.0f trials created", count_of(sweep, "created"),
               cJSON_IsNumber(total) ? total->valuedouble : 0);
    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        double n = count_of(sweep, statuses[i]);

        if (n > 0)
            buf_printf(&b, ", %.0f %s", n, statuses[i]);
    }
    if (early > 0)
        buf_printf(&b, " (%.0f early terminated)", early);
    text = buf_detach(&b, NULL);
    buf_release(&b);
    return text;
}

/* ---- following ------------------------------------------------------------- */

struct follow {
    struct cli *c;
    char *id; /* owned */
    cJSON *sweep; /* owned: the sweep as last seen */
    cJSON *trials; /* owned array, trial n at index n (null where unseen) */
    struct buf pending; /* the stream's bytes not yet parsed into events */
    bool tty; /* redraw a live table; else a line per change */
    int drawn; /* lines of the live table on the screen */
    char *last_best; /* owned: the best line last printed (lines mode) */
};

/* The terminal's size, or the defaults. */
static void terminal_size(int *ret_rows, int *ret_cols)
{
    struct winsize ws;

    *ret_rows = DEFAULT_ROWS;
    *ret_cols = DEFAULT_COLUMNS;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        *ret_rows = ws.ws_row;
        *ret_cols = ws.ws_col;
    }
}

/* The status line: "sweep swp-... running: 5/40 trials created, ...". */
static void status_line(const cJSON *sweep, struct buf *out)
{
    char *counts = counts_text(sweep);
    char *status = cli_field_text(sweep, "status");
    char *id = cli_field_text(sweep, "id");

    buf_printf(out, "sweep %s %s: %s\n", id, status, counts);
    free(id);
    free(status);
    free(counts);
}

/* The status line, the trials (the last max_rows of them; 0: all) and the
 * best so far, into out. */
static void render(const struct follow *f, size_t max_rows, struct buf *out)
{
    struct cli_table t;
    const cJSON *trial;
    char *best = best_text(f->sweep);
    size_t n = 0;
    size_t skip = 0;

    status_line(f->sweep, out);
    cJSON_ArrayForEach(trial, f->trials) {
        n += cJSON_IsObject(trial);
    }
    if (max_rows > 0 && n > max_rows)
        skip = n - max_rows;
    if (skip > 0)
        buf_printf(out, "(%zu earlier trials not shown; 'trainyard sweep-show %s' lists all)\n",
                   skip, f->id);
    trials_table(&t, sweep_metric(f->sweep, NULL));
    cJSON_ArrayForEach(trial, f->trials) {
        if (!cJSON_IsObject(trial))
            continue;
        if (skip > 0)
            skip--;
        else
            trial_row(trial, &t);
    }
    cli_table_format(&t, out);
    cli_table_release(&t);
    buf_printf(out, "best%s: %s\n", sweep_running(f->sweep) ? " so far" : "",
               best ? best : "none yet");
    free(best);
}

/* Redraws the live table over the last one, each line cut to the
 * terminal's width so that the lines on the screen are the lines counted. */
static void redraw(struct follow *f)
{
    struct buf b;
    const char *line;
    int rows;
    int cols;

    terminal_size(&rows, &cols);
    buf_init(&b);
    render(f, rows > 6 ? (size_t)(rows - 6) : 1, &b);
    if (f->drawn > 0)
        printf("\033[%dA\033[J", f->drawn);
    f->drawn = 0;
    for (line = b.data; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = (int)(nl ? nl - line : (long)strlen(line));

        printf("%.*s\n", len < cols ? len : cols - 1, line);
        f->drawn++;
        line = nl ? nl + 1 : NULL;
    }
    fflush(stdout);
    buf_release(&b);
}

/* Lines mode: a line when a trial's status changes. */
static void trial_line(const cJSON *before, const cJSON *trial, const char *metric)
{
    char *status = trial_status_text(trial);
    char *old = before ? trial_status_text(before) : NULL;
    char *n;
    char *value;
    char *params;

    if (old == NULL || strcmp(old, status) != 0) {
        n = cli_field_text(trial, "trial");
        value = cli_field_text(trial, "value");
        params = cli_pairs_text(json_get(trial, "parameters"), true);
        printf("trial %-4s %-16s %s=%-12s %s\n", n, status, metric, value, params);
        free(n);
        free(value);
        free(params);
    }
    free(old);
    free(status);
}

/* Lines mode: the best so far, when it changed. */
static void best_line(struct follow *f)
{
    char *best = best_text(f->sweep);

    if (best && (f->last_best == NULL || strcmp(best, f->last_best) != 0)) {
        printf("best so far: %s\n", best);
        free(f->last_best);
        f->last_best = best;
        best = NULL;
    }
    free(best);
}

/* Takes in one event: kind "trial" or "sweep" with its data. */
static void on_event(struct follow *f, const char *kind, const char *data)
{
    cJSON *item = json_parse(data, strlen(data));
    const cJSON *n;

    if (item == NULL)
        return;
    if (f->c->json) {
        struct buf b;

        buf_init(&b);
        buf_adds(&b, "{\"event\":");
        json_buf_string(&b, kind);
        buf_adds(&b, ",\"data\":");
        json_buf_value(&b, item);
        buf_adds(&b, "}\n");
        fwrite(b.data, 1, b.len, stdout);
        buf_release(&b);
    }
    if (strcmp(kind, "sweep") == 0) {
        cJSON_Delete(f->sweep);
        f->sweep = item;
        if (!f->tty && !f->c->json)
            best_line(f);
        return;
    }
    n = json_get(item, "trial");
    if (strcmp(kind, "trial") != 0 || !cJSON_IsNumber(n) || n->valuedouble < 0 ||
        n->valuedouble > 100000) {
        cJSON_Delete(item);
        return;
    }
    while (cJSON_GetArraySize(f->trials) <= (int)n->valuedouble)
        cJSON_AddItemToArray(f->trials, cJSON_CreateNull());
    if (!f->tty && !f->c->json)
        trial_line(cJSON_GetArrayItem(f->trials, (int)n->valuedouble), item,
                   sweep_metric(f->sweep, NULL));
    cJSON_ReplaceItemInArray(f->trials, (int)n->valuedouble, item);
}

/* Parses one event block ("event: K\ndata: D\n..."); comments are skipped. */
static void on_block(struct follow *f, char *block)
{
    char *kind = NULL;
    struct buf data;
    char *line;
    char *next;

    buf_init(&data);
    for (line = block; line; line = next) {
        size_t len;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[len - 1] = '\0';
        if (strncmp(line, "event:", 6) == 0) {
            kind = line + 6 + (line[6] == ' ');
        } else if (strncmp(line, "data:", 5) == 0) {
            if (data.len)
                buf_addc(&data, '\n');
            buf_adds(&data, line + 5 + (line[5] == ' '));
        }
    }
    if (kind && data.len)
        on_event(f, kind, data.data);
    buf_release(&data);
}

/* cli_stream_to()'s sink: splits the stream into events as they complete. */
static bool follow_sink(void *arg, const char *data, size_t len)
{
    struct follow *f = arg;
    bool any = false;
    char *end;

    buf_add(&f->pending, data, len);
    while (f->pending.len > 0 && (end = strstr(f->pending.data, "\n\n")) != NULL) {
        size_t used = (size_t)(end - f->pending.data) + 2;

        *end = '\0';
        on_block(f, f->pending.data);
        memmove(f->pending.data, f->pending.data + used, f->pending.len - used);
        f->pending.len -= used;
        f->pending.data[f->pending.len] = '\0';
        any = true;
    }
    if (f->pending.len > FOLLOW_MAX_EVENT) {
        cli_fail("an event of sweep %s's stream is larger than %zu MiB", f->id,
                 FOLLOW_MAX_EVENT >> 20);
        return false;
    }
    if (any && f->tty && !f->c->json)
        redraw(f);
    fflush(stdout);
    return true;
}

/* GETs the sweep and its trials into f (after the stream ended). */
static int refresh(struct follow *f)
{
    bool json = f->c->json;
    cJSON *sweep = NULL;
    cJSON *list = NULL;
    const cJSON *trial;
    char *path = sweep_path(f->c, f->id, "");
    int rc;

    f->c->json = false;
    rc = cli_call(f->c, "GET", path, NULL, &sweep);
    free(path);
    if (rc == 0) {
        path = sweep_path(f->c, f->id, "/runs");
        rc = cli_call(f->c, "GET", path, NULL, &list);
        free(path);
    }
    f->c->json = json;
    if (rc != 0) {
        cJSON_Delete(sweep);
        return rc;
    }
    cJSON_Delete(f->sweep);
    f->sweep = sweep;
    cJSON_ArrayForEach(trial, json_get(list, "items")) {
        const cJSON *n = json_get(trial, "trial");

        if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > 100000)
            continue;
        while (cJSON_GetArraySize(f->trials) <= (int)n->valuedouble)
            cJSON_AddItemToArray(f->trials, cJSON_CreateNull());
        cJSON_ReplaceItemInArray(f->trials, (int)n->valuedouble, cJSON_Duplicate(trial, 1));
    }
    cJSON_Delete(list);
    return 0;
}

/* The sweep's outcome as the exit code, with the final table or line. */
static int finish(struct follow *f)
{
    const char *status = json_get_string(f->sweep, "status");
    const char *error = json_get_string(f->sweep, "error");
    struct buf b;

    if (f->c->json) {
        /* The last "sweep" event said it all. */
    } else if (f->tty) {
        if (f->drawn > 0)
            printf("\033[%dA\033[J", f->drawn);
        f->drawn = 0;
    } else {
        printf("\n");
    }
    if (!f->c->json) {
        buf_init(&b);
        render(f, 0, &b);
        fwrite(b.data, 1, b.len, stdout);
        buf_release(&b);
    }
    fflush(stdout);
    if (run_status_parse(status) == RUN_COMPLETED)
        return CLI_EXIT_OK;
    if (error && *error)
        return cli_fail("sweep %s %s: %s", f->id, status ? status : "ended", error);
    return cli_fail("sweep %s %s", f->id, status ? status : "ended");
}

int cli_sweep_follow(struct cli *c, const cJSON *sweep)
{
    struct follow f;
    struct cli_response r;
    char *path;
    size_t copied;
    int rc = 0;
    int err;

    memset(&f, 0, sizeof(f));
    f.c = c;
    f.id = xstrdup(json_get_string(sweep, "id"));
    f.sweep = cJSON_Duplicate(sweep, 1);
    f.trials = cJSON_CreateArray();
    f.tty = isatty(STDOUT_FILENO) == 1;
    buf_init(&f.pending);
    cli_response_init(&r);
    path = sweep_path(c, f.id, "/events");
    for (;;) {
        buf_reset(&f.pending);
        err = cli_stream_to(c, path, 0L, follow_sink, &f, &copied, &r);
        /* Only a dropped connection is worth taking up again. */
        if (err < 0 && err != ERR_UNAVAILABLE) {
            rc = CLI_EXIT_FAILED;
            break;
        }
        if (r.status != 0 && !cli_response_ok(&r)) {
            rc = cli_report_error(c, &r);
            break;
        }
        /* The stream ends after the sweep does; else it dropped (a
         * restart): take it up again, the server sends every trial anew. */
        if (!sweep_running(f.sweep))
            break;
        rc = refresh(&f);
        if (rc != 0 || !sweep_running(f.sweep))
            break;
        sleep(FOLLOW_RETRY_S);
    }
    if (rc == 0)
        rc = finish(&f);
    free(path);
    cli_response_release(&r);
    buf_release(&f.pending);
    free(f.last_best);
    cJSON_Delete(f.trials);
    cJSON_Delete(f.sweep);
    free(f.id);
    return rc;
}

/* ---- sweeps ----------------------------------------------------------------- */

static const char sweeps_usage[] =
    "usage: trainyard sweeps [options]\n"
    "\n"
    "Lists sweeps, newest first: ID, STATUS, EXPERIMENT, TRIALS (ended of the\n"
    "sweep's total), BEST (the best completed trial's value) and CREATED.\n"
    "\n"
    "  --status S        only sweeps in status S (running, completed, canceled, failed)\n"
    "\n" CLI_COMMON_HELP;

static const struct option sweeps_opts[] = {
    { "status", required_argument, NULL, OPT_STATUS },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int sweeps_option(struct cli *c, void *state, int opt, const char *arg)
{
    const char **status = state;

    if (opt == OPT_STATUS) {
        *status = arg;
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

static void sweep_row(const cJSON *sweep, struct cli_table *t)
{
    const cJSON *total = json_get(json_get(sweep, "spec"), "max_total_runs");
    char *row[6];

    row[0] = cli_field_text(sweep, "id");
    row[1] = cli_field_text(sweep, "status");
    row[2] = cli_field_text(sweep, "experiment");
    row[3] = xasprintf("%.0f/%.0f",
                       count_of(sweep, "completed") + count_of(sweep, "failed") +
                           count_of(sweep, "canceled"),
                       cJSON_IsNumber(total) ? total->valuedouble : 0);
    row[4] = cli_field_text(json_get(sweep, "best_run"), "value");
    row[5] = cli_field_text(sweep, "created_at");
    cli_table_add(t, row);
}

static int sweeps_main(struct cli *c, int argc, char **argv)
{
    static const char *const header[] = {
        "ID", "STATUS", "EXPERIMENT", "TRIALS", "BEST", "CREATED"
    };
    const char *status = NULL;
    struct cli_table t;
    char *path;
    char *esc;
    int rc;

    rc = cli_parse_args(c, argc, argv, sweeps_option, &status, 0, 0, NULL, "");
    if (rc >= 0)
        return rc;
    esc = status ? cli_escape(c, status) : NULL;
    path = xasprintf("/api/v1/sweeps%s%s", esc ? "?status=" : "", esc ? esc : "");
    cli_table_init(&t, 6, header);
    rc = cli_list_all(c, path, &t, sweep_row);
    if (rc == 0 && !c->json)
        cli_table_print(&t);
    cli_table_release(&t);
    free(path);
    free(esc);
    return rc;
}

const struct cli_command cli_cmd_sweeps = {
    .name = "sweeps",
    .summary = "list sweeps",
    .usage = sweeps_usage,
    .longopts = sweeps_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = sweeps_main,
};

/* ---- sweep-show ------------------------------------------------------------- */

static const char show_usage[] =
    "usage: trainyard sweep-show ID [options]\n"
    "\n"
    "Shows a sweep: status, trial counts, search, sampling, metric, policy, the best\n"
    "trial with its parameters, and every trial: TRIAL, STATUS (early_terminated for\n"
    "a trial its policy stopped), the metric's value, RUN and PARAMETERS. With --json,\n"
    "the sweep as GET /api/v1/sweeps/ID gives it, with its trials (the items of\n"
    "GET /api/v1/sweeps/ID/runs) added as \"runs\".\n"
    "\n"
    "  --sort trial|value   order of the trials: by number (default), or by value,\n"
    "                       best first\n"
    "  --follow             show the trials as they change until the sweep ends\n"
    "                       (as 'trainyard sweep --follow'); exit 0 if it completed,\n"
    "                       else 1\n"
    "\n" CLI_COMMON_HELP;

static const struct option show_opts[] = {
    { "sort", required_argument, NULL, OPT_SORT },
    { "follow", no_argument, NULL, OPT_FOLLOW },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

struct show_opts {
    bool by_value;
    bool follow;
};

static int show_option(struct cli *c, void *state, int opt, const char *arg)
{
    struct show_opts *so = state;

    if (opt == OPT_SORT) {
        if (strcmp(arg, "value") != 0 && strcmp(arg, "trial") != 0)
            return cli_usage_error(c, "--sort must be trial or value, not '%s'", arg);
        so->by_value = strcmp(arg, "value") == 0;
        return -1;
    }
    if (opt == OPT_FOLLOW) {
        so->follow = true;
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

/* Prints "label  value" when the value is not NULL. */
static void show_line(const char *label, const char *value)
{
    if (value)
        printf("%-12s%s\n", label, value);
}

static void print_sweep(const cJSON *sweep, const cJSON *trials)
{
    const cJSON *spec = json_get(sweep, "spec");
    const cJSON *trial;
    struct cli_table t;
    bool maximize;
    const char *metric = sweep_metric(sweep, &maximize);
    char *text;
    char *more;

    text = cli_field_text(sweep, "id");
    show_line("id:", text);
    free(text);
    text = cli_field_text(sweep, "status");
    show_line("status:", text);
    free(text);
    show_line("error:", json_get_string(sweep, "error"));
    show_line("experiment:", json_get_string(sweep, "experiment"));
    show_line("owner:", json_get_string(sweep, "owner"));
    text = counts_text(sweep);
    show_line("trials:", text);
    free(text);
    text = cli_field_text(spec, "max_concurrent_runs");
    show_line("concurrent:", text);
    free(text);
    if (cJSON_IsNumber(json_get(spec, "max_duration_seconds"))) {
        text = cli_field_text(spec, "max_duration_seconds");
        more = xasprintf("%s s", text);
        show_line("duration:", more);
        free(more);
        free(text);
    }
    text = cli_search_text(json_get(spec, "parameters"));
    show_line("search:", text);
    free(text);
    more = xasprintf("%s (seed %.0f)", json_get_string(spec, "sampling"),
                     cJSON_IsNumber(json_get(spec, "seed")) ? json_get(spec, "seed")->valuedouble
                                                            : 0.0);
    show_line("sampling:", more);
    free(more);
    more = xasprintf("%s (%s)", metric, maximize ? "maximize" : "minimize");
    show_line("metric:", more);
    free(more);
    text = cli_policy_text(json_get(spec, "early_termination"));
    show_line("policy:", text);
    free(text);
    text = cli_field_text(sweep, "created_at");
    show_line("created:", text);
    free(text);
    show_line("ended:", json_get_string(sweep, "ended_at"));
    text = best_text(sweep);
    show_line("best:", text ? text : "none yet");
    free(text);
    if (cJSON_GetArraySize(trials) == 0)
        return;
    printf("\n");
    trials_table(&t, metric);
    cJSON_ArrayForEach(trial, trials) {
        trial_row(trial, &t);
    }
    cli_table_print(&t);
    cli_table_release(&t);
}

static int show_main(struct cli *c, int argc, char **argv)
{
    struct show_opts so = { false, false };
    const char *id = NULL;
    cJSON *sweep = NULL;
    cJSON *list = NULL;
    char *path = NULL;
    bool json = c->json;
    bool maximize;
    int rc;

    rc = cli_parse_args(c, argc, argv, show_option, &so, 1, 1, &id, "sweep ID");
    if (rc >= 0)
        return rc;
    /* Both answers are read; --json prints them together below. */
    json = c->json;
    c->json = false;
    path = sweep_path(c, id, "");
    rc = cli_call(c, "GET", path, NULL, &sweep);
    c->json = json;
    if (rc != 0)
        goto out;
    if (so.follow) {
        rc = cli_sweep_follow(c, sweep);
        goto out;
    }
    sweep_metric(sweep, &maximize);
    free(path);
    path = sweep_path(c, id,
                      so.by_value ? (maximize ? "/runs?sort=value&order=desc" : "/runs?sort=value")
                                  : "/runs");
    c->json = false;
    rc = cli_call(c, "GET", path, NULL, &list);
    c->json = json;
    if (rc != 0)
        goto out;
    if (json) {
        char *text;

        cJSON_AddItemToObject(sweep, "runs", cJSON_DetachItemFromObject(list, "items"));
        text = json_print(sweep);
        printf("%s\n", text);
        free(text);
    } else {
        print_sweep(sweep, json_get(list, "items"));
    }
out:
    cJSON_Delete(list);
    cJSON_Delete(sweep);
    free(path);
    return rc;
}

const struct cli_command cli_cmd_sweep_show = {
    .name = "sweep-show",
    .summary = "show a sweep: its policy, best trial and trials (--follow to watch)",
    .usage = show_usage,
    .longopts = show_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = show_main,
};

/* ---- sweep-cancel ----------------------------------------------------------- */

static const char cancel_usage[] =
    "usage: trainyard sweep-cancel ID [options]\n"
    "\n"
    "Cancels a sweep: its unfinished trials are canceled and no more are started.\n"
    "Canceling a canceled sweep changes nothing; one that completed or failed cannot\n"
    "be canceled.\n"
    "\n" CLI_COMMON_HELP;

static const struct option cancel_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int cancel_main(struct cli *c, int argc, char **argv)
{
    const char *id = NULL;
    cJSON *sweep = NULL;
    char *path;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 1, 1, &id, "sweep ID");
    if (rc >= 0)
        return rc;
    path = sweep_path(c, id, "/cancel");
    rc = cli_call(c, "POST", path, NULL, c->json ? NULL : &sweep);
    if (rc == 0 && !c->json) {
        char *status = cli_field_text(sweep, "status");
        char *counts = counts_text(sweep);

        printf("%s %s: %s\n", id, status, counts);
        free(counts);
        free(status);
    }
    cJSON_Delete(sweep);
    free(path);
    return rc;
}

const struct cli_command cli_cmd_sweep_cancel = {
    .name = "sweep-cancel",
    .summary = "cancel a sweep and its unfinished trials",
    .usage = cancel_usage,
    .longopts = cancel_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = cancel_main,
};
