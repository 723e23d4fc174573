/*
 * submit.c - `trainyard submit`: packs a source directory, uploads it as a
 * snapshot, submits a run (SPEC §3.2) and prints its id; with --follow it
 * streams the run's logs and exits with the run's outcome. `trainyard rerun`
 * submits a run's spec again, with submit's --param, --priority and --follow.
 * The run options and the packing are shared with `trainyard sweep`
 * (cli_run_parse(), cli_run_build()).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/backend.h"
#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define EXPERIMENT_MAX 128

static const char usage[] =
    "usage: trainyard submit DIR --entry SCRIPT [options] [-- ARG...]\n"
    "       trainyard submit [DIR] --command [options] -- PROG [ARG...]\n"
    "\n"
    "Packs DIR (without .git/, __pycache__/ and what DIR/.trainyardignore excludes,\n"
    "in .gitignore syntax) as a snapshot, submits a run of SCRIPT in it and prints the\n"
    "run id. With --command the run executes PROG ARG... as is (no shell), in DIR's\n"
    "snapshot when DIR is given.\n"
    "\n" CLI_RUN_HELP "  --max-duration S          fail the run after S seconds (default 0: none)\n"
    "\n"
    "Output:\n"
    "  --follow                  stream the run's logs, then exit 0 if it completed, else 1\n"
    "                            with its status and error on stderr\n"
    "\n" CLI_COMMON_HELP;

static const struct option longopts[] = {
    CLI_RUN_LONGOPTS,
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/*
 * True when s is exactly a JSON number that survives as a double: the JSON
 * grammar, finite, and an integer of at most 15 digits (a longer one, a
 * seed say, would lose digits and is better sent as the text it is).
 */
bool cli_is_json_number(const char *s)
{
    const char *p = s;
    size_t int_digits = 0;
    bool integer = true;
    char *end;
    double d;

    if (*p == '-')
        p++;
    if (*p == '0') {
        p++;
        int_digits = 1;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9') {
            p++;
            int_digits++;
        }
    } else {
        return false;
    }
    if (*p == '.') {
        integer = false;
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        integer = false;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p != '\0')
        return false;
    if (integer && int_digits > 15)
        return false;
    errno = 0;
    d = strtod(s, &end);
    return *end == '\0' && isfinite(d) && errno != ERANGE;
}

/* The JSON value a --param value stands for; the caller owns it. */
static cJSON *param_value(const char *v)
{
    if (v == NULL || strcmp(v, "true") == 0)
        return cJSON_CreateTrue();
    if (strcmp(v, "false") == 0)
        return cJSON_CreateFalse();
    if (strcmp(v, "null") == 0)
        return cJSON_CreateNull();
    if (cli_is_json_number(v))
        return cJSON_CreateNumber(strtod(v, NULL));
    return cJSON_CreateString(v);
}

void cli_json_set(cJSON *object, const char *key, cJSON *value)
{
    if (value == NULL) {
        fprintf(stderr, "fatal: out of memory building JSON\n");
        abort();
    }
    if (json_get(object, key)) {
        cJSON_ReplaceItemInObjectCaseSensitive(object, key, value);
    } else if (!cJSON_AddItemToObject(object, key, value)) {
        cJSON_Delete(value);
        fprintf(stderr, "fatal: out of memory building JSON\n");
        abort();
    }
}

static void array_add_string(cJSON **array, const char *s)
{
    cJSON *item;

    if (*array == NULL)
        *array = cJSON_CreateArray();
    item = cJSON_CreateString(s);
    if (*array == NULL || item == NULL || !cJSON_AddItemToArray(*array, item)) {
        fprintf(stderr, "fatal: out of memory building JSON\n");
        abort();
    }
}

/* --param --lr=0.01 / --param --flag: "--lr": 0.01 / "--flag": true. */
static int add_param(struct cli *c, struct cli_run_opts *s, const char *text)
{
    const char *eq = strchr(text, '=');
    char *key;

    if (text[0] == '\0' || eq == text)
        return cli_usage_error(c, "--param needs a name, as in --param --lr=0.01");
    key = eq ? xstrndup(text, (size_t)(eq - text)) : xstrdup(text);
    cli_json_set(s->params, key, param_value(eq ? eq + 1 : NULL));
    free(key);
    return -1;
}

