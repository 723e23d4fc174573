/*
 * docker.c - tasks in container images over the Docker Engine API (see
 * docker.h). One client per agent, on the agent's loop (common/uvcurl.c
 * with CURLOPT_UNIX_SOCKET_PATH). A task's container goes through
 *
 *   its image (dockerimage.c: inspect, pull, derived image) -> create ->
 *   start -> logs + wait -> remove -> task_finish()
 *
 * each step a request whose callback starts the next. A stop while the
 * container runs asks the daemon to stop it (SIGTERM to the container's
 * init, SIGKILL after the grace); a stop before it runs ends the task at
 * once, and the step in flight then only removes what it made. A task is
 * freed only when no request about it is in flight (docker_task_busy).
 */
#include "agent/dockerint.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/imageref.h"
#include "common/json.h"
#include "common/log.h"
#include "common/uvcurl.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* At agent stop, what is still in flight after this is canceled. */
#define CLOSE_WAIT_MS 5000

/* ---- requests ---- */

void docker_url_escape(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            buf_addc(b, (char)ch);
        } else {
            buf_addc(b, '%');
            buf_addc(b, hex[ch >> 4]);
            buf_addc(b, hex[ch & 15]);
        }
    }
}

int docker_request(struct docker *d, struct task *t, void *arg, const char *method,
                   const char *path, const char *content_type, const void *body, size_t body_len,
                   long timeout_ms, void (*on_data)(void *arg, const char *data, size_t len),
                   uvcurl_cb cb)
{
    struct uvcurl_request req;
    char *url;
    int rc;

    if (d->closing && d->http == NULL)
        return -1;
    url = xasprintf("http://docker" DOCKER_API "%s", path);
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.content_type = body ? content_type : NULL;
    req.body = body;
    req.body_len = body ? body_len : 0;
    req.timeout_ms = timeout_ms;
    req.max_body = 1u << 20;
    req.on_data = on_data;
    if (arg == NULL)
        arg = t ? (void *)t : (void *)d;
    rc = uvcurl_start(d->http, &req, cb, arg);
    free(url);
    if (rc < 0)
        return -1;
    d->pending++;
    if (t)
        t->docker->pending++;
    return 0;
}

/* A request with a JSON body (or none) about t, or about no task. */
static int request(struct docker *d, struct task *t, const char *method, const char *path,
                   const char *body, long timeout_ms,
                   void (*on_data)(void *arg, const char *data, size_t len), uvcurl_cb cb)
{
    return docker_request(d, t, NULL, method, path, "application/json", body,
                          body ? strlen(body) : 0, timeout_ms, on_data, cb);
}

static void close_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_close_timer(uv_timer_t *timer)
{
    struct docker *d = timer->data;
    struct uvcurl *http = d->http;

    /* Whatever is left is canceled: its callbacks run inside. */
    d->http = NULL;
    uvcurl_free(http);
    uv_close((uv_handle_t *)&d->close_timer, close_timer_closed);
}

void docker_call_ended(struct docker *d)
{
    d->pending--;
    if (d->closing && d->pending == 0 && d->http)
        uv_timer_start(&d->close_timer, on_close_timer, 0, 0);
}

void docker_task_call_ended(struct task *t)
{
    t->docker->pending--;
    docker_call_ended(t->docker->d);
}

void docker_settle(struct task *t)
{
    if (t->finished && t->docker->pending == 0)
        task_release(t);
}

void docker_daemon_message(const struct uvcurl_response *resp, char *out, size_t size)
{
    cJSON *body = NULL;
    const char *m = NULL;

    if (resp->status == 0 || resp->status == UVCURL_CANCELED) {
        snprintf(out, size, "cannot reach the Docker daemon: %s",
                 resp->error ? resp->error : "no answer");
        return;
    }
    if (resp->body && resp->body->len > 0)
        body = json_parse(resp->body->data, resp->body->len);
    m = json_get_string(body, "message");
    if (m)
        snprintf(out, size, "%s", m);
    else
        snprintf(out, size, "the Docker daemon answered HTTP %ld", resp->status);
    cJSON_Delete(body);
}

/* ---- the end of a container ---- */

