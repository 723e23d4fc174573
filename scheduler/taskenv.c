/*
 * taskenv.c - a placed run's task argv and environment (SPEC §4): the
 * common TRAINYARD_* variables, TF_CONFIG for ps, the MPI hostfile and
 * ranks, torchrun's variables for pytorch.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/spec.h"
#include "common/xalloc.h"
#include "scheduler/gang.h"
#include "scheduler/ports.h"
#include "common/banned.h"

/*
 * A task's environment is written as JSON text (a tree per task, built
 * only to be printed, was most of a pass's time): env_add() appends one
 * "key": "value" member to the object open in b.
 */
static void env_add(struct buf *b, const char *key, const char *value)
{
    if (b->len > 1)
        buf_addc(b, ',');
    json_buf_string(b, key);
    buf_addc(b, ':');
    json_buf_string(b, value);
}

static void env_add_int(struct buf *b, const char *key, int value)
{
    char num[16];

    snprintf(num, sizeof(num), "%d", value);
    env_add(b, key, num);
}

static void add_common_env(struct buf *env, const struct run_spec *spec, const char *run_id,
                           const struct task *t, const struct node *n)
{
    char gpus[MAX_GPUS * 4 + 1] = "";
    int i;

    for (i = 0; i < spec->n_env; i++)
        env_add(env, spec->env[i].key, spec->env[i].value);
    env_add(env, "TRAINYARD_RUN_ID", run_id);
    env_add(env, "TRAINYARD_EXPERIMENT", spec->experiment);
    env_add(env, "TRAINYARD_TASK_TYPE", task_type_name(t->kind));
    env_add_int(env, "TRAINYARD_TASK_INDEX", t->index);
    env_add(env, "TRAINYARD_NODE", n->name);
    for (i = 0; i < t->gpus; i++) {
        size_t len = strlen(gpus);

        snprintf(gpus + len, sizeof(gpus) - len, "%s%d", i ? "," : "", t->gpu_list[i]);
    }
    env_add(env, "CUDA_VISIBLE_DEVICES", gpus);
}

/* TF_CONFIG's cluster: chief, ps, worker addresses in index order. */
static cJSON *tf_cluster(struct task *tasks, int n_tasks, struct group *groups)
{
    static const enum task_type kinds[] = { TASK_CHIEF, TASK_PS, TASK_WORKER };
    cJSON *cluster = cJSON_CreateObject();
    size_t k;
    int i;

    for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        cJSON *list = NULL;

        for (i = 0; i < n_tasks; i++) {
            char addr[300];

            if (tasks[i].kind != kinds[k])
                continue;
            if (list == NULL)
                list = cJSON_AddArrayToObject(cluster, task_type_name(kinds[k]));
            snprintf(addr, sizeof(addr), "%s:%d", groups[tasks[i].group].node->host, tasks[i].port);
            cJSON_AddItemToArray(list, cJSON_CreateString(addr));
        }
    }
    return cluster;
}

/*
 * The environment mpirun and the rsh shim need (SPEC §4 mpi), in every
 * task of an mpi run: hosts with their slots in node-rank order, the
 * agents that start orted on each host, and this attempt's exec secret.
 */
static void add_mpi_env(struct buf *env, struct task *tasks, int n_tasks, struct group *groups,
                        int ppn, const char *secret)
{
    struct buf hosts;
    cJSON *agents = cJSON_CreateObject();
    char *text;
    int np = 0;
    int i;

    buf_init(&hosts);
    for (i = 0; i < n_tasks; i++) {
        struct node *n = groups[tasks[i].group].node;

        if (tasks[i].kind != TASK_WORKER)
            continue;
        buf_printf(&hosts, "%s%s:%d", hosts.len ? "," : "", n->host, ppn);
        if (json_get(agents, n->host) == NULL)
            cJSON_AddStringToObject(agents, n->host, n->agent_url);
        np += ppn;
    }
    env_add(env, "TRAINYARD_MPI_HOSTS", hosts.data);
    env_add_int(env, "TRAINYARD_MPI_NP", np);
    text = json_print(agents);
    env_add(env, "TRAINYARD_MPI_AGENTS", text);
    env_add(env, "TRAINYARD_MPI_SECRET", secret);
    free(text);
    cJSON_Delete(agents);
    buf_release(&hosts);
}

