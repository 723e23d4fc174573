/*
 * sweeps.c - the sweep driver: samplers and early termination applied to
 * the store's sweeps and trials (see sweeps.h).
 *
 * A step reads the running sweeps; for each, the trials' statuses and the
 * primary metric's points that arrived since the last step (only for
 * trials still running, and once more after each ends), fed to the policy
 * in arrival order. Then it stops what the policy names, creates trials
 * up to max_concurrent_runs (each trial and the sweep's count in one
 * transaction: a trial number is never used twice) and ends the sweep
 * when its last trial has ended.
 */
#include "scheduler/sweeps.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/runspec.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "scheduler/earlystop.h"
#include "scheduler/sweepspace.h"
#include "scheduler/tpe.h"
#include "store/store.h"
#include "common/banned.h"

/* The most points of one trial read in one step. */
#define POINTS_PER_STEP 10000

enum sampling { SAMPLE_GRID, SAMPLE_RANDOM, SAMPLE_BAYESIAN };

enum trial_state {
    TRIAL_ACTIVE, /* queued, starting or running */
    TRIAL_COMPLETED,
    TRIAL_FAILED,
    TRIAL_CANCELED, /* by a user, or by the sweep's end */
    TRIAL_EARLY, /* stopped by the policy */
};

struct trial {
    int64_t run_seq;
    enum trial_state state;
    double *x; /* its point */
    bool has_value;
    double value; /* the primary metric's last report */
    int64_t last_rowid; /* of the points read */
    bool drained; /* ended, and its last points read */
    bool ended_told; /* es_trial_ended() called */
};

struct sweep {
    int64_t seq;
    char id[32];
    cJSON *spec;
    char *owner;
    struct sweep_space space;
    enum sampling sampling;
    char *metric;
    bool maximize;
    int max_total;
    int max_concurrent;
    int64_t deadline_ms; /* 0: none */
    struct es_policy policy;
    struct es_state *es;
    uint64_t seed;
    struct trial *trials; /* by number */
    int n_trials;
    bool seen; /* in this step's read */
};

struct sweeps {
    struct store *store;
    struct sweep **list;
    int n;
};

struct sweeps *sweeps_new(struct store *store)
{
    struct sweeps *sw = xcalloc(1, sizeof(*sw));

    sw->store = store;
    return sw;
}

static void sweep_free(struct sweep *s)
{
    int i;

    for (i = 0; i < s->n_trials; i++)
        free(s->trials[i].x);
    free(s->trials);
    es_free(s->es);
    sweep_space_release(&s->space);
    cJSON_Delete(s->spec);
    free(s->owner);
    free(s->metric);
    free(s);
}

void sweeps_free(struct sweeps *sw)
{
    int i;

    if (sw == NULL)
        return;
    for (i = 0; i < sw->n; i++)
        sweep_free(sw->list[i]);
    free(sw->list);
    free(sw);
}

bool sweeps_active(const struct sweeps *sw)
{
    return sw->n > 0;
}

/* The sweep of a stored row, from its spec (validated by the API). NULL,
 * logged, when the spec does not parse: the sweep is then failed. */
static struct sweep *sweep_load(const struct store_sweep_row *row, char *why, size_t size)
{
    struct sweep *s = xcalloc(1, sizeof(*s));
    struct sweep_error err;
    const cJSON *pm;
    const char *sampling;
    double duration;

    s->seq = row->seq;
    snprintf(s->id, sizeof(s->id), "%s", row->id);
    s->owner = row->owner ? xstrdup(row->owner) : NULL;
    s->seed = (uint64_t)row->seed;
    s->spec = cJSON_Parse(row->spec);
    pm = json_get(s->spec, "primary_metric");
    sampling = json_get_string(s->spec, "sampling");
    if (s->spec == NULL || json_get_string(pm, "name") == NULL || sampling == NULL ||
        !cJSON_IsObject(json_get(s->spec, "run"))) {
        snprintf(why, size, "the stored spec of sweep %s cannot be read", row->id);
        goto fail;
    }
    if (sweep_space_parse(json_get(s->spec, "parameters"), &s->space, &err) < 0 ||
        es_policy_parse(json_get(s->spec, "early_termination"), &s->policy, &err) < 0) {
        snprintf(why, size, "%s: %s", err.field, err.message);
        goto fail;
    }
    s->sampling = strcmp(sampling, "grid") == 0       ? SAMPLE_GRID
                  : strcmp(sampling, "bayesian") == 0 ? SAMPLE_BAYESIAN
                                                      : SAMPLE_RANDOM;
    s->metric = xstrdup(json_get_string(pm, "name"));
    s->maximize = strcmp(json_get_string(pm, "goal"), "maximize") == 0;
    s->max_total = (int)json_get(s->spec, "max_total_runs")->valuedouble;
    s->max_concurrent = (int)json_get(s->spec, "max_concurrent_runs")->valuedouble;
    duration = cJSON_IsNumber(json_get(s->spec, "max_duration_seconds"))
                   ? json_get(s->spec, "max_duration_seconds")->valuedouble
                   : 0;
    s->deadline_ms = duration > 0 ? row->created_at + (int64_t)(duration * 1000) : 0;
    if (s->sampling == SAMPLE_GRID) {
        int64_t points = sweep_space_grid_size(&s->space, s->max_total);

        if (points < 1) {
            snprintf(why, size, "the grid of sweep %s does not fit max_total_runs", row->id);
            goto fail;
        }
        s->max_total = (int)points; /* each point once */
    }
    assert(s->max_total >= 1 && s->max_concurrent >= 1);
    s->es = es_new(&s->policy, s->maximize, s->max_total);
    s->trials = xcalloc((size_t)s->max_total, sizeof(*s->trials));
    return s;
fail:
    log_error("sweeps: %s", why);
    sweep_free(s);
    return NULL;
}

