/* nodes.c - registered compute hosts, heartbeats and pools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "store/internal.h"
#include "common/banned.h"

/* A task holds resources on its node while it is in one of these. */
#define LIVE_TASK "status IN ('assigned', 'preparing', 'running')"
/* A task holds its GPUs, CPUs and port from placement until its agent has
 * let go of it (a stopped process may take its grace period to exit). */
#define HELD_TASK "held = 1"

#define NODE_COLUMNS                                                                               \
    "name, pool, agent_url, cpus, memory_mb, gpus, labels, features, state, registered_at, "       \
    "last_heartbeat, port_min, port_max"

/* ---- register ---- */

static int node_register_fn(struct conn *c, void *arg)
{
    const struct store_node_reg *r = arg;
    sqlite3_stmt *st = conn_stmt(
        c, "INSERT INTO nodes(name, pool, agent_url, cpus, memory_mb, gpus, labels, features, "
           "state, secret, registered_at, last_heartbeat, port_min, port_max) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'ready', ?9, ?10, ?10, ?11, ?12) "
           "ON CONFLICT(name) DO UPDATE SET pool = ?2, agent_url = ?3, cpus = ?4, "
           "memory_mb = ?5, gpus = ?6, labels = ?7, features = ?8, "
           "state = CASE state WHEN 'draining' THEN 'draining' ELSE 'ready' END, secret = ?9, "
           "registered_at = ?10, last_heartbeat = ?10, port_min = ?11, port_max = ?12");
    char *gpus;
    char *labels;
    char *features;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    gpus = json_print(r->gpus);
    labels = json_print(r->labels);
    features = json_print(r->features);
    bind_text(st, 1, r->name);
    bind_text(st, 2, r->pool);
    bind_text(st, 3, r->agent_url);
    sqlite3_bind_double(st, 4, r->cpus);
    sqlite3_bind_int64(st, 5, r->memory_mb);
    bind_text(st, 6, gpus);
    bind_text(st, 7, labels);
    bind_text(st, 8, features);
    bind_text(st, 9, r->secret);
    sqlite3_bind_int64(st, 10, r->now_ms);
    sqlite3_bind_int(st, 11, r->port_min ? r->port_min : 20000);
    sqlite3_bind_int(st, 12, r->port_max ? r->port_max : 29999);
    rc = stmt_done(c, st);
    free(gpus);
    free(labels);
    free(features);
    return rc;
}

int store_node_register(struct store *store, const struct store_node_reg *reg)
{
    return store_write(store, node_register_fn, (void *)reg);
}

/* ---- read ---- */

/* Adds "allocated" and "tasks" from the node's live tasks. */
static int add_allocation(struct conn *c, const char *name, cJSON *node)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT id, cpus, memory_mb, gpus FROM tasks "
                                    "WHERE node = ? AND " HELD_TASK " ORDER BY id");
    cJSON *alloc = cJSON_AddObjectToObject(node, "allocated");
    cJSON *gpus = cJSON_CreateArray();
    cJSON *tasks = cJSON_CreateArray();
    double cpus = 0;
    int64_t memory_mb = 0;
    int rc;

    if (st == NULL) {
        cJSON_Delete(gpus);
        cJSON_Delete(tasks);
        return ERR_INTERNAL;
    }
    bind_text(st, 1, name);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *held = json_parse_trusted((const char *)sqlite3_column_text(st, 3));
        cJSON *g;

        cJSON_AddItemToArray(tasks, cJSON_CreateString((const char *)sqlite3_column_text(st, 0)));
        cpus += sqlite3_column_double(st, 1);
        memory_mb += sqlite3_column_int64(st, 2);
        cJSON_ArrayForEach(g, held) {
            cJSON_AddItemToArray(gpus, cJSON_Duplicate(g, 0));
        }
        cJSON_Delete(held);
    }
    sqlite3_reset(st);
    cJSON_AddNumberToObject(alloc, "cpus", cpus);
    cJSON_AddNumberToObject(alloc, "memory_mb", (double)memory_mb);
    cJSON_AddItemToObject(alloc, "gpus", gpus);
    cJSON_AddItemToObject(node, "tasks", tasks);
    return rc == SQLITE_DONE ? 0 : conn_fail(c, "node allocation");
}

