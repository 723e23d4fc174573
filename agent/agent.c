/*
 * agent.c - `trainyard agent`: options, node discovery (CPUs, memory,
 * GPUs, features), registration and heartbeats, and the agent API.
 *
 * The API runs on libmicrohttpd's own thread. Each request that needs
 * task state is handed to the loop thread as a struct call through a
 * locked queue and uv_async_send(); the HTTP thread waits for the answer.
 */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/exec.h"
#include "agent/hollow.h"
#include "agent/internal.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/file.h"
#include "common/json.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/timeutil.h"
#include "common/version.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* agent/python/trainyard/__init__.py, embedded by the build. */
extern const char embed_python_helper[];
extern const char embed_python_helper_end[];

static const char usage[] =
    "usage: trainyard agent --server URL --token-file FILE [options]\n"
    "\n"
    "Runs the node agent: registers this machine with the server and runs its tasks.\n"
    "\n"
    "  --server URL        the server's base URL (or TRAINYARD_SERVER)\n"
    "  --token-file FILE   read the agent (or admin) token from FILE (or TRAINYARD_TOKEN_FILE)\n"
    "  --token T           the token itself (or TRAINYARD_TOKEN); the agent hides it from\n"
    "                      /proc/PID/cmdline and environ at start, but prefer --token-file\n"
    "  --name N            node name (default: the hostname)\n"
    "  --listen HOST:PORT  where the agent API listens (default 0.0.0.0:7070; port 0 picks one)\n"
    "  --advertise HOST    the host others reach this node and its tasks at (default: the\n"
    "                      --listen host, or the hostname when that is a wildcard)\n"
    "  --pool P            node pool, the runs' compute_target (default 'default')\n"
    "  --cpus N            CPUs to offer (default: all online CPUs)\n"
    "  --memory-mb N       memory to offer in MiB (default: physical memory)\n"
    "  --gpus N            declare N GPUs instead of asking nvidia-smi\n"
    "  --work DIR          working directory for snapshots, tasks and venvs\n"
    "                      (default ./var/agent-NAME)\n"
    "  --python PATH       Python for entry scripts (default /usr/bin/python3)\n"
    "  --label K=V         a node label (repeatable)\n"
    "  --ports MIN-MAX     ports for tasks that need one (default 20000-29999)\n"
    "  --grace S           seconds between SIGTERM and SIGKILL when stopping (default 3)\n"
    "  --task-uids A-B     uids (and gids) for tasks when run as root (default\n"
    "                      2000000000-2000065535); each run gets one of its own on this node\n"
    "  --task-user NAME    run every task as this one user instead (weaker: runs can reach\n"
    "                      each other's processes and files)\n"
    "  --log-level LEVEL   debug, info, warn or error (default info)\n"
    "  --tls-cert FILE     serve the agent API over HTTPS with this certificate (PEM)\n"
    "  --tls-key FILE      its private key (PEM)\n"
    "  --ca FILE           CA certificates to verify the server (and other agents) with\n"
    "  --hollow N          simulate N nodes in this process (for tests and benchmarks): they\n"
    "                      register as NAME-00000.., accept tasks and \"run\" them without\n"
    "                      spawning anything\n"
    "  --task-seconds S    with --hollow: mean task duration (default 1)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Isolation: run as root, the agent starts each run's tasks on this node under a uid and\n"
    "gid of that run's own from --task-uids (no /etc/passwd entry is needed; USER and LOGNAME\n"
    "are ty-UID, HOME the task's directory); tasks of one run on a node (an mpi launcher, its\n"
    "ranks and orted) share it, two runs never do. The work directory is root's (0711), each\n"
    "task directory belongs to its run's uid (0700), the snapshot cache is root's only, the\n"
    "Python helper and shared venvs are root's and read-only to tasks (pip runs under a uid of\n"
    "its own, then the venv is sealed). Every directory above --work must be traversable by\n"
    "others (o+x), and --python must be executable by them. The agent is not dumpable and\n"
    "hides its token, so tasks cannot read it from /proc. Not run as root, the agent cannot\n"
    "switch users: tasks run as the agent's user (a warning says so).\n";

