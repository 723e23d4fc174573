/*
 * exec.c - the agent side of MPI remote launch. mpirun on the launcher's
 * node calls `trainyard rsh HOST orted ...`; the shim calls this agent's
 * /v1/exec with the run's exec secret; orted runs here in the worker
 * task's directory and environment, in its own process group, and is
 * killed when the shim goes away or the task is stopped.
 */
#include "agent/exec.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/docker.h"
#include "agent/internal.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/spawn.h"
#include "common/banned.h"

struct exec_stream {
    uv_mutex_t mu;
    struct buf data;
    size_t off;
    bool done;
    int exit_code;
    bool suspended;
    bool gone; /* the caller disconnected */
    bool marker_sent;
    bool last_was_newline;
    struct MHD_Connection *conn;
    int refs;
};

static void stream_unref_locked(struct exec_stream *s)
{
    if (--s->refs > 0) {
        uv_mutex_unlock(&s->mu);
        return;
    }
    uv_mutex_unlock(&s->mu);
    uv_mutex_destroy(&s->mu);
    buf_release(&s->data);
    free(s);
}

struct exec_stream *exec_stream_new(void)
{
    struct exec_stream *s = xcalloc(1, sizeof(*s));

    s->last_was_newline = true;
    uv_mutex_init(&s->mu);
    buf_init(&s->data);
    s->refs = 2;
    return s;
}

void exec_stream_unref(struct exec_stream *s)
{
    uv_mutex_lock(&s->mu);
    stream_unref_locked(s);
}

/* Loop thread: more output, or the end. */
void exec_stream_feed(struct exec_stream *s, const char *data, size_t len, bool done, int exit_code)
{
    uv_mutex_lock(&s->mu);
    if (len)
        buf_add(&s->data, data, len);
    if (done) {
        s->done = true;
        s->exit_code = exit_code;
    }
    if (s->suspended && s->conn) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
    uv_mutex_unlock(&s->mu);
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct exec_stream *s = cls;
    ssize_t n = 0;

    (void)pos;
    uv_mutex_lock(&s->mu);
    if (s->off < s->data.len) {
        size_t k = s->data.len - s->off;

        if (k > max)
            k = max;
        memcpy(out, s->data.data + s->off, k);
        s->off += k;
        s->last_was_newline = out[k - 1] == '\n';
        n = (ssize_t)k;
        if (s->off == s->data.len) {
            /* All sent: the buffer starts over instead of growing. */
            buf_reset(&s->data);
            s->off = 0;
        }
    } else if (s->done && !s->marker_sent) {
        /* The marker is always a line of its own. */
        n = snprintf(out, max, "%s%s%d\n", s->last_was_newline ? "" : "\n", EXEC_EXIT_MARKER,
                     s->exit_code);
        s->marker_sent = true;
    } else if (s->done) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing yet: the loop resumes the connection when output comes. */
        s->suspended = true;
        MHD_suspend_connection(s->conn);
    }
    uv_mutex_unlock(&s->mu);
    return n;
}

static void reader_free(void *cls)
{
    struct exec_stream *s = cls;

    uv_mutex_lock(&s->mu);
    s->gone = true;
    s->conn = NULL;
    stream_unref_locked(s);
}

struct MHD_Response *exec_response(struct MHD_Connection *conn, struct exec_stream *stream)
{
    struct MHD_Response *r;

    uv_mutex_lock(&stream->mu);
    stream->conn = conn;
    uv_mutex_unlock(&stream->mu);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, stream, reader_free);
    if (r == NULL)
        reader_free(stream);
    return r;
}

/* ---- loop side ---- */