static int node_from_row(struct store *store, struct conn *c, sqlite3_stmt *st, int64_t now,
                         int64_t timeout, cJSON **ret_node)
{
    cJSON *node = cJSON_CreateObject();
    const char *state = (const char *)sqlite3_column_text(st, 8);
    int64_t heartbeat = sqlite3_column_int64(st, 10);
    int64_t seen = store_seen_get(store, (const char *)sqlite3_column_text(st, 0));
    int rc;

    /* A heartbeat not yet written (store_seen_record) is the latest. */
    if (seen > heartbeat && heartbeat > 0)
        heartbeat = seen;

    col_add_string(st, 0, node, "name");
    col_add_string(st, 1, node, "pool");
    col_add_string(st, 2, node, "agent_url");
    cJSON_AddNumberToObject(node, "cpus", sqlite3_column_double(st, 3));
    cJSON_AddNumberToObject(node, "memory_mb", (double)sqlite3_column_int64(st, 4));
    col_add_json(st, 5, node, "gpus");
    col_add_json(st, 6, node, "labels");
    col_add_json(st, 7, node, "features");
    cJSON_AddStringToObject(node, "state", node_state_now(state, heartbeat, now, timeout));
    col_add_time(st, 9, node, "registered_at");
    json_add_time(node, "last_heartbeat", heartbeat);
    {
        cJSON *ports = cJSON_AddObjectToObject(node, "ports");

        cJSON_AddNumberToObject(ports, "min", sqlite3_column_int(st, 11));
        cJSON_AddNumberToObject(ports, "max", sqlite3_column_int(st, 12));
    }
    rc = add_allocation(c, (const char *)sqlite3_column_text(st, 0), node);
    if (rc < 0) {
        cJSON_Delete(node);
        return rc;
    }
    *ret_node = node;
    return 0;
}

int store_node_get(struct store *store, const char *name, int64_t now_ms, int64_t node_timeout_ms,
                   cJSON **ret_node)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    st = conn_stmt(c, "SELECT " NODE_COLUMNS " FROM nodes WHERE name = ?");
    if (st == NULL) {
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    bind_text(st, 1, name);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = node_from_row(store, c, st, now_ms, node_timeout_ms, ret_node);
    else
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "get node");
    sqlite3_reset(st);
    conn_end_read(c);
    return rc;
}

int store_node_list(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                    const struct store_page *page, cJSON **ret_list)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *list;
    cJSON *items;
    int n = 0;
    int rc;

    if (c == NULL || conn_begin_read(c) < 0)
        return ERR_INTERNAL;
    st = conn_stmt(c, "SELECT " NODE_COLUMNS " FROM nodes WHERE name > ? ORDER BY name LIMIT ?");
    if (st == NULL) {
        conn_end_read(c);
        return ERR_INTERNAL;
    }
    bind_text(st, 1, page->after ? page->after : "");
    sqlite3_bind_int(st, 2, page->limit + 1);
    list = list_new(&items);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *node;

        if (n++ == page->limit) {
            list_set_cursor(list,
                            json_get_string(cJSON_GetArrayItem(items, page->limit - 1), "name"));
            rc = SQLITE_DONE;
            break;
        }
        if (node_from_row(store, c, st, now_ms, node_timeout_ms, &node) < 0) {
            rc = SQLITE_ERROR;
            break;
        }
        cJSON_AddItemToArray(items, node);
    }
    sqlite3_reset(st);
    conn_end_read(c);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        return conn_fail(c, "list nodes");
    }
    *ret_list = list;
    return 0;
}

/* ---- heartbeat, drain, delete ---- */

struct heartbeat {
    const char *name;
    const cJSON *reported;
    int64_t now;
    int64_t grace_ms;
    cJSON *stop;
    bool dry; /* only look: is there more to write than the time? */
    bool stale; /* dry: the node was silent past grace_ms */
    bool draining; /* dry: its stored state */
};

static bool was_reported(const struct heartbeat *h, const char *id)
{
    const cJSON *r;

    cJSON_ArrayForEach(r, h->reported) {
        const char *rid = json_get_string(r, "id");

        if (rid && strcmp(rid, id) == 0)
            return true;
    }
    return false;
}

/*
 * Runs st (the node's tasks: id, then run_seq when seqs is wanted; bound
 * here to the node and the grace cut-off) and keeps, up to 64, those the
 * agent did not report.
 */
