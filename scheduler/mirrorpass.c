/*
 * mirrorpass.c - what a pass reads from the state in memory: the input of
 * placement (the head of the queue and the nodes it wants), the outbox,
 * whether a time-driven rule is due, and counts.
 */
#include "scheduler/mirror.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "scheduler/mirrorint.h"
#include "common/banned.h"

/* ---- the pass's input ---- */

static int by_pool_name(const void *a, const void *b)
{
    const struct mnode *x = *(struct mnode *const *)a;
    const struct mnode *y = *(struct mnode *const *)b;
    int c = strcmp(x->pool, y->pool);

    return c ? c : strcmp(x->name, y->name);
}

void mirror_nodes_refresh(struct mirror *m, int64_t now_ms, int64_t node_timeout_ms)
{
    struct mnode *n;
    size_t n_ask = 0;
    size_t j;
    int i = 0;

    if (m->sorted_stale) {
        m->n_sorted = (int)HASH_CNT(hn, m->nodes_by_name);
        m->sorted = xrealloc(m->sorted, ((size_t)m->n_sorted + 1) * sizeof(*m->sorted));
        m->asked = xrealloc(m->asked, ((size_t)m->n_sorted + 1) * sizeof(*m->asked));
        m->asked_names =
            xrealloc(m->asked_names, ((size_t)m->n_sorted + 1) * sizeof(*m->asked_names));
        m->seen = xrealloc(m->seen, ((size_t)m->n_sorted + 1) * sizeof(*m->seen));
        for (n = m->nodes_by_name; n; n = n->hn.next)
            m->sorted[i++] = n;
        qsort(m->sorted, (size_t)m->n_sorted, sizeof(*m->sorted), by_pool_name);
        m->sorted_stale = false;
    }
    /* Only the nodes heard from more than half a timeout ago: the others
     * are ready either way, and B3's passes asked for 10,000 nodes each.
     * And at most every REFRESH_GAP_MS (an eighth of a timeout at most):
     * a node late at the last refresh that has been heard from since is
     * seen so that much later; one not asked then is still within its
     * timeout now. Passes come every few ms under load. */
    if (m->refreshed_at > 0 && now_ms >= m->refreshed_at &&
        now_ms - m->refreshed_at < REFRESH_GAP_MS && REFRESH_GAP_MS <= node_timeout_ms / 8)
        return;
    m->refreshed_at = now_ms;
    for (i = 0; i < m->n_sorted; i++) {
        if (m->sorted[i]->last_heartbeat < now_ms - node_timeout_ms / 2) {
            m->asked[n_ask] = m->sorted[i];
            m->asked_names[n_ask++] = m->sorted[i]->name;
        }
    }
    store_nodes_seen(m->store, m->asked_names, n_ask, m->seen);
    for (j = 0; j < n_ask; j++) {
        if (m->seen[j] > m->asked[j]->last_heartbeat)
            m->asked[j]->last_heartbeat = m->seen[j];
    }
}

/* A queue entry still names a queued run: that run, else NULL. */
static struct mrun *queued_run(struct mirror *m, const struct qent *e)
{
    struct mrun *r;

    HASH_FIND(hh, m->runs, &e->seq, sizeof(e->seq), r);
    if (r && r->status == RUN_QUEUED)
        return r;
    if (r)
        r->in_queue = false;
    return NULL;
}

/* Run seq, with its spec parsed from the stored text if it had none
 * (NULL: no longer in the mirror). */
static struct mrun *spec_take(struct mirror *m, int64_t seq, const char *spec)
{
    struct mrun *r;

    HASH_FIND(hh, m->runs, &seq, sizeof(seq), r);
    if (r == NULL || r->spec != NULL || r->bad_spec)
        return r;
    r->spec = xcalloc(1, sizeof(*r->spec));
    if (run_spec_parse(spec, r->spec) < 0) {
        /* Written behind the server's back: the run stays queued, not
         * placed, until its row changes (a cancel, a fix by hand). */
        log_error("scheduler: run %s has a stored spec that is not a run spec; it is not placed",
                  r->id);
        free(r->spec);
        r->spec = NULL;
        r->bad_spec = true;
    }
    return r;
}