static void finish_outcome(struct task *t)
{
    struct docker_task *k = t->docker;

    k->step = STEP_DONE;
    if (!t->finished && k->has_outcome)
        task_finish(t, k->outcome_status, k->outcome_code, k->outcome_message);
}

static void on_removed(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    char msg[512];

    docker_task_call_ended(t);
    if (resp->status != 204 && resp->status != 404) {
        docker_daemon_message(resp, msg, sizeof(msg));
        log_warn("agent: task '%s': cannot remove container %.12s: %s", t->id, k->container, msg);
    }
    finish_outcome(t);
    docker_settle(t);
}

/* Removes t's container (if it made one), then reports the outcome. */
static void remove_container(struct task *t)
{
    struct docker_task *k = t->docker;
    char path[256];

    if (k->container == NULL || k->remove_sent) {
        finish_outcome(t);
        return;
    }
    k->remove_sent = true;
    snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", k->container);
    if (request(k->d, t, "DELETE", path, NULL, DOCKER_CALL_TIMEOUT_MS, NULL, on_removed) < 0)
        finish_outcome(t);
}

void docker_end_task(struct task *t, enum task_status status, int code, const char *message)
{
    struct docker_task *k = t->docker;

    if (!k->has_outcome) {
        k->has_outcome = true;
        k->outcome_status = status;
        k->outcome_code = code;
        k->outcome_message = message ? xstrdup(message) : NULL;
    }
    remove_container(t);
}

void docker_fail_step(struct task *t, const char *what, const struct uvcurl_response *resp,
                      const char *detail)
{
    char msg[1500];
    char *why;

    if (detail)
        snprintf(msg, sizeof(msg), "%s", detail);
    else
        docker_daemon_message(resp, msg, sizeof(msg));
    why = xasprintf("%s '%s': %s", what, json_get_string(t->assignment, "image"), msg);
    docker_end_task(t, TASK_FAILED, -1, why);
    free(why);
    docker_settle(t);
}

/* The container has exited and its output is read. */
static void maybe_exited(struct task *t)
{
    struct docker_task *k = t->docker;
    char msg[128];

    if (!k->waited || !k->logs_ended)
        return;
    if (t->holder && t->stop_requested) {
        /* An mpi worker ends as on a host: stopped (docker_task_stop). */
        docker_end_task(t, TASK_FAILED, -1, "stopped");
    } else if (k->exit_code == 0) {
        docker_end_task(t, TASK_SUCCEEDED, 0, NULL);
    } else if (t->stop_requested) {
        snprintf(msg, sizeof(msg), "stopped (the container exited with %d)", k->exit_code);
        docker_end_task(t, TASK_FAILED, k->exit_code, msg);
    } else {
        docker_end_task(t, TASK_FAILED, k->exit_code, NULL);
    }
}

/* ---- running: its output and its exit ---- */

/* Docker's multiplexed stream: frames of an 8-byte header (stream 1
 * stdout, 2 stderr; 3 bytes 0; a big-endian 32-bit length) and data. */
void docker_demux(struct buf *frames, const char *data, size_t len, docker_frame_fn fn, void *arg)
{
    size_t at = 0;

    buf_add(frames, data, len);
    while (frames->len - at >= 8) {
        const unsigned char *h = (const unsigned char *)frames->data + at;
        size_t n = (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];

        if (frames->len - at - 8 < n)
            break;
        fn(arg, h[0] == 2, (const char *)h + 8, n);
        at += 8 + n;
    }
    if (at > 0) {
        memmove(frames->data, frames->data + at, frames->len - at);
        frames->len -= at;
        frames->data[frames->len] = '\0';
    }
}

static void on_log_frame(void *arg, bool is_stderr, const char *data, size_t len)
{
    struct task *t = arg;

    task_stream_feed(is_stderr ? &t->err : &t->out, data, len, false);
}

static void on_log_data(void *arg, const char *data, size_t len)
{
    struct task *t = arg;

    docker_demux(&t->docker->frames, data, len, on_log_frame, t);
}

