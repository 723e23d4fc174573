/*
 * hollow.c - simulated nodes. One libuv loop drives every node's
 * registration, heartbeats and task reports (curl multi on the loop);
 * libmicrohttpd's thread serves the agent API for all of them and hands
 * assignments and stops to the loop through a locked queue.
 */
#include "agent/hollow.h"

#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/uvcurl.h"
#include "common/xalloc.h"
#include "common/banned.h"

struct hnode;

struct htask {
    struct hnode *node;
    char *id;
    uv_timer_t timer;
    int step; /* 0: report running, 1: run, 2: metric, 3: final status, 4: done */
    bool stop;
    bool in_flight;
    struct htask *next;
};

struct hnode {
    struct hollow *h;
    char name[64];
    char *secret; /* guarded by h->mu (the MHD thread reads it) */
    bool registered;
    bool beat_in_flight;
    uint64_t beat_sent_us; /* when the heartbeat in flight was sent (uv_hrtime) */
    uv_timer_t timer; /* registration retries, then heartbeats */
    struct htask *tasks;
};

/* An assignment or stop from the API thread, for the loop. */
struct event {
    struct hnode *node;
    char *task_id;
    bool stop;
    struct event *next;
};

/* Heartbeat round trips since the last report: 10 µs buckets below
 * 100 ms, 10 ms buckets above (the last one: 60 s and more). */
#define FINE_BUCKETS 10000
#define COARSE_BUCKETS 6000
struct beat_stats {
    uint64_t fine[FINE_BUCKETS];
    uint64_t coarse[COARSE_BUCKETS + 1];
    uint64_t n;
    uint64_t failed; /* answered other than 200, or not at all */
    uint64_t max_us;
};

struct hollow {
    const struct hollow_opts *o;
    uv_loop_t loop;
    uv_async_t async;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_signal_t sigusr1;
    struct beat_stats *stats;
    struct uvcurl *http;
    struct hnode *nodes;
    char *base_url;
    int64_t heartbeat_ms;
    pthread_mutex_t mu;
    struct event *events;
    bool stopping;
    int live_tasks;
};

static void node_send(struct hnode *n);
static void task_step(struct htask *t);

static int request(struct hollow *h, const char *method, const char *path, const char *body,
                   uvcurl_cb cb, void *arg)
{
    struct uvcurl_request req;
    char *url = xasprintf("%s%s", h->o->server, path);
    int rc;

    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.bearer = h->o->token;
    req.content_type = body ? "application/json" : NULL;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.timeout_ms = 60000;
    rc = h->http ? uvcurl_start(h->http, &req, cb, arg) : -1;
    free(url);
    return rc;
}

/* ---- tasks ---- */

static void task_closed(uv_handle_t *hd)
{
    struct htask *t = hd->data;

    free(t->id);
    free(t);
}