static enum trial_state state_of(const struct store_trial_row *row)
{
    switch (row->status) {
    case RUN_COMPLETED:
        return TRIAL_COMPLETED;
    case RUN_FAILED:
        return TRIAL_FAILED;
    case RUN_CANCELED:
        return row->early_terminated ? TRIAL_EARLY : TRIAL_CANCELED;
    default:
        return TRIAL_ACTIVE;
    }
}

/* A point read for the policy: which trial, and the point. */
struct arrival {
    int trial;
    struct store_trial_point p;
};

static int by_rowid(const void *a, const void *b)
{
    const struct arrival *x = a;
    const struct arrival *y = b;

    return x->p.rowid < y->p.rowid ? -1 : x->p.rowid > y->p.rowid;
}

/* Reads the trials' statuses and new points; stops what the policy names.
 * Returns true when it stopped a trial. */
static bool sweep_observe(struct sweeps *sw, struct sweep *s, int64_t now)
{
    struct store_trial_row *rows = NULL;
    struct arrival *arrivals = NULL;
    size_t n_arrivals = 0;
    size_t cap = 0;
    bool stopped = false;
    size_t j;
    int n = 0;
    int i;

    if (store_sweep_trials(sw->store, s->seq, &rows, &n) < 0)
        return false;
    for (i = 0; i < n; i++) {
        struct store_trial_row *row = &rows[i];
        struct trial *t;
        struct store_trial_point *points = NULL;
        size_t n_points = 0;

        if (row->trial < 0 || row->trial >= s->max_total)
            continue;
        t = &s->trials[row->trial];
        if (t->x == NULL) { /* first seen: at start, or made by this driver */
            cJSON *values = cJSON_Parse(row->parameters);

            t->x = xcalloc((size_t)s->space.n_params + 1, sizeof(double));
            if (sweep_space_from_json(&s->space, values, t->x) < 0)
                log_warn("sweeps: trial %d of %s has parameters outside its space", row->trial,
                         s->id);
            cJSON_Delete(values);
            if (row->trial >= s->n_trials)
                s->n_trials = row->trial + 1;
        }
        t->run_seq = row->run_seq;
        t->state = state_of(row);
        if (t->drained)
            continue;
        if (store_trial_points(sw->store, t->run_seq, s->metric, t->last_rowid, POINTS_PER_STEP,
                               &points, &n_points) < 0)
            continue;
        for (j = 0; j < n_points; j++) {
            if (n_arrivals == cap) {
                cap = cap ? cap * 2 : 64;
                arrivals = xrealloc(arrivals, cap * sizeof(*arrivals));
            }
            arrivals[n_arrivals].trial = row->trial;
            arrivals[n_arrivals++].p = points[j];
        }
        if (n_points > 0)
            t->last_rowid = points[n_points - 1].rowid;
        /* An ended trial's points were all in before its end was. */
        if (t->state != TRIAL_ACTIVE && n_points < POINTS_PER_STEP)
            t->drained = true;
        free(points);
    }
    store_trial_rows_free(rows, n);

    /* The policy sees reports in the order they arrived, across trials. */
    if (n_arrivals > 0)
        qsort(arrivals, n_arrivals, sizeof(*arrivals), by_rowid);
    for (j = 0; j < n_arrivals; j++) {
        struct trial *t = &s->trials[arrivals[j].trial];
        struct es_verdict v;

        t->has_value = true;
        t->value = arrivals[j].p.value;
        if (s->policy.kind == ES_NONE ||
            !es_report(s->es, arrivals[j].trial, arrivals[j].p.step, arrivals[j].p.value, &v))
            continue;
        if (t->state == TRIAL_ACTIVE) {
            cJSON *data = es_verdict_json(&s->policy, &v);

            if (store_sweep_stop_trial(sw->store, t->run_seq, data, now) == 0) {
                log_info("sweeps: %s trial %d stopped: %s", s->id, arrivals[j].trial, v.message);
                t->state = TRIAL_EARLY;
                stopped = true;
            }
            cJSON_Delete(data);
        }
    }
    free(arrivals);
    for (i = 0; i < s->n_trials; i++) {
        struct trial *t = &s->trials[i];

        if (t->drained && !t->ended_told && t->state != TRIAL_EARLY) {
            es_trial_ended(s->es, i);
            t->ended_told = true;
        }
    }
    return stopped;
}