static void on_logs(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    char msg[512];

    docker_task_call_ended(t);
    if (resp->status != 200 && !t->finished) {
        docker_daemon_message(resp, msg, sizeof(msg));
        log_warn("agent: task '%s': the container's log stream ended: %s", t->id, msg);
    }
    task_stream_feed(&t->out, NULL, 0, true);
    task_stream_feed(&t->err, NULL, 0, true);
    k->logs_ended = true;
    maybe_exited(t);
    docker_settle(t);
}

static void on_wait(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    cJSON *body = NULL;
    int64_t code = -1;
    char msg[512];

    docker_task_call_ended(t);
    if (resp->status == 200)
        body = json_parse(resp->body->data, resp->body->len);
    if (body == NULL || !json_int(json_get(body, "StatusCode"), -1, 255, &code)) {
        docker_daemon_message(resp, msg, sizeof(msg));
        if (!t->finished)
            log_warn("agent: task '%s': waiting for its container failed: %s", t->id, msg);
        code = -1;
    }
    cJSON_Delete(body);
    k->exit_code = (int)code;
    k->waited = true;
    maybe_exited(t);
    docker_settle(t);
}

static void on_started(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    char path[256];

    docker_task_call_ended(t);
    if (t->finished) {
        /* stopped (or the agent stops) meanwhile */
        remove_container(t);
        docker_settle(t);
        return;
    }
    if (resp->status != 204 && resp->status != 304) {
        docker_fail_step(t, "cannot start the container of image", resp, NULL);
        return;
    }
    k->step = STEP_RUN;
    t->status = "running";
    t->main_started = true;
    /* An mpi worker's container now takes /v1/exec's orted (dockermpi.c). */
    t->holder = cJSON_IsTrue(json_get(t->assignment, "mpi_worker"));
    task_queue_status(t, TASK_RUNNING, -1, NULL);
    /* A container that has already exited still gives its whole log and
     * its exit code: neither request can miss the end. */
    snprintf(path, sizeof(path), "/containers/%s/logs?follow=1&stdout=1&stderr=1", k->container);
    if (request(k->d, t, "GET", path, NULL, -1, on_log_data, on_logs) < 0)
        k->logs_ended = true;
    snprintf(path, sizeof(path), "/containers/%s/wait", k->container);
    if (request(k->d, t, "POST", path, NULL, -1, NULL, on_wait) < 0) {
        k->waited = true;
        k->exit_code = -1;
    }
    maybe_exited(t);
}

/* ---- creating ---- */

static void add_string_array(cJSON *obj, const char *key, char *const *v)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    int i;

    for (i = 0; v && v[i]; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(v[i]));
}

cJSON *docker_create_body(const struct docker_create *c)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *labels;
    cJSON *host;
    cJSON *binds;
    const cJSON *g;
    int i;

    cJSON_AddStringToObject(body, "Image", c->image);
    /* argv as is: the image's entrypoint and command do not apply. */
    add_string_array(body, "Entrypoint", c->argv);
    cJSON_AddItemToObject(body, "Cmd", cJSON_CreateArray());
    add_string_array(body, "Env", c->env);
    cJSON_AddStringToObject(body, "WorkingDir", c->workdir);
    if (c->user)
        cJSON_AddStringToObject(body, "User", c->user);
    cJSON_AddBoolToObject(body, "Tty", false);
    cJSON_AddBoolToObject(body, "OpenStdin", false);
    labels = cJSON_AddObjectToObject(body, "Labels");
    cJSON_AddStringToObject(labels, "trainyard.run", c->run);
    cJSON_AddStringToObject(labels, "trainyard.task", c->task);
    cJSON_AddStringToObject(labels, "trainyard.node", c->node);
    host = cJSON_AddObjectToObject(body, "HostConfig");
    /* The host's network: TF_CONFIG, MASTER_ADDR and ports stay valid. */
    cJSON_AddStringToObject(host, "NetworkMode", "host");
    binds = cJSON_AddArrayToObject(host, "Binds");
    for (i = 0; c->binds && c->binds[i]; i++)
        cJSON_AddItemToArray(binds, cJSON_CreateString(c->binds[i]));
    /* docker-init as PID 1 passes SIGTERM on (a PID 1 without a handler
     * would ignore it until the SIGKILL) and reaps what the task leaves. */
    cJSON_AddBoolToObject(host, "Init", true);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(host, "SecurityOpt"),
                         cJSON_CreateString("no-new-privileges"));
    if (cJSON_GetArraySize(c->gpus) > 0) {
        cJSON *req = cJSON_CreateObject();
        cJSON *ids = cJSON_AddArrayToObject(req, "DeviceIDs");
        cJSON *caps = cJSON_AddArrayToObject(req, "Capabilities");

        cJSON_AddStringToObject(req, "Driver", "nvidia");
        cJSON_ArrayForEach(g, c->gpus) {
            char id[32];

            snprintf(id, sizeof(id), "%d", g->valueint);
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
        }
        cJSON_AddItemToArray(caps, cJSON_CreateArray());
        cJSON_AddItemToArray(cJSON_GetArrayItem(caps, 0), cJSON_CreateString("gpu"));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(host, "DeviceRequests"), req);
    }
    return body;
}