/* ---- calls from the API thread to the loop ---- */

enum call_kind { CALL_ASSIGN, CALL_STOP, CALL_LIST, CALL_EXEC };

struct call {
    enum call_kind kind;
    cJSON *body;
    char id[256];
    /* answer */
    int status;
    char *reply;
    struct exec_stream *stream; /* CALL_EXEC */
    bool done;
    struct call *next;
};

static struct agent agent;
static uv_async_t call_async;
static uv_signal_t sigint_handle;
static uv_signal_t sigterm_handle;
static uv_mutex_t call_mu;
static uv_cond_t call_cv;
static struct call *calls;
static bool loop_gone;

/* The SPEC §3 error body, {"error": {"code", "message"}}, with the code
 * that goes with the HTTP status. */
static char *error_body(int status, const char *message)
{
    const char *code = status == 400   ? "invalid_argument"
                       : status == 401 ? "unauthenticated"
                       : status == 403 ? "permission_denied"
                       : status == 404 ? "not_found"
                       : status == 409 ? "conflict"
                       : status == 413 ? "payload_too_large"
                       : status == 503 ? "unavailable"
                                       : "internal";
    cJSON *body = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(body, "error");
    char *text;

    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    text = json_print(body);
    cJSON_Delete(body);
    return text;
}

static void on_calls(uv_async_t *h)
{
    struct call *list;
    struct call *c;
    struct call *next;

    (void)h;
    uv_mutex_lock(&call_mu);
    list = calls;
    calls = NULL;
    uv_mutex_unlock(&call_mu);
    for (c = list; c; c = next) {
        const char *error = NULL;
        cJSON *out = cJSON_CreateObject();

        next = c->next;
        switch (c->kind) {
        case CALL_ASSIGN:
            c->status = agent.stopping ? 503 : task_assign(&agent, c->body, &error);
            if (c->status == 503)
                error = "the agent is stopping";
            if (error == NULL)
                cJSON_AddStringToObject(out, "id", json_get_string(c->body, "id"));
            break;
        case CALL_STOP:
            c->status = task_stop(&agent, c->id, "stopped by the server") ? 200 : 404;
            if (c->status == 404)
                error = "no such task on this agent";
            cJSON_AddStringToObject(out, "id", c->id);
            break;
        case CALL_LIST:
            c->status = 200;
            cJSON_AddItemToObject(out, "items", task_list(&agent, true));
            break;
        case CALL_EXEC:
            c->status = agent.stopping ? 503
                                       : exec_start(&agent, c->id, json_get(c->body, "argv"),
                                                    &c->stream, &error);
            if (c->status == 503)
                error = "the agent is stopping";
            break;
        }
        c->reply = error ? error_body(c->status, error) : json_print(out);
        cJSON_Delete(out);
        uv_mutex_lock(&call_mu);
        c->done = true;
        uv_cond_broadcast(&call_cv);
        uv_mutex_unlock(&call_mu);
    }
}

/* Runs c on the loop and waits for its answer. */
static void call_loop(struct call *c)
{
    uv_mutex_lock(&call_mu);
    if (loop_gone) {
        c->status = 503;
        c->reply = error_body(503, "the agent is stopping");
        uv_mutex_unlock(&call_mu);
        return;
    }
    c->next = calls;
    calls = c;
    uv_async_send(&call_async);
    while (!c->done)
        uv_cond_wait(&call_cv, &call_mu);
    uv_mutex_unlock(&call_mu);
}

/* ---- the agent API (MHD thread) ---- */

struct req_state {
    struct buf body;
    bool too_large;
};

static enum MHD_Result reply(struct MHD_Connection *conn, int status, char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
    enum MHD_Result ret;

    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ret = MHD_queue_response(conn, (unsigned int)status, r);
    MHD_destroy_response(r);
    return ret;
}

