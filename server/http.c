/*
 * http.c - the libmicrohttpd glue: per-request state, body limits,
 * spooling uploads, authentication before the body is read, and turning a
 * struct api_response into an MHD response. Runs on MHD's threads.
 *
 * A request goes through the access handler at least twice (see STYLE.md,
 * libmicrohttpd pitfalls): the first call matches the route and checks
 * credentials, content type and Content-Length, answering at once when
 * one fails; body calls accumulate; the last call runs the handler.
 */
#include "server/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/stall.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/coding.h"
#include "server/conns.h"
#include "server/routes.h"
#include "server/stream.h"
#include "server/workers.h"
#include "common/banned.h"

struct request {
    struct http *http;
    int64_t start_us;
    const struct route *route;
    char *params[API_MAX_PARAMS];
    int n_params;
    struct api_request req;
    struct buf body;
    int spool_fd;
    char *spool_path;
    int64_t body_size;
    bool too_large;
    bool io_failed;
    bool close; /* close the connection after the answer */
    bool decoding; /* the body has a Content-Encoding, undone in coding */
    struct coding coding;
    int coding_rc; /* how decoding failed, when it did */
    int io_errno; /* why, when io_failed */
    api_finish_fn finish; /* a deferred answer, not given yet */
    void *finish_arg;
    bool offloaded; /* the handler is to run again on a worker */
    struct api_response worker_resp; /* what it answered there */
};

static struct request *request_of(struct api_request *req)
{
    return (struct request *)((char *)req - offsetof(struct request, req));
}

/* Deferred requests (api_request.defer), so that the daemon is not
 * stopped with a connection still parked (MHD would abort). */
static pthread_mutex_t defer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t defer_cv = PTHREAD_COND_INITIALIZER;
static int deferred;
static bool defer_closed;

static bool defer(struct api_request *req, api_finish_fn finish, void *arg)
{
    struct request *r = request_of(req);

    pthread_mutex_lock(&defer_mu);
    if (defer_closed) {
        pthread_mutex_unlock(&defer_mu);
        return false;
    }
    deferred++;
    pthread_mutex_unlock(&defer_mu);
    r->finish = finish;
    r->finish_arg = arg;
    MHD_suspend_connection(req->conn);
    return true;
}

static void resume(struct api_request *req)
{
    /* req may be gone as soon as the connection is resumed. */
    MHD_resume_connection(req->conn);
    pthread_mutex_lock(&defer_mu);
    if (--deferred == 0)
        pthread_cond_broadcast(&defer_cv);
    pthread_mutex_unlock(&defer_mu);
}

size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *p;

    (void)cls;
    (void)conn;
    for (p = strchr(s, '%'); p; p = strchr(p + 1, '%')) {
        if (p[1] == '0' && p[2] == '0')
            p[2] = '1';
    }
    return MHD_http_unescape(s);
}

void http_drain(void)
{
    pthread_mutex_lock(&defer_mu);
    defer_closed = true;
    while (deferred > 0)
        pthread_cond_wait(&defer_cv, &defer_mu);
    pthread_mutex_unlock(&defer_mu);
}

/* Handlers on worker threads wait on their writes there: no parking. */
static bool no_defer(struct api_request *req, api_finish_fn finish, void *arg)
{
    (void)req;
    (void)finish;
    (void)arg;
    return false;
}

/* A worker thread: runs the handler of a parked request. */
static void worker_run(void *arg)
{
    struct request *r = arg;

    r->req.defer = no_defer;
    r->req.may_block = true;
    r->route->handler(r->http->ctx, &r->req, &r->worker_resp);
    resume(&r->req);
}

/* Back on an HTTP thread: the worker's answer is the answer. */
static void worker_finish(struct api_ctx *ctx, struct api_request *req, struct api_response *resp,
                          void *arg)
{
    struct request *r = arg;

    (void)ctx;
    (void)req;
    if (resp) {
        api_response_release(resp);
        *resp = r->worker_resp;
    } else {
        api_response_release(&r->worker_resp);
    }
}

/* Parks the request and hands its handler to a worker; false when the
 * server is stopping (the handler then runs here). */
static bool to_worker(struct request *r)
{
    if (!defer(&r->req, worker_finish, r))
        return false;
    api_response_init(&r->worker_resp);
    workers_submit(r->req.principal.role == API_ROLE_AGENT ? WORKERS_AGENT : WORKERS_USER,
                   worker_run, r);
    return true;
}

