/*
 * sweeps.c - hyperparameter sweeps (issue 12): creating one (the spec
 * validated once, here, into its normal form), reading, listing its
 * trials, canceling, and its event stream. The trials are created and
 * stopped by the scheduler (scheduler/sweeps.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/runspec.h"
#include "common/backend.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "scheduler/earlystop.h"
#include "scheduler/scheduler.h"
#include "scheduler/sweepspace.h"
#include "store/store.h"
#include "common/banned.h"

/* The most trials one sweep may have. */
#define SWEEP_MAX_TRIALS 10000
/* A seed is any integer a JSON number holds exactly. */
#define SWEEP_MAX_SEED 9007199254740991.0

static const char *const sweep_fields[] = { "run",
                                            "parameters",
                                            "sampling",
                                            "primary_metric",
                                            "max_total_runs",
                                            "max_concurrent_runs",
                                            "max_duration_seconds",
                                            "early_termination",
                                            "seed",
                                            NULL };

static const char *const samplings[] = { "grid", "random", "bayesian", NULL };

static bool one_of(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(s, *list) == 0)
            return true;
    }
    return false;
}

/* An integer field in [lo, hi]; absent or null gives def (which may be
 * outside the range: "none"). False with a 400 set. */
static bool int_field(const cJSON *in, const char *name, double lo, double hi, double def,
                      double *ret, struct api_response *resp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, name);

    if (v == NULL || cJSON_IsNull(v)) {
        *ret = def;
        return true;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi) {
        api_error(resp, ERR_INVALID, name, "%s must be an integer from %.0f to %.0f", name, lo, hi);
        return false;
    }
    *ret = v->valuedouble;
    return true;
}

/* Checks that the swept parameters fit the run: a script_params name needs
 * an entry script, and neither kind may also be set in the run. */
static bool params_fit_run(const struct sweep_space *space, const cJSON *run,
                           struct api_response *resp)
{
    const cJSON *script_params = json_get(run, "script_params");
    const cJSON *env = json_get(run, "environment_variables");
    int i;

    for (i = 0; i < space->n_params; i++) {
        const char *name = space->params[i].name;
        char field[160];

        snprintf(field, sizeof(field), "parameters.%s", name);
        if (strncmp(name, "env:", 4) == 0) {
            if (cJSON_GetObjectItemCaseSensitive(env, name + 4)) {
                api_error(resp, ERR_INVALID, field,
                          "'%s' is swept and also set in run.environment_variables; "
                          "remove it from the run",
                          name + 4);
                return false;
            }
            continue;
        }
        if (json_get_string(run, "entry_script") == NULL) {
            api_error(resp, ERR_INVALID, field,
                      "'%s' is a script parameter but the run has no entry_script; sweep a "
                      "command run's environment with 'env:NAME'",
                      name);
            return false;
        }
        if (cJSON_GetObjectItemCaseSensitive(script_params, name)) {
            api_error(resp, ERR_INVALID, field,
                      "'%s' is swept and also set in run.script_params; remove it from the run",
                      name);
            return false;
        }
    }
    return true;
}

/* Validates in into the normal form of a sweep spec (*ret_spec); false
 * with a 400 naming the field. */
