/* nodes.c - node registration, heartbeats, drain, delete and pools. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/timeutil.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "common/banned.h"

static const char *const register_fields[] = { "ports",     "name", "pool",   "agent_url", "cpus",
                                               "memory_mb", "gpus", "labels", "features",  NULL };

static bool url_ok(const char *s)
{
    size_t n = strlen(s);
    const char *host;

    if (strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else
        return false;
    if (n > 2048 || *host == '\0' || *host == '/' || strpbrk(s, " \t\r\n\"<>\\^`{|}"))
        return false;
    return true;
}

/* Validates gpus into a normalised array in *ret; false with a 400 set. */
static bool check_gpus(const cJSON *gpus, struct api_response *resp, cJSON **ret)
{
    const cJSON *g;
    cJSON *out;
    bool seen[64] = { false };

    if (gpus == NULL || cJSON_IsNull(gpus)) {
        *ret = cJSON_CreateArray();
        return true;
    }
    if (!cJSON_IsArray(gpus) || cJSON_GetArraySize(gpus) > 64) {
        api_error(resp, ERR_INVALID, "gpus", "gpus must be an array of at most 64 GPUs");
        return false;
    }
    out = cJSON_CreateArray();
    cJSON_ArrayForEach(g, gpus) {
        const char *name = json_get_string(g, "name");
        const char *uuid = json_get_string(g, "uuid");
        const cJSON *mem = json_get(g, "memory_mb");
        int64_t index;
        int64_t memory_mb = 0;
        cJSON *n;

        if (!cJSON_IsObject(g) || !json_int(json_get(g, "index"), 0, 63, &index) || seen[index] ||
            (json_get(g, "name") && (name == NULL || strlen(name) > 128)) ||
            (json_get(g, "uuid") && (uuid == NULL || strlen(uuid) > 128)) ||
            (mem && !json_int(mem, 0, INT64_C(1) << 40, &memory_mb))) {
            cJSON_Delete(out);
            api_error(resp, ERR_INVALID, "gpus",
                      "each GPU needs a unique integer index 0..63, and optionally a name, "
                      "memory_mb and uuid");
            return false;
        }
        seen[index] = true;
        n = cJSON_CreateObject();
        cJSON_AddNumberToObject(n, "index", (double)index);
        cJSON_AddStringToObject(n, "name", name ? name : "");
        cJSON_AddNumberToObject(n, "memory_mb", (double)memory_mb);
        cJSON_AddStringToObject(n, "uuid", uuid ? uuid : "");
        cJSON_AddItemToArray(out, n);
    }
    *ret = out;
    return true;
}

static bool check_labels(const cJSON *labels, struct api_response *resp)
{
    const cJSON *l;

    if (labels == NULL || cJSON_IsNull(labels))
        return true;
    if (!cJSON_IsObject(labels) || cJSON_GetArraySize(labels) > 64 || json_duplicate_key(labels)) {
        api_error(resp, ERR_INVALID, "labels", "labels must be an object of at most 64 strings");
        return false;
    }
    cJSON_ArrayForEach(l, labels) {
        if (!valid_name(l->string, 63) || !cJSON_IsString(l) || strlen(l->valuestring) > 256) {
            api_error(resp, ERR_INVALID, "labels",
                      "label '%s' needs a key of 1 to 63 of [A-Za-z0-9._-] and a string value "
                      "of at most 256 characters",
                      l->string);
            return false;
        }
    }
    return true;
}

static bool check_features(const cJSON *features, struct api_response *resp)
{
    const cJSON *f;

    if (features == NULL || cJSON_IsNull(features))
        return true;
    if (!cJSON_IsArray(features) || cJSON_GetArraySize(features) > 64) {
        api_error(resp, ERR_INVALID, "features", "features must be an array of at most 64 names");
        return false;
    }
    cJSON_ArrayForEach(f, features) {
        if (!cJSON_IsString(f) || !valid_name(f->valuestring, 64)) {
            api_error(resp, ERR_INVALID, "features",
                      "each feature must be 1 to 64 of [A-Za-z0-9._-]");
            return false;
        }
    }
    return true;
}

/* An agent token may act only for the node it is bound to. */
static bool agent_may_act(struct api_request *req, const char *node, struct api_response *resp)
{
    if (req->principal.role != API_ROLE_AGENT)
        return true;
    if (strcmp(req->principal.node, node) != 0) {
        api_error(resp, ERR_PERMISSION, NULL, "this agent token belongs to node '%s', not '%s'",
                  req->principal.node[0] ? req->principal.node : "(none)", node);
        return false;
    }
    return true;
}

