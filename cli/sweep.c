/*
 * sweep.c - `trainyard sweep`: packs a source directory as submit does,
 * turns --search NAME=EXPR(ARGS) and --policy NAME(KEY=VALUE,...) into a
 * sweep spec (docs/API-NOTES.md, "Sweeps"), creates the sweep and prints
 * its id; with --follow it shows the trials live (sweeps.c) and exits with
 * the sweep's outcome. Also the text forms of expressions and policies
 * that sweep-show prints, so what it shows can be typed back.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* The most arguments one expression or policy takes (choice's values). */
#define CALL_MAX_ARGS 1000
/* The largest seed: the largest integer a JSON number holds exactly. */
#define SEED_MAX 9007199254740991L

static const char usage[] =
    "usage: trainyard sweep DIR --entry SCRIPT --search NAME=EXPR... --metric M --goal max|min\n"
    "                       [options] [-- ARG...]\n"
    "       trainyard sweep [DIR] --command --search env:NAME=EXPR... --metric M --goal max|min\n"
    "                       [options] -- PROG [ARG...]\n"
    "\n"
    "Packs DIR as 'trainyard submit' does and starts a hyperparameter sweep: trials\n"
    "of the run the options describe, each with its own values of the --search\n"
    "parameters, as ordinary runs. Prints the sweep id (or with --follow shows the\n"
    "trials as they run). A trial reports the metric with '##metric {\"M\": value}'\n"
    "lines; its value is the last one reported.\n"
    "\n"
    "The search:\n"
    "  --search NAME=EXPR(ARG,...)\n"
    "                            a swept parameter, repeatable. NAME is a script parameter:\n"
    "                            'lr' and '--lr' both mean the parameter '--lr' (a name\n"
    "                            without leading dashes gets '--'), or env:NAME for an\n"
    "                            environment variable (what a --command sweep varies).\n"
    "                            EXPR is one of choice(V,...) (numbers, or strings: bare\n"
    "                            words or quoted), randint(UPPER), uniform(LO,HI),\n"
    "                            quniform(LO,HI,Q), loguniform(LO,HI) (exp of a uniform:\n"
    "                            loguniform(-9,-2) is e^-9..e^-2), qloguniform(LO,HI,Q),\n"
    "                            normal(MU,SIGMA), qnormal(MU,SIGMA,Q), lognormal(MU,SIGMA),\n"
    "                            qlognormal(MU,SIGMA,Q). Examples: 'lr=loguniform(-9,-2)',\n"
    "                            'hidden=choice(32,64,128)', 'act=choice(relu,tanh)',\n"
    "                            'env:SEED=randint(100)'\n"
    "  --sampling grid|random|bayesian\n"
    "                            how trials are picked (default random): grid runs every\n"
    "                            combination of choice() values; bayesian (TPE) learns\n"
    "                            from the trials so far\n"
    "  --metric M                the metric the trials report (required)\n"
    "  --goal max|min            whether higher or lower M is better (required)\n"
    "  --runs N                  trials in all, 1 to 10000 (required but for grid, whose\n"
    "                            default is the number of combinations)\n"
    "  --concurrent N            trials running at once (default: all)\n"
    "  --max-duration S          end the sweep after S seconds, canceling running trials\n"
    "                            (default: none)\n"
    "  --max-trial-duration S    fail a trial after S seconds (a run's --max-duration)\n"
    "  --seed N                  the sampler's seed, 0 to 2^53-1: the same seed and search\n"
    "                            give the same trials for grid and random (default: random)\n"
    "  --policy POLICY           stop trials that fall behind (default: none):\n"
    "                              bandit(slack=F | slack_amount=A, interval=N, delay=N)\n"
    "                              median(interval=N, delay=N)\n"
    "                              truncation(percent=P, exclude_finished=true|false,\n"
    "                                         interval=N, delay=N)\n"
    "                              asha(min_resource=N, reduction_factor=F)\n"
    "                            interval N: check every N-th report of M; delay N: not\n"
    "                            in the first N reports. ASHA's rungs are on the reports'\n"
    "                            steps. e.g. 'bandit(slack=0.1,interval=1,delay=5)'\n"
    "\n" CLI_RUN_HELP "\n"
    "Output:\n"
    "  --follow                  show the trials (status, value, parameters) and the best\n"
    "                            so far as they change until the sweep ends; exit 0 if it\n"
    "                            completed, else 1. With --json: one JSON object a line,\n"
    "                            the sweep, then each event {\"event\", \"data\"}\n"
    "\n" CLI_COMMON_HELP;

