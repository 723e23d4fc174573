/*
 * report.c - a task's reports to the server. Log lines are appended to
 * <task>/log and sent by byte offset; metric points are appended to
 * <task>/metrics.jsonl and sent in batches whose seq is the batch's end
 * offset, a batch being resent unchanged until acknowledged; statuses are
 * queued and resent until acknowledged, the final one only after every log
 * byte, metric point and output file has been delivered. Memory holds one
 * batch at a time; the rest waits on disk. Outputs are opened without
 * following links (the task owns that tree).
 */
#include "agent/task.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

void task_queue_status(struct task *t, enum task_status status, int exit_code, const char *message)
{
    struct status_msg *m = xcalloc(1, sizeof(*m));
    struct status_msg **p;

    assert(task_status_is_reportable(status));
    m->status = status;
    m->exit_code = exit_code;
    m->message = message ? xstrdup(message) : NULL;
    for (p = &t->statuses; *p; p = &(*p)->next)
        ;
    *p = m;
    task_pump(t);
}

static bool is_final(const struct status_msg *m)
{
    return task_status_is_ended(m->status);
}

/* ---- reporting ---- */

bool task_reporting(const struct task *t)
{
    return t->log_in_flight || t->metrics_in_flight || t->status_in_flight || t->upload_in_flight;
}

static void on_status_sent(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    struct status_msg *m = t->statuses;

    t->status_in_flight = false;
    if (resp->status == UVCURL_CANCELED) {
        task_release(t);
        return;
    }
    /* 2xx: delivered. 4xx: the server will never take it (the task is
     * gone there): drop it rather than retry forever. */
    if (resp->status >= 200 && resp->status < 500) {
        if (resp->status >= 400)
            log_warn("agent: server refused status '%s' of task '%s' (HTTP %ld)",
                     task_status_name(m->status), t->id, resp->status);
        t->statuses = m->next;
        if (is_final(m))
            t->final_acked = true;
        free(m->message);
        free(m);
        if (t->final_acked) {
            task_release(t);
            return;
        }
        task_pump(t);
    }
    /* Not delivered: the pump timer tries again, without spinning. */
}

static void on_logs_sent(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    cJSON *body;

    t->log_in_flight = false;
    if (resp->status == UVCURL_CANCELED) {
        task_release(t);
        return;
    }
    if (resp->status == 200 || resp->status == 409) {
        body = json_parse(resp->body->data, resp->body->len);
        if (body && cJSON_IsNumber(json_get(body, "log_size")))
            t->log_acked = (int64_t)json_get(body, "log_size")->valuedouble;
        cJSON_Delete(body);
    } else if (resp->status == 403 || resp->status == 404) {
        t->log_acked = t->log_size; /* the server will not take it */
    } else {
        return; /* the pump timer tries again */
    }
    task_pump(t);
}

static void on_metrics_sent(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;

    t->metrics_in_flight = false;
    if (resp->status == UVCURL_CANCELED) {
        task_release(t);
        return;
    }
    if ((resp->status >= 200 && resp->status < 300) || resp->status == 403 || resp->status == 404 ||
        resp->status == 400) {
        if (resp->status >= 400)
            log_warn("agent: server refused metrics of task '%s' (HTTP %ld)", t->id, resp->status);
        t->metrics_acked = t->batch_end;
        t->batch_end = 0;
        task_pump(t);
    }
}

static void on_uploaded(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;

    t->upload_in_flight = false;
    if (resp->status == UVCURL_CANCELED) {
        task_release(t);
        return;
    }
    /* No answer (the server is away) is not a failure: retry until it is
     * back. A refusal is retried a few times, then the file is skipped. */
    if (resp->status == 0)
        return; /* the pump timer tries again */
    if ((resp->status >= 200 && resp->status < 300) || ++t->upload_fails >= 5) {
        if (!(resp->status >= 200 && resp->status < 300))
            log_warn("agent: giving up on output '%s' of task '%s'",
                     cJSON_GetArrayItem(t->uploads, t->upload_next)->valuestring, t->id);
        t->upload_next++;
        t->upload_fails = 0;
    }
    task_pump(t);
}

static void send_logs(struct task *t)
{
    int64_t len = t->log_size - t->log_acked;
    char path[256];
    char *data;
    ssize_t n;

    if (len > LOG_CHUNK)
        len = LOG_CHUNK;
    data = xmalloc((size_t)len);
    n = pread(t->log_fd, data, (size_t)len, t->log_acked);
    if (n <= 0) {
        free(data);
        return;
    }
    snprintf(path, sizeof(path), "/api/v1/agent/tasks/%s/logs?offset=%lld", t->id,
             (long long)t->log_acked);
    if (agent_server_request(t->a, "POST", path, "application/octet-stream", data, (size_t)n, NULL,
                             NULL, on_logs_sent, t) == 0)
        t->log_in_flight = true;
    free(data);
}

