/*
 * server.c - `trainyard server`: options, the data directory, start-up and
 * clean shutdown. SIGINT/SIGTERM are blocked in every thread and taken by
 * the main thread with sigwait(), so handlers never run in signal context.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api.h"
#include "common/archive.h"
#include "common/err.h"
#include "common/file.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/timeutil.h"
#include "common/version.h"
#include "common/xalloc.h"
#include "server/conns.h"
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
    long unschedulable_timeout_s;
    long max_snapshot_mb;
    long max_snapshot_unpacked_mb;
    long max_snapshot_ratio;
    long max_artifact_mb;
    long max_log_mb;
    long max_metric_points;
    long threads;
    long agent_threads;
    long max_conns;
    long max_conns_per_ip;
    long idle_timeout_s;
    long header_timeout_s;
    long max_followers;
    long max_followers_per_run;
    enum store_sync sync;
    bool dev;
    bool reset_admin_token;
    const char *join_token_file;
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
    "  --unschedulable-timeout S\n"
    "                          seconds a queued run that no node of its pool (ready or not)\n"
    "                          could ever hold waits before it fails with its 'unschedulable:'\n"
    "                          reason (default 600; 0: at once)\n"
    "  --max-snapshot-mb N     largest snapshot upload accepted, in MiB (default 256)\n"
    "  --max-snapshot-unpacked-mb N\n"
    "                          most a snapshot may unpack to, in MiB (default 4096)\n"
    "  --max-snapshot-ratio N  most a snapshot may unpack to per byte uploaded (default\n"
    "                          100; 0: no limit; not checked below 1 MiB unpacked)\n"
    "  --max-artifact-mb N     largest output file a task may upload, in MiB (default 1024)\n"
    "  --max-log-mb N          log kept per run, in MiB; the rest is dropped and the run\n"
    "                          marked log_truncated (default 256)\n"
    "  --max-metric-points N   metric points kept per run; later ones are dropped and the\n"
    "                          run marked metrics_truncated (default 10000000)\n"
    "  --threads N             threads for requests that may block (default 4 per CPU\n"
    "                          it may use, at most 64); the rest run on one HTTP\n"
    "                          thread per CPU\n"
    "  --agent-threads N       threads for agents' requests that may block, apart from\n"
    "                          the others, so users cannot delay heartbeats (default 2)\n"
    "  --max-connections N     open connections in all; more get 503 unavailable\n"
    "                          (default 1024, less when the file limit is lower)\n"
    "  --max-connections-per-ip N\n"
    "                          open connections from one client address; more get 429\n"
    "                          too_many_requests (default 256)\n"
    "  --idle-timeout S        close a connection idle this long (default 60)\n"
    "  --header-timeout S      close a connection whose request line and headers have\n"
    "                          not all arrived this long after it started (default 10)\n"
    "  --max-followers N       log and event streams open at once (default 256; more\n"
    "                          get 503 unavailable)\n"
    "  --max-followers-per-run N\n"
    "                          such streams on one run (default 32; more get 429\n"
    "                          too_many_requests)\n"
    "  --sync full|normal      SQLite synchronous mode: full survives power loss, normal\n"
    "                          survives a crash of the server (default full)\n"
    "  --dev                   also run a local agent for this machine\n"
    "  --reset-admin-token     recovery: write a new admin token to <data>/admin.token\n"
    "                          (mode 0600), say where, and exit; other tokens stay\n"
    "  --join-token-file FILE  keep a join token in FILE (mode 0600; made at start when\n"
    "                          FILE holds none): it may only create agent tokens, each\n"
    "                          bound to a node name nobody has, so agents can join\n"
    "                          without an admin token (docker-compose.yml uses it)\n"
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

/* The options that take a number, with their ranges: one row each. */
static const struct {
    const char *name;
    size_t offset; /* of the long in struct server_opts */
    long min;
    long max;
} numeric_opts[] = {
    { "node-timeout", offsetof(struct server_opts, node_timeout_s), 1, 86400 },
    { "unschedulable-timeout", offsetof(struct server_opts, unschedulable_timeout_s), 0, 31536000 },
    { "max-snapshot-mb", offsetof(struct server_opts, max_snapshot_mb), 1, 1048576 },
    { "max-snapshot-unpacked-mb", offsetof(struct server_opts, max_snapshot_unpacked_mb), 1,
      16777216 },
    { "max-snapshot-ratio", offsetof(struct server_opts, max_snapshot_ratio), 0, 1000000 },
    { "max-artifact-mb", offsetof(struct server_opts, max_artifact_mb), 1, 1048576 },
    { "max-log-mb", offsetof(struct server_opts, max_log_mb), 1, 1048576 },
    { "max-metric-points", offsetof(struct server_opts, max_metric_points), 1, 1000000000000L },
    { "threads", offsetof(struct server_opts, threads), 1, 256 },
    { "agent-threads", offsetof(struct server_opts, agent_threads), 1, 64 },
    { "max-connections", offsetof(struct server_opts, max_conns), 16, 1000000 },
    { "max-connections-per-ip", offsetof(struct server_opts, max_conns_per_ip), 1, 1000000 },
    { "idle-timeout", offsetof(struct server_opts, idle_timeout_s), 1, 86400 },
    { "header-timeout", offsetof(struct server_opts, header_timeout_s), 1, 3600 },
    { "max-followers", offsetof(struct server_opts, max_followers), 1, 1000000 },
    { "max-followers-per-run", offsetof(struct server_opts, max_followers_per_run), 1, 1000000 },
};