/* A run of the outbox: the spec its pushes need. */
static void spec_loaded(void *arg, int64_t seq, int64_t attempt, const char *spec,
                        const struct sched_task_in *tasks, int n_tasks)
{
    (void)attempt;
    (void)tasks;
    (void)n_tasks;
    spec_take(arg, seq, spec);
}

/* A queued run at the head: its spec, and placement's view of its
 * pending tasks in one block with their strings. */
static void head_loaded(void *arg, int64_t seq, int64_t attempt, const char *spec,
                        const struct sched_task_in *tasks, int n_tasks)
{
    struct mrun *r = spec_take(arg, seq, spec);
    size_t size = ((size_t)n_tasks + 1) * sizeof(*tasks);
    char *p;
    int i;

    /* Another attempt than the one this mirror knows (the next sync
     * tells): read again then. */
    if (r == NULL || r->view != NULL || r->status != RUN_QUEUED || attempt != r->attempt)
        return;
    for (i = 0; i < n_tasks; i++)
        size += strlen(tasks[i].id) + strlen(tasks[i].name) + 2;
    r->view = xcalloc(1, size);
    r->n_view = n_tasks;
    p = (char *)(r->view + n_tasks + 1);
    for (i = 0; i < n_tasks; i++) {
        size_t id = strlen(tasks[i].id) + 1;
        size_t name = strlen(tasks[i].name) + 1;

        r->view[i] = tasks[i];
        r->view[i].id = memcpy(p, tasks[i].id, id);
        r->view[i].name = memcpy(p + id, tasks[i].name, name);
        p += id + name;
    }
}

/* Reads the specs (and with pending, the pending tasks) of the runs of
 * seqs. */
static void load_specs(struct mirror *m, int64_t *seqs, size_t n, bool pending)
{
    if (n > 0 &&
        store_run_specs(m->store, seqs, n, pending, pending ? head_loaded : spec_loaded, m) < 0)
        m->broken = true;
}

/* The head of the queue: at most m->head_runs queued runs, in order, with
 * their specs and pending tasks; entries of runs no longer queued before
 * the last one taken are dropped (the head moves back over them: the rest
 * of the queue stays where it is). */
static size_t queue_head(struct mirror *m, struct mrun **head)
{
    int64_t *missing = xcalloc(m->head_runs, sizeof(*missing));
    size_t n_missing = 0;
    size_t n = 0;
    size_t i;
    size_t k = 0;

    mirror_queue_merge(m);
    for (i = 0; i < m->n_queue && n < m->head_runs; i++) {
        struct mrun *r = queued_run(m, &m->queue[i]);

        if (r == NULL)
            continue;
        m->queue[k++] = m->queue[i];
        head[n++] = r;
        if ((r->spec == NULL || r->view == NULL) && !r->bad_spec)
            missing[n_missing++] = r->seq;
    }
    if (k < i) {
        memmove(&m->queue[i - k], &m->queue[0], k * sizeof(*m->queue));
        m->queue += i - k;
        m->n_queue -= i - k;
    }
    load_specs(m, missing, n_missing, true);
    free(missing);
    return n;
}

/* Ready as of now (after mirror_nodes_refresh()). */
static bool node_ready(const struct mnode *n, int64_t now, int64_t timeout)
{
    return n->state == NODE_READY && n->last_heartbeat >= now - timeout;
}

static bool wanted(const char *const *pools, size_t n, const char *pool)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(pools[i], pool) == 0)
            return true;
    }
    return false;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Where pool's nodes start in m->sorted (by pool, then name). */
