/*
 * results.c - the client commands that read what a run produced: metrics
 * (a table of every metric, or one series as a sparkline), artifacts (the
 * files its tasks wrote under ./outputs) and download (those files into a
 * local directory, never outside it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* The sparkline's default width, in points. */
#define METRICS_DEFAULT_POINTS 80
#define METRICS_MAX_POINTS 1000000L

enum results_opt {
    OPT_MAX_POINTS = CLI_OPT_FIRST_OWN,
    OPT_TASK,
    OPT_OUTPUT,
};

/* "/api/v1/runs/ID" with ID escaped; caller frees. */
static char *run_path(struct cli *c, const char *id, const char *suffix)
{
    char *esc = cli_escape(c, id);
    char *path = xasprintf("/api/v1/runs/%s%s", esc, suffix);

    free(esc);
    return path;
}

/*
 * GETs path, an unpaged {"items": [...]}, and prints it as a table of
 * columns under header, one row(item) each (or the JSON with --json).
 */
static int print_items(struct cli *c, const char *path, size_t columns, const char *const *header,
                       void (*row)(const cJSON *, struct cli_table *))
{
    struct cli_table t;
    cJSON *list = NULL;
    const cJSON *item;
    int rc;

    rc = cli_call(c, "GET", path, NULL, c->json ? NULL : &list);
    if (rc == 0 && !c->json) {
        cli_table_init(&t, columns, header);
        cJSON_ArrayForEach(item, json_get(list, "items")) {
            row(item, &t);
        }
        cli_table_print(&t);
        cli_table_release(&t);
    }
    cJSON_Delete(list);
    return rc;
}

/* ---- metrics --------------------------------------------------------------- */

static const char metrics_usage[] =
    "usage: trainyard metrics ID [NAME] [options]\n"
    "\n"
    "Without NAME, lists every metric of run ID: NAME, LAST, MIN, MAX, COUNT and\n"
    "LAST_STEP. With NAME, shows that metric's series as a terminal sparkline,\n"
    "then its first, last, min and max values; with --json, the series as the\n"
    "server gives it ({\"name\", \"points\": [[step, time, value], ...]}).\n"
    "\n"
    "  --max-points N    downsample the series to at most N points, keeping peaks\n"
    "                    and dips, 1 to 1000000 (default 80)\n"
    "\n" CLI_COMMON_HELP;