/* TF_CONFIG of task t (SPEC §4 ps). */
static void add_tf_config(struct buf *env, const cJSON *cluster, const struct task *t,
                          const char *addr)
{
    cJSON *tf = cJSON_CreateObject();
    cJSON *task = cJSON_CreateObject();
    cJSON *own = cJSON_Duplicate(cluster, 1);
    char *text;

    /* The evaluator is in its own cluster only (TF2 coordinators hang when
     * it is in theirs). */
    if (t->kind == TASK_EVALUATOR) {
        cJSON *e = cJSON_AddArrayToObject(own, "evaluator");

        cJSON_AddItemToArray(e, cJSON_CreateString(addr));
    }
    cJSON_AddItemToObject(tf, "cluster", own);
    cJSON_AddStringToObject(task, "type", task_type_name(t->kind));
    cJSON_AddNumberToObject(task, "index", t->index);
    cJSON_AddItemToObject(tf, "task", task);
    cJSON_AddStringToObject(tf, "environment", "cloud");
    text = json_print(tf);
    env_add(env, "TF_CONFIG", text);
    free(text);
    cJSON_Delete(tf);
}

/* What torch.distributed.run (torchrun) sets for its workers (SPEC §4
 * pytorch), with trainyard's run in the elastic agent's place: one role
 * ("default") holding every rank, the run's attempt as the restart count,
 * its max_retries as the restart limit, its id as the rendezvous id. No
 * agent hosts a store: rank 0 does (TORCHELASTIC_USE_AGENT_STORE=False, as
 * under torchrun's c10d rendezvous). OMP_NUM_THREADS and
 * NCCL_ASYNC_ERROR_HANDLING keep the run's own value when it sets them. */
static void add_pytorch_env(struct buf *env, const struct sched_run *run, const struct task *tasks,
                            int n_tasks, const struct group *groups, int ppn, const struct task *t)
{
    const struct run_spec *spec = run->spec;
    const struct task *rank0 = &tasks[0];
    int attempt = (int)run->attempt;
    int node_count = n_tasks / ppn;

    assert(ppn >= 1 && n_tasks % ppn == 0 && attempt >= 1);
    env_add(env, "MASTER_ADDR", groups[rank0->group].node->host);
    env_add_int(env, "MASTER_PORT", rank0->port);
    env_add_int(env, "WORLD_SIZE", n_tasks);
    env_add_int(env, "RANK", t->index);
    env_add_int(env, "LOCAL_RANK", t->index % ppn);
    env_add_int(env, "LOCAL_WORLD_SIZE", ppn);
    env_add_int(env, "NODE_RANK", t->group);
    env_add_int(env, "GROUP_RANK", t->group);
    env_add_int(env, "GROUP_WORLD_SIZE", node_count);
    env_add(env, "ROLE_NAME", "default");
    env_add_int(env, "ROLE_RANK", t->index);
    env_add_int(env, "ROLE_WORLD_SIZE", n_tasks);
    env_add_int(env, "TORCHELASTIC_RESTART_COUNT", attempt - 1);
    env_add_int(env, "TORCHELASTIC_MAX_RESTARTS", (int)spec->max_retries);
    env_add(env, "TORCHELASTIC_RUN_ID", run->id);
    env_add(env, "TORCHELASTIC_USE_AGENT_STORE", "False");
    if (run_spec_env(spec, "NCCL_ASYNC_ERROR_HANDLING") == NULL)
        env_add(env, "NCCL_ASYNC_ERROR_HANDLING", "1");
    if (ppn > 1 && run_spec_env(spec, "OMP_NUM_THREADS") == NULL)
        env_add(env, "OMP_NUM_THREADS", "1");
}

/*
 * The environment part of the backends' table (common/backend.h): what a
 * placed run's tasks get beyond the common variables. begin() prepares
 * what the run's tasks share, task() adds one task's variables, end()
 * frees what begin() made; each may be NULL.
 */
struct gang_env {
    const struct sched_run *run;
    struct task *tasks;
    int n_tasks;
    struct group *groups;
    int ppn;
    cJSON *cluster; /* ps: TF_CONFIG's cluster */
    char secret[33]; /* mpi: this attempt's exec secret */
};

static void ps_begin(struct gang_env *g)
{
    g->cluster = tf_cluster(g->tasks, g->n_tasks, g->groups);
}

static void ps_task(struct buf *env, struct gang_env *g, const struct task *t, const char *addr)
{
    add_tf_config(env, g->cluster, t, addr);
}

