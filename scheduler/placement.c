/*
 * placement.c - gang placement over the nodes of a pool.
 *
 * A run's tasks are split into node_count groups (SPEC §4): single = one
 * group; ps = tasks dealt round-robin over the nodes in the order chief,
 * ps-0.., worker-0.., evaluator; pytorch = process_count_per_node ranks
 * per node; mpi = launcher and worker-0 on the first node, worker-i on
 * node i. Groups are placed largest first, each on the distinct ready
 * node of the pool with the needed features where it fits tightest (least
 * GPUs, then CPUs, left over). Either every group finds a node or the run
 * stays queued with a reason; no resources are held for it.
 *
 * Reservation (docs/SCHEDULING.md): a run that waits only for capacity
 * (its pool has enough suitable nodes, but they are busy) reserves the
 * nodes it would use once they are free; runs after it in the queue may
 * not be placed on reserved nodes. So a stream of small runs cannot starve
 * a big gang at the head of the queue, while runs that fit elsewhere are
 * still placed (backfill).
 *
 * Cost: nodes are indexed per pool by free GPUs (one bucket per count)
 * and, within a bucket, sorted by free CPUs; the tightest node for a group
 * is a binary search in each bucket with enough GPUs: about
 * O(groups x log nodes) per run (skipping nodes taken by the same gang,
 * reserved, or lacking a feature adds what it skips).
 */
#include "scheduler/placement.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "scheduler/ports.h"
#include "common/banned.h"

#define MAX_GPUS STORE_MAX_GPUS

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

/* The features placement looks for, as bits. */
#define FEATURE_MPI STORE_FEATURE_MPI
#define FEATURE_CONDA STORE_FEATURE_CONDA
#define FEATURE_MASKS 4

/* The nodes of one pool, by free GPUs then free CPUs. */
struct pool_index {
    const char *pool;
    struct node **bucket[MAX_GPUS + 1];
    int len[MAX_GPUS + 1];
    int cap[MAX_GPUS + 1];
    int suitable[FEATURE_MASKS]; /* ready nodes with each set of features */
    int reserving; /* runs that reserved nodes in this pass */
};

/* Runs of a pool that may reserve nodes in one pass: the head of the
 * queue is protected, and a long queue of waiting runs costs no more
 * than this many scans (later runs wait, or backfill free nodes). */
#define MAX_RESERVING 16

/* A run's node_selector, borrowed from its spec: key i is sel[2i], its
 * value sel[2i + 1]. */
#define MAX_SELECTOR 32
struct selector {
    const char *sel[2 * MAX_SELECTOR];
    int n;
};

struct group {
    double cpus;
    int64_t memory_mb;
    int gpus;
    int ports; /* tasks of the group that need an address */
    struct node *node;
};

/* How many ready nodes of a pool suit a selector (with a feature set):
 * counted once per pass per distinct selector text. */
struct selector_count {
    char *key; /* "need pool selector-json" */
    int count;
    /* The smallest part of a gang that found no node in this pass: free
     * capacity only shrinks during a pass, so a part at least as big fails
     * too without a scan (skipping the nodes the selector does not select
     * made waiting runs with selectors cost O(nodes) each). */
    bool failed;
    struct group fail;
};

struct index {
    struct pool_index *pools;
    int n;
    struct node *nodes; /* every ready node, all pools */
    int n_nodes;
    struct selector_count *counts;
    int n_counts;
};

