/*
 * server.c - `trainyard server`: options, the data directory, start-up and
 * clean shutdown. SIGINT/SIGTERM are blocked in every thread and taken by
 * the main thread with sigwait(), so handlers never run in signal context.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api.h"
#include "common/err.h"
#include "common/file.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/timeutil.h"
#include "common/version.h"
#include "common/xalloc.h"
#include "server/http.h"
#include "server/routes.h"
#include "server/stream.h"
#include "server/workers.h"
#include "scheduler/scheduler.h"
#include "store/store.h"
#include "common/banned.h"

struct server_opts {
    const char *listen;
    const char *data;
    long node_timeout_s;
    long max_snapshot_mb;
    long max_artifact_mb;
    long threads;
    enum store_sync sync;
    bool dev;
    const char *tls_cert;
    const char *tls_key;
    const char *ca;
};

static const char usage[] =
    "usage: trainyard server [options]\n"
    "\n"
    "Runs the control plane: REST API, SQLite store and dashboard.\n"
    "\n"
    "  --listen HOST:PORT      address to serve on (default 127.0.0.1:8080; port 0 picks one)\n"
    "  --data DIR              data directory: database, snapshots, admin.token (default ./var)\n"
    "  --node-timeout S        seconds without a heartbeat before a node is down (default 15)\n"
    "  --max-snapshot-mb N     largest snapshot upload accepted, in MiB (default 256)\n"
    "  --max-artifact-mb N     largest output file a task may upload, in MiB (default 1024)\n"
    "  --threads N             threads for requests that may block (default 4 per CPU\n"
    "                          it may use, at most 64); the rest run on one HTTP\n"
    "                          thread per CPU\n"
    "  --sync full|normal      SQLite synchronous mode: full survives power loss, normal\n"
    "                          survives a crash of the server (default full)\n"
    "  --dev                   also run a local agent for this machine\n"
    "  --tls-cert FILE         serve HTTPS with this certificate (PEM; with --tls-key)\n"
    "  --tls-key FILE          the certificate's private key (PEM)\n"
    "  --ca FILE               CA certificates to verify agents that serve HTTPS\n"
    "  --log-level LEVEL       debug, info, warn or error (default info)\n"
    "  -h, --help              show this help\n";

/* The CPUs this process may run on (its affinity mask). */
static long usable_cpus(void)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return 1;
}

/*
 * Worker threads run the handlers that may block (uploads, list and series
 * reads, writes other than submissions and agent reports, which park their
 * connection instead): a few per CPU, so a slow one does not hold up the
 * others.
 */
static long default_threads(void)
{
    long n = 4 * usable_cpus();

    return n > 64 ? 64 : n;
}

