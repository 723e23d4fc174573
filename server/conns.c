/* conns.c - header deadlines and connection counts (see conns.h). */
#include "server/conns.h"

#include <assert.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* How often the sweeper looks, in milliseconds. */
#define SWEEP_MS 250

/* Open connections from one client address. */
struct peer {
    unsigned char addr[16]; /* IPv4 in the first 4 bytes, else IPv6 */
    int count;
    struct peer *next; /* in its bucket */
};

#define PEER_BUCKETS 1024

struct slot {
    int fd;
    int64_t deadline_ms; /* 0: the headers are in */
    struct peer *peer;
    enum conns_verdict verdict; /* set at accept, read by the request's thread */
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
static struct peer *peers[PEER_BUCKETS];
static int open_conns;
static int max_conns;
static int max_per_peer;

/* The connection's client address as 16 bytes, or false. */
static bool peer_addr(struct MHD_Connection *conn, unsigned char *ret_addr)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    memset(ret_addr, 0, 16);
    if (info == NULL || info->client_addr == NULL)
        return false;
    if (info->client_addr->sa_family == AF_INET)
        memcpy(ret_addr, &((const struct sockaddr_in *)info->client_addr)->sin_addr, 4);
    else if (info->client_addr->sa_family == AF_INET6)
        memcpy(ret_addr, &((const struct sockaddr_in6 *)info->client_addr)->sin6_addr, 16);
    else
        return false;
    return true;
}

/* The count of addr's connections, made when missing. mu held. */
static struct peer *peer_get(const unsigned char *addr)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    struct peer *p;
    int i;

    for (i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 16777619u;
    for (p = peers[h % PEER_BUCKETS]; p; p = p->next) {
        if (memcmp(p->addr, addr, 16) == 0)
            return p;
    }
    p = xcalloc(1, sizeof(*p));
    memcpy(p->addr, addr, 16);
    p->next = peers[h % PEER_BUCKETS];
    peers[h % PEER_BUCKETS] = p;
    return p;
}

/* One connection of p fewer; p is freed with its last. mu held. */
static void peer_put(struct peer *p)
{
    uint32_t h = 2166136261u;
    struct peer **pp;
    int i;

    assert(p->count > 0);
    if (--p->count > 0)
        return;
    for (i = 0; i < 16; i++)
        h = (h ^ p->addr[i]) * 16777619u;
    for (pp = &peers[h % PEER_BUCKETS]; *pp != p; pp = &(*pp)->next)
        assert(*pp != NULL);
    *pp = p->next;
    free(p);
}

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
    unsigned char addr[16];
    bool has_addr;

    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info == NULL)
            return;
        s = xcalloc(1, sizeof(*s));
        s->fd = info->connect_fd;
        has_addr = peer_addr(conn, addr);
        pthread_mutex_lock(&mu);
        s->deadline_ms = time_mono_us() / 1000 + timeout_ms;
        open_conns++;
        if (has_addr) {
            s->peer = peer_get(addr);
            s->peer->count++;
        }
        if (open_conns > max_conns)
            s->verdict = CONNS_SERVER_FULL;
        else if (s->peer && s->peer->count > max_per_peer)
            s->verdict = CONNS_PEER_FULL;
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
    open_conns--;
    if (s->peer)
        peer_put(s->peer);
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

enum conns_verdict conns_verdict(struct MHD_Connection *conn)
{
    struct slot *s = slot_of(conn);

    return s ? s->verdict : CONNS_OK;
}

uint64_t conns_cut_count(void)
{
    return __atomic_load_n(&cut, __ATOMIC_RELAXED);
}

static void *sweep_main(void *arg)
{
    struct timespec ts;

    (void)arg;
    pthread_setname_np(pthread_self(), "ty-conns");
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

int conns_start(int64_t header_timeout_ms, int max_open, int max_per_address)
{
    assert(header_timeout_ms > 0 && max_open > 0 && max_per_address > 0);
    timeout_ms = header_timeout_ms;
    max_conns = max_open;
    max_per_peer = max_per_address;
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