struct task {
    cJSON *json;
    const char *id;
    const char *name;
    const char *type;
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

static int free_gpus(const struct node *n)
{
    return n->n_free_gpus;
}

static bool has_features(const struct node *n, unsigned need)
{
    return (n->fmask & need) == need;
}

/* Every pair of sel is one of n's labels. */
static bool selected(const struct node *n, const struct selector *sel)
{
    const struct sched_node *s = n->s;
    int i;
    int k;

    for (i = 0; i < sel->n; i++) {
        for (k = 0; k < s->n_labels; k++) {
            if (strcmp(s->labels[2 * k], sel->sel[2 * i]) == 0)
                break;
        }
        if (k == s->n_labels || strcmp(s->labels[2 * k + 1], sel->sel[2 * i + 1]) != 0)
            return false;
    }
    return true;
}

/* Takes the lowest port of n's range that is free at its host, or
 * returns 0 when none is left. */
static int take_port(struct node *n)
{
    int port;

    for (port = n->port_min; port <= n->port_max; port++) {
        if (!port_space_used(n->ports, port)) {
            port_space_use(n->ports, port);
            sched_node_use_port(n->s, port);
            return port;
        }
    }
    return 0;
}

static void load_nodes(struct sched_state *state, const struct port_spaces *ps, struct node **ret,
                       int *ret_n)
{
    struct node *out = xcalloc((size_t)state->n_nodes + 1, sizeof(*out));
    int i;
    int k;

    for (i = 0; i < state->n_nodes; i++) {
        struct sched_node *sn = &state->nodes[i];
        struct node *nd = &out[i];

        nd->s = sn;
        nd->name = sn->name;
        nd->pool = sn->pool;
        nd->host = sn->host;
        nd->agent_url = sn->agent_url;
        nd->cpus = sn->cpus;
        nd->used_cpus = sn->used_cpus;
        nd->memory_mb = sn->memory_mb;
        nd->used_memory_mb = sn->used_memory_mb;
        nd->n_gpus = sn->n_gpus;
        for (k = 0; k < sn->n_gpus; k++)
            nd->n_free_gpus += !sn->gpu_used[k];
        nd->port_min = sn->port_min;
        nd->port_max = sn->port_max;
        nd->fmask = sn->features;
        nd->ports = ps->of_node[i];
    }
    *ret = out;
    *ret_n = state->n_nodes;
}

/* Node i of a node_count-node run gets which group of the task list. */
static void assign_groups(const cJSON *spec, struct task *tasks, int n_tasks, int node_count)
{
    const char *backend = json_get_string(spec, "distributed_backend");
    int ppn = json_get(spec, "process_count_per_node")->valueint;
    double cpus = json_get(spec, "cpus_per_process")->valuedouble;
    int64_t mem = (int64_t)json_get(spec, "memory_mb_per_process")->valuedouble;
    int gpus = json_get(spec, "gpus_per_process")->valueint;
    int i;

    for (i = 0; i < n_tasks; i++) {
        struct task *t = &tasks[i];

        t->cpus = cpus;
        t->memory_mb = mem;
        t->gpus = gpus;
        if (backend == NULL) {
            t->group = 0;
        } else if (strcmp(backend, "ps") == 0) {
            t->group = i % node_count;
            t->needs_port = true;
        } else if (strcmp(backend, "pytorch") == 0) {
            t->group = t->index / ppn;
            t->needs_port = t->index == 0;
        } else if (strcmp(t->type, "launcher") == 0) {
            /* mpirun itself: it waits on the ranks and holds nothing. */
            t->group = 0;
            t->cpus = 0;
            t->memory_mb = 0;
            t->gpus = 0;
        } else {
            /* An mpi worker holds its node's slots: ppn processes. */
            t->group = t->index;
            t->cpus = cpus * ppn;
            t->memory_mb = mem * ppn;
            t->gpus = gpus * ppn;
        }
    }
}

/* Could g ever run on n, were n idle? */
static bool could_fit(const struct node *n, const struct group *g)
{
    return n->cpus >= g->cpus - 1e-9 && (g->memory_mb == 0 || n->memory_mb >= g->memory_mb) &&
           n->n_gpus >= g->gpus;
}

static double free_cpus(const struct node *n)
{
    return n->cpus - n->used_cpus;
}

static struct pool_index *pool_of(struct index *ix, const char *pool)
{
    int i;

