/*
 * agent.c - what agents report (SPEC §3.4): task status, metrics (once per
 * seq), logs (by offset) and output files. An agent token may report only
 * for tasks placed on its own node.
 */
#include <errno.h>
#include <math.h>
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
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "common/banned.h"

/* The node an agent token acts for, or "" for an admin. */
static const char *caller_node(struct api_request *req)
{
    return req->principal.role == API_ROLE_AGENT ? req->principal.node : "";
}

static void reply_task_error(const struct api_ctx *ctx, struct api_response *resp, int rc,
                             const char *task)
{
    if (rc == ERR_PERMISSION)
        api_error(resp, rc, NULL, "task '%s' is not placed on this agent's node", task);
    else
        reply_store_error(ctx, resp, rc, "task", task);
}

/* A status report waiting on its commit. */
struct report_job {
    struct api_job job;
    cJSON *in; /* message points into it */
    enum task_status status;
    const char *message;
    int exit_code;
    int64_t now;
};

static int report_store(struct api_job *job)
{
    struct report_job *r = (struct report_job *)job;
    struct api_request *req = job->req;

    return store_task_report_async(job->ctx->store, req->params[0], caller_node(req), r->status,
                                   r->exit_code, r->message, r->now, api_job_written, job);
}

static void report_answer(struct api_ctx *ctx, struct api_request *req, struct api_response *resp,
                          void *arg)
{
    struct report_job *r = arg;
    const char *task = req->params[0];
    cJSON *out;

    (void)ctx;
    if (resp == NULL) {
        /* The client went away: only free. */
    } else if (r->job.rc == ERR_CONFLICT) {
        api_error(resp, r->job.rc, NULL, "task '%s' is not assigned yet", task);
    } else if (r->job.rc < 0) {
        reply_task_error(ctx, resp, r->job.rc, task);
    } else {
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "task", task);
        reply_json(resp, 200, out);
    }
    cJSON_Delete(r->in);
    free(r);
}

void api_agent_status(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    static const char *const fields[] = { "status", "exit_code", "message", NULL };
    struct report_job *r;
    int status;
    const char *message;
    const cJSON *item;
    int64_t exit_code = -1;
    cJSON *in;

    if (!parse_object(req, resp, &in))
        return;
    if (!only_known_fields(in, fields, resp))
        goto bad;
    status = task_status_parse(json_get_string(in, "status"));
    if (status < 0 || !task_status_is_reportable((enum task_status)status)) {
        api_error(resp, ERR_INVALID, "status",
                  "status must be preparing, running, succeeded or failed");
        goto bad;
    }
    item = json_get(in, "exit_code");
    if (item && !cJSON_IsNull(item) && !json_int(item, -255, 255, &exit_code)) {
        api_error(resp, ERR_INVALID, "exit_code", "exit_code must be an integer from -255 to 255");
        goto bad;
    }
    item = json_get(in, "message");
    message = NULL;
    if (item && !cJSON_IsNull(item)) {
        if (!cJSON_IsString(item) || strlen(item->valuestring) > 4096) {
            api_error(resp, ERR_INVALID, "message",
                      "message must be a string of at most 4096 "
                      "characters");
            goto bad;
        }
        message = item->valuestring;
    }
    /* A signal death is reported as a negative code; the store keeps
     * 128+signal like a shell would show it. */
    if (exit_code < -1)
        exit_code = 128 - exit_code;
    r = xcalloc(1, sizeof(*r));
    r->job.ctx = ctx;
    r->job.req = req;
    r->job.kick = true;
    r->in = in;
    r->status = (enum task_status)status;
    r->message = message;
    r->exit_code = (int)exit_code;
    r->now = time_now_ms();
    api_job_start(&r->job, resp, report_answer, report_store);
    return;
bad:
    cJSON_Delete(in);
}

/* Reads a point's time: RFC 3339 text, or seconds since the epoch. */
static bool point_time(const cJSON *item, int64_t *ret_ms)
{
    if (item == NULL || cJSON_IsNull(item)) {
        *ret_ms = time_now_ms();
        return true;
    }
    if (cJSON_IsString(item))
        return time_parse_rfc3339(item->valuestring, ret_ms) == 0;
    if (cJSON_IsNumber(item) && isfinite(item->valuedouble) && item->valuedouble >= 0 &&
        item->valuedouble < 1e11) {
        *ret_ms = (int64_t)(item->valuedouble * 1000);
        return true;
    }
    return false;
}

/* A metric batch waiting on its commit. */
struct metrics_job {
    struct api_job job;
    cJSON *in; /* the points' names point into it */
    struct store_point *points;
    size_t n;
    int64_t seq;
    bool duplicate;
};

static int metrics_store(struct api_job *job)
{
    struct metrics_job *m = (struct metrics_job *)job;
    struct api_request *req = job->req;

    return store_task_metrics_async(job->ctx->store, req->params[0], caller_node(req), m->seq,
                                    m->points, m->n, &m->duplicate, api_job_written, job);
}

