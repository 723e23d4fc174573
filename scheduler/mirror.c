/*
 * mirror.c - the scheduler's state in memory (mirror.h, mirrorint.h): its
 * rows, kept by what each commit changed, and the check against a fresh
 * read of the store.
 */
#include "scheduler/mirror.h"

#include <assert.h>
#include <math.h>
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

/* ---- rows ---- */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* The host part of an agent URL ("http://host:port/..." -> "host"). */
static char *url_host(const char *url)
{
    const char *p = strstr(url, "://");
    size_t n;

    p = p ? p + 3 : url;
    if (*p == '[') {
        const char *end = strchr(p, ']');

        n = end ? (size_t)(end - p - 1) : strlen(p + 1);
        p++;
    } else {
        n = strcspn(p, ":/");
    }
    return xstrndup(p, n);
}

static void node_strings_free(struct mnode *n)
{
    int k;

    free(n->name);
    free(n->pool);
    free(n->host);
    free(n->url);
    free(n->secret);
    free(n->gpus_json);
    free(n->labels_json);
    free(n->features_json);
    for (k = 0; k < 2 * n->n_labels; k++)
        free(n->labels[k]);
    free(n->labels);
}

static void node_fill(struct mnode *n, const struct store_node_row *row)
{
    cJSON *gpus = json_parse_trusted(row->gpus);
    cJSON *labels = json_parse_trusted(row->labels);
    cJSON *features = json_parse_trusted(row->features);
    const cJSON *g;
    int i = 0;

    n->name = xstrdup(row->name);
    n->pool = xstrdup(row->pool);
    n->host = url_host(row->agent_url);
    n->url = xstrdup(row->agent_url);
    n->secret = xstrdup(row->secret);
    n->gpus_json = xstrdup(row->gpus);
    n->labels_json = xstrdup(row->labels);
    n->features_json = xstrdup(row->features);
    n->cpus = row->cpus;
    n->memory_mb = row->memory_mb;
    n->n_gpus = 0;
    cJSON_ArrayForEach(g, gpus) {
        if (n->n_gpus < STORE_MAX_GPUS)
            n->gpus[n->n_gpus++] = (int)json_get(g, "index")->valuedouble;
    }
    n->features = features_of(features);
    n->labels = xcalloc((size_t)cJSON_GetArraySize(labels) * 2 + 1, sizeof(char *));
    cJSON_ArrayForEach(g, labels) {
        if (!cJSON_IsString(g))
            continue;
        n->labels[2 * i] = xstrdup(g->string);
        n->labels[2 * i + 1] = xstrdup(g->valuestring);
        i++;
    }
    n->n_labels = i;
    n->port_min = row->port_min;
    n->port_max = row->port_max;
    n->state = strcmp(row->state, "ready") == 0      ? NODE_READY
               : strcmp(row->state, "draining") == 0 ? NODE_DRAINING
                                                     : NODE_DOWN;
    n->last_heartbeat = row->last_heartbeat;
    cJSON_Delete(gpus);
    cJSON_Delete(labels);
    cJSON_Delete(features);
}

static void node_remove(struct mirror *m, struct mnode *n)
{
    if (n->holds)
        n->holds->row = NULL;
    HASH_DELETE(hh, m->nodes, n);
    HASH_DELETE(hn, m->nodes_by_name, n);
    node_strings_free(n);
    free(n);
    m->sorted_stale = true;
}

/* Adds (sign 1) or takes away (-1) what a held task uses on its node. */
static void holds_apply(struct mnode *n, const struct mtask *t, int sign)
{
    int i;
    int k;

    n->used_cpus += sign * t->row.cpus;
    n->used_memory_mb += sign * t->row.memory_mb;
    for (i = 0; i < t->n_held_gpus; i++) {
        for (k = 0; k < n->n_gpus; k++) {
            if (n->gpus[k] == t->held_gpus[i])
                n->gpu_holds[k] += sign;
        }
    }
}

