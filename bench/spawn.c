/*
 * spawn.c (bench) - B11: how fast the agent launches processes, and
 * whether that holds as its memory grows. Uses the agent's own launcher
 * (common/spawn.c: posix_spawn + pidfd on libuv) and, for comparison,
 * libuv's uv_spawn (fork). Each round launches N copies of /bin/true, up
 * to 64 at once, with stdout/stderr pipes as a task has; launch latency
 * is the time proc_spawn / uv_spawn takes. Rounds run with 0 and 2 GiB of
 * touched heap.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "common/spawn.h"
#include "common/banned.h"

#define IN_FLIGHT 64

struct child {
    struct proc proc;
    uv_process_t uvproc;
    uv_pipe_t out;
    uv_pipe_t err;
    int open;
};

static uv_loop_t *loop;
static int launched;
static int done;
static int total;
static int use_uv;
static double *lat;
static struct child *children;
static char *argv_true[] = { "/bin/true", NULL };
static char *env[] = { "PATH=/usr/bin:/bin", NULL };

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void launch(void);

static void closed(uv_handle_t *h)
{
    struct child *c = h->data;

    if (--c->open == 0) {
        done++;
        if (launched < total)
            launch();
    }
}

static void on_proc_exit(struct proc *p, int64_t status, int sig)
{
    (void)status;
    (void)sig;
    proc_close(p, closed);
}

static void on_uv_exit(uv_process_t *p, int64_t status, int sig)
{
    (void)status;
    (void)sig;
    uv_close((uv_handle_t *)p, closed);
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    static char buf[4096];

    (void)h;
    (void)n;
    *b = uv_buf_init(buf, sizeof(buf));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0)
        uv_close((uv_handle_t *)s, closed);
}

static void launch(void)
{
    struct child *c = &children[launched];
    double t0;
    int rc;

    memset(c, 0, sizeof(*c));
    uv_pipe_init(loop, &c->out, 0);
    uv_pipe_init(loop, &c->err, 0);
    c->out.data = c->err.data = c->proc.data = c->uvproc.data = c;
    c->open = 3;
    t0 = now_s();
    if (use_uv) {
        uv_process_options_t o;
        uv_stdio_container_t stdio[3];

        memset(&o, 0, sizeof(o));
        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[1].data.stream = (uv_stream_t *)&c->out;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *)&c->err;
        o.file = argv_true[0];
        o.args = argv_true;
        o.env = env;
        o.flags = UV_PROCESS_DETACHED;
        o.stdio = stdio;
        o.stdio_count = 3;
        o.exit_cb = on_uv_exit;
        rc = uv_spawn(loop, &c->uvproc, &o);
    } else {
        rc = proc_spawn(loop, &c->proc, argv_true[0], argv_true, env, NULL, &c->out, &c->err,
                        on_proc_exit);
    }
    lat[launched++] = now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "spawn: %s\n", uv_strerror(rc));
        exit(1);
    }
    uv_read_start((uv_stream_t *)&c->out, alloc_cb, read_cb);
    uv_read_start((uv_stream_t *)&c->err, alloc_cb, read_cb);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void round_(const char *how, int uv, size_t heap_mb, int n)
{
    double t0;
    double t1;
    int i;

    use_uv = uv;
    total = n;
    launched = 0;
    done = 0;
    lat = calloc((size_t)n, sizeof(*lat));
    children = calloc((size_t)n, sizeof(*children));
    t0 = now_s();
    for (i = 0; i < IN_FLIGHT && i < n; i++)
        launch();
    while (done < n)
        uv_run(loop, UV_RUN_ONCE);
    t1 = now_s();
    qsort(lat, (size_t)n, sizeof(*lat), cmp);
    printf("B11 %s, agent heap +%zu MiB: %.0f launches/s, launch p50=%.3fms p99=%.3fms "
           "(%d runs of /bin/true, %d at once)\n",
           how, heap_mb, n / (t1 - t0), lat[n / 2] * 1000, lat[n * 99 / 100] * 1000, n, IN_FLIGHT);
    free(lat);
    free(children);
}

int main(void)
{
    size_t heap_mb = 2048;
    char *heap;
    size_t i;

    loop = uv_default_loop();
    round_("posix_spawn (agent)", 0, 0, 2000);
    round_("uv_spawn (fork)", 1, 0, 2000);
    heap = malloc(heap_mb << 20);
    for (i = 0; heap && i < (heap_mb << 20); i += 4096)
        heap[i] = 1;
    round_("posix_spawn (agent)", 0, heap_mb, 2000);
    round_("uv_spawn (fork)", 1, heap_mb, 500);
    free(heap);
    return 0;
}