static bool offload(struct api_request *req)
{
    if (req->may_block)
        return false;
    request_of(req)->offloaded = true;
    return true;
}

static void request_free(struct http *http, struct request *r)
{
    int i;

    if (r->finish)
        r->finish(http->ctx, &r->req, NULL, r->finish_arg);

    for (i = 0; i < r->n_params; i++)
        free(r->params[i]);
    buf_release(&r->body);
    if (r->decoding)
        coding_release(&r->coding);
    if (r->spool_fd >= 0)
        close(r->spool_fd);
    if (r->spool_path) {
        /* A kept file was renamed away; its old name may belong to a newer
         * upload by now, so it is not touched. */
        if (!r->req.body_kept)
            unlink(r->spool_path);
        free(r->spool_path);
    }
    free(r);
}

void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    if (*req_cls)
        request_free(cls, *req_cls);
    *req_cls = NULL;
}

static const char *query_arg(void *conn, const char *key)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result send_response(struct http *http, struct MHD_Connection *conn,
                                     struct request *r, const char *method, const char *url,
                                     struct api_response *resp)
{
    struct MHD_Response *mr;
    enum MHD_Result ret;
    int64_t us;

    (void)http;
    if (resp->stream) {
        mr = stream_response(conn, resp->stream);
        resp->stream = NULL; /* taken over, freed with mr or already */
    } else if (resp->fd >= 0) {
        mr = MHD_create_response_from_fd64((uint64_t)resp->fd_size, resp->fd);
        if (mr)
            resp->fd = -1; /* MHD closes it */
    } else {
        size_t len;
        char *data = buf_detach(&resp->body, &len);

        mr = MHD_create_response_from_buffer_with_free_callback(len, data, free);
        if (mr == NULL)
            free(data);
    }
    if (mr == NULL) {
        api_response_release(resp);
        return MHD_NO;
    }
    if (resp->content_type)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->status == 401)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->close)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(conn, (unsigned int)resp->status, mr);
    MHD_destroy_response(mr);

    us = time_mono_us() - r->start_us;
    log_info("http: %s %s %d %lldus", method, url, resp->status, (long long)us);
    metrics_observe(r->route ? r->route->metrics_index : metrics_unmatched(method), resp->status,
                    us);
    api_response_release(resp);
    return ret;
}