    for (i = 0; i < ix->n; i++) {
        if (strcmp(ix->pools[i].pool, pool) == 0)
            return &ix->pools[i];
    }
    return NULL;
}

/* First position in b (sorted by free CPUs) whose free CPUs reach cpus. */
static int lower_bound(struct node **b, int len, double cpus)
{
    int lo = 0;
    int hi = len;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (free_cpus(b[mid]) < cpus - 1e-9)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void index_insert(struct index *ix, struct node *n)
{
    struct pool_index *p = pool_of(ix, n->pool);
    int k = free_gpus(n);
    int at;

    if (p == NULL) {
        ix->pools = xrealloc(ix->pools, (size_t)(ix->n + 1) * sizeof(*ix->pools));
        p = &ix->pools[ix->n++];
        memset(p, 0, sizeof(*p));
        p->pool = n->pool;
    }
    if (p->len[k] == p->cap[k]) {
        p->cap[k] = p->cap[k] ? p->cap[k] * 2 : 16;
        p->bucket[k] = xrealloc(p->bucket[k], (size_t)p->cap[k] * sizeof(*p->bucket[k]));
    }
    at = lower_bound(p->bucket[k], p->len[k], free_cpus(n));
    memmove(&p->bucket[k][at + 1], &p->bucket[k][at],
            (size_t)(p->len[k] - at) * sizeof(*p->bucket[k]));
    p->bucket[k][at] = n;
    p->len[k]++;
}

static int by_free_cpus(const void *a, const void *b)
{
    double x = free_cpus(*(struct node *const *)a);
    double y = free_cpus(*(struct node *const *)b);

    return x < y ? -1 : x > y;
}

/* Files every node, then sorts each bucket once: O(nodes log nodes). */
static void index_build(struct index *ix, struct node *nodes, int n_nodes)
{
    int i;
    int k;
    unsigned m;

    for (i = 0; i < n_nodes; i++) {
        struct node *n = &nodes[i];
        struct pool_index *p = pool_of(ix, n->pool);

        k = free_gpus(n);
        if (p == NULL) {
            ix->pools = xrealloc(ix->pools, (size_t)(ix->n + 1) * sizeof(*ix->pools));
            p = &ix->pools[ix->n++];
            memset(p, 0, sizeof(*p));
            p->pool = n->pool;
        }
        for (m = 0; m < FEATURE_MASKS; m++)
            p->suitable[m] += has_features(n, m);
        if (p->len[k] == p->cap[k]) {
            p->cap[k] = p->cap[k] ? p->cap[k] * 2 : 16;
            p->bucket[k] = xrealloc(p->bucket[k], (size_t)p->cap[k] * sizeof(*p->bucket[k]));
        }
        p->bucket[k][p->len[k]++] = n;
    }
    for (i = 0; i < ix->n; i++) {
        for (k = 0; k <= MAX_GPUS; k++) {
            if (ix->pools[i].len[k] > 1)
                qsort(ix->pools[i].bucket[k], (size_t)ix->pools[i].len[k], sizeof(struct node *),
                      by_free_cpus);
        }
    }
}

static void index_remove(struct index *ix, struct node *n)
{
    struct pool_index *p = pool_of(ix, n->pool);
    int k = free_gpus(n);
    int at = lower_bound(p->bucket[k], p->len[k], free_cpus(n));

    while (at < p->len[k] && p->bucket[k][at] != n)
        at++;
    if (at == p->len[k])
        return;
    memmove(&p->bucket[k][at], &p->bucket[k][at + 1],
            (size_t)(p->len[k] - at - 1) * sizeof(*p->bucket[k]));
    p->len[k]--;
}

static void index_free(struct index *ix)
{
    int i;
    int k;

    for (i = 0; i < ix->n_counts; i++)
        free(ix->counts[i].key);
    free(ix->counts);
    for (i = 0; i < ix->n; i++) {
        for (k = 0; k <= MAX_GPUS; k++)
            free(ix->pools[i].bucket[k]);
    }
    free(ix->pools);
}

static bool fits(const struct node *n, const struct group *g);

/*
 * The run waits for capacity: reserve, for each group, the node it could
 * use that has the most free now (so it frees up soonest). Reserved nodes
 * leave the index: nothing later in this pass may use them.
 */
static void reserve(struct index *ix, struct group **order, int node_count, const char *pool,
                    unsigned need, const struct selector *sel)
{
    struct pool_index *p = pool_of(ix, pool);
    struct node *chosen[64];
    int n_chosen = 0;
    int i;

    if (p == NULL || p->reserving >= MAX_RESERVING)
        return;
    p->reserving++;
    for (i = 0; i < node_count && n_chosen < 64; i++) {
        struct node *best = NULL;
        int k;

        for (k = MAX_GPUS; k >= 0 && best == NULL; k--) {
            int at;

            for (at = p->len[k] - 1; at >= 0; at--) {
                struct node *n = p->bucket[k][at];

                if (!n->taken && has_features(n, need) && could_fit(n, order[i]) &&
                    selected(n, sel)) {
                    best = n;
                    break;
                }
            }
        }
        if (best == NULL)
            break;
        best->taken = true;
        chosen[n_chosen++] = best;
    }
    for (i = 0; i < n_chosen; i++) {
        chosen[i]->taken = false;
        chosen[i]->reserved = true;
        index_remove(ix, chosen[i]);
    }
}

/*
 * The node of pool where g fits tightest: fewest GPUs, then fewest CPUs,
 * left over; not taken by this gang nor reserved; with the features; with
 * distinct_hosts, not at a host another node of the gang is at.
 */
static struct node *index_best(struct index *ix, const char *pool, const struct group *g,
                               unsigned need, const struct selector *sel, bool distinct_hosts)
{
    struct pool_index *p = pool_of(ix, pool);
    int k;

    if (p == NULL || g->gpus > MAX_GPUS)
        return NULL;
    for (k = g->gpus; k <= MAX_GPUS; k++) {
        int at = lower_bound(p->bucket[k], p->len[k], g->cpus);

        for (; at < p->len[k]; at++) {
            struct node *n = p->bucket[k][at];

            if (!n->taken && fits(n, g) && has_features(n, need) &&
                !(distinct_hosts && n->ports->in_gang) && selected(n, sel))
                return n;
        }
    }
    return NULL;
}

static bool fits(const struct node *n, const struct group *g)
{
    return n->cpus - n->used_cpus >= g->cpus - 1e-9 &&
           (g->memory_mb == 0 || n->memory_mb - n->used_memory_mb >= g->memory_mb) &&
           free_gpus(n) >= g->gpus &&
           (g->ports == 0 || n->port_max - n->port_min + 1 - n->ports->n_used >= g->ports);
}

static int by_demand(const void *a, const void *b)
{
    const struct group *const *x = a;
    const struct group *const *y = b;

    if ((*x)->gpus != (*y)->gpus)
        return (*y)->gpus - (*x)->gpus;
    if ((*x)->cpus != (*y)->cpus)
        return (*y)->cpus > (*x)->cpus ? 1 : -1;
    return 0;
}

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

static void add_common_env(struct buf *env, const cJSON *spec, const char *run_id,
                           const struct task *t, const struct node *n)
{
    char gpus[MAX_GPUS * 4 + 1] = "";
    const cJSON *e;
    int i;

    cJSON_ArrayForEach(e, json_get(spec, "environment_variables")) {
        env_add(env, e->string, e->valuestring);
    }
    env_add(env, "TRAINYARD_RUN_ID", run_id);
    env_add(env, "TRAINYARD_EXPERIMENT", json_get_string(spec, "experiment"));
    env_add(env, "TRAINYARD_TASK_TYPE", t->type);
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
    static const char *const kinds[] = { "chief", "ps", "worker" };
    cJSON *cluster = cJSON_CreateObject();
    size_t k;
    int i;

    for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        cJSON *list = NULL;

        for (i = 0; i < n_tasks; i++) {
            char addr[300];

            if (strcmp(tasks[i].type, kinds[k]) != 0)
                continue;
            if (list == NULL)
                list = cJSON_AddArrayToObject(cluster, kinds[k]);
            snprintf(addr, sizeof(addr), "%s:%d", groups[tasks[i].group].node->host, tasks[i].port);
            cJSON_AddItemToArray(list, cJSON_CreateString(addr));
        }
    }
    return cluster;
}

/* The run's argv, the same for each of its tasks, as JSON text. */
static char *run_argv(const cJSON *spec)
{
    const cJSON *command = json_get(spec, "command");
    const cJSON *p;
    const cJSON *a;
    cJSON *argv;
    char *text;

    if (cJSON_IsArray(command))
        return json_print(command);
    argv = cJSON_CreateArray();
    cJSON_AddItemToArray(argv, cJSON_CreateString(json_get_string(spec, "entry_script")));
    /* SPEC §3.2: each key then its value; true or null = the flag alone;
     * false = omitted. Numbers print as JSON does (0.01 -> "0.01"). */
    cJSON_ArrayForEach(p, json_get(spec, "script_params")) {
        if (cJSON_IsFalse(p))
            continue;
        cJSON_AddItemToArray(argv, cJSON_CreateString(p->string));
        if (cJSON_IsString(p)) {
            cJSON_AddItemToArray(argv, cJSON_CreateString(p->valuestring));
        } else if (cJSON_IsNumber(p)) {
            char *num = json_print(p);

            cJSON_AddItemToArray(argv, cJSON_CreateString(num));
            free(num);
        }
    }
    cJSON_ArrayForEach(a, json_get(spec, "arguments")) {
        cJSON_AddItemToArray(argv, cJSON_CreateString(a->valuestring));
    }
    text = json_print(argv);
    cJSON_Delete(argv);
    return text;
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

        if (strcmp(tasks[i].type, "worker") != 0)
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
    if (strcmp(t->type, "evaluator") == 0) {
        cJSON *e = cJSON_AddArrayToObject(own, "evaluator");

        cJSON_AddItemToArray(e, cJSON_CreateString(addr));
    }
    cJSON_AddItemToObject(tf, "cluster", own);
    cJSON_AddStringToObject(task, "type", t->type);
    cJSON_AddNumberToObject(task, "index", t->index);
    cJSON_AddItemToObject(tf, "task", task);
    cJSON_AddStringToObject(tf, "environment", "cloud");
    text = json_print(tf);
    env_add(env, "TF_CONFIG", text);
    free(text);
    cJSON_Delete(tf);
}

/* An int member of object, or dflt when it is absent. */
static int int_or(const cJSON *object, const char *key, int dflt)
{
    const cJSON *v = json_get(object, key);

    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

/* What torch.distributed.run (torchrun) sets for its workers (SPEC §4
 * pytorch), with trainyard's run in the elastic agent's place: one role
 * ("default") holding every rank, the run's attempt as the restart count,
 * its max_retries as the restart limit, its id as the rendezvous id. No
 * agent hosts a store: rank 0 does (TORCHELASTIC_USE_AGENT_STORE=False, as
 * under torchrun's c10d rendezvous). OMP_NUM_THREADS and
 * NCCL_ASYNC_ERROR_HANDLING keep the run's own value when it sets them. */
static void add_pytorch_env(struct buf *env, const cJSON *run, const struct task *tasks,
                            int n_tasks, const struct group *groups, int ppn, const struct task *t)
{
    const cJSON *spec = json_get(run, "spec");
    const cJSON *user = json_get(spec, "environment_variables");
    const struct task *rank0 = &tasks[0];
    /* The store always gives both; placement's own tests may leave them out. */
    int attempt = int_or(run, "attempt", 1);
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
    env_add_int(env, "TORCHELASTIC_MAX_RESTARTS", int_or(spec, "max_retries", 0));
    env_add(env, "TORCHELASTIC_RUN_ID", json_get_string(run, "id"));
    env_add(env, "TORCHELASTIC_USE_AGENT_STORE", "False");
    if (json_get(user, "NCCL_ASYNC_ERROR_HANDLING") == NULL)
        env_add(env, "NCCL_ASYNC_ERROR_HANDLING", "1");
    if (ppn > 1 && json_get(user, "OMP_NUM_THREADS") == NULL)
        env_add(env, "OMP_NUM_THREADS", "1");
}

/* Appends len bytes of s and a NUL to text; returns where they start. */
static size_t text_add(struct buf *text, const char *s, size_t len)
{
    size_t off = text->len;

    buf_add(text, s, len);
    buf_addc(text, '\0');
    return off;
}

/* Adds a placed run and its tasks to out; env is scratch. */
static void emit(const cJSON *run, struct task *tasks, int n_tasks, struct group *groups,
                 struct buf *env, struct sched_placements *out)
{
    const cJSON *spec = json_get(run, "spec");
    const char *run_id = json_get_string(run, "id");
    const char *backend = json_get_string(spec, "distributed_backend");
    int ppn = json_get(spec, "process_count_per_node")->valueint;
    struct sched_run_place *rp;
    cJSON *cluster = NULL;
    char *argv = run_argv(spec);
    size_t argv_off = text_add(&out->text, argv, strlen(argv));
    char secret[33] = "";
    int i;

    free(argv);
    if (backend && strcmp(backend, "mpi") == 0)
        crypto_random_hex(16, secret);
    if (backend && strcmp(backend, "ps") == 0)
        cluster = tf_cluster(tasks, n_tasks, groups);
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
    rp->max_duration_s = 0;
    if (cJSON_IsNumber(json_get(spec, "max_run_duration_seconds")))
        rp->max_duration_s = (int64_t)json_get(spec, "max_run_duration_seconds")->valuedouble;
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
        p->gpus = text_add(&out->text, env->data, env->len);
        p->address = 0;
        if (t->port) {
            int len = snprintf(addr, sizeof(addr), "%s:%d", n->host, t->port);

            p->address = text_add(&out->text, addr, (size_t)len);
        }
        buf_reset(env);
        buf_addc(env, '{');
        add_common_env(env, spec, run_id, t, n);
        if (cluster) {
            add_tf_config(env, cluster, t, addr);
        } else if (backend && strcmp(backend, "pytorch") == 0) {
            add_pytorch_env(env, run, tasks, n_tasks, groups, ppn, t);
        } else if (backend && strcmp(backend, "mpi") == 0) {
            add_mpi_env(env, tasks, n_tasks, groups, ppn, secret);
        }
        buf_addc(env, '}');
        p->env = text_add(&out->text, env->data, env->len);
    }
    cJSON_Delete(cluster);
}

/* Commits the run's use of its nodes into the nodes' state. */
static void take(struct task *tasks, int n_tasks, struct group *groups)
{
    int i;
    int k;

    for (i = 0; i < n_tasks; i++) {
        struct task *t = &tasks[i];
        struct node *n = groups[t->group].node;
        int got = 0;

        n->used_cpus += t->cpus;
        n->used_memory_mb += t->memory_mb;
        n->s->used_cpus = n->used_cpus;
        n->s->used_memory_mb = n->used_memory_mb;
        for (k = 0; k < n->n_gpus && got < t->gpus; k++) {
            if (!n->s->gpu_used[k]) {
                n->s->gpu_used[k] = true;
                n->n_free_gpus--;
                t->gpu_list[got++] = n->s->gpus[k];
            }
        }
        if (t->needs_port)
            t->port = take_port(n);
    }
}

/* Tries to place one run: true with its placement added to out, or false
 * with a reason. */
/* Per-run working arrays, kept for the whole pass: allocating them per
 * run made malloc consolidate its free lists again and again. */
struct scratch {
    struct task *tasks;
    struct group *groups;
    struct group **order;
    size_t cap_tasks;
    size_t cap_groups;
};

static void scratch_fit(struct scratch *sc, size_t n_tasks, size_t n_groups)
{
    if (n_tasks > sc->cap_tasks) {
        sc->cap_tasks = n_tasks > 2 * sc->cap_tasks ? n_tasks : 2 * sc->cap_tasks;
        sc->tasks = xrealloc(sc->tasks, sc->cap_tasks * sizeof(*sc->tasks));
    }
    if (n_groups > sc->cap_groups) {
        sc->cap_groups = n_groups > 2 * sc->cap_groups ? n_groups : 2 * sc->cap_groups;
        sc->groups = xrealloc(sc->groups, sc->cap_groups * sizeof(*sc->groups));
        sc->order = xrealloc(sc->order, sc->cap_groups * sizeof(*sc->order));
    }
    memset(sc->tasks, 0, n_tasks * sizeof(*sc->tasks));
    memset(sc->groups, 0, n_groups * sizeof(*sc->groups));
}

/* Is g at least as big as f in every demand? */
static bool covers(const struct group *g, const struct group *f)
{
    return g->cpus >= f->cpus - 1e-9 && g->memory_mb >= f->memory_mb && g->gpus >= f->gpus &&
           g->ports >= f->ports;
}

static void selector_of(const cJSON *spec, struct selector *sel)
{
    const cJSON *e;

    sel->n = 0;
    cJSON_ArrayForEach(e, json_get(spec, "node_selector")) {
        assert(sel->n < MAX_SELECTOR && cJSON_IsString(e)); /* runspec_validate */
        sel->sel[2 * sel->n] = e->string;
        sel->sel[2 * sel->n + 1] = e->valuestring;
        sel->n++;
    }
}

/* The ready nodes of pool with the features need that sel selects: one
 * scan of the nodes per distinct (pool, need, selector) in a pass. */
static struct selector_count *selected_count(struct index *ix, const cJSON *spec, const char *pool,
                                             unsigned need, const struct selector *sel)
{
    char *text = json_print(json_get(spec, "node_selector"));
    struct buf key;
    int count = 0;
    int i;

    buf_init(&key);
    buf_printf(&key, "%u %s %s", need, pool, text);
    free(text);
    for (i = 0; i < ix->n_counts; i++) {
        if (strcmp(ix->counts[i].key, key.data) == 0) {
            buf_release(&key);
            return &ix->counts[i];
        }
    }
    for (i = 0; i < ix->n_nodes; i++) {
        const struct node *n = &ix->nodes[i];

        count += strcmp(n->pool, pool) == 0 && has_features(n, need) && selected(n, sel);
    }
    ix->counts = xrealloc(ix->counts, (size_t)(ix->n_counts + 1) * sizeof(*ix->counts));
    memset(&ix->counts[ix->n_counts], 0, sizeof(*ix->counts));
    ix->counts[ix->n_counts].key = xstrdup(key.data);
    ix->counts[ix->n_counts].count = count;
    buf_release(&key);
    return &ix->counts[ix->n_counts++];
}

static bool place_run(const cJSON *run, struct scratch *sc, struct index *ix, struct buf *env,
                      struct sched_placements *out, char *reason, size_t reason_size)
{
    const cJSON *spec = json_get(run, "spec");
    const char *pool = json_get_string(spec, "compute_target");
    const char *backend = json_get_string(spec, "distributed_backend");
    int node_count = json_get(spec, "node_count")->valueint;
    unsigned need = 0;
    struct pool_index *p;
    int n_tasks = cJSON_GetArraySize(json_get(run, "tasks"));
    struct task *tasks;
    struct group *groups;
    struct group **order;
    cJSON *t;
    bool mpi = backend && strcmp(backend, "mpi") == 0;
    struct selector sel;
    struct selector_count *memo = NULL;
    int suitable = 0;
    int i;