static void on_created(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct docker_task *k = t->docker;
    cJSON *body = NULL;
    const char *id;
    char path[256];

    docker_task_call_ended(t);
    if (resp->status == 201)
        body = json_parse(resp->body->data, resp->body->len);
    id = json_get_string(body, "Id");
    if (id && strlen(id) < 128 && strspn(id, "0123456789abcdef") == strlen(id))
        k->container = xstrdup(id);
    cJSON_Delete(body);
    if (t->finished) {
        remove_container(t);
        docker_settle(t);
        return;
    }
    if (k->container == NULL) {
        docker_fail_step(t, "cannot create a container of image", resp, NULL);
        return;
    }
    log_info("agent: task '%s' in container %.12s", t->id, k->container);
    k->step = STEP_START;
    snprintf(path, sizeof(path), "/containers/%s/start", k->container);
    if (request(k->d, t, "POST", path, NULL, DOCKER_CALL_TIMEOUT_MS, NULL, on_started) < 0)
        docker_end_task(t, TASK_FAILED, -1, "cannot start the container: the agent is stopping");
}

void docker_renumber_gpus(char **env, int n_gpus)
{
    struct buf v;
    int i;
    int g;

    for (i = 0; env[i]; i++) {
        if (strncmp(env[i], "CUDA_VISIBLE_DEVICES=", 21) == 0)
            break;
    }
    if (env[i] == NULL || n_gpus == 0)
        return;
    buf_init(&v);
    buf_adds(&v, "CUDA_VISIBLE_DEVICES=");
    for (g = 0; g < n_gpus; g++)
        buf_printf(&v, "%s%d", g ? "," : "", g);
    free(env[i]);
    env[i] = xstrdup(v.data);
    buf_release(&v);
}

void docker_spec_release(struct docker_spec *spec)
{
    int i;

    task_free_strv(spec->argv);
    task_free_strv(spec->env);
    for (i = 0; spec->binds[i]; i++)
        free(spec->binds[i]);
}

/* A task's own command, in its directory, with its GPUs. */
static void plain_spec(struct task *t, struct docker_spec *spec)
{
    const cJSON *argv_json = json_get(t->assignment, "argv");
    const cJSON *arg;
    int n = 0;

    spec->argv = xcalloc((size_t)cJSON_GetArraySize(argv_json) + 2, sizeof(*spec->argv));
    /* The image's Python, found on its PATH. */
    if (cJSON_IsTrue(json_get(t->assignment, "use_python")))
        spec->argv[n++] = xstrdup("python3");
    cJSON_ArrayForEach(arg, argv_json) {
        spec->argv[n++] = xstrdup(arg->valuestring);
    }
    spec->env = task_image_env(t, json_get(t->assignment, "env"));
    docker_renumber_gpus(spec->env, cJSON_GetArraySize(json_get(t->assignment, "gpus")));
    spec->binds[0] = xasprintf("%s:%s", t->src, t->src);
    spec->binds[1] = xasprintf("%s:%s:ro", t->a->helper_dir, t->a->helper_dir);
    spec->workdir = t->src;
    spec->gpus = json_get(t->assignment, "gpus");
}