static bool authorized(struct MHD_Connection *conn)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    bool ok = false;

    uv_mutex_lock(&agent.secret_mu);
    if (agent.node_secret && auth && strncmp(auth, "Bearer ", 7) == 0)
        ok = crypto_equal(auth + 7, agent.node_secret);
    uv_mutex_unlock(&agent.secret_mu);
    return ok;
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                          enum MHD_RequestTerminationCode toe)
{
    struct req_state *st = *req_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (st) {
        buf_release(&st->body);
        free(st);
    }
    *req_cls = NULL;
}

static enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct req_state *st = *req_cls;
    struct call c;

    (void)cls;
    (void)version;
    if (st == NULL) {
        st = xcalloc(1, sizeof(*st));
        buf_init(&st->body);
        *req_cls = st;
        /* /v1/exec is authorised by a run's exec secret, on the loop. */
        if (strcmp(url, "/healthz") == 0 || strcmp(url, "/v1/exec") == 0)
            return MHD_YES;
        if (!authorized(conn))
            return reply(conn, 401, error_body(401, "only the server may call this agent"));
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (st->body.len + *upload_data_size > (1u << 20))
            st->too_large = true;
        else
            buf_add(&st->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->too_large)
        return reply(conn, 413, error_body(413, "the body is larger than 1 MiB"));
    memset(&c, 0, sizeof(c));
    if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0)
        return reply(conn, 200, xstrdup("{\"status\": \"ok\"}"));
    if (strcmp(url, "/v1/tasks") == 0 && strcmp(method, "POST") == 0) {
        c.kind = CALL_ASSIGN;
        c.body = json_parse(st->body.data, st->body.len);
        if (c.body == NULL || !cJSON_IsObject(c.body)) {
            cJSON_Delete(c.body);
            return reply(conn, 400, error_body(400, "the body must be a JSON object"));
        }
    } else if (strcmp(url, "/v1/exec") == 0 && strcmp(method, "POST") == 0) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");

        if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) >= sizeof(c.id))
            return reply(conn, 401, error_body(401, "an exec secret is required"));
        c.kind = CALL_EXEC;
        snprintf(c.id, sizeof(c.id), "%s", auth + 7);
        c.body = json_parse(st->body.data, st->body.len);
        if (c.body == NULL || !cJSON_IsObject(c.body)) {
            cJSON_Delete(c.body);
            return reply(conn, 400, error_body(400, "the body must be a JSON object"));
        }
        call_loop(&c);
        cJSON_Delete(c.body);
        if (c.status == 200 && c.stream) {
            struct MHD_Response *r = exec_response(conn, c.stream);
            enum MHD_Result ret;

            free(c.reply);
            if (r == NULL)
                return MHD_NO;
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
            ret = MHD_queue_response(conn, 200, r);
            MHD_destroy_response(r);
            return ret;
        }
        return reply(conn, c.status, c.reply);
    } else if (strcmp(url, "/v1/tasks") == 0 && strcmp(method, "GET") == 0) {
        c.kind = CALL_LIST;
    } else if (strncmp(url, "/v1/tasks/", 10) == 0 && strcmp(method, "DELETE") == 0 &&
               strlen(url + 10) < sizeof(c.id)) {
        c.kind = CALL_STOP;
        snprintf(c.id, sizeof(c.id), "%s", url + 10);
    } else {
        return reply(conn, 404, error_body(404, "no such endpoint"));
    }
    call_loop(&c);
    cJSON_Delete(c.body);
    return reply(conn, c.status, c.reply);
}

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

static void do_register(struct agent *a);