static int unreported(sqlite3_stmt *st, const struct heartbeat *h, char ids[64][256],
                      int64_t seqs[64])
{
    int n = 0;

    bind_text(st, 1, h->name);
    sqlite3_bind_int64(st, 2, h->now - h->grace_ms);
    while (sqlite3_step(st) == SQLITE_ROW && n < 64) {
        const char *id = (const char *)sqlite3_column_text(st, 0);

        if (!was_reported(h, id)) {
            snprintf(ids[n], 256, "%s", id);
            if (seqs)
                seqs[n] = sqlite3_column_int64(st, 1);
            n++;
        }
    }
    sqlite3_reset(st);
    return n;
}

/*
 * The node's heartbeat rules. Dry (on a read connection): returns 1 when
 * a write is needed (the node is down, or tasks are lost or let go), else
 * 0, filling the stop list either way. Not dry (the writer): applies them.
 */
static int heartbeat_rules(struct conn *c, struct heartbeat *h)
{
    sqlite3_stmt *st;
    const cJSON *task;
    char ids[64][256];
    int64_t seqs[64];
    bool may_lose = true; /* some task could be lost or let go: look at them */
    int n;
    int i;
    int rc;

    if (h->dry) {
        /* One statement for the common case: the node, and whether any
         * task could be lost or let go at all. */
        st = conn_stmt(c,
                       "SELECT state = 'down', last_heartbeat, state = 'draining', "
                       "EXISTS (SELECT 1 FROM tasks WHERE node = ?1 AND " LIVE_TASK
                       " AND pushed = 1 AND assigned_at < ?2) OR "
                       "EXISTS (SELECT 1 FROM tasks WHERE node = ?1 AND held = 1 AND NOT " LIVE_TASK
                       " AND ended_at < ?2) FROM nodes WHERE name = ?1");
        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, h->name);
        sqlite3_bind_int64(st, 2, h->now - h->grace_ms);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            rc = sqlite3_column_int(st, 0);
            h->stale = sqlite3_column_int64(st, 1) < h->now - h->grace_ms;
            h->draining = sqlite3_column_int(st, 2);
            may_lose = sqlite3_column_int(st, 3);
        } else {
            rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "heartbeat");
        }
        sqlite3_reset(st);
        if (rc != 0)
            return rc;
    } else {
        st = conn_stmt(c, "UPDATE nodes SET last_heartbeat = ?, "
                          "state = CASE state WHEN 'down' THEN 'ready' ELSE state END "
                          "WHERE name = ?");
        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, h->now);
        bind_text(st, 2, h->name);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
        if (sqlite3_changes(c->db) == 0)
            return ERR_NOT_FOUND;
    }

    /* The server's view wins: a reported task that is not live here, by
     * the store's record, must stop. */
    cJSON_ArrayForEach(task, h->reported) {
        const char *id = json_get_string(task, "id");
        bool wanted = false;

        st = conn_stmt(c, "SELECT 1 FROM tasks WHERE id = ? AND node = ? AND " LIVE_TASK);
        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, id);
        bind_text(st, 2, h->name);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            wanted = true;
        else if (rc != SQLITE_DONE)
            rc = conn_fail(c, "heartbeat");
        sqlite3_reset(st);
        if (rc < 0)
            return rc;
        if (!wanted)
            cJSON_AddItemToArray(h->stop, cJSON_CreateString(id));
    }

    if (!may_lose)
        return 0;

    /* And the other way: a task the agent accepted a while ago but no
     * longer reports is gone (its process died with an earlier agent). */
    st = conn_stmt(c, "SELECT id, run_seq FROM tasks WHERE node = ? AND " LIVE_TASK
                      " AND pushed = 1 AND assigned_at < ?");
    if (st == NULL)
        return ERR_INTERNAL;
    n = unreported(st, h, ids, seqs);
    if (h->dry && n > 0)
        return 1;
    for (i = 0; i < n; i++) {
        st = conn_stmt(c, "UPDATE tasks SET status = 'lost', ended_at = ?, "
                          "message = 'the agent no longer has it' WHERE id = ?");
        if (st == NULL)
            return ERR_INTERNAL;
        sqlite3_bind_int64(st, 1, h->now);
        bind_text(st, 2, ids[i]);
        if ((rc = stmt_done(c, st)) < 0 || (rc = run_evaluate(c, seqs[i], h->now)) < 0)
            return rc;
    }

    /* A stopped task the agent no longer reports, a while after it ended,
     * holds nothing any more (its final report may have been lost). */
    st = conn_stmt(c, "SELECT id FROM tasks WHERE node = ? AND held = 1 AND NOT " LIVE_TASK
                      " AND ended_at < ?");
    if (st == NULL)
        return ERR_INTERNAL;
    n = unreported(st, h, ids, NULL);
    if (h->dry)
        return n > 0;
    for (i = 0; i < n; i++) {
        st = conn_stmt(c, "UPDATE tasks SET held = 0 WHERE id = ?");
        if (st == NULL)
            return ERR_INTERNAL;
        bind_text(st, 1, ids[i]);
        if ((rc = stmt_done(c, st)) < 0)
            return rc;
    }
    return 0;
}

