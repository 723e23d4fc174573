/*
 * api.h - the REST API of the control plane: one handler per endpoint,
 * request validation, and the one place where ERR_* codes become HTTP
 * statuses and error bodies.
 *
 * server/ owns HTTP (libmicrohttpd): it matches the route, reads the body
 * and calls a handler here with a struct api_request; the handler fills a
 * struct api_response. Handlers run on the HTTP server's threads, several at
 * once; everything they touch (the store, the metrics registry) is thread
 * safe. Nothing here includes microhttpd.h.
 */
#ifndef TRAINYARD_API_H
#define TRAINYARD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct store;
struct scheduler;

/* Long-lived state shared by all handlers; owned by server/. */
struct api_ctx {
    struct store *store;
    struct scheduler *sched; /* kicked when a write changes what it should do */
    const char *data_dir;
    int64_t node_timeout_ms;
    int64_t max_snapshot_bytes;
    int64_t max_snapshot_unpacked_bytes; /* checked while the upload is read */
    int64_t max_snapshot_ratio; /* unpacked bytes per uploaded byte; 0: none */
    int64_t max_artifact_bytes;
    int shutting_down; /* atomic: streams end at the next chance */
    int max_followers; /* log and event streams open at once, in all */
    int max_followers_per_run; /* and on one run */
    const char *version;
};

enum api_role {
    API_ROLE_ADMIN = 1 << 0,
    API_ROLE_USER = 1 << 1,
    API_ROLE_VIEWER = 1 << 2,
    API_ROLE_AGENT = 1 << 3,
    /* May only make agent tokens, each bound to a node name nobody has:
     * the credential agents join a cluster with (server --join-token-file). */
    API_ROLE_JOIN = 1 << 4,
};

#define API_ROLES_READ (API_ROLE_ADMIN | API_ROLE_USER | API_ROLE_VIEWER)
#define API_ROLES_WRITE (API_ROLE_ADMIN | API_ROLE_USER)
#define API_ROLES_NONE 0 /* no authentication at all (/healthz) */

/* Who made the request (after api_authenticate). */
struct api_principal {
    enum api_role role;
    char token_id[32];
    char name[129]; /* the token's name: the owner of what it submits */
    char node[129]; /* agent tokens: the node it is bound to, or "" */
};

#define API_MAX_PARAMS 4

struct api_request;
struct api_response;

/* Fills resp for a deferred request (api_request.defer), on an HTTP
 * thread; resp is NULL when the client went away first: only free arg. */
typedef void (*api_finish_fn)(struct api_ctx *ctx, struct api_request *req,
                              struct api_response *resp, void *arg);

struct api_request {
    const char *method;
    const char *path;
    const char *params[API_MAX_PARAMS]; /* the {x} segments of the route, in order */
    int n_params;
    /* Query-string lookup provided by server/; NULL when the key is absent. */
    const char *(*query)(void *conn, const char *key);
    void *conn;
    const char *body; /* JSON routes: the body, NUL-terminated */
    size_t body_len;
    int body_fd; /* upload routes: the spooled body, read from 0 */
    const char *body_path; /* and its temporary file, which the handler may rename */
    bool body_kept; /* set by a handler that renamed body_path away */
    int64_t body_size;
    struct api_principal principal;
    /*
     * An answer that waits on a write without holding an HTTP thread:
     * defer(req, finish, arg) parks the connection (false when the server
     * is stopping: answer at once instead). The handler then starts the
     * write and returns; whatever completes it calls resume(req), from any
     * thread, once, as its last touch of req; finish then runs exactly
     * once. Both set by server/.
     */
    bool (*defer)(struct api_request *req, api_finish_fn finish, void *arg);
    void (*resume)(struct api_request *req);
    /*
     * A quick route's handler (it runs on an HTTP thread) that finds it
     * must block: true, and the handler returns at once, leaving resp
     * alone; it runs again, from the start, with may_block set (on a
     * worker thread, or here when the server is stopping). false only when
     * may_block is set already. Set by server/.
     */
    bool (*offload)(struct api_request *req);
    bool may_block; /* the handler runs where it may wait */
};

/*
 * A response body produced over time (log follow, server-sent events).
 * server/ calls next() whenever the client can take more: it appends what
 * is new to out (possibly nothing) and sets *ret_done at the end. When
 * next() gave nothing, server/ waits a moment before calling again. Then
 * free(). Called on one HTTP thread at a time.
 */
struct api_stream {
    int (*next)(struct api_stream *stream, struct buf *out, bool *ret_done);
    void (*free)(struct api_stream *stream);
};

struct api_response {
    struct api_stream *stream; /* when set, the body comes from it */
    int status;
    const char *content_type; /* static string */
    struct buf body;
    int fd; /* >= 0: send fd_size bytes of this file instead of body; server closes it */
    int64_t fd_size;
    const char *location;
};

typedef void (*api_handler)(struct api_ctx *ctx, struct api_request *req,
                            struct api_response *resp);

/* Prepares resp for a handler (status 500 until one is set) / frees it. */
void api_response_init(struct api_response *resp);
void api_response_release(struct api_response *resp);

