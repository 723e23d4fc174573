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

#include "common/backend.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "scheduler/gang.h"
#include "scheduler/ports.h"
#include "common/banned.h"

/* Sets of the features placement looks for (FEATURE_* bits). */
#define FEATURE_MASKS (1 << FEATURE_COUNT)

/* What the nodes of a pool (with some features, or that a selector
 * selects) could hold: ready ones for waiting, all for unschedulable. */
struct capacity {
    int ready;
    int all; /* ready or not (draining, down) */
    double max_cpus;
    int64_t max_memory_mb;
    int max_gpus;
};

/* The nodes of one pool, by free GPUs then free CPUs. */
struct pool_index {
    const char *pool;
    struct node **bucket[MAX_GPUS + 1];
    int len[MAX_GPUS + 1];
    int cap[MAX_GPUS + 1];
    struct capacity hold[FEATURE_MASKS]; /* of the nodes with each set of features */
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

/* What the nodes of a pool a selector selects (with a feature set) could
 * hold: counted once per pass per distinct selector text. */
struct selector_count {
    char *key; /* "need pool selector-json" */
    struct capacity cap;
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
    const struct sched_node *absent; /* the others of those pools */
    int n_absent;
    struct selector_count *counts;
    int n_counts;
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
static bool selected(const struct sched_node *s, const struct selector *sel)
{
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

/* Each task's group (which of the run's nodes), resources and port, by
 * its backend's rule (common/backend.c). */
static void assign_groups(const struct run_shape *shape, struct task *tasks, int n_tasks)
{
    const struct backend_rules *rules = backend_rules(shape->backend);
    int i;

    assert(n_tasks == rules->task_count(shape));
    for (i = 0; i < n_tasks; i++) {
        struct task *t = &tasks[i];
        struct task_slot slot;

        rules->slot(shape, i, &slot);
        assert(slot.index == t->index && strcmp(task_type_name(slot.type), t->type) == 0);
        t->kind = slot.type;
        t->group = slot.group;
        t->needs_port = slot.needs_port;
        t->cpus = slot.cpus;
        t->memory_mb = slot.memory_mb;
        t->gpus = slot.gpus;
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

/* pool's entry, made (empty) when it has none. */
static struct pool_index *pool_get(struct index *ix, const char *pool)
{
    struct pool_index *p = pool_of(ix, pool);

    if (p == NULL) {
        ix->pools = xrealloc(ix->pools, (size_t)(ix->n + 1) * sizeof(*ix->pools));
        p = &ix->pools[ix->n++];
        memset(p, 0, sizeof(*p));
        p->pool = pool;
    }
    return p;
}

/* Takes the struct node's copies where there is one: the sched_node is
 * another cache line. */
static void capacity_add(struct capacity *c, double cpus, int64_t memory_mb, int gpus, bool ready)
{
    c->ready += ready;
    c->all++;
    if (cpus > c->max_cpus)
        c->max_cpus = cpus;
    if (memory_mb > c->max_memory_mb)
        c->max_memory_mb = memory_mb;
    if (gpus > c->max_gpus)
        c->max_gpus = gpus;
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
    struct pool_index *p = pool_get(ix, n->pool);
    int k = free_gpus(n);
    int at;

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

/* Files every node, then sorts each bucket once: O(nodes log nodes); the
 * absent nodes count in their pools' capacity. */
static void index_build(struct index *ix, struct node *nodes, int n_nodes,
                        const struct sched_node *absent, int n_absent)
{
    int i;
    int k;
    unsigned m;

    for (i = 0; i < n_nodes; i++) {
        struct node *n = &nodes[i];
        struct pool_index *p = pool_get(ix, n->pool);

        k = free_gpus(n);
        for (m = 0; m < FEATURE_MASKS; m++) {
            if (has_features(n, m))
                capacity_add(&p->hold[m], n->cpus, n->memory_mb, n->n_gpus, true);
        }
        if (p->len[k] == p->cap[k]) {
            p->cap[k] = p->cap[k] ? p->cap[k] * 2 : 16;
            p->bucket[k] = xrealloc(p->bucket[k], (size_t)p->cap[k] * sizeof(*p->bucket[k]));
        }
        p->bucket[k][p->len[k]++] = n;
    }
    for (i = 0; i < n_absent; i++) {
        struct pool_index *p = pool_get(ix, absent[i].pool);

        for (m = 0; m < FEATURE_MASKS; m++) {
            if ((absent[i].features & m) == m)
                capacity_add(&p->hold[m], absent[i].cpus, absent[i].memory_mb, absent[i].n_gpus,
                             false);
        }
    }
    ix->nodes = nodes;
    ix->n_nodes = n_nodes;
    ix->absent = absent;
    ix->n_absent = n_absent;
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
                    selected(n->s, sel)) {
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
                !(distinct_hosts && n->ports->in_gang) && selected(n->s, sel))
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
    struct capacity cap;
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
    memset(&cap, 0, sizeof(cap));
    for (i = 0; i < ix->n_nodes; i++) {
        const struct node *n = &ix->nodes[i];

        if (strcmp(n->pool, pool) == 0 && has_features(n, need) && selected(n->s, sel))
            capacity_add(&cap, n->cpus, n->memory_mb, n->n_gpus, true);
    }
    for (i = 0; i < ix->n_absent; i++) {
        const struct sched_node *n = &ix->absent[i];

        if (strcmp(n->pool, pool) == 0 && (n->features & need) == need && selected(n, sel))
            capacity_add(&cap, n->cpus, n->memory_mb, n->n_gpus, false);
    }
    ix->counts = xrealloc(ix->counts, (size_t)(ix->n_counts + 1) * sizeof(*ix->counts));
    memset(&ix->counts[ix->n_counts], 0, sizeof(*ix->counts));
    ix->counts[ix->n_counts].key = xstrdup(key.data);
    ix->counts[ix->n_counts].cap = cap;
    buf_release(&key);
    return &ix->counts[ix->n_counts++];
}

/* "nodes of pool 'p' with mpi that match its node_selector": the nodes
 * a run could use, for its reasons. */
static void which_nodes(char *out, size_t size, const char *pool, unsigned need, bool selector)
{
    unsigned bit;
    int i;

    snprintf(out, size, "nodes of pool '%.200s'%s", pool, need ? " with" : "");
    for (i = 0, bit = 1; i < FEATURE_COUNT; i++, bit <<= 1) {
        if (need & bit)
            snprintf(out + strlen(out), size - strlen(out), "%s %s",
                     (need & (bit - 1)) ? " and" : "", feature_name(i));
    }
    if (selector)
        snprintf(out + strlen(out), size - strlen(out), " that match its node_selector");
}

/* Is a part of the gang bigger than any node (ready or not) that could
 * take it? Then the run is unschedulable: reason says which demand. */
static bool too_big(struct group **order, int n_groups, const struct capacity *cap,
                    const char *pool, unsigned need, bool selector, char *reason,
                    size_t reason_size)
{
    char which[320];
    int i;

    for (i = 0; i < n_groups; i++) {
        const struct group *g = order[i];

        if (g->gpus <= cap->max_gpus && g->cpus <= cap->max_cpus + 1e-9 &&
            g->memory_mb <= cap->max_memory_mb)
            continue;
        which_nodes(which, sizeof(which), pool, need, selector);

        if (g->gpus > cap->max_gpus) {
            snprintf(reason, reason_size,
                     "unschedulable: a part of this run needs %d GPUs on one node; the most any "
                     "of the %.300s has, ready or not, is %d",
                     g->gpus, which, cap->max_gpus);
            return true;
        }
        if (g->cpus > cap->max_cpus + 1e-9) {
            snprintf(reason, reason_size,
                     "unschedulable: a part of this run needs %.4g CPUs on one node; the most "
                     "any of the %.300s has, ready or not, is %.4g",
                     g->cpus, which, cap->max_cpus);
            return true;
        }
        if (g->memory_mb > cap->max_memory_mb) {
            snprintf(reason, reason_size,
                     "unschedulable: a part of this run needs %lld MiB of memory on one node; "
                     "the most any of the %.300s has, ready or not, is %lld MiB",
                     (long long)g->memory_mb, which, (long long)cap->max_memory_mb);
            return true;
        }
    }
    return false;
}

static bool place_run(const cJSON *run, struct scratch *sc, struct index *ix, struct buf *env,
                      struct sched_placements *out, char *reason, size_t reason_size)
{
    const cJSON *spec = json_get(run, "spec");
    const char *pool = json_get_string(spec, "compute_target");
    struct run_shape shape;
    int node_count;
    unsigned need;
    struct pool_index *p;
    int n_tasks = cJSON_GetArraySize(json_get(run, "tasks"));
    struct task *tasks;
    struct group *groups;
    struct group **order;
    cJSON *t;
    bool mpi;
    struct selector sel;
    char which[320];
    struct selector_count *memo = NULL;
    struct capacity cap;
    int i;

    run_shape_of(spec, &shape);
    node_count = shape.node_count;
    mpi = shape.backend == BACKEND_MPI;
    need = spec_features(spec);
    p = pool_of(ix, pool);
    selector_of(spec, &sel);
    if (p != NULL && sel.n > 0) {
        memo = selected_count(ix, spec, pool, need, &sel);
        cap = memo->cap;
    } else if (p != NULL) {
        cap = p->hold[need];
    } else {
        memset(&cap, 0, sizeof(cap));
    }
    if (cap.all < node_count) {
        which_nodes(which, sizeof(which), pool, need, sel.n > 0);
        snprintf(reason, reason_size,
                 "unschedulable: %.300s, ready or not: %d; the run needs %d distinct nodes", which,
                 cap.all, node_count);
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
    assign_groups(&shape, tasks, n_tasks);
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
    if (too_big(order, node_count, &cap, pool, need, sel.n > 0, reason, reason_size))
        return false;
    if (cap.ready < node_count) {
        which_nodes(which, sizeof(which), pool, need, sel.n > 0);
        snprintf(reason, reason_size, "waiting for nodes: %.300s that are ready: %d; it needs %d",
                 which, cap.ready, node_count);
        return false;
    }

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
    gang_emit(run, tasks, n_tasks, groups, env, out);
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
    struct index ix = { NULL, 0, NULL, 0, NULL, 0, NULL, 0 };
    struct scratch sc = { NULL, NULL, NULL, 0, 0 };
    struct buf env;
    struct port_spaces ps;

    sched_placements_init(ret_placements);
    buf_init(&env);
    port_spaces_build(&ps, state);
    load_nodes(state, &ps, &nodes, &n_nodes);
    index_build(&ix, nodes, n_nodes, state->absent, state->n_absent);
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