static bool sweep_validate(const cJSON *in, cJSON **ret_spec, struct api_response *resp)
{
    struct runspec_error rerr;
    struct sweep_error err;
    struct sweep_space space;
    struct es_policy policy;
    const cJSON *pm = json_get(in, "primary_metric");
    const char *sampling = "random";
    const char *metric;
    const char *goal;
    struct run_spec valid;
    cJSON *run = NULL;
    cJSON *spec;
    int64_t grid = -1;
    double total;
    double concurrent;
    double duration;
    double seed;

    if (!only_known_fields(in, sweep_fields, resp))
        return false;
    if (!cJSON_IsObject(json_get(in, "run"))) {
        api_error(resp, ERR_INVALID, "run", "run must be a run spec object (as for POST /runs)");
        return false;
    }
    if (runspec_validate(json_get(in, "run"), &valid, &rerr) < 0) {
        char field[96];

        snprintf(field, sizeof(field), "run%s%s", rerr.field[0] ? "." : "", rerr.field);
        api_error(resp, ERR_INVALID, field, "%s", rerr.message);
        return false;
    }
    /* The sweep keeps the canonical run spec as its trials' template. */
    run = run_spec_take_json(&valid);
    if (json_get(in, "sampling") && !cJSON_IsNull(json_get(in, "sampling"))) {
        sampling = json_get_string(in, "sampling");
        if (sampling == NULL || !one_of(sampling, samplings)) {
            api_error(resp, ERR_INVALID, "sampling",
                      "sampling must be 'grid', 'random' or 'bayesian'");
            cJSON_Delete(run);
            return false;
        }
    }
    if (sweep_space_parse(json_get(in, "parameters"), &space, &err) < 0) {
        api_error(resp, ERR_INVALID, err.field[0] ? err.field : "parameters", "%s", err.message);
        cJSON_Delete(run);
        return false;
    }
    if (!params_fit_run(&space, run, resp))
        goto fail;
    if (strcmp(sampling, "grid") == 0 &&
        (grid = sweep_space_grid_size(&space, SWEEP_MAX_TRIALS)) < 0) {
        int i;

        for (i = 0; i < space.n_params && space.params[i].expr == SWEEP_CHOICE; i++)
            ;
        if (i < space.n_params)
            api_error(resp, ERR_INVALID, "sampling",
                      "grid sampling takes only choice parameters; '%s' is not one",
                      space.params[i].name);
        else
            api_error(resp, ERR_INVALID, "sampling",
                      "the grid has more than %d points (max_total_runs' limit)", SWEEP_MAX_TRIALS);
        goto fail;
    }
    metric = json_get_string(pm, "name");
    goal = json_get_string(pm, "goal");
    if (!cJSON_IsObject(pm) || metric == NULL || metric[0] == '\0' || strlen(metric) > 128) {
        api_error(resp, ERR_INVALID, "primary_metric.name",
                  "primary_metric must be {\"name\": \"<metric>\", \"goal\": \"maximize\" | "
                  "\"minimize\"}, the name 1 to 128 characters");
        goto fail;
    }
    if (goal == NULL || (strcmp(goal, "maximize") != 0 && strcmp(goal, "minimize") != 0)) {
        api_error(resp, ERR_INVALID, "primary_metric.goal",
                  "primary_metric.goal must be 'maximize' or 'minimize'");
        goto fail;
    }
    if (cJSON_GetArraySize(pm) != 2) {
        api_error(resp, ERR_INVALID, "primary_metric",
                  "primary_metric takes only 'name' and 'goal'");
        goto fail;
    }
    /* A grid runs its points unless told to run fewer. */
    if (!int_field(in, "max_total_runs", 1, SWEEP_MAX_TRIALS, grid > 0 ? (double)grid : 0, &total,
                   resp))
        goto fail;
    if (total < 1) {
        api_error(resp, ERR_INVALID, "max_total_runs",
                  "max_total_runs is required: an integer from 1 to %d", SWEEP_MAX_TRIALS);
        goto fail;
    }
    if (grid > 0 && (double)grid > total) {
        api_error(resp, ERR_INVALID, "max_total_runs",
                  "the grid has %lld points, more than max_total_runs (%.0f)", (long long)grid,
                  total);
        goto fail;
    }
    if (grid > 0)
        total = (double)grid; /* a grid runs each of its points once */
    if (!int_field(in, "max_concurrent_runs", 1, SWEEP_MAX_TRIALS, total, &concurrent, resp) ||
        !int_field(in, "max_duration_seconds", 1, 366 * 86400.0, 0, &duration, resp) ||
        !int_field(in, "seed", 0, SWEEP_MAX_SEED, -1, &seed, resp))
        goto fail;
    if (es_policy_parse(json_get(in, "early_termination"), &policy, &err) < 0) {
        api_error(resp, ERR_INVALID, err.field[0] ? err.field : "early_termination", "%s",
                  err.message);
        goto fail;
    }
    if (seed < 0) {
        char hex[2 * 6 + 1];

        crypto_random_hex(6, hex);
        seed = (double)strtoull(hex, NULL, 16); /* 48 bits: exact in a JSON number */
    }

    spec = cJSON_CreateObject();
    cJSON_AddItemToObject(spec, "run", run);
    cJSON_AddItemToObject(spec, "parameters", sweep_space_json(&space));
    cJSON_AddStringToObject(spec, "sampling", sampling);
    pm = cJSON_AddObjectToObject(spec, "primary_metric");
    cJSON_AddStringToObject((cJSON *)pm, "name", metric);
    cJSON_AddStringToObject((cJSON *)pm, "goal", goal);
    cJSON_AddNumberToObject(spec, "max_total_runs", total);
    cJSON_AddNumberToObject(spec, "max_concurrent_runs", concurrent > total ? total : concurrent);
    if (duration > 0)
        cJSON_AddNumberToObject(spec, "max_duration_seconds", duration);
    else
        cJSON_AddNullToObject(spec, "max_duration_seconds");
    cJSON_AddItemToObject(spec, "early_termination", es_policy_json(&policy));
    cJSON_AddNumberToObject(spec, "seed", seed);
    sweep_space_release(&space);
    *ret_spec = spec;
    return true;
fail:
    sweep_space_release(&space);
    cJSON_Delete(run);
    return false;
}