void api_nodes_register(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    struct store_node_reg reg;
    cJSON *in = NULL;
    cJSON *gpus = NULL;
    cJSON *labels = NULL;
    cJSON *features = NULL;
    cJSON *node;
    const cJSON *item;
    char secret[65];
    bool existed;
    int rc;

    if (!parse_object(req, resp, &in))
        return;
    if (!only_known_fields(in, register_fields, resp))
        goto out;
    memset(&reg, 0, sizeof(reg));
    reg.name = json_get_string(in, "name");
    if (!valid_name(reg.name, 128)) {
        api_error(resp, ERR_INVALID, "name", "name is required: 1 to 128 of [A-Za-z0-9._-]");
        goto out;
    }
    item = json_get(in, "pool");
    reg.pool = "default";
    if (item && !cJSON_IsNull(item)) {
        if (!cJSON_IsString(item) || !valid_name(item->valuestring, 64)) {
            api_error(resp, ERR_INVALID, "pool", "pool must be 1 to 64 of [A-Za-z0-9._-]");
            goto out;
        }
        reg.pool = item->valuestring;
    }
    reg.agent_url = json_get_string(in, "agent_url");
    if (reg.agent_url == NULL || !url_ok(reg.agent_url)) {
        api_error(resp, ERR_INVALID, "agent_url",
                  "agent_url is required: an http:// or https:// URL of the agent");
        goto out;
    }
    item = json_get(in, "cpus");
    if (!cJSON_IsNumber(item) || !(item->valuedouble > 0) || item->valuedouble > 100000) {
        api_error(resp, ERR_INVALID, "cpus", "cpus is required: a number above 0");
        goto out;
    }
    reg.cpus = item->valuedouble;
    item = json_get(in, "memory_mb");
    if (item && !cJSON_IsNull(item) && !json_int(item, 0, INT64_C(1) << 40, &reg.memory_mb)) {
        api_error(resp, ERR_INVALID, "memory_mb", "memory_mb must be a non-negative integer");
        goto out;
    }
    reg.port_min = 20000;
    reg.port_max = 29999;
    item = json_get(in, "ports");
    if (item && !cJSON_IsNull(item)) {
        int64_t lo;
        int64_t hi;

        if (!cJSON_IsObject(item) || !json_int(json_get(item, "min"), 1, 65535, &lo) ||
            !json_int(json_get(item, "max"), 1, 65535, &hi) || lo > hi) {
            api_error(resp, ERR_INVALID, "ports",
                      "ports must be {\"min\": N, \"max\": M} with 1 <= N <= M <= 65535");
            goto out;
        }
        reg.port_min = (int)lo;
        reg.port_max = (int)hi;
    }
    if (!check_gpus(json_get(in, "gpus"), resp, &gpus) ||
        !check_labels(json_get(in, "labels"), resp) ||
        !check_features(json_get(in, "features"), resp))
        goto out;
    item = json_get(in, "labels");
    labels = item && !cJSON_IsNull(item) ? cJSON_Duplicate(item, 1) : cJSON_CreateObject();
    item = json_get(in, "features");
    features = item && !cJSON_IsNull(item) ? cJSON_Duplicate(item, 1) : cJSON_CreateArray();

    if (req->principal.role == API_ROLE_AGENT) {
        rc = store_token_bind(ctx->store, req->principal.token_id, reg.name);
        api_tokens_changed();
        if (rc == ERR_CONFLICT) {
            api_error(resp, ERR_PERMISSION, "name",
                      "this agent token belongs to node '%s', not '%s'", req->principal.node,
                      reg.name);
            goto out;
        }
        if (rc == ERR_PERMISSION) {
            api_error(resp, ERR_PERMISSION, "name",
                      "node '%s' belongs to another token; only its own agent token or an "
                      "admin may register it (an admin can create a token bound to it)",
                      reg.name);
            goto out;
        }
        if (rc < 0) {
            reply_store_error(ctx, resp, rc, "token", req->principal.token_id);
            goto out;
        }
    }

    existed = store_node_get(ctx->store, reg.name, time_now_ms(), ctx->node_timeout_ms, &node) == 0;
    if (existed)
        cJSON_Delete(node);
    crypto_random_hex(32, secret);
    reg.gpus = gpus;
    reg.labels = labels;
    reg.features = features;
    reg.secret = secret;
    reg.now_ms = time_now_ms();
    rc = store_node_register(ctx->store, &reg);
    /* A node registers when its agent starts: the tasks an earlier agent
     * had there are gone with it. */
    if (rc == 0 && existed)
        rc = store_node_restarted(ctx->store, reg.name, reg.now_ms);
    if (rc == 0)
        rc = store_node_get(ctx->store, reg.name, reg.now_ms, ctx->node_timeout_ms, &node);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "node", reg.name);
        goto out;
    }
    cJSON_AddStringToObject(node, "node_secret", secret);
    cJSON_AddNumberToObject(node, "heartbeat_interval_ms",
                            (double)(ctx->node_timeout_ms / 3 > 0 ? ctx->node_timeout_ms / 3 : 1));
    scheduler_kick(ctx->sched);
    reply_json(resp, existed ? 200 : 201, node);