static int pool_start(const struct mirror *m, const char *pool)
{
    int lo = 0;
    int hi = m->n_sorted;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;

        if (strcmp(m->sorted[mid]->pool, pool) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A node's entry as placement sees it: borrowed strings, what its held
 * tasks use (ports in an array of its own). */
static void node_view(const struct mnode *n, struct sched_node *s)
{
    const struct mtask *t;
    int k;

    memset(s, 0, sizeof(*s));
    s->name = n->name;
    s->pool = n->pool;
    s->host = n->host;
    s->agent_url = n->url;
    s->cpus = n->cpus;
    s->used_cpus = n->used_cpus;
    s->memory_mb = n->memory_mb;
    s->used_memory_mb = n->used_memory_mb;
    s->n_gpus = n->n_gpus;
    memcpy(s->gpus, n->gpus, sizeof(s->gpus));
    for (k = 0; k < n->n_gpus; k++)
        s->gpu_used[k] = n->gpu_holds[k] > 0;
    s->port_min = n->port_min;
    s->port_max = n->port_max;
    s->features = n->features;
    s->labels = n->labels;
    s->n_labels = n->n_labels;
    DL_FOREACH2(n->holds ? n->holds->tasks : NULL, t, hnext)
    {
        if (t->row.port)
            sched_node_use_port(s, t->row.port);
    }
}

static void *grow(void *p, int n, int *cap, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? 2 * *cap : 64;
    return xrealloc(p, (size_t)*cap * size);
}

/* The capacities of a state's arrays while it is built. */
struct state_caps {
    int nodes, absent, other;
};

/* A node of a wanted pool into the state of pass: ready, or absent (not
 * placed on, but what it could hold counts). */
static void node_add(struct sched_state *state, struct state_caps *caps, struct mnode *n,
                     int64_t now, int64_t timeout, uint64_t pass)
{
    struct sched_node *s;

    n->in_pass = pass;
    if (node_ready(n, now, timeout)) {
        state->nodes = grow(state->nodes, state->n_nodes, &caps->nodes, sizeof(*state->nodes));
        node_view(n, &state->nodes[state->n_nodes++]);
        return;
    }
    state->absent = grow(state->absent, state->n_absent, &caps->absent, sizeof(*state->absent));
    s = &state->absent[state->n_absent++];
    node_view(n, s);
    free(s->used_ports);
    s->used_ports = NULL;
    s->n_used_ports = 0;
}

int mirror_state(struct mirror *m, int64_t now_ms, int64_t node_timeout_ms,
                 struct sched_state *ret_state)
{
    struct sched_state state;
    struct mrun **head = xcalloc(m->head_runs, sizeof(*head));
    const char **pools = xcalloc(m->head_runs, sizeof(*pools));
    size_t n_pools = 0;
    size_t n_head;
    bool any_ready = false;
    struct state_caps caps = { 0, 0, 0 };
    struct mholds *h;
    size_t i;
    int k;

    memset(&state, 0, sizeof(state));
    state.runs = xcalloc(m->head_runs, sizeof(*state.runs));
    mirror_nodes_refresh(m, now_ms, node_timeout_ms);
    /* With no ready node nothing can be placed: the queue is not looked
     * at (queued runs keep the reasons they have). */
    for (k = 0; k < m->n_sorted && !any_ready; k++)
        any_ready = node_ready(m->sorted[k], now_ms, node_timeout_ms);
    n_head = any_ready ? queue_head(m, head) : 0;
    for (i = 0; i < n_head; i++) {
        struct mrun *r = head[i];

        struct sched_run *sr;

        /* Its row is gone meanwhile (the next sync tells), or its spec is
         * none: not placed. */
        if (r->spec == NULL || r->view == NULL)
            continue;
        /* Its attempt's tasks come with it in one commit; a run with
         * others (rows changed behind the server's back) is not placed. */
        if (r->n_view != backend_rules(r->spec->shape.backend)->task_count(&r->spec->shape))
            continue;
        sr = &state.runs[state.n_runs++];
        sr->id = r->id;
        sr->reason = r->reason;
        sr->attempt = r->attempt;
        sr->spec = r->spec;
        sr->tasks = r->view;
        sr->n_tasks = r->n_view;
        if (!wanted(pools, n_pools, r->pool))
            pools[n_pools++] = r->pool;
    }
    /* Only the nodes of the pools the head wants (with nothing queued,
     * none), in placement's order: by pool, then name. */
    m->n_passes++;
    qsort(pools, n_pools, sizeof(*pools), by_str);
    for (i = 0; i < n_pools; i++) {
        for (k = pool_start(m, pools[i]);
             k < m->n_sorted && strcmp(m->sorted[k]->pool, pools[i]) == 0; k++)
            node_add(&state, &caps, m->sorted[k], now_ms, node_timeout_ms, m->n_passes);
    }
    /* Ports held on nodes not in the state: nodes at the same host share
     * one port space. */
    for (h = m->holds; n_pools > 0 && h; h = h->hh.next) {
        struct mnode *n = h->row;
        struct mtask *t;

        if (n == NULL || n->in_pass == m->n_passes)
            continue;
        DL_FOREACH2(h->tasks, t, hnext)
        {
            if (t->row.port == 0)
                continue;
            state.other_ports = grow(state.other_ports, state.n_other_ports, &caps.other,
                                     sizeof(*state.other_ports));
            state.other_ports[state.n_other_ports].host = n->host;
            state.other_ports[state.n_other_ports++].port = t->row.port;
        }
    }
    free(head);
    free(pools);
    *ret_state = state;
    return m->broken ? ERR_INTERNAL : 0;
}

void mirror_placed(struct mirror *m, size_t n)
{
    m->head_runs = n > HEAD_RUNS_MAX / 2 ? HEAD_RUNS_MAX : n < HEAD_RUNS / 2 ? HEAD_RUNS : 2 * n;
}

void mirror_state_release(struct sched_state *state)
{
    int i;

    for (i = 0; i < state->n_nodes; i++)
        free(state->nodes[i].used_ports);
    free(state->nodes);
    free(state->absent);
    free(state->other_ports);
    free(state->runs);
    memset(state, 0, sizeof(*state));
}

/* ---- the outbox ---- */

/* Reads the specs, for their pushes, of the runs of the outbox that have
 * neither (they left the queue before this mirror saw their spec). */
static void load_pushes(struct mirror *m, bool (*skip)(void *, const char *, bool), void *arg)
{
    int64_t *seqs = NULL;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    struct mtask *t;

    DL_FOREACH2(m->outbox, t, onext)
    {
        if (t->run == NULL || t->run->push || t->run->spec || skip(arg, t->row.id, false))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            seqs = xrealloc(seqs, cap * sizeof(*seqs));
        }
        seqs[n++] = t->run->seq;
    }
    mirror_dedup(seqs, &n);
    load_specs(m, seqs, n, false);
    for (i = 0; i < n; i++) {
        struct mrun *r;

        HASH_FIND(hh, m->runs, &seqs[i], sizeof(seqs[i]), r);
        if (r && r->status != RUN_QUEUED)
            mirror_spec_done(r);
    }
    free(seqs);
}

static cJSON *raw_or_null(const char *json)
{
    return json ? cJSON_CreateRaw(json) : cJSON_CreateNull();
}

/* {"task": {assignment}, "url", "secret", "node"}: the body of the
 * agent's POST /v1/tasks and where it goes. */
static cJSON *push_item(const struct mtask *t, const struct mnode *n)
{
    const struct store_task_row *row = &t->row;
    const struct mrun *r = t->run;
    const struct mpush *p = r->push;
    cJSON *item = cJSON_CreateObject();
    cJSON *a = cJSON_AddObjectToObject(item, "task");

    cJSON_AddStringToObject(a, "id", row->id);
    cJSON_AddStringToObject(a, "run_id", r->id);
    cJSON_AddStringToObject(a, "experiment", r->experiment);
    cJSON_AddNumberToObject(a, "attempt", (double)r->attempt);
    cJSON_AddStringToObject(a, "name", row->name);
    cJSON_AddStringToObject(a, "type", task_type_name(row->type));
    cJSON_AddNumberToObject(a, "index", row->index);
    cJSON_AddItemToObject(a, "argv", raw_or_null(row->argv));
    cJSON_AddBoolToObject(a, "use_python", p->use_python);
    /* mpi: the launcher runs mpirun; each worker holds its node's slots
     * and runs what mpirun starts there through /v1/exec. */
    if (p->backend == BACKEND_MPI) {
        cJSON_AddBoolToObject(a, "mpi_launcher", row->type == TASK_LAUNCHER);
        cJSON_AddBoolToObject(a, "mpi_worker", row->type == TASK_WORKER);
    }
    cJSON_AddItemToObject(a, "env", raw_or_null(row->env));
    json_add_string_or_null(a, "snapshot", p->snapshot);
    json_add_string_or_null(a, "image", p->image);
    if (p->pip_packages)
        cJSON_AddItemToObject(a, "pip_packages", cJSON_CreateRaw(p->pip_packages));
    cJSON_AddItemToObject(a, "gpus", cJSON_CreateRaw(row->gpus));
    cJSON_AddNumberToObject(a, "cpus", row->cpus);
    cJSON_AddNumberToObject(a, "memory_mb", (double)row->memory_mb);
    if (row->port)
        cJSON_AddNumberToObject(a, "port", row->port);
    else
        cJSON_AddNullToObject(a, "port");
    json_add_string_or_null(a, "address", row->address);
    cJSON_AddStringToObject(item, "url", n->url);
    cJSON_AddStringToObject(item, "secret", n->secret);
    cJSON_AddStringToObject(item, "node", n->name);
    return item;
}

void mirror_outbox(struct mirror *m, bool (*skip)(void *arg, const char *task_id, bool is_stop),
                   void *arg, cJSON **ret_push, cJSON **ret_stop)
{
    cJSON *push = cJSON_CreateArray();
    cJSON *stop = cJSON_CreateArray();
    struct mtask *t;
    struct mtask *tmp;

    load_pushes(m, skip, arg);
    DL_FOREACH_SAFE2(m->outbox, t, tmp, onext)
    {
        struct mnode *n;

        HASH_FIND(hn, m->nodes_by_name, t->row.node, strlen(t->row.node), n);
        if (n == NULL || t->run == NULL || t->run->push == NULL || skip(arg, t->row.id, false))
            continue;
        cJSON_AddItemToArray(push, push_item(t, n));
        mirror_task_sent(m, t);
    }
    DL_FOREACH_SAFE2(m->stops, t, tmp, onext)
    {
        struct mnode *n;
        cJSON *item;

        HASH_FIND(hn, m->nodes_by_name, t->row.node, strlen(t->row.node), n);
        if (n == NULL || skip(arg, t->row.id, true))
            continue;
        item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "task", t->row.id);
        cJSON_AddStringToObject(item, "url", n->url);
        cJSON_AddStringToObject(item, "secret", n->secret);
        cJSON_AddItemToArray(stop, item);
        mirror_task_sent(m, t);
    }
    *ret_push = push;
    *ret_stop = stop;
}