    if (mpi)
        need |= FEATURE_MPI;
    if (cJSON_GetArraySize(json_get(spec, "conda_packages")) > 0)
        need |= FEATURE_CONDA;
    p = pool_of(ix, pool);
    selector_of(spec, &sel);
    if (p != NULL && sel.n > 0) {
        memo = selected_count(ix, spec, pool, need, &sel);
        suitable = memo->count;
    } else {
        suitable = p ? p->suitable[need] : 0;
    }
    if (suitable < node_count) {
        if (sel.n > 0 && suitable == 0)
            snprintf(reason, reason_size, "no ready node of pool '%s' matches its node_selector",
                     pool);
        else
            snprintf(reason, reason_size,
                     "pool '%s' has %d ready node(s) that suit this run%s; it needs %d", pool,
                     suitable, sel.n > 0 ? " (node_selector included)" : "", node_count);
        return false;
    }

    scratch_fit(sc, (size_t)n_tasks, (size_t)node_count);
    tasks = sc->tasks;
    groups = sc->groups;
    order = sc->order;
    i = 0;
    cJSON_ArrayForEach(t, json_get(run, "tasks")) {
        tasks[i].json = t;
        tasks[i].id = json_get_string(t, "id");
        tasks[i].name = json_get_string(t, "name");
        tasks[i].type = json_get_string(t, "type");
        tasks[i].index = json_get(t, "index")->valueint;
        i++;
    }
    assign_groups(spec, tasks, n_tasks, node_count);
    for (i = 0; i < n_tasks; i++) {
        struct group *g = &groups[tasks[i].group];

        g->cpus += tasks[i].cpus;
        g->memory_mb += tasks[i].memory_mb;
        g->gpus += tasks[i].gpus;
        g->ports += tasks[i].needs_port;
    }
    for (i = 0; i < node_count; i++)
        order[i] = &groups[i];
    qsort(order, (size_t)node_count, sizeof(*order), by_demand);

