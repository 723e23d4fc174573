/*
 * options.c - `trainyard agent`'s command line: its help, parsing, and
 * taking the token (then hiding it from /proc).
 */
#include "agent/docker.h"
#include "agent/internal.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/err.h"
#include "common/file.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/xalloc.h"
#include "common/banned.h"

const char agent_usage[] =
    "usage: trainyard agent --server URL --token-file FILE [options]\n"
    "\n"
    "Runs the node agent: registers this machine with the server and runs its tasks.\n"
    "\n"
    "  --server URL        the server's base URL (or TRAINYARD_SERVER)\n"
    "  --token-file FILE   read the agent (or admin) token from FILE (or TRAINYARD_TOKEN_FILE)\n"
    "  --token T           the token itself (or TRAINYARD_TOKEN); the agent hides it from\n"
    "                      /proc/PID/cmdline and environ at start, but prefer --token-file\n"
    "  --name N            node name (default: the hostname)\n"
    "  --listen HOST:PORT  where the agent API listens (default 0.0.0.0:7070; port 0 picks one)\n"
    "  --advertise HOST    the host others reach this node and its tasks at (default: the\n"
    "                      --listen host, or the hostname when that is a wildcard)\n"
    "  --pool P            node pool, the runs' compute_target (default 'default')\n"
    "  --cpus N            CPUs to offer (default: all online CPUs)\n"
    "  --memory-mb N       memory to offer in MiB (default: physical memory)\n"
    "  --gpus N            declare N GPUs instead of asking nvidia-smi\n"
    "  --work DIR          working directory for snapshots, tasks and venvs\n"
    "                      (default ./var/agent-NAME)\n"
    "  --python PATH       Python for entry scripts (default /usr/bin/python3)\n"
    "  --label K=V         a node label (repeatable)\n"
    "  --ports MIN-MAX     ports for tasks that need one (default 20000-29999)\n"
    "  --runtime R         how tasks run: 'process' (default) or 'docker': runs with an image\n"
    "                      run in containers through the Docker daemon (the node gets the\n"
    "                      'docker' feature; the agent refuses to start if the daemon does\n"
    "                      not answer)\n"
    "  --docker-socket P   the Docker daemon's socket (default /var/run/docker.sock)\n"
    "  --grace S           seconds between SIGTERM and SIGKILL when stopping (default 3)\n"
    "  --max-snapshot-unpacked-mb N\n"
    "                      most a snapshot may unpack to, in MiB (default 4096)\n"
    "  --task-uids A-B     uids (and gids) for tasks when run as root (default\n"
    "                      2000000000-2000065535); each run gets one of its own on this node\n"
    "  --task-user NAME    run every task as this one user instead (weaker: runs can reach\n"
    "                      each other's processes and files)\n"
    "  --log-level LEVEL   debug, info, warn or error (default info)\n"
    "  --tls-cert FILE     serve the agent API over HTTPS with this certificate (PEM)\n"
    "  --tls-key FILE      its private key (PEM)\n"
    "  --ca FILE           CA certificates to verify the server (and other agents) with\n"
    "  --hollow N          simulate N nodes in this process (for tests and benchmarks): they\n"
    "                      register as NAME-00000.., accept tasks and \"run\" them without\n"
    "                      spawning anything\n"
    "  --task-seconds S    with --hollow: mean task duration (default 1)\n"
    "  --heartbeat-stats FILE  with --hollow: on SIGUSR1 and at exit, append a line to FILE\n"
    "                      with the heartbeats' round-trip times since the last line\n"
    "                      (count, failures, p50, p90, p99, max)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Isolation: run as root, the agent starts each run's tasks on this node under a uid and\n"
    "gid of that run's own from --task-uids (no /etc/passwd entry is needed; USER and LOGNAME\n"
    "are ty-UID, HOME the task's directory); tasks of one run on a node (an mpi launcher, its\n"
    "ranks and orted) share it, two runs never do. The work directory is root's (0711), each\n"
    "task directory belongs to its run's uid (0700), the snapshot cache is root's only, the\n"
    "Python helper and shared venvs are root's and read-only to tasks (pip runs under a uid of\n"
    "its own, then the venv is sealed). Every directory above --work must be traversable by\n"
    "others (o+x), and --python must be executable by them. The agent is not dumpable and\n"
    "hides its token, so tasks cannot read it from /proc. Not run as root, the agent cannot\n"
    "switch users: tasks run as the agent's user (a warning says so).\n";

