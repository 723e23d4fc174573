/*
 * client.c - the agent as the server's client: requests with the agent
 * token, node discovery (GPUs, features), registration and heartbeats.
 * Loop thread.
 */
#include "agent/internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* ---- talking to the server ---- */

int agent_server_request(struct agent *a, const char *method, const char *path,
                         const char *content_type, const void *body, size_t len,
                         const char *body_file, const char *download_file, uvcurl_cb cb, void *arg)
{
    struct uvcurl_request req;
    char *url;
    int rc;

    if (a->http == NULL)
        return ERR_UNAVAILABLE;
    url = xasprintf("%s%s", a->server, path);
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.bearer = a->token;
    req.content_type = content_type;
    req.body = body;
    req.body_len = len;
    req.body_file = body_file;
    req.download_file = download_file;
    req.timeout_ms = download_file || body_file ? 600000 : 15000;
    rc = uvcurl_start(a->http, &req, cb, arg);
    free(url);
    return rc;
}

static void on_register_retry(uv_timer_t *t)
{
    client_register(t->data);
}

static void on_heartbeat(void *arg, const struct uvcurl_response *resp)
{
    struct agent *a = arg;
    const cJSON *id;
    cJSON *body;

    a->heartbeat_in_flight = false;
    if (resp->status == UVCURL_CANCELED)
        return;
    if (resp->status == 404) {
        /* The server forgot this node (a new database): join again. */
        log_warn("agent: the server does not know this node; registering again");
        a->registered = false;
        uv_timer_stop(&a->heartbeat);
        client_register(a);
        return;
    }
    if (resp->status != 200) {
        log_warn("agent: heartbeat failed: %s",
                 resp->status ? "the server refused it" : resp->error);
        return;
    }
    body = json_parse(resp->body->data, resp->body->len);
    cJSON_ArrayForEach(id, json_get(body, "stop")) {
        if (cJSON_IsString(id))
            task_stop(a, id->valuestring, "the server does not want it");
    }
    cJSON_Delete(body);
}

static void send_heartbeat(uv_timer_t *t)
{
    struct agent *a = t->data;
    cJSON *body;
    char *text;
    char path[512];

    if (a->heartbeat_in_flight || a->stopping)
        return;
    body = cJSON_CreateObject();
    /* Every task still held, finished ones too: the server must not take
     * a task that is still delivering its outputs for lost. */
    cJSON_AddItemToObject(body, "tasks", task_list(a, true));
    text = json_print(body);
    cJSON_Delete(body);
    snprintf(path, sizeof(path), "/api/v1/nodes/%s/heartbeat", a->name);
    if (agent_server_request(a, "POST", path, "application/json", text, strlen(text), NULL, NULL,
                             on_heartbeat, a) == 0)
        a->heartbeat_in_flight = true;
    free(text);
}

static void on_registered(void *arg, const struct uvcurl_response *resp)
{
    struct agent *a = arg;
    cJSON *body;
    const char *secret;
    const cJSON *interval;

    if (resp->status == UVCURL_CANCELED)
        return;
    body = json_parse(resp->body->data, resp->body->len);
    secret = json_get_string(body, "node_secret");
    if ((resp->status != 200 && resp->status != 201) || secret == NULL) {
        if (resp->status >= 400 && resp->status < 500)
            log_error("agent: the server refused registration (HTTP %ld): %.300s", resp->status,
                      resp->body->data);
        else
            log_warn("agent: cannot register yet: %s; retrying",
                     resp->status ? "server error" : resp->error);
        cJSON_Delete(body);
        uv_timer_start(&a->register_retry, on_register_retry, 1000, 0);
        return;
    }
    uv_mutex_lock(&a->secret_mu);
    free(a->node_secret);
    a->node_secret = xstrdup(secret);
    uv_mutex_unlock(&a->secret_mu);
    interval = json_get(body, "heartbeat_interval_ms");
    a->heartbeat_ms = cJSON_IsNumber(interval) && interval->valuedouble >= 100
                          ? (int64_t)interval->valuedouble
                          : 5000;
    cJSON_Delete(body);
    a->registered = true;
    log_info("agent: registered node '%s' at %s (heartbeat every %lld ms)", a->name, a->server,
             (long long)a->heartbeat_ms);
    uv_timer_start(&a->heartbeat, send_heartbeat, (uint64_t)a->heartbeat_ms,
                   (uint64_t)a->heartbeat_ms);
}