static int parse_opts(int argc, char **argv, struct server_opts *o)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "data", required_argument, NULL, 'd' },
        { "node-timeout", required_argument, NULL, 't' },
        { "max-snapshot-mb", required_argument, NULL, 'm' },
        { "max-artifact-mb", required_argument, NULL, 'A' },
        { "threads", required_argument, NULL, 'T' },
        { "sync", required_argument, NULL, 's' },
        { "dev", no_argument, NULL, 'D' },
        { "tls-cert", required_argument, NULL, 'C' },
        { "tls-key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'a' },
        { "log-level", required_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof(*o)); /* options not given stay NULL */
    o->listen = "127.0.0.1:8080";
    o->data = "./var";
    o->node_timeout_s = 15;
    o->max_snapshot_mb = 256;
    o->max_artifact_mb = 1024;
    o->threads = default_threads();
    o->sync = STORE_SYNC_FULL;
    o->dev = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'd':
            o->data = optarg;
            break;
        case 't':
            if (!parse_long(optarg, 1, 86400, &o->node_timeout_s)) {
                fprintf(stderr, "trainyard server: --node-timeout must be 1..86400 seconds\n");
                return 2;
            }
            break;
        case 'm':
            if (!parse_long(optarg, 1, 1048576, &o->max_snapshot_mb)) {
                fprintf(stderr, "trainyard server: --max-snapshot-mb must be 1..1048576\n");
                return 2;
            }
            break;
        case 'A':
            if (!parse_long(optarg, 1, 1048576, &o->max_artifact_mb)) {
                fprintf(stderr, "trainyard server: --max-artifact-mb must be 1..1048576\n");
                return 2;
            }
            break;
        case 'T':
            if (!parse_long(optarg, 1, 256, &o->threads)) {
                fprintf(stderr, "trainyard server: --threads must be 1..256\n");
                return 2;
            }
            break;
        case 's':
            if (strcmp(optarg, "full") == 0) {
                o->sync = STORE_SYNC_FULL;
            } else if (strcmp(optarg, "normal") == 0) {
                o->sync = STORE_SYNC_NORMAL;
            } else {
                fprintf(stderr, "trainyard server: --sync must be full or normal\n");
                return 2;
            }
            break;
        case 'D':
            o->dev = true;
            break;
        case 'C':
            o->tls_cert = optarg;
            break;
        case 'K':
            o->tls_key = optarg;
            break;
        case 'a':
            o->ca = optarg;
            break;
        case 'L':
            if (strcmp(optarg, "debug") == 0) {
                log_set_level(LOG_LEVEL_DEBUG);
            } else if (strcmp(optarg, "info") == 0) {
                log_set_level(LOG_LEVEL_INFO);
            } else if (strcmp(optarg, "warn") == 0) {
                log_set_level(LOG_LEVEL_WARN);
            } else if (strcmp(optarg, "error") == 0) {
                log_set_level(LOG_LEVEL_ERROR);
            } else {
                fprintf(stderr, "trainyard server: --log-level must be debug, info, warn or "
                                "error\n");
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "trainyard server: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "trainyard server: --tls-cert and --tls-key go together\n");
        return 2;
    }
    return -1;
}

/* Splits "HOST:PORT" or "[V6]:PORT" and resolves it into *ret_addr. */
static int resolve_listen(const char *listen, struct sockaddr_storage *ret_addr, socklen_t *ret_len)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char host[256];
    const char *port;
    const char *colon;
    int rc;

    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');

        if (close == NULL || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof(host))
            return ERR_INVALID;
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        port = close + 2;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
            return ERR_INVALID;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || res == NULL)
        return ERR_INVALID;
    memcpy(ret_addr, res->ai_addr, res->ai_addrlen);
    *ret_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        log_error("server: cannot create directory '%s': %s", path, strerror(errno));
        return ERR_INTERNAL;
    }
    return 0;
}

/* Creates DIR, DIR/snapshots and DIR/tmp, and empties DIR/tmp. */
static int prepare_data_dir(const char *data)
{
    char path[4096];

    if (make_dir(data) < 0)
        return ERR_INTERNAL;
    snprintf(path, sizeof(path), "%s/snapshots", data);
    if (make_dir(path) < 0)
        return ERR_INTERNAL;
    snprintf(path, sizeof(path), "%s/tmp", data);
    if (make_dir(path) < 0)
        return ERR_INTERNAL;
    return 0;
}

/* Writes the base URL clients should use to <data>/server.url, atomically. */
static int write_url_file(const char *data, const struct sockaddr_storage *addr, uint16_t port,
                          const char *scheme)
{
    char host[INET6_ADDRSTRLEN] = "127.0.0.1";
    char path[4096];
    char tmp[4200];
    FILE *f;

    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;

        if (in->sin_addr.s_addr != htonl(INADDR_ANY))
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    } else if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;

        if (memcmp(&in6->sin6_addr, &in6addr_any, sizeof(in6addr_any)) != 0)
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        else
            snprintf(host, sizeof(host), "::1");
    }
    snprintf(path, sizeof(path), "%s/server.url", data);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return ERR_INTERNAL;
    if (strchr(host, ':'))
        fprintf(f, "%s://[%s]:%u\n", scheme, host, port);
    else
        fprintf(f, "%s://%s:%u\n", scheme, host, port);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        return ERR_INTERNAL;
    log_info("server: listening on %s://%s%s%s:%u", scheme, strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", port);
    return 0;
}

extern char **environ;

/*
 * --dev: runs `trainyard agent` for this machine as a child process, with
 * the admin token (in its environment, not on its command line).
 */
