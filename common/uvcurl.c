/*
 * uvcurl.c - curl multi on libuv. The pattern of curl's multi-uv example,
 * with the pitfalls of STYLE.md handled: poll contexts are made once per
 * socket and remembered with curl_multi_assign(), freed in close
 * callbacks; a poll error reaches curl as CURL_CSELECT_ERR; the timer
 * callback only arms a uv timer.
 *
 * What is inside curl at once is capped per host (scheme://host:port, or
 * the Unix socket): twice the connections curl may open to it
 * (uvcurl_set_max_connections, default 8); the rest wait here, in order,
 * per host. curl (7.88) walks its list of transfers waiting for a
 * connection on every removal, which made each completion cost the
 * length of the backlog (tens of thousands of pushes to hollow nodes
 * sharing a host timed out waiting inside curl); and a request's timeout
 * now starts when it is handed to curl. Per host, so requests to an
 * unreachable agent hold up only that agent's.
 */
#include "common/uvcurl.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* The requests of one host: how many are inside curl, and those waiting
 * to be (oldest first). Freed when it has neither. */
struct host {
    char *key;
    int in_curl;
    struct request *wait_head;
    struct request *wait_tail;
    struct host *next; /* in its bucket */
};

struct uvcurl {
    uv_loop_t *loop;
    const char *ca_file;
    char *unix_socket;
    CURLM *multi;
    uv_timer_t timer;
    struct request *requests; /* in flight or waiting, for cancel at free */
    struct host **buckets; /* hosts by key; n_buckets a power of two */
    size_t n_buckets;
    size_t n_hosts;
    int active;
    int max_in_curl; /* per host */
    bool freeing;
};

/* Idle connections kept for reuse. */
#define MAX_IDLE_CONNECTIONS 128

struct request {
    struct uvcurl *uc;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    FILE *upload;
    FILE *download;
    struct buf resp;
    size_t max_body;
    bool too_big;
    void (*on_data)(void *arg, const char *data, size_t len);
    uvcurl_cb cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
    struct request *prev;
    struct request *next;
    struct host *host;
    struct request *next_waiting;
    bool waiting;
};

struct poll_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct uvcurl *uc;
};

static void check_done(struct uvcurl *uc);

/* ---- hosts ---- */

static size_t key_hash(const char *key, size_t len)
{
    size_t h = 1469598103934665603ull; /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h;
}

/* The host part of url (scheme://authority), or the socket for a client
 * of a Unix socket: *ret_len bytes from the returned pointer. */
static const char *host_key(const struct uvcurl *uc, const char *url, size_t *ret_len)
{
    const char *p;

    if (uc->unix_socket) {
        *ret_len = strlen(uc->unix_socket);
        return uc->unix_socket;
    }
    p = strstr(url, "://");
    p = p ? p + 3 : url;
    *ret_len = (size_t)(p - url) + strcspn(p, "/?#");
    return url;
}

static void hosts_grow(struct uvcurl *uc)
{
    size_t n = uc->n_buckets ? 2 * uc->n_buckets : 64;
    struct host **b = xcalloc(n, sizeof(*b));
    size_t i;

    for (i = 0; i < uc->n_buckets; i++) {
        struct host *h;

        while ((h = uc->buckets[i]) != NULL) {
            size_t k = key_hash(h->key, strlen(h->key)) & (n - 1);

            uc->buckets[i] = h->next;
            h->next = b[k];
            b[k] = h;
        }
    }
    free(uc->buckets);
    uc->buckets = b;
    uc->n_buckets = n;
}

static struct host *host_get(struct uvcurl *uc, const char *url)
{
    size_t len;
    const char *key = host_key(uc, url, &len);
    struct host *h;
    size_t k;

    if (uc->n_hosts >= uc->n_buckets)
        hosts_grow(uc);
    k = key_hash(key, len) & (uc->n_buckets - 1);
    for (h = uc->buckets[k]; h; h = h->next) {
        if (strlen(h->key) == len && memcmp(h->key, key, len) == 0)
            return h;
    }
    h = xcalloc(1, sizeof(*h));
    h->key = xstrndup(key, len);
    h->next = uc->buckets[k];
    uc->buckets[k] = h;
    uc->n_hosts++;
    return h;
}

/* Frees h when nothing of it is inside curl or waiting. */
static void host_put(struct uvcurl *uc, struct host *h)
{
    struct host **p;

    if (h->in_curl > 0 || h->wait_head)
        return;
    for (p = &uc->buckets[key_hash(h->key, strlen(h->key)) & (uc->n_buckets - 1)]; *p;
         p = &(*p)->next) {
        if (*p == h) {
            *p = h->next;
            break;
        }
    }
    uc->n_hosts--;
    free(h->key);
    free(h);
}