/* The next trial's point into x. */
static void sweep_propose(const struct sweep *s, double *x)
{
    struct tpe_obs *obs;
    size_t n = 0;
    int i;

    switch (s->sampling) {
    case SAMPLE_GRID:
        sweep_space_grid_point(&s->space, s->n_trials, x);
        return;
    case SAMPLE_RANDOM:
        sweep_space_random_point(&s->space, s->seed, s->n_trials, x);
        return;
    case SAMPLE_BAYESIAN:
        break;
    }
    obs = xcalloc((size_t)s->n_trials + 1, sizeof(*obs));
    for (i = 0; i < s->n_trials; i++) {
        const struct trial *t = &s->trials[i];

        if (t->x == NULL)
            continue;
        if (t->state == TRIAL_ACTIVE) {
            obs[n].x = t->x;
            obs[n++].running = true;
        } else if (t->has_value && t->state != TRIAL_FAILED) {
            obs[n].x = t->x;
            obs[n++].loss = s->maximize ? -t->value : t->value;
        }
    }
    tpe_suggest(&s->space, obs, n, s->seed, s->n_trials, x);
    free(obs);
}

/* The trial's run spec: the template with the point's values. */
static cJSON *trial_spec(const struct sweep *s, const cJSON *values)
{
    cJSON *spec = cJSON_Duplicate(json_get(s->spec, "run"), 1);
    const cJSON *v;

    cJSON_ArrayForEach(v, values) {
        cJSON *into;
        const char *key = v->string;

        if (strncmp(key, "env:", 4) == 0) {
            into = cJSON_GetObjectItemCaseSensitive(spec, "environment_variables");
            if (!cJSON_IsObject(into)) {
                cJSON_DeleteItemFromObjectCaseSensitive(spec, "environment_variables");
                into = cJSON_AddObjectToObject(spec, "environment_variables");
            }
            key += 4;
            if (cJSON_IsString(v)) {
                cJSON_AddStringToObject(into, key, v->valuestring);
            } else {
                char *text = json_print(v);

                cJSON_AddStringToObject(into, key, text);
                free(text);
            }
        } else {
            into = cJSON_GetObjectItemCaseSensitive(spec, "script_params");
            if (!cJSON_IsObject(into)) {
                cJSON_DeleteItemFromObjectCaseSensitive(spec, "script_params");
                into = cJSON_AddObjectToObject(spec, "script_params");
            }
            cJSON_AddItemToObject(into, key, cJSON_Duplicate(v, 1));
        }
    }
    return spec;
}

/* Creates the sweep's next trial. 0, or an error (logged) after which no
 * trial is created this step; *ret_why is set when the sweep must fail. */