static int heartbeat_fn(struct conn *c, void *arg)
{
    return heartbeat_rules(c, arg);
}

/*
 * Most heartbeats change nothing but the node's time: a look on this
 * thread's read connection decides, and the time is kept in memory for
 * the writer to batch. The rest go through the writer.
 */
int store_node_heartbeat(struct store *store, const char *name, const cJSON *reported,
                         int64_t now_ms, int64_t grace_ms, bool may_wait, cJSON **ret_stop,
                         bool *ret_changed, const char **ret_state)
{
    struct heartbeat h = {
        name, reported, now_ms, grace_ms, cJSON_CreateArray(), true, false, false
    };
    struct conn *c = store_reader(store);
    int rc = ERR_INTERNAL;

    /* No explicit read transaction: the common case is one statement, and
     * the rest only decide whether to take the writer's path. */
    if (c != NULL)
        rc = heartbeat_rules(c, &h);
    if (rc == 0) {
        /* Silent past its timeout by the store's record (and the memory's):
         * it reads "down" until now, so placement wants to hear of it. */
        *ret_changed = h.stale && store_seen_get(store, name) < now_ms - grace_ms;
        store_seen_record(store, name, now_ms);
    } else if (rc == 1 && !may_wait) {
        cJSON_Delete(h.stop);
        return STORE_WOULD_WAIT;
    } else if (rc == 1) {
        cJSON_Delete(h.stop);
        h.stop = cJSON_CreateArray();
        h.dry = false;
        rc = store_write(store, heartbeat_fn, &h);
        *ret_changed = true;
    }
    if (rc < 0) {
        cJSON_Delete(h.stop);
        return rc;
    }
    *ret_stop = h.stop;
    /* A down node that heartbeats is ready again; drain is kept. */
    *ret_state = h.draining ? "draining" : "ready";
    return 0;
}

struct drain {
    const char *name;
    bool drain;
};

static int drain_fn(struct conn *c, void *arg)
{
    struct drain *d = arg;
    sqlite3_stmt *st = conn_stmt(c, "UPDATE nodes SET state = CASE "
                                    "WHEN ?1 THEN 'draining' "
                                    "WHEN state = 'draining' THEN 'ready' ELSE state END "
                                    "WHERE name = ?2");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    sqlite3_bind_int(st, 1, d->drain);
    bind_text(st, 2, d->name);
    rc = stmt_done(c, st);
    if (rc == 0 && sqlite3_changes(c->db) == 0)
        rc = ERR_NOT_FOUND;
    return rc;
}

int store_node_drain(struct store *store, const char *name, bool drain)
{
    struct drain d = { name, drain };

    return store_write(store, drain_fn, &d);
}

static int node_delete_fn(struct conn *c, void *arg)
{
    const char *name = arg;
    sqlite3_stmt *st = conn_stmt(c, "SELECT count(*) FROM tasks WHERE node = ? AND " LIVE_TASK);
    int64_t live;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, name);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return conn_fail(c, "delete node");
    }
    live = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    st = conn_stmt(c, "DELETE FROM nodes WHERE name = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, name);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    if (sqlite3_changes(c->db) == 0)
        return ERR_NOT_FOUND;
    return live > 0 ? ERR_CONFLICT : 0;
}

int store_node_delete(struct store *store, const char *name)
{
    return store_write(store, node_delete_fn, (void *)name);
}

/* ---- pools ---- */