static void on_node(void *arg, int64_t rowid, const struct store_node_row *row)
{
    struct mirror *m = arg;
    struct mnode *n;

    HASH_FIND(hh, m->nodes, &rowid, sizeof(rowid), n);
    if (n)
        node_remove(m, n);
    if (row == NULL)
        return;
    /* A name is unique: a row that took it over replaces the old one. */
    HASH_FIND(hn, m->nodes_by_name, row->name, strlen(row->name), n);
    if (n)
        node_remove(m, n);
    n = xcalloc(1, sizeof(*n));
    n->rowid = rowid;
    node_fill(n, row);
    HASH_ADD(hh, m->nodes, rowid, sizeof(n->rowid), n);
    HASH_ADD_KEYPTR(hn, m->nodes_by_name, n->name, strlen(n->name), n);
    m->sorted_stale = true;
    /* Tasks may hold resources here already (a node's row changed). */
    HASH_FIND(hh, m->holds, n->name, strlen(n->name), n->holds);
    if (n->holds) {
        struct mtask *t;

        n->holds->row = n;
        DL_FOREACH2(n->holds->tasks, t, hnext)
        {
            holds_apply(n, t, 1);
        }
    }
}

struct mpush *mirror_push_of(const struct run_spec *spec)
{
    struct mpush *p = xcalloc(1, sizeof(*p));

    p->use_python = spec->use_python;
    p->backend = spec->shape.backend;
    p->snapshot = dup_or_null(spec->source);
    p->image = dup_or_null(spec->image);
    p->pip_packages = json_print(spec->pip_packages);
    return p;
}

static void spec_free(struct mrun *r)
{
    if (r->spec)
        run_spec_release(r->spec);
    free(r->spec);
    r->spec = NULL;
}

static void push_free(struct mpush *p)
{
    if (p == NULL)
        return;
    free(p->snapshot);
    free(p->image);
    free(p->pip_packages);
    free(p);
}

/* Placement's view of a run is built again when it changes. */
static void run_changed(struct mrun *r)
{
    free(r->view);
    r->view = NULL;
    r->n_view = 0;
}

void mirror_spec_done(struct mrun *r)
{
    if (r->spec && r->status != RUN_QUEUED) {
        push_free(r->push);
        r->push = mirror_push_of(r->spec);
    }
    spec_free(r);
}

static void run_strings_free(struct mrun *r)
{
    free(r->id);
    free(r->experiment);
    free(r->pool);
    free(r->reason);
}

static void queue_add(struct mirror *m, struct mrun *r)
{
    if (r->in_queue)
        return;
    if (m->n_adds == m->cap_adds) {
        m->cap_adds = m->cap_adds ? 2 * m->cap_adds : 256;
        m->adds = xrealloc(m->adds, m->cap_adds * sizeof(*m->adds));
    }
    m->adds[m->n_adds++] = (struct qent){ r->priority, r->seq };
    r->in_queue = true;
}

/* Queued and found unschedulable (its clock runs). */
static int unschedulable(const struct mrun *r)
{
    return r->status == RUN_QUEUED && r->unschedulable_since > 0;
}

/* Started, with a deadline (max_run_duration_seconds). */
static int has_deadline(const struct mrun *r)
{
    return (r->status == RUN_STARTING || r->status == RUN_RUNNING) && r->deadline > 0;
}

static void on_run(void *arg, int64_t rowid, const struct store_run_row *row)
{
    struct mirror *m = arg;
    struct mrun *r;
    struct mtask *t;

    HASH_FIND(hh, m->runs, &rowid, sizeof(rowid), r);
    if (r) {
        m->n_unschedulable -= unschedulable(r);
        m->n_deadlines -= has_deadline(r);
    }
    if (row == NULL || run_status_is_final(row->status)) {
        /* Ended: its tasks stay while they hold something or wait for a
         * stop; its queue entry is dropped when a pass meets it. */
        if (r == NULL)
            return;
        DL_FOREACH2(r->tasks, t, rnext)
        {
            t->run = NULL;
            m->n_orphans++;
        }
        HASH_DELETE(hh, m->runs, r);
        run_strings_free(r);
        spec_free(r);
        run_changed(r);
        push_free(r->push);
        free(r);
        return;
    }
    if (r == NULL) {
        r = xcalloc(1, sizeof(*r));
        r->seq = rowid;
        HASH_ADD(hh, m->runs, seq, sizeof(r->seq), r);
        if (m->n_orphans > 0) {
            struct mtask *tmp;

            HASH_ITER(hh, m->tasks, t, tmp)
            {
                if (t->run == NULL && t->row.run_seq == rowid) {
                    t->run = r;
                    DL_APPEND2(r->tasks, t, rprev, rnext);
                    m->n_orphans--;
                }
            }
        }
    } else {
        run_strings_free(r);
    }
    r->id = xstrdup(row->id);
    r->experiment = xstrdup(row->experiment);
    r->pool = xstrdup(row->pool);
    r->reason = dup_or_null(row->reason);
    r->status = row->status;
    r->priority = row->priority;
    r->attempt = row->attempt;
    r->unschedulable_since = row->unschedulable_since;
    r->deadline = row->deadline;
    m->n_unschedulable += unschedulable(r);
    m->n_deadlines += has_deadline(r);
    r->bad_spec = false; /* its row changed: its spec is read again */
    run_changed(r);
    if (r->status == RUN_QUEUED) {
        queue_add(m, r);
    } else {
        /* Out of the queue: keep what its pushes need. */
        mirror_spec_done(r);
    }
}