static void poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct poll_ctx *ctx = h->data;
    int flags = 0;
    int running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(ctx->uc->multi, ctx->fd, flags, &running);
    check_done(ctx->uc);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct uvcurl *uc = userp;
    struct poll_ctx *ctx = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ctx) {
            uv_poll_stop(&ctx->poll);
            curl_multi_assign(uc->multi, s, NULL);
            uv_close((uv_handle_t *)&ctx->poll, poll_closed);
        }
        return 0;
    }
    if (ctx == NULL) {
        ctx = xcalloc(1, sizeof(*ctx));
        ctx->fd = s;
        ctx->uc = uc;
        if (uv_poll_init_socket(uc->loop, &ctx->poll, s) != 0) {
            free(ctx);
            return -1;
        }
        ctx->poll.data = ctx;
        curl_multi_assign(uc->multi, s, ctx);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&ctx->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct uvcurl *uc = t->data;
    int running;

    curl_multi_socket_action(uc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(uc);
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    struct uvcurl *uc = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&uc->timer);
    else
        uv_timer_start(&uc->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct request *r = userp;
    size_t n = size * nmemb;

    if (r->download || r->on_data) {
        long status = 0;

        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300 && r->download)
            return fwrite(data, 1, n, r->download);
        if (status >= 200 && status < 300) {
            r->on_data(r->arg, data, n);
            return n;
        }
    }
    if (r->resp.len + n > r->max_body) {
        r->too_big = true;
        return 0; /* aborts the transfer */
    }
    buf_add(&r->resp, data, n);
    return n;
}

static void request_free(struct request *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    if (r->upload)
        fclose(r->upload);
    if (r->download)
        fclose(r->download);
    buf_release(&r->resp);
    free(r);
}

static void unlink_request(struct uvcurl *uc, struct request *r)
{
    if (!r->waiting)
        r->host->in_curl--;
    if (r->prev)
        r->prev->next = r->next;
    else
        uc->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    uc->active--;
}

static void finish(struct request *r, CURLcode result)
{
    struct uvcurl_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.body = &r->resp;
    if (result == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp.status);
    } else {
        resp.status = 0;
        resp.error = r->too_big ? "response body too large"
                                : (r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
    }
    if (r->download) {
        if (fclose(r->download) != 0 && resp.status >= 200 && resp.status < 300) {
            resp.status = 0;
            resp.error = "cannot write the downloaded file";
        }
        r->download = NULL;
    }
    r->cb(r->arg, &resp);
    request_free(r);
}

/* Hands h's waiting requests to curl while it has room; frees h when it
 * has nothing left. */
static void host_refill(struct uvcurl *uc, struct host *h)
{
    while (h->wait_head && h->in_curl < uc->max_in_curl && !uc->freeing) {
        struct request *r = h->wait_head;

        h->wait_head = r->next_waiting;
        if (h->wait_head == NULL)
            h->wait_tail = NULL;
        r->waiting = false;
        h->in_curl++;
        if (curl_multi_add_handle(uc->multi, r->easy) != CURLM_OK) {
            unlink_request(uc, r);
            finish(r, CURLE_FAILED_INIT);
        }
    }
    if (!uc->freeing)
        host_put(uc, h);
}

static void check_done(struct uvcurl *uc)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(uc->multi, &left)) != NULL) {
        struct request *r = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        /* msg is invalid after remove_handle: its fields were copied. */
        curl_multi_remove_handle(uc->multi, easy);
        unlink_request(uc, r);
        host_refill(uc, r->host);
        finish(r, result);
    }
}

struct uvcurl *uvcurl_new(uv_loop_t *loop)
{
    struct uvcurl *uc = xcalloc(1, sizeof(*uc));

