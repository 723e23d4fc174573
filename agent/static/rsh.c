/*
 * static/rsh.c - `trainyard-rsh`, the remote shell of mpi runs in images.
 *
 * mpirun runs inside the launcher's container, where `trainyard rsh` (the
 * host's binary, linked against libcurl, libcjson...) cannot run. This is
 * the same client built static, with libc only: the agent writes it
 * beside the Python helper (mounted read-only into every container) and
 * names it in OMPI_MCA_plm_rsh_agent. It speaks plain HTTP/1.1 over TCP
 * to the agent of HOST (from TRAINYARD_MPI_AGENTS) and does what `trainyard
 * rsh` does (rsh.h): POST /v1/exec with the run's exec secret, the reply's
 * output to stdout, the remote exit code as its own. Agents serving HTTPS
 * are refused with a message: it has no TLS.
 *
 * `trainyard-rsh --hold` is the command of an mpi worker's container: it
 * idles while mpirun's daemons run in the container (docker exec), and on
 * SIGTERM passes it to every process of the container, then exits once
 * they are gone (the daemon's SIGKILL after the grace does the rest).
 * Outside a container of its own it only waits for SIGTERM.
 *
 * Built by the Makefile with -static from this file, agent/rshwire.c,
 * common/buf.c and common/xalloc.c; embedded in bin/trainyard.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/rsh.h"
#include "common/buf.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define CONNECT_TIMEOUT_MS 10000
/* The inode of the initial pid namespace (the kernel's PROC_PID_INIT_INO). */
#define PROC_PID_INIT_INO 0xEFFFFFFCu
#define MAX_HEAD (64 * 1024)

static const char *me = "trainyard-rsh";

/* ---- --hold ---- */

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

/*
 * Whether this process is the first child of a pid namespace of its own
 * (under a container's docker-init), where "every process" is the
 * container's. Anywhere else (run by hand on a host) kill(-1) would reach
 * every process the user may signal: --hold then only waits.
 */
static bool in_a_container(void)
{
    struct stat st;

    return getppid() == 1 && stat("/proc/self/ns/pid", &st) == 0 && st.st_ino != PROC_PID_INIT_INO;
}

static int hold(void)
{
    struct sigaction sa;
    struct timespec tick = { 0, 100 * 1000 * 1000 };

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stopping)
        pause();
    if (!in_a_container())
        return 0;
    /* Everything else in the container (mpirun's daemons and their ranks)
     * gets the stop too; the container ends when this process does. */
    kill(-1, SIGTERM);
    while (kill(-1, 0) == 0)
        nanosleep(&tick, NULL);
    return 0;
}

/* ---- a small JSON object of strings: TRAINYARD_MPI_AGENTS ---- */

/* Reads a JSON string at *p (no \u escapes but ASCII ones) into out. */
static bool read_string(const char **p, struct buf *out)
{
    const char *s = *p;

    if (*s++ != '"')
        return false;
    while (*s && *s != '"') {
        if (*s == '\\') {
            s++;
            if (*s == 'u') {
                unsigned v;

                if (sscanf(s + 1, "%4x", &v) != 1 || v >= 0x80)
                    return false;
                buf_addc(out, (char)v);
                s += 5;
                continue;
            }
            buf_addc(out, *s == 'n' ? '\n' : *s == 't' ? '\t' : *s == '/' ? '/' : *s);
            if (*s)
                s++;
        } else {
            buf_addc(out, *s++);
        }
    }
    if (*s != '"')
        return false;
    *p = s + 1;
    return true;
}

/* The value of key in the flat object text (caller frees), or NULL. */
static char *object_get(const char *text, const char *key)
{
    const char *p = text;
    struct buf k;
    struct buf v;
    char *found = NULL;

    buf_init(&k);
    buf_init(&v);
    while (*p == ' ' || *p == '\n' || *p == '\t')
        p++;
    if (*p++ != '{')
        goto out;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == ',')
            p++;
        if (*p == '}' || *p == '\0')
            break;
        buf_reset(&k);
        buf_reset(&v);
        if (!read_string(&p, &k))
            break;
        while (*p == ' ' || *p == ':')
            p++;
        if (!read_string(&p, &v))
            break;
        if (strcmp(k.data, key) == 0) {
            found = buf_detach(&v, NULL);
            break;
        }
    }
out:
    buf_release(&k);
    buf_release(&v);
    return found;
}

/* ---- HTTP/1.1 ---- */

struct url {
    char host[256];
    char port[16];
};

