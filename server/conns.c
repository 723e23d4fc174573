/* conns.c - header deadlines (see conns.h). */
#include "server/conns.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* How often the sweeper looks, in milliseconds. */
#define SWEEP_MS 250

struct slot {
    int fd;
    int64_t deadline_ms; /* 0: the headers are in */
    struct slot *prev;
    struct slot *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct slot *head;
static int64_t timeout_ms;
static bool running;
static pthread_t thread;
static uint64_t cut;

static struct slot *slot_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

static void arm(struct slot *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&mu);
    s->deadline_ms = time_mono_us() / 1000 + timeout_ms;
    pthread_mutex_unlock(&mu);
}

void conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode code)
{
    struct slot *s = *socket_context;
    const union MHD_ConnectionInfo *info;

    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info == NULL)
            return;
        s = xcalloc(1, sizeof(*s));
        s->fd = info->connect_fd;
        pthread_mutex_lock(&mu);
        s->deadline_ms = time_mono_us() / 1000 + timeout_ms;
        s->next = head;
        if (head)
            head->prev = s;
        head = s;
        pthread_mutex_unlock(&mu);
        *socket_context = s;
        return;
    }
    /* Closed: MHD closes the socket only after this returns, so the
     * sweeper, which shuts sockets down under mu, never touches a reused
     * descriptor. */
    if (s == NULL)
        return;
    pthread_mutex_lock(&mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&mu);
    free(s);
    *socket_context = NULL;
}

void *conns_request_started(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)uri;
    arm(slot_of(conn));
    return NULL;
}

void conns_headers_done(struct MHD_Connection *conn)
{
    struct slot *s = slot_of(conn);

    if (s == NULL)
        return;
    pthread_mutex_lock(&mu);
    s->deadline_ms = 0;
    pthread_mutex_unlock(&mu);
}

uint64_t conns_cut_count(void)
{
    return __atomic_load_n(&cut, __ATOMIC_RELAXED);
}

static void *sweep_main(void *arg)
{
    struct timespec ts;

    (void)arg;
    pthread_mutex_lock(&mu);
    while (running) {
        int64_t now = time_mono_us() / 1000;
        struct slot *s;
        int n = 0;

        for (s = head; s; s = s->next) {
            if (s->deadline_ms != 0 && s->deadline_ms <= now) {
                /* The thread that owns the connection sees it end and
                 * closes it as usual. */
                shutdown(s->fd, SHUT_RDWR);
                s->deadline_ms = 0;
                n++;
            }
        }
        if (n > 0) {
            __atomic_add_fetch(&cut, (uint64_t)n, __ATOMIC_RELAXED);
            log_warn("http: closed %d connection(s) that did not send their headers within %lld ms",
                     n, (long long)timeout_ms);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int conns_start(int64_t header_timeout_ms)
{
    timeout_ms = header_timeout_ms;
    running = true;
    if (pthread_create(&thread, NULL, sweep_main, NULL) != 0) {
        running = false;
        return ERR_INTERNAL;
    }
    return 0;
}

void conns_stop(void)
{
    pthread_mutex_lock(&mu);
    if (!running) {
        pthread_mutex_unlock(&mu);
        return;
    }
    running = false;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
}