#define N_NUMERIC_OPTS (sizeof(numeric_opts) / sizeof(numeric_opts[0]))

/* getopt_long values of the options without a short form. */
enum server_opt {
    OPT_LISTEN = 256,
    OPT_DATA,
    OPT_SYNC,
    OPT_DEV,
    OPT_RESET_ADMIN_TOKEN,
    OPT_JOIN_TOKEN_FILE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_CA,
    OPT_LOG_LEVEL,
    OPT_NUMERIC, /* + the index in numeric_opts */
};

static int parse_opts(int argc, char **argv, struct server_opts *o)
{
    static const struct option named[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "data", required_argument, NULL, OPT_DATA },
        { "sync", required_argument, NULL, OPT_SYNC },
        { "dev", no_argument, NULL, OPT_DEV },
        { "reset-admin-token", no_argument, NULL, OPT_RESET_ADMIN_TOKEN },
        { "join-token-file", required_argument, NULL, OPT_JOIN_TOKEN_FILE },
        { "tls-cert", required_argument, NULL, OPT_TLS_CERT },
        { "tls-key", required_argument, NULL, OPT_TLS_KEY },
        { "ca", required_argument, NULL, OPT_CA },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "help", no_argument, NULL, 'h' },
    };
    struct option longopts[sizeof(named) / sizeof(named[0]) + N_NUMERIC_OPTS + 1];
    size_t n = 0;
    size_t i;
    int c;

    for (i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        longopts[n++] = named[i];
    for (i = 0; i < N_NUMERIC_OPTS; i++)
        longopts[n++] =
            (struct option){ numeric_opts[i].name, required_argument, NULL, OPT_NUMERIC + (int)i };
    longopts[n] = (struct option){ NULL, 0, NULL, 0 };

    memset(o, 0, sizeof(*o)); /* options not given stay NULL */
    o->listen = "127.0.0.1:8080";
    o->data = "./var";
    o->node_timeout_s = 15;
    o->unschedulable_timeout_s = 600;
    o->max_snapshot_mb = 256;
    o->max_snapshot_unpacked_mb = ARCHIVE_DEFAULT_MAX_MB;
    o->max_snapshot_ratio = ARCHIVE_DEFAULT_MAX_RATIO;
    o->max_artifact_mb = 1024;
    o->max_log_mb = STORE_DEFAULT_MAX_LOG_BYTES / (1024 * 1024);
    o->max_metric_points = STORE_DEFAULT_MAX_METRIC_POINTS;
    o->threads = default_threads();
    o->agent_threads = 2;
    o->max_conns = 0; /* from the file limit, in server_main */
    o->max_conns_per_ip = 256;
    o->idle_timeout_s = 60;
    o->header_timeout_s = 10;
    o->max_followers = 256;
    o->max_followers_per_run = 32;
    o->sync = STORE_SYNC_FULL;
    o->dev = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c >= OPT_NUMERIC && c < OPT_NUMERIC + (int)N_NUMERIC_OPTS) {
            size_t k = (size_t)(c - OPT_NUMERIC);

            if (!parse_long(optarg, numeric_opts[k].min, numeric_opts[k].max,
                            (long *)((char *)o + numeric_opts[k].offset))) {
                fprintf(stderr, "trainyard server: --%s must be %ld..%ld\n", numeric_opts[k].name,
                        numeric_opts[k].min, numeric_opts[k].max);
                return 2;
            }
            continue;
        }
        switch (c) {
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case OPT_DATA:
            o->data = optarg;
            break;
        case OPT_SYNC:
            if (strcmp(optarg, "full") == 0) {
                o->sync = STORE_SYNC_FULL;
            } else if (strcmp(optarg, "normal") == 0) {
                o->sync = STORE_SYNC_NORMAL;
            } else {
                fprintf(stderr, "trainyard server: --sync must be full or normal\n");
                return 2;
            }
            break;
        case OPT_DEV:
            o->dev = true;
            break;
        case OPT_RESET_ADMIN_TOKEN:
            o->reset_admin_token = true;
            break;
        case OPT_JOIN_TOKEN_FILE:
            o->join_token_file = optarg;
            break;
        case OPT_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            o->tls_key = optarg;
            break;
        case OPT_CA:
            o->ca = optarg;
            break;
        case OPT_LOG_LEVEL:
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

/* nftw callback: removes everything below the walk's root, depth first. */
static int remove_below_root(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    if (ftw->level == 0)
        return 0;
    if (remove(path) < 0 && errno != ENOENT) {
        log_error("server: cannot remove '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * The files that hold secrets (the database and its WAL files hold token
 * hashes, node secrets and every task's environment; admin.token the admin
 * secret) are 0600 whatever the directory's mode or the umask was: the
 * database is created here with that mode (SQLite gives its -wal and -shm
 * files the database's mode), and a data directory from an older version
 * has these files tightened. Links are left alone: a link is not a file
 * this server made.
 */
static int protect_secret_files(const char *data)
{
    static const char *const names[] = { "trainyard.db", "trainyard.db-wal", "trainyard.db-shm",
                                         "admin.token", NULL };
    const char *const *name;
    char path[4096];
    struct stat st;
    int fd;

    snprintf(path, sizeof(path), "%s/trainyard.db", data);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        log_error("server: cannot open database '%s': %s", path, strerror(errno));
        return ERR_INTERNAL;
    }
    close(fd);
    for (name = names; *name; name++) {
        snprintf(path, sizeof(path), "%s/%s", data, *name);
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0)
            continue;
        if (chmod(path, st.st_mode & 0700) < 0) {
            log_error("server: cannot make '%s' private (mode 0600): %s", path, strerror(errno));
            return ERR_INTERNAL;
        }
        log_warn("server: '%s' was readable by others (mode %04o); it is 0600 now", path,
                 (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/*
 * Creates DIR, DIR/snapshots and DIR/tmp, and empties DIR/tmp: what is
 * there is a spooled upload of a request that a stopped server never
 * finished, and nothing refers to it.
 */
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
    if (nftw(path, remove_below_root, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        log_error("server: cannot empty '%s'", path);
        return ERR_INTERNAL;
    }
    return protect_secret_files(data);
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

/* The umask the server was started with; the local agent gets it back. */
static mode_t caller_umask = 022;

/*
 * --dev: runs `trainyard agent` for this machine as a child process, with
 * the admin token by its file (never in argv or the environment), and the
 * server's unpacked-snapshot limit, so that what the server takes it runs.
 */
static pid_t start_dev_agent(const char *data, const struct sockaddr_storage *addr, uint16_t port,
                             const char *tls_cert, long unpacked_mb)
{
    char url[128];
    char unpacked[32];
    char token_path[4096];
    char work[4096];
    char host[256] = "local";
    /* The rest stays NULL for the options appended below. */
    char *argv[20] = { "trainyard", "agent",    "--server",     url,       "--name",
                       host,        "--listen", "127.0.0.1:0",  "--work",  work,
                       "--grace",   "3",        "--token-file", token_path };
    size_t argc = 0;
    char **env;
    size_t n = 0;
    size_t i;
    pid_t pid;
    sigset_t none;
    struct stat st;

    (void)addr;
    snprintf(url, sizeof(url), "%s://127.0.0.1:%u", tls_cert ? "https" : "http", port);
    snprintf(token_path, sizeof(token_path), "%s/admin.token", data);
    snprintf(work, sizeof(work), "%s/agent", data);
    snprintf(unpacked, sizeof(unpacked), "%ld", unpacked_mb);
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
    while (argv[argc])
        argc++;
    argv[argc++] = "--max-snapshot-unpacked-mb";
    argv[argc++] = unpacked;
    if (tls_cert) {
        /* A self-signed certificate is its own CA: give the agent that. */
        argv[argc++] = "--ca";
        argv[argc++] = (char *)tls_cert;
    }
    assert(argc < sizeof(argv) / sizeof(argv[0]));
    /*
     * The server blocks SIGTERM for sigwait() and runs with umask 077; the
     * agent must inherit neither (it makes directories its tasks read).
     * posix_spawn() cannot set a umask: the child does it between fork()
     * and exec, with async-signal-safe calls only.
     */
    sigemptyset(&none);
    pid = fork();
    if (pid == 0) {
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        umask(caller_umask);
        execve("/proc/self/exe", argv, env);
        _exit(127);
    }
    if (pid < 0) {
        log_error("server: cannot start the local agent: %s", strerror(errno));
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

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    static int64_t window_ms;
    static int in_window;
    static int dropped;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int64_t now = time_mono_us() / 1000;
    char line[512];
    int quiet = 0;

    (void)cls;
    /* At most 10 lines a second: a flood of refused connections would
     * otherwise be a flood of lines. */
    pthread_mutex_lock(&mu);
    if (now - window_ms >= 1000) {
        quiet = dropped;
        dropped = 0;
        window_ms = now;
        in_window = 0;
    }
    if (++in_window > 10) {
        dropped++;
        pthread_mutex_unlock(&mu);
        return;
    }
    pthread_mutex_unlock(&mu);
    if (quiet > 0)
        log_warn("http: %d more such lines left out", quiet);
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("http: %s", line);
}

/*
 * Raises the open-file limit to its hard limit and returns how many
 * connections fit in it, leaving room for the database, uploads, artifact
 * reads and the agents' sockets (1,100 idle sockets past the default 1,024
 * made accept() fail and /healthz time out).
 */
static long connections_that_fit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 512;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
        return 1000000;
    return rl.rlim_cur > 512 ? (long)rl.rlim_cur - 256 : (long)rl.rlim_cur / 2;
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

/* --reset-admin-token: a new admin token in <data>/admin.token, then exit. */
static int reset_admin_token(const char *data)
{
    struct store *store;
    struct api_ctx ctx;
    char path[4096];
    int rc;

    /* Not prepare_data_dir(): a running server's uploads in tmp/ stay. */
    if (make_dir(data) < 0 || protect_secret_files(data) < 0)
        return 1;
    snprintf(path, sizeof(path), "%s/trainyard.db", data);
    if (store_open(path, STORE_SYNC_FULL, &store) < 0)
        return 1;
    memset(&ctx, 0, sizeof(ctx));
    ctx.store = store;
    ctx.data_dir = data;
    rc = api_reset_admin_token(&ctx, path, sizeof(path));
    store_free(store);
    if (rc < 0)
        return 1;
    printf("trainyard server: a new admin token is in '%s' (mode 0600); earlier tokens still "
           "work: delete the ones that are lost with DELETE /api/v1/tokens/{id}\n",
           path);
    return 0;
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
    long fit;
    long hard_conns;
    long hard_conns_per_ip;
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
    /* Whatever the caller's umask, what the server creates under the data
     * directory (database, tokens, snapshots, artifacts, spooled uploads)
     * is for it alone. */
    caller_umask = umask(077);
    if (o.reset_admin_token)
        return reset_admin_token(o.data);
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
    store_set_quotas(
        store, &(struct store_quotas){ (int64_t)o.max_log_mb * 1024 * 1024, o.max_metric_points });
    store_on_commit(store, stream_wake, NULL);

    memset(&ctx, 0, sizeof(ctx));
    ctx.store = store;
    ctx.data_dir = o.data;
    ctx.node_timeout_ms = o.node_timeout_s * 1000;
    ctx.max_snapshot_bytes = (int64_t)o.max_snapshot_mb * 1024 * 1024;
    ctx.max_artifact_bytes = (int64_t)o.max_artifact_mb * 1024 * 1024;
    ctx.max_snapshot_unpacked_bytes = (int64_t)o.max_snapshot_unpacked_mb * 1024 * 1024;
    ctx.max_snapshot_ratio = o.max_snapshot_ratio;
    ctx.version = TRAINYARD_VERSION;
    ctx.max_followers = (int)o.max_followers;
    ctx.max_followers_per_run = (int)o.max_followers_per_run;
    fit = connections_that_fit();
    if (o.max_conns == 0)
        o.max_conns = fit < 1024 ? fit : 1024;
    else if (o.max_conns > fit)
        log_warn("server: --max-connections %ld is more than the open-file limit allows (%ld)",
                 o.max_conns, fit);
    /* Past --max-connections(-per-ip), connections are still taken and
     * answered with an error (conns.c); MHD closes them at accept only past
     * these higher caps. */
    hard_conns = o.max_conns + (o.max_conns / 4 > 64 ? o.max_conns / 4 : 64);
    hard_conns = hard_conns < fit ? hard_conns : fit > o.max_conns ? fit : o.max_conns;
    hard_conns_per_ip = o.max_conns_per_ip * 2 > o.max_conns_per_ip + 16 ? o.max_conns_per_ip * 2
                                                                         : o.max_conns_per_ip + 16;
    if (api_bootstrap_admin(&ctx) < 0 ||
        (o.join_token_file && api_keep_join_token(&ctx, o.join_token_file) < 0)) {
        store_free(store);
        return 1;
    }
    routes_init();
    http.ctx = &ctx;
    sched_cfg.store = store;
    sched_cfg.node_timeout_ms = ctx.node_timeout_ms;
    sched_cfg.unschedulable_timeout_ms = o.unschedulable_timeout_s * 1000;
    sched_cfg.tick_ms = 1000;
    sched_cfg.ca_file = o.ca;
    if (scheduler_new(&sched_cfg, &ctx.sched) < 0 || stream_start() < 0) {
        scheduler_free(ctx.sched);
        store_free(store);
        return 1;
    }
    if (workers_start((int)o.threads, (int)o.agent_threads) < 0 ||
        conns_start(o.header_timeout_s * 1000, (int)o.max_conns, (int)o.max_conns_per_ip) < 0) {
        workers_stop();
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
            conns_stop();
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
        MHD_OPTION_UNESCAPE_CALLBACK, http_unescape, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)(usable_cpus() > 16 ? 16 : usable_cpus()), MHD_OPTION_NOTIFY_COMPLETED,
        http_completed, &http, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)o.idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)hard_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)hard_conns_per_ip, MHD_OPTION_NOTIFY_CONNECTION, conns_notify, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, conns_request_started, NULL,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024), MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (daemon == NULL) {
        log_error("server: cannot listen on '%s' (in use, or not an address of this machine)",
                  o.listen);
        stream_stop();
        workers_stop();
        conns_stop();
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
        conns_stop();
        scheduler_free(ctx.sched);
        store_free(store);
        free(tls_cert);
        free(tls_key);
        return 1;
    }

    if (o.dev)
        dev_agent =
            start_dev_agent(o.data, &addr, info->port, o.tls_cert, o.max_snapshot_unpacked_mb);
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
    conns_stop();
    scheduler_free(ctx.sched);
    snprintf(path, sizeof(path), "%s/server.url", o.data);
    unlink(path);
    store_free(store);
    free(tls_cert);
    free(tls_key);
    log_info("server: stopped");
    return 0;
}