/* Splits HOST:PORT; *ret_host is allocated. */
static int split_listen(const char *listen, char **ret_host, unsigned *ret_port)
{
    const char *colon = strrchr(listen, ':');
    long port;

    if (colon == NULL || !parse_long(colon + 1, 0, 65535, &port))
        return ERR_INVALID;
    if (listen[0] == '[' && colon > listen + 1 && colon[-1] == ']')
        *ret_host = xstrndup(listen + 1, (size_t)(colon - listen - 2));
    else
        *ret_host = xstrndup(listen, (size_t)(colon - listen));
    *ret_port = (unsigned)port;
    return 0;
}

/* Hides a secret's bytes in this process's argv or initial environment
 * (what /proc/PID/cmdline and /proc/PID/environ show). */
static void scrub(char *s)
{
    memset(s, '*', strlen(s));
}

/* Reads the token from --token, --token-file, TRAINYARD_TOKEN or
 * TRAINYARD_TOKEN_FILE (in that order) and hides every copy of it from
 * /proc. Returns 0 or 2 (usage). */
static int take_token(struct agent *a, char *opt_token, const char *opt_file)
{
    char *env_token = getenv("TRAINYARD_TOKEN");
    const char *env_file = getenv("TRAINYARD_TOKEN_FILE");
    const char *file = opt_file ? opt_file : (opt_token || env_token) ? NULL : env_file;
    char why[512];

    if (opt_token && opt_file) {
        fprintf(stderr, "trainyard agent: --token and --token-file cannot be used together\n");
        return 2;
    }
    if (opt_token)
        a->token = xstrdup(opt_token);
    else if (file == NULL && env_token)
        a->token = xstrdup(env_token);
    if (file) {
        a->token = file_read_secret(file, why, sizeof(why));
        if (a->token == NULL) {
            fprintf(stderr, "trainyard agent: --token-file: %s\n", why);
            return 2;
        }
    }
    if (opt_token)
        scrub(opt_token);
    if (env_token) {
        scrub(env_token);
        unsetenv("TRAINYARD_TOKEN");
    }
    return 0;
}

/* Parses --task-uids FIRST-LAST. */
static bool parse_uid_range(const char *s, struct agent *a)
{
    long first;
    long last;
    const char *dash = strchr(s, '-');
    char *head;
    bool ok;

    if (dash == NULL)
        return false;
    head = xstrndup(s, (size_t)(dash - s));
    ok = parse_long(head, 1, 4294967294L, &first) && parse_long(dash + 1, 1, 4294967294L, &last) &&
         first <= last && last - first < 1000000;
    free(head);
    if (ok) {
        a->uid_first = (uid_t)first;
        a->uid_last = (uid_t)last;
    }
    return ok;
}

/* Fills a and o from the command line and environment. Returns 0, 1 when
 * --help was printed, or 2 after a usage error (printed). */