/* A pending task that holds nothing and waits for no stop: the mirror
 * keeps none of it. Placement reads its run's pending tasks from the
 * store with the run's spec when the run reaches the head of the queue
 * (store_run_specs()): B9's 100,000 queued tasks cost 48 MiB as rows. */
static bool task_deferred(const struct store_task_row *row)
{
    return row->status == TASK_PENDING && !row->held && !row->stop_pending;
}

/* Does the mirror keep a task in this state? */
static bool task_kept(const struct store_task_row *row)
{
    return !task_deferred(row) &&
           (!task_status_is_ended(row->status) || row->held || row->stop_pending);
}

static void task_row_free(struct store_task_row *row)
{
    free((char *)row->id);
    free((char *)row->name);
    free((char *)row->node);
    free((char *)row->address);
    free((char *)row->gpus);
    free((char *)row->argv);
    free((char *)row->env);
}

/* Takes a task out of every list it is in. */
static void task_unlink(struct mirror *m, struct mtask *t)
{
    if (t->run) {
        DL_DELETE2(t->run->tasks, t, rprev, rnext);
        t->run = NULL;
    } else {
        m->n_orphans--;
    }
    if (t->holds) {
        struct mnode *n = t->holds->row;

        DL_DELETE2(t->holds->tasks, t, hprev, hnext);
        if (n)
            holds_apply(n, t, -1);
        free(t->held_gpus);
        t->held_gpus = NULL;
        t->n_held_gpus = 0;
        if (t->holds->tasks == NULL) {
            if (n) {
                /* Exactly nothing, whatever the rounding on the way. */
                n->holds = NULL;
                n->used_cpus = 0;
                n->used_memory_mb = 0;
                memset(n->gpu_holds, 0, sizeof(n->gpu_holds));
            }
            HASH_DELETE(hh, m->holds, t->holds);
            free(t->holds->node);
            free(t->holds);
        }
        t->holds = NULL;
    }
    if (t->box == MBOX_PUSH)
        DL_DELETE2(m->outbox, t, oprev, onext);
    else if (t->box == MBOX_STOP)
        DL_DELETE2(m->stops, t, oprev, onext);
    else if (t->box == MBOX_PUSH_SENT || t->box == MBOX_STOP_SENT)
        m->n_sent[t->box == MBOX_STOP_SENT]--;
    t->box = MBOX_NONE;
    HASH_DELETE(hid, m->tasks_by_id, t);
}