/* --env K=V, --tag K=V and --node-selector K=V into object *map. */
static int add_pair(struct cli *c, cJSON **map, const char *option, const char *text)
{
    const char *eq = strchr(text, '=');
    char *key;

    if (eq == NULL || eq == text)
        return cli_usage_error(c, "%s takes KEY=VALUE, not '%s'", option, text);
    if (*map == NULL)
        *map = cJSON_CreateObject();
    key = xstrndup(text, (size_t)(eq - text));
    cli_json_set(*map, key, cJSON_CreateString(eq + 1));
    free(key);
    return -1;
}

int cli_run_set_int(struct cli *c, struct cli_run_opts *s, const char *option, const char *field,
                    const char *text, long min, long max)
{
    long v;

    if (!cli_parse_long(text, min, max, &v))
        return cli_usage_error(c, "%s must be a whole number from %ld to %ld, not '%s'", option,
                               min, max, text);
    cli_json_set(s->resources, field, cJSON_CreateNumber((double)v));
    return -1;
}

static int add_cpus(struct cli *c, struct cli_run_opts *s, const char *text)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno || *text == '\0' || *end != '\0' || !isfinite(v) || v <= 0 || v > 1e6)
        return cli_usage_error(c, "--cpus must be a positive number, not '%s'", text);
    cli_json_set(s->resources, "cpus_per_process", cJSON_CreateNumber(v));
    return -1;
}

static int add_backend(struct cli *c, struct cli_run_opts *s, const char *text)
{
    if (strcmp(text, "mpi") != 0 && strcmp(text, "ps") != 0 && strcmp(text, "pytorch") != 0)
        return cli_usage_error(c, "--backend must be mpi, ps or pytorch, not '%s'", text);
    cli_json_set(s->resources, "distributed_backend", cJSON_CreateString(text));
    return -1;
}

int cli_run_option(struct cli *c, struct cli_run_opts *s, int opt, const char *arg)
{
    switch (opt) {
    case CLI_RUN_OPT_ENTRY:
        s->entry = arg;
        return -1;
    case CLI_RUN_OPT_PARAM:
        return add_param(c, s, arg);
    case CLI_RUN_OPT_ARG:
        array_add_string(&s->arguments, arg);
        return -1;
    case CLI_RUN_OPT_COMMAND:
        s->command = true;
        return -1;
    case CLI_RUN_OPT_EXPERIMENT:
        s->experiment = arg;
        return -1;
    case CLI_RUN_OPT_NODES:
        return cli_run_set_int(c, s, "--nodes", "node_count", arg, 1, INT_MAX);
    case CLI_RUN_OPT_BACKEND:
        return add_backend(c, s, arg);
    case CLI_RUN_OPT_PPN:
        return cli_run_set_int(c, s, "--processes-per-node", "process_count_per_node", arg, 1,
                               INT_MAX);
    case CLI_RUN_OPT_WORKERS:
        return cli_run_set_int(c, s, "--workers", "worker_count", arg, 0, INT_MAX);
    case CLI_RUN_OPT_PS:
        return cli_run_set_int(c, s, "--parameter-servers", "parameter_server_count", arg, 0,
                               INT_MAX);
    case CLI_RUN_OPT_CHIEF:
        cli_json_set(s->resources, "chief", cJSON_CreateTrue());
        return -1;
    case CLI_RUN_OPT_EVALUATOR:
        cli_json_set(s->resources, "evaluator", cJSON_CreateTrue());
        return -1;
    case CLI_RUN_OPT_GPU:
        cli_json_set(s->resources, "use_gpu", cJSON_CreateTrue());
        return -1;
    case CLI_RUN_OPT_GPUS_PER_PROCESS:
        return cli_run_set_int(c, s, "--gpus-per-process", "gpus_per_process", arg, 1, INT_MAX);
    case CLI_RUN_OPT_CPUS:
        return add_cpus(c, s, arg);
    case CLI_RUN_OPT_MEMORY_MB:
        return cli_run_set_int(c, s, "--memory-mb", "memory_mb_per_process", arg, 0, LONG_MAX);
    case CLI_RUN_OPT_POOL:
        cli_json_set(s->resources, "compute_target", cJSON_CreateString(arg));
        return -1;
    case CLI_RUN_OPT_IMAGE:
        cli_json_set(s->resources, "image", cJSON_CreateString(arg));
        return -1;
    case CLI_RUN_OPT_PIP:
        array_add_string(&s->pip, arg);
        return -1;
    case CLI_RUN_OPT_CONDA:
        array_add_string(&s->conda, arg);
        return -1;
    case CLI_RUN_OPT_ENV:
        return add_pair(c, &s->env, "--env", arg);
    case CLI_RUN_OPT_TAG:
        return add_pair(c, &s->tags, "--tag", arg);
    case CLI_RUN_OPT_NODE_SELECTOR:
        return add_pair(c, &s->selector, "--node-selector", arg);
    case CLI_RUN_OPT_MAX_RETRIES:
        return cli_run_set_int(c, s, "--max-retries", "max_retries", arg, 0, INT_MAX);
    case CLI_RUN_OPT_MAX_DURATION:
        return cli_run_set_int(c, s, "--max-duration", "max_run_duration_seconds", arg, 0,
                               LONG_MAX);
    case CLI_RUN_OPT_PRIORITY:
        return cli_run_set_int(c, s, "--priority", "priority", arg, INT_MIN, INT_MAX);
    case CLI_RUN_OPT_FOLLOW:
        s->follow = true;
        return -1;
    default:
        return cli_usage_error(c, "unexpected option");
    }
}