static pid_t start_dev_agent(const char *data, const struct sockaddr_storage *addr, uint16_t port,
                             const char *tls_cert)
{
    char url[128];
    char token_path[4096];
    char work[4096];
    char host[256] = "local";
    char *argv[] = { "trainyard",    "agent",       "--server", url,  "--name",  host,
                     "--listen",     "127.0.0.1:0", "--work",   work, "--grace", "3",
                     "--token-file", token_path,    NULL,       NULL, NULL };
    char **env;
    size_t n = 0;
    size_t i;
    pid_t pid;
    posix_spawnattr_t attr;
    sigset_t none;
    struct stat st;
    int rc;

    (void)addr;
    snprintf(url, sizeof(url), "%s://127.0.0.1:%u", tls_cert ? "https" : "http", port);
    snprintf(token_path, sizeof(token_path), "%s/admin.token", data);
    snprintf(work, sizeof(work), "%s/agent", data);
    gethostname(host, sizeof(host) - 1);
    /* The token goes by its file (0600), never in argv or the environment,
     * where /proc shows it to every local user. */
    if (stat(token_path, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_error("server: --dev needs '%s' to start the local agent", token_path);
        return -1;
    }
    /* A root agent's tasks run as users of their own, who must traverse
     * the data directory (0700) to their task directories under it; o+x
     * lets them in without letting them list it. */
    if (geteuid() == 0 && stat(data, &st) == 0 && !(st.st_mode & S_IXOTH))
        chmod(data, (st.st_mode & 07777) | S_IXOTH);
    while (environ[n])
        n++;
    env = xcalloc(n + 1, sizeof(*env));
    for (i = n = 0; environ[i]; i++) {
        if (strncmp(environ[i], "TRAINYARD_TOKEN=", 16) != 0 &&
            strncmp(environ[i], "TRAINYARD_TOKEN_FILE=", 21) != 0)
            env[n++] = environ[i];
    }
    if (tls_cert) {
        /* A self-signed certificate is its own CA: give the agent that. */
        for (i = 0; argv[i]; i++)
            ;
        argv[i] = "--ca";
        argv[i + 1] = (char *)tls_cert;
    }
    /* The server blocks SIGTERM for sigwait(); the agent must not inherit that. */
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    rc = posix_spawn(&pid, "/proc/self/exe", NULL, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        log_error("server: cannot start the local agent: %s", strerror(rc));
        pid = -1;
    } else {
        log_info("server: started the local agent (pid %d) for node '%s'", (int)pid, host);
    }
    free(env);
    return pid;
}

static void stop_dev_agent(pid_t pid)
{
    int status;
    int i;

    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (i = 0; i < 300; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return;
        usleep(50000);
    }
    log_warn("server: the local agent did not stop; killing it");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];

    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("http: %s", line);
}

/* Waits until no connection is open or a few seconds pass. */
static void drain_connections(struct MHD_Daemon *d)
{
    int i;

    for (i = 0; i < 500; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

        if (info == NULL || info->num_connections == 0)
            return;
        usleep(10000);
    }
}