void docker_create_container(struct task *t)
{
    struct docker_task *k = t->docker;
    struct docker_spec spec;
    struct docker_create c;
    char user[64];
    char *text;
    cJSON *body;

    memset(&spec, 0, sizeof(spec));
    if (!docker_mpi_spec(t, &spec))
        plain_spec(t, &spec);
    memset(&c, 0, sizeof(c));
    c.image = k->run_image;
    c.argv = spec.argv;
    c.env = spec.env;
    c.workdir = spec.workdir;
    if (t->has_cred) {
        snprintf(user, sizeof(user), "%u:%u", (unsigned)t->cred.uid, (unsigned)t->cred.gid);
        c.user = user;
    }
    c.binds = (const char *const *)spec.binds;
    c.run = t->run;
    c.task = t->id;
    c.node = t->a->name;
    c.gpus = spec.gpus;
    body = docker_create_body(&c);
    text = json_print(body);
    k->step = STEP_CREATE;
    if (request(k->d, t, "POST", "/containers/create", text, DOCKER_CALL_TIMEOUT_MS, NULL,
                on_created) < 0)
        docker_end_task(t, TASK_FAILED, -1, "cannot create the container: the agent is stopping");
    free(text);
    cJSON_Delete(body);
    docker_spec_release(&spec);
}

bool docker_image_ok(const char *ref)
{
    return imageref_ok(ref);
}

void docker_task_start(struct task *t)
{
    struct docker_task *k;
    const char *image = json_get_string(t->assignment, "image");

    assert(image != NULL && t->docker == NULL);
    if (t->a->docker == NULL) {
        task_finish(t, TASK_FAILED, -1,
                    "this node does not run tasks in images (its agent was not started with "
                    "--runtime docker)");
        return;
    }
    k = xcalloc(1, sizeof(*k));
    k->d = t->a->docker;
    k->exit_code = -1;
    buf_init(&k->frames);
    buf_init(&k->pull_line);
    t->docker = k;
    t->out.task = t;
    t->err.task = t;
    t->err.is_stderr = true;
    k->step = STEP_IMAGE;
    docker_image_start(t);
}

/* ---- stopping ---- */

static void on_stop_sent(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    char msg[512];

    docker_task_call_ended(t);
    /* 204 stopped, 304 already stopped, 404 gone: the wait sees the end. */
    if (resp->status != 204 && resp->status != 304 && resp->status != 404 &&
        resp->status != UVCURL_CANCELED) {
        docker_daemon_message(resp, msg, sizeof(msg));
        log_warn("agent: task '%s': cannot stop its container: %s", t->id, msg);
    }
    docker_settle(t);
}

void docker_task_stop(struct task *t)
{
    struct docker_task *k = t->docker;
    char path[256];
    long grace_s = (long)((t->a->grace_ms + 999) / 1000);

    if (k->step != STEP_RUN) {
        /* Nothing runs yet: the step in flight removes what it made. */
        if (k->step != STEP_DONE && !k->has_outcome)
            task_finish(t, TASK_FAILED, -1, "stopped before it started");
        return;
    }
    if (k->stop_sent)
        return;
    k->stop_sent = true;
    /* SIGTERM (the image's stop signal), SIGKILL after grace_s. */
    snprintf(path, sizeof(path), "/containers/%s/stop?t=%ld", k->container, grace_s);
    request(k->d, t, "POST", path, NULL, grace_s * 1000 + DOCKER_CALL_TIMEOUT_MS, NULL,
            on_stop_sent);
}

void docker_task_kill(struct task *t)
{
    struct docker_task *k = t->docker;
    char path[256];

    if (k->container == NULL || k->remove_sent || k->killed)
        return;
    k->killed = true;
    k->remove_sent = true;
    snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", k->container);
    request(k->d, t, "DELETE", path, NULL, DOCKER_CALL_TIMEOUT_MS, NULL, on_removed);
}

bool docker_task_busy(const struct task *t)
{
    return t->docker && t->docker->pending > 0;
}

void docker_task_free(struct task *t)
{
    struct docker_task *k = t->docker;

    if (k == NULL)
        return;
    assert(k->pending == 0);
    docker_image_forget(t);
    free(k->container);
    free(k->outcome_message);
    free(k->pull.error);
    free(k->run_image);
    buf_release(&k->frames);
    buf_release(&k->pull_line);
    free(k);
    t->docker = NULL;
}