void api_sweeps_create(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    struct store_new_sweep w;
    cJSON *in = NULL;
    cJSON *spec = NULL;
    cJSON *sweep;
    const cJSON *run;
    const char *source;
    char id[4 + 12 + 1];
    char *text;
    int tries;
    int rc;

    if (!parse_object(req, resp, &in))
        return;
    if (!sweep_validate(in, &spec, resp)) {
        cJSON_Delete(in);
        return;
    }
    cJSON_Delete(in);
    run = json_get(spec, "run");
    source = json_get_string(run, "source");
    if (source && (rc = store_snapshot_get(ctx->store, source, NULL)) < 0) {
        if (rc == ERR_NOT_FOUND)
            api_error(resp, ERR_INVALID, "run.source",
                      "snapshot '%s' does not exist; upload it with POST /api/v1/snapshots",
                      source);
        else
            reply_store_error(ctx, resp, rc, "snapshot", source);
        cJSON_Delete(spec);
        return;
    }
    text = json_print(spec);
    memset(&w, 0, sizeof(w));
    w.id = id;
    w.experiment = json_get_string(run, "experiment");
    w.owner = req->principal.name;
    w.spec = text;
    w.seed = (int64_t)json_get(spec, "seed")->valuedouble;
    w.created_at = time_now_ms();
    /* 48 random bits: a clash is rare enough that two more tries cover it. */
    rc = ERR_CONFLICT;
    for (tries = 0; rc == ERR_CONFLICT && tries < 3; tries++) {
        memcpy(id, "swp-", 4);
        crypto_random_hex(6, id + 4);
        rc = store_sweep_create(ctx->store, &w);
    }
    free(text);
    cJSON_Delete(spec);
    if (rc < 0 || (rc = store_sweep_get(ctx->store, id, &sweep)) < 0) {
        reply_store_error(ctx, resp, rc, "sweep", id);
        return;
    }
    scheduler_kick(ctx->sched);
    reply_json(resp, 201, sweep);
}

void api_sweeps_list(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    static const char *const statuses[] = { "running", "completed", "canceled", "failed", NULL };
    const char *status = req->query(req->conn, "status");
    int64_t before = 0;
    cJSON *list;
    int limit;
    int rc;

    if (!parse_paging(req, resp, &limit, &before))
        return;
    if (status && !one_of(status, statuses)) {
        api_error(resp, ERR_INVALID, "status",
                  "status must be one of running, completed, canceled, failed");
        return;
    }
    if ((rc = store_sweep_list(ctx->store, status, before, limit, &list)) < 0) {
        api_error(resp, rc, NULL, "cannot list sweeps");
        return;
    }
    reply_json(resp, 200, list);
}

void api_sweeps_get(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *sweep;
    int rc = store_sweep_get(ctx->store, req->params[0], &sweep);

    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "sweep", req->params[0]);
        return;
    }
    reply_json(resp, 200, sweep);
}

void api_sweeps_runs(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *sort = req->query(req->conn, "sort");
    const char *order = req->query(req->conn, "order");
    enum store_trial_sort by = STORE_TRIAL_BY_NUMBER;
    bool desc = false;
    cJSON *list;
    int rc;

    if (sort && strcmp(sort, "value") == 0) {
        by = STORE_TRIAL_BY_VALUE;
    } else if (sort && strcmp(sort, "trial") != 0) {
        api_error(resp, ERR_INVALID, "sort", "sort must be 'trial' or 'value'");
        return;
    }
    if (order && strcmp(order, "desc") == 0) {
        desc = true;
    } else if (order && strcmp(order, "asc") != 0) {
        api_error(resp, ERR_INVALID, "order", "order must be 'asc' or 'desc'");
        return;
    }
    if ((rc = store_sweep_runs(ctx->store, req->params[0], by, desc, &list)) < 0) {
        reply_store_error(ctx, resp, rc, "sweep", req->params[0]);
        return;
    }
    reply_json(resp, 200, list);
}

void api_sweeps_cancel(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    /* A user cancels its own sweeps, an admin anyone's. */
    const char *owner = req->principal.role == API_ROLE_ADMIN ? NULL : req->principal.name;
    cJSON *sweep;
    int rc = store_sweep_cancel(ctx->store, req->params[0], owner, time_now_ms(), &sweep);

    if (rc == ERR_PERMISSION) {
        api_error(resp, rc, NULL,
                  "sweep '%s' belongs to another owner; a 'user' token may cancel only its own "
                  "sweeps (an admin may cancel any)",
                  req->params[0]);
        return;
    }
    if (rc == ERR_CONFLICT) {
        api_error(resp, rc, NULL, "sweep '%s' has already ended", req->params[0]);
        return;
    }
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "sweep", req->params[0]);
        return;
    }
    scheduler_kick(ctx->sched);
    reply_json(resp, 200, sweep);
}

