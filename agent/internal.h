/*
 * internal.h - what the files of agent/ share. Everything here runs on
 * the agent's loop thread unless it says otherwise.
 */
#ifndef TRAINYARD_AGENT_INTERNAL_H
#define TRAINYARD_AGENT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/uvcurl.h"

struct task;

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
    char *helper_dir; /* holds the trainyard Python helper, put on PYTHONPATH */
    char *python_version;
    char *self_exe; /* this program, for mpirun's rsh agent */
    char *ca; /* --ca: CA file for HTTPS peers, or NULL */
    char *tls_cert_pem; /* --tls-cert/--tls-key contents, or NULL */
    char *tls_key_pem;
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
/* Stops every task and frees them once they have exited and reported, or
 * at once when force is set. */
void task_stop_all(struct agent *a);
/* Number of tasks still held. */
int task_count(struct agent *a);

/* For exec.c (MPI remote launch), all on the loop thread: */
struct exec_stream;
/* The live mpi worker task whose exec secret is secret, or NULL. */
struct task *task_for_exec(struct agent *a, const char *secret);
/* Its environment (caller frees each string and the array) and directory. */
char **task_exec_env(struct task *t);
const char *task_exec_cwd(struct task *t);
const char *task_id(struct task *t);
/* An exec of the task started (with its process group), and ended. */
void task_exec_started(struct task *t, struct exec_stream *stream);
void task_exec_pid(struct task *t, struct exec_stream *stream, int pid);
void task_exec_ended(struct task *t, struct exec_stream *stream);
/* Appends raw output to the task's log. */
void task_log_bytes(struct task *t, const char *data, size_t len);
/* exec.c: true once the caller of an exec has disconnected. */
bool exec_caller_gone(struct exec_stream *s);

/* ---- agent.c ---- */

/* Starts an HTTP request to the server (path begins with /) with the agent
 * token. cb as for uvcurl_start(); 0 or ERR_INTERNAL. */
int agent_server_request(struct agent *a, const char *method, const char *path,
                         const char *content_type, const void *body, size_t len,
                         const char *body_file, const char *download_file, uvcurl_cb cb, void *arg);

#endif