/* Content-Type without parameters matches want (case-insensitive). */
static bool media_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want);

    if (ct == NULL || strncasecmp(ct, want, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/* The most body bytes route takes. */
static int64_t body_limit(const struct http *http, const struct route *route)
{
    switch (route->body) {
    case ROUTE_BODY_UPLOAD:
        return http->ctx->max_snapshot_bytes;
    case ROUTE_BODY_FILE:
        return http->ctx->max_artifact_bytes;
    case ROUTE_BODY_RAW:
        return ROUTE_RAW_MAX;
    default:
        return ROUTE_JSON_MAX;
    }
}

static bool spooled(const struct route *route)
{
    return route->body == ROUTE_BODY_UPLOAD || route->body == ROUTE_BODY_FILE;
}

/* Whether route reads a body at all: not one anybody may call without a
 * token, and not a GET or DELETE. */
static bool takes_body(const struct route *route)
{
    return route->roles != API_ROLES_NONE && strcmp(route->method, "GET") != 0 &&
           strcmp(route->method, "DELETE") != 0;
}

/* Sets up decoding of a body sent with a Content-Encoding; false with resp
 * set for a coding the server does not know. */
static bool content_coding(struct MHD_Connection *conn, struct request *r,
                           struct api_response *resp)
{
    const char *ce = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    enum coding_kind kind = coding_parse(ce);

    switch (kind) {
    case CODING_IDENTITY:
        return true;
    case CODING_GZIP:
    case CODING_DEFLATE:
        coding_init(&r->coding, kind);
        r->decoding = true;
        return true;
    case CODING_UNKNOWN:
        break;
    }
    api_error(resp, ERR_MEDIA_TYPE, NULL,
              "Content-Encoding '%s' is not supported; send the body as is, or with gzip or "
              "deflate",
              ce);
    return false;
}

/* Checks done before any body is read; false with resp set. */
static bool precheck(struct http *http, struct MHD_Connection *conn, struct request *r,
                     const char *method, const char *url, const char *version,
                     struct api_response *resp)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    bool has_body = (cl && strcmp(cl, "0") != 0) || te != NULL;
    int64_t limit;

    /* RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request
     * without Host (MHD 0.9.75 lets it through). */
    if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST) == NULL) {
        api_error(resp, ERR_INVALID, NULL, "an HTTP/1.1 request needs a Host header");
        r->close = true;
        return false;
    }
    if (r->route == NULL) {
        api_error(resp, ERR_NOT_FOUND, NULL, "no such endpoint: %s %s", method, url);
        return false;
    }
    r->req.method = method;
    r->req.path = url;
    if (has_body && !takes_body(r->route)) {
        /* Refused on the headers: nothing of it is read or kept (300
         * bodies of 1 MiB sent to /healthz held 300 MiB). */
        api_error(resp, ERR_TOO_LARGE, NULL, "%s %s takes no request body", method,
                  r->route->pattern);
        return false;
    }
    if (!api_authenticate(http->ctx, auth, r->route->roles, &r->req, resp))
        return false;
    limit = body_limit(http, r->route);
    if (r->route->body == ROUTE_BODY_UPLOAD) {
        if (!media_type_is(ct, "application/gzip") && !media_type_is(ct, "application/x-gzip")) {
            api_error(resp, ERR_MEDIA_TYPE, NULL,
                      "Content-Type must be application/gzip (a .tar.gz), not '%s'",
                      ct ? ct : "(none)");
            return false;
        }
    } else if (r->route->body == ROUTE_BODY_RAW || r->route->body == ROUTE_BODY_FILE) {
        if (has_body && ct && !media_type_is(ct, "application/octet-stream") &&
            !media_type_is(ct, "text/plain")) {
            api_error(resp, ERR_MEDIA_TYPE, NULL,
                      "Content-Type must be application/octet-stream, not '%s'", ct);
            return false;
        }
    } else {
        if (has_body && !media_type_is(ct, "application/json")) {
            api_error(resp, ERR_MEDIA_TYPE, NULL, "Content-Type must be application/json, not '%s'",
                      ct ? ct : "(none)");
            return false;
        }
    }
    if (has_body && !content_coding(conn, r, resp))
        return false;
    if (cl) {
        char *end;
        long long n;

        errno = 0;
        n = strtoll(cl, &end, 10);
        if (errno == 0 && *end == '\0' && n > limit) {
            api_error(resp, ERR_TOO_LARGE, NULL, "the body is %lld bytes; the limit is %lld", n,
                      (long long)limit);
            return false;
        }
    }
    if (spooled(r->route)) {
        r->spool_path = xasprintf("%s/tmp/upload-XXXXXX", http->ctx->data_dir);
        r->spool_fd = mkostemp(r->spool_path, O_CLOEXEC);
        if (r->spool_fd < 0) {
            int e = errno;

            log_error("http: cannot create '%s': %s", r->spool_path, strerror(e));
            free(r->spool_path);
            r->spool_path = NULL;
            if (err_from_errno(e) == ERR_NO_SPACE)
                api_error_no_space(http->ctx, resp);
            else
                api_error(resp, ERR_INTERNAL, NULL, "cannot accept uploads now");
            return false;
        }
    }
    return true;
}

/* Keeps a piece of the (decoded) body; false once it cannot take more. */
static bool keep_body(void *arg, const char *data, size_t size)
{
    struct request *r = arg;
    int64_t limit = body_limit(r->http, r->route);

    if (r->too_large || r->io_failed)
        return false;
    if (r->body_size + (int64_t)size > limit) {
        r->too_large = true;
        return false;
    }
    r->body_size += (int64_t)size;
    if (spooled(r->route)) {
        while (size > 0) {
            ssize_t n = write(r->spool_fd, data, size);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                r->io_errno = n < 0 ? errno : ENOSPC;
                log_error("http: cannot spool upload: %s", strerror(r->io_errno));
                r->io_failed = true;
                return false;
            }
            data += n;
            size -= (size_t)n;
        }
    } else {
        buf_add(&r->body, data, size);
    }
    return true;
}

/* A piece of the body as it came: decoded first when it has a coding. The
 * decoded size is what the route's limit bounds. */
static void take_body(struct request *r, const char *data, size_t size)
{
    if (r->too_large || r->io_failed || r->coding_rc < 0)
        return;
    if (r->decoding)
        r->coding_rc = coding_feed(&r->coding, data, size, keep_body, r);
    else
        keep_body(r, data, size);
}

/* A connection taken past a cap gets the error at its first request, and
 * is closed after it: true with resp set. */