    for (i = 0; i < node_count; i++) {
        struct group *g = order[i];
        bool known_fail = memo && memo->failed && covers(g, &memo->fail);
        struct node *best = known_fail ? NULL : index_best(ix, pool, g, need, &sel, mpi);
        struct node *shared;

        if (best == NULL) {
            /* mpirun starts one daemon per host of its hostfile: an mpi
             * gang's nodes must be at distinct hosts. A node that would do
             * but for its host makes that the reason, and nothing is
             * reserved for a gang that more capacity would not help. */
            shared = mpi && !known_fail ? index_best(ix, pool, g, need, &sel, false) : NULL;
            if (memo && i == 0 && !known_fail) {
                /* The first part: no node of this gang is taken yet. */
                memo->failed = true;
                memo->fail = *g;
            }
            if (shared)
                snprintf(reason, reason_size,
                         "an mpi run needs its %d nodes at distinct hosts (mpirun starts one "
                         "daemon per host); node '%s' of pool '%s' is at host '%s', like "
                         "another node this run would use",
                         node_count, shared->name, pool, shared->host);
            else
                snprintf(reason, reason_size,
                         "waiting for capacity: a node of pool '%s' with %.4g free CPUs, %d "
                         "free GPUs%s",
                         pool, g->cpus, g->gpus,
                         node_count > 1 ? " for each part of the gang" : "");
            /* Free the nodes this attempt took, then reserve. */
            for (i = 0; i < node_count; i++) {
                if (groups[i].node) {
                    groups[i].node->taken = false;
                    groups[i].node->ports->in_gang = false;
                }
            }
            if (shared == NULL)
                reserve(ix, order, node_count, pool, need, &sel);
            return false;
        }
        best->taken = true;
        best->ports->in_gang = mpi;
        g->node = best;
    }
    /* The gang's nodes change their free capacity: re-file them. */
    for (i = 0; i < node_count; i++)
        index_remove(ix, groups[i].node);
    take(tasks, n_tasks, groups);
    for (i = 0; i < node_count; i++) {
        groups[i].node->taken = false;
        groups[i].node->ports->in_gang = false;
        index_insert(ix, groups[i].node);
    }
    emit(run, tasks, n_tasks, groups, env, out);
    return true;
}

void placement_pass(struct sched_state *state, struct sched_placements *ret_placements,
                    cJSON **ret_reasons)
{
    struct node *nodes;
    int n_nodes;
    cJSON *reasons = cJSON_CreateObject();
    const cJSON *run;
    char reason[512];
    struct index ix = { NULL, 0, NULL, 0, NULL, 0 };
    struct scratch sc = { NULL, NULL, NULL, 0, 0 };
    struct buf env;
    struct port_spaces ps;

    sched_placements_init(ret_placements);
    buf_init(&env);
    port_spaces_build(&ps, state);
    load_nodes(state, &ps, &nodes, &n_nodes);
    index_build(&ix, nodes, n_nodes);
    ix.nodes = nodes;
    ix.n_nodes = n_nodes;
    cJSON_ArrayForEach(run, state->runs) {
        const char *had;

        if (place_run(run, &sc, &ix, &env, ret_placements, reason, sizeof(reason)))
            continue;
        had = json_get_string(run, "reason");
        if (had == NULL || strcmp(had, reason) != 0)
            cJSON_AddStringToObject(reasons, json_get_string(run, "id"), reason);
    }
    index_free(&ix);
    port_spaces_release(&ps);
    buf_release(&env);
    free(nodes);
    free(sc.tasks);
    free(sc.groups);
    free(sc.order);
    *ret_reasons = reasons;
}