/* ---- server-sent events: the sweep and its trials as they change ---- */

struct sweep_stream {
    struct api_stream base;
    struct api_ctx *ctx;
    char *id;
    char *last_sweep; /* the sweep as last sent */
    cJSON *last_trials; /* trial number -> the trial as last sent (text) */
    uint64_t gen; /* the store's generation at the last read; UINT64_MAX before it */
    int64_t last_emit_ms;
    bool finished;
};

static void sse(struct buf *out, const char *event, const char *text)
{
    buf_printf(out, "event: %s\ndata: %s\n\n", event, text);
}

static int sweep_events_next(struct api_stream *stream, struct buf *out, bool *ret_done)
{
    struct sweep_stream *ss = (struct sweep_stream *)stream;
    size_t before = out->len;
    cJSON *sweep = NULL;
    cJSON *trials = NULL;
    const cJSON *t;
    int64_t now = time_now_ms();
    uint64_t gen = store_generation(ss->ctx->store);
    char *text;
    bool ended;

    if (ss->finished || __atomic_load_n(&ss->ctx->shutting_down, __ATOMIC_RELAXED)) {
        *ret_done = true;
        return 0;
    }
    /* Nothing was written since the last read: no trial can have changed
     * (a sweep of 10,000 trials costs a read of each otherwise). */
    if (gen == ss->gen) {
        if (now - ss->last_emit_ms > 15000) {
            buf_adds(out, ": keepalive\n\n");
            ss->last_emit_ms = now;
        }
        *ret_done = false;
        return 0;
    }
    ss->gen = gen;
    if (store_sweep_get(ss->ctx->store, ss->id, &sweep) < 0) {
        *ret_done = true;
        return 0;
    }
    ended = run_status_parse(json_get_string(sweep, "status")) != RUN_RUNNING;
    /* Trials first, so a client that sees the sweep end has seen them all. */
    if (store_sweep_runs(ss->ctx->store, ss->id, STORE_TRIAL_BY_NUMBER, false, &trials) == 0) {
        cJSON_ArrayForEach(t, json_get(trials, "items")) {
            char key[16];
            const char *last;

            snprintf(key, sizeof(key), "%d", (int)json_get(t, "trial")->valuedouble);
            text = json_print(t);
            last = json_get_string(ss->last_trials, key);
            if (last == NULL || strcmp(last, text) != 0) {
                sse(out, "trial", text);
                cJSON_DeleteItemFromObjectCaseSensitive(ss->last_trials, key);
                cJSON_AddStringToObject(ss->last_trials, key, text);
            }
            free(text);
        }
        cJSON_Delete(trials);
    }
    text = json_print(sweep);
    if (ss->last_sweep == NULL || strcmp(text, ss->last_sweep) != 0) {
        sse(out, "sweep", text);
        free(ss->last_sweep);
        ss->last_sweep = text;
    } else {
        free(text);
    }
    cJSON_Delete(sweep);
    if (out->len > before) {
        ss->last_emit_ms = now;
    } else if (now - ss->last_emit_ms > 15000) {
        /* Keeps proxies from closing an idle stream. */
        buf_adds(out, ": keepalive\n\n");
        ss->last_emit_ms = now;
    }
    if (ended)
        ss->finished = true; /* one more call sends nothing and ends */
    *ret_done = false;
    return 0;
}

static void sweep_events_free(struct api_stream *stream)
{
    struct sweep_stream *ss = (struct sweep_stream *)stream;

    followers_release(ss->id);
    free(ss->id);
    free(ss->last_sweep);
    cJSON_Delete(ss->last_trials);
    free(ss);
}

void api_sweeps_events(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    struct sweep_stream *ss;
    cJSON *sweep;
    int rc = store_sweep_get(ctx->store, req->params[0], &sweep);

    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "sweep", req->params[0]);
        return;
    }
    cJSON_Delete(sweep);
    if (!followers_acquire(ctx, req->params[0], resp))
        return;
    ss = xcalloc(1, sizeof(*ss));
    ss->base.next = sweep_events_next;
    ss->base.free = sweep_events_free;
    ss->ctx = ctx;
    ss->id = xstrdup(req->params[0]);
    ss->last_trials = cJSON_CreateObject();
    ss->gen = UINT64_MAX;
    ss->last_emit_ms = time_now_ms();
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp->stream = &ss->base;
}
