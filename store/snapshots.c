/* snapshots.c - metadata of content-addressed source snapshots. */
#include <stdio.h>

#include "common/err.h"
#include "store/internal.h"
#include "common/banned.h"

struct snapshot_put {
    const char *id;
    int64_t size;
    const char *owner;
    int64_t now;
    char *ret_owner;
    size_t size_owner;
};

static int snapshot_put_fn(struct conn *c, void *arg)
{
    struct snapshot_put *p = arg;
    sqlite3_stmt *st = conn_stmt(c, "INSERT OR IGNORE INTO snapshots(id, size, created_at, owner) "
                                    "VALUES (?, ?, ?, ?)");
    const char *owner;
    int rc;

    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, p->id);
    sqlite3_bind_int64(st, 2, p->size);
    sqlite3_bind_int64(st, 3, p->now);
    bind_text(st, 4, p->owner);
    if ((rc = stmt_done(c, st)) < 0)
        return rc;
    st = conn_stmt(c, "SELECT owner FROM snapshots WHERE id = ?");
    if (st == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, p->id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return conn_fail(c, "read snapshot owner");
    }
    owner = (const char *)sqlite3_column_text(st, 0);
    snprintf(p->ret_owner, p->size_owner, "%s", owner ? owner : "");
    sqlite3_reset(st);
    return 0;
}

int store_snapshot_put(struct store *store, const char *id, int64_t size, const char *owner,
                       int64_t now_ms, char *ret_owner, size_t size_owner)
{
    struct snapshot_put p = { id, size, owner, now_ms, ret_owner, size_owner };

    return store_write(store, snapshot_put_fn, &p);
}

int store_snapshot_get(struct store *store, const char *id, int64_t *ret_size)
{
    struct conn *c = store_reader(store);
    sqlite3_stmt *st;
    int rc;

    if (c == NULL || (st = conn_stmt(c, "SELECT size FROM snapshots WHERE id = ?")) == NULL)
        return ERR_INTERNAL;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (ret_size)
            *ret_size = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? ERR_NOT_FOUND : conn_fail(c, "get snapshot");
    }
    sqlite3_reset(st);
    return rc;
}