out:
    cJSON_Delete(gpus);
    cJSON_Delete(labels);
    cJSON_Delete(features);
    cJSON_Delete(in);
}

void api_nodes_heartbeat(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    static const char *const fields[] = { "tasks", NULL };
    const char *name = req->params[0];
    cJSON *in = NULL;
    cJSON *stop;
    cJSON *node;
    cJSON *out;
    const cJSON *tasks;
    const cJSON *t;
    bool changed;
    const char *state;
    int rc;

    if (!agent_may_act(req, name, resp))
        return;
    if (req->body_len == 0)
        in = cJSON_CreateObject();
    else if (!parse_object(req, resp, &in))
        return;
    if (!only_known_fields(in, fields, resp))
        goto out;
    tasks = json_get(in, "tasks");
    if (tasks && !cJSON_IsNull(tasks)) {
        if (!cJSON_IsArray(tasks) || cJSON_GetArraySize(tasks) > 100000) {
            api_error(resp, ERR_INVALID, "tasks", "tasks must be an array of {\"id\", \"status\"}");
            goto out;
        }
        cJSON_ArrayForEach(t, tasks) {
            const char *id = json_get_string(t, "id");

            if (id == NULL || strlen(id) > 256 || !cJSON_IsString(json_get(t, "status"))) {
                api_error(resp, ERR_INVALID, "tasks",
                          "each task must be {\"id\": string, \"status\": string}");
                goto out;
            }
        }
    }
    /* Each reported task is a read: a long list is checked on a worker. */
    if (!req->may_block && cJSON_GetArraySize(tasks) > 64 && req->offload(req))
        goto out;
    /* The node came back, or tasks are lost or let go: that is a write,
     * waited for on a worker thread. */
    rc = store_node_heartbeat(ctx->store, name, tasks, time_now_ms(), ctx->node_timeout_ms,
                              req->may_block, &stop, &changed, &state);
    if (rc == STORE_WOULD_WAIT && req->offload(req))
        goto out;
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "node", name);
        goto out;
    }
    if (changed)
        scheduler_kick(ctx->sched);
    /* The node as the agent needs it; GET /api/v1/nodes/{name} has the
     * rest (a heartbeat is the hottest request a cluster makes). */
    out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "stop", stop);
    node = cJSON_AddObjectToObject(out, "node");
    cJSON_AddStringToObject(node, "name", name);
    cJSON_AddStringToObject(node, "state", state);
    reply_json(resp, 200, out);
out:
    cJSON_Delete(in);
}

void api_nodes_list(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *list;
    int rc;

    struct store_page page;

    if (!parse_page(req, resp, &page))
        return;
    rc = store_node_list(ctx->store, time_now_ms(), ctx->node_timeout_ms, &page, &list);
    if (rc < 0) {
        api_error(resp, rc, NULL, "cannot list nodes");
        return;
    }
    reply_json(resp, 200, list);
}

void api_nodes_get(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *node;
    int rc = store_node_get(ctx->store, req->params[0], time_now_ms(), ctx->node_timeout_ms, &node);

    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "node", req->params[0]);
        return;
    }
    reply_json(resp, 200, node);
}

void api_nodes_drain(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    static const char *const fields[] = { "drain", NULL };
    const char *name = req->params[0];
    cJSON *in;
    cJSON *node;
    const cJSON *drain;
    int rc;

    if (!parse_object(req, resp, &in))
        return;
    if (!only_known_fields(in, fields, resp))
        goto out;
    drain = json_get(in, "drain");
    if (!cJSON_IsBool(drain)) {
        api_error(resp, ERR_INVALID, "drain", "drain is required: true or false");
        goto out;
    }
    rc = store_node_drain(ctx->store, name, cJSON_IsTrue(drain));
    scheduler_kick(ctx->sched);
    if (rc == 0)
        rc = store_node_get(ctx->store, name, time_now_ms(), ctx->node_timeout_ms, &node);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "node", name);
        goto out;
    }
    reply_json(resp, 200, node);
out:
    cJSON_Delete(in);
}

void api_nodes_delete(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    int rc = store_node_delete(ctx->store, req->params[0]);

    if (rc == ERR_CONFLICT) {
        api_error(resp, rc, NULL, "node '%s' still runs tasks; drain it first", req->params[0]);
        return;
    }
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "node", req->params[0]);
        return;
    }
    resp->status = 204;
    resp->content_type = NULL;
}

void api_compute_list(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *list;
    int rc;

    (void)req;
    rc = store_compute(ctx->store, time_now_ms(), ctx->node_timeout_ms, &list);
    if (rc < 0) {
        api_error(resp, rc, NULL, "cannot list compute targets");
        return;
    }
    reply_json(resp, 200, list);
}