static const struct option metrics_opts[] = {
    { "max-points", required_argument, NULL, OPT_MAX_POINTS },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int metrics_option(struct cli *c, void *state, int opt, const char *arg)
{
    long *max_points = state;

    if (opt == OPT_MAX_POINTS) {
        if (!cli_parse_long(arg, 1, METRICS_MAX_POINTS, max_points))
            return cli_usage_error(c, "--max-points must be 1 to 1000000, not '%s'", arg);
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

static void metric_row(const cJSON *m, struct cli_table *t)
{
    char *row[6];

    row[0] = cli_field_text(m, "name");
    row[1] = cli_field_text(m, "last");
    row[2] = cli_field_text(m, "min");
    row[3] = cli_field_text(m, "max");
    row[4] = cli_field_text(m, "count");
    row[5] = cli_field_text(m, "last_step");
    cli_table_add(t, row);
}

/* A point's value (the third of [step, time, value]) into *ret. */
static bool point_value(const cJSON *point, double *ret)
{
    const cJSON *v = cJSON_GetArrayItem(point, 2);

    if (!cJSON_IsNumber(v))
        return false;
    *ret = v->valuedouble;
    return true;
}

/* A point's step (the first of [step, time, value]) as text; caller frees. */
static char *step_text(const cJSON *point)
{
    const cJSON *step = cJSON_GetArrayItem(point, 0);
    char num[64];

    if (!cJSON_IsNumber(step))
        return xstrdup("-");
    cli_format_number(step->valuedouble, num, sizeof(num));
    return xstrdup(num);
}

/* Prints the series: a header, the sparkline, first/last/min/max. */
static int print_series(const char *id, const char *name, const cJSON *points)
{
    /* U+2581 to U+2588, lowest to highest, in UTF-8. */
    static const char *const bars[] = { "\u2581", "\u2582", "\u2583", "\u2584",
                                        "\u2585", "\u2586", "\u2587", "\u2588" };
    const int levels = (int)(sizeof(bars) / sizeof(bars[0]));
    const cJSON *p;
    double min = 0;
    double max = 0;
    double first = 0;
    double last = 0;
    double v;
    int n = 0;
    char num[64];
    char *step0;
    char *step1;

    cJSON_ArrayForEach(p, points) {
        if (!point_value(p, &v))
            return cli_fail("the server's series of '%s' has a point without a value", name);
        if (n == 0 || v < min)
            min = v;
        if (n == 0 || v > max)
            max = v;
        if (n == 0)
            first = v;
        last = v;
        n++;
    }
    if (n == 0)
        return cli_fail("run '%s' has no metric '%s'", id, name);
    step0 = step_text(cJSON_GetArrayItem(points, 0));
    step1 = step_text(cJSON_GetArrayItem(points, n - 1));
    printf("%s: %d point%s, steps %s to %s\n", name, n, n == 1 ? "" : "s", step0, step1);
    free(step0);
    free(step1);
    cJSON_ArrayForEach(p, points) {
        int level = levels / 2 - 1;

        point_value(p, &v);
        if (max > min)
            level = (int)((v - min) / (max - min) * (levels - 1) + 0.5);
        fputs(bars[level < 0 ? 0 : level >= levels ? levels - 1 : level], stdout);
    }
    printf("\n");
    cli_format_number(first, num, sizeof(num));
    printf("first  %s\n", num);
    cli_format_number(last, num, sizeof(num));
    printf("last   %s\n", num);
    cli_format_number(min, num, sizeof(num));
    printf("min    %s\n", num);
    cli_format_number(max, num, sizeof(num));
    printf("max    %s\n", num);
    return CLI_EXIT_OK;
}

static int metrics_main(struct cli *c, int argc, char **argv)
{
    static const char *const header[] = { "NAME", "LAST", "MIN", "MAX", "COUNT", "LAST_STEP" };
    long max_points = METRICS_DEFAULT_POINTS;
    const char *pos[2];
    cJSON *series = NULL;
    char *suffix;
    char *path;
    char *esc;
    int rc;

    rc = cli_parse_args(c, argc, argv, metrics_option, &max_points, 1, 2, pos, "run ID");
    if (rc >= 0)
        return rc;
    if (pos[1] == NULL) {
        path = run_path(c, pos[0], "/metrics");
        rc = print_items(c, path, 6, header, metric_row);
        free(path);
        return rc;
    }
    esc = cli_escape(c, pos[1]);
    suffix = xasprintf("/metrics/%s?max_points=%ld", esc, max_points);
    path = run_path(c, pos[0], suffix);
    free(suffix);
    free(esc);
    rc = cli_call(c, "GET", path, NULL, c->json ? NULL : &series);
    if (rc == 0 && !c->json)
        rc = print_series(pos[0], pos[1], json_get(series, "points"));
    cJSON_Delete(series);
    free(path);
    return rc;
}

const struct cli_command cli_cmd_metrics = {
    .name = "metrics",
    .summary = "a run's metrics, or one metric's series as a sparkline",
    .usage = metrics_usage,
    .longopts = metrics_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = metrics_main,
};

/* ---- artifacts ------------------------------------------------------------- */

static const char artifacts_usage[] =
    "usage: trainyard artifacts ID [options]\n"
    "\n"
    "Lists the files run ID's tasks wrote under ./outputs: PATH (relative to\n"
    "./outputs), SIZE in bytes and the TASK that wrote it. 'trainyard download'\n"
    "fetches them.\n"
    "\n" CLI_COMMON_HELP;

static const struct option artifacts_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static void artifact_row(const cJSON *a, struct cli_table *t)
{
    char *row[3];

    row[0] = cli_field_text(a, "path");
    row[1] = cli_field_text(a, "size");
    row[2] = cli_field_text(a, "task");
    cli_table_add(t, row);
}

static int artifacts_main(struct cli *c, int argc, char **argv)
{
    static const char *const header[] = { "PATH", "SIZE", "TASK" };
    const char *id = NULL;
    char *path;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 1, 1, &id, "run ID");
    if (rc >= 0)
        return rc;
    path = run_path(c, id, "/artifacts");
    rc = print_items(c, path, 3, header, artifact_row);
    free(path);
    return rc;
}

const struct cli_command cli_cmd_artifacts = {
    .name = "artifacts",
    .summary = "list the files a run's tasks wrote under ./outputs",
    .usage = artifacts_usage,
    .longopts = artifacts_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = artifacts_main,
};

/* ---- download -------------------------------------------------------------- */

static const char download_usage[] =
    "usage: trainyard download ID [PATH] [options]\n"
    "\n"
    "Saves run ID's artifact PATH (as 'trainyard artifacts ID' lists it), or with\n"
    "no PATH every artifact, under DIR at the same relative path, creating the\n"
    "directories it needs, and prints each file saved. When several tasks wrote the\n"
    "same path, all files go under DIR/TASK/PATH instead (or pick one task with\n"
    "--task). A path that would land outside DIR is refused: an absolute path or\n"
    "one with '..' parts before anything is saved, and a symbolic link on the way\n"
    "is never followed. A file is written under a temporary name and renamed into\n"
    "place once complete, so a failed download leaves no partial file.\n"
    "\n"
    "  -o, --output DIR  the directory to save into (default: the current one);\n"
    "                    created when missing\n"
    "  --task T          only the artifacts of the task named T\n"
    "\n" CLI_COMMON_HELP;

static const struct option download_opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "task", required_argument, NULL, OPT_TASK },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

struct download_opts {
    const char *dir;
    const char *task;
};

static int download_option(struct cli *c, void *state, int opt, const char *arg)
{
    struct download_opts *d = state;

    if (opt == 'o') {
        if (arg[0] == '\0')
            return cli_usage_error(c, "--output must not be empty");
        d->dir = arg;
        return -1;
    }
    if (opt == OPT_TASK) {
        d->task = arg;
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

/* True for a relative path of clean parts: no "", ".", ".." or leading '/'. */
static bool path_stays_inside(const char *path)
{
    const char *p = path;

    if (path[0] == '\0' || path[0] == '/')
        return false;
    for (;;) {
        size_t len = strcspn(p, "/");

        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (p[len] == '\0')
            return true;
        p += len + 1;
    }
}

/*
 * Opens the directory that will hold rel under dirfd, creating missing
 * directories and following no symbolic link; *ret_base points at rel's last
 * part. Returns the new descriptor, or -1 with a message printed.
 */
static int open_parent(int dirfd, const char *dir, const char *rel, const char **ret_base)
{
    char *copy = xstrdup(rel);
    char *part = copy;
    char *slash;
    int fd = dup(dirfd);

    while (fd >= 0 && (slash = strchr(part, '/')) != NULL) {
        int next;

        *slash = '\0';
        if (mkdirat(fd, part, 0755) != 0 && errno != EEXIST) {
            cli_fail("cannot create directory '%s/%s': %s", dir, part, strerror(errno));
            close(fd);
            fd = -1;
            break;
        }
        next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            cli_fail("refusing to write under '%s/%s': %s (a symbolic link would lead out of "
                     "'%s')",
                     dir, part, strerror(errno), dir);
        close(fd);
        fd = next;
        *slash = '/';
        part = slash + 1;
    }
    if (fd >= 0)
        *ret_base = rel + (part - copy);
    free(copy);
    return fd;
}

/* Downloads one artifact to dir/dest; 0 or CLI_EXIT_FAILED with a message. */
static int save_artifact(struct cli *c, const char *id, const cJSON *a, int dirfd, const char *dir,
                         const char *dest)
{
    const char *apath = json_get_string(a, "path");
    const char *task = json_get_string(a, "task");
    struct cli_response r;
    struct buf url;
    const char *base = NULL;
    const char *p;
    char *esc;
    char *tmp = NULL;
    FILE *out = NULL;
    size_t copied = 0;
    int parent;
    int fd;
    int rc = CLI_EXIT_FAILED;

    parent = open_parent(dirfd, dir, dest, &base);
    if (parent < 0)
        return CLI_EXIT_FAILED;
    tmp = xasprintf(".%s.trainyard-part", base);
    fd = openat(parent, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || (out = fdopen(fd, "wb")) == NULL) {
        cli_fail("cannot create '%s/%s': %s", dir, dest, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    /* Each part of the path escaped on its own: the '/'s stay. */
    buf_init(&url);
    esc = cli_escape(c, id);
    buf_printf(&url, "/api/v1/runs/%s/artifacts", esc);
    free(esc);
    for (p = apath; *p;) {
        size_t len = strcspn(p, "/");
        char *part = xstrndup(p, len);

        esc = cli_escape(c, part);
        buf_printf(&url, "/%s", esc);
        free(esc);
        free(part);
        p += len + (p[len] == '/');
    }
    esc = cli_escape(c, task);
    buf_printf(&url, "?task=%s", esc);
    free(esc);
    cli_response_init(&r);
    if (cli_stream(c, url.data, out, CLI_DOWNLOAD_TIMEOUT_MS, &copied, &r) == 0) {
        if (!cli_response_ok(&r))
            cli_report_error(c, &r);
        else if (fflush(out) != 0 || ferror(out))
            cli_fail("cannot write '%s/%s': %s", dir, dest, strerror(errno));
        else
            rc = CLI_EXIT_OK;
    }
    cli_response_release(&r);
    buf_release(&url);
    if (fclose(out) != 0 && rc == CLI_EXIT_OK)
        rc = cli_fail("cannot write '%s/%s': %s", dir, dest, strerror(errno));
    if (rc == CLI_EXIT_OK && renameat(parent, tmp, parent, base) != 0)
        rc = cli_fail("cannot rename into '%s/%s': %s", dir, dest, strerror(errno));
    if (rc != CLI_EXIT_OK)
        unlinkat(parent, tmp, 0);
    else
        printf("%s/%s\t%zu bytes\n", dir, dest, copied);
out:
    free(tmp);
    close(parent);
    return rc;
}

/* True when two of the chosen artifacts share a path (different tasks). */
static bool paths_collide(const cJSON *const *chosen, size_t n)
{
    size_t i;
    size_t j;

    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            if (strcmp(json_get_string(chosen[i], "path"), json_get_string(chosen[j], "path")) == 0)
                return true;
        }
    }
    return false;
}

static int download_main(struct cli *c, int argc, char **argv)
{
    struct download_opts d = { ".", NULL };
    const char *pos[2];
    const cJSON **chosen = NULL;
    char **dest = NULL;
    cJSON *list = NULL;
    const cJSON *a;
    size_t n = 0;
    size_t i;
    bool by_task;
    char *path;
    int dirfd = -1;
    int rc;

    rc = cli_parse_args(c, argc, argv, download_option, &d, 1, 2, pos, "run ID");
    if (rc >= 0)
        return rc;
    if (pos[1] && !path_stays_inside(pos[1]))
        return cli_usage_error(c, "PATH '%s' must be relative, without '.' or '..' parts", pos[1]);
    /* The listing decides what to fetch; --json only changes nothing here. */
    c->json = false;
    path = run_path(c, pos[0], "/artifacts");
    rc = cli_call(c, "GET", path, NULL, &list);
    free(path);
    if (rc != 0)
        return rc;
    chosen = xcalloc((size_t)cJSON_GetArraySize(json_get(list, "items")) + 1, sizeof(*chosen));
    cJSON_ArrayForEach(a, json_get(list, "items")) {
        const char *apath = json_get_string(a, "path");
        const char *task = json_get_string(a, "task");

        if (apath == NULL || task == NULL) {
            rc = cli_fail("the server listed an artifact without a path or task");
            goto out;
        }
        if ((pos[1] && strcmp(apath, pos[1]) != 0) || (d.task && strcmp(task, d.task) != 0))
            continue;
        chosen[n++] = a;
    }
    if (n == 0) {
        rc = cli_fail("run '%s' has no artifact%s%s%s%s%s", pos[0], pos[1] ? " '" : "",
                      pos[1] ? pos[1] : "", pos[1] ? "'" : "", d.task ? " of task " : "",
                      d.task ? d.task : "");
        goto out;
    }
    by_task = paths_collide(chosen, n);
    if (by_task && pos[1]) {
        rc = cli_fail("several tasks wrote '%s'; pick one with --task", pos[1]);
        goto out;
    }
    /* Every destination is checked before anything is written. */
    dest = xcalloc(n, sizeof(*dest));
    for (i = 0; i < n; i++) {
        const char *apath = json_get_string(chosen[i], "path");
        const char *task = json_get_string(chosen[i], "task");

        dest[i] = by_task ? xasprintf("%s/%s", task, apath) : xstrdup(apath);
        if (!path_stays_inside(dest[i])) {
            rc = cli_fail("refusing artifact '%s' of task '%s': its path would lead out of '%s'",
                          apath, task, d.dir);
            goto out;
        }
    }
    if (mkdir(d.dir, 0755) != 0 && errno != EEXIST) {
        rc = cli_fail("cannot create directory '%s': %s", d.dir, strerror(errno));
        goto out;
    }
    dirfd = open(d.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = cli_fail("cannot open directory '%s': %s", d.dir, strerror(errno));
        goto out;
    }
    for (i = 0; i < n && rc == 0; i++)
        rc = save_artifact(c, pos[0], chosen[i], dirfd, d.dir, dest[i]);
out:
    if (dirfd >= 0)
        close(dirfd);
    for (i = 0; dest && i < n; i++)
        free(dest[i]);
    free(dest);
    free(chosen);
    cJSON_Delete(list);
    return rc;
}

const struct cli_command cli_cmd_download = {
    .name = "download",
    .summary = "save a run's artifacts, or one of them, into a directory",
    .usage = download_usage,
    .longopts = download_opts,
    .optstring = ":ho:",
    .operand = NULL,
    .run = download_main,
};