/* "http://HOST:PORT" or "http://[V6]:PORT", nothing after but a "/". */
static bool parse_url(const char *base, struct url *u)
{
    const char *h;
    const char *end;
    const char *colon;
    size_t n;

    if (strncmp(base, "http://", 7) != 0)
        return false;
    h = base + 7;
    end = h + strcspn(h, "/");
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));

        if (close == NULL || close[1] != ':')
            return false;
        n = (size_t)(close - h - 1);
        if (n == 0 || n >= sizeof(u->host))
            return false;
        memcpy(u->host, h + 1, n);
        u->host[n] = '\0';
        colon = close + 1;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        if (colon == NULL || colon == h || (size_t)(colon - h) >= sizeof(u->host))
            return false;
        memcpy(u->host, h, (size_t)(colon - h));
        u->host[colon - h] = '\0';
    }
    n = (size_t)(end - colon - 1);
    if (n == 0 || n >= sizeof(u->port) || strspn(colon + 1, "0123456789") < n)
        return false;
    memcpy(u->port, colon + 1, n);
    u->port[n] = '\0';
    return true;
}

static int connect_to(const struct url *u)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct addrinfo *ai;
    int fd = -1;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* An address needs no name service (a static program's NSS is glibc's
     * built-in files and dns only); a name goes through it. */
    hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
    rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(u->host, u->port, &hints, &res);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: cannot resolve '%s': %s\n", me, u->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        struct pollfd pfd;
        int err = 0;
        socklen_t len = sizeof(err);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
            goto next;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, CONNECT_TIMEOUT_MS) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
            goto next;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        break;
    next:
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "%s: cannot connect to %s port %s\n", me, u->host, u->port);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A response being read: what came after the head, and how its body is
 * framed. */
struct response {
    int fd;
    int status;
    bool chunked;
    long long length; /* -1: until the connection closes */
    struct buf in; /* read, not yet used */
    size_t off;
};

static ssize_t fill(struct response *r)
{
    char chunk[16384];
    ssize_t n;

    do
        n = read(r->fd, chunk, sizeof(chunk));
    while (n < 0 && errno == EINTR);
    if (n > 0)
        buf_add(&r->in, chunk, (size_t)n);
    return n;
}