static void free_strv(char **v)
{
    int i;

    for (i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

struct exec {
    struct proc proc;
    uv_pipe_t out;
    uv_pipe_t err;
    int handles;
    int64_t exit_status;
    int term_signal;
    struct exec_stream *stream;
    struct task *task;
};

static void exec_closed(uv_handle_t *h)
{
    struct exec *e = h->data;

    if (--e->handles > 0)
        return;
    exec_stream_feed(e->stream, NULL, 0, true,
                     e->term_signal ? 128 + e->term_signal : (int)e->exit_status);
    task_exec_ended(e->task, e->stream);
    exec_stream_unref(e->stream);
    free(e);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    b->base = xmalloc(16384);
    b->len = 16384;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct exec *e = s->data;

    if (n > 0) {
        exec_stream_feed(e->stream, b->base, (size_t)n, false, 0);
        task_log_bytes(e->task, b->base, (size_t)n);
    }
    free(b->base);
    if (n < 0) {
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, exec_closed);
    }
}

static void on_exit_cb(struct proc *p, int64_t exit_status, int term_signal)
{
    struct exec *e = p->data;

    e->exit_status = exit_status;
    e->term_signal = term_signal;
    kill(-p->pid, SIGKILL); /* what it left in its group */
    proc_close(p, exec_closed);
}

/*
 * Loop thread: whether the exec's caller went away. A suspended
 * connection does not notice a disconnect, so it is resumed here now and
 * then (the reader suspends it again when there is still nothing to send).
 */
bool exec_caller_gone(struct exec_stream *s)
{
    bool gone;

    uv_mutex_lock(&s->mu);
    gone = s->gone;
    if (!gone && s->suspended && s->conn) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
    uv_mutex_unlock(&s->mu);
    return gone;
}

int exec_start(struct agent *a, const char *secret, const cJSON *argv_json,
               struct exec_stream **ret_stream, const char **ret_error)
{
    struct task *t = task_for_exec(a, secret);
    const cJSON *arg;
    const char *prog;
    const char *base;
    struct exec *e;
    char **argv;
    char **env;
    int n = 0;
    int rc;

    if (t == NULL && task_exec_pending(a, secret)) {
        /* Its snapshot, image or container is on its way: the client
         * asks again (rsh.h). */
        *ret_error = "the mpi worker task of this run is not running on this node yet";
        return RSH_NOT_READY;
    }
    if (t == NULL) {
        *ret_error = "no mpi task of this agent has that exec secret";
        return 403;
    }
    if (!cJSON_IsArray(argv_json) || cJSON_GetArraySize(argv_json) == 0 ||
        cJSON_GetArraySize(argv_json) > 4096) {
        *ret_error = "argv must be a non-empty array of strings";
        return 400;
    }
    cJSON_ArrayForEach(arg, argv_json) {
        if (!cJSON_IsString(arg)) {
            *ret_error = "argv must be a non-empty array of strings";
            return 400;
        }
    }
    /* Only Open MPI's daemon: the secret authorises an MPI launch, not a shell. */
    prog = cJSON_GetArrayItem(argv_json, 0)->valuestring;
    base = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;
    if (strcmp(base, "orted") != 0) {
        *ret_error = "/v1/exec runs only orted";
        return 403;
    }
    argv = xcalloc((size_t)cJSON_GetArraySize(argv_json) + 1, sizeof(*argv));
    cJSON_ArrayForEach(arg, argv_json) {
        argv[n++] = xstrdup(arg->valuestring);
    }
    env = task_exec_env(t);
    if (task_in_container(t)) {
        /* In the worker's container, through the daemon (dockermpi.c). */
        *ret_stream = exec_stream_new();
        task_exec_started(t, *ret_stream);
        docker_exec_start(t, argv, env, *ret_stream);
        log_info("agent: exec '%s' for task '%s' in its container", argv[0], task_id(t));
        free_strv(argv);
        free_strv(env);
        return 200;
    }
    e = xcalloc(1, sizeof(*e));
    e->task = t;
    e->stream = exec_stream_new();
    uv_pipe_init(a->loop, &e->out, 0);
    uv_pipe_init(a->loop, &e->err, 0);
    e->out.data = e;
    e->err.data = e;
    e->proc.data = e;
    e->handles = 3;
    task_exec_started(t, e->stream);
    rc = proc_spawn_as(a->loop, &e->proc, argv[0], argv, env, task_exec_cwd(t), &e->out, &e->err,
                       on_exit_cb, task_exec_cred(t));
    if (rc != 0) {
        char msg[300];

        snprintf(msg, sizeof(msg), "cannot start '%s': %s\n", argv[0], uv_strerror(rc));
        exec_stream_feed(e->stream, msg, strlen(msg), false, 0);
        e->exit_status = 127;
        e->handles = 2;
        uv_close((uv_handle_t *)&e->out, exec_closed);
        uv_close((uv_handle_t *)&e->err, exec_closed);
    } else {
        task_exec_pid(t, e->stream, e->proc.pid);
        uv_read_start((uv_stream_t *)&e->out, on_alloc, on_read);
        uv_read_start((uv_stream_t *)&e->err, on_alloc, on_read);
    }
    log_info("agent: exec '%s' for task '%s'", argv[0], task_id(t));
    free_strv(argv);
    free_strv(env);
    *ret_stream = e->stream;
    return 200;
}