static void ps_end(struct gang_env *g)
{
    cJSON_Delete(g->cluster);
}

static void pytorch_task(struct buf *env, struct gang_env *g, const struct task *t,
                         const char *addr)
{
    (void)addr;
    add_pytorch_env(env, g->run, g->tasks, g->n_tasks, g->groups, g->ppn, t);
}

static void mpi_begin(struct gang_env *g)
{
    crypto_random_hex(16, g->secret);
}

static void mpi_task(struct buf *env, struct gang_env *g, const struct task *t, const char *addr)
{
    (void)t;
    (void)addr;
    add_mpi_env(env, g->tasks, g->n_tasks, g->groups, g->ppn, g->secret);
}

static const struct {
    void (*begin)(struct gang_env *g);
    void (*task)(struct buf *env, struct gang_env *g, const struct task *t, const char *addr);
    void (*end)(struct gang_env *g);
} env_rules[BACKEND_COUNT] = {
    [BACKEND_NONE] = { NULL, NULL, NULL },
    [BACKEND_PS] = { ps_begin, ps_task, ps_end },
    [BACKEND_PYTORCH] = { NULL, pytorch_task, NULL },
    [BACKEND_MPI] = { mpi_begin, mpi_task, NULL },
};

/* Adds a placed run and its tasks to out; env is scratch. */
void gang_emit(const struct sched_run *run, struct task *tasks, int n_tasks, struct group *groups,
               struct buf *env, struct sched_placements *out)
{
    const struct run_spec *spec = run->spec;
    const char *run_id = run->id;
    enum backend b = spec->shape.backend;
    struct gang_env g = { .run = run,
                          .tasks = tasks,
                          .n_tasks = n_tasks,
                          .groups = groups,
                          .ppn = spec->shape.process_count_per_node };
    struct sched_run_place *rp;
    size_t argv_off;
    int i;

    assert(run->attempt >= 1);
    buf_reset(env);
    buf_addc(env, '[');
    for (i = 0; i < spec->argc; i++) {
        if (i > 0)
            buf_addc(env, ',');
        json_buf_string(env, spec->argv[i]);
    }
    buf_addc(env, ']');
    argv_off = sched_text_add(out, env->data, env->len);
    if (env_rules[b].begin)
        env_rules[b].begin(&g);
    if (out->n_runs == out->cap_runs) {
        out->cap_runs = out->cap_runs ? 2 * out->cap_runs : 64;
        out->runs = xrealloc(out->runs, out->cap_runs * sizeof(*out->runs));
    }
    if (out->n_tasks + (size_t)n_tasks > out->cap_tasks) {
        out->cap_tasks = 2 * out->cap_tasks > out->n_tasks + (size_t)n_tasks
                             ? 2 * out->cap_tasks
                             : out->n_tasks + (size_t)n_tasks + 64;
        out->tasks = xrealloc(out->tasks, out->cap_tasks * sizeof(*out->tasks));
    }
    rp = &out->runs[out->n_runs++];
    rp->run = run_id;
    rp->max_duration_s = spec->max_run_duration_s;
    rp->first = out->n_tasks;
    rp->n = (size_t)n_tasks;
    for (i = 0; i < n_tasks; i++) {
        struct task *t = &tasks[i];
        struct node *n = groups[t->group].node;
        struct sched_task_place *p = &out->tasks[out->n_tasks++];
        char addr[300] = "";
        int k;

        p->id = t->id;
        p->node = n->name;
        p->port = t->port;
        p->cpus = t->cpus;
        p->memory_mb = t->memory_mb;
        p->argv = argv_off;
        buf_reset(env);
        buf_addc(env, '[');
        for (k = 0; k < t->gpus; k++)
            buf_printf(env, "%s%d", k ? "," : "", t->gpu_list[k]);
        buf_addc(env, ']');
        p->gpus = sched_text_add(out, env->data, env->len);
        p->address = 0;
        if (t->port) {
            int len = snprintf(addr, sizeof(addr), "%s:%d", n->host, t->port);

            p->address = sched_text_add(out, addr, (size_t)len);
        }
        buf_reset(env);
        buf_addc(env, '{');
        add_common_env(env, spec, run_id, t, n);
        if (env_rules[b].task)
            env_rules[b].task(env, &g, t, addr);
        buf_addc(env, '}');
        p->env = sched_text_add(out, env->data, env->len);
    }
    if (env_rules[b].end)
        env_rules[b].end(&g);
}
