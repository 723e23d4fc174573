/* tokens.c - API tokens: only the SHA-256 of each secret is stored. */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "store/internal.h"
#include "common/banned.h"

struct token_create {
    const char *id, *name, *role, *node, *hash;
    int64_t now;
    bool claim; /* the node must be free (store_token_claim) */
};

/*
 * Whether node belongs to someone: a node of that name exists (registered
 * by an admin, or by another token, even one since revoked) or a token
 * other than except_id is bound to that name. ret_taken is written on
 * success.
 */
static int node_taken(struct conn *c, const char *node, const char *except_id, bool *ret_taken)
{
    sqlite3_stmt *st = conn_stmt(c, "SELECT EXISTS (SELECT 1 FROM nodes WHERE name = ?1) OR "
                                    "EXISTS (SELECT 1 FROM tokens WHERE node = ?1 AND id != ?2)");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, node);
    bind_text(st, 2, except_id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return conn_fail(c, "token node check");
    }
    *ret_taken = sqlite3_column_int(st, 0) != 0;
    sqlite3_reset(st);
    return 0;
}

static int token_create_fn(struct conn *c, void *arg)
{
    struct token_create *t = arg;
    sqlite3_stmt *st;

    if (t->claim) {
        bool taken;
        int rc = node_taken(c, t->node, t->id, &taken);

        if (rc < 0)
            return rc;
        if (taken)
            return ERR_PERMISSION;
    }
    st = conn_stmt(c, "INSERT INTO tokens(id, name, role, node, hash, created_at) "
                      "VALUES (?, ?, ?, ?, ?, ?)");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, t->id);
    bind_text(st, 2, t->name);
    bind_text(st, 3, t->role);
    bind_text(st, 4, t->node);
    bind_text(st, 5, t->hash);
    sqlite3_bind_int64(st, 6, t->now);
    return stmt_done(c, st);
}

int store_token_create(struct store *store, const char *id, const char *name, const char *role,
                       const char *node, const char *hash, int64_t now_ms)
{
    struct token_create t = { id, name, role, node, hash, now_ms, false };

    return store_write(store, token_create_fn, &t);
}

int store_token_claim(struct store *store, const char *id, const char *name, const char *node,
                      const char *hash, int64_t now_ms)
{
    struct token_create t = { id, name, "agent", node, hash, now_ms, true };

    assert(node != NULL);
    return store_write(store, token_create_fn, &t);
}

int store_token_lookup(struct store *store, const char *hash, struct store_token *ret_token)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    int rc;

    if (c == NULL ||
        (st = conn_stmt(c, "SELECT id, name, role, node FROM tokens WHERE hash = ?")) == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, hash);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *node = (const char *)sqlite3_column_text(st, 3);

        snprintf(ret_token->id, sizeof(ret_token->id), "%s", sqlite3_column_text(st, 0));
        snprintf(ret_token->name, sizeof(ret_token->name), "%s", sqlite3_column_text(st, 1));
        snprintf(ret_token->role, sizeof(ret_token->role), "%s", sqlite3_column_text(st, 2));
        snprintf(ret_token->node, sizeof(ret_token->node), "%s", node ? node : "");
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ERR_NOT_FOUND;
    } else {
        rc = conn_fail(c, "token lookup");
    }
    sqlite3_reset(st);
    return rc;
}

struct token_bind {
    const char *id, *node;
};

static int token_bind_fn(struct conn *c, void *arg)
{
    struct token_bind *b = arg;
    sqlite3_stmt *st = conn_stmt(c, "SELECT node FROM tokens WHERE id = ?");
    const char *node;
    bool taken;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, b->id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "token bind");
    }
    node = (const char *)sqlite3_column_text(st, 0);
    if (node) {
        rc = strcmp(node, b->node) == 0 ? 0 : ERR_CONFLICT;
        sqlite3_reset(st);
        return rc;
    }
    sqlite3_reset(st);
    /* An unbound token claims only a name nobody has: a node that belongs
     * to someone else would be taken over by registering as it. */
    rc = node_taken(c, b->node, b->id, &taken);
    if (rc < 0)
        return rc;
    if (taken)
        return ERR_PERMISSION;
    st = conn_stmt(c, "UPDATE tokens SET node = ? WHERE id = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, b->node);
    bind_text(st, 2, b->id);
    return stmt_done(c, st);
}

int store_token_bind(struct store *store, const char *id, const char *node)
{
    struct token_bind b = { id, node };

    return store_write(store, token_bind_fn, &b);
}

int store_token_count(struct store *store, int64_t *ret_count)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;

    if (c == NULL || (st = conn_stmt(c, "SELECT count(*) FROM tokens")) == NULL)
        return ERR_INTERNAL;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return conn_fail(c, "count tokens");
    }
    *ret_count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

static cJSON *token_row(sqlite3_stmt *st)
{
    cJSON *t = cJSON_CreateObject();

    col_add_string(st, 0, t, "id");
    col_add_string(st, 1, t, "name");
    col_add_string(st, 2, t, "role");
    col_add_string(st, 3, t, "node");
    col_add_time(st, 4, t, "created_at");
    return t;
}

int store_token_list(struct store *store, const struct store_page *page, cJSON **ret_list)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    cJSON *items;
    cJSON *list;
    int n = 0;
    int rc;

    if (c == NULL || (st = conn_stmt(c, "SELECT id, name, role, node, created_at FROM tokens "
                                        "WHERE id > ? ORDER BY id LIMIT ?")) == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, page->after ? page->after : "");
    sqlite3_bind_int(st, 2, page->limit + 1);
    list = list_new(&items);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == page->limit) {
            list_set_cursor(list,
                            json_get_string(cJSON_GetArrayItem(items, page->limit - 1), "id"));
            rc = SQLITE_DONE;
            break;
        }
        cJSON_AddItemToArray(items, token_row(st));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(list);
        return conn_fail(c, "list tokens");
    }
    *ret_list = list;
    return 0;
}

int store_token_get(struct store *store, const char *id, cJSON **ret_token)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    int rc;

    if (c == NULL || (st = conn_stmt(c, "SELECT id, name, role, node, created_at FROM tokens "
                                        "WHERE id = ?")) == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_token = token_row(st);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "get token");
    }
    sqlite3_reset(st);
    return rc;
}

static int token_delete_fn(struct conn *c, void *arg)
{
    /* The last admin token stays: without one nobody could make tokens,
     * drain nodes or cancel others' runs until a restart with
     * --reset-admin-token. Checked in the write, so two concurrent
     * deletes cannot both pass. */
    sqlite3_stmt *st = conn_stmt(c, "SELECT role = 'admin' AND (SELECT count(*) FROM tokens "
                                    "WHERE role = 'admin') = 1 FROM tokens WHERE id = ?");
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, arg);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = sqlite3_column_int(st, 0) ? ERR_CONFLICT : 0;
    else
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "delete token");
    sqlite3_reset(st);
    if (rc < 0)
        return rc;
    st = conn_stmt(c, "DELETE FROM tokens WHERE id = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, arg);
    rc = stmt_done(c, st);
    if (rc == 0 && sqlite3_changes(c->db) == 0)
        rc = ERR_NOT_FOUND;
    return rc;
}

int store_token_delete(struct store *store, const char *id)
{
    return store_write(store, token_delete_fn, (void *)id);
}
