/*
 * earlystop.c - early termination of sweep trials: the policies' JSON, and
 * their state and verdicts (see earlystop.h for the contract).
 *
 * Internally every value is a "goodness" g: the value itself when the goal
 * is to maximize, its negation when it is to minimize, so that larger is
 * better everywhere; thresholds are turned back into the metric's own
 * units for the verdicts. NaN counts as the worst value there is and
 * infinities as +-DBL_MAX, so that every stored number is finite.
 *
 * The state keeps, per interval k, what the rules ask about interval k
 * (the best value, or the sorted values or running averages of the trials
 * that reached k) and, per ASHA rung, the sorted values recorded there:
 * a report costs a binary search and one memmove of at most max_trials
 * doubles, never a scan of the trials' histories.
 */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "scheduler/earlystop.h"
#include "common/banned.h"

static const char *const kind_names[] = {
    [ES_NONE] = "none",
    [ES_BANDIT] = "bandit",
    [ES_MEDIAN_STOPPING] = "median_stopping",
    [ES_TRUNCATION_SELECTION] = "truncation_selection",
    [ES_ASHA] = "asha",
};

const char *es_kind_name(enum es_kind kind)
{
    assert(kind >= ES_NONE && kind <= ES_ASHA);
    return kind_names[kind];
}

/* ---- parsing ---- */

