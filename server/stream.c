/* stream.c - growing response bodies with suspend/resume. */
#include "server/stream.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/stall.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* How often suspended streams look for news when nothing is committed,
 * and the least time between two looks after commits, in microseconds:
 * news reaches a follower within about STREAM_GAP_US, and a steady stream
 * of commits costs each suspended stream at most 1 s / STREAM_GAP_US
 * polls a second. */
#define STREAM_POLL_US 200000
#define STREAM_GAP_US 20000

struct stream_conn {
    struct api_stream *stream;
    struct MHD_Connection *conn;
    struct buf pending;
    size_t off;
    bool done;
    bool suspended;
    struct stream_conn *next; /* in the suspended list while suspended */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct stream_conn *suspended;
static bool running;
static bool news; /* a commit since the last round */
static uint64_t wakes; /* stream_wake() calls */
static pthread_t thread;

static void resume_all_locked(void)
{
    struct stream_conn *sc;

    for (sc = suspended; sc; sc = sc->next) {
        sc->suspended = false;
        MHD_resume_connection(sc->conn);
    }
    suspended = NULL;
}

static struct timespec after(const struct timespec *t, long us)
{
    struct timespec r = *t;

    r.tv_nsec += us * 1000L;
    while (r.tv_nsec >= 1000000000L) {
        r.tv_sec++;
        r.tv_nsec -= 1000000000L;
    }
    return r;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Waits on cv until deadline (or the stop); with any_news, also until a
 * commit. */
static void wait_locked(const struct timespec *deadline, bool any_news)
{
    struct timespec now;

    for (;;) {
        clock_gettime(CLOCK_REALTIME, &now);
        if (!running || !before(&now, deadline) || (any_news && news))
            return;
        pthread_cond_timedwait(&cv, &mu, deadline);
    }
}

static void *resume_main(void *arg)
{
    struct timespec last;
    struct timespec t;

    (void)arg;
    pthread_setname_np(pthread_self(), "ty-streams");
    pthread_mutex_lock(&mu);
    clock_gettime(CLOCK_REALTIME, &last);
    while (running) {
        t = after(&last, STREAM_POLL_US);
        wait_locked(&t, true);
        t = after(&last, STREAM_GAP_US);
        wait_locked(&t, false);
        news = false;
        resume_all_locked();
        clock_gettime(CLOCK_REALTIME, &last);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

void stream_wake(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&mu);
    wakes++;
    if (!news) {
        news = true;
        pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mu);
}

int stream_start(void)
{
    running = true;
    if (pthread_create(&thread, NULL, resume_main, NULL) != 0) {
        running = false;
        return ERR_INTERNAL;
    }
    return 0;
}

void stream_stop(void)
{
    pthread_mutex_lock(&mu);
    running = false;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&mu);
    resume_all_locked();
    pthread_mutex_unlock(&mu);
}

static ssize_t take_pending(struct stream_conn *sc, char *out, size_t max)
{
    size_t n = sc->pending.len - sc->off;

    if (n > max)
        n = max;
    memcpy(out, sc->pending.data + sc->off, n);
    sc->off += n;
    return (ssize_t)n;
}

/* Whether the client closed its end: a stream with nothing to send never
 * writes, so MHD would not notice, and the follower would hold its place
 * (--max-followers) until the run ends. */
static bool peer_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char c;

    if (info == NULL)
        return false;
    return recv(info->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static ssize_t read_next(struct stream_conn *sc, char *out, size_t max);

/* On an HTTP thread: a poll that ran long counts as the server's stall. */
static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    int64_t token = stall_enter();
    ssize_t n;

    (void)pos;
    n = read_next(cls, out, max);
    stall_leave(token);
    return n;
}

static ssize_t read_next(struct stream_conn *sc, char *out, size_t max)
{
    uint64_t wakes_before;

    if (sc->off < sc->pending.len)
        return take_pending(sc, out, max);
    if (sc->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    buf_reset(&sc->pending);
    sc->off = 0;
    pthread_mutex_lock(&mu);
    wakes_before = wakes;
    pthread_mutex_unlock(&mu);
    if (sc->stream->next(sc->stream, &sc->pending, &sc->done) < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (sc->pending.len > 0)
        return take_pending(sc, out, max);
    if (sc->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (peer_gone(sc->conn))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    /* Nothing new: park the connection until the resume thread's next
     * round, instead of being called again at once. A commit that came
     * while it looked may have been missed: the next round is then the
     * one after that commit. */
    pthread_mutex_lock(&mu);
    if (running) {
        MHD_suspend_connection(sc->conn);
        sc->suspended = true;
        sc->next = suspended;
        suspended = sc;
        if (wakes != wakes_before && !news) {
            news = true;
            pthread_cond_signal(&cv);
        }
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

static void free_cb(void *cls)
{
    struct stream_conn *sc = cls;
    struct stream_conn **p;

    pthread_mutex_lock(&mu);
    for (p = &suspended; *p; p = &(*p)->next) {
        if (*p == sc) {
            *p = sc->next;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    sc->stream->free(sc->stream);
    buf_release(&sc->pending);
    free(sc);
}

struct MHD_Response *stream_response(struct MHD_Connection *conn, struct api_stream *stream)
{
    struct stream_conn *sc = xcalloc(1, sizeof(*sc));
    struct MHD_Response *r;

    sc->stream = stream;
    sc->conn = conn;
    buf_init(&sc->pending);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, reader, sc, free_cb);
    if (r == NULL) {
        stream->free(stream);
        buf_release(&sc->pending);
        free(sc);
        return NULL;
    }
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return r;
}
