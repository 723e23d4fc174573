/*
 * gang.h - the working types of one placement pass (placement.c) shared
 * with the code that writes a placed run's task argv and environment
 * (taskenv.c). Internal to scheduler/; one thread (the pass's).
 */
#ifndef TRAINYARD_SCHEDULER_GANG_H
#define TRAINYARD_SCHEDULER_GANG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/backend.h"
#include "common/buf.h"
#include "store/store.h"

#define MAX_GPUS STORE_MAX_GPUS

struct port_space;

struct node {
    struct sched_node *s; /* in state: what is placed is written back there */
    const char *name;
    const char *pool;
    const char *host;
    const char *agent_url;
    double cpus;
    double used_cpus;
    int64_t memory_mb;
    int64_t used_memory_mb;
    int n_gpus;
    int n_free_gpus; /* which ones: s->gpu_used */
    int port_min;
    int port_max;
    unsigned fmask; /* FEATURE_* bits it has */
    struct port_space *ports; /* shared by the nodes of its host */
    bool taken; /* by the run being placed */
    bool reserved; /* held for an earlier run that waits for capacity */
};

struct task {
    const char *id;
    const char *name;
    enum task_type kind;
    int index;
    int group;
    double cpus;
    int64_t memory_mb;
    int gpus;
    bool needs_port;
    /* decided */
    int port;
    int gpu_list[MAX_GPUS];
};

struct group {
    double cpus;
    int64_t memory_mb;
    int gpus;
    int ports; /* tasks of the group that need an address */
    struct node *node;
};

/* Adds a placed run (its tasks on groups' nodes, GPUs and ports decided)
 * to out, with each task's argv and environment (SPEC §4); env is
 * scratch. */
void gang_emit(const struct sched_run *run, struct task *tasks, int n_tasks, struct group *groups,
               struct buf *env, struct sched_placements *out);

#endif