static void send_metrics(struct task *t)
{
    char path[256];
    struct buf body;
    char *data;
    ssize_t n;
    int64_t len;
    int64_t i;
    bool first = true;

    if (t->batch_end == 0) {
        /* Cut a new batch at a line end; it is resent unchanged until acked. */
        len = t->metrics_size - t->metrics_acked;
        if (len > METRICS_BATCH)
            len = METRICS_BATCH;
        data = xmalloc((size_t)len);
        n = pread(t->metrics_fd, data, (size_t)len, t->metrics_acked);
        for (i = n - 1; i >= 0 && data[i] != '\n'; i--)
            ;
        free(data);
        if (i < 0)
            return;
        t->batch_end = t->metrics_acked + i + 1;
    }
    len = t->batch_end - t->metrics_acked;
    data = xmalloc((size_t)len + 1);
    n = pread(t->metrics_fd, data, (size_t)len, t->metrics_acked);
    if (n != len) {
        free(data);
        return;
    }
    data[len] = '\0';
    buf_init(&body);
    buf_printf(&body, "{\"seq\":%lld,\"points\":[", (long long)t->batch_end);
    for (i = 0; i < len;) {
        char *nl = memchr(data + i, '\n', (size_t)(len - i));
        int64_t end = nl ? nl - data : len;

        if (end > i) {
            if (!first)
                buf_addc(&body, ',');
            buf_add(&body, data + i, (size_t)(end - i));
            first = false;
        }
        i = end + 1;
    }
    buf_adds(&body, "]}");
    free(data);
    snprintf(path, sizeof(path), "/api/v1/agent/tasks/%s/metrics", t->id);
    if (agent_server_request(t->a, "POST", path, "application/json", body.data, body.len, NULL,
                             NULL, on_metrics_sent, t) == 0)
        t->metrics_in_flight = true;
    buf_release(&body);
}

/* Percent-encodes a relative path for a URL, keeping '/'. */
static void url_path(struct buf *out, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;

    for (p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == '/') {
            buf_addc(out, (char)*p);
        } else {
            buf_addc(out, '%');
            buf_addc(out, hex[*p >> 4]);
            buf_addc(out, hex[*p & 15]);
        }
    }
}

/* Opens output rel of the task without following a link anywhere on the
 * way (the task owns that tree and may have planted some since it was
 * listed): a regular file, or -1. */
static int open_output(struct task *t, const char *rel)
{
    int src = open(t->src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    char *under = xasprintf("outputs/%s", rel);
    int fd = src >= 0 ? open_regular_under(src, under) : -1;

    if (src >= 0)
        close(src);
    free(under);
    return fd;
}

static void send_upload(struct task *t)
{
    const char *rel = cJSON_GetArrayItem(t->uploads, t->upload_next)->valuestring;
    int fd = open_output(t, rel);
    char file[64];
    struct buf path;

    if (fd < 0) {
        log_warn("agent: output '%s' of task '%s' is no longer a regular file; skipped", rel,
                 t->id);
        t->upload_next++;
        return;
    }
    /* The open file itself, whatever its name points at by now. */
    snprintf(file, sizeof(file), "/proc/self/fd/%d", fd);
    buf_init(&path);
    buf_printf(&path, "/api/v1/agent/tasks/%s/artifacts/", t->id);
    url_path(&path, rel);
    if (agent_server_request(t->a, "PUT", path.data, "application/octet-stream", NULL, 0, file,
                             NULL, on_uploaded, t) == 0)
        t->upload_in_flight = true;
    else
        t->upload_next++; /* vanished or unreadable: nothing to send */
    close(fd);
    buf_release(&path);
}

static void send_status(struct task *t)
{
    struct status_msg *m = t->statuses;
    char path[256];
    cJSON *body = cJSON_CreateObject();
    char *text;

    cJSON_AddStringToObject(body, "status", task_status_name(m->status));
    if (is_final(m) && m->exit_code >= 0)
        cJSON_AddNumberToObject(body, "exit_code", m->exit_code);
    if (m->message)
        cJSON_AddStringToObject(body, "message", m->message);
    text = json_print(body);
    cJSON_Delete(body);
    snprintf(path, sizeof(path), "/api/v1/agent/tasks/%s/status", t->id);
    if (agent_server_request(t->a, "POST", path, "application/json", text, strlen(text), NULL, NULL,
                             on_status_sent, t) == 0)
        t->status_in_flight = true;
    free(text);
}

void task_pump(struct task *t)
{
    bool delivered;
    int i;

    if (t->freeing || t->a->stopping)
        return;
    /* An exec whose caller (trainyard rsh) went away is not wanted. */
    for (i = 0; i < t->n_execs; i++) {
        if (!t->execs[i].ended && t->execs[i].pgid > 0 && exec_caller_gone(t->execs[i].stream))
            kill(-t->execs[i].pgid, SIGKILL);
    }
    if (!t->log_in_flight && t->log_size > t->log_acked)
        send_logs(t);
    if (!t->metrics_in_flight && (t->batch_end > 0 || t->metrics_size > t->metrics_acked))
        send_metrics(t);
    if (!t->upload_in_flight && t->uploads_listed &&
        t->upload_next < cJSON_GetArraySize(t->uploads))
        send_upload(t);
    delivered = t->log_acked >= t->log_size && t->metrics_acked >= t->metrics_size &&
                !t->log_in_flight && !t->metrics_in_flight && !t->upload_in_flight &&
                (!t->uploads_listed || t->upload_next >= cJSON_GetArraySize(t->uploads));
    /* The final status goes last, so a finished run has all it produced. */
    if (!t->status_in_flight && t->statuses && (!is_final(t->statuses) || delivered))
        send_status(t);
}

void task_on_pump_timer(uv_timer_t *timer)
{
    task_pump(timer->data);
}