/* Puts a task in the lists its row says. */
static void task_link(struct mirror *m, struct mtask *t)
{
    const struct store_task_row *row = &t->row;

    HASH_ADD_KEYPTR(hid, m->tasks_by_id, row->id, strlen(row->id), t);
    HASH_FIND(hh, m->runs, &row->run_seq, sizeof(row->run_seq), t->run);
    if (t->run) {
        DL_APPEND2(t->run->tasks, t, rprev, rnext);
    } else {
        m->n_orphans++;
    }
    if (row->held && row->node) {
        struct mholds *h;
        cJSON *gpus = json_parse_trusted(row->gpus);
        const cJSON *g;

        HASH_FIND(hh, m->holds, row->node, strlen(row->node), h);
        if (h == NULL) {
            h = xcalloc(1, sizeof(*h));
            h->node = xstrdup(row->node);
            HASH_ADD_KEYPTR(hh, m->holds, h->node, strlen(h->node), h);
            HASH_FIND(hn, m->nodes_by_name, h->node, strlen(h->node), h->row);
            if (h->row)
                h->row->holds = h;
        }
        DL_APPEND2(h->tasks, t, hprev, hnext);
        t->holds = h;
        assert(t->held_gpus == NULL && t->n_held_gpus == 0); /* task_unlink() */
        if (cJSON_GetArraySize(gpus) > 0)
            t->held_gpus = xcalloc((size_t)cJSON_GetArraySize(gpus), sizeof(*t->held_gpus));
        cJSON_ArrayForEach(g, gpus) {
            if (t->n_held_gpus < STORE_MAX_GPUS)
                t->held_gpus[t->n_held_gpus++] = g->valueint;
        }
        cJSON_Delete(gpus);
        if (h->row)
            holds_apply(h->row, t, 1);
    }
    /* Waiting for a push (its run not done), or for a stop. */
    if (row->status == TASK_ASSIGNED && !row->pushed && !row->stopping && row->node) {
        DL_APPEND2(m->outbox, t, oprev, onext);
        t->box = MBOX_PUSH;
    } else if (row->stop_pending && row->node) {
        DL_APPEND2(m->stops, t, oprev, onext);
        t->box = MBOX_STOP;
    }
}

static void on_task(void *arg, int64_t rowid, const struct store_task_row *row)
{
    struct mirror *m = arg;
    struct mtask *t;

    HASH_FIND(hh, m->tasks, &rowid, sizeof(rowid), t);
    if (t || row) {
        int64_t seq = row ? row->run_seq : t->row.run_seq;
        struct mrun *r;

        /* A task of its run changed (kept here or not): its pending
         * tasks are read again when it is placed. */
        HASH_FIND(hh, m->runs, &seq, sizeof(seq), r);
        if (r)
            run_changed(r);
    }
    if (t) {
        task_unlink(m, t);
        task_row_free(&t->row);
    }
    if (row == NULL || !task_kept(row)) {
        if (t) {
            HASH_DELETE(hh, m->tasks, t);
            free(t);
        }
        return;
    }
    if (t == NULL) {
        t = xcalloc(1, sizeof(*t));
        t->rowid = rowid;
        HASH_ADD(hh, m->tasks, rowid, sizeof(t->rowid), t);
    }
    t->row = *row;
    t->row.id = xstrdup(row->id);
    t->row.name = xstrdup(row->name);
    t->row.node = dup_or_null(row->node);
    t->row.address = dup_or_null(row->address);
    t->row.gpus = xstrdup(row->gpus);
    t->row.argv = dup_or_null(row->argv);
    t->row.env = dup_or_null(row->env);
    task_link(m, t);
}

void mirror_task_sent(struct mirror *m, struct mtask *t)
{
    assert(t->box == MBOX_PUSH || t->box == MBOX_STOP);
    if (t->box == MBOX_PUSH)
        DL_DELETE2(m->outbox, t, oprev, onext);
    else
        DL_DELETE2(m->stops, t, oprev, onext);
    t->box = t->box == MBOX_PUSH ? MBOX_PUSH_SENT : MBOX_STOP_SENT;
    m->n_sent[t->box == MBOX_STOP_SENT]++;
}

void mirror_again(struct mirror *m, const char *task_id)
{
    struct mtask *t;

    HASH_FIND(hid, m->tasks_by_id, task_id, strlen(task_id), t);
    if (t && (t->box == MBOX_PUSH_SENT || t->box == MBOX_STOP_SENT)) {
        task_unlink(m, t);
        task_link(m, t);
    }
}

/* ---- life ---- */

static const struct store_mirror_fns *fns_of(struct mirror *m, struct store_mirror_fns *fns)
{
    fns->arg = m;
    fns->run = on_run;
    fns->task = on_task;
    fns->node = on_node;
    return fns;
}

