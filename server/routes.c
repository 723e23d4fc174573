/* routes.c - the route table: every endpoint, its handler, roles and body. */
#include "server/routes.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define READ API_ROLES_READ
#define WRITE API_ROLES_WRITE
#define ADMIN API_ROLE_ADMIN
#define AGENT API_ROLE_AGENT
#define JSON ROUTE_BODY_JSON
#define QUICK true
#define WORKER false

static struct route routes[] = {
    { "GET", "/healthz", api_healthz, API_ROLES_NONE, JSON, QUICK, 0 },
    { "GET", "/", api_web_index, API_ROLES_NONE, JSON, QUICK, 0 },
    { "GET", "/static/{name}", api_web_static, API_ROLES_NONE, JSON, QUICK, 0 },
    { "GET", "/metrics", api_prometheus, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/openapi.json", api_openapi, READ | AGENT, JSON, QUICK, 0 },

    { "POST", "/api/v1/snapshots", api_snapshots_upload, WRITE, ROUTE_BODY_UPLOAD, WORKER, 0 },
    { "GET", "/api/v1/snapshots/{id}", api_snapshots_get, READ | AGENT, JSON, WORKER, 0 },

    { "POST", "/api/v1/runs", api_runs_create, WRITE, JSON, QUICK, 0 },
    { "GET", "/api/v1/runs", api_runs_list, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/runs/{id}", api_runs_get, READ, JSON, QUICK, 0 },
    { "POST", "/api/v1/runs/{id}/cancel", api_runs_cancel, WRITE, JSON, WORKER, 0 },
    { "POST", "/api/v1/runs/{id}/rerun", api_runs_rerun, WRITE, JSON, QUICK, 0 },
    { "GET", "/api/v1/runs/{id}/logs", api_runs_logs, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/runs/{id}/metrics", api_runs_metrics, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/runs/{id}/metrics/{name}", api_runs_metric_series, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/runs/{id}/events", api_runs_events, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/runs/{id}/artifacts", api_runs_artifacts, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/runs/{id}/artifacts/{path*}", api_runs_artifact_get, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/experiments", api_experiments_list, READ, JSON, WORKER, 0 },

    { "POST", "/api/v1/sweeps", api_sweeps_create, WRITE, JSON, WORKER, 0 },
    { "GET", "/api/v1/sweeps", api_sweeps_list, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/sweeps/{id}", api_sweeps_get, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/sweeps/{id}/runs", api_sweeps_runs, READ, JSON, WORKER, 0 },
    { "POST", "/api/v1/sweeps/{id}/cancel", api_sweeps_cancel, WRITE, JSON, WORKER, 0 },
    { "GET", "/api/v1/sweeps/{id}/events", api_sweeps_events, READ, JSON, WORKER, 0 },

    { "POST", "/api/v1/nodes", api_nodes_register, ADMIN | AGENT, JSON, WORKER, 0 },
    { "GET", "/api/v1/nodes", api_nodes_list, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/nodes/{name}", api_nodes_get, READ, JSON, WORKER, 0 },
    { "POST", "/api/v1/nodes/{name}/heartbeat", api_nodes_heartbeat, ADMIN | AGENT, JSON, QUICK,
      0 },
    { "POST", "/api/v1/nodes/{name}/drain", api_nodes_drain, ADMIN, JSON, WORKER, 0 },
    { "DELETE", "/api/v1/nodes/{name}", api_nodes_delete, ADMIN, JSON, WORKER, 0 },
    { "GET", "/api/v1/compute", api_compute_list, READ, JSON, WORKER, 0 },
    { "GET", "/api/v1/scheduler", api_scheduler_get, ADMIN, JSON, WORKER, 0 },

    { "POST", "/api/v1/agent/tasks/{task}/status", api_agent_status, ADMIN | AGENT, JSON, QUICK,
      0 },
    { "POST", "/api/v1/agent/tasks/{task}/metrics", api_agent_metrics, ADMIN | AGENT, JSON, QUICK,
      0 },
    { "POST", "/api/v1/agent/tasks/{task}/logs", api_agent_logs, ADMIN | AGENT, ROUTE_BODY_RAW,
      QUICK, 0 },
    { "PUT", "/api/v1/agent/tasks/{task}/artifacts/{path*}", api_agent_artifact, ADMIN | AGENT,
      ROUTE_BODY_FILE, WORKER, 0 },

    { "POST", "/api/v1/tokens", api_tokens_create, ADMIN | API_ROLE_JOIN, JSON, WORKER, 0 },
    { "GET", "/api/v1/tokens", api_tokens_list, ADMIN, JSON, WORKER, 0 },
    { "DELETE", "/api/v1/tokens/{id}", api_tokens_delete, ADMIN, JSON, WORKER, 0 },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

void routes_init(void)
{
    size_t i;

    for (i = 0; i < N_ROUTES; i++)
        routes[i].metrics_index = metrics_route(routes[i].method, routes[i].pattern);
}

/* Matches path against pattern segment by segment, capturing "{x}". */
static bool match(const char *pattern, const char *path, char *params[API_MAX_PARAMS], int *n)
{
    const char *p = pattern;
    const char *s = path;

    *n = 0;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            bool rest = close[-1] == '*';
            const char *seg_end = rest ? NULL : strchr(s, '/');
            size_t len = seg_end ? (size_t)(seg_end - s) : strlen(s);

            if (len == 0 || *n == API_MAX_PARAMS)
                return false;
            params[(*n)++] = xstrndup(s, len);
            s += len;
            p = strchr(p, '}') + 1;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return false;
        }
    }
    return *p == '\0' && *s == '\0';
}

const struct route *routes_match(const char *method, const char *path, char *params[API_MAX_PARAMS],
                                 int *ret_n_params)
{
    size_t i;
    int n;
    int j;

    for (i = 0; i < N_ROUTES; i++) {
        if (strcmp(routes[i].method, method) != 0)
            continue;
        if (match(routes[i].pattern, path, params, &n)) {
            *ret_n_params = n;
            return &routes[i];
        }
        for (j = 0; j < n; j++)
            free(params[j]);
    }
    return NULL;
}
