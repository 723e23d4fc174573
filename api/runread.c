/*
 * runread.c - reading a run while and after it runs: logs (with follow),
 * metrics and their series, artifacts, and server-sent events.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "common/banned.h"

static bool query_int(struct api_request *req, struct api_response *resp, const char *key,
                      int64_t min, int64_t max, int64_t *ret)
{
    const char *s = req->query(req->conn, key);

    if (s == NULL)
        return true;
    if (!parse_int64(s, min, max, ret)) {
        api_error(resp, ERR_INVALID, key, "%s must be an integer from %lld to %lld", key,
                  (long long)min, (long long)max);
        return false;
    }
    return true;
}

static bool query_flag(struct api_request *req, const char *key)
{
    const char *s = req->query(req->conn, key);

    return s && (strcmp(s, "1") == 0 || strcmp(s, "true") == 0);
}

/* ---- logs ---- */

/* The most log text one poll of a follower reads: a poll runs on an
 * HTTP thread, and a long backlog goes out over several. */
#define FOLLOW_READ_MAX (256 * 1024)

struct log_stream {
    struct api_stream base;
    struct api_ctx *ctx;
    char *run_id;
    char *task;
    struct store_log_cursor cur; /* reads only what is new */
    size_t skip; /* of the text, what the client's offset left out */
};

static int log_next(struct api_stream *stream, struct buf *out, bool *ret_done)
{
    struct log_stream *ls = (struct log_stream *)stream;
    size_t start = out->len;
    bool ended = false;
    int rc;

    rc = store_run_log_next(ls->ctx->store, ls->run_id, ls->task, &ls->cur, FOLLOW_READ_MAX, out,
                            &ended);
    if (ls->skip > 0) {
        size_t n = out->len - start < ls->skip ? out->len - start : ls->skip;

        memmove(out->data + start, out->data + start + n, out->len - start - n);
        out->len -= n;
        out->data[out->len] = '\0';
        ls->skip -= n;
    }
    *ret_done = rc < 0 || ended || __atomic_load_n(&ls->ctx->shutting_down, __ATOMIC_RELAXED);
    return 0;
}

static void log_free(struct api_stream *stream)
{
    struct log_stream *ls = (struct log_stream *)stream;

    followers_release(ls->run_id);
    store_log_cursor_release(&ls->cur);
    free(ls->run_id);
    free(ls->task);
    free(ls);
}

