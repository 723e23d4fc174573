/*
 * internal.h - what the files of agent/ share. Everything here runs on
 * the agent's loop thread unless it says otherwise.
 */
#ifndef TRAINYARD_AGENT_INTERNAL_H
#define TRAINYARD_AGENT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/uvcurl.h"

struct task;
struct proc_cred;
struct docker;

#define AGENT_DEFAULT_GRACE_MS 3000
/* The static remote shell of mpi runs in images, in helper_dir. */
#define AGENT_RSH_STATIC "trainyard-rsh"
/* Above systemd's ranges (containers end at 1879048191) and below 2^31,
 * which some tools still treat as signed: no account lives there. */
#define AGENT_DEFAULT_UID_FIRST 2000000000u
#define AGENT_DEFAULT_UID_LAST 2000065535u

/* Who tasks run as (ident.c). */
enum task_ident {
    TASK_IDENT_SELF, /* the agent is not root: tasks run as the agent */
    TASK_IDENT_RANGE, /* one uid per run from uid_first..uid_last */
    TASK_IDENT_USER, /* --task-user: every task as one user */
};

struct ident_slot;

struct agent {
    uv_loop_t *loop;
    struct uvcurl *http;
    /* options */
    char *server; /* base URL, no trailing slash */
    char *token; /* agent (or admin) token for the server */
    char *name;
    char *pool;
    char *work; /* absolute work directory */
    char *python;
    char *advertise;
    char *listen;
    double cpus;
    int64_t memory_mb;
    int gpus_declared; /* -1: detect with nvidia-smi */
    int port_min;
    int port_max;
    int64_t grace_ms;
    int64_t max_unpacked_bytes; /* --max-snapshot-unpacked-mb */
    cJSON *labels;
    enum task_ident ident;
    uid_t uid_first;
    uid_t uid_last;
    uid_t user_uid; /* TASK_IDENT_USER */
    gid_t user_gid;
    struct ident_slot *slots; /* uids in use (TASK_IDENT_RANGE) */
    /* state */
    char *agent_url;
    char *node_secret; /* set by registration; guarded by secret_mu for the API thread */
    uv_mutex_t secret_mu;
    bool registered;
    int64_t heartbeat_ms;
    uv_timer_t heartbeat;
    uv_timer_t register_retry;
    bool heartbeat_in_flight;
    struct task *tasks;
    char *helper_dir; /* holds the trainyard Python helper (put on PYTHONPATH) and
                       * AGENT_RSH_STATIC; mounted into every container */
    char *python_version;
    char *self_exe; /* this program, for mpirun's rsh agent */
    char *ca; /* --ca: CA file for HTTPS peers, or NULL */
    char *tls_cert_pem; /* --tls-cert/--tls-key contents, or NULL */
    char *tls_key_pem;
    char *docker_socket; /* --runtime docker: the daemon's socket; NULL: processes */
    struct docker *docker; /* its client (docker.c), while the agent runs */
    bool stopping;
};

/* ---- task.c ---- */

/* Accepts an assignment (the JSON of SPEC §3.5 POST /v1/tasks). Returns
 * 201 for a new task, 200 when it is already known, 400 when invalid
 * (with *ret_error set, static). */
int task_assign(struct agent *a, const cJSON *assignment, const char **ret_error);
/* Stops a task (SIGTERM to its group, SIGKILL after the grace period).
 * Returns false when no such task is here. */
bool task_stop(struct agent *a, const char *id, const char *why);
/* The live tasks as [{"id", "status"}] for heartbeats and GET /v1/tasks. */
cJSON *task_list(struct agent *a, bool all);
/* Kills what a previous agent left running in the work directory. */
void task_reap_leftovers(struct agent *a);
/* task_stop() for each task: SIGTERM now, SIGKILL after the grace. */
void task_stop_each(struct agent *a, const char *why);
/* Kills every task (SIGKILL) and frees each once nothing refers to it:
 * the end of the agent's stop. */
void task_stop_all(struct agent *a);
/* Number of tasks still held. */
int task_count(struct agent *a);