/* Sets resp to 507 insufficient_storage, naming ctx's data directory:
 * for a write that failed with ERR_NO_SPACE (a full disk or quota). */
void api_error_no_space(const struct api_ctx *ctx, struct api_response *resp);
/*
 * Sets resp to the error for code (an ERR_*): the HTTP status and
 * {"error": {"code", "message", "field"?}}. field may be NULL.
 */
void api_error(struct api_response *resp, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The HTTP status for an ERR_* code. */
int api_status_for(int code);

/*
 * Checks the Authorization header value (may be NULL) against the stored
 * tokens and the route's roles. Returns true and fills req->principal, or
 * false with resp set to 401 or 403.
 */
bool api_authenticate(struct api_ctx *ctx, const char *authorization, unsigned roles,
                      struct api_request *req, struct api_response *resp);

/* Tokens were deleted or bound: forget what the lookup cache holds. Any
 * thread. */
void api_tokens_changed(void);

/* Creates the admin token on first start and writes <data>/admin.token.
 * Returns 0 or ERR_INTERNAL (logged). Main thread, before serving. */
int api_bootstrap_admin(struct api_ctx *ctx);
/* Recovery when every admin secret is lost: adds a new admin token (named
 * "admin"; the others stay) and writes its secret to <data>/admin.token
 * (0600), whose path goes to ret_path (size bytes). Returns 0 or
 * ERR_INTERNAL (logged). Main thread; a running server may share the
 * database. */
int api_reset_admin_token(struct api_ctx *ctx, char *ret_path, size_t size);
/*
 * --join-token-file: keeps a join token's secret in path (mode 0600). A
 * file that holds the secret of a join token is kept; otherwise a new join
 * token (named "join") is made and its secret written there, replacing the
 * file. Returns 0 or ERR_INTERNAL (logged). Main thread, at start.
 */
int api_keep_join_token(struct api_ctx *ctx, const char *path);

/* ---- handlers (one file per resource) ---- */

/* service.c */
void api_healthz(struct api_ctx *, struct api_request *, struct api_response *);
void api_prometheus(struct api_ctx *, struct api_request *, struct api_response *);
void api_scheduler_get(struct api_ctx *, struct api_request *, struct api_response *);
void api_openapi(struct api_ctx *, struct api_request *, struct api_response *);
/* runs.c */
void api_runs_create(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_list(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_get(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_cancel(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_rerun(struct api_ctx *, struct api_request *, struct api_response *);
void api_experiments_list(struct api_ctx *, struct api_request *, struct api_response *);
/* Sweeps (api/sweeps.c). */
void api_sweeps_create(struct api_ctx *, struct api_request *, struct api_response *);
void api_sweeps_list(struct api_ctx *, struct api_request *, struct api_response *);
void api_sweeps_get(struct api_ctx *, struct api_request *, struct api_response *);
void api_sweeps_runs(struct api_ctx *, struct api_request *, struct api_response *);
void api_sweeps_cancel(struct api_ctx *, struct api_request *, struct api_response *);
void api_sweeps_events(struct api_ctx *, struct api_request *, struct api_response *);
/* nodes.c */
void api_nodes_register(struct api_ctx *, struct api_request *, struct api_response *);
void api_nodes_heartbeat(struct api_ctx *, struct api_request *, struct api_response *);
void api_nodes_list(struct api_ctx *, struct api_request *, struct api_response *);
void api_nodes_get(struct api_ctx *, struct api_request *, struct api_response *);
void api_nodes_drain(struct api_ctx *, struct api_request *, struct api_response *);
void api_nodes_delete(struct api_ctx *, struct api_request *, struct api_response *);
void api_compute_list(struct api_ctx *, struct api_request *, struct api_response *);
/* snapshots.c */
void api_snapshots_upload(struct api_ctx *, struct api_request *, struct api_response *);
void api_snapshots_get(struct api_ctx *, struct api_request *, struct api_response *);
/* web.c: the dashboard (no authentication: the files hold no secrets) */
void api_web_index(struct api_ctx *, struct api_request *, struct api_response *);
void api_web_static(struct api_ctx *, struct api_request *, struct api_response *);
/* agent.c (SPEC §3.4) */
void api_agent_status(struct api_ctx *, struct api_request *, struct api_response *);
void api_agent_metrics(struct api_ctx *, struct api_request *, struct api_response *);
void api_agent_logs(struct api_ctx *, struct api_request *, struct api_response *);
void api_agent_artifact(struct api_ctx *, struct api_request *, struct api_response *);
/* runread.c */
void api_runs_logs(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_metrics(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_metric_series(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_artifacts(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_artifact_get(struct api_ctx *, struct api_request *, struct api_response *);
void api_runs_events(struct api_ctx *, struct api_request *, struct api_response *);
/* tokens.c */
void api_tokens_create(struct api_ctx *, struct api_request *, struct api_response *);
void api_tokens_list(struct api_ctx *, struct api_request *, struct api_response *);
void api_tokens_delete(struct api_ctx *, struct api_request *, struct api_response *);

#endif