int store_pool_nodes(struct store *store, const char *pool, const cJSON *features, int64_t now_ms,
                     int64_t node_timeout_ms, int64_t limit, int64_t *ret_suitable)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    char *wanted = features ? json_print(features) : xstrdup("[]");
    int rc;

    /* On the pool's index, stopping at limit (this runs for every
     * submission): ready and heard from in time, with every wanted
     * feature. A node reads "down" past its timeout as in
     * node_state_now(). */
    st = c == NULL ? NULL
                   : conn_stmt(c, "SELECT count(*) FROM (SELECT 1 FROM nodes WHERE pool = ?1 "
                                  "AND state = 'ready' AND last_heartbeat >= ?2 AND NOT EXISTS ("
                                  "SELECT 1 FROM json_each(?3) w WHERE w.value NOT IN "
                                  "(SELECT value FROM json_each(nodes.features))) LIMIT ?4)");
    if (st == NULL) {
        free(wanted);
        return ERR_INTERNAL;
    }
    bind_text(st, 1, pool);
    sqlite3_bind_int64(st, 2, now_ms - node_timeout_ms);
    bind_text(st, 3, wanted);
    sqlite3_bind_int64(st, 4, limit);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_suitable = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = conn_fail(c, "pool nodes");
    }
    sqlite3_reset(st);
    free(wanted);
    return rc;
}

int store_compute(struct store *store, int64_t now_ms, int64_t node_timeout_ms, cJSON **ret_list)
{
    cJSON *nodes;
    cJSON *node;
    cJSON *list;
    cJSON *items;
    int rc;

    /* Pools are few and small; folding the node list keeps one definition
     * of state and allocation. */
    struct store_page all = { NULL, INT32_MAX - 1 };

    if ((rc = store_node_list(store, now_ms, node_timeout_ms, &all, &nodes)) < 0)
        return rc;
    list = list_new(&items);
    cJSON_ArrayForEach(node, json_get(nodes, "items")) {
        const char *pool = json_get_string(node, "pool");
        const cJSON *alloc = json_get(node, "allocated");
        bool ready = strcmp(json_get_string(node, "state"), "ready") == 0;
        cJSON *p = NULL;
        cJSON *it;
        double gpus = cJSON_GetArraySize(json_get(node, "gpus"));
        double gpus_used = cJSON_GetArraySize(json_get(alloc, "gpus"));
        double cpus = json_get(node, "cpus")->valuedouble;
        double mem = json_get(node, "memory_mb")->valuedouble;

        cJSON_ArrayForEach(it, items) {
            if (strcmp(json_get_string(it, "name"), pool) == 0)
                p = it;
        }
        if (p == NULL) {
            p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "name", pool);
            cJSON_AddNumberToObject(p, "nodes", 0);
            cJSON_AddNumberToObject(p, "ready_nodes", 0);
            cJSON_AddNumberToObject(p, "cpus", 0);
            cJSON_AddNumberToObject(p, "cpus_free", 0);
            cJSON_AddNumberToObject(p, "memory_mb", 0);
            cJSON_AddNumberToObject(p, "memory_mb_free", 0);
            cJSON_AddNumberToObject(p, "gpus", 0);
            cJSON_AddNumberToObject(p, "gpus_free", 0);
            cJSON_AddItemToArray(items, p);
        }
#define BUMP(key, v) cJSON_SetNumberValue(json_get(p, key), json_get(p, key)->valuedouble + (v))
        BUMP("nodes", 1);
        BUMP("cpus", cpus);
        BUMP("memory_mb", mem);
        BUMP("gpus", gpus);
        if (ready) {
            /* Only a ready node offers free capacity to new runs. */
            BUMP("ready_nodes", 1);
            BUMP("cpus_free", cpus - json_get(alloc, "cpus")->valuedouble);
            BUMP("memory_mb_free", mem - json_get(alloc, "memory_mb")->valuedouble);
            BUMP("gpus_free", gpus - gpus_used);
        }
#undef BUMP
    }
    cJSON_Delete(nodes);
    *ret_list = list;
    return 0;
}

int store_node_counts(struct store *store, int64_t now_ms, int64_t node_timeout_ms,
                      cJSON **ret_counts)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *counts;
    int rc;

    if (c == NULL || (st = conn_stmt(c, "SELECT state, last_heartbeat FROM nodes")) == NULL)
        return ERR_INTERNAL;
    counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "ready", 0);
    cJSON_AddNumberToObject(counts, "draining", 0);
    cJSON_AddNumberToObject(counts, "down", 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = node_state_now((const char *)sqlite3_column_text(st, 0),
                                           sqlite3_column_int64(st, 1), now_ms, node_timeout_ms);
        cJSON *n = json_get(counts, state);

        if (n)
            cJSON_SetNumberValue(n, n->valuedouble + 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(counts);
        return conn_fail(c, "count nodes");
    }
    *ret_counts = counts;
    return 0;
}
