/*
 * agent.c - `trainyard agent`: start-up (work directory, helper), the
 * agent API, and stopping. Options are in options.c, registration and
 * heartbeats in client.c, tasks in task.c.
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

#include "agent/docker.h"
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
/* build/static/trainyard-rsh (agent/static/rsh.c), embedded by the build. */
extern const char embed_rsh_static[];
extern const char embed_rsh_static_end[];

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
static uv_timer_t shutdown_timer;
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

/* ---- start and stop ---- */

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

/* Everything stops: what the grace left running is killed, the server is
 * no longer called, the handles close and the loop ends. */
static void stop_now(struct agent *a)
{
    uv_timer_stop(&shutdown_timer);
    uv_close((uv_handle_t *)&shutdown_timer, on_closed);
    uv_timer_stop(&a->heartbeat);
    uv_timer_stop(&a->register_retry);
    uv_close((uv_handle_t *)&a->heartbeat, on_closed);
    uv_close((uv_handle_t *)&a->register_retry, on_closed);
    uvcurl_free(a->http);
    a->http = NULL;
    task_stop_all(a);
    docker_close(a->docker);
    a->docker = NULL;
    uv_close((uv_handle_t *)&sigint_handle, on_closed);
    uv_close((uv_handle_t *)&sigterm_handle, on_closed);
    uv_mutex_lock(&call_mu);
    loop_gone = true;
    uv_mutex_unlock(&call_mu);
    /* Answer calls that raced with the stop, then close the async. */
    on_calls(&call_async);
    uv_close((uv_handle_t *)&call_async, on_closed);
}

static void on_shutdown_timer(uv_timer_t *h)
{
    stop_now(h->data);
}

/* SIGTERM or SIGINT: the tasks get SIGTERM and the grace to end (to save
 * a checkpoint, say), as when a run is canceled; then the agent stops. A
 * second signal stops it at once. */
static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;

    if (a->stopping) {
        log_info("agent: %s received again; stopping now", strsignal(signum));
        stop_now(a);
        return;
    }
    log_info("agent: %s received; stopping tasks (SIGKILL after %lld ms)", strsignal(signum),
             (long long)a->grace_ms);
    a->stopping = true;
    uv_timer_stop(&a->heartbeat);
    uv_timer_stop(&a->register_retry);
    task_stop_each(a, "the agent is stopping");
    if (a->tasks == NULL) {
        stop_now(a);
        return;
    }
    /* A little past the tasks' own SIGKILL, so their ends are seen. */
    uv_timer_start(&shutdown_timer, on_shutdown_timer, (uint64_t)a->grace_ms + 500, 0);
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

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "w");
    int rc = 0;

    if (f == NULL || fwrite(data, 1, len, f) != len || fchmod(fileno(f), mode) != 0)
        rc = ERR_INTERNAL;
    if (f && fclose(f) != 0)
        rc = ERR_INTERNAL;
    return rc;
}

/*
 * Writes the embedded Python helper under the work directory, afresh:
 * whatever else is in that directory (a sitecustomize.py an earlier
 * agent's task wrote, when tasks could) goes. It is on every task's
 * PYTHONPATH, so it is root's and read-only to tasks. Beside it goes
 * trainyard-rsh, the static remote shell of mpi runs in images (the
 * directory is mounted into every container).
 */
static int install_helper(struct agent *a)
{
    char *dir = xasprintf("%s/python/trainyard", a->work);
    char *file = xasprintf("%s/__init__.py", dir);
    char *parent = xasprintf("%s/python", a->work);
    char *rsh = xasprintf("%s/" AGENT_RSH_STATIC, parent);
    mode_t mode = a->ident == TASK_IDENT_SELF ? 0700 : 0755;
    int rc = 0;

    remove_tree(parent);
    if (mkdir(parent, mode) < 0 || chmod(parent, mode) < 0 || mkdir(dir, mode) < 0 ||
        chmod(dir, mode) < 0)
        rc = ERR_INTERNAL;
    if (rc == 0)
        rc = write_file(file, embed_python_helper,
                        (size_t)(embed_python_helper_end - embed_python_helper), mode & 0644);
    if (rc == 0)
        rc = write_file(rsh, embed_rsh_static, (size_t)(embed_rsh_static_end - embed_rsh_static),
                        mode);
    a->helper_dir = parent;
    free(dir);
    free(file);
    free(rsh);
    return rc;
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
    if (a->docker_socket && o->hollow == 0) {
        char why[512];

        if (docker_ping(a->docker_socket, why, sizeof(why)) < 0) {
            fprintf(stderr,
                    "trainyard agent: --runtime docker: the Docker daemon at '%s' does not "
                    "answer: %s\n",
                    a->docker_socket, why);
            goto out;
        }
    }
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
        ho.heartbeat_stats = o->heartbeat_stats;
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
        log_error("agent: cannot write the Python helper and trainyard-rsh under '%s'", a->work);
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
    uv_timer_init(a->loop, &shutdown_timer);
    shutdown_timer.data = a;
    uv_signal_start(&sigint_handle, on_signal, SIGINT);
    uv_signal_start(&sigterm_handle, on_signal, SIGTERM);
    a->http = uvcurl_new(a->loop);
    if (a->ca)
        uvcurl_set_ca(a->http, a->ca);

    task_reap_leftovers(a);
    if (a->docker_socket) {
        a->docker = docker_open(a);
        if (a->docker == NULL)
            goto out_loop;
        docker_reconcile(a->docker);
    }
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
    client_register(a);
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
    fputs(agent_usage, stderr);
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
    free(a->docker_socket);
    cJSON_Delete(a->labels);
    return rc;
}
