/* service.c - /healthz, /metrics (Prometheus text), the scheduler's state
 * and the OpenAPI document. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/json.h"
#include "common/metrics.h"
#include "common/timeutil.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "common/banned.h"

/* api/openapi.json, embedded by the build (see Makefile: embed.S). */
extern const char embed_openapi_json[];
extern const char embed_openapi_json_end[];

void api_healthz(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *out = cJSON_CreateObject();

    (void)req;
    cJSON_AddStringToObject(out, "status", "ok");
    cJSON_AddStringToObject(out, "version", ctx->version);
    cJSON_AddNumberToObject(out, "schema_version", store_schema_version(ctx->store));
    reply_json(resp, 200, out);
}

static void write_gauges(struct buf *out, const char *name, const char *help, const char *label,
                         const cJSON *counts)
{
    const cJSON *c;

    buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    cJSON_ArrayForEach(c, counts) {
        buf_printf(out, "%s{%s=\"%s\"} %.0f\n", name, label, c->string, c->valuedouble);
    }
}

void api_prometheus(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *runs;
    cJSON *nodes;
    int rc;

    (void)req;
    rc = store_run_counts(ctx->store, &runs);
    if (rc < 0) {
        api_error(resp, rc, NULL, "cannot count runs");
        return;
    }
    rc = store_node_counts(ctx->store, time_now_ms(), ctx->node_timeout_ms, &nodes);
    if (rc < 0) {
        cJSON_Delete(runs);
        api_error(resp, rc, NULL, "cannot count nodes");
        return;
    }
    buf_reset(&resp->body);
    metrics_write(&resp->body);
    write_gauges(&resp->body, "trainyard_runs", "Runs by status.", "status", runs);
    write_gauges(&resp->body, "trainyard_nodes", "Nodes by state.", "state", nodes);
    cJSON_Delete(runs);
    cJSON_Delete(nodes);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

void api_scheduler_get(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *check = req->query(req->conn, "check");
    struct scheduler_view v;
    cJSON *out;
    cJSON *list;
    int rc;

    if (check && strcmp(check, "true") != 0 && strcmp(check, "false") != 0) {
        api_error(resp, ERR_INVALID, "check", "check must be true or false");
        return;
    }
    rc = scheduler_view(ctx->sched, check && strcmp(check, "true") == 0, &v);
    if (rc < 0) {
        api_error(resp, rc, NULL, "the scheduler did not answer; try again");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "nodes", (double)v.nodes);
    cJSON_AddNumberToObject(out, "runs", (double)v.runs);
    cJSON_AddNumberToObject(out, "queued", (double)v.queued);
    cJSON_AddNumberToObject(out, "tasks", (double)v.tasks);
    cJSON_AddNumberToObject(out, "held", (double)v.held);
    cJSON_AddNumberToObject(out, "outbox", (double)v.outbox);
    cJSON_AddNumberToObject(out, "stops", (double)v.stops);
    cJSON_AddBoolToObject(out, "checked", v.checked);
    list = cJSON_AddArrayToObject(out, "differences");
    if (v.differences) {
        char *line = v.differences;
        char *end;

        while ((end = strchr(line, '\n')) != NULL) {
            *end = '\0';
            cJSON_AddItemToArray(list, cJSON_CreateString(line));
            line = end + 1;
        }
    }
    cJSON_AddNumberToObject(out, "n_differences", v.n_differences);
    scheduler_view_release(&v);
    reply_json(resp, 200, out);
}

void api_openapi(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    (void)ctx;
    (void)req;
    buf_reset(&resp->body);
    buf_add(&resp->body, embed_openapi_json, (size_t)(embed_openapi_json_end - embed_openapi_json));
    resp->status = 200;
    resp->content_type = "application/json";
}