int server_main(int argc, char **argv)
{
    struct server_opts o;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct store *store = NULL;
    struct api_ctx ctx;
    struct http http;
    struct MHD_Daemon *daemon;
    struct scheduler_config sched_cfg;
    pid_t dev_agent = -1;
    struct MHD_OptionItem tls_opts[3] = { { MHD_OPTION_END, 0, NULL },
                                          { MHD_OPTION_END, 0, NULL },
                                          { MHD_OPTION_END, 0, NULL } };
    char *tls_cert = NULL;
    char *tls_key = NULL;
    const union MHD_DaemonInfo *info;
    sigset_t signals;
    char path[4096];
    unsigned int flags;
    int sig;
    int rc;

    /* Memory goes back to the system: 32 HTTP threads would otherwise get
     * up to 16 malloc arenas, each holding its own free memory, and a
     * pass's large transient buffers would stay in the heap (together
     * about 20 MiB of RSS with 10,000 nodes, bench B9). */
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);

    rc = parse_opts(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (resolve_listen(o.listen, &addr, &addr_len) < 0) {
        fprintf(stderr, "trainyard server: --listen '%s' is not HOST:PORT\n", o.listen);
        return 2;
    }

    /* Blocked before any thread starts, so every thread inherits it. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (prepare_data_dir(o.data) < 0)
        return 1;
    snprintf(path, sizeof(path), "%s/server.url", o.data);
    unlink(path);
    snprintf(path, sizeof(path), "%s/trainyard.db", o.data);
    if (store_open(path, o.sync, &store) < 0)
        return 1;

    memset(&ctx, 0, sizeof(ctx));
    ctx.store = store;
    ctx.data_dir = o.data;
    ctx.node_timeout_ms = o.node_timeout_s * 1000;
    ctx.max_snapshot_bytes = (int64_t)o.max_snapshot_mb * 1024 * 1024;
    ctx.max_artifact_bytes = (int64_t)o.max_artifact_mb * 1024 * 1024;
    ctx.version = TRAINYARD_VERSION;
    if (api_bootstrap_admin(&ctx) < 0) {
        store_free(store);
        return 1;
    }
    routes_init();
    http.ctx = &ctx;
    sched_cfg.store = store;
    sched_cfg.node_timeout_ms = ctx.node_timeout_ms;
    sched_cfg.tick_ms = 1000;
    sched_cfg.ca_file = o.ca;
    if (scheduler_new(&sched_cfg, &ctx.sched) < 0 || stream_start() < 0) {
        scheduler_free(ctx.sched);
        store_free(store);
        return 1;
    }
    if (workers_start((int)o.threads) < 0) {
        stream_stop();
        scheduler_free(ctx.sched);
        store_free(store);
        return 1;
    }

    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (o.tls_cert) {
        /* MHD keeps pointers to these: they live until the daemon stops. */
        if (file_read(o.tls_cert, 1 << 20, &tls_cert) < 0 ||
            file_read(o.tls_key, 1 << 20, &tls_key) < 0) {
            free(tls_cert);
            stream_stop();
            workers_stop();
            scheduler_free(ctx.sched);
            store_free(store);
            return 1;
        }
        flags |= MHD_USE_TLS;
        tls_opts[0].option = MHD_OPTION_HTTPS_MEM_CERT;
        tls_opts[0].ptr_value = tls_cert;
        tls_opts[1].option = MHD_OPTION_HTTPS_MEM_KEY;
        tls_opts[1].ptr_value = tls_key;
    }
    daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_handle, &http, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)(usable_cpus() > 16 ? 16 : usable_cpus()), MHD_OPTION_NOTIFY_COMPLETED,
        http_completed, &http, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024), MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (daemon == NULL) {
        log_error("server: cannot listen on '%s' (in use, or not an address of this machine)",
                  o.listen);
        stream_stop();
        workers_stop();
        scheduler_free(ctx.sched);
        store_free(store);
        free(tls_cert);
        free(tls_key);
        return 1;
    }
    info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL ||
        write_url_file(o.data, &addr, info->port, o.tls_cert ? "https" : "http") < 0) {
        log_error("server: cannot write '%s/server.url'", o.data);
        stream_stop();
        http_drain();
        MHD_stop_daemon(daemon);
        workers_stop();
        scheduler_free(ctx.sched);
        store_free(store);
        free(tls_cert);
        free(tls_key);
        return 1;
    }

    if (o.dev)
        dev_agent = start_dev_agent(o.data, &addr, info->port, o.tls_cert);
    if (sigwait(&signals, &sig) != 0)
        sig = SIGTERM;
    /* The agent goes first, so its last reports still reach this server. */
    stop_dev_agent(dev_agent);
    log_info("server: %s received; finishing requests in flight", strsignal(sig));
    __atomic_store_n(&ctx.shutting_down, 1, __ATOMIC_RELAXED);
    MHD_quiesce_daemon(daemon);
    stream_stop();
    http_drain();
    drain_connections(daemon);
    MHD_stop_daemon(daemon);
    workers_stop();
    scheduler_free(ctx.sched);
    snprintf(path, sizeof(path), "%s/server.url", o.data);
    unlink(path);
    store_free(store);
    free(tls_cert);
    free(tls_key);
    log_info("server: stopped");
    return 0;
}