/* ---- the client ---- */

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    (void)userp;
    return size * nmemb;
}

int docker_ping(const char *socket, char *err, size_t err_size)
{
    CURL *e = curl_easy_init();
    char errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;

    if (e == NULL) {
        snprintf(err, err_size, "curl_easy_init failed");
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_URL, "http://docker" DOCKER_API "/_ping");
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, socket);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    rc = curl_easy_perform(e);
    if (rc == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) {
        snprintf(err, err_size, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return -1;
    }
    if (status != 200) {
        snprintf(err, err_size, "the daemon answered HTTP %ld to /_ping", status);
        return -1;
    }
    return 0;
}

struct docker *docker_open(struct agent *a)
{
    struct docker *d = xcalloc(1, sizeof(*d));

    d->a = a;
    d->http = uvcurl_new(a->loop);
    if (d->http == NULL) {
        free(d);
        return NULL;
    }
    uvcurl_set_unix_socket(d->http, a->docker_socket);
    /* Each running container holds two requests open (logs, wait): no cap. */
    uvcurl_set_max_connections(d->http, 0);
    uv_timer_init(a->loop, &d->close_timer);
    d->close_timer.data = d;
    return d;
}

static void on_leftover_removed(void *arg, const struct uvcurl_response *resp)
{
    struct docker *d = arg;
    char msg[512];

    docker_call_ended(d);
    if (resp->status != 204 && resp->status != 404 && resp->status != UVCURL_CANCELED) {
        docker_daemon_message(resp, msg, sizeof(msg));
        log_warn("agent: cannot remove a container an earlier agent left: %s", msg);
    }
}

static bool task_known(struct agent *a, const char *id)
{
    struct task *t;

    for (t = a->tasks; t; t = t->next) {
        if (strcmp(t->id, id) == 0)
            return true;
    }
    return false;
}

static void on_listed(void *arg, const struct uvcurl_response *resp)
{
    struct docker *d = arg;
    cJSON *list = NULL;
    const cJSON *c;
    char msg[512];

    docker_call_ended(d);
    if (resp->status == 200)
        list = json_parse(resp->body->data, resp->body->len);
    if (!cJSON_IsArray(list)) {
        if (resp->status != UVCURL_CANCELED) {
            docker_daemon_message(resp, msg, sizeof(msg));
            log_warn("agent: cannot list the node's containers: %s", msg);
        }
        cJSON_Delete(list);
        return;
    }
    cJSON_ArrayForEach(c, list) {
        const char *id = json_get_string(c, "Id");
        const char *task = json_get_string(json_get(c, "Labels"), "trainyard.task");
        char path[256];

        if (id == NULL || strlen(id) > 128 || strspn(id, "0123456789abcdef") != strlen(id) ||
            (task && task_known(d->a, task)))
            continue;
        log_warn("agent: removing container %.12s (task '%s') that an earlier agent left", id,
                 task ? task : "?");
        snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
        request(d, NULL, "DELETE", path, NULL, DOCKER_CALL_TIMEOUT_MS, NULL, on_leftover_removed);
    }
    cJSON_Delete(list);
}

void docker_reconcile(struct docker *d)
{
    struct buf path;
    struct buf filter;

    buf_init(&path);
    buf_init(&filter);
    buf_adds(&filter, "{\"label\":[");
    {
        struct buf label;

        buf_init(&label);
        buf_printf(&label, "trainyard.node=%s", d->a->name);
        json_buf_string(&filter, label.data);
        buf_release(&label);
    }
    buf_adds(&filter, "]}");
    buf_adds(&path, "/containers/json?all=1&filters=");
    docker_url_escape(&path, filter.data);
    if (request(d, NULL, "GET", path.data, NULL, DOCKER_CALL_TIMEOUT_MS, NULL, on_listed) < 0)
        log_warn("agent: cannot list the node's containers");
    buf_release(&filter);
    buf_release(&path);
}

void docker_close(struct docker *d)
{
    if (d == NULL)
        return;
    d->closing = true;
    uv_timer_start(&d->close_timer, on_close_timer, d->pending == 0 ? 0 : CLOSE_WAIT_MS, 0);
}