/* True when the word is a long option of table that takes its value from the next word. */
static bool takes_next_word(const struct option *table, const char *word)
{
    const struct option *o;
    const struct option *found = NULL;
    int matches = 0;
    size_t len;

    if (strncmp(word, "--", 2) != 0 || word[2] == '\0' || strchr(word, '='))
        return false;
    word += 2;
    len = strlen(word);
    for (o = table; o->name; o++) {
        if (strcmp(o->name, word) == 0) {
            found = o;
            matches = 1;
            break;
        }
        /* getopt_long accepts an unambiguous prefix too. */
        if (strncmp(o->name, word, len) == 0) {
            found = o;
            matches++;
        }
    }
    return matches == 1 && found->has_arg == required_argument;
}

/*
 * The index of the "--" that ends the options, walking the words as
 * getopt_long will (so a "--" that is an option's value does not count),
 * or argc when there is none.
 */
static int find_separator(const struct option *table, int argc, char **argv)
{
    int i = 1;

    while (i < argc) {
        if (strcmp(argv[i], "--") == 0)
            return i;
        i += takes_next_word(table, argv[i]) ? 2 : 1;
    }
    return argc;
}

/* DIR's base name in the experiment alphabet, or NULL when none is left. */
static char *experiment_from_dir(const char *dir)
{
    char *real = realpath(dir, NULL);
    const char *base;
    char *name;
    size_t i;

    if (real == NULL)
        return NULL;
    base = strrchr(real, '/');
    base = base ? base + 1 : real;
    name = xstrndup(base, EXPERIMENT_MAX);
    for (i = 0; name[i]; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            name[i] = '-';
    }
    free(real);
    if (name[0] == '\0') {
        free(name);
        return NULL;
    }
    return name;
}

/* Moves *item (when set) into spec under key. */
static void move_into(cJSON *spec, const char *key, cJSON **item)
{
    if (*item == NULL)
        return;
    cli_json_set(spec, key, *item);
    *item = NULL;
}

void cli_run_opts_init(struct cli_run_opts *s)
{
    memset(s, 0, sizeof(*s));
    s->params = cJSON_CreateObject();
    s->resources = cJSON_CreateObject();
}

void cli_run_opts_release(struct cli_run_opts *s)
{
    free(s->experiment_name);
    cJSON_Delete(s->params);
    cJSON_Delete(s->arguments);
    cJSON_Delete(s->pip);
    cJSON_Delete(s->conda);
    cJSON_Delete(s->env);
    cJSON_Delete(s->tags);
    cJSON_Delete(s->selector);
    cJSON_Delete(s->resources);
}

/* Parses the options in argv[1..argc-1] into *s (through own, when not
 * NULL); -1 to go on, else the exit code (help printed, or a usage error). */
static int parse_options(struct cli *c, struct cli_run_opts *s, int argc, char **argv,
                         int (*own)(struct cli *c, void *state, int opt, const char *arg),
                         void *state)
{
    int rc = -1;
    int opt;

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
            rc = cli_run_option(c, s, opt, optarg);
        }
    }
    return rc;
}