void api_runs_logs(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *task = req->query(req->conn, "task");
    int64_t offset = 0;
    struct buf text;
    bool ended;
    bool follow;
    int rc;

    if (!query_int(req, resp, "offset", 0, INT64_MAX, &offset))
        return;
    buf_init(&text);
    follow = query_flag(req, "follow");
    if (follow) {
        /* The run and task are checked by one read of nothing. */
        struct store_log_cursor cur;

        store_log_cursor_init(&cur);
        rc = store_run_log_next(ctx->store, req->params[0], task, &cur, 0, &text, &ended);
        store_log_cursor_release(&cur);
        buf_reset(&text);
    } else {
        rc = store_run_log(ctx->store, req->params[0], task, &text, &ended);
    }
    if (rc < 0) {
        buf_release(&text);
        if (rc == ERR_NOT_FOUND && task)
            api_error(resp, rc, "task", "run '%s' or its task '%s' not found", req->params[0],
                      task);
        else
            reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; charset=utf-8";
    if (follow) {
        struct log_stream *ls;

        if (!followers_acquire(ctx, req->params[0], resp)) {
            buf_release(&text);
            return;
        }
        ls = xcalloc(1, sizeof(*ls));
        store_log_cursor_init(&ls->cur);
        ls->skip = (size_t)offset;
        ls->base.next = log_next;
        ls->base.free = log_free;
        ls->ctx = ctx;
        ls->run_id = xstrdup(req->params[0]);
        ls->task = task ? xstrdup(task) : NULL;
        resp->stream = &ls->base;
    } else if ((size_t)offset < text.len) {
        buf_add(&resp->body, text.data + offset, text.len - (size_t)offset);
    }
    buf_release(&text);
}

/* ---- metrics ---- */

void api_runs_metrics(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *out;
    int rc = store_run_metrics(ctx->store, req->params[0], &out);

    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    reply_json(resp, 200, out);
}

void api_runs_metric_series(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    int64_t max_points = 0;
    cJSON *out;
    int rc;

    if (!query_int(req, resp, "max_points", 1, 1000000, &max_points))
        return;
    rc = store_run_metric_series(ctx->store, req->params[0], req->params[1], (int)max_points, &out);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    reply_json(resp, 200, out);
}

/* ---- artifacts ---- */

void api_runs_artifacts(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    cJSON *out;
    int rc = store_run_artifacts(ctx->store, req->params[0], &out);

    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    reply_json(resp, 200, out);
}

void api_runs_artifact_get(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *task = req->query(req->conn, "task");
    char name[128];
    char path[8192];
    struct stat st;
    int fd;
    int rc;

    rc = store_artifact_find(ctx->store, req->params[0], req->params[1], task, name, sizeof(name));
    if (rc == ERR_NOT_FOUND) {
        api_error(resp, rc, NULL, "run '%s' has no artifact '%s'%s%s", req->params[0],
                  req->params[1], task ? " from task " : "", task ? task : "");
        return;
    }
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    snprintf(path, sizeof(path), "%s/artifacts/%s/%s/%s", ctx->data_dir, req->params[0], name,
             req->params[1]);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        log_error("artifacts: '%s' is recorded but cannot be read: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        api_error(resp, ERR_INTERNAL, NULL, "artifact '%s' cannot be read", req->params[1]);
        return;
    }
    resp->status = 200;
    resp->content_type = "application/octet-stream";
    resp->fd = fd;
    resp->fd_size = st.st_size;
}

/* ---- server-sent events ---- */

struct event_stream {
    struct api_stream base;
    struct api_ctx *ctx;
    char *run_id;
    char *last_status; /* run status and task statuses last sent */
    int64_t last_point;
    struct store_log_cursor log; /* reads only what is new */
    int64_t last_emit_ms;
    bool finished;
};

static void sse(struct buf *out, const char *event, const cJSON *data)
{
    char *text = json_print(data);

    buf_printf(out, "event: %s\ndata: %s\n\n", event, text);
    free(text);
}

static int events_next(struct api_stream *stream, struct buf *out, bool *ret_done)
{
    struct event_stream *es = (struct event_stream *)stream;
    size_t before = out->len;
    struct buf text;
    cJSON *run = NULL;
    cJSON *points = NULL;
    cJSON *p;
    bool ended = false;
    char *status;
    int64_t now = time_now_ms();

    if (es->finished || __atomic_load_n(&es->ctx->shutting_down, __ATOMIC_RELAXED)) {
        *ret_done = true;
        return 0;
    }
    if (store_run_get(es->ctx->store, es->run_id, &run) < 0) {
        *ret_done = true;
        return 0;
    }
    /* The whole run goes out when its status or a task's status moved. */
    {
        cJSON *sig = cJSON_CreateArray();
        const cJSON *t;

        cJSON_AddItemToArray(sig, cJSON_CreateString(json_get_string(run, "status")));
        cJSON_ArrayForEach(t, json_get(run, "tasks")) {
            cJSON_AddItemToArray(sig, cJSON_CreateString(json_get_string(t, "status")));
        }
        status = json_print(sig);
        cJSON_Delete(sig);
    }
    if (es->last_status == NULL || strcmp(status, es->last_status) != 0) {
        sse(out, "status", run);
        free(es->last_status);
        es->last_status = status;
    } else {
        free(status);
    }
    if (store_run_points_since(es->ctx->store, es->run_id, es->last_point, 5000, &points,
                               &es->last_point) == 0) {
        cJSON_ArrayForEach(p, points) {
            sse(out, "metric", p);
        }
        cJSON_Delete(points);
    }
    buf_init(&text);
    if (store_run_log_next(es->ctx->store, es->run_id, NULL, &es->log, FOLLOW_READ_MAX, &text,
                           &ended) == 0) {
        char *line = text.data;
        char *nl;

        while ((nl = memchr(line, '\n', (size_t)(text.data + text.len - line))) != NULL) {
            cJSON *data = cJSON_CreateObject();
            char *copy = xstrndup(line, (size_t)(nl - line));

            cJSON_AddStringToObject(data, "line", copy);
            sse(out, "log", data);
            cJSON_Delete(data);
            free(copy);
            line = nl + 1;
        }
    }
    buf_release(&text);
    if (out->len > before) {
        es->last_emit_ms = now;
    } else if (now - es->last_emit_ms > 15000) {
        /* Keeps proxies from closing an idle stream. */
        buf_adds(out, ": keepalive\n\n");
        es->last_emit_ms = now;
    }
    if (ended)
        es->finished = true; /* one more call sends nothing and ends */
    cJSON_Delete(run);
    *ret_done = false;
    return 0;
}

static void events_free(struct api_stream *stream)
{
    struct event_stream *es = (struct event_stream *)stream;

    followers_release(es->run_id);
    store_log_cursor_release(&es->log);
    free(es->run_id);
    free(es->last_status);
    free(es);
}

void api_runs_events(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    struct event_stream *es;
    cJSON *run;
    int rc = store_run_get(ctx->store, req->params[0], &run);

    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "run", req->params[0]);
        return;
    }
    cJSON_Delete(run);
    if (!followers_acquire(ctx, req->params[0], resp))
        return;
    es = xcalloc(1, sizeof(*es));
    store_log_cursor_init(&es->log);
    es->base.next = events_next;
    es->base.free = events_free;
    es->ctx = ctx;
    es->run_id = xstrdup(req->params[0]);
    es->last_emit_ms = time_now_ms();
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp->stream = &es->base;
}