static void clear(struct mirror *m)
{
    struct mnode *n, *ntmp;
    struct mrun *r, *rtmp;
    struct mtask *t, *ttmp;

    HASH_ITER(hh, m->tasks, t, ttmp)
    {
        task_unlink(m, t);
        task_row_free(&t->row);
        HASH_DELETE(hh, m->tasks, t);
        free(t);
    }
    HASH_ITER(hh, m->runs, r, rtmp)
    {
        struct store_run_row gone = { .status = RUN_CANCELED };

        on_run(m, r->seq, &gone);
    }
    HASH_ITER(hh, m->nodes, n, ntmp)
    {
        node_remove(m, n);
    }
    assert(m->holds == NULL && m->outbox == NULL && m->stops == NULL && m->n_orphans == 0);
    free(m->sorted);
    free(m->asked);
    free(m->asked_names);
    free(m->seen);
    m->sorted = NULL;
    m->asked = NULL;
    m->asked_names = NULL;
    m->seen = NULL;
    m->sorted_stale = true;
    m->refreshed_at = 0;
    m->n_sorted = 0;
    m->queue = m->queue_mem;
    m->n_queue = 0;
    m->n_adds = 0;
}

/* Reads everything: at start, and after a failed sync or an overflow.
 * own: the scheduler's mirror, which takes the changes (a copy made for
 * mirror_compare() leaves them to it). */
static int reload(struct mirror *m, bool own)
{
    struct store_mirror_fns fns;
    struct store_changes ch;
    int rc;

    clear(m);
    /* Changes from here on are the next sync's (some are read twice). */
    if (own) {
        store_changes_take(m->store, &ch);
        store_changes_release(&ch);
    }
    rc = store_mirror_read(m->store, NULL, fns_of(m, &fns));
    m->broken = rc < 0;
    return rc;
}

static int mirror_read(struct store *store, bool own, struct mirror **ret_mirror)
{
    struct mirror *m = xcalloc(1, sizeof(*m));

    m->store = store;
    m->head_runs = HEAD_RUNS;
    if (reload(m, own) < 0) {
        mirror_free(m);
        return ERR_INTERNAL;
    }
    *ret_mirror = m;
    return 0;
}

int mirror_new(struct store *store, struct mirror **ret_mirror)
{
    return mirror_read(store, true, ret_mirror);
}