/* For exec.c (MPI remote launch), all on the loop thread: */
struct exec_stream;
/* The live mpi worker task whose exec secret is secret, or NULL. */
struct task *task_for_exec(struct agent *a, const char *secret);
/* Whether an mpi worker task with that secret is here but not running
 * yet (preparing, or its container on its way). */
bool task_exec_pending(struct agent *a, const char *secret);
/* Whether the task runs in a container (its execs go there: docker.h). */
bool task_in_container(struct task *t);
/* Its environment (caller frees each string and the array; in its
 * image's terms when in a container) and directory. */
char **task_exec_env(struct task *t);
const char *task_exec_cwd(struct task *t);
/* Who its processes run as; NULL: as the agent. */
const struct proc_cred *task_exec_cred(struct task *t);
const char *task_id(struct task *t);
/* An exec of the task started (with its process group), and ended. */
void task_exec_started(struct task *t, struct exec_stream *stream);
void task_exec_pid(struct task *t, struct exec_stream *stream, int pid);
void task_exec_ended(struct task *t, struct exec_stream *stream);
/* Appends raw output to the task's log. */
void task_log_bytes(struct task *t, const char *data, size_t len);
/* exec.c: true once the caller of an exec has disconnected. */
bool exec_caller_gone(struct exec_stream *s);

/* ---- ident.c: who tasks run as ---- */

/* Chooses the identity mode from the options (task_user or NULL) and the
 * agent's own uid; 0, or 2 after printing a usage error. */
int ident_configure(struct agent *a, const char *task_user);
/* The credentials for a task of run (a venv build passes a key of its
 * own): the run's uid, allocated on first use. Returns 1 with *ret set,
 * 0 when tasks run as the agent (TASK_IDENT_SELF), -1 when no uid is
 * free (*ret_error set). Each return of 1 is matched by one
 * ident_release(). */
int ident_acquire(struct agent *a, const char *run, struct proc_cred *ret, const char **ret_error);
/* Drops a use; the last one kills whatever still runs under the uid. */
void ident_release(struct agent *a, const char *run);
/* Fails (with a message on stderr) when a task user could not reach dir
 * because a directory above it is not traversable by others. */
int ident_check_reachable(struct agent *a, const char *dir);
/* Environment entries for a task running as cred: USER, LOGNAME, HOME. */
void ident_env(const struct proc_cred *cred, const char *home, char **env, int *n);

/* ---- files.c ---- */

/* mkdir -p with mode for the directories it creates; 0 or ERR_INTERNAL. */
int make_dirs(const char *path, mode_t mode);
/* rm -rf, never following a link. */
void remove_tree(const char *path);
/* Gives every entry of a tree (not following links) to uid:gid. */
int chown_tree(const char *path, uid_t uid, gid_t gid);
/* Makes a tree root's and read-only to others: root:root, no group or
 * other write, no set-id bits, readable (and traversable) by all. */
int seal_tree(const char *path);
/* Opens rel (a relative path) under the directory dirfd without following
 * any link on the way: a regular file, for reading; -1 (errno set) else. */
int open_regular_under(int dirfd, const char *rel);

/* ---- options.c ---- */

extern const char agent_usage[];

/* What parse_options() leaves outside struct agent. */
struct agent_opts {
    const char *work;
    long hollow;
    const char *tls_cert;
    const char *tls_key;
    double task_seconds;
    const char *heartbeat_stats; /* --heartbeat-stats FILE, or NULL */
    char *host; /* from --listen, allocated */
    unsigned port;
};

/* Fills a and o from the command line and environment. Returns 0, 1 when
 * --help was printed, or 2 after a usage error (printed). */
int parse_options(struct agent *a, struct agent_opts *o, int argc, char **argv);

/* ---- client.c ---- */

/* Registers the node (retrying every second until the server takes it),
 * then heartbeats at the interval the server gave. */
void client_register(struct agent *a);

/* Starts an HTTP request to the server (path begins with /) with the agent
 * token. cb as for uvcurl_start(); 0 or ERR_INTERNAL. */
int agent_server_request(struct agent *a, const char *method, const char *path,
                         const char *content_type, const void *body, size_t len,
                         const char *body_file, const char *download_file, uvcurl_cb cb, void *arg);

#endif