enum sweep_opt {
    OPT_SEARCH = CLI_RUN_OPT_FIRST_OWN,
    OPT_SAMPLING,
    OPT_METRIC,
    OPT_GOAL,
    OPT_RUNS,
    OPT_CONCURRENT,
    OPT_MAX_TRIAL_DURATION,
    OPT_SEED,
    OPT_POLICY,
};

static const struct option longopts[] = {
    { "search", required_argument, NULL, OPT_SEARCH },
    { "sampling", required_argument, NULL, OPT_SAMPLING },
    { "metric", required_argument, NULL, OPT_METRIC },
    { "goal", required_argument, NULL, OPT_GOAL },
    { "runs", required_argument, NULL, OPT_RUNS },
    { "concurrent", required_argument, NULL, OPT_CONCURRENT },
    { "max-trial-duration", required_argument, NULL, OPT_MAX_TRIAL_DURATION },
    { "seed", required_argument, NULL, OPT_SEED },
    { "policy", required_argument, NULL, OPT_POLICY },
    CLI_RUN_LONGOPTS,
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/* The expressions --search takes; only choice takes strings. */
static const char *const expressions[] = { "choice",     "randint",     "uniform", "quniform",
                                           "loguniform", "qloguniform", "normal",  "qnormal",
                                           "lognormal",  "qlognormal",  NULL };

/*
 * The keys of each policy: what --policy takes (a short name first, then
 * the API's) and the API field it sets. The first key naming a field is
 * the one sweep-show prints.
 */
enum key_type { KEY_NUMBER, KEY_BOOL };

static const struct policy_key {
    const char *policy; /* the API's name */
    const char *key;
    const char *field;
    enum key_type type;
} policy_keys[] = {
    { "bandit", "slack", "slack_factor", KEY_NUMBER },
    { "bandit", "slack_amount", "slack_amount", KEY_NUMBER },
    { "bandit", "slack_factor", "slack_factor", KEY_NUMBER },
    { "truncation_selection", "percent", "truncation_percentage", KEY_NUMBER },
    { "truncation_selection", "truncation_percentage", "truncation_percentage", KEY_NUMBER },
    { "truncation_selection", "exclude_finished", "exclude_finished_runs", KEY_BOOL },
    { "truncation_selection", "exclude_finished_runs", "exclude_finished_runs", KEY_BOOL },
    { "asha", "min_resource", "min_resource", KEY_NUMBER },
    { "asha", "reduction_factor", "reduction_factor", KEY_NUMBER },
    /* NULL: every policy but asha. */
    { NULL, "interval", "evaluation_interval", KEY_NUMBER },
    { NULL, "evaluation_interval", "evaluation_interval", KEY_NUMBER },
    { NULL, "delay", "delay_evaluation", KEY_NUMBER },
    { NULL, "delay_evaluation", "delay_evaluation", KEY_NUMBER },
};

/* --policy's names and the API's policy each stands for. */
static const struct {
    const char *name;
    const char *policy;
} policy_names[] = {
    { "bandit", "bandit" },
    { "median", "median_stopping" },
    { "median_stopping", "median_stopping" },
    { "truncation", "truncation_selection" },
    { "truncation_selection", "truncation_selection" },
    { "asha", "asha" },
};

struct sweep {
    struct cli_run_opts run;
    cJSON *parameters; /* owned: name -> {"expr": [args]} */
    cJSON *policy; /* owned; NULL: none given */
    const char *sampling;
    const char *metric;
    const char *goal; /* "maximize" or "minimize" */
    long runs; /* 0: not given */
    long concurrent;
    long max_duration;
    long seed; /* -1: not given */
};

/* ---- NAME(ARG, ...) ---------------------------------------------------------- */

struct call_arg {
    char *text; /* owned */
    bool quoted;
};

struct call {
    char *name; /* owned */
    struct call_arg *args; /* owned */
    int n_args;
    bool parens; /* written with (), even empty ones */
};

static void call_release(struct call *k)
{
    int i;

    for (i = 0; i < k->n_args; i++)
        free(k->args[i].text);
    free(k->args);
    free(k->name);
    memset(k, 0, sizeof(*k));
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool is_word_char(char ch)
{
    return ch != '\0' && ch != ',' && ch != '(' && ch != ')' && ch != '\'' && ch != '"' &&
           ch != ' ' && ch != '\t';
}

/* One argument at *pp: a quoted string ('...' or "...", '\' escaping the
 * next character) or a bare word. False with *why set. */
static bool parse_arg(const char **pp, struct call_arg *ret, const char **why)
{
    const char *p = *pp;
    struct buf b;

    buf_init(&b);
    if (*p == '\'' || *p == '"') {
        char quote = *p++;

        while (*p && *p != quote) {
            if (*p == '\\' && p[1])
                p++;
            buf_addc(&b, *p++);
        }
        if (*p != quote) {
            buf_release(&b);
            *why = "a quoted string is not closed";
            return false;
        }
        p++;
        ret->quoted = true;
    } else {
        while (is_word_char(*p))
            buf_addc(&b, *p++);
        if (b.len == 0) {
            buf_release(&b);
            *why = "an argument is missing";
            return false;
        }
        ret->quoted = false;
    }
    ret->text = buf_detach(&b, NULL);
    buf_release(&b);
    *pp = p;
    return true;
}

/* Parses "NAME", "NAME()" or "NAME(ARG, ...)" (spaces allowed around the
 * parts) into *ret. False with *why set and nothing left allocated. */
static bool parse_call(const char *text, struct call *ret, const char **why)
{
    const char *p = skip_space(text);
    const char *start = p;

    memset(ret, 0, sizeof(*ret));
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_')
        p++;
    if (p == start) {
        *why = "it does not start with a name";
        return false;
    }
    ret->name = xstrndup(start, (size_t)(p - start));
    p = skip_space(p);
    if (*p == '(') {
        ret->parens = true;
        p = skip_space(p + 1);
        while (*p != ')') {
            if (ret->n_args == CALL_MAX_ARGS) {
                *why = "it has too many arguments";
                goto fail;
            }
            ret->args = xrealloc(ret->args, (size_t)(ret->n_args + 1) * sizeof(*ret->args));
            if (!parse_arg(&p, &ret->args[ret->n_args], why))
                goto fail;
            ret->n_args++;
            p = skip_space(p);
            if (*p == ',')
                p = skip_space(p + 1);
            else if (*p != ')') {
                *why = *p ? "expected ',' or ')' after an argument" : "the ')' is missing";
                goto fail;
            }
        }
        p = skip_space(p + 1);
    }
    if (*p != '\0') {
        *why = "there is more after the end";
        goto fail;
    }
    return true;
fail:
    call_release(ret);
    return false;
}

/* A number as --search and --policy take it: decimal, finite. */
static bool parse_number(const char *s, double *ret)
{
    char *end;
    double v;

    if (!((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.') ||
        strpbrk(s, "xXnN") != NULL)
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *ret = v;
    return true;
}

static bool one_of(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(s, *list) == 0)
            return true;
    }
    return false;
}

/* ---- --search ---------------------------------------------------------------- */

static int search_error(struct cli *c, const char *text, const char *why)
{
    return cli_usage_error(c,
                           "bad --search '%s': %s; the form is NAME=EXPR(ARG,...), as in "
                           "'lr=loguniform(-9,-2)' or 'act=choice(relu,tanh)'",
                           text, why);
}

/* --search NAME=EXPR(ARGS) into s->parameters as NAME: {"EXPR": [ARGS]}. */
static int add_search(struct cli *c, struct sweep *s, const char *text)
{
    const char *eq = strchr(text, '=');
    const char *text_start;
    const char *name_end;
    struct call k;
    cJSON *args;
    cJSON *expr;
    char *name;
    const char *why;
    int rc = -1;
    int i;

    if (eq == NULL)
        return search_error(c, text, "no '='");
    /* Spaces around the name are allowed, not in it. */
    text_start = skip_space(text);
    name_end = eq;
    while (name_end > text_start && (name_end[-1] == ' ' || name_end[-1] == '\t'))
        name_end--;
    name = xstrndup(text_start, (size_t)(name_end - text_start));
    if (name[0] == '\0' || strpbrk(name, " \t") != NULL || strcmp(name, "env:") == 0 ||
        strspn(name, "-") == strlen(name)) {
        free(name);
        return search_error(c, text, "the parameter's name is missing or has spaces");
    }
    if (name[0] != '-' && strncmp(name, "env:", 4) != 0) {
        char *dashed = xasprintf("--%s", name);

        free(name);
        name = dashed;
    }
    if (json_get(s->parameters, name)) {
        rc = cli_usage_error(c, "--search '%s' is given twice", name);
        free(name);
        return rc;
    }
    if (!parse_call(eq + 1, &k, &why)) {
        free(name);
        return search_error(c, text, why);
    }
    if (!one_of(k.name, expressions)) {
        rc = cli_usage_error(c,
                             "bad --search '%s': unknown expression '%s'; use choice, randint, "
                             "uniform, quniform, loguniform, qloguniform, normal, qnormal, "
                             "lognormal or qlognormal",
                             text, k.name);
        goto out;
    }
    if (!k.parens || k.n_args == 0) {
        rc = search_error(c, text,
                          k.parens ? "the expression has no arguments"
                                   : "the expression needs its arguments in ()");
        goto out;
    }
    args = cJSON_CreateArray();
    for (i = 0; i < k.n_args; i++) {
        double v;
        cJSON *item;

        if (!k.args[i].quoted && parse_number(k.args[i].text, &v)) {
            item = cJSON_CreateNumber(v);
        } else if (strcmp(k.name, "choice") == 0) {
            item = cJSON_CreateString(k.args[i].text);
        } else {
            char *why_text = xasprintf("%s takes numbers; '%s' is not one", k.name, k.args[i].text);

            rc = search_error(c, text, why_text);
            free(why_text);
            cJSON_Delete(args);
            goto out;
        }
        cJSON_AddItemToArray(args, item);
    }
    expr = cJSON_CreateObject();
    cJSON_AddItemToObject(expr, k.name, args);
    cli_json_set(s->parameters, name, expr);
out:
    call_release(&k);
    free(name);
    return rc;
}

/* ---- --policy ---------------------------------------------------------------- */

static const struct policy_key *find_key(const char *policy, const char *key)
{
    size_t i;

    for (i = 0; i < sizeof(policy_keys) / sizeof(policy_keys[0]); i++) {
        const struct policy_key *pk = &policy_keys[i];

        if (strcmp(pk->key, key) != 0)
            continue;
        if (pk->policy ? strcmp(pk->policy, policy) == 0 : strcmp(policy, "asha") != 0)
            return pk;
    }
    return NULL;
}

/* The keys policy takes, as text for an error ("slack, slack_amount, ..."). */
static char *keys_text(const char *policy)
{
    struct buf b;
    char *text;
    size_t i;

    buf_init(&b);
    for (i = 0; i < sizeof(policy_keys) / sizeof(policy_keys[0]); i++) {
        const struct policy_key *pk = &policy_keys[i];

        if (pk->policy ? strcmp(pk->policy, policy) != 0 : strcmp(policy, "asha") == 0)
            continue;
        buf_printf(&b, "%s%s", b.len ? ", " : "", pk->key);
    }
    text = buf_detach(&b, NULL);
    buf_release(&b);
    return text;
}

static int policy_error(struct cli *c, const char *text, const char *why)
{
    return cli_usage_error(c,
                           "bad --policy '%s': %s; the form is NAME(KEY=VALUE,...), as in "
                           "'bandit(slack=0.1,interval=1,delay=5)'",
                           text, why);
}

/* One KEY=VALUE of policy into object. */
static int add_policy_key(struct cli *c, const char *text, const char *policy, const char *arg,
                          cJSON *object)
{
    const char *eq = strchr(arg, '=');
    const struct policy_key *pk;
    char *key;
    double v;
    int rc = -1;

    if (eq == NULL || eq == arg)
        return policy_error(c, text, "each argument is KEY=VALUE");
    key = xstrndup(arg, (size_t)(eq - arg));
    pk = find_key(policy, key);
    if (pk == NULL) {
        char *keys = keys_text(policy);

        rc = cli_usage_error(c, "bad --policy '%s': unknown key '%s' for %s; it takes %s", text,
                             key, policy, keys);
        free(keys);
    } else if (json_get(object, pk->field)) {
        rc = cli_usage_error(c, "bad --policy '%s': '%s' is given twice", text, pk->field);
    } else if (pk->type == KEY_BOOL) {
        if (strcmp(eq + 1, "true") == 0 || strcmp(eq + 1, "false") == 0)
            cJSON_AddBoolToObject(object, pk->field, strcmp(eq + 1, "true") == 0);
        else
            rc = cli_usage_error(c, "bad --policy '%s': %s must be true or false, not '%s'", text,
                                 key, eq + 1);
    } else if (parse_number(eq + 1, &v)) {
        cJSON_AddNumberToObject(object, pk->field, v);
    } else {
        rc = cli_usage_error(c, "bad --policy '%s': %s must be a number, not '%s'", text, key,
                             eq + 1);
    }
    free(key);
    return rc;
}

/* --policy NAME(KEY=VALUE,...) (or "none") into s->policy. */
static int set_policy(struct cli *c, struct sweep *s, const char *text)
{
    const char *policy = NULL;
    const char *why;
    struct call k;
    cJSON *object;
    size_t i;
    int rc = -1;
    int j;

    if (!parse_call(text, &k, &why))
        return policy_error(c, text, why);
    cJSON_Delete(s->policy);
    s->policy = NULL;
    if (strcmp(k.name, "none") == 0 && k.n_args == 0) {
        s->policy = cJSON_CreateNull();
        call_release(&k);
        return -1;
    }
    for (i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++) {
        if (strcmp(k.name, policy_names[i].name) == 0)
            policy = policy_names[i].policy;
    }
    if (policy == NULL) {
        rc = cli_usage_error(c,
                             "bad --policy '%s': unknown policy '%s'; use bandit, median, "
                             "truncation, asha or none",
                             text, k.name);
        call_release(&k);
        return rc;
    }
    object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "policy", policy);
    for (j = 0; j < k.n_args && rc < 0; j++) {
        if (k.args[j].quoted)
            rc = policy_error(c, text, "values are numbers or true/false, not quoted");
        else
            rc = add_policy_key(c, text, policy, k.args[j].text, object);
    }
    call_release(&k);
    if (rc >= 0) {
        cJSON_Delete(object);
        return rc;
    }
    s->policy = object;
    return -1;
}

char *cli_policy_text(const cJSON *policy)
{
    const char *name = json_get_string(policy, "policy");
    const cJSON *item;
    struct buf b;
    char num[64];
    char *text;
    size_t i;

    if (name == NULL)
        return xstrdup("none");
    buf_init(&b);
    for (i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++) {
        if (strcmp(policy_names[i].policy, name) == 0) {
            buf_adds(&b, policy_names[i].name);
            break;
        }
    }
    if (b.len == 0)
        buf_adds(&b, name);
    buf_addc(&b, '(');
    /* Each field the policy has a value for, by its first (short) key. */
    cJSON_ArrayForEach(item, policy) {
        const struct policy_key *pk = NULL;

        for (i = 0; i < sizeof(policy_keys) / sizeof(policy_keys[0]) && pk == NULL; i++) {
            if (strcmp(policy_keys[i].field, item->string) == 0 &&
                find_key(name, policy_keys[i].key) == &policy_keys[i])
                pk = &policy_keys[i];
        }
        if (pk == NULL || cJSON_IsNull(item))
            continue;
        if (b.data[b.len - 1] != '(')
            buf_adds(&b, ", ");
        if (cJSON_IsBool(item)) {
            buf_printf(&b, "%s=%s", pk->key, cJSON_IsTrue(item) ? "true" : "false");
        } else if (cJSON_IsNumber(item)) {
            cli_format_number(item->valuedouble, num, sizeof(num));
            buf_printf(&b, "%s=%s", pk->key, num);
        }
    }
    buf_addc(&b, ')');
    text = buf_detach(&b, NULL);
    buf_release(&b);
    return text;
}

char *cli_search_text(const cJSON *parameters)
{
    const cJSON *param;
    struct buf b;
    char num[64];
    char *text;

    buf_init(&b);
    cJSON_ArrayForEach(param, parameters) {
        const cJSON *expr = param->child;
        const cJSON *arg;
        const char *sep = "";

        if (expr == NULL)
            continue;
        buf_printf(&b, "%s%s=%s(", b.len ? " " : "", param->string, expr->string);
        cJSON_ArrayForEach(arg, expr) {
            if (cJSON_IsNumber(arg)) {
                cli_format_exact(arg->valuedouble, num, sizeof(num));
                buf_printf(&b, "%s%s", sep, num);
            } else if (cJSON_IsString(arg)) {
                buf_printf(&b, "%s'%s'", sep, arg->valuestring);
            }
            sep = ",";
        }
        buf_addc(&b, ')');
    }
    if (b.len == 0)
        buf_adds(&b, "-");
    text = buf_detach(&b, NULL);
    buf_release(&b);
    return text;
}

/* ---- options ----------------------------------------------------------------- */

static int set_long(struct cli *c, long *ret, const char *option, const char *text, long min,
                    long max)
{
    if (!cli_parse_long(text, min, max, ret))
        return cli_usage_error(c, "%s must be a whole number from %ld to %ld, not '%s'", option,
                               min, max, text);
    return -1;
}

static int sweep_option(struct cli *c, void *state, int opt, const char *arg)
{
    struct sweep *s = state;

    switch (opt) {
    case OPT_SEARCH:
        return add_search(c, s, arg);
    case OPT_SAMPLING:
        if (strcmp(arg, "grid") != 0 && strcmp(arg, "random") != 0 && strcmp(arg, "bayesian") != 0)
            return cli_usage_error(c, "--sampling must be grid, random or bayesian, not '%s'", arg);
        s->sampling = arg;
        return -1;
    case OPT_METRIC:
        if (arg[0] == '\0')
            return cli_usage_error(c, "--metric must not be empty");
        s->metric = arg;
        return -1;
    case OPT_GOAL:
        if (strcmp(arg, "max") == 0 || strcmp(arg, "maximize") == 0)
            s->goal = "maximize";
        else if (strcmp(arg, "min") == 0 || strcmp(arg, "minimize") == 0)
            s->goal = "minimize";
        else
            return cli_usage_error(c, "--goal must be max or min, not '%s'", arg);
        return -1;
    case OPT_RUNS:
        return set_long(c, &s->runs, "--runs", arg, 1, LONG_MAX);
    case OPT_CONCURRENT:
        return set_long(c, &s->concurrent, "--concurrent", arg, 1, LONG_MAX);
    case CLI_RUN_OPT_MAX_DURATION: /* the sweep's, not a trial's */
        return set_long(c, &s->max_duration, "--max-duration", arg, 1, LONG_MAX);
    case OPT_MAX_TRIAL_DURATION:
        return cli_run_set_int(c, &s->run, "--max-trial-duration", "max_run_duration_seconds", arg,
                               0, LONG_MAX);
    case OPT_SEED:
        return set_long(c, &s->seed, "--seed", arg, 0, SEED_MAX);
    case OPT_POLICY:
        return set_policy(c, s, arg);
    default:
        return cli_run_option(c, &s->run, opt, arg);
    }
}

/* The request body: the run spec (taken) and the sweep's fields. */
static cJSON *sweep_body(struct sweep *s, cJSON *run)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *pm;

    cJSON_AddItemToObject(body, "run", run);
    cJSON_AddItemToObject(body, "parameters", s->parameters);
    s->parameters = NULL;
    if (s->sampling)
        cJSON_AddStringToObject(body, "sampling", s->sampling);
    pm = cJSON_AddObjectToObject(body, "primary_metric");
    cJSON_AddStringToObject(pm, "name", s->metric);
    cJSON_AddStringToObject(pm, "goal", s->goal);
    if (s->runs > 0)
        cJSON_AddNumberToObject(body, "max_total_runs", (double)s->runs);
    if (s->concurrent > 0)
        cJSON_AddNumberToObject(body, "max_concurrent_runs", (double)s->concurrent);
    if (s->max_duration > 0)
        cJSON_AddNumberToObject(body, "max_duration_seconds", (double)s->max_duration);
    if (s->policy) {
        cJSON_AddItemToObject(body, "early_termination", s->policy);
        s->policy = NULL;
    }
    if (s->seed >= 0)
        cJSON_AddNumberToObject(body, "seed", (double)s->seed);
    return body;
}