/* ---- time-driven rules ---- */

bool mirror_expire_due(struct mirror *m, int64_t now_ms, int64_t node_timeout_ms)
{
    struct mnode *n;
    struct mrun *r;

    mirror_nodes_refresh(m, now_ms, node_timeout_ms);
    for (n = m->nodes; n; n = n->hh.next) {
        struct mholds *h;
        struct mtask *t;

        if (n->state != NODE_DOWN) {
            if (n->last_heartbeat < now_ms - node_timeout_ms)
                return true;
            continue;
        }
        HASH_FIND(hh, m->holds, n->name, strlen(n->name), h);
        DL_FOREACH2(h ? h->tasks : NULL, t, hnext)
        {
            if (task_status_is_live(t->row.status))
                return true;
        }
    }
    /* The runs are walked only when one has a deadline. */
    for (r = m->n_deadlines > 0 ? m->runs : NULL; r; r = r->hh.next) {
        if ((r->status == RUN_STARTING || r->status == RUN_RUNNING) && r->deadline > 0 &&
            r->deadline < now_ms)
            return true;
    }
    return false;
}

bool mirror_any_unschedulable(const struct mirror *m)
{
    return m->n_unschedulable > 0;
}

void mirror_counts(const struct mirror *m, struct mirror_counts *ret)
{
    const struct mtask *t;
    const struct mrun *r;
    const struct mholds *h;

    memset(ret, 0, sizeof(*ret));
    ret->nodes = (int64_t)HASH_CNT(hh, m->nodes);
    ret->runs = (int64_t)HASH_CNT(hh, m->runs);
    ret->tasks = (int64_t)HASH_CNT(hh, m->tasks);
    for (r = m->runs; r; r = r->hh.next)
        ret->queued += r->status == RUN_QUEUED;
    for (h = m->holds; h; h = h->hh.next) {
        DL_FOREACH2(h->tasks, t, hnext)
        {
            ret->held++;
        }
    }
    DL_FOREACH2(m->outbox, t, onext)
    {
        ret->outbox++;
    }
    DL_FOREACH2(m->stops, t, onext)
    {
        ret->stops++;
    }
}