/* ---- discovery ---- */

static bool command_works(const char *cmd)
{
    char full[PATH_MAX + 128];

    snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
    return system(full) == 0;
}

static cJSON *detect_gpus(struct agent *a)
{
    cJSON *gpus = cJSON_CreateArray();
    char line[512];
    FILE *p;
    int i;

    if (a->gpus_declared >= 0) {
        for (i = 0; i < a->gpus_declared; i++) {
            cJSON *g = cJSON_CreateObject();
            char uuid[64];

            snprintf(uuid, sizeof(uuid), "declared-%s-%d", a->name, i);
            cJSON_AddNumberToObject(g, "index", i);
            cJSON_AddStringToObject(g, "name", "declared");
            cJSON_AddNumberToObject(g, "memory_mb", 0);
            cJSON_AddStringToObject(g, "uuid", uuid);
            cJSON_AddItemToArray(gpus, g);
        }
        return gpus;
    }
    p = popen("nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits "
              "2>/dev/null",
              "r");
    if (p == NULL)
        return gpus;
    while (fgets(line, sizeof(line), p)) {
        char name[256];
        char uuid[128];
        int index;
        long mem;

        if (sscanf(line, "%d, %255[^,], %ld, %127s", &index, name, &mem, uuid) == 4 && index >= 0 &&
            index < 64) {
            cJSON *g = cJSON_CreateObject();

            cJSON_AddNumberToObject(g, "index", index);
            cJSON_AddStringToObject(g, "name", name);
            cJSON_AddNumberToObject(g, "memory_mb", (double)mem);
            cJSON_AddStringToObject(g, "uuid", uuid);
            cJSON_AddItemToArray(gpus, g);
        }
    }
    pclose(p);
    return gpus;
}

static cJSON *detect_features(struct agent *a)
{
    cJSON *f = cJSON_CreateArray();
    char cmd[PATH_MAX + 64];
    char line[256];
    FILE *p;

    snprintf(cmd, sizeof(cmd), "'%s' -c 'import sys; print(sys.version.split()[0])' 2>/dev/null",
             a->python);
    p = popen(cmd, "r");
    if (p && fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        a->python_version = xasprintf("%s %s", a->python, line);
        cJSON_AddItemToArray(f, cJSON_CreateString("python3"));
    }
    if (p)
        pclose(p);
    snprintf(cmd, sizeof(cmd), "'%s' -c 'import torch'", a->python);
    if (a->python_version && command_works(cmd))
        cJSON_AddItemToArray(f, cJSON_CreateString("torch"));
    if (command_works("command -v mpirun"))
        cJSON_AddItemToArray(f, cJSON_CreateString("mpi"));
    if (command_works("command -v conda"))
        cJSON_AddItemToArray(f, cJSON_CreateString("conda"));
    /* Answered its ping at start-up (agent.c). */
    if (a->docker)
        cJSON_AddItemToArray(f, cJSON_CreateString("docker"));
    return f;
}

static cJSON *registration(struct agent *a)
{
    cJSON *body = cJSON_CreateObject();

    cJSON_AddStringToObject(body, "name", a->name);
    cJSON_AddStringToObject(body, "pool", a->pool);
    cJSON_AddStringToObject(body, "agent_url", a->agent_url);
    cJSON_AddNumberToObject(body, "cpus", a->cpus);
    cJSON_AddNumberToObject(body, "memory_mb", (double)a->memory_mb);
    cJSON_AddItemToObject(body, "gpus", detect_gpus(a));
    cJSON_AddItemToObject(body, "labels", cJSON_Duplicate(a->labels, 1));
    cJSON_AddItemToObject(body, "features", detect_features(a));
    {
        cJSON *ports = cJSON_AddObjectToObject(body, "ports");

        cJSON_AddNumberToObject(ports, "min", a->port_min);
        cJSON_AddNumberToObject(ports, "max", a->port_max);
    }
    return body;
}

void client_register(struct agent *a)
{
    cJSON *body = registration(a);
    char *text = json_print(body);

    cJSON_Delete(body);
    if (agent_server_request(a, "POST", "/api/v1/nodes", "application/json", text, strlen(text),
                             NULL, NULL, on_registered, a) < 0)
        uv_timer_start(&a->register_retry, on_register_retry, 1000, 0);
    free(text);
}
