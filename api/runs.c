/* runs.c - submitting, listing, reading and cancelling runs; experiments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/cache.h"
#include "api/internal.h"
#include "api/runspec.h"
#include "common/backend.h"
#include "common/err.h"
#include "common/json.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "common/banned.h"

/* The tag a rerun gets, naming the run it repeats (docs/API-NOTES.md). */
#define RUN_TAG_RERUN_OF "trainyard/rerun_of"

/* How many suitable ready nodes a pool has, as the last submission on this
 * thread found, while the store is at the same generation (no commit since)
 * and for at most POOL_COUNT_TTL_MS: a burst of submissions asks the same
 * question between two commits, and each answer was a read transaction. */
#define POOL_COUNT_TTL_MS 5
#define POOL_COUNT_CACHED 4

struct pool_count {
    uint64_t generation;
    int64_t at_ms;
    char pool[65];
    int64_t limit;
    int64_t with;
};

static __thread struct pool_count pool_counts[POOL_COUNT_CACHED];
static __thread unsigned pool_count_next;

static int pool_nodes_cached(struct api_ctx *ctx, const char *pool, const cJSON *features,
                             int64_t now, int64_t limit, int64_t *ret_with)
{
    uint64_t gen = store_generation(ctx->store);
    struct pool_count *e;
    int rc;
    int i;

    /* Only the plain question (no features) is kept: it is the common one. */
    if (cJSON_GetArraySize(features) > 0 || strlen(pool) >= sizeof(pool_counts[0].pool))
        return store_pool_nodes(ctx->store, pool, features, now, ctx->node_timeout_ms, limit,
                                ret_with);
    for (i = 0; i < POOL_COUNT_CACHED; i++) {
        e = &pool_counts[i];
        if (e->generation == gen && e->limit == limit && now - e->at_ms <= POOL_COUNT_TTL_MS &&
            now >= e->at_ms && strcmp(e->pool, pool) == 0) {
            *ret_with = e->with;
            return 0;
        }
    }
    rc = store_pool_nodes(ctx->store, pool, features, now, ctx->node_timeout_ms, limit, ret_with);
    if (rc < 0)
        return rc;
    e = &pool_counts[pool_count_next++ % POOL_COUNT_CACHED];
    e->generation = gen;
    e->at_ms = now;
    snprintf(e->pool, sizeof(e->pool), "%s", pool);
    e->limit = limit;
    e->with = *ret_with;
    return 0;
}

/* Why a new run will wait, in words, or a plain "waiting" line. */
static int queue_reason(struct api_ctx *ctx, const struct run_spec *spec, struct api_response *resp,
                        char *reason, size_t size)
{
    const char *pool = spec->compute_target;
    int64_t nodes = spec->shape.node_count;
    int64_t now = time_now_ms();
    int64_t with;
    unsigned need = spec->features;
    cJSON *features = cJSON_CreateArray();
    char with_text[64] = "";
    int rc;
    int i;

    if (need & FEATURE_CONDA) {
        cJSON_AddItemToArray(features, cJSON_CreateString("conda"));
        rc = store_pool_nodes(ctx->store, pool, features, now, ctx->node_timeout_ms, 1, &with);
        if (rc == 0 && with == 0) {
            cJSON_Delete(features);
            api_error(resp, ERR_INVALID, "conda_packages",
                      "no node in pool '%s' has the conda feature", pool);
            return ERR_INVALID;
        }
    }
    for (i = 0; i < FEATURE_COUNT; i++) {
        if ((need & ~FEATURE_CONDA) & (1u << i))
            cJSON_AddItemToArray(features, cJSON_CreateString(feature_name(i)));
        if (need & (1u << i))
            snprintf(with_text + strlen(with_text), sizeof(with_text) - strlen(with_text), "%s%s",
                     with_text[0] ? " and " : ", with ", feature_name(i));
    }
    rc = pool_nodes_cached(ctx, pool, features, now, nodes, &with);
    cJSON_Delete(features);
    if (rc < 0) {
        api_error(resp, ERR_INTERNAL, NULL, "cannot read pool '%s'", pool);
        return rc;
    }
    if (with < nodes)
        snprintf(reason, size,
                 "pool '%s' has %lld ready node(s) that suit this run; it needs %lld%s", pool,
                 (long long)with, (long long)nodes, with_text);
    else
        snprintf(reason, size, "waiting to be scheduled");
    return 0;
}