static void on_register_retry(uv_timer_t *t)
{
    do_register(t->data);
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
        do_register(a);
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

static void do_register(struct agent *a)
{
    cJSON *body = registration(a);
    char *text = json_print(body);

    cJSON_Delete(body);
    if (agent_server_request(a, "POST", "/api/v1/nodes", "application/json", text, strlen(text),
                             NULL, NULL, on_registered, a) < 0)
        uv_timer_start(&a->register_retry, on_register_retry, 1000, 0);
    free(text);
}

/* ---- start and stop ---- */

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;

    log_info("agent: %s received; stopping tasks", strsignal(signum));
    a->stopping = true;
    uv_timer_stop(&a->heartbeat);
    uv_timer_stop(&a->register_retry);
    uv_close((uv_handle_t *)&a->heartbeat, on_closed);
    uv_close((uv_handle_t *)&a->register_retry, on_closed);
    uvcurl_free(a->http);
    a->http = NULL;
    task_stop_all(a);
    uv_close((uv_handle_t *)&sigint_handle, on_closed);
    uv_close((uv_handle_t *)&sigterm_handle, on_closed);
    uv_mutex_lock(&call_mu);
    loop_gone = true;
    uv_mutex_unlock(&call_mu);
    /* Answer calls that raced with the stop, then close the async. */
    on_calls(&call_async);
    uv_close((uv_handle_t *)&call_async, on_closed);
}

/* Gives a directory of the agent's its mode (whatever the umask or an
 * earlier agent made it) and to the agent; 0, or 1 with a message. */
static int set_mode(const char *dir, mode_t mode)
{
    if (chown(dir, geteuid(), getegid()) < 0 || chmod(dir, mode) < 0) {
        fprintf(stderr, "trainyard agent: cannot set up '%s': %s\n", dir, strerror(errno));
        return 1;
    }
    return 0;
}

/*
 * Writes the embedded Python helper under the work directory, afresh:
 * whatever else is in that directory (a sitecustomize.py an earlier
 * agent's task wrote, when tasks could) goes. It is on every task's
 * PYTHONPATH, so it is root's and read-only to tasks.
 */
static int install_helper(struct agent *a)
{
    char *dir = xasprintf("%s/python/trainyard", a->work);
    char *file = xasprintf("%s/__init__.py", dir);
    char *parent = xasprintf("%s/python", a->work);
    size_t len = (size_t)(embed_python_helper_end - embed_python_helper);
    mode_t mode = a->ident == TASK_IDENT_SELF ? 0700 : 0755;
    FILE *f;
    int rc = 0;

    remove_tree(parent);
    if (mkdir(parent, mode) < 0 || chmod(parent, mode) < 0 || mkdir(dir, mode) < 0 ||
        chmod(dir, mode) < 0)
        rc = ERR_INTERNAL;
    f = rc == 0 ? fopen(file, "w") : NULL;
    if (f == NULL || fwrite(embed_python_helper, 1, len, f) != len ||
        fchmod(fileno(f), mode & 0644) != 0)
        rc = ERR_INTERNAL;
    if (f && fclose(f) != 0)
        rc = ERR_INTERNAL;
    a->helper_dir = parent;
    free(dir);
    free(file);
    return rc;
}

/* Splits HOST:PORT; *ret_host is allocated. */
static int split_listen(const char *listen, char **ret_host, unsigned *ret_port)
{
    const char *colon = strrchr(listen, ':');
    long port;

    if (colon == NULL || !parse_long(colon + 1, 0, 65535, &port))
        return ERR_INVALID;
    if (listen[0] == '[' && colon > listen + 1 && colon[-1] == ']')
        *ret_host = xstrndup(listen + 1, (size_t)(colon - listen - 2));
    else
        *ret_host = xstrndup(listen, (size_t)(colon - listen));
    *ret_port = (unsigned)port;
    return 0;
}

static struct MHD_Daemon *start_api(struct agent *a, const char *host, unsigned port,
                                    unsigned *ret_port)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char port_s[16];
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls[3] = { { MHD_OPTION_END, 0, NULL },
                                     { MHD_OPTION_END, 0, NULL },
                                     { MHD_OPTION_END, 0, NULL } };

    if (a->tls_cert_pem) {
        flags |= MHD_USE_TLS;
        tls[0].option = MHD_OPTION_HTTPS_MEM_CERT;
        tls[0].ptr_value = a->tls_cert_pem;
        tls[1].option = MHD_OPTION_HTTPS_MEM_KEY;
        tls[1].ptr_value = a->tls_key_pem;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port_s, sizeof(port_s), "%u", port);
    if (getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res) != 0 || res == NULL)
        return NULL;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d = MHD_start_daemon(flags, 0, NULL, NULL, api_handle, NULL, MHD_OPTION_SOCK_ADDR, res->ai_addr,
                         MHD_OPTION_NOTIFY_COMPLETED, api_completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_ARRAY, tls,
                         MHD_OPTION_END);
    freeaddrinfo(res);
    if (d == NULL)
        return NULL;
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *ret_port = info ? info->port : port;
    return d;
}

