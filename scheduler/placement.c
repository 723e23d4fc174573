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

#include "api/runspec.h"
#include "common/backend.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/spec.h"
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

/* A run's node_selector, borrowed from its spec. */
struct selector {
    const struct spec_pair *sel;
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
            if (strcmp(s->labels[2 * k], sel->sel[i].key) == 0)
                break;
        }
        if (k == s->n_labels || strcmp(s->labels[2 * k + 1], sel->sel[i].value) != 0)
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
        assert(slot.index == t->index && slot.type == t->kind);
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

/* Is b in by_free_cpus() order already? Identical nodes with nothing
 * held (a new or idle cluster) come so, in name order: the sort (stable,
 * glibc's merge sort) would leave them as they are. */
static bool in_free_cpus_order(struct node **b, int len)
{
    int i;

    for (i = 1; i < len; i++) {
        if (free_cpus(b[i]) < free_cpus(b[i - 1]))
            return false;
    }
    return true;
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
            if (ix->pools[i].len[k] > 1 &&
                !in_free_cpus_order(ix->pools[i].bucket[k], ix->pools[i].len[k]))
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

/* The ready nodes of pool with the features need that sel selects: one
 * scan of the nodes per distinct (pool, need, selector) in a pass. */
static struct selector_count *selected_count(struct index *ix, const char *pool, unsigned need,
                                             const struct selector *sel)
{
    struct buf key;
    struct capacity cap;
    int i;

    buf_init(&key);
    buf_printf(&key, "%u ", need);
    json_buf_string(&key, pool);
    for (i = 0; i < sel->n; i++) {
        buf_addc(&key, ' ');
        json_buf_string(&key, sel->sel[i].key);
        buf_addc(&key, '=');
        json_buf_string(&key, sel->sel[i].value);
    }
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

static bool place_run(const struct sched_run *run, struct scratch *sc, struct index *ix,
                      struct buf *env, struct sched_placements *out, char *reason,
                      size_t reason_size)
{
    const struct run_spec *spec = run->spec;
    const char *pool = spec->compute_target;
    const struct run_shape *shape = &spec->shape;
    int node_count = shape->node_count;
    unsigned need = spec->features;
    struct pool_index *p = pool_of(ix, pool);
    int n_tasks = run->n_tasks;
    struct task *tasks;
    struct group *groups;
    struct group **order;
    bool mpi = shape->backend == BACKEND_MPI;
    struct selector sel = { spec->selector, spec->n_selector };
    char which[320];
    struct selector_count *memo = NULL;
    struct capacity cap;
    int i;

    if (p != NULL && sel.n > 0) {
        memo = selected_count(ix, pool, need, &sel);
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
    for (i = 0; i < n_tasks; i++) {
        tasks[i].id = run->tasks[i].id;
        tasks[i].name = run->tasks[i].name;
        tasks[i].kind = run->tasks[i].type;
        tasks[i].index = run->tasks[i].index;
    }
    assign_groups(shape, tasks, n_tasks);
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

/* Records why run waits, when that is news. */
static void add_reason(struct sched_placements *out, const struct sched_run *run,
                       const char *reason)
{
    struct sched_reason *r;

    if (run->reason != NULL && strcmp(run->reason, reason) == 0)
        return;
    if (out->n_reasons == out->cap_reasons) {
        out->cap_reasons = out->cap_reasons ? 2 * out->cap_reasons : 64;
        out->reasons = xrealloc(out->reasons, out->cap_reasons * sizeof(*out->reasons));
    }
    r = &out->reasons[out->n_reasons++];
    r->run = run->id;
    r->reason = sched_text_add(out, reason, strlen(reason));
}

void placement_pass(struct sched_state *state, struct sched_placements *out)
{
    struct node *nodes;
    int n_nodes;
    char reason[512];
    struct index ix = { NULL, 0, NULL, 0, NULL, 0, NULL, 0 };
    struct scratch sc = { NULL, NULL, NULL, 0, 0 };
    struct buf env;
    struct port_spaces ps;

    int i;

    sched_placements_init(out);
    buf_init(&env);
    port_spaces_build(&ps, state);
    load_nodes(state, &ps, &nodes, &n_nodes);
    index_build(&ix, nodes, n_nodes, state->absent, state->n_absent);
    for (i = 0; i < state->n_runs; i++) {
        const struct sched_run *run = &state->runs[i];

        if (!place_run(run, &sc, &ix, &env, out, reason, sizeof(reason)))
            add_reason(out, run, reason);
    }
    index_free(&ix);
    port_spaces_release(&ps);
    buf_release(&env);
    free(nodes);
    free(sc.tasks);
    free(sc.groups);
    free(sc.order);
}

/* ---- states built by hand ---- */

struct hand_run {
    struct run_spec spec;
    char *id;
    struct sched_task_in *tasks;
    char *strings; /* the tasks' names and ids */
};

static void hand_run_release(void *owned)
{
    struct hand_run *h = owned;

    run_spec_release(&h->spec);
    free(h->id);
    free(h->tasks);
    free(h->strings);
    free(h);
}

int placement_add_run(struct sched_state *state, const char *id, int64_t attempt,
                      const cJSON *spec_input, struct runspec_error *err)
{
    struct runspec_error own;
    struct hand_run *h = xcalloc(1, sizeof(*h));
    struct store_new_task *tasks;
    char *names;
    size_t *offsets;
    struct buf text;
    struct sched_run *r;
    int n;
    int i;

    if (runspec_validate(spec_input, &h->spec, err ? err : &own) < 0) {
        free(h);
        return ERR_INVALID;
    }
    runspec_tasks(&h->spec, &tasks, &names, &n);
    h->id = xstrdup(id);
    h->tasks = xcalloc((size_t)n, sizeof(*h->tasks));
    offsets = xcalloc(2 * (size_t)n, sizeof(*offsets));
    buf_init(&text);
    for (i = 0; i < n; i++) {
        int type = task_type_parse(tasks[i].type);

        assert(type >= 0);
        h->tasks[i].type = (enum task_type)type;
        h->tasks[i].index = tasks[i].index;
        offsets[2 * i] = text.len;
        buf_adds(&text, tasks[i].name);
        buf_addc(&text, '\0');
        offsets[2 * i + 1] = text.len;
        buf_printf(&text, "%s-%s", id, tasks[i].name);
        buf_addc(&text, '\0');
    }
    /* The text may have moved while it grew: point into it last. */
    h->strings = buf_detach(&text, NULL);
    for (i = 0; i < n; i++) {
        h->tasks[i].name = h->strings + offsets[2 * i];
        h->tasks[i].id = h->strings + offsets[2 * i + 1];
    }
    free(offsets);
    free(tasks);
    free(names);
    state->runs = xrealloc(state->runs, (size_t)(state->n_runs + 1) * sizeof(*state->runs));
    r = &state->runs[state->n_runs++];
    memset(r, 0, sizeof(*r));
    r->id = h->id;
    r->attempt = attempt;
    r->spec = &h->spec;
    r->tasks = h->tasks;
    r->n_tasks = n;
    r->owned = h;
    r->release = hand_run_release;
    return 0;
}
