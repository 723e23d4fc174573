/*
 * docker.h - tasks in container images (`trainyard agent --runtime
 * docker`): the agent drives the Docker Engine API over its Unix socket
 * with libcurl (no docker CLI). A task of a run with an `image` is pulled
 * when missing, created (host network, the task's environment, its
 * directory and the Python helper mounted at the same paths, its uid:gid,
 * labels trainyard.run/task/node, exactly its GPUs), started, its output
 * read into the task's log, waited for, stopped on cancel (SIGTERM, the
 * grace, SIGKILL) and removed. The mpi backend's launcher runs mpirun in
 * such a container, and each worker holds one that /v1/exec starts orted
 * in (dockermpi.c). Loop thread only.
 */
#ifndef TRAINYARD_AGENT_DOCKER_H
#define TRAINYARD_AGENT_DOCKER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#include "agent/internal.h"

/* The Engine API version the agent speaks (Docker 20.10 and later). */
#define DOCKER_API "/v1.41"
#define DOCKER_DEFAULT_SOCKET "/var/run/docker.sock"
/* Where mpi containers have the agent's static trainyard-rsh (read-only). */
#define DOCKER_RSH_PATH "/usr/local/libexec/trainyard-rsh"

/* Asks the daemon at socket whether it answers (blocking, at start-up,
 * before the loop runs). 0, or -1 with why in err. */
int docker_ping(const char *socket, char *err, size_t err_size);

/* The agent's client on a->loop for a->docker_socket; the caller then
 * calls docker_reconcile(). */
struct docker *docker_open(struct agent *a);
/* Removes every container labelled with this node whose task the agent
 * does not hold (what an earlier agent left). */
void docker_reconcile(struct docker *d);
/* At agent stop, after every task was killed: frees the client once its
 * requests have ended (at most a few seconds later). */
void docker_close(struct docker *d);

/* Runs t's process in a container of its assignment's image; ends with
 * task_finish() like a process does. */
void docker_task_start(struct task *t);
/* Stops t's container: SIGTERM, SIGKILL after the agent's grace. */
void docker_task_stop(struct task *t);
/* The agent is stopping: t's container goes at once. */
void docker_task_kill(struct task *t);
/* Whether a request about t is in flight (t must not be freed). */
bool docker_task_busy(const struct task *t);
/* Frees t's container state (task_free). */
void docker_task_free(struct task *t);

/* In a container the task's GPUs are numbered from 0: rewrites env's
 * CUDA_VISIBLE_DEVICES (when set) to 0..n_gpus-1. */
void docker_renumber_gpus(char **env, int n_gpus);

struct exec_stream;
/*
 * /v1/exec for an mpi worker in a container (dockermpi.c): runs argv
 * (orted) in t's container with env, t's directory and user (POST
 * /containers/{id}/exec, then /exec/{id}/start, its multiplexed output
 * relayed into stream and t's log), and ends stream with its exit code
 * (GET /exec/{id}/json), then task_exec_ended(). Takes the loop's
 * reference to stream; argv and env are borrowed. An exec cannot be
 * signalled through the Engine API: it ends with the container (a stop
 * of t, or the agent's), or by itself.
 */
void docker_exec_start(struct task *t, char *const *argv, char *const *env,
                       struct exec_stream *stream);

/* What a container is created with; every pointer borrowed. */
struct docker_create {
    const char *image;
    char **argv; /* NULL-terminated */
    char **env; /* NULL-terminated "K=V" */
    const char *workdir;
    const char *user; /* "uid:gid", or NULL: the image's user */
    const char *const *binds; /* NULL-terminated "host:container[:ro]" */
    const char *run;
    const char *task;
    const char *node;
    const cJSON *gpus; /* the task's GPU indices (numbers), or NULL/empty */
};

/* The body of POST /containers/create (caller deletes). */
cJSON *docker_create_body(const struct docker_create *c);

/* Whether an assignment's image is a reference the agent will use. */
bool docker_image_ok(const char *ref);

/* ---- a pull's progress (POST /images/create streams JSON lines) ---- */

#define DOCKER_PULL_LAYERS 128

struct docker_pull_layer {
    char id[72];
    int64_t current; /* bytes downloaded */
    int64_t total; /* its size; 0 while unknown */
    bool done; /* downloaded (or already there) */
};

struct docker_pull {
    struct docker_pull_layer layers[DOCKER_PULL_LAYERS];
    int n_layers;
    char digest[80]; /* "sha256:...", once the daemon said it */
    char *error; /* the first error line's text (caller frees) */
};

/* Feeds one line of the stream: byte counts, digest, error. A step worth
 * a log line (not a layer's byte counts) goes to log_line, else "". */
void docker_pull_feed(struct docker_pull *p, const char *line, size_t len, char *log_line,
                      size_t log_size);
/* "pulled 12.5 of 40.0 MiB (2 of 5 layers)" */
void docker_pull_summary(const struct docker_pull *p, char *out, size_t size);

/* ---- an image derived for pip_packages ---- */

/* "trainyard-derived:<16 hex>": a hash of the base image's id and the
 * sorted, distinct package set (caller frees). */
char *docker_derived_tag(const char *image_id, const cJSON *packages);
/* The Dockerfile: FROM base, an ARG per name in args (NULL-terminated;
 * pip's settings from the run's environment), and a pip install of the
 * sorted, distinct packages (caller frees). */
char *docker_dockerfile(const char *base, const cJSON *packages, const char *const *args);
/* A tar holding only this Dockerfile, the build's context, into out. 0 or -1. */
int docker_build_context(const char *dockerfile, struct buf *out);
/* One line of a build's output stream: its text for the log into
 * log_line ("" when none); an error line's text into *error (the first
 * one; caller frees). */
void docker_build_feed(const char *line, size_t len, char *log_line, size_t log_size, char **error);

#endif
