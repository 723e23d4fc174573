/*
 * backend.c - the domain's names and the backends' table (backend.h).
 *
 * Task order (the task list a run is stored with, SPEC §4):
 *   none     main
 *   ps       chief, ps-0.., worker-0.., evaluator; dealt round-robin over
 *            the nodes in that order
 *   pytorch  rank-0..rank-(nodes x ppn - 1), ppn ranks per node
 *   mpi      launcher (mpirun: waits on the ranks, holds nothing, on the
 *            first node), then worker-i on node i holding the node's ppn
 *            slots
 */
#include "common/backend.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/banned.h"

static const char *const run_statuses[RUN_STATUS_COUNT] = {
    [RUN_QUEUED] = "queued",       [RUN_STARTING] = "starting", [RUN_RUNNING] = "running",
    [RUN_COMPLETED] = "completed", [RUN_FAILED] = "failed",     [RUN_CANCELED] = "canceled",
};

static const char *const task_statuses[TASK_STATUS_COUNT] = {
    [TASK_PENDING] = "pending", [TASK_ASSIGNED] = "assigned",   [TASK_PREPARING] = "preparing",
    [TASK_RUNNING] = "running", [TASK_SUCCEEDED] = "succeeded", [TASK_FAILED] = "failed",
    [TASK_KILLED] = "killed",   [TASK_LOST] = "lost",
};

/* name; whether its name carries the index ("ps-0"); whether it counts for the outcome */
static const struct {
    const char *name;
    bool indexed;
    bool decides;
} task_types[TASK_TYPE_COUNT] = {
    [TASK_MAIN] = { "main", false, true },
    [TASK_CHIEF] = { "chief", false, true },
    [TASK_PS] = { "ps", true, true },
    [TASK_WORKER] = { "worker", true, true },
    [TASK_EVALUATOR] = { "evaluator", false, false },
    [TASK_LAUNCHER] = { "launcher", false, true },
    [TASK_RANK] = { "rank", true, true },
};

static const struct backend_rules table[BACKEND_COUNT];

static const char *const features[FEATURE_COUNT] = { "mpi", "conda", "docker" };