static int sweep_main(struct cli *c, int argc, char **argv)
{
    struct sweep s;
    cJSON *run = NULL;
    cJSON *body = NULL;
    cJSON *sweep = NULL;
    const char *id;
    char *text = NULL;
    int rc;

    memset(&s, 0, sizeof(s));
    cli_run_opts_init(&s.run);
    s.parameters = cJSON_CreateObject();
    s.seed = -1;
    rc = cli_run_parse(c, &s.run, argc, argv, sweep_option, &s);
    if (rc >= 0)
        goto out;
    if (s.parameters->child == NULL) {
        rc = cli_usage_error(c, "give at least one --search NAME=EXPR(ARGS)");
        goto out;
    }
    if (s.metric == NULL || s.goal == NULL) {
        rc = cli_usage_error(c, "--metric M and --goal max|min are required");
        goto out;
    }
    rc = cli_run_build(c, &s.run, &run);
    if (rc != 0)
        goto out;
    body = sweep_body(&s, run);
    text = json_print(body);
    /* With --follow and --json the lines that follow are JSON too. */
    rc = cli_call(c, "POST", "/api/v1/sweeps", text, &sweep);
    if (rc != 0)
        goto out;
    id = json_get_string(sweep, "id");
    if (id == NULL) {
        rc = cli_fail("the server's answer to POST /api/v1/sweeps has no sweep id");
        goto out;
    }
    if (!c->json) {
        printf("%s\n", id);
        if (!s.run.follow)
            fprintf(stderr, "follow it with: trainyard sweep-show %s --follow\n", id);
    }
    fflush(stdout);
    if (s.run.follow)
        rc = cli_sweep_follow(c, sweep);
out:
    cJSON_Delete(sweep);
    cJSON_Delete(body);
    free(text);
    cJSON_Delete(s.parameters);
    cJSON_Delete(s.policy);
    cli_run_opts_release(&s.run);
    return rc;
}

const struct cli_command cli_cmd_sweep = {
    .name = "sweep",
    .summary = "start a hyperparameter sweep over a source directory",
    .usage = usage,
    .longopts = longopts,
    .optstring = ":h",
    .operand = "@dir",
    .run = sweep_main,
};