    uc->loop = loop;
    uc->multi = curl_multi_init();
    if (uc->multi == NULL) {
        log_error("uvcurl: curl_multi_init failed");
        free(uc);
        return NULL;
    }
    uv_timer_init(loop, &uc->timer);
    uc->timer.data = uc;
    curl_multi_setopt(uc->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(uc->multi, CURLMOPT_SOCKETDATA, uc);
    curl_multi_setopt(uc->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    curl_multi_setopt(uc->multi, CURLMOPT_TIMERDATA, uc);
    curl_multi_setopt(uc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
    uc->max_in_curl = 2 * 8;
    /* Idle connections kept for reuse. curl's default follows the number
     * of transfers at hand, so a lull closed connections a burst then
     * opened again (hundreds a second under heartbeat load). */
    curl_multi_setopt(uc->multi, CURLMOPT_MAXCONNECTS, (long)MAX_IDLE_CONNECTIONS);
    return uc;
}

static void timer_closed(uv_handle_t *h)
{
    struct uvcurl *uc = h->data;

    free(uc);
}

void uvcurl_free(struct uvcurl *uc)
{
    struct uvcurl_response resp;
    size_t i;

    if (uc == NULL)
        return;
    uc->freeing = true;
    while (uc->requests) {
        struct request *r = uc->requests;

        if (!r->waiting)
            curl_multi_remove_handle(uc->multi, r->easy);
        unlink_request(uc, r);
        memset(&resp, 0, sizeof(resp));
        resp.status = UVCURL_CANCELED;
        resp.error = "canceled";
        resp.body = &r->resp;
        r->cb(r->arg, &resp);
        request_free(r);
    }
    curl_multi_cleanup(uc->multi);
    for (i = 0; i < uc->n_buckets; i++) {
        struct host *h;

        while ((h = uc->buckets[i]) != NULL) {
            uc->buckets[i] = h->next;
            free(h->key);
            free(h);
        }
    }
    free(uc->buckets);
    free(uc->unix_socket);
    uv_timer_stop(&uc->timer);
    uv_close((uv_handle_t *)&uc->timer, timer_closed);
}

void uvcurl_set_ca(struct uvcurl *uc, const char *file)
{
    uc->ca_file = file;
}

void uvcurl_set_unix_socket(struct uvcurl *uc, const char *path)
{
    free(uc->unix_socket);
    uc->unix_socket = xstrdup(path);
}

void uvcurl_set_max_connections(struct uvcurl *uc, long n)
{
    curl_multi_setopt(uc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
    uc->max_in_curl = n > 0 ? (int)(2 * n) : INT_MAX;
}

int uvcurl_active(const struct uvcurl *uc)
{
    return uc->active;
}

static size_t on_read(char *data, size_t size, size_t nmemb, void *userp)
{
    struct request *r = userp;

    return fread(data, size, nmemb, r->upload);
}

int uvcurl_start(struct uvcurl *uc, const struct uvcurl_request *req, uvcurl_cb cb, void *arg)
{
    struct request *r = xcalloc(1, sizeof(*r));
    char header[1024];
    CURL *e;

    buf_init(&r->resp);
    r->uc = uc;
    r->cb = cb;
    r->arg = arg;
    r->max_body = req->max_body ? req->max_body : 16u << 20;
    r->on_data = req->on_data;
    r->easy = e = curl_easy_init();
    if (e == NULL)
        goto err;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms < 0 ? 0L
                     : req->timeout_ms   ? req->timeout_ms
                                         : 30000L);
    if (uc->unix_socket)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, uc->unix_socket);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    if (uc->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, uc->ca_file);
    if (req->bearer) {
        snprintf(header, sizeof(header), "Authorization: Bearer %s", req->bearer);
        r->headers = curl_slist_append(r->headers, header);
    }
    if (req->content_type) {
        snprintf(header, sizeof(header), "Content-Type: %s", req->content_type);
        r->headers = curl_slist_append(r->headers, header);
    }
    /* No "Expect: 100-continue" round trip before bodies. */
    r->headers = curl_slist_append(r->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (req->body_file) {
        long long size;

        r->upload = fopen(req->body_file, "rb");
        if (r->upload == NULL || fseeko(r->upload, 0, SEEK_END) != 0 ||
            (size = ftello(r->upload)) < 0 || fseeko(r->upload, 0, SEEK_SET) != 0) {
            log_warn("uvcurl: cannot read '%s': %s", req->body_file, strerror(errno));
            goto err;
        }
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
        /* CURLOPT_UPLOAD means PUT; the custom request keeps our method. */
    } else if (req->body) {
        r->body = xmalloc(req->body_len ? req->body_len : 1);
        memcpy(r->body, req->body, req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    if (req->download_file) {
        int fd = open(req->download_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd < 0 || (r->download = fdopen(fd, "wb")) == NULL) {
            log_warn("uvcurl: cannot write '%s': %s", req->download_file, strerror(errno));
            if (fd >= 0)
                close(fd);
            goto err;
        }
    }
    r->host = host_get(uc, req->url);
    if (r->host->in_curl >= uc->max_in_curl) {
        r->waiting = true;
        if (r->host->wait_tail)
            r->host->wait_tail->next_waiting = r;
        else
            r->host->wait_head = r;
        r->host->wait_tail = r;
    } else if (curl_multi_add_handle(uc->multi, e) != CURLM_OK) {
        host_put(uc, r->host);
        goto err;
    } else {
        r->host->in_curl++;
    }
    r->next = uc->requests;
    if (uc->requests)
        uc->requests->prev = r;
    uc->requests = r;
    uc->active++;
    return 0;
err:
    request_free(r);
    return ERR_INTERNAL;
}