static void metrics_answer(struct api_ctx *ctx, struct api_request *req, struct api_response *resp,
                           void *arg)
{
    struct metrics_job *m = arg;
    cJSON *out;

    (void)ctx;
    if (resp == NULL) {
        /* The client went away: only free. */
    } else if (m->job.rc < 0) {
        reply_task_error(ctx, resp, m->job.rc, req->params[0]);
    } else {
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "seq", (double)m->seq);
        cJSON_AddBoolToObject(out, "duplicate", m->duplicate);
        reply_json(resp, 200, out);
    }
    free(m->points);
    cJSON_Delete(m->in);
    free(m);
}

void api_agent_metrics(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    static const char *const fields[] = { "seq", "points", NULL };
    const cJSON *points;
    cJSON *p;
    struct metrics_job *m;
    struct store_point *norm;
    size_t n = 0;
    cJSON *in;
    int64_t seq;

    if (!parse_object(req, resp, &in))
        return;
    if (!only_known_fields(in, fields, resp))
        goto bad;
    if (!json_int(json_get(in, "seq"), 0, INT64_C(1) << 53, &seq)) {
        api_error(resp, ERR_INVALID, "seq", "seq is required: a non-negative integer");
        goto bad;
    }
    points = json_get(in, "points");
    if (!cJSON_IsArray(points) || cJSON_GetArraySize(points) > 100000) {
        api_error(resp, ERR_INVALID, "points",
                  "points must be an array of at most 100000 "
                  "points");
        goto bad;
    }
    /* Checked into a C array; names stay in the parsed body. */
    norm = xcalloc((size_t)cJSON_GetArraySize(points) + 1, sizeof(*norm));
    cJSON_ArrayForEach(p, (cJSON *)points) {
        const char *name = json_get_string(p, "name");
        const cJSON *value = json_get(p, "value");
        int64_t step;
        int64_t when;

        if (name == NULL || name[0] == '\0' || strlen(name) > 128 || !cJSON_IsNumber(value) ||
            !isfinite(value->valuedouble) ||
            !json_int(json_get(p, "step"), 0, INT64_C(1) << 53, &step) ||
            !point_time(json_get(p, "time"), &when)) {
            free(norm);
            api_error(resp, ERR_INVALID, "points",
                      "each point needs a name (1 to 128 characters), a finite value, a "
                      "non-negative integer step and a time");
            goto bad;
        }
        norm[n].name = name;
        norm[n].value = value->valuedouble;
        norm[n].step = step;
        norm[n].time = when;
        n++;
    }
    m = xcalloc(1, sizeof(*m));
    m->job.ctx = ctx;
    m->job.req = req;
    m->in = in;
    m->points = norm;
    m->n = n;
    m->seq = seq;
    api_job_start(&m->job, resp, metrics_answer, metrics_store);
    return;
bad:
    cJSON_Delete(in);
}

/* A log chunk waiting on its commit; the bytes stay in the request. */
struct logs_job {
    struct api_job job;
    int64_t offset;
    int64_t log_size;
};

static int logs_store(struct api_job *job)
{
    struct logs_job *l = (struct logs_job *)job;
    struct api_request *req = job->req;

    return store_task_logs_async(job->ctx->store, req->params[0], caller_node(req), l->offset,
                                 req->body, req->body_len, &l->log_size, api_job_written, job);
}

static void logs_answer(struct api_ctx *ctx, struct api_request *req, struct api_response *resp,
                        void *arg)
{
    struct logs_job *l = arg;
    cJSON *out;

    (void)ctx;
    if (resp == NULL) {
        /* The client went away: only free. */
    } else if (l->job.rc == ERR_CONFLICT) {
        cJSON *err;

        out = cJSON_CreateObject();
        err = cJSON_AddObjectToObject(out, "error");
        cJSON_AddStringToObject(err, "code", "conflict");
        cJSON_AddStringToObject(err, "message",
                                "offset is past the end of the log received; "
                                "resend from log_size");
        cJSON_AddStringToObject(err, "field", "offset");
        cJSON_AddNumberToObject(out, "log_size", (double)l->log_size);
        reply_json(resp, 409, out);
    } else if (l->job.rc < 0) {
        reply_task_error(ctx, resp, l->job.rc, req->params[0]);
    } else {
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "log_size", (double)l->log_size);
        reply_json(resp, 200, out);
    }
    free(l);
}

void api_agent_logs(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *offset_arg = req->query(req->conn, "offset");
    struct logs_job *l;
    int64_t offset = 0;

    if (offset_arg && !parse_int64(offset_arg, 0, INT64_MAX, &offset)) {
        api_error(resp, ERR_INVALID, "offset", "offset must be a non-negative integer");
        return;
    }
    l = xcalloc(1, sizeof(*l));
    l->job.ctx = ctx;
    l->job.req = req;
    l->offset = offset;
    api_job_start(&l->job, resp, logs_answer, logs_store);
}

/* A relative path of clean components: no "", ".", "..", no leading or
 * trailing "/", no control characters (an encoded NUL arrives as 0x01). */