/* The value of header name in head (case-insensitive), or NULL. */
static const char *header(const char *head, const char *name)
{
    size_t n = strlen(name);
    const char *p = strstr(head, "\r\n");

    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            return p;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static int read_head(struct response *r)
{
    char *end;
    const char *v;

    while ((end = strstr(r->in.data, "\r\n\r\n")) == NULL) {
        if (r->in.len > MAX_HEAD || fill(r) <= 0)
            return -1;
    }
    end[2] = '\0'; /* the head, ending in one CRLF */
    if (sscanf(r->in.data, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    v = header(r->in.data, "Transfer-Encoding");
    r->chunked = v && strncasecmp(v, "chunked", 7) == 0;
    v = header(r->in.data, "Content-Length");
    r->length = v && !r->chunked ? strtoll(v, NULL, 10) : -1;
    r->off = (size_t)(end - r->in.data) + 4;
    return 0;
}

/* Passes the body to out (sink, or refusal when out_buf): 0 at its end,
 * -1 when the connection broke off. */
static int read_body(struct response *r, struct rsh_sink *sink, struct buf *out_buf)
{
    long long left = r->length;

    for (;;) {
        size_t have = r->in.len - r->off;
        size_t take = have;

        if (r->chunked) {
            char *crlf = have ? strstr(r->in.data + r->off, "\r\n") : NULL;
            unsigned long long size;

            if (crlf == NULL) {
                if (fill(r) <= 0)
                    return -1;
                continue;
            }
            size = strtoull(r->in.data + r->off, NULL, 16);
            if ((size_t)(crlf - r->in.data) + 2 + size + 2 > r->in.len) {
                if (fill(r) <= 0)
                    return -1;
                continue;
            }
            r->off = (size_t)(crlf - r->in.data) + 2;
            if (size == 0)
                return 0;
            take = (size_t)size;
        } else if (left >= 0 && (long long)take > left) {
            take = (size_t)left;
        }
        if (take > 0) {
            if (out_buf)
                buf_add(out_buf, r->in.data + r->off, take);
            else if (rsh_sink_feed(sink, r->in.data + r->off, take) < 0)
                return -1;
            r->off += take + (r->chunked ? 2 : 0);
            if (left >= 0)
                left -= (long long)take;
        }
        if (!r->chunked && left == 0)
            return 0;
        /* What was used goes; the rest moves to the front. */
        memmove(r->in.data, r->in.data + r->off, r->in.len - r->off);
        r->in.len -= r->off;
        r->in.data[r->in.len] = '\0';
        r->off = 0;
        if (r->chunked && r->in.len > 0)
            continue;
        {
            ssize_t n = fill(r);

            if (n == 0 && !r->chunked && left < 0)
                return 0; /* the connection's end is the body's */
            if (n <= 0)
                return -1;
        }
    }
}

/* One POST of body to the agent: 0 with the status (a 200's body went
 * to sink, any other's into refusal), or -1. */
static int post(const struct url *u, const char *secret, const char *body, struct rsh_sink *sink,
                struct buf *refusal, int *ret_status)
{
    struct response r;
    struct buf req;
    int rc = -1;

    memset(&r, 0, sizeof(r));
    r.fd = connect_to(u);
    if (r.fd < 0)
        return -1;
    buf_init(&r.in);
    buf_init(&req);
    buf_printf(&req,
               "POST /v1/exec HTTP/1.1\r\nHost: %s%s%s:%s\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n",
               strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "", u->port,
               secret, strlen(body));
    buf_adds(&req, body);
    if (write_all(r.fd, req.data, req.len) < 0 || read_head(&r) < 0) {
        fprintf(stderr, "%s: %s port %s: no HTTP answer\n", me, u->host, u->port);
        goto out;
    }
    if (read_body(&r, sink, r.status == 200 ? NULL : refusal) < 0 && r.status != 200) {
        fprintf(stderr, "%s: %s port %s: the answer broke off\n", me, u->host, u->port);
        goto out;
    }
    *ret_status = r.status;
    rc = 0;
out:
    close(r.fd);
    buf_release(&r.in);
    buf_release(&req);
    return rc;
}

int main(int argc, char **argv)
{
    const char *agents = getenv("TRAINYARD_MPI_AGENTS");
    const char *secret = getenv("TRAINYARD_MPI_SECRET");
    struct timespec pause_ts = { 0, RSH_RETRY_MS * 1000L * 1000L };
    struct rsh_sink sink;
    struct buf refusal;
    struct url u;
    char *base;
    char *body;
    int64_t give_up;
    int status = 0;
    int rc;
    int first = 1;

    if (argc == 2 && strcmp(argv[1], "--hold") == 0)
        return hold();
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s HOST COMMAND... | --hold\n"
                "The remote shell mpirun uses inside a trainyard mpi run in an image.\n",
                me);
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 255;
    }
    signal(SIGPIPE, SIG_IGN);
    /* mpirun may pass ssh-style options before the host. */
    while (first < argc && argv[first][0] == '-')
        first++;
    if (first + 1 >= argc || agents == NULL || secret == NULL) {
        fprintf(stderr,
                "%s: needs HOST COMMAND and TRAINYARD_MPI_AGENTS and "
                "TRAINYARD_MPI_SECRET (set by trainyard in mpi runs)\n",
                me);
        return 255;
    }
    base = object_get(agents, argv[first]);
    if (base == NULL) {
        fprintf(stderr, "%s: host '%s' is not a node of this run\n", me, argv[first]);
        return 255;
    }
    if (!parse_url(base, &u)) {
        fprintf(stderr,
                "%s: cannot reach the agent at '%s': an mpi run in an image needs "
                "agents serving plain http://HOST:PORT (this client has no TLS)\n",
                me, base);
        free(base);
        return 255;
    }
    free(base);
    body = rsh_body(argc - first - 1, argv + first + 1);
    if (body == NULL) {
        fprintf(stderr, "%s: refusing a command that needs a shell\n", me);
        return 255;
    }
    rsh_sink_init(&sink);
    buf_init(&refusal);
    give_up = rsh_now_ms() + RSH_RETRY_FOR_MS;
    for (;;) {
        buf_reset(&refusal);
        rc = post(&u, secret, body, &sink, &refusal, &status);
        /* The node's worker task is not running yet: ask again. */
        if (rc < 0 || status != RSH_NOT_READY || rsh_now_ms() >= give_up)
            break;
        nanosleep(&pause_ts, NULL);
    }
    if (rc == 0 && status != 200)
        fprintf(stderr, "%s: the agent refused (HTTP %d): %s\n", me, status, refusal.data);
    else if (rc == 0 && !sink.ended)
        fprintf(stderr, "%s: the connection ended before the command did\n", me);
    rc = rc == 0 && status == 200 && sink.ended ? sink.exit_code : 255;
    free(body);
    buf_release(&refusal);
    rsh_sink_release(&sink);
    return rc;
}