static int fail(struct sweep_error *err, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct sweep_error *err, const char *key, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->field, sizeof(err->field), "early_termination%s%s", key ? "." : "",
             key ? key : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

/* The fields each policy takes besides "policy". */
static const char *const bandit_keys[] = { "slack_factor", "slack_amount", "evaluation_interval",
                                           "delay_evaluation", NULL };
static const char *const median_keys[] = { "evaluation_interval", "delay_evaluation", NULL };
static const char *const truncation_keys[] = { "truncation_percentage", "exclude_finished_runs",
                                               "evaluation_interval", "delay_evaluation", NULL };
static const char *const asha_keys[] = { "min_resource", "reduction_factor", NULL };

static bool key_known(const char *const *keys, const char *key)
{
    for (; *keys; keys++) {
        if (strcmp(*keys, key) == 0)
            return true;
    }
    return false;
}

/* A number in (min, max] into *ret; absent leaves *ret alone. */
static int number(const cJSON *in, const char *key, double min, double max, double *ret,
                  struct sweep_error *err)
{
    const cJSON *item = json_get(in, key);

    if (!item)
        return 0;
    if (!cJSON_IsNumber(item) || !(item->valuedouble > min && item->valuedouble <= max))
        return fail(err, key, "%s must be a number greater than %g and at most %g", key, min, max);
    *ret = item->valuedouble;
    return 0;
}

/* An integer in [min, max] into *ret; absent leaves *ret alone. */
static int integer(const cJSON *in, const char *key, int64_t min, int64_t max, int64_t *ret,
                   struct sweep_error *err)
{
    const cJSON *item = json_get(in, key);

    if (!item)
        return 0;
    if (!json_int(item, min, max, ret))
        return fail(err, key, "%s must be an integer from %lld to %lld", key, (long long)min,
                    (long long)max);
    return 0;
}

static int parse_schedule(const cJSON *in, struct es_policy *p, struct sweep_error *err)
{
    int64_t interval = 1;
    int64_t delay = 0;

    if (integer(in, "evaluation_interval", 1, 1000000, &interval, err) ||
        integer(in, "delay_evaluation", 0, 1000000, &delay, err))
        return ERR_INVALID;
    p->evaluation_interval = (int)interval;
    p->delay_evaluation = (int)delay;
    return 0;
}

static int parse_bandit(const cJSON *in, struct es_policy *p, struct sweep_error *err)
{
    double factor = 0;
    double amount = 0;

    if (number(in, "slack_factor", 0, 1e9, &factor, err) ||
        number(in, "slack_amount", 0, 1e300, &amount, err))
        return ERR_INVALID;
    if (factor > 0 && amount > 0)
        return fail(err, "slack_amount", "bandit takes slack_factor or slack_amount, not both");
    if (factor == 0 && amount == 0)
        return fail(err, "slack_factor", "bandit needs slack_factor or slack_amount");
    p->has_slack_factor = factor > 0;
    p->slack_factor = factor;
    p->slack_amount = amount;
    return parse_schedule(in, p, err);
}

static int parse_truncation(const cJSON *in, struct es_policy *p, struct sweep_error *err)
{
    const cJSON *pct = json_get(in, "truncation_percentage");
    const cJSON *exclude = json_get(in, "exclude_finished_runs");

    if (!pct)
        return fail(err, "truncation_percentage",
                    "truncation_selection needs truncation_percentage");
    if (!cJSON_IsNumber(pct) || !(pct->valuedouble >= 1 && pct->valuedouble <= 99))
        return fail(err, "truncation_percentage",
                    "truncation_percentage must be a number from 1 to 99");
    p->truncation_percentage = pct->valuedouble;
    if (exclude && !cJSON_IsBool(exclude))
        return fail(err, "exclude_finished_runs", "exclude_finished_runs must be true or false");
    p->exclude_finished_runs = cJSON_IsTrue(exclude);
    return parse_schedule(in, p, err);
}

static int parse_asha(const cJSON *in, struct es_policy *p, struct sweep_error *err)
{
    int64_t min_resource = 1;
    double factor = 3;

    if (integer(in, "min_resource", 1, INT64_C(1) << 53, &min_resource, err) ||
        number(in, "reduction_factor", 1, 100, &factor, err))
        return ERR_INVALID;
    /* Closer to 1, the rungs are too many to be of use. */
    if (factor < 1.01)
        return fail(err, "reduction_factor", "reduction_factor must be at least 1.01");
    p->min_resource = min_resource;
    p->reduction_factor = factor;
    return 0;
}

int es_policy_parse(const cJSON *in, struct es_policy *ret_policy, struct sweep_error *err)
{
    struct es_policy p;
    const char *name;
    const char *dup;
    const char *const *keys;
    const cJSON *item;
    int rc;

    memset(&p, 0, sizeof(p));
    p.kind = ES_NONE;
    p.evaluation_interval = 1;
    p.min_resource = 1;
    p.reduction_factor = 3;
    if (!in || cJSON_IsNull(in)) {
        *ret_policy = p;
        return 0;
    }
    if (!cJSON_IsObject(in))
        return fail(err, NULL, "early_termination must be null or an object with \"policy\"");
    dup = json_duplicate_key(in);
    if (dup)
        return fail(err, dup, "'%s' is given twice", dup);
    name = json_get_string(in, "policy");
    if (!name)
        return fail(err, "policy",
                    "policy must be \"bandit\", \"median_stopping\", "
                    "\"truncation_selection\" or \"asha\"");
    if (strcmp(name, "bandit") == 0) {
        p.kind = ES_BANDIT;
        keys = bandit_keys;
    } else if (strcmp(name, "median_stopping") == 0) {
        p.kind = ES_MEDIAN_STOPPING;
        keys = median_keys;
    } else if (strcmp(name, "truncation_selection") == 0) {
        p.kind = ES_TRUNCATION_SELECTION;
        keys = truncation_keys;
    } else if (strcmp(name, "asha") == 0) {
        p.kind = ES_ASHA;
        keys = asha_keys;
    } else {
        return fail(err, "policy",
                    "unknown policy '%s' (bandit, median_stopping, truncation_selection, asha)",
                    name);
    }
    cJSON_ArrayForEach(item, in) {
        if (strcmp(item->string, "policy") != 0 && !key_known(keys, item->string))
            return fail(err, item->string, "'%s' is not a field of the %s policy", item->string,
                        name);
    }
    switch (p.kind) {
    case ES_BANDIT:
        rc = parse_bandit(in, &p, err);
        break;
    case ES_MEDIAN_STOPPING:
        rc = parse_schedule(in, &p, err);
        break;
    case ES_TRUNCATION_SELECTION:
        rc = parse_truncation(in, &p, err);
        break;
    default:
        rc = parse_asha(in, &p, err);
        break;
    }
    if (rc == 0)
        *ret_policy = p;
    return rc;
}

cJSON *es_policy_json(const struct es_policy *policy)
{
    cJSON *o;

    if (policy->kind == ES_NONE)
        return cJSON_CreateNull();
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "policy", es_kind_name(policy->kind));
    if (policy->kind == ES_BANDIT) {
        if (policy->has_slack_factor)
            cJSON_AddNumberToObject(o, "slack_factor", policy->slack_factor);
        else
            cJSON_AddNumberToObject(o, "slack_amount", policy->slack_amount);
    } else if (policy->kind == ES_TRUNCATION_SELECTION) {
        cJSON_AddNumberToObject(o, "truncation_percentage", policy->truncation_percentage);
        cJSON_AddBoolToObject(o, "exclude_finished_runs", policy->exclude_finished_runs);
    } else if (policy->kind == ES_ASHA) {
        cJSON_AddNumberToObject(o, "min_resource", (double)policy->min_resource);
        cJSON_AddNumberToObject(o, "reduction_factor", policy->reduction_factor);
        return o;
    }
    cJSON_AddNumberToObject(o, "evaluation_interval", policy->evaluation_interval);
    cJSON_AddNumberToObject(o, "delay_evaluation", policy->delay_evaluation);
    return o;
}

