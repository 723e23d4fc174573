/*
 * backend.h - the run's domain as C: run and task statuses, task types and
 * the distributed backends, each backend one entry of a table that says
 * what tasks a run of it has, how they split over its nodes and what each
 * holds, which node features it needs, and when the run is done (SPEC §4,
 * docs/API-NOTES.md). The environment each backend gives its tasks is the
 * scheduler's part of the table (scheduler/taskenv.c), since it writes the
 * placement's own types.
 *
 * Names are the SPEC's strings; *_parse() maps a name back (-1 when it is
 * none). Pure functions and constant tables: any thread.
 */
#ifndef TRAINYARD_COMMON_BACKEND_H
#define TRAINYARD_COMMON_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum run_status {
    RUN_QUEUED,
    RUN_STARTING,
    RUN_RUNNING,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_CANCELED,
    RUN_STATUS_COUNT
};

enum task_status {
    TASK_PENDING,
    TASK_ASSIGNED,
    TASK_PREPARING,
    TASK_RUNNING,
    TASK_SUCCEEDED,
    TASK_FAILED,
    TASK_KILLED,
    TASK_LOST,
    TASK_STATUS_COUNT
};

enum task_type {
    TASK_MAIN,
    TASK_CHIEF,
    TASK_PS,
    TASK_WORKER,
    TASK_EVALUATOR,
    TASK_LAUNCHER,
    TASK_RANK,
    TASK_TYPE_COUNT
};

enum backend {
    BACKEND_NONE, /* one process: distributed_backend null */
    BACKEND_PS,
    BACKEND_PYTORCH,
    BACKEND_MPI,
    BACKEND_COUNT
};

/* Node features a run may need, as bits (a node's features list names them). */
#define FEATURE_MPI 1u
#define FEATURE_CONDA 2u
#define FEATURE_DOCKER 4u
#define FEATURE_COUNT 3

const char *run_status_name(enum run_status s);
int run_status_parse(const char *name);
bool run_status_is_final(enum run_status s);
const char *task_status_name(enum task_status s);
int task_status_parse(const char *name);
/* Holds resources on its node: assigned, preparing, running. */
bool task_status_is_live(enum task_status s);
/* succeeded, failed, killed, lost. */
bool task_status_is_ended(enum task_status s);
/* What an agent may report: preparing, running, succeeded, failed. */
bool task_status_is_reportable(enum task_status s);
const char *task_type_name(enum task_type t);
int task_type_parse(const char *name);
/* "mpi", "conda", "docker" for bit i of FEATURE_*. */
const char *feature_name(int i);
/* The FEATURE_* bits of a features list (JSON array of names). */
unsigned features_of(const cJSON *list);

/* What of a validated run spec decides its tasks and where they go. */
struct run_shape {
    enum backend backend;
    int node_count;
    int process_count_per_node;
    int worker_count;
    int parameter_server_count;
    bool chief;
    bool evaluator;
    double cpus_per_process;
    int64_t memory_mb_per_process;
    int gpus_per_process;
};

/* Task i of a run, as its backend lays it out. */
struct task_slot {
    enum task_type type;
    int index; /* among the tasks of its type */
    int group; /* which of the run's node_count nodes (0-based) */
    bool needs_port; /* the task gets an address (host:port) */
    double cpus;
    int64_t memory_mb;
    int gpus;
};

/* How many tasks of each type a run's current attempt has, and how many
 * of them succeeded: what the completion rules read. */
struct task_tally {
    int n[TASK_TYPE_COUNT];
    int succeeded[TASK_TYPE_COUNT];
};

struct backend_rules {
    const char *name; /* distributed_backend's value; NULL for BACKEND_NONE */
    unsigned features; /* FEATURE_* its nodes need */
    int (*task_count)(const struct run_shape *r);
    /* Task i (0 <= i < task_count) in the run's task order. */
    void (*slot)(const struct run_shape *r, int i, struct task_slot *out);
    /* Has the run completed, given its tasks' outcomes? */
    bool (*done)(const struct run_shape *r, const struct task_tally *t);
    /* Once done, the tasks still live are stopped; true when they then end
     * succeeded rather than killed (mpi: the workers hosted the ranks that
     * mpirun saw finish). */
    bool live_tasks_succeed;
};

const struct backend_rules *backend_rules(enum backend b);
/* BACKEND_* of distributed_backend's value (NULL: BACKEND_NONE), or -1. */
int backend_parse(const char *name);
/* Does a task of this type count for its run's outcome? (An evaluator
 * neither completes nor fails the gang.) */
bool task_type_decides(enum task_type t);
/* "ps-0", "worker-1", "rank-3"; "main", "chief", "evaluator" and
 * "launcher" have no index. Writes at most size bytes. */
void task_name(enum task_type t, int index, char *out, size_t size);

#endif