/* A submission from validation to its 201. */
struct submission {
    struct api_job job;
    struct store_new_run run;
    struct store_new_task *tasks;
    char *names;
    char *spec_text;
    struct run_spec spec;
    char id[STORE_RUN_ID_SIZE]; /* written by the store */
    char owner[sizeof(((struct api_principal *)0)->name)];
    char reason[256];
};

static void submission_free(struct submission *s)
{
    free(s->tasks);
    free(s->names);
    free(s->spec_text);
    run_spec_release(&s->spec);
    free(s);
}

static int submission_store(struct api_job *job)
{
    struct submission *s = (struct submission *)job;

    return store_run_create_async(job->ctx->store, &s->run, api_job_written, job);
}

static void submission_answer(struct api_ctx *ctx, struct api_request *req,
                              struct api_response *resp, void *arg)
{
    struct submission *s = arg;

    (void)req;
    if (resp == NULL) {
        submission_free(s);
        return;
    }
    if (s->job.rc < 0) {
        reply_store_error(ctx, resp, s->job.rc, "run", s->id);
    } else {
        /* The run as it was stored (queued), under the id the store chose:
         * a pass may already be placing it. */
        s->run.id = s->id;
        resp->status = 201;
        resp->content_type = "application/json";
        buf_reset(&resp->body);
        store_run_created_json(&s->run, &resp->body);
        buf_addc(&resp->body, '\n');
    }
    submission_free(s);
}

/* Validates in (deleted here) and submits it as a new run of the caller. */
static void submit(struct api_ctx *ctx, struct api_request *req, struct api_response *resp,
                   cJSON *in)
{
    struct runspec_error err;
    struct submission *s;
    struct run_spec spec;
    const char *source;
    int n_tasks;
    int rc;

    rc = runspec_validate(in, &spec, &err);
    cJSON_Delete(in);
    if (rc < 0) {
        api_error(resp, ERR_INVALID, err.field[0] ? err.field : NULL, "%s", err.message);
        return;
    }
    source = spec.source;
    if (source && (rc = store_snapshot_get(ctx->store, source, NULL)) < 0) {
        if (rc == ERR_NOT_FOUND)
            api_error(resp, ERR_INVALID, "source",
                      "snapshot '%s' does not exist; upload it "
                      "with POST /api/v1/snapshots",
                      source);
        else
            reply_store_error(ctx, resp, rc, "snapshot", source);
        run_spec_release(&spec);
        return;
    }
    s = xcalloc(1, sizeof(*s));
    s->job.ctx = ctx;
    s->job.req = req;
    s->job.kick = true;
    s->spec = spec;
    if (queue_reason(ctx, &s->spec, resp, s->reason, sizeof(s->reason)) < 0) {
        submission_free(s);
        return;
    }
    runspec_tasks(&s->spec, &s->tasks, &s->names, &n_tasks);
    s->spec_text = json_print(s->spec.json);
    s->run.experiment = s->spec.experiment;
    /* Known from authentication: no read here. */
    snprintf(s->owner, sizeof(s->owner), "%s", req->principal.name);
    s->run.owner = s->owner;
    s->run.spec = s->spec_text;
    s->run.tags = json_get(s->spec.json, "tags");
    s->run.pool = s->spec.compute_target;
    s->run.priority = s->spec.priority;
    s->run.reason = s->reason;
    s->run.created_at = time_now_ms();
    s->run.tasks = s->tasks;
    s->run.n_tasks = n_tasks;
    s->run.new_id = s->id;
    api_job_start(&s->job, resp, submission_answer, submission_store);
}

void api_runs_create(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *in = NULL;

    if (parse_object(req, resp, &in))
        submit(ctx, req, resp, in);
}

void api_runs_rerun(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *id = req->params[0];
    cJSON *overrides = NULL;
    const cJSON *o;
    cJSON *run;
    cJSON *in;
    cJSON *tags;
    int rc;

    /* The body is optional: without one the run is repeated as it was. */
    if (req->body_len > 0 && !parse_object(req, resp, &overrides))
        return;
    rc = store_run_get(ctx->store, id, &run);
    if (rc < 0) {
        cJSON_Delete(overrides);
        reply_store_error(ctx, resp, rc, "run", id);
        return;
    }
    in = cJSON_DetachItemFromObjectCaseSensitive(run, "spec");
    cJSON_Delete(run);
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        cJSON_Delete(overrides);
        api_error(resp, ERR_INTERNAL, NULL, "run '%s' has no stored spec", id);
        return;
    }
    /* Each override replaces the original's field; validation judges the result
     * (an unknown field among them is refused by name). */
    cJSON_ArrayForEach(o, overrides) {
        cJSON_DeleteItemFromObjectCaseSensitive(in, o->string);
        cJSON_AddItemToObject(in, o->string, cJSON_Duplicate(o, 1));
    }
    cJSON_Delete(overrides);
    tags = cJSON_GetObjectItemCaseSensitive(in, "tags");
    if (tags == NULL || cJSON_IsNull(tags)) {
        cJSON_DeleteItemFromObjectCaseSensitive(in, "tags");
        tags = cJSON_AddObjectToObject(in, "tags");
    }
    if (cJSON_IsObject(tags)) {
        cJSON_DeleteItemFromObjectCaseSensitive(tags, RUN_TAG_RERUN_OF);
        cJSON_AddStringToObject(tags, RUN_TAG_RERUN_OF, id);
    }
    submit(ctx, req, resp, in);
}