static int find(const char *const *names, int n, const char *name)
{
    int i;

    for (i = 0; name != NULL && i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    return -1;
}

const char *run_status_name(enum run_status s)
{
    assert(s >= 0 && s < RUN_STATUS_COUNT);
    return run_statuses[s];
}

int run_status_parse(const char *name)
{
    return find(run_statuses, RUN_STATUS_COUNT, name);
}

bool run_status_is_final(enum run_status s)
{
    return s == RUN_COMPLETED || s == RUN_FAILED || s == RUN_CANCELED;
}

const char *task_status_name(enum task_status s)
{
    assert(s >= 0 && s < TASK_STATUS_COUNT);
    return task_statuses[s];
}

int task_status_parse(const char *name)
{
    return find(task_statuses, TASK_STATUS_COUNT, name);
}

bool task_status_is_live(enum task_status s)
{
    return s == TASK_ASSIGNED || s == TASK_PREPARING || s == TASK_RUNNING;
}

bool task_status_is_ended(enum task_status s)
{
    return s == TASK_SUCCEEDED || s == TASK_FAILED || s == TASK_KILLED || s == TASK_LOST;
}

bool task_status_is_reportable(enum task_status s)
{
    return s == TASK_PREPARING || s == TASK_RUNNING || s == TASK_SUCCEEDED || s == TASK_FAILED;
}

const char *task_type_name(enum task_type t)
{
    assert(t >= 0 && t < TASK_TYPE_COUNT);
    return task_types[t].name;
}

int task_type_parse(const char *name)
{
    int i;

    for (i = 0; name != NULL && i < TASK_TYPE_COUNT; i++) {
        if (strcmp(task_types[i].name, name) == 0)
            return i;
    }
    return -1;
}

bool task_type_decides(enum task_type t)
{
    assert(t >= 0 && t < TASK_TYPE_COUNT);
    return task_types[t].decides;
}

void task_name(enum task_type t, int index, char *out, size_t size)
{
    assert(t >= 0 && t < TASK_TYPE_COUNT);
    if (task_types[t].indexed)
        snprintf(out, size, "%s-%d", task_types[t].name, index);
    else
        snprintf(out, size, "%s", task_types[t].name);
}

const char *feature_name(int i)
{
    assert(i >= 0 && i < FEATURE_COUNT);
    return features[i];
}

unsigned features_of(const cJSON *list)
{
    const cJSON *f;
    unsigned mask = 0;
    int i;

    cJSON_ArrayForEach(f, list) {
        if (cJSON_IsString(f) && (i = find(features, FEATURE_COUNT, f->valuestring)) >= 0)
            mask |= 1u << i;
    }
    return mask;
}

/* A task holding one process's share. */
static void one_process(const struct run_shape *r, enum task_type type, int index, int group,
                        bool needs_port, struct task_slot *out)
{
    out->type = type;
    out->index = index;
    out->group = group;
    out->needs_port = needs_port;
    out->cpus = r->cpus_per_process;
    out->memory_mb = r->memory_mb_per_process;
    out->gpus = r->gpus_per_process;
}

/* ---- none: one process */

static int single_count(const struct run_shape *r)
{
    (void)r;
    return 1;
}

static void single_slot(const struct run_shape *r, int i, struct task_slot *out)
{
    assert(i == 0);
    one_process(r, TASK_MAIN, 0, 0, false, out);
}

static bool single_done(const struct run_shape *r, const struct task_tally *t)
{
    (void)r;
    return t->succeeded[TASK_MAIN] == 1;
}

/* ---- ps: TF_CONFIG's chief, parameter servers, workers, evaluator */

static int ps_count(const struct run_shape *r)
{
    return r->chief + r->parameter_server_count + r->worker_count + r->evaluator;
}

static void ps_slot(const struct run_shape *r, int i, struct task_slot *out)
{
    int k = i;
    enum task_type type;

    if (r->chief && k == 0) {
        type = TASK_CHIEF;
    } else if ((k -= r->chief) < r->parameter_server_count) {
        type = TASK_PS;
    } else if ((k -= r->parameter_server_count) < r->worker_count) {
        type = TASK_WORKER;
    } else {
        assert(r->evaluator && k == r->worker_count);
        type = TASK_EVALUATOR;
        k = 0;
    }
    one_process(r, type, k, i % r->node_count, true, out);
}

static bool ps_done(const struct run_shape *r, const struct task_tally *t)
{
    if (r->chief)
        return t->succeeded[TASK_CHIEF] == 1;
    return t->n[TASK_WORKER] > 0 && t->succeeded[TASK_WORKER] == t->n[TASK_WORKER];
}

/* ---- pytorch: ranks, process_count_per_node per node */

static int pytorch_count(const struct run_shape *r)
{
    return r->node_count * r->process_count_per_node;
}

static void pytorch_slot(const struct run_shape *r, int i, struct task_slot *out)
{
    /* Rank 0's address is MASTER_ADDR:MASTER_PORT. */
    one_process(r, TASK_RANK, i, i / r->process_count_per_node, i == 0, out);
}

static bool pytorch_done(const struct run_shape *r, const struct task_tally *t)
{
    (void)r;
    return t->n[TASK_RANK] > 0 && t->succeeded[TASK_RANK] == t->n[TASK_RANK];
}

/* ---- mpi: mpirun, and a worker per node that hosts the node's ranks */

static int mpi_count(const struct run_shape *r)
{
    return 1 + r->node_count;
}

static void mpi_slot(const struct run_shape *r, int i, struct task_slot *out)
{
    int ppn = r->process_count_per_node;

    if (i == 0) {
        one_process(r, TASK_LAUNCHER, 0, 0, false, out);
        out->cpus = 0;
        out->memory_mb = 0;
        out->gpus = 0;
        return;
    }
    one_process(r, TASK_WORKER, i - 1, i - 1, false, out);
    out->cpus = r->cpus_per_process * ppn;
    out->memory_mb = r->memory_mb_per_process * ppn;
    out->gpus = r->gpus_per_process * ppn;
}

static bool mpi_done(const struct run_shape *r, const struct task_tally *t)
{
    (void)r;
    return t->succeeded[TASK_LAUNCHER] == 1;
}

static const struct backend_rules table[BACKEND_COUNT] = {
    [BACKEND_NONE] = { NULL, 0, single_count, single_slot, single_done, false },
    [BACKEND_PS] = { "ps", 0, ps_count, ps_slot, ps_done, false },
    [BACKEND_PYTORCH] = { "pytorch", 0, pytorch_count, pytorch_slot, pytorch_done, false },
    [BACKEND_MPI] = { "mpi", FEATURE_MPI, mpi_count, mpi_slot, mpi_done, true },
};

const struct backend_rules *backend_rules(enum backend b)
{
    assert(b >= 0 && b < BACKEND_COUNT);
    return &table[b];
}

int backend_parse(const char *name)
{
    int i;

    if (name == NULL)
        return BACKEND_NONE;
    for (i = 1; i < BACKEND_COUNT; i++) {
        if (strcmp(table[i].name, name) == 0)
            return i;
    }
    return -1;
}
