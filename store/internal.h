/*
 * internal.h - what the files of store/ share: connections with their
 * statement caches, the write path and row helpers. Not for other modules.
 */
#ifndef TRAINYARD_STORE_INTERNAL_H
#define TRAINYARD_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/backend.h"
#include "store/store.h"

#define CONN_MAX_STMTS 96

/* One SQLite connection and the statements prepared on it, used by one
 * thread at a time. Statements are cached by the address of their SQL text
 * (always a string literal), so each is prepared once per connection. */
struct conn {
    sqlite3 *db;
    int n_stmts;
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } stmts[CONN_MAX_STMTS];
    struct conn *next; /* the store's list of all connections */
};

/* A write: runs on the writer thread inside the group transaction. */
typedef int (*store_write_fn)(struct conn *c, void *arg);

/* Runs fn(c, arg) on the writer thread and waits until it is committed (0)
 * or rolled back (its error, or ERR_INTERNAL when the commit failed). */
int store_write(struct store *store, store_write_fn fn, void *arg);
/* Queues fn(c, copy) and returns at once, copy being a copy of the size
 * bytes at arg (so outputs go through pointers in it): 0, then
 * done(done_arg, rc) is called on the writer thread once the batch is
 * committed or rolled back (rc as store_write's). ERR_UNAVAILABLE when the
 * store is stopping, and done is not called. */
int store_write_async(struct store *store, store_write_fn fn, const void *arg, size_t size,
                      store_done_fn done, void *done_arg);
/* The calling thread's read connection, opened on first use. */
struct conn *store_reader(struct store *store);
/* BEGIN (a read snapshot) and its end; both log and return ERR_INTERNAL on failure. */
int conn_begin_read(struct conn *c);
void conn_end_read(struct conn *c);
/* The cached, reset statement for sql (a string literal); NULL with the
 * error logged if it does not prepare. */
sqlite3_stmt *conn_stmt(struct conn *c, const char *sql);
/* Logs the connection's last error with what; returns ERR_INTERNAL. */
int conn_fail(struct conn *c, const char *what);
/* Executes SQL with no result rows; 0 or ERR_INTERNAL (logged). */
int conn_exec(struct conn *c, const char *sql);
/* Steps a statement that returns no rows and resets it; 0 or ERR_INTERNAL,
 * or ERR_CONFLICT on a constraint violation. */
int stmt_done(struct conn *c, sqlite3_stmt *st);

/* Bind helpers: NULL text binds SQL NULL. Text is copied (TRANSIENT). */
void bind_text(sqlite3_stmt *st, int i, const char *s);
/* Column text copied into a cJSON object under key (null when NULL). */
void col_add_string(sqlite3_stmt *st, int col, cJSON *obj, const char *key);
/* Column of milliseconds added as an RFC 3339 string (null when NULL/0). */
void col_add_time(sqlite3_stmt *st, int col, cJSON *obj, const char *key);
/* Column holding JSON text added as a parsed subtree. */
void col_add_json(sqlite3_stmt *st, int col, cJSON *obj, const char *key);
/* A new {"items": [], "next_cursor": null} with *ret_items set to the array. */
cJSON *list_new(cJSON **ret_items);
/* Sets list's next_cursor to cursor. */
void list_set_cursor(cJSON *list, const char *cursor);

/* Heartbeats that change nothing but the time are kept in memory and
 * written by the writer thread within a quarter second (and before it
 * stops). record/get: any thread; flush: inside a write. */
void store_seen_record(struct store *store, const char *name, int64_t ms);
/* The last heartbeat recorded in memory for name, or 0. */
int64_t store_seen_get(struct store *store, const char *name);
int store_seen_flush(struct store *store, struct conn *c);

/* Node state as clients see it: stored state, or "down" when silent. */
const char *node_state_now(const char *stored, int64_t last_heartbeat, int64_t now_ms,
                           int64_t timeout_ms);

/* The quotas in force (store_set_quotas). */
const struct store_quotas *store_quotas(const struct store *store);

/* ---- run rules, shared by the write paths (tasks.c) ---- */

/* Marks every unfinished task of a run's attempt killed; tasks an agent
 * may have are flagged for the scheduler to stop. */
int tasks_kill_live(struct conn *c, int64_t run_seq, int64_t attempt, int64_t now);
/* Applies the run rules after its tasks changed: running, completed, gang
 * failure with retry or failure. */
int run_evaluate(struct conn *c, int64_t run_seq, int64_t now);
/* A run's stored status; one that is no status (written behind the
 * server's back) reads as failed. */
enum run_status run_status_of(const char *text);
/* Appends a status event (with error, may be NULL) to a run's history. */
int run_status_event(struct conn *c, int64_t run_seq, int64_t now, enum run_status status,
                     const char *error);
/* Stores a queued run, as store_run_create(), inside a write. */
int run_insert(struct conn *c, const struct store_new_run *run);
/* Cancels a run that has not ended (the caller checked): status canceled
 * with reason (NULL for none), its attempt's live tasks killed, an event. */
int run_cancel_seq(struct conn *c, int64_t seq, int64_t attempt, int64_t now, const char *reason);
/* Appends an event to a run's history. */
int run_event(struct conn *c, int64_t run_seq, int64_t now, const char *type, const cJSON *data);
#endif