/* What parse_options() leaves outside struct agent. */
struct agent_opts {
    const char *work;
    long hollow;
    const char *tls_cert;
    const char *tls_key;
    double task_seconds;
    char *host; /* from --listen, allocated */
    unsigned port;
};

/* Hides a secret's bytes in this process's argv or initial environment
 * (what /proc/PID/cmdline and /proc/PID/environ show). */
static void scrub(char *s)
{
    memset(s, '*', strlen(s));
}

/* Reads the token from --token, --token-file, TRAINYARD_TOKEN or
 * TRAINYARD_TOKEN_FILE (in that order) and hides every copy of it from
 * /proc. Returns 0 or 2 (usage). */
static int take_token(struct agent *a, char *opt_token, const char *opt_file)
{
    char *env_token = getenv("TRAINYARD_TOKEN");
    const char *env_file = getenv("TRAINYARD_TOKEN_FILE");
    const char *file = opt_file ? opt_file : (opt_token || env_token) ? NULL : env_file;
    char why[512];

    if (opt_token && opt_file) {
        fprintf(stderr, "trainyard agent: --token and --token-file cannot be used together\n");
        return 2;
    }
    if (opt_token)
        a->token = xstrdup(opt_token);
    else if (file == NULL && env_token)
        a->token = xstrdup(env_token);
    if (file) {
        a->token = file_read_secret(file, why, sizeof(why));
        if (a->token == NULL) {
            fprintf(stderr, "trainyard agent: --token-file: %s\n", why);
            return 2;
        }
    }
    if (opt_token)
        scrub(opt_token);
    if (env_token) {
        scrub(env_token);
        unsetenv("TRAINYARD_TOKEN");
    }
    return 0;
}

/* Parses --task-uids FIRST-LAST. */
static bool parse_uid_range(const char *s, struct agent *a)
{
    long first;
    long last;
    const char *dash = strchr(s, '-');
    char *head;
    bool ok;

    if (dash == NULL)
        return false;
    head = xstrndup(s, (size_t)(dash - s));
    ok = parse_long(head, 1, 4294967294L, &first) && parse_long(dash + 1, 1, 4294967294L, &last) &&
         first <= last && last - first < 1000000;
    free(head);
    if (ok) {
        a->uid_first = (uid_t)first;
        a->uid_last = (uid_t)last;
    }
    return ok;
}

/* Fills a and o from the command line and environment. Returns 0, 1 when
 * --help was printed, or 2 after a usage error (printed). */