static bool artifact_path_ok(const char *path)
{
    const char *p = path;
    size_t n = strlen(path);

    if (n == 0 || n > 1024 || path[0] == '/' || path[n - 1] == '/')
        return false;
    for (p = path; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    }
    p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);

        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return true;
}

/* Removes the directories place_artifact() made, deepest first: from
 * final's last "/" back to the one at first_made. */
static void remove_made_dirs(char *final, size_t first_made)
{
    char *slash;

    while ((slash = strrchr(final, '/')) != NULL && (size_t)(slash - final) > first_made) {
        *slash = '\0';
        rmdir(final); /* a concurrent upload may have filled it: then it stays */
    }
}

/*
 * Moves the upload at from to final (<data>/artifacts/<run>/<task>/<path>;
 * the directories after from_dir are made as needed; path, at path_at,
 * is the artifact's path). Another artifact of the
 * task in the way, a file where path needs a directory or a directory
 * where path names a file, is ERR_INVALID with why set; then, as on any
 * failure, the directories made here are removed again. final is
 * modified and restored.
 */
static int place_artifact(char *final, size_t from_dir, size_t path_at, const char *path,
                          const char *from, char *why, size_t why_size)
{
    size_t first_made = 0;
    struct stat st;
    char *slash;
    int rc = 0;

    for (slash = strchr(final + from_dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (lstat(final, &st) == 0 && !S_ISDIR(st.st_mode)) {
            if ((size_t)(slash - final) > path_at) {
                snprintf(why, why_size,
                         "artifact path '%s' needs '%s' to be a directory, but the task "
                         "already uploaded a file '%s'",
                         path, final + path_at, final + path_at);
                rc = ERR_INVALID;
            } else {
                snprintf(why, why_size, "'%.300s' is not a directory", final);
                rc = ERR_INTERNAL;
            }
            *slash = '/';
            break;
        }
        if (mkdir(final, 0700) == 0) {
            if (first_made == 0)
                first_made = (size_t)(slash - final);
        } else if (errno != EEXIST) {
            snprintf(why, why_size, "cannot create '%.300s': %s", final, strerror(errno));
            *slash = '/';
            rc = ERR_INTERNAL;
            break;
        }
        *slash = '/';
    }
    if (rc == 0 && lstat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(why, why_size,
                 "artifact path '%s' is a directory of files the task already uploaded "
                 "('%s/...'); it cannot also be a file",
                 path, path);
        rc = ERR_INVALID;
    }
    if (rc == 0 && rename(from, final) < 0) {
        /* A concurrent upload of a clashing path got there first. */
        rc = errno == ENOTDIR || errno == EISDIR ? ERR_INVALID : ERR_INTERNAL;
        snprintf(why, why_size, "cannot store artifact '%s': %s", path, strerror(errno));
    }
    if (rc < 0 && first_made > 0)
        remove_made_dirs(final, first_made);
    return rc;
}

void api_agent_artifact(struct api_ctx *ctx, struct api_request *req, struct api_response *resp)
{
    const char *task = req->params[0];
    const char *path = req->params[1];
    char run_id[64];
    char name[128];
    char final[8192];
    char why[512];
    size_t from_dir;
    size_t path_at;
    cJSON *out;
    int rc;

    if (!artifact_path_ok(path)) {
        api_error(resp, ERR_INVALID, "path",
                  "artifact path '%s' must be relative, without '.', "
                  "'..', empty parts, a trailing '/' or control characters",
                  path);
        return;
    }
    rc = store_task_owner(ctx->store, task, caller_node(req), run_id, sizeof(run_id), name,
                          sizeof(name));
    if (rc < 0) {
        reply_task_error(ctx, resp, rc, task);
        return;
    }
    from_dir = strlen(ctx->data_dir);
    snprintf(final, sizeof(final), "%s/artifacts/%s/%s/", ctx->data_dir, run_id, name);
    path_at = strlen(final);
    snprintf(final + path_at, sizeof(final) - path_at, "%s", path);
    if (fsync(req->body_fd) < 0) {
        log_error("artifacts: cannot store '%s': %s", final, strerror(errno));
        if (err_from_errno(errno) == ERR_NO_SPACE)
            api_error_no_space(ctx, resp);
        else
            api_error(resp, ERR_INTERNAL, NULL, "cannot store the artifact");
        return;
    }
    rc = place_artifact(final, from_dir, path_at, path, req->body_path, why, sizeof(why));
    if (rc == ERR_INVALID) {
        api_error(resp, rc, "path", "%s", why);
        return;
    }
    if (rc < 0) {
        log_error("artifacts: %s", why);
        api_error(resp, ERR_INTERNAL, NULL, "cannot store the artifact");
        return;
    }
    req->body_kept = true;
    rc = store_artifact_put(ctx->store, task, path, req->body_size);
    if (rc < 0) {
        reply_store_error(ctx, resp, rc, "task", task);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "path", path);
    cJSON_AddNumberToObject(out, "size", (double)req->body_size);
    reply_json(resp, 201, out);
}