cJSON *es_verdict_json(const struct es_policy *policy, const struct es_verdict *v)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "policy", es_kind_name(policy->kind));
    cJSON_AddNumberToObject(o, "interval", v->interval);
    cJSON_AddNumberToObject(o, "step", (double)v->step);
    if (isfinite(v->value))
        cJSON_AddNumberToObject(o, "value", v->value);
    else
        cJSON_AddNullToObject(o, "value");
    if (isfinite(v->threshold))
        cJSON_AddNumberToObject(o, "threshold", v->threshold);
    else
        cJSON_AddNullToObject(o, "threshold");
    cJSON_AddStringToObject(o, "message", v->message);
    return o;
}

/* ---- sorted arrays of goodness values (ascending: worst first) ---- */

struct sorted {
    double *v;
    int n;
    int cap;
};

/* The number of values <= g. */
static int upper_bound(const struct sorted *s, double g)
{
    int lo = 0;
    int hi = s->n;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (s->v[mid] <= g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void sorted_insert(struct sorted *s, double g)
{
    int at;

    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = xrealloc(s->v, (size_t)s->cap * sizeof(*s->v));
    }
    at = upper_bound(s, g);
    memmove(s->v + at + 1, s->v + at, (size_t)(s->n - at) * sizeof(*s->v));
    s->v[at] = g;
    s->n++;
}

/* Takes one value equal to g out (it must be there). */
static void sorted_remove(struct sorted *s, double g)
{
    int at = upper_bound(s, g) - 1;

    assert(at >= 0 && s->v[at] == g);
    memmove(s->v + at, s->v + at + 1, (size_t)(s->n - at - 1) * sizeof(*s->v));
    s->n--;
}

/* The q-quantile with linear interpolation (numpy's default); n > 0. */
static double sorted_quantile(const struct sorted *s, double q)
{
    double pos = q * (s->n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < s->n ? lo + 1 : lo;
    double f = pos - lo;

    assert(s->n > 0);
    /* a(1 - f) + b f rather than a + (b - a) f: b - a may overflow. */
    return s->v[lo] * (1 - f) + s->v[hi] * f;
}

/* ---- state ---- */

enum trial_state {
    TRIAL_ACTIVE,
    TRIAL_STOPPED, /* by the policy */
    TRIAL_ENDED, /* by itself */
};

struct trial {
    enum trial_state state;
    int k; /* reports so far */
    double sum; /* of the goodness values reported */
    double best; /* the best goodness so far */
    int64_t rung; /* asha: the highest rung the trial was recorded at; -1 none */
    /* truncation_selection with exclude_finished_runs: the goodness at each
     * interval, to take out of the intervals' arrays when it ends */
    double *history;
    int history_cap;
};

/* What the rules know of interval k. */
struct interval {
    double best; /* bandit: the best goodness any trial reported at k */
    struct sorted values; /* median: running averages; truncation: values */
};

struct rung {
    int64_t index; /* r = min_resource * reduction_factor^index */
    struct sorted values;
};

struct es_state {
    struct es_policy policy;
    bool maximize;
    int max_trials;
    struct trial *trials;
    struct interval *intervals; /* [k - 1] */
    int n_intervals;
    int cap_intervals;
    struct rung *rungs; /* by index, ascending */
    int n_rungs;
    int cap_rungs;
};

struct es_state *es_new(const struct es_policy *policy, bool maximize, int max_trials)
{
    struct es_state *es = xcalloc(1, sizeof(*es));
    int i;

    assert(max_trials >= 0);
    es->policy = *policy;
    es->maximize = maximize;
    es->max_trials = max_trials;
    es->trials = xcalloc(max_trials ? (size_t)max_trials : 1, sizeof(*es->trials));
    for (i = 0; i < max_trials; i++)
        es->trials[i].rung = -1;
    return es;
}

void es_free(struct es_state *es)
{
    int i;

    if (!es)
        return;
    for (i = 0; i < es->max_trials; i++)
        free(es->trials[i].history);
    for (i = 0; i < es->n_intervals; i++)
        free(es->intervals[i].values.v);
    for (i = 0; i < es->n_rungs; i++)
        free(es->rungs[i].values.v);
    free(es->trials);
    free(es->intervals);
    free(es->rungs);
    free(es);
}

static double clamp(double g)
{
    if (isnan(g))
        return -DBL_MAX;
    return g < -DBL_MAX ? -DBL_MAX : g > DBL_MAX ? DBL_MAX : g;
}

/* Goodness <-> the metric's own units. */
static double to_g(const struct es_state *es, double value)
{
    if (isnan(value))
        return -DBL_MAX;
    return clamp(es->maximize ? value : -value);
}

static double from_g(const struct es_state *es, double g)
{
    return es->maximize ? g : -g;
}

/* "below" when larger is better, "above" when smaller is. */
static const char *worse_word(const struct es_state *es)
{
    return es->maximize ? "below" : "above";
}

static struct interval *interval_at(struct es_state *es, int k)
{
    assert(k >= 1 && k <= es->n_intervals + 1);
    if (k > es->n_intervals) {
        if (es->n_intervals == es->cap_intervals) {
            es->cap_intervals = es->cap_intervals ? es->cap_intervals * 2 : 16;
            es->intervals =
                xrealloc(es->intervals, (size_t)es->cap_intervals * sizeof(*es->intervals));
        }
        memset(&es->intervals[es->n_intervals], 0, sizeof(*es->intervals));
        es->intervals[es->n_intervals].best = -DBL_MAX;
        es->n_intervals++;
    }
    return &es->intervals[k - 1];
}

static bool evaluated(const struct es_policy *p, int k)
{
    return k > p->delay_evaluation && k % p->evaluation_interval == 0;
}

/*
 * bandit (HyperDrive's rule, at an evaluated interval k): best = the best
 * value any trial (this one and finished ones included) reported at
 * interval k. Maximize: stop when value < best / (1 + slack_factor), or
 * value < best - slack_amount. Minimize: stop when value > best * (1 +
 * slack_factor), or value > best + slack_amount.
 */
static void bandit(struct es_state *es, int k, double g, struct es_verdict *v)
{
    const struct es_policy *p = &es->policy;
    struct interval *in = interval_at(es, k);
    double best;
    double threshold;
    bool stop;

    if (g > in->best)
        in->best = g;
    if (!evaluated(p, k))
        return;
    best = from_g(es, in->best);
    if (p->has_slack_factor)
        threshold = es->maximize ? best / (1 + p->slack_factor) : best * (1 + p->slack_factor);
    else
        threshold = es->maximize ? best - p->slack_amount : best + p->slack_amount;
    /* In goodness, so that NaN (the worst) stops too. */
    stop = g < to_g(es, threshold);
    v->stop = stop;
    v->threshold = threshold;
    if (p->has_slack_factor)
        snprintf(v->message, sizeof(v->message),
                 "bandit: %.6g at interval %d is %s%s best %.6g %s (1 + %g) = %.6g", v->value, k,
                 stop ? "" : "not ", worse_word(es), best, es->maximize ? "/" : "*",
                 p->slack_factor, threshold);
    else
        snprintf(v->message, sizeof(v->message),
                 "bandit: %.6g at interval %d is %s%s best %.6g %s %g = %.6g", v->value, k,
                 stop ? "" : "not ", worse_word(es), best, es->maximize ? "-" : "+",
                 p->slack_amount, threshold);
}

/*
 * median_stopping (HyperDrive's documented rule, at an evaluated interval
 * k): stop when the trial's best value up to interval k is worse than the
 * median of the running averages (the mean of reports 1..k) of the other
 * trials that reached interval k; no verdict without such a trial. The
 * trial's own running average then joins interval k's.
 */
static void median(struct es_state *es, struct trial *t, int k, struct es_verdict *v)
{
    struct interval *in = interval_at(es, k);
    struct sorted *avgs = &in->values;
    double avg = clamp(t->sum / k);

    if (evaluated(&es->policy, k) && avgs->n == 0) {
        snprintf(v->message, sizeof(v->message),
                 "median_stopping: no other trial reached interval %d yet", k);
    } else if (evaluated(&es->policy, k)) {
        double med = sorted_quantile(avgs, 0.5);
        double best = from_g(es, t->best);

        v->stop = t->best < med;
        v->threshold = from_g(es, med);
        snprintf(v->message, sizeof(v->message),
                 "median_stopping: best %.6g up to interval %d is %s%s %.6g, the median of the "
                 "running averages of %d other trials at interval %d",
                 best, k, v->stop ? "" : "not ", worse_word(es), v->threshold, avgs->n, k);
    }
    sorted_insert(avgs, avg);
}

/*
 * truncation_selection (at an evaluated interval k): the values at
 * interval k of the trials that reached it (this one included; trials
 * that ended by themselves left out with exclude_finished_runs), n of
 * them, sorted from worst to best; cut = floor(n * pct / 100). Stop when
 * the value is worse than the (cut+1)-th worst, that is when it is among
 * the cut worst (ties are kept). cut = 0 stops nothing.
 */
static void truncation(struct es_state *es, int k, double g, struct es_verdict *v)
{
    const struct es_policy *p = &es->policy;
    struct sorted *vals = &interval_at(es, k)->values;
    int cut;

    sorted_insert(vals, g);
    if (!evaluated(p, k))
        return;
    cut = (int)floor(vals->n * p->truncation_percentage / 100);
    v->threshold = from_g(es, vals->v[cut < vals->n ? cut : vals->n - 1]);
    v->stop = cut > 0 && g < vals->v[cut];
    snprintf(v->message, sizeof(v->message),
             "truncation_selection: %.6g at interval %d is %s%s %.6g: the worst %g%% (%d of %d "
             "trials) at interval %d are cut",
             v->value, k, v->stop ? "" : "not ", worse_word(es), v->threshold,
             p->truncation_percentage, cut, vals->n, k);
}

/* ASHA's rung r_index = min_resource * reduction_factor^index. */
static double rung_step(const struct es_policy *p, int64_t index)
{
    return (double)p->min_resource * pow(p->reduction_factor, (double)index);
}

/* The highest rung index at or below step, or -1. */
static int64_t rung_for(const struct es_policy *p, int64_t step)
{
    int64_t i;

    if (step < p->min_resource)
        return -1;
    i = (int64_t)floor(log((double)step / (double)p->min_resource) / log(p->reduction_factor));
    while (i > 0 && rung_step(p, i) > (double)step)
        i--;
    while (rung_step(p, i + 1) <= (double)step)
        i++;
    return i;
}

static struct rung *rung_at(struct es_state *es, int64_t index)
{
    int lo = 0;
    int hi = es->n_rungs;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (es->rungs[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < es->n_rungs && es->rungs[lo].index == index)
        return &es->rungs[lo];
    if (es->n_rungs == es->cap_rungs) {
        es->cap_rungs = es->cap_rungs ? es->cap_rungs * 2 : 16;
        es->rungs = xrealloc(es->rungs, (size_t)es->cap_rungs * sizeof(*es->rungs));
    }
    memmove(es->rungs + lo + 1, es->rungs + lo, (size_t)(es->n_rungs - lo) * sizeof(*es->rungs));
    memset(&es->rungs[lo], 0, sizeof(es->rungs[lo]));
    es->rungs[lo].index = index;
    es->n_rungs++;
    return &es->rungs[lo];
}

/*
 * asha (as Ray Tune's AsyncHyperBandScheduler): when a report's step
 * first reaches a rung above the trial's last one (the highest such rung:
 * rungs jumped over are skipped), cutoff = the (1 - 1/reduction_factor)
 * quantile, interpolated linearly, of the goodness values recorded at that
 * rung so far; stop when the value is worse than the cutoff (no cutoff
 * while none is recorded); then the value is recorded at the rung.
 */
static void asha(struct es_state *es, struct trial *t, int64_t step, double g, struct es_verdict *v)
{
    const struct es_policy *p = &es->policy;
    int64_t index = rung_for(p, step);
    struct rung *r;

    if (index <= t->rung) {
        snprintf(v->message, sizeof(v->message), "asha: step %lld reaches no new rung",
                 (long long)step);
        return;
    }
    t->rung = index;
    r = rung_at(es, index);
    if (r->values.n == 0) {
        snprintf(v->message, sizeof(v->message), "asha: the first value at rung %.6g",
                 rung_step(p, index));
    } else {
        double cutoff = sorted_quantile(&r->values, 1 - 1 / p->reduction_factor);

        v->stop = g < cutoff;
        v->threshold = from_g(es, cutoff);
        snprintf(v->message, sizeof(v->message),
                 "asha: %.6g at step %lld is %s%s the cutoff %.6g for the best 1/%g of the %d "
                 "values at rung %.6g",
                 v->value, (long long)step, v->stop ? "" : "not ", worse_word(es), v->threshold,
                 p->reduction_factor, r->values.n, rung_step(p, index));
    }
    sorted_insert(&r->values, g);
}

bool es_report(struct es_state *es, int trial, int64_t step, double value, struct es_verdict *ret)
{
    struct trial *t;
    double g;

    assert(trial >= 0 && trial < es->max_trials);
    t = &es->trials[trial];
    memset(ret, 0, sizeof(*ret));
    ret->step = step;
    ret->value = value;
    ret->threshold = NAN;
    if (t->state != TRIAL_ACTIVE) {
        ret->interval = t->k;
        snprintf(ret->message, sizeof(ret->message), "%s: trial %d is %s; report ignored",
                 es_kind_name(es->policy.kind), trial,
                 t->state == TRIAL_STOPPED ? "stopped" : "ended");
        return false;
    }
    g = to_g(es, value);
    t->k++;
    t->sum += g;
    t->best = t->k == 1 || g > t->best ? g : t->best;
    ret->interval = t->k;
    snprintf(ret->message, sizeof(ret->message), "%s: interval %d not evaluated",
             es_kind_name(es->policy.kind), t->k);
    switch (es->policy.kind) {
    case ES_NONE:
        break;
    case ES_BANDIT:
        bandit(es, t->k, g, ret);
        break;
    case ES_MEDIAN_STOPPING:
        median(es, t, t->k, ret);
        break;
    case ES_TRUNCATION_SELECTION:
        if (es->policy.exclude_finished_runs) {
            if (t->k > t->history_cap) {
                t->history_cap = t->history_cap ? t->history_cap * 2 : 16;
                t->history = xrealloc(t->history, (size_t)t->history_cap * sizeof(*t->history));
            }
            t->history[t->k - 1] = g;
        }
        truncation(es, t->k, g, ret);
        break;
    case ES_ASHA:
        asha(es, t, step, g, ret);
        break;
    }
    if (ret->stop)
        t->state = TRIAL_STOPPED;
    return ret->stop;
}

void es_trial_ended(struct es_state *es, int trial)
{
    struct trial *t;
    int k;

    assert(trial >= 0 && trial < es->max_trials);
    t = &es->trials[trial];
    if (t->state != TRIAL_ACTIVE)
        return;
    t->state = TRIAL_ENDED;
    if (es->policy.kind != ES_TRUNCATION_SELECTION || !es->policy.exclude_finished_runs)
        return;
    for (k = 1; k <= t->k; k++)
        sorted_remove(&es->intervals[k - 1].values, t->history[k - 1]);
    free(t->history);
    t->history = NULL;
    t->history_cap = 0;
}