static int sweep_create_trial(struct sweeps *sw, struct sweep *s, int64_t now, char *why,
                              size_t size)
{
    struct runspec_error err;
    struct store_new_run run;
    struct store_new_task *tasks = NULL;
    char *names = NULL;
    char *spec_text;
    char *params_text;
    char id[4 + 12 + 1];
    cJSON *values;
    cJSON *in;
    struct run_spec spec;
    double *x = xcalloc((size_t)s->space.n_params + 1, sizeof(double));
    int n_tasks = 0;
    int rc;

    sweep_propose(s, x);
    values = sweep_space_to_json(&s->space, x);
    in = trial_spec(s, values);
    rc = runspec_validate(in, &spec, &err);
    cJSON_Delete(in);
    if (rc < 0) {
        snprintf(why, size, "trial %d's run spec is not valid: %s%s%s", s->n_trials, err.field,
                 err.field[0] ? ": " : "", err.message);
        cJSON_Delete(values);
        free(x);
        return rc;
    }
    runspec_tasks(&spec, &tasks, &names, &n_tasks);
    spec_text = json_print(spec.json);
    params_text = json_print(values);
    memset(&run, 0, sizeof(run));
    memcpy(id, "run-", 4);
    crypto_random_hex(6, id + 4);
    run.id = id;
    run.experiment = spec.experiment;
    run.owner = s->owner;
    run.spec = spec_text;
    run.tags = json_get(spec.json, "tags");
    run.pool = spec.compute_target;
    run.priority = spec.priority;
    run.reason = "waiting to be scheduled";
    run.created_at = now;
    run.tasks = tasks;
    run.n_tasks = n_tasks;
    run.sweep_seq = s->seq;
    run.trial = s->n_trials;
    run.parameters = params_text;
    rc = store_sweep_add_trial(sw->store, &run);
    if (rc == 0) {
        struct trial *t = &s->trials[s->n_trials++];

        t->x = x;
        x = NULL;
        t->state = TRIAL_ACTIVE;
        log_info("sweeps: %s trial %d is %s %s", s->id, run.trial, id, params_text);
    } else {
        log_warn("sweeps: cannot create trial %d of %s (%d); trying again later", run.trial, s->id,
                 rc);
    }
    free(x);
    free(tasks);
    free(names);
    free(spec_text);
    free(params_text);
    run_spec_release(&spec);
    cJSON_Delete(values);
    return rc;
}

/* Observes, stops, creates and ends one sweep. Returns true when it
 * created or stopped runs. */
static bool sweep_step(struct sweeps *sw, struct sweep *s, int64_t now)
{
    bool changed = sweep_observe(sw, s, now);
    int active = 0;
    int completed = 0;
    int early = 0;
    int failed = 0;
    char why[512];
    int i;

    if (s->deadline_ms > 0 && now >= s->deadline_ms) {
        log_info("sweeps: %s reached max_duration_seconds", s->id);
        store_sweep_finish(sw->store, s->seq, RUN_COMPLETED, NULL, now);
        return true;
    }
    for (i = 0; i < s->n_trials; i++) {
        active += s->trials[i].state == TRIAL_ACTIVE;
        completed += s->trials[i].state == TRIAL_COMPLETED;
        early += s->trials[i].state == TRIAL_EARLY;
        failed += s->trials[i].state == TRIAL_FAILED;
    }
    while (active < s->max_concurrent && s->n_trials < s->max_total) {
        why[0] = '\0';
        if (sweep_create_trial(sw, s, now, why, sizeof(why)) < 0) {
            if (why[0]) {
                store_sweep_finish(sw->store, s->seq, RUN_FAILED, why, now);
                return true;
            }
            break;
        }
        active++;
        changed = true;
    }
    if (active == 0 && s->n_trials >= s->max_total) {
        if (completed + early == 0) {
            snprintf(why, sizeof(why), "no trial completed: %d failed, %d canceled", failed,
                     s->n_trials - failed);
            store_sweep_finish(sw->store, s->seq, RUN_FAILED, why, now);
        } else {
            store_sweep_finish(sw->store, s->seq, RUN_COMPLETED, NULL, now);
        }
        log_info("sweeps: %s ended: %d completed, %d stopped early, %d failed", s->id, completed,
                 early, failed);
    }
    return changed;
}

bool sweeps_step(struct sweeps *sw, int64_t now_ms)
{
    struct store_sweep_row *rows = NULL;
    bool changed = false;
    int n = 0;
    int i;
    int j;

    if (store_sweeps_running(sw->store, &rows, &n) < 0)
        return false;
    for (i = 0; i < sw->n; i++)
        sw->list[i]->seen = false;
    for (i = 0; i < n; i++) {
        struct sweep *s = NULL;

        for (j = 0; j < sw->n; j++) {
            if (sw->list[j]->seq == rows[i].seq)
                s = sw->list[j];
        }
        if (s == NULL) {
            char why[512];

            s = sweep_load(&rows[i], why, sizeof(why));
            if (s == NULL) {
                store_sweep_finish(sw->store, rows[i].seq, RUN_FAILED, why, now_ms);
                continue;
            }
            sw->list = xrealloc(sw->list, (size_t)(sw->n + 1) * sizeof(*sw->list));
            sw->list[sw->n++] = s;
        }
        s->seen = true;
    }
    store_sweep_rows_free(rows, n);
    /* Sweeps no longer running (canceled through the API) are dropped. */
    for (i = 0, j = 0; i < sw->n; i++) {
        if (sw->list[i]->seen)
            sw->list[j++] = sw->list[i];
        else
            sweep_free(sw->list[i]);
    }
    sw->n = j;
    for (i = 0; i < sw->n; i++)
        changed |= sweep_step(sw, sw->list[i], now_ms);
    return changed;
}