static int parse_options(struct agent *a, struct agent_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "server", required_argument, NULL, 's' },
        { "token", required_argument, NULL, 't' },
        { "token-file", required_argument, NULL, 'T' },
        { "name", required_argument, NULL, 'n' },
        { "listen", required_argument, NULL, 'l' },
        { "advertise", required_argument, NULL, 'a' },
        { "pool", required_argument, NULL, 'p' },
        { "cpus", required_argument, NULL, 'c' },
        { "memory-mb", required_argument, NULL, 'm' },
        { "gpus", required_argument, NULL, 'g' },
        { "work", required_argument, NULL, 'w' },
        { "python", required_argument, NULL, 'P' },
        { "label", required_argument, NULL, 'L' },
        { "ports", required_argument, NULL, 'r' },
        { "grace", required_argument, NULL, 'G' },
        { "task-uids", required_argument, NULL, 'U' },
        { "task-user", required_argument, NULL, 'u' },
        { "log-level", required_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "hollow", required_argument, NULL, 'H' },
        { "tls-cert", required_argument, NULL, 'C' },
        { "tls-key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'A' },
        { "task-seconds", required_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    char hostname[256] = "localhost";
    char *opt_token = NULL;
    const char *token_file = NULL;
    const char *task_user = NULL;
    bool uids_given = false;
    long v;
    int c;

    a->server = getenv("TRAINYARD_SERVER") ? xstrdup(getenv("TRAINYARD_SERVER")) : NULL;
    a->pool = xstrdup("default");
    a->python = xstrdup("/usr/bin/python3");
    a->listen = xstrdup("0.0.0.0:7070");
    a->cpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
    a->memory_mb = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) / (1024 * 1024);
    a->gpus_declared = -1;
    a->port_min = 20000;
    a->port_max = 29999;
    a->grace_ms = AGENT_DEFAULT_GRACE_MS;
    a->uid_first = AGENT_DEFAULT_UID_FIRST;
    a->uid_last = AGENT_DEFAULT_UID_LAST;
    a->labels = cJSON_CreateObject();
    o->task_seconds = 1;
    gethostname(hostname, sizeof(hostname) - 1);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            free(a->server);
            a->server = xstrdup(optarg);
            break;
        case 't':
            opt_token = optarg;
            break;
        case 'T':
            token_file = optarg;
            break;
        case 'n':
            free(a->name);
            a->name = xstrdup(optarg);
            break;
        case 'l':
            free(a->listen);
            a->listen = xstrdup(optarg);
            break;
        case 'a':
            free(a->advertise);
            a->advertise = xstrdup(optarg);
            break;
        case 'p':
            free(a->pool);
            a->pool = xstrdup(optarg);
            break;
        case 'c':
            a->cpus = strtod(optarg, NULL);
            if (!(a->cpus > 0)) {
                fprintf(stderr, "trainyard agent: --cpus must be a number above 0\n");
                return 2;
            }
            break;
        case 'm':
            if (!parse_long(optarg, 0, LONG_MAX, &v)) {
                fprintf(stderr, "trainyard agent: --memory-mb must be a non-negative integer\n");
                return 2;
            }
            a->memory_mb = v;
            break;
        case 'g':
            if (!parse_long(optarg, 0, 64, &v)) {
                fprintf(stderr, "trainyard agent: --gpus must be 0..64\n");
                return 2;
            }
            a->gpus_declared = (int)v;
            break;
        case 'w':
            o->work = optarg;
            break;
        case 'P':
            free(a->python);
            a->python = xstrdup(optarg);
            break;
        case 'L': {
            const char *eq = strchr(optarg, '=');
            char *key;

            if (eq == NULL || eq == optarg) {
                fprintf(stderr, "trainyard agent: --label must be KEY=VALUE\n");
                return 2;
            }
            key = xstrndup(optarg, (size_t)(eq - optarg));
            cJSON_AddStringToObject(a->labels, key, eq + 1);
            free(key);
            break;
        }
        case 'r':
            if (sscanf(optarg, "%d-%d", &a->port_min, &a->port_max) != 2 || a->port_min < 1 ||
                a->port_max > 65535 || a->port_min > a->port_max) {
                fprintf(stderr, "trainyard agent: --ports must be MIN-MAX\n");
                return 2;
            }
            break;
        case 'G':
            if (!parse_long(optarg, 0, 3600, &v)) {
                fprintf(stderr, "trainyard agent: --grace must be 0..3600 seconds\n");
                return 2;
            }
            a->grace_ms = v * 1000;
            break;
        case 'U':
            if (!parse_uid_range(optarg, a)) {
                fprintf(stderr, "trainyard agent: --task-uids must be FIRST-LAST, 1 <= FIRST <= "
                                "LAST < 4294967295, at most 1000000 uids\n");
                return 2;
            }
            uids_given = true;
            break;
        case 'u':
            task_user = optarg;
            break;
        case 'v':
            if (strcmp(optarg, "debug") == 0)
                log_set_level(LOG_LEVEL_DEBUG);
            else if (strcmp(optarg, "warn") == 0)
                log_set_level(LOG_LEVEL_WARN);
            else if (strcmp(optarg, "error") == 0)
                log_set_level(LOG_LEVEL_ERROR);
            break;
        case 'C':
            o->tls_cert = optarg;
            break;
        case 'K':
            o->tls_key = optarg;
            break;
        case 'A':
            free(a->ca);
            a->ca = xstrdup(optarg);
            break;
        case 'H':
            if (!parse_long(optarg, 1, 100000, &o->hollow)) {
                fprintf(stderr, "trainyard agent: --hollow must be 1..100000\n");
                return 2;
            }
            break;
        case 'S':
            o->task_seconds = strtod(optarg, NULL);
            if (!(o->task_seconds >= 0)) {
                fprintf(stderr, "trainyard agent: --task-seconds must be >= 0\n");
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            return 2;
        }
    }
    if (take_token(a, opt_token, token_file) != 0)
        return 2;
    if (optind < argc) {
        fprintf(stderr, "trainyard agent: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "trainyard agent: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (a->server == NULL || a->token == NULL) {
        fprintf(stderr, "trainyard agent: --server and --token (or --token-file) are required\n");
        return 2;
    }
    if (task_user && uids_given) {
        fprintf(stderr, "trainyard agent: --task-user and --task-uids cannot be used together\n");
        return 2;
    }
    if (ident_configure(a, task_user) != 0)
        return 2;
    while (strlen(a->server) > 0 && a->server[strlen(a->server) - 1] == '/')
        a->server[strlen(a->server) - 1] = '\0';
    if (a->name == NULL)
        a->name = xstrdup(hostname);
    if (split_listen(a->listen, &o->host, &o->port) < 0) {
        fprintf(stderr, "trainyard agent: --listen '%s' is not HOST:PORT\n", a->listen);
        return 2;
    }
    return 0;
}

int agent_main(int argc, char **argv)
{
    struct agent *a = &agent;
    struct agent_opts opts;
    struct agent_opts *o = &opts;
    struct MHD_Daemon *daemon = NULL;
    char hostname[256] = "localhost";
    char *host = NULL;
    unsigned port = 0;
    unsigned bound = 0;
    int rc = 1;

    memset(a, 0, sizeof(*a));
    memset(o, 0, sizeof(*o));
    /* Nobody but root reads this process's memory, environ or fds in /proc
     * (children are dumpable again after their execve). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    gethostname(hostname, sizeof(hostname) - 1);
    rc = parse_options(a, o, argc, argv);
    host = o->host;
    port = o->port;
    if (rc == 1) {
        rc = 0;
        goto out;
    }
    if (rc == 2)
        goto usage_error;
    rc = 1;
    if (o->tls_cert && (file_read(o->tls_cert, 1 << 20, &a->tls_cert_pem) < 0 ||
                        file_read(o->tls_key, 1 << 20, &a->tls_key_pem) < 0))
        goto out;
    if (o->hollow > 0) {
        struct hollow_opts ho;

        memset(&ho, 0, sizeof(ho));
        ho.server = a->server;
        ho.token = a->token;
        ho.prefix = a->name;
        ho.pool = a->pool;
        ho.host = host[0] ? host : "0.0.0.0";
        ho.port = port;
        ho.advertise = a->advertise;
        ho.nodes = (int)o->hollow;
        ho.cpus = a->cpus;
        ho.gpus = a->gpus_declared > 0 ? a->gpus_declared : 0;
        ho.task_seconds = o->task_seconds;
        signal(SIGPIPE, SIG_IGN);
        rc = hollow_main(&ho);
        goto out;
    }
    {
        char *w = o->work ? xstrdup(o->work) : xasprintf("./var/agent-%s", a->name);
        char resolved[PATH_MAX];
        char *p;

        for (p = strchr(w + 1, '/'); p; p = strchr(p + 1, '/')) {
            *p = '\0';
            mkdir(w, 0700);
            *p = '/';
        }
        if ((mkdir(w, 0700) < 0 && errno != EEXIST) || realpath(w, resolved) == NULL) {
            fprintf(stderr, "trainyard agent: cannot use work directory '%s': %s\n", w,
                    strerror(errno));
            free(w);
            goto out;
        }
        free(w);
        a->work = xstrdup(resolved);
        if (ident_check_reachable(a, a->work) != 0)
            goto out;
        /* With task users: root's, entered (not listed) by tasks on their
         * way to their own directories, venvs and the helper; the
         * snapshot cache is root's alone. */
        if (set_mode(a->work, a->ident == TASK_IDENT_SELF ? 0700 : 0711) != 0)
            goto out;
        for (p = (char *)"snapshots\0tasks\0venvs\0"; *p; p += strlen(p) + 1) {
            char *sub = xasprintf("%s/%s", a->work, p);
            int bad;

            mkdir(sub, 0700);
            bad = set_mode(sub, strcmp(p, "snapshots") == 0 || a->ident == TASK_IDENT_SELF ? 0700
                                                                                           : 0711);
            free(sub);
            if (bad)
                goto out;
        }
    }
    {
        char exe[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

        exe[len > 0 ? len : 0] = '\0';
        a->self_exe = xstrdup(len > 0 ? exe : "trainyard");
    }
    if (install_helper(a) < 0) {
        log_error("agent: cannot write the Python helper under '%s'", a->work);
        goto out;
    }

    signal(SIGPIPE, SIG_IGN);
    a->loop = uv_default_loop();
    uv_mutex_init(&a->secret_mu);
    uv_mutex_init(&call_mu);
    uv_cond_init(&call_cv);
    uv_async_init(a->loop, &call_async, on_calls);
    uv_timer_init(a->loop, &a->heartbeat);
    uv_timer_init(a->loop, &a->register_retry);
    a->heartbeat.data = a;
    a->register_retry.data = a;
    uv_signal_init(a->loop, &sigint_handle);
    uv_signal_init(a->loop, &sigterm_handle);
    sigint_handle.data = a;
    sigterm_handle.data = a;
    uv_signal_start(&sigint_handle, on_signal, SIGINT);
    uv_signal_start(&sigterm_handle, on_signal, SIGTERM);
    a->http = uvcurl_new(a->loop);
    if (a->ca)
        uvcurl_set_ca(a->http, a->ca);

    task_reap_leftovers(a);
    daemon = start_api(a, host, port, &bound);
    if (daemon == NULL) {
        log_error("agent: cannot listen on '%s'", a->listen);
        goto out_loop;
    }
    if (a->advertise == NULL)
        a->advertise = xstrdup(
            host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ? hostname
                                                                                       : host);
    a->agent_url =
        strchr(a->advertise, ':')
            ? xasprintf("%s://[%s]:%u", a->tls_cert_pem ? "https" : "http", a->advertise, bound)
            : xasprintf("%s://%s:%u", a->tls_cert_pem ? "https" : "http", a->advertise, bound);
    log_info("agent: node '%s' serving on %s, work directory '%s'", a->name, a->agent_url, a->work);
    do_register(a);
    uv_run(a->loop, UV_RUN_DEFAULT);
    rc = 0;
out_loop:
    if (daemon)
        MHD_stop_daemon(daemon);
    if (!a->stopping) {
        /* Start-up failed before the loop ran: close what was opened. */
        uv_signal_t *fake = &sigterm_handle;

        on_signal(fake, SIGTERM);
        uv_run(a->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(a->loop);
    uv_mutex_destroy(&a->secret_mu);
    log_info("agent: stopped");
    goto out;
usage_error:
    fputs(usage, stderr);
    rc = 2;
out:
    free(host);
    free(a->server);
    free(a->token);
    free(a->name);
    free(a->pool);
    free(a->python);
    free(a->listen);
    free(a->advertise);
    free(a->agent_url);
    free(a->node_secret);
    free(a->work);
    free(a->helper_dir);
    free(a->python_version);
    free(a->self_exe);
    free(a->ca);
    free(a->tls_cert_pem);
    free(a->tls_key_pem);
    cJSON_Delete(a->labels);
    return rc;
}