int cli_run_parse(struct cli *c, struct cli_run_opts *s, int argc, char **argv,
                  int (*own)(struct cli *c, void *state, int opt, const char *arg), void *state)
{
    struct stat st;
    int sep;
    int npos;
    int rc;

    /* Options end at the first "--"; what follows is the command or arguments. */
    sep = find_separator(c->cmd->longopts, argc, argv);
    rc = parse_options(c, s, sep, argv, own, state);
    if (rc >= 0)
        return rc;
    npos = sep - optind;
    if (npos > 1)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
    s->dir = npos == 1 ? argv[optind] : NULL;
    s->words = argv + sep + 1;
    s->n_words = sep < argc ? argc - sep - 1 : 0;
    if (s->command) {
        if (s->n_words == 0)
            return cli_usage_error(c, "--command needs the program after '--'");
        if (s->entry)
            return cli_usage_error(c, "give --entry or --command, not both");
        if (cJSON_GetArraySize(s->params) > 0)
            return cli_usage_error(c, "--param goes with --entry; put a command's arguments "
                                      "after '--'");
    } else {
        if (s->dir == NULL)
            return cli_usage_error(c, "a source directory is required (or use --command)");
        if (s->entry == NULL || s->entry[0] == '\0')
            return cli_usage_error(c, "--entry SCRIPT is required (or use --command)");
        while (strncmp(s->entry, "./", 2) == 0)
            s->entry += 2;
    }
    if (s->dir && (stat(s->dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return cli_usage_error(c, "'%s' is not a directory", s->dir);
    free(s->experiment_name);
    if (s->experiment) {
        s->experiment_name = xstrdup(s->experiment);
    } else {
        s->experiment_name = s->dir ? experiment_from_dir(s->dir) : NULL;
        if (s->experiment_name == NULL)
            s->experiment_name = xstrdup("default");
    }
    return cli_resolve(c) == 0 ? -1 : CLI_EXIT_USAGE;
}

/* Packs and uploads dir; *ret_id is the snapshot id (caller frees). */
static int upload(struct cli *c, const char *dir, const char *entry, char **ret_id)
{
    struct cli_response r;
    struct buf tgz;
    cJSON *body = NULL;
    const char *id;
    int rc;

    buf_init(&tgz);
    cli_response_init(&r);
    rc = cli_pack(dir, entry, &tgz, NULL);
    if (rc == ERR_NOT_FOUND) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (rc < 0) {
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    if (cli_request(c, "POST", "/api/v1/snapshots", "application/gzip", tgz.data, tgz.len,
                    CLI_UPLOAD_TIMEOUT_MS, &r) < 0) {
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    if (!cli_response_ok(&r)) {
        rc = cli_report_error(c, &r);
        goto out;
    }
    body = json_parse(r.body.data, r.body.len);
    id = body ? json_get_string(body, "id") : NULL;
    if (id == NULL) {
        rc = cli_fail("the server's answer to a snapshot upload has no id");
        goto out;
    }
    *ret_id = xstrdup(id);
    rc = 0;
out:
    cJSON_Delete(body);
    cli_response_release(&r);
    buf_release(&tgz);
    return rc;
}

/* The run spec the options describe, in the order of SPEC §3.2. */
static cJSON *build_spec(struct cli_run_opts *s, const char *source)
{
    cJSON *spec = cJSON_CreateObject();
    cJSON *item;
    int i;

    cli_json_set(spec, "experiment", cJSON_CreateString(s->experiment_name));
    if (source)
        cli_json_set(spec, "source", cJSON_CreateString(source));
    if (s->command) {
        item = NULL;
        for (i = 0; i < s->n_words; i++)
            array_add_string(&item, s->words[i]);
        move_into(spec, "command", &item);
    } else {
        cli_json_set(spec, "entry_script", cJSON_CreateString(s->entry));
        move_into(spec, "script_params", &s->params);
        for (i = 0; i < s->n_words; i++)
            array_add_string(&s->arguments, s->words[i]);
    }
    move_into(spec, "arguments", &s->arguments);
    /* Scalar fields in the order they were given on the command line. */
    while (s->resources->child) {
        const char *key = s->resources->child->string;

        item = cJSON_DetachItemViaPointer(s->resources, s->resources->child);
        if (json_get(spec, key))
            cJSON_Delete(item);
        else
            cJSON_AddItemToObject(spec, key, item);
    }
    move_into(spec, "pip_packages", &s->pip);
    move_into(spec, "conda_packages", &s->conda);
    move_into(spec, "environment_variables", &s->env);
    move_into(spec, "tags", &s->tags);
    move_into(spec, "node_selector", &s->selector);
    return spec;
}

int cli_run_build(struct cli *c, struct cli_run_opts *s, cJSON **ret_spec)
{
    char *snapshot = NULL;
    int rc;

    if (s->dir) {
        rc = upload(c, s->dir, s->command ? NULL : s->entry, &snapshot);
        if (rc != 0)
            return rc;
    }
    *ret_spec = build_spec(s, snapshot);
    free(snapshot);
    return 0;
}

/* Sends a request; a 2xx JSON answer goes to *ret_json (caller frees). */
static int request_json(struct cli *c, const char *method, const char *path, const char *body,
                        struct cli_response *r, cJSON **ret_json)
{
    cJSON *json;

    if (cli_request(c, method, path, body ? "application/json" : NULL, body,
                    body ? strlen(body) : 0, CLI_TIMEOUT_MS, r) < 0)
        return CLI_EXIT_FAILED;
    if (!cli_response_ok(r))
        return cli_report_error(c, r);
    json = json_parse(r->body.data, r->body.len);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return cli_fail("the server's answer to %s %s is not a JSON object", method, path);
    }
    *ret_json = json;
    return 0;
}

/* After --follow: the run's outcome as the exit code. */
static int wait_outcome(struct cli *c, const char *run_id)
{
    struct cli_response r;
    cJSON *run = NULL;
    char *esc = cli_escape(c, run_id);
    char *path = xasprintf("/api/v1/runs/%s", esc);
    const char *status;
    const char *error;
    int rc;

    cli_response_init(&r);
    rc = cli_stream_logs(c, run_id, NULL, true);
    if (rc != 0)
        goto out;
    if (cli_request(c, "GET", path, NULL, NULL, 0, CLI_TIMEOUT_MS, &r) < 0) {
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    if (!cli_response_ok(&r)) {
        rc = cli_report_error(c, &r);
        goto out;
    }
    run = json_parse(r.body.data, r.body.len);
    status = run ? json_get_string(run, "status") : NULL;
    if (status == NULL) {
        rc = cli_fail("the server's run '%s' has no status", run_id);
        goto out;
    }
    if (run_status_parse(status) == RUN_COMPLETED) {
        rc = CLI_EXIT_OK;
        goto out;
    }
    error = json_get_string(run, "error");
    if (error && *error)
        rc = cli_fail("run %s %s: %s", run_id, status, error);
    else
        rc = cli_fail("run %s %s", run_id, status);
out:
    cJSON_Delete(run);
    cli_response_release(&r);
    free(path);
    free(esc);
    return rc;
}

/*
 * POSTs a run spec (or a rerun's overrides; NULL: no body) to path and
 * prints the new run's id, or its JSON with --json; with follow, streams
 * its logs and returns its outcome. Returns the exit code.
 */
static int post_run(struct cli *c, const char *path, const char *body, bool follow)
{
    struct cli_response r;
    cJSON *run = NULL;
    const char *run_id;
    int rc;

    cli_response_init(&r);
    rc = request_json(c, "POST", path, body, &r, &run);
    if (rc != 0)
        goto out;
    run_id = json_get_string(run, "id");
    if (run_id == NULL) {
        rc = cli_fail("the server's answer to POST %s has no run id", path);
        goto out;
    }
    if (c->json)
        cli_print_body(&r);
    else
        printf("%s\n", run_id);
    fflush(stdout);
    rc = follow ? wait_outcome(c, run_id) : CLI_EXIT_OK;
out:
    cJSON_Delete(run);
    cli_response_release(&r);
    return rc;
}

static int submit_main(struct cli *c, int argc, char **argv)
{
    struct cli_run_opts s;
    cJSON *spec = NULL;
    char *text = NULL;
    int rc;

    cli_run_opts_init(&s);
    rc = cli_run_parse(c, &s, argc, argv, NULL, NULL);
    if (rc >= 0)
        goto out;
    rc = cli_run_build(c, &s, &spec);
    if (rc != 0)
        goto out;
    text = json_print(spec);
    rc = post_run(c, "/api/v1/runs", text, s.follow);
out:
    free(text);
    cJSON_Delete(spec);
    cli_run_opts_release(&s);
    return rc;
}

const struct cli_command cli_cmd_submit = {
    .name = "submit",
    .summary = "pack a source directory and submit a run",
    .usage = usage,
    .longopts = longopts,
    .optstring = ":h",
    .operand = "@dir",
    .run = submit_main,
};

/* ---- rerun ---------------------------------------------------------------- */

static const char rerun_usage[] =
    "usage: trainyard rerun ID [options]\n"
    "\n"
    "Submits run ID again as a new run of yours, from its spec, and prints the new\n"
    "run id. The new run is tagged trainyard/rerun_of=ID.\n"
    "\n"
    "  --param --NAME=VALUE      change or add a script parameter, repeatable (as in\n"
    "                            submit); the run's other parameters stay as they were\n"
    "  --priority N              the new run's priority (default: the original's)\n"
    "  --follow                  stream the new run's logs, then exit 0 if it completed,\n"
    "                            else 1 with its status and error on stderr\n"
    "\n" CLI_COMMON_HELP;

/* The original's script_params with the --param changes applied: the
 * server replaces the whole object, so the rest is carried over here. */
static int merged_params(struct cli *c, const char *path, const cJSON *changes, cJSON **ret)
{
    struct cli_response r;
    cJSON *run = NULL;
    const cJSON *params;
    const cJSON *p;
    cJSON *merged;
    int rc;

    cli_response_init(&r);
    rc = request_json(c, "GET", path, NULL, &r, &run);
    cli_response_release(&r);
    if (rc != 0)
        return rc;
    params = json_get(json_get(run, "spec"), "script_params");
    merged = cJSON_IsObject(params) ? cJSON_Duplicate(params, 1) : cJSON_CreateObject();
    cJSON_ArrayForEach(p, changes) {
        cli_json_set(merged, p->string, cJSON_Duplicate(p, 1));
    }
    cJSON_Delete(run);
    *ret = merged;
    return 0;
}

static const struct option rerun_opts[] = {
    CLI_COMMON_LONGOPTS,
    { "param", required_argument, NULL, CLI_RUN_OPT_PARAM },
    { "priority", required_argument, NULL, CLI_RUN_OPT_PRIORITY },
    { "follow", no_argument, NULL, CLI_RUN_OPT_FOLLOW },
    { NULL, 0, NULL, 0 },
};

static int rerun_main(struct cli *c, int argc, char **argv)
{
    struct cli_run_opts s;
    cJSON *overrides = cJSON_CreateObject();
    cJSON *params = NULL;
    char *esc = NULL;
    char *path = NULL;
    char *text = NULL;
    int rc;

    cli_run_opts_init(&s);
    /* The same parsing as submit's --param, --priority and --follow. */
    rc = parse_options(c, &s, argc, argv, NULL, NULL);
    if (rc >= 0)
        goto out;
    if (argc - optind != 1 || argv[optind][0] == '\0') {
        rc = argc - optind > 1 ? cli_usage_error(c, "unexpected argument '%s'", argv[optind + 1])
                               : cli_usage_error(c, "missing run ID");
        goto out;
    }
    rc = cli_resolve(c);
    if (rc != 0)
        goto out;
    esc = cli_escape(c, argv[optind]);
    path = xasprintf("/api/v1/runs/%s", esc);
    if (cJSON_GetArraySize(s.params) > 0) {
        rc = merged_params(c, path, s.params, &params);
        if (rc != 0)
            goto out;
        cli_json_set(overrides, "script_params", params);
    }
    if (json_get(s.resources, "priority"))
        cli_json_set(overrides, "priority", cJSON_Duplicate(json_get(s.resources, "priority"), 1));
    free(path);
    path = xasprintf("/api/v1/runs/%s/rerun", esc);
    text = overrides->child ? json_print(overrides) : NULL;
    rc = post_run(c, path, text, s.follow);
out:
    cJSON_Delete(overrides);
    free(text);
    free(path);
    free(esc);
    cli_run_opts_release(&s);
    return rc;
}

const struct cli_command cli_cmd_rerun = {
    .name = "rerun",
    .summary = "submit a run again, optionally with changed parameters",
    .usage = rerun_usage,
    .longopts = rerun_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = rerun_main,
};
