/*
 * routes.h - the HTTP route table of the control plane (one static array)
 * and the matcher. Read-only after start: any thread may call.
 */
#ifndef TRAINYARD_ROUTES_H
#define TRAINYARD_ROUTES_H

#include <stdbool.h>

#include "api/api.h"

enum route_body {
    ROUTE_BODY_JSON, /* up to ROUTE_JSON_MAX bytes of application/json, in memory */
    ROUTE_BODY_UPLOAD, /* a gzip upload spooled to a file, up to --max-snapshot-mb */
    ROUTE_BODY_RAW, /* up to ROUTE_RAW_MAX bytes of any type, in memory (log bytes) */
    ROUTE_BODY_FILE, /* any bytes spooled to a file, up to the artifact limit */
};

#define ROUTE_JSON_MAX (1024 * 1024)
#define ROUTE_RAW_MAX (8 * 1024 * 1024)

struct route {
    const char *method;
    const char *pattern; /* "{x}" matches one non-empty segment, "{x*}" the rest */
    api_handler handler;
    unsigned roles; /* enum api_role bits; API_ROLES_NONE = no auth */
    enum route_body body;
    /* Runs on the HTTP thread: never blocks for long (a cached or one-row
     * read, or a write that parks its connection). The others run on the
     * worker threads (server/workers.h). */
    bool quick;
    int metrics_index; /* set by routes_init() */
};

/* Registers every route with the metrics registry. Main thread, once. */
void routes_init(void);
/*
 * Finds the route for method and path. On a match fills params (each a
 * copy the caller frees with free()) and *ret_n_params and returns the
 * route; NULL when none matches.
 */
const struct route *routes_match(const char *method, const char *path, char *params[API_MAX_PARAMS],
                                 int *ret_n_params);

#endif