void api_runs_list(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    struct store_run_filter f;
    const char *tag = req->query(req->conn, "tag");
    char tag_key[128];
    cJSON *list;
    int rc;

    memset(&f, 0, sizeof(f));
    if (!parse_paging(req, resp, &f.limit, &f.before_seq))
        return;
    f.experiment = req->query(req->conn, "experiment");
    if (f.experiment && !valid_name(f.experiment, 128)) {
        api_error(resp, ERR_INVALID, "experiment",
                  "experiment must be 1 to 128 of "
                  "[A-Za-z0-9._-]");
        return;
    }
    f.owner = req->query(req->conn, "owner");
    if (f.owner && !valid_name(f.owner, 128)) {
        api_error(resp, ERR_INVALID, "owner",
                  "owner must be a token name: 1 to 128 of "
                  "[A-Za-z0-9._-]");
        return;
    }
    f.sweep = req->query(req->conn, "sweep");
    if (f.sweep && !valid_name(f.sweep, 31)) {
        api_error(resp, ERR_INVALID, "sweep", "sweep must be a sweep id such as swp-0123456789ab");
        return;
    }
    f.status = req->query(req->conn, "status");
    if (f.status) {
        if (run_status_parse(f.status) < 0) {
            api_error(resp, ERR_INVALID, "status",
                      "status must be one of queued, starting, running, completed, failed, "
                      "canceled");
            return;
        }
    }
    if (tag) {
        const char *colon = strchr(tag, ':');

        if (colon == NULL || colon == tag || (size_t)(colon - tag) >= sizeof(tag_key)) {
            api_error(resp, ERR_INVALID, "tag", "tag must be 'key:value'");
            return;
        }
        memcpy(tag_key, tag, (size_t)(colon - tag));
        tag_key[colon - tag] = '\0';
        f.tag_key = tag_key;
        f.tag_value = colon + 1;
    }
    rc = store_run_list(ctx->store, &f, &list);
    if (rc < 0) {
        api_error(resp, rc, NULL, "cannot list runs");
        return;
    }
    reply_json(resp, 200, list);
}

void api_runs_get(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    /* The generation is read first: the body below is at least as new. */
    uint64_t gen = store_generation(ctx->store);
    cJSON *run;
    int rc;

    buf_reset(&resp->body);
    if (api_cache_get(req->params[0], gen, &resp->body)) {
        resp->status = 200;
        resp->content_type = "application/json";
        return;
    }
    rc = store_run_get(ctx->store, req->params[0], &run);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    reply_json(resp, 200, run);
    api_cache_put(req->params[0], gen, resp->body.data, resp->body.len);
}

void api_runs_cancel(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    /* A user cancels its own runs, an admin anyone's. */
    const char *owner = req->principal.role == API_ROLE_ADMIN ? NULL : req->principal.name;
    cJSON *run;
    int rc = store_run_cancel(ctx->store, req->params[0], owner, time_now_ms(), &run);

    if (rc == ERR_PERMISSION) {
        api_error(resp, rc, NULL,
                  "run '%s' belongs to another owner; a 'user' token may cancel only the "
                  "runs submitted under its name (an admin may cancel any)",
                  req->params[0]);
        return;
    }
    if (rc == ERR_CONFLICT) {
        api_error(resp, rc, NULL, "run '%s' has already ended", req->params[0]);
        return;
    }
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    scheduler_kick(ctx->sched);
    reply_json(resp, 200, run);
}

void api_experiments_list(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *list;
    int rc;

    struct store_page page;

    if (!parse_page(req, resp, &page))
        return;
    rc = store_experiment_list(ctx->store, &page, &list);
    if (rc < 0) {
        api_error(resp, rc, NULL, "cannot list experiments");
        return;
    }
    reply_json(resp, 200, list);
}