void mirror_free(struct mirror *m)
{
    if (m == NULL)
        return;
    clear(m);
    free(m->queue_mem);
    free(m->adds);
    free(m);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

void mirror_dedup(int64_t *rows, size_t *n)
{
    size_t i;
    size_t k = 0;

    if (*n == 0)
        return;
    qsort(rows, *n, sizeof(*rows), cmp_i64);
    for (i = 0; i < *n; i++) {
        if (k == 0 || rows[k - 1] != rows[i])
            rows[k++] = rows[i];
    }
    *n = k;
}

int mirror_sync(struct mirror *m)
{
    struct store_changes ch;
    struct store_mirror_fns fns;
    int t;
    int rc;

    if (m->broken)
        return reload(m, true);
    store_changes_take(m->store, &ch);
    if (ch.overflow) {
        store_changes_release(&ch);
        log_info("scheduler: more changes than kept; reading the whole state again");
        return reload(m, true);
    }
    for (t = 0; t < 3; t++)
        mirror_dedup(ch.rows[t], &ch.n[t]);
    rc = store_mirror_read(m->store, &ch, fns_of(m, &fns));
    store_changes_release(&ch);
    if (rc < 0)
        m->broken = true;
    return rc;
}

static int by_queue_order(const void *a, const void *b)
{
    const struct qent *x = a;
    const struct qent *y = b;

    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

void mirror_queue_merge(struct mirror *m)
{
    size_t i = m->n_queue;
    size_t j = m->n_adds;
    size_t k = m->n_queue + m->n_adds;

    if (m->n_adds == 0)
        return;
    qsort(m->adds, m->n_adds, sizeof(*m->adds), by_queue_order);
    if (m->queue_mem == NULL || (size_t)(m->queue - m->queue_mem) + k > m->cap_queue) {
        /* No room after it: to the front, and grown when that is not
         * enough (as often as the queue doubles). */
        if (m->n_queue > 0)
            memmove(m->queue_mem, m->queue, m->n_queue * sizeof(*m->queue));
        if (k > m->cap_queue) {
            m->cap_queue = k > 2 * m->cap_queue ? k : 2 * m->cap_queue;
            m->queue_mem = xrealloc(m->queue_mem, m->cap_queue * sizeof(*m->queue_mem));
        }
        m->queue = m->queue_mem;
    }
    /* From the back, in place: what is queued before the first new entry
     * stays where it is, so runs queued after all others (the usual case)
     * cost what they are, not the queue's length. */
    while (j > 0) {
        if (i > 0 && by_queue_order(&m->queue[i - 1], &m->adds[j - 1]) > 0)
            m->queue[--k] = m->queue[--i];
        else
            m->queue[--k] = m->adds[--j];
    }
    assert(k == i);
    m->n_queue += m->n_adds;
    m->n_adds = 0;
}

/* ---- checking the mirror against the store ---- */

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void differ(struct buf *out, int *count, const char *what, int64_t key, const char *field)
{
    if (*count < 100)
        buf_printf(out, "%s %lld: %s differs\n", what, (long long)key, field);
    (*count)++;
}

static void compare_nodes(const struct mirror *m, const struct mirror *f, struct buf *out,
                          int *count)
{
    const struct mnode *a;
    const struct mnode *b;

    for (b = f->nodes; b; b = b->hh.next) {
        HASH_FIND(hh, m->nodes, &b->rowid, sizeof(b->rowid), a);
        if (a == NULL) {
            differ(out, count, "node", b->rowid, "presence (missing in memory)");
            continue;
        }
        if (!same_str(a->name, b->name) || !same_str(a->pool, b->pool) ||
            !same_str(a->url, b->url) || !same_str(a->secret, b->secret))
            differ(out, count, "node", b->rowid, "name, pool, url or secret");
        if (!same_str(a->gpus_json, b->gpus_json) || !same_str(a->labels_json, b->labels_json) ||
            !same_str(a->features_json, b->features_json))
            differ(out, count, "node", b->rowid, "gpus, labels or features");
        if (a->state != b->state || a->cpus != b->cpus || a->memory_mb != b->memory_mb ||
            a->port_min != b->port_min || a->port_max != b->port_max)
            differ(out, count, "node", b->rowid, "state, resources or ports");
        if (fabs(a->used_cpus - b->used_cpus) > 1e-6 || a->used_memory_mb != b->used_memory_mb ||
            memcmp(a->gpu_holds, b->gpu_holds, sizeof(a->gpu_holds)) != 0)
            differ(out, count, "node", b->rowid, "what its tasks use");
    }
    if (HASH_CNT(hh, m->nodes) != HASH_CNT(hh, f->nodes))
        differ(out, count, "nodes", (int64_t)HASH_CNT(hh, m->nodes), "count");
}

static void compare_runs(const struct mirror *m, const struct mirror *f, struct buf *out,
                         int *count)
{
    const struct mrun *a;
    const struct mrun *b;

    for (b = f->runs; b; b = b->hh.next) {
        HASH_FIND(hh, m->runs, &b->seq, sizeof(b->seq), a);
        if (a == NULL) {
            differ(out, count, "run", b->seq, "presence (missing in memory)");
            continue;
        }
        if (!same_str(a->id, b->id) || !same_str(a->experiment, b->experiment) ||
            !same_str(a->pool, b->pool) || !same_str(a->reason, b->reason))
            differ(out, count, "run", b->seq, "id, experiment, pool or reason");
        if (a->status != b->status || a->priority != b->priority || a->attempt != b->attempt ||
            a->unschedulable_since != b->unschedulable_since || a->deadline != b->deadline)
            differ(out, count, "run", b->seq, "status, priority, attempt or times");
    }
    if (HASH_CNT(hh, m->runs) != HASH_CNT(hh, f->runs))
        differ(out, count, "runs", (int64_t)HASH_CNT(hh, m->runs), "count");
}

/* The list a task is in, or would be in had it not been sent. */
static enum mbox listed(const struct mtask *t)
{
    return t->box == MBOX_PUSH_SENT ? MBOX_PUSH : t->box == MBOX_STOP_SENT ? MBOX_STOP : t->box;
}

static void compare_tasks(const struct mirror *m, const struct mirror *f, struct buf *out,
                          int *count)
{
    const struct mtask *a;
    const struct mtask *b;

    for (b = f->tasks; b; b = b->hh.next) {
        const struct store_task_row *x;
        const struct store_task_row *y = &b->row;

        HASH_FIND(hh, m->tasks, &b->rowid, sizeof(b->rowid), a);
        if (a == NULL) {
            differ(out, count, "task", b->rowid, "presence (missing in memory)");
            continue;
        }
        x = &a->row;
        if (!same_str(x->id, y->id) || !same_str(x->name, y->name) || !same_str(x->node, y->node) ||
            !same_str(x->address, y->address) || !same_str(x->gpus, y->gpus) ||
            !same_str(x->argv, y->argv) || !same_str(x->env, y->env))
            differ(out, count, "task", b->rowid, "id, name, node, address, gpus, argv or env");
        if (x->run_seq != y->run_seq || x->attempt != y->attempt || x->ord != y->ord ||
            x->type != y->type || x->index != y->index || x->cpus != y->cpus ||
            x->memory_mb != y->memory_mb || x->port != y->port || x->status != y->status)
            differ(out, count, "task", b->rowid, "run, type, resources, port or status");
        if (x->pushed != y->pushed || x->stop_pending != y->stop_pending ||
            x->stopping != y->stopping || x->held != y->held)
            differ(out, count, "task", b->rowid, "pushed, stop_pending, stopping or held");
        if ((a->run == NULL) != (b->run == NULL) || (a->holds == NULL) != (b->holds == NULL) ||
            listed(a) != b->box)
            differ(out, count, "task", b->rowid, "its run, holds, outbox or stops link");
    }
    if (HASH_CNT(hh, m->tasks) != HASH_CNT(hh, f->tasks))
        differ(out, count, "tasks", (int64_t)HASH_CNT(hh, m->tasks), "count");
}

/* The next queued run of m's queue from *i on, without changing m. */
static const struct mrun *next_queued(struct mirror *m, size_t *i)
{
    for (; *i < m->n_queue; (*i)++) {
        const struct mrun *r;

        HASH_FIND(hh, m->runs, &m->queue[*i].seq, sizeof(m->queue[*i].seq), r);
        if (r && r->status == RUN_QUEUED)
            return m->queue[(*i)++].seq == r->seq ? r : NULL;
    }
    return NULL;
}

static void compare_queues(struct mirror *m, struct mirror *f, struct buf *out, int *count)
{
    size_t i = 0;
    size_t j = 0;

    mirror_queue_merge(m);
    mirror_queue_merge(f);
    for (;;) {
        const struct mrun *a = next_queued(m, &i);
        const struct mrun *b = next_queued(f, &j);

        if (a == NULL && b == NULL)
            return;
        if (a == NULL || b == NULL || a->seq != b->seq) {
            differ(out, count, "queue at run", b ? b->seq : a->seq, "order");
            return;
        }
    }
}

struct compare {
    struct mirror *m;
    struct mirror *fresh;
    int rc;
};

/* While the store is quiet: the mirror takes every change made so far,
 * and the fresh read sees exactly those commits. */
static void read_both(void *arg)
{
    struct compare *c = arg;

    c->rc = mirror_sync(c->m);
    if (c->rc == 0)
        c->rc = mirror_read(c->m->store, false, &c->fresh);
}

int mirror_compare(struct mirror *m, struct buf *out)
{
    struct compare c = { m, NULL, 0 };
    int count = 0;

    store_quiet(m->store, read_both, &c);
    if (c.rc < 0 || m->broken) {
        mirror_free(c.fresh);
        return ERR_INTERNAL;
    }
    compare_nodes(m, c.fresh, out, &count);
    compare_runs(m, c.fresh, out, &count);
    compare_tasks(m, c.fresh, out, &count);
    compare_queues(m, c.fresh, out, &count);
    if (m->n_unschedulable != c.fresh->n_unschedulable)
        differ(out, &count, "unschedulable runs", m->n_unschedulable, "count");
    if (m->n_deadlines != c.fresh->n_deadlines)
        differ(out, &count, "runs with a deadline", m->n_deadlines, "count");
    mirror_free(c.fresh);
    return count;
}