int parse_options(struct agent *a, struct agent_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "server", required_argument, NULL, 's' },
        { "token", required_argument, NULL, 't' },
        { "token-file", required_argument, NULL, 'T' },
        { "name", required_argument, NULL, 'n' },
        { "listen", required_argument, NULL, 'l' },
        { "advertise", required_argument, NULL, 'a' },
        { "pool", required_argument, NULL, 'p' },
        { "cpus", required_argument, NULL, 'c' },
        { "memory-mb", required_argument, NULL, 'm' },
        { "gpus", required_argument, NULL, 'g' },
        { "work", required_argument, NULL, 'w' },
        { "python", required_argument, NULL, 'P' },
        { "label", required_argument, NULL, 'L' },
        { "ports", required_argument, NULL, 'r' },
        { "grace", required_argument, NULL, 'G' },
        { "task-uids", required_argument, NULL, 'U' },
        { "task-user", required_argument, NULL, 'u' },
        { "max-snapshot-unpacked-mb", required_argument, NULL, 'M' },
        { "log-level", required_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "hollow", required_argument, NULL, 'H' },
        { "tls-cert", required_argument, NULL, 'C' },
        { "tls-key", required_argument, NULL, 'K' },
        { "ca", required_argument, NULL, 'A' },
        { "task-seconds", required_argument, NULL, 'S' },
        { "heartbeat-stats", required_argument, NULL, 'B' },
        { "runtime", required_argument, NULL, 'R' },
        { "docker-socket", required_argument, NULL, 'D' },
        { NULL, 0, NULL, 0 },
    };
    char hostname[256] = "localhost";
    char *opt_token = NULL;
    const char *token_file = NULL;
    const char *task_user = NULL;
    bool uids_given = false;
    const char *runtime = "process";
    const char *docker_socket = DOCKER_DEFAULT_SOCKET;
    long v;
    int c;

    a->server = getenv("TRAINYARD_SERVER") ? xstrdup(getenv("TRAINYARD_SERVER")) : NULL;
    a->pool = xstrdup("default");
    a->python = xstrdup("/usr/bin/python3");
    a->listen = xstrdup("0.0.0.0:7070");
    a->cpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
    a->memory_mb = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) / (1024 * 1024);
    a->gpus_declared = -1;
    a->port_min = 20000;
    a->port_max = 29999;
    a->grace_ms = AGENT_DEFAULT_GRACE_MS;
    a->max_unpacked_bytes = (int64_t)ARCHIVE_DEFAULT_MAX_MB << 20;
    a->uid_first = AGENT_DEFAULT_UID_FIRST;
    a->uid_last = AGENT_DEFAULT_UID_LAST;
    a->labels = cJSON_CreateObject();
    o->task_seconds = 1;
    gethostname(hostname, sizeof(hostname) - 1);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            free(a->server);
            a->server = xstrdup(optarg);
            break;
        case 't':
            opt_token = optarg;
            break;
        case 'T':
            token_file = optarg;
            break;
        case 'n':
            free(a->name);
            a->name = xstrdup(optarg);
            break;
        case 'l':
            free(a->listen);
            a->listen = xstrdup(optarg);
            break;
        case 'a':
            free(a->advertise);
            a->advertise = xstrdup(optarg);
            break;
        case 'p':
            free(a->pool);
            a->pool = xstrdup(optarg);
            break;
        case 'c':
            a->cpus = strtod(optarg, NULL);
            if (!(a->cpus > 0)) {
                fprintf(stderr, "trainyard agent: --cpus must be a number above 0\n");
                return 2;
            }
            break;
        case 'm':
            if (!parse_long(optarg, 0, LONG_MAX, &v)) {
                fprintf(stderr, "trainyard agent: --memory-mb must be a non-negative integer\n");
                return 2;
            }
            a->memory_mb = v;
            break;
        case 'g':
            if (!parse_long(optarg, 0, 64, &v)) {
                fprintf(stderr, "trainyard agent: --gpus must be 0..64\n");
                return 2;
            }
            a->gpus_declared = (int)v;
            break;
        case 'w':
            o->work = optarg;
            break;
        case 'P':
            free(a->python);
            a->python = xstrdup(optarg);
            break;
        case 'L': {
            const char *eq = strchr(optarg, '=');
            char *key;

            if (eq == NULL || eq == optarg) {
                fprintf(stderr, "trainyard agent: --label must be KEY=VALUE\n");
                return 2;
            }
            key = xstrndup(optarg, (size_t)(eq - optarg));
            cJSON_AddStringToObject(a->labels, key, eq + 1);
            free(key);
            break;
        }
        case 'r':
            if (sscanf(optarg, "%d-%d", &a->port_min, &a->port_max) != 2 || a->port_min < 1 ||
                a->port_max > 65535 || a->port_min > a->port_max) {
                fprintf(stderr, "trainyard agent: --ports must be MIN-MAX\n");
                return 2;
            }
            break;
        case 'G':
            if (!parse_long(optarg, 0, 3600, &v)) {
                fprintf(stderr, "trainyard agent: --grace must be 0..3600 seconds\n");
                return 2;
            }
            a->grace_ms = v * 1000;
            break;
        case 'U':
            if (!parse_uid_range(optarg, a)) {
                fprintf(stderr, "trainyard agent: --task-uids must be FIRST-LAST, 1 <= FIRST <= "
                                "LAST < 4294967295, at most 1000000 uids\n");
                return 2;
            }
            uids_given = true;
            break;
        case 'u':
            task_user = optarg;
            break;
        case 'M':
            if (!parse_long(optarg, 1, 16777216, &v)) {
                fprintf(stderr,
                        "trainyard agent: --max-snapshot-unpacked-mb must be 1..16777216\n");
                return 2;
            }
            a->max_unpacked_bytes = (int64_t)v << 20;
            break;
        case 'v':
            if (strcmp(optarg, "debug") == 0)
                log_set_level(LOG_LEVEL_DEBUG);
            else if (strcmp(optarg, "warn") == 0)
                log_set_level(LOG_LEVEL_WARN);
            else if (strcmp(optarg, "error") == 0)
                log_set_level(LOG_LEVEL_ERROR);
            break;
        case 'C':
            o->tls_cert = optarg;
            break;
        case 'K':
            o->tls_key = optarg;
            break;
        case 'A':
            free(a->ca);
            a->ca = xstrdup(optarg);
            break;
        case 'H':
            if (!parse_long(optarg, 1, 100000, &o->hollow)) {
                fprintf(stderr, "trainyard agent: --hollow must be 1..100000\n");
                return 2;
            }
            break;
        case 'S':
            o->task_seconds = strtod(optarg, NULL);
            if (!(o->task_seconds >= 0)) {
                fprintf(stderr, "trainyard agent: --task-seconds must be >= 0\n");
                return 2;
            }
            break;
        case 'B':
            o->heartbeat_stats = optarg;
            break;
        case 'R':
            runtime = optarg;
            if (strcmp(runtime, "process") != 0 && strcmp(runtime, "docker") != 0) {
                fprintf(stderr, "trainyard agent: --runtime must be 'process' or 'docker'\n");
                return 2;
            }
            break;
        case 'D':
            docker_socket = optarg;
            break;
        case 'h':
            fputs(agent_usage, stdout);
            return 1;
        default:
            return 2;
        }
    }
    if (take_token(a, opt_token, token_file) != 0)
        return 2;
    if (strcmp(runtime, "docker") == 0)
        a->docker_socket = xstrdup(docker_socket);
    if (optind < argc) {
        fprintf(stderr, "trainyard agent: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "trainyard agent: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (a->server == NULL || a->token == NULL) {
        fprintf(stderr, "trainyard agent: --server and --token (or --token-file) are required\n");
        return 2;
    }
    if (task_user && uids_given) {
        fprintf(stderr, "trainyard agent: --task-user and --task-uids cannot be used together\n");
        return 2;
    }
    if (ident_configure(a, task_user) != 0)
        return 2;
    while (strlen(a->server) > 0 && a->server[strlen(a->server) - 1] == '/')
        a->server[strlen(a->server) - 1] = '\0';
    if (a->name == NULL)
        a->name = xstrdup(hostname);
    if (split_listen(a->listen, &o->host, &o->port) < 0) {
        fprintf(stderr, "trainyard agent: --listen '%s' is not HOST:PORT\n", a->listen);
        return 2;
    }
    return 0;
}
