/* test_routes.c - the route matcher. */
#include "tests/unit/unit.h"

#include <stdlib.h>

#include "server/routes.h"

static void matches_params_and_methods(void)
{
    char *params[API_MAX_PARAMS];
    const struct route *r;
    int n = 0;

    r = routes_match("GET", "/api/v1/runs/run-1", params, &n);
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(r->handler == api_runs_get);
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(params[0], "run-1");
    free(params[0]);

    r = routes_match("POST", "/api/v1/runs/run-1/cancel", params, &n);
    ASSERT_TRUE(r != NULL && r->handler == api_runs_cancel);
    free(params[0]);

    r = routes_match("DELETE", "/api/v1/runs/run-1", params, &n);
    ASSERT_TRUE(r == NULL);
    ASSERT_TRUE(routes_match("GET", "/api/v1/runs/", params, &n) == NULL);
    ASSERT_TRUE(routes_match("GET", "/api/v1/runs/a/b", params, &n) == NULL);
    ASSERT_TRUE(routes_match("GET", "/api/v1/runsx", params, &n) == NULL);
    r = routes_match("GET", "/healthz", params, &n);
    ASSERT_TRUE(r != NULL && r->roles == API_ROLES_NONE);
}

static void only_healthz_is_open(void)
{
    char *params[API_MAX_PARAMS];
    const char *const paths[][2] = {
        { "GET", "/metrics" },      { "GET", "/api/v1/runs" },    { "POST", "/api/v1/runs" },
        { "GET", "/api/v1/nodes" }, { "POST", "/api/v1/tokens" }, { "GET", "/api/v1/openapi.json" },
    };
    size_t i;
    int n;
    int j;

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const struct route *r = routes_match(paths[i][0], paths[i][1], params, &n);

        ASSERT_TRUE(r != NULL);
        ASSERT_TRUE(r->roles != API_ROLES_NONE);
        for (j = 0; j < n; j++)
            free(params[j]);
    }
}

UNIT_LIST(routes_tests) = {
    { "routes/matches_params_and_methods", matches_params_and_methods },
    { "routes/only_healthz_is_open", only_healthz_is_open },
    { NULL, NULL },
};