static bool over_cap(struct MHD_Connection *conn, struct request *r, struct api_response *resp)
{
    switch (conns_verdict(conn)) {
    case CONNS_OK:
        return false;
    case CONNS_PEER_FULL:
        api_error(resp, ERR_TOO_MANY, NULL,
                  "this client address has more connections open than the server takes "
                  "(--max-connections-per-ip); close some and retry");
        break;
    case CONNS_SERVER_FULL:
        api_error(resp, ERR_UNAVAILABLE, NULL,
                  "the server has more connections open than it takes (--max-connections); "
                  "retry later");
        break;
    }
    r->close = true;
    return true;
}

static enum MHD_Result handle(struct http *http, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls);

enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **req_cls)
{
    int64_t token = stall_enter();
    enum MHD_Result ret;

    ret = handle(cls, conn, url, method, version, upload_data, upload_data_size, req_cls);
    stall_leave(token);
    return ret;
}

static enum MHD_Result handle(struct http *http, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    struct request *r = *req_cls;
    struct api_response resp;
    int64_t limit;

    if (r == NULL) {
        conns_headers_done(conn);
        r = xcalloc(1, sizeof(*r));
        r->http = http;
        r->start_us = time_mono_us();
        r->spool_fd = -1;
        buf_init(&r->body);
        *req_cls = r;
        api_response_init(&resp);
        /* Matched first, so that every answer below is counted under its route. */
        r->route = routes_match(method, url, r->params, &r->n_params);
        if (over_cap(conn, r, &resp) || !precheck(http, conn, r, method, url, version, &resp))
            return send_response(http, conn, r, method, url, &resp);
        api_response_release(&resp);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        take_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }

    api_response_init(&resp);
    if (r->finish) {
        /* Resumed: the deferred answer is ready. */
        api_finish_fn finish = r->finish;

        r->finish = NULL;
        finish(http->ctx, &r->req, &resp, r->finish_arg);
        return send_response(http, conn, r, method, url, &resp);
    }
    limit = body_limit(http, r->route);
    if (r->too_large) {
        api_error(&resp, ERR_TOO_LARGE, NULL, "the body is over the limit of %lld bytes%s",
                  (long long)limit, r->decoding ? " once decoded" : "");
        return send_response(http, conn, r, method, url, &resp);
    }
    if (r->decoding && r->coding_rc == 0 && !r->io_failed) {
        r->coding_rc = coding_finish(&r->coding);
        if (r->coding_rc == 0)
            metrics_decoded_body(r->coding.kind == CODING_GZIP ? "gzip" : "deflate");
    }
    if (r->coding_rc < 0 && !r->io_failed) {
        if (r->coding_rc == ERR_INTERNAL)
            api_error(&resp, ERR_INTERNAL, NULL, "cannot decode the body now");
        else
            api_error(&resp, ERR_INVALID, NULL,
                      "the body is not valid %s data, as its Content-Encoding says",
                      r->coding.kind == CODING_GZIP ? "gzip" : "deflate (zlib)");
        return send_response(http, conn, r, method, url, &resp);
    }
    if (r->io_failed) {
        if (err_from_errno(r->io_errno) == ERR_NO_SPACE)
            api_error_no_space(http->ctx, &resp);
        else
            api_error(&resp, ERR_INTERNAL, NULL, "cannot store the upload");
        return send_response(http, conn, r, method, url, &resp);
    }
    memcpy(r->req.params, r->params, sizeof(r->params));
    r->req.n_params = r->n_params;
    r->req.query = query_arg;
    r->req.conn = conn;
    r->req.body = r->body.data;
    r->req.body_len = r->body.len;
    r->req.body_fd = r->spool_fd;
    r->req.body_path = r->spool_path;
    r->req.body_size = r->body_size;
    r->req.defer = defer;
    r->req.resume = resume;
    r->req.offload = offload;
    if (!r->route->quick && to_worker(r)) {
        api_response_release(&resp);
        return MHD_YES;
    }
    r->route->handler(http->ctx, &r->req, &resp);
    if (r->offloaded) {
        r->offloaded = false;
        api_response_release(&resp);
        if (to_worker(r))
            return MHD_YES;
        /* Stopping: it runs here after all, and may wait. */
        r->req.defer = no_defer;
        r->req.may_block = true;
        api_response_init(&resp);
        r->route->handler(http->ctx, &r->req, &resp);
    }
    if (r->finish) {
        /* Deferred: answered when resumed. */
        api_response_release(&resp);
        return MHD_YES;
    }
    return send_response(http, conn, r, method, url, &resp);
}