static void task_free(struct htask *t)
{
    struct htask **p;

    for (p = &t->node->tasks; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    t->node->h->live_tasks--;
    uv_close((uv_handle_t *)&t->timer, task_closed);
}

static void on_task_timer(uv_timer_t *timer)
{
    task_step(timer->data);
}

static void on_task_reply(void *arg, const struct uvcurl_response *resp)
{
    struct htask *t = arg;

    t->in_flight = false;
    if (resp->status == UVCURL_CANCELED)
        return;
    if (resp->status == 0 || resp->status >= 500) {
        uv_timer_start(&t->timer, on_task_timer, 500, 0); /* the server is away: again */
        return;
    }
    t->step++;
    task_step(t);
}

static double sample_seconds(double mean)
{
    double u = (double)(rand() % 1000000 + 1) / 1000001.0;

    return -log(u) * mean;
}

static void task_step(struct htask *t)
{
    struct hollow *h = t->node->h;
    char path[512];
    char body[512];

    if (t->in_flight || h->stopping)
        return;
    if (t->stop && t->step < 3)
        t->step = 3;
    switch (t->step) {
    case 0:
        snprintf(path, sizeof(path), "/api/v1/agent/tasks/%s/status", t->id);
        t->in_flight = request(h, "POST", path, "{\"status\": \"running\"}", on_task_reply, t) == 0;
        break;
    case 1:
        t->step = 2;
        uv_timer_start(&t->timer, on_task_timer,
                       (uint64_t)(sample_seconds(h->o->task_seconds) * 1000), 0);
        break;
    case 2:
        snprintf(path, sizeof(path), "/api/v1/agent/tasks/%s/metrics", t->id);
        snprintf(body, sizeof(body),
                 "{\"seq\": 1, \"points\": [{\"name\": \"loss\", \"value\": %.4f, \"step\": 0}]}",
                 (double)(rand() % 1000) / 1000.0);
        t->in_flight = request(h, "POST", path, body, on_task_reply, t) == 0;
        break;
    case 3:
        snprintf(path, sizeof(path), "/api/v1/agent/tasks/%s/status", t->id);
        t->in_flight =
            request(h, "POST", path,
                    t->stop
                        ? "{\"status\": \"failed\", \"exit_code\": 143, \"message\": \"stopped\"}"
                        : "{\"status\": \"succeeded\", \"exit_code\": 0}",
                    on_task_reply, t) == 0;
        break;
    default:
        task_free(t);
        break;
    }
}

/* ---- heartbeat round trips ---- */

static void stats_record(struct beat_stats *s, uint64_t us, bool ok)
{
    if (us < (uint64_t)FINE_BUCKETS * 10)
        s->fine[us / 10]++;
    else
        s->coarse[us / 10000 < COARSE_BUCKETS ? us / 10000 : COARSE_BUCKETS]++;
    s->n++;
    if (!ok)
        s->failed++;
    if (us > s->max_us)
        s->max_us = us;
}

/* The upper bound (ms) of the bucket holding the q-quantile. */
static double stats_quantile(const struct beat_stats *s, double q)
{
    uint64_t want = (uint64_t)(q * (double)s->n);
    uint64_t seen = 0;
    int i;

    if (want == 0)
        want = 1;
    for (i = 0; i < FINE_BUCKETS; i++) {
        seen += s->fine[i];
        if (seen >= want)
            return (double)(i + 1) * 0.01;
    }
    for (i = 0; i <= COARSE_BUCKETS; i++) {
        seen += s->coarse[i];
        if (seen >= want)
            return (double)(i + 1) * 10.0;
    }
    return (double)s->max_us / 1000.0;
}

/* Appends a line of the round trips since the last one to
 * --heartbeat-stats FILE, and starts counting anew. */
static void stats_report(struct hollow *h, const char *why)
{
    struct beat_stats *s = h->stats;
    FILE *f;

    if (s == NULL)
        return;
    f = fopen(h->o->heartbeat_stats, "a");
    if (f == NULL) {
        log_warn("hollow: cannot open %s", h->o->heartbeat_stats);
        return;
    }
    fprintf(f,
            "heartbeats n=%llu failed=%llu p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms "
            "(%d nodes, %s)\n",
            (unsigned long long)s->n, (unsigned long long)s->failed, stats_quantile(s, 0.5),
            stats_quantile(s, 0.9), stats_quantile(s, 0.99), (double)s->max_us / 1000.0,
            h->o->nodes, why);
    fclose(f);
    memset(s, 0, sizeof(*s));
}

static void on_sigusr1(uv_signal_t *sig, int signum)
{
    (void)signum;
    stats_report(sig->data, "SIGUSR1");
}

/* ---- nodes ---- */

static void on_node_timer(uv_timer_t *timer)
{
    node_send(timer->data);
}

static void on_heartbeat(void *arg, const struct uvcurl_response *resp)
{
    struct hnode *n = arg;
    cJSON *body;
    const cJSON *id;

    n->beat_in_flight = false;
    if (resp->status == UVCURL_CANCELED)
        return;
    if (n->h->stats)
        stats_record(n->h->stats, uv_hrtime() / 1000 - n->beat_sent_us, resp->status == 200);
    if (resp->status != 200)
        return;
    body = json_parse(resp->body->data, resp->body->len);
    cJSON_ArrayForEach(id, json_get(body, "stop")) {
        struct htask *t;

        for (t = n->tasks; t; t = t->next) {
            if (cJSON_IsString(id) && strcmp(t->id, id->valuestring) == 0)
                t->stop = true;
        }
    }
    cJSON_Delete(body);
}

static void on_registered(void *arg, const struct uvcurl_response *resp)
{
    struct hnode *n = arg;
    struct hollow *h = n->h;
    cJSON *body;
    const char *secret;
    const cJSON *interval;

    n->beat_in_flight = false;
    if (resp->status == UVCURL_CANCELED)
        return;
    body = json_parse(resp->body->data, resp->body->len);
    secret = json_get_string(body, "node_secret");
    if ((resp->status != 200 && resp->status != 201) || secret == NULL) {
        cJSON_Delete(body);
        uv_timer_start(&n->timer, on_node_timer, 1000, 0);
        return;
    }
    pthread_mutex_lock(&h->mu);
    free(n->secret);
    n->secret = xstrdup(secret);
    pthread_mutex_unlock(&h->mu);
    interval = json_get(body, "heartbeat_interval_ms");
    h->heartbeat_ms = cJSON_IsNumber(interval) ? (int64_t)interval->valuedouble : 5000;
    cJSON_Delete(body);
    n->registered = true;
    /* Spread the heartbeats over the interval. */
    uv_timer_start(&n->timer, on_node_timer, (uint64_t)(rand() % (h->heartbeat_ms + 1)),
                   (uint64_t)h->heartbeat_ms);
}

static void node_send(struct hnode *n)
{
    struct hollow *h = n->h;
    struct buf body;
    struct htask *t;
    char path[256];

    if (n->beat_in_flight || h->stopping)
        return;
    buf_init(&body);
    if (!n->registered) {
        buf_printf(&body,
                   "{\"name\": \"%s\", \"pool\": \"%s\", \"agent_url\": \"%s/n/%s\", \"cpus\": %g, "
                   "\"memory_mb\": 65536, \"features\": [\"python3\", \"hollow\"], \"gpus\": [",
                   n->name, h->o->pool, h->base_url, n->name, h->o->cpus);
        for (int i = 0; i < h->o->gpus; i++)
            buf_printf(&body, "%s{\"index\": %d, \"name\": \"hollow\"}", i ? ", " : "", i);
        buf_adds(&body, "]}");
        n->beat_in_flight = request(h, "POST", "/api/v1/nodes", body.data, on_registered, n) == 0;
    } else {
        buf_adds(&body, "{\"tasks\": [");
        for (t = n->tasks; t; t = t->next)
            buf_printf(&body, "%s{\"id\": \"%s\", \"status\": \"running\"}",
                       t == n->tasks ? "" : ", ", t->id);
        buf_adds(&body, "]}");
        snprintf(path, sizeof(path), "/api/v1/nodes/%s/heartbeat", n->name);
        n->beat_sent_us = uv_hrtime() / 1000;
        n->beat_in_flight = request(h, "POST", path, body.data, on_heartbeat, n) == 0;
    }
    buf_release(&body);
}

/* ---- the API thread's hand-over ---- */

static void on_events(uv_async_t *a)
{
    struct hollow *h = a->data;
    struct event *e;
    struct event *next;

    pthread_mutex_lock(&h->mu);
    e = h->events;
    h->events = NULL;
    pthread_mutex_unlock(&h->mu);
    for (; e; e = next) {
        struct htask *t;

        next = e->next;
        for (t = e->node->tasks; t; t = t->next) {
            if (strcmp(t->id, e->task_id) == 0)
                break;
        }
        if (e->stop) {
            if (t) {
                t->stop = true;
                if (!t->in_flight && t->step == 2) {
                    uv_timer_stop(&t->timer);
                    task_step(t);
                }
            }
        } else if (t == NULL && !h->stopping) {
            t = xcalloc(1, sizeof(*t));
            t->node = e->node;
            t->id = e->task_id;
            e->task_id = NULL;
            uv_timer_init(&h->loop, &t->timer);
            t->timer.data = t;
            t->next = e->node->tasks;
            e->node->tasks = t;
            h->live_tasks++;
            task_step(t);
        }
        free(e->task_id);
        free(e);
    }
}

static struct hnode *node_by_name(struct hollow *h, const char *name, size_t len)
{
    int lo = 0;
    int hi = h->o->nodes - 1;
    char key[64];

    if (len >= sizeof(key))
        return NULL;
    memcpy(key, name, len);
    key[len] = '\0';
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int cmp = strcmp(h->nodes[mid].name, key);

        if (cmp == 0)
            return &h->nodes[mid];
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);

    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result api(void *cls, struct MHD_Connection *conn, const char *url,
                           const char *method, const char *version, const char *data, size_t *size,
                           void **state)
{
    struct hollow *h = cls;
    struct buf *body = *state;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const char *rest;
    const char *slash;
    struct hnode *n;
    struct event *e;
    bool stop;
    bool ok;

    (void)version;
    if (body == NULL) {
        body = xcalloc(1, sizeof(*body));
        buf_init(body);
        *state = body;
        return MHD_YES;
    }
    if (*size) {
        if (body->len < (1u << 20))
            buf_add(body, data, *size);
        *size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/healthz") == 0)
        return answer(conn, 200, "{\"status\": \"ok\"}");
    if (strncmp(url, "/n/", 3) != 0 || (slash = strchr(url + 3, '/')) == NULL)
        return answer(conn, 404,
                      "{\"error\": {\"code\": \"not_found\", \"message\": \"no such endpoint\"}}");
    n = node_by_name(h, url + 3, (size_t)(slash - url - 3));
    if (n == NULL)
        return answer(conn, 404,
                      "{\"error\": {\"code\": \"not_found\", \"message\": \"no such node\"}}");
    pthread_mutex_lock(&h->mu);
    ok = n->secret && auth && strncmp(auth, "Bearer ", 7) == 0 && crypto_equal(auth + 7, n->secret);
    pthread_mutex_unlock(&h->mu);
    if (!ok)
        return answer(conn, 401,
                      "{\"error\": {\"code\": \"unauthenticated\", \"message\": \"only the server "
                      "may call this agent\"}}");
    rest = slash;
    e = xcalloc(1, sizeof(*e));
    e->node = n;
    if (strcmp(rest, "/v1/tasks") == 0 && strcmp(method, "POST") == 0) {
        cJSON *a = json_parse(body->data, body->len);
        const char *id = json_get_string(a, "id");

        if (id == NULL) {
            cJSON_Delete(a);
            free(e);
            return answer(
                conn, 400,
                "{\"error\": {\"code\": \"invalid_argument\", \"message\": \"id is required\"}}");
        }
        e->task_id = xstrdup(id);
        cJSON_Delete(a);
    } else if (strncmp(rest, "/v1/tasks/", 10) == 0 && strcmp(method, "DELETE") == 0) {
        e->task_id = xstrdup(rest + 10);
        e->stop = true;
    } else {
        free(e);
        return answer(conn, 404,
                      "{\"error\": {\"code\": \"not_found\", \"message\": \"no such endpoint\"}}");
    }
    /* Once handed over, e belongs to the loop thread, which may free it
     * at once. */
    stop = e->stop;
    pthread_mutex_lock(&h->mu);
    e->next = h->events;
    h->events = e;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->async);
    return answer(conn, stop ? 200 : 201, "{}");
}

static void api_done(void *cls, struct MHD_Connection *conn, void **state,
                     enum MHD_RequestTerminationCode toe)
{
    struct buf *body = *state;

    (void)cls;
    (void)conn;
    (void)toe;
    if (body) {
        buf_release(body);
        free(body);
    }
    *state = NULL;
}

/* ---- start and stop ---- */

static void on_closed(uv_handle_t *hd)
{
    (void)hd;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct hollow *h = s->data;
    int i;

    (void)signum;
    log_info("hollow: stopping %d nodes", h->o->nodes);
    h->stopping = true;
    uvcurl_free(h->http);
    h->http = NULL;
    for (i = 0; i < h->o->nodes; i++) {
        struct hnode *n = &h->nodes[i];

        while (n->tasks)
            task_free(n->tasks);
        uv_close((uv_handle_t *)&n->timer, on_closed);
    }
    on_events(&h->async);
    uv_close((uv_handle_t *)&h->async, on_closed);
    uv_close((uv_handle_t *)&h->sigint, on_closed);
    uv_close((uv_handle_t *)&h->sigterm, on_closed);
    uv_close((uv_handle_t *)&h->sigusr1, on_closed);
}

int hollow_main(const struct hollow_opts *o)
{
    struct hollow h;
    struct MHD_Daemon *d;
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    const union MHD_DaemonInfo *info;
    char port[16];
    int i;

    memset(&h, 0, sizeof(h));
    h.o = o;
    pthread_mutex_init(&h.mu, NULL);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", o->port);
    if (getaddrinfo(o->host, port, &hints, &res) != 0 || res == NULL) {
        log_error("hollow: cannot resolve '%s'", o->host);
        return 1;
    }
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
                         NULL, NULL, api, &h, MHD_OPTION_SOCK_ADDR, res->ai_addr,
                         MHD_OPTION_NOTIFY_COMPLETED, api_done, NULL, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned int)4096, MHD_OPTION_END);
    freeaddrinfo(res);
    if (d == NULL) {
        log_error("hollow: cannot listen on %s:%u", o->host, o->port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    h.base_url = xasprintf("http://%s:%u", o->advertise ? o->advertise : o->host,
                           info ? info->port : o->port);
    uv_loop_init(&h.loop);
    uv_async_init(&h.loop, &h.async, on_events);
    h.async.data = &h;
    uv_signal_init(&h.loop, &h.sigint);
    uv_signal_init(&h.loop, &h.sigterm);
    h.sigint.data = &h;
    h.sigterm.data = &h;
    uv_signal_start(&h.sigint, on_signal, SIGINT);
    uv_signal_start(&h.sigterm, on_signal, SIGTERM);
    uv_signal_init(&h.loop, &h.sigusr1);
    h.sigusr1.data = &h;
    if (o->heartbeat_stats) {
        h.stats = xcalloc(1, sizeof(*h.stats));
        uv_signal_start(&h.sigusr1, on_sigusr1, SIGUSR1);
    }
    h.http = uvcurl_new(&h.loop);
    uvcurl_set_max_connections(h.http, 64);
    h.nodes = xcalloc((size_t)o->nodes, sizeof(*h.nodes));
    for (i = 0; i < o->nodes; i++) {
        struct hnode *n = &h.nodes[i];

        n->h = &h;
        snprintf(n->name, sizeof(n->name), "%s-%05d", o->prefix, i);
        uv_timer_init(&h.loop, &n->timer);
        n->timer.data = n;
        /* Joins spread over a second, not all at once. */
        uv_timer_start(&n->timer, on_node_timer, (uint64_t)(i * 1000 / (o->nodes + 1)), 0);
    }
    log_info("hollow: %d nodes serving on %s/n/NAME", o->nodes, h.base_url);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    MHD_stop_daemon(d);
    uv_loop_close(&h.loop);
    stats_report(&h, "exit");
    free(h.stats);
    while (h.events) {
        struct event *e = h.events;

        h.events = e->next;
        free(e->task_id);
        free(e);
    }
    for (i = 0; i < o->nodes; i++)
        free(h.nodes[i].secret);
    free(h.nodes);
    free(h.base_url);
    pthread_mutex_destroy(&h.mu);
    log_info("hollow: stopped");
    return 0;
}
