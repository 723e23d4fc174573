/*
 * task.h - what the task files of agent/ share (task.c: a task's life and
 * its processes; prepare.c: its snapshot, directory and venv; report.c:
 * delivering its logs, metrics, outputs and statuses; mpi.c: mpirun and
 * /v1/exec). Loop thread only.
 */
#ifndef TRAINYARD_AGENT_TASK_H
#define TRAINYARD_AGENT_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/internal.h"
#include "common/backend.h"
#include "common/buf.h"
#include "common/spawn.h"

#define PUMP_MS 250
#define LOG_CHUNK (1024 * 1024)
#define METRICS_BATCH (256 * 1024)
#define MAX_LINE (64 * 1024)

struct status_msg {
    enum task_status status; /* reportable (task_status_is_reportable()) */
    int exit_code;
    char *message;
    struct status_msg *next;
};

struct stream_reader {
    uv_pipe_t pipe;
    struct task *task;
    struct buf line;
    bool is_stderr;
};

struct docker_task;

typedef void (*after_fn)(struct task *t, int64_t exit_status, int term_signal);

struct task {
    struct agent *a;
    struct task *next;
    char *id;
    cJSON *assignment;
    char *dir;
    char *src;
    char *outputs;
    char *log_path;
    char *metrics_path;
    int log_fd;
    int metrics_fd;
    char *write_error; /* the first lost write to them (fails the task), or NULL */
    const char *status; /* preparing, running, exited */

    /* the current child process (pip, venv or the task itself) */
    struct proc proc;
    struct stream_reader out;
    struct stream_reader err;
    int child_handles; /* open handles of the current child */
    bool child_exited;
    int64_t exit_status;
    int term_signal;
    after_fn after;
    int pgid;
    bool main_started;

    uv_timer_t pump_timer;
    uv_timer_t kill_timer;
    int own_handles; /* pump_timer and kill_timer, until closed */
    bool stop_requested;
    bool finished; /* the task's work is over; only reporting remains */
    bool freeing;

    /* reporting */
    int64_t log_size;
    int64_t log_acked;
    bool log_in_flight;
    int64_t metrics_size;
    int64_t metrics_acked;
    int64_t batch_end;
    bool metrics_in_flight;
    struct status_msg *statuses;
    bool status_in_flight;
    bool final_queued;
    cJSON *steps;
    cJSON *uploads;
    int upload_next;
    int upload_fails;
    bool upload_in_flight;
    bool uploads_listed;
    int venv_wait;
    bool work_pending; /* an unpack runs on the thread pool */
    bool download_pending; /* the snapshot download is in flight */
    bool final_acked; /* the server has the final status */

    /* who its processes run as (ident.c) */
    char *run; /* the run's id, the key of its uid */
    struct proc_cred cred;
    bool has_cred; /* false: as the agent */
    bool venv_cred; /* the venv build holds venv_build, a uid of its own */
    struct proc_cred venv_build;

    /* in a container (docker.c), or NULL */
    struct docker_task *docker;

    /* mpi: a worker holds its node's slots and runs what /v1/exec starts */
    bool holder;
    struct exec_ref {
        struct exec_stream *stream;
        int pgid;
        bool ended;
    } execs[16];
    int n_execs;
    int live_execs;
};

/* ---- task.c ---- */

/* The task's work is over: lists its outputs and queues the final status. */
void task_finish(struct task *t, enum task_status status, int exit_code, const char *message);
/* Forgets the task once nothing refers to it any more. */
void task_release(struct task *t);
/* Appends a line of the agent's own to the task's log. */
void task_log_text(struct task *t, const char *text);
/* The environment of a task's process: inherited basics, extra (the job's
 * variables), identity, helper path; room is left for 4 more entries. */
char **task_env(struct task *t, const cJSON *extra);
/* The same for a process in a container: without the agent's own PATH,
 * LANG and the like (the image's apply). */
char **task_image_env(struct task *t, const cJSON *extra);
/* Feeds output of the task's process to r's lines (and metrics); end
 * flushes a last unterminated line. */
void task_stream_feed(struct stream_reader *r, const char *data, size_t len, bool end);
void task_free_strv(char **v);
/* Starts argv in cwd as cred in a new process group; its output becomes
 * log lines and metrics; after runs once it has exited and is drained. */
int task_spawn(struct task *t, char **argv, char **env, const char *cwd,
               const struct proc_cred *cred, after_fn after);
/* Starts the task's own process (or holds the node for an mpi worker). */
void task_start_main(struct task *t, const char *python);

/* ---- mpi.c ---- */

/* Signals every live exec (orted) of an mpi worker task. */
void task_kill_execs(struct task *t, int sig);
/* Adds Open MPI's settings for trainyard to env (the job's own win). */
void task_mpi_defaults(struct task *t, cJSON *env);
/* Writes the hostfile and puts mpirun's options before the program in
 * argv; returns how many. */
int task_mpirun_argv(struct task *t, const cJSON *env, char **argv);
/* The mpi worker of the launcher's run on this node (node rank 0), or NULL. */
struct task *task_local_worker(struct task *launcher);

/* ---- prepare.c ---- */

/* Snapshot (download, check, unpack), directory, venv; then
 * task_start_main(), or task_finish() with the reason it failed. */
void task_prepare(struct task *t);
/* The venv directory of the task's pip_packages (caller frees). */
char *task_venv_dir(struct task *t);
/* Ends a venv build's hold on its uid (killing what it left running). */
void task_venv_end_build(struct task *t, const char *dir);

/* ---- report.c ---- */

/* Queues a status for the server (resent until acknowledged). */
void task_queue_status(struct task *t, enum task_status status, int exit_code, const char *message);
/* Sends what is due: logs, metrics, outputs, then statuses. */
void task_pump(struct task *t);
void task_on_pump_timer(uv_timer_t *timer);
/* Whether a report is in flight. */
bool task_reporting(const struct task *t);

#endif
