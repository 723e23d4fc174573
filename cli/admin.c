/*
 * admin.c - the client commands over the server's other resources:
 * experiments (names, run counts, last activity), tokens (list, create,
 * delete; admin only) and health (the server's /healthz, for container
 * health checks and scripts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/xalloc.h"
#include "common/banned.h"

enum admin_opt {
    OPT_ROLE = CLI_OPT_FIRST_OWN,
    OPT_NODE,
};

/* ---- experiments ------------------------------------------------------------ */

static const char experiments_usage[] =
    "usage: trainyard experiments [options]\n"
    "\n"
    "Lists the experiments: NAME, RUNS (how many runs it has) and LAST_ACTIVITY\n"
    "(when one of its runs last changed). With --json, the server's first page.\n"
    "\n" CLI_COMMON_HELP;

static const struct option experiments_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static void experiment_row(const cJSON *e, struct cli_table *t)
{
    char *row[3];

    row[0] = cli_field_text(e, "name");
    row[1] = cli_field_text(e, "run_count");
    row[2] = cli_field_text(e, "last_activity");
    cli_table_add(t, row);
}

static int experiments_main(struct cli *c, int argc, char **argv)
{
    static const char *const header[] = { "NAME", "RUNS", "LAST_ACTIVITY" };
    struct cli_table t;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 0, 0, NULL, "");
    if (rc >= 0)
        return rc;
    cli_table_init(&t, 3, header);
    rc = cli_list_all(c, "/api/v1/experiments", &t, experiment_row);
    if (rc == 0 && !c->json)
        cli_table_print(&t);
    cli_table_release(&t);
    return rc;
}

const struct cli_command cli_cmd_experiments = {
    .name = "experiments",
    .summary = "list experiments with their run counts and last activity",
    .usage = experiments_usage,
    .longopts = experiments_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = experiments_main,
};

/* ---- tokens ----------------------------------------------------------------- */

static const char tokens_usage[] =
    "usage: trainyard tokens [options]\n"
    "       trainyard tokens create NAME --role ROLE [--node NODE] [options]\n"
    "       trainyard tokens delete ID [options]\n"
    "\n"
    "Manages API tokens; needs an admin token.\n"
    "  tokens          lists them, without secrets: ID, NAME, ROLE, NODE, CREATED\n"
    "  tokens create   makes one and prints its id, then its secret on a line of its\n"
    "                  own: the secret is shown this once and cannot be read again\n"
    "  tokens delete   revokes one; requests with it fail from then on\n"
    "\n"
    "  --role ROLE       the new token's role: admin, user, viewer, agent or join\n"
    "  --node NODE       bind an agent token to node NODE (else it is bound to the\n"
    "                    first node that registers with it)\n"
    "\n" CLI_COMMON_HELP;

static const struct option tokens_opts[] = {
    { "role", required_argument, NULL, OPT_ROLE },
    { "node", required_argument, NULL, OPT_NODE },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

struct tokens_opts {
    const char *role;
    const char *node;
};

static int tokens_option(struct cli *c, void *state, int opt, const char *arg)
{
    struct tokens_opts *to = state;

    if (opt == OPT_ROLE) {
        to->role = arg;
        return -1;
    }
    if (opt == OPT_NODE) {
        to->node = arg;
        return -1;
    }
    return cli_usage_error(c, "unexpected option");
}

static void token_row(const cJSON *tok, struct cli_table *t)
{
    char *row[5];

    row[0] = cli_field_text(tok, "id");
    row[1] = cli_field_text(tok, "name");
    row[2] = cli_field_text(tok, "role");
    row[3] = cli_field_text(tok, "node");
    row[4] = cli_field_text(tok, "created_at");
    cli_table_add(t, row);
}

static int tokens_list(struct cli *c)
{
    static const char *const header[] = { "ID", "NAME", "ROLE", "NODE", "CREATED" };
    struct cli_table t;
    int rc;

    cli_table_init(&t, 5, header);
    rc = cli_list_all(c, "/api/v1/tokens", &t, token_row);
    if (rc == 0 && !c->json)
        cli_table_print(&t);
    cli_table_release(&t);
    return rc;
}

static int tokens_create(struct cli *c, const char *name, const struct tokens_opts *to)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *tok = NULL;
    char *text;
    int rc;

    cJSON_AddStringToObject(body, "name", name);
    cJSON_AddStringToObject(body, "role", to->role);
    if (to->node)
        cJSON_AddStringToObject(body, "node", to->node);
    text = json_print(body);
    rc = cli_call(c, "POST", "/api/v1/tokens", text, c->json ? NULL : &tok);
    if (rc == 0 && !c->json) {
        const char *id = json_get_string(tok, "id");
        const char *secret = json_get_string(tok, "secret");

        if (id == NULL || secret == NULL) {
            rc = cli_fail("the server's answer has no token id or secret");
        } else {
            printf("%s\n%s\n", id, secret);
            fprintf(stderr, "trainyard: the second line is the secret; it is not shown again\n");
        }
    }
    cJSON_Delete(tok);
    cJSON_Delete(body);
    free(text);
    return rc;
}

static int tokens_delete(struct cli *c, const char *id)
{
    char *esc = cli_escape(c, id);
    char *path = xasprintf("/api/v1/tokens/%s", esc);
    int rc;

    /* The answer is 204 with no body: nothing to print, even with --json. */
    rc = cli_call(c, "DELETE", path, NULL, NULL);
    if (rc == 0 && !c->json)
        printf("%s deleted\n", id);
    free(path);
    free(esc);
    return rc;
}

static int tokens_main(struct cli *c, int argc, char **argv)
{
    struct tokens_opts to = { NULL, NULL };
    const char *pos[2];
    const char *action;
    int rc;

    rc = cli_parse_args(c, argc, argv, tokens_option, &to, 0, 2, pos, "token NAME or ID");
    if (rc >= 0)
        return rc;
    action = pos[0] ? pos[0] : "list";
    if (strcmp(action, "create") == 0) {
        if (pos[1] == NULL)
            return cli_usage_error(c, "tokens create needs the token's NAME");
        if (to.role == NULL)
            return cli_usage_error(c,
                                   "tokens create needs --role (admin, user, viewer, agent, join)");
        return tokens_create(c, pos[1], &to);
    }
    if (to.role || to.node)
        return cli_usage_error(c, "--role and --node go with 'tokens create'");
    if (strcmp(action, "delete") == 0) {
        if (pos[1] == NULL)
            return cli_usage_error(c, "tokens delete needs the token's ID");
        return tokens_delete(c, pos[1]);
    }
    if (strcmp(action, "list") == 0 && pos[1] == NULL)
        return tokens_list(c);
    if (strcmp(action, "list") == 0)
        return cli_usage_error(c, "unexpected argument '%s'", pos[1]);
    return cli_usage_error(c, "unknown action '%s' (list, create or delete)", action);
}

const struct cli_command cli_cmd_tokens = {
    .name = "tokens",
    .summary = "list, create or delete API tokens (admin)",
    .usage = tokens_usage,
    .longopts = tokens_opts,
    .optstring = ":h",
    .operand = "list create delete",
    .run = tokens_main,
};

/* ---- health ----------------------------------------------------------------- */

static const char health_usage[] =
    "usage: trainyard health [options]\n"
    "\n"
    "Asks the server's /healthz (no token needed) and prints its status, version\n"
    "and schema version; exits 0 when the server answers ok, else 1. Made for\n"
    "health checks (the container image's HEALTHCHECK runs it) and scripts that\n"
    "wait for a server.\n"
    "\n" CLI_COMMON_HELP;

static const struct option health_opts[] = {
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int health_main(struct cli *c, int argc, char **argv)
{
    cJSON *out = NULL;
    const char *status;
    int rc;

    rc = cli_parse_args(c, argc, argv, NULL, NULL, 0, 0, NULL, "");
    if (rc >= 0)
        return rc;
    rc = cli_call(c, "GET", "/healthz", NULL, c->json ? NULL : &out);
    if (rc != 0 || c->json)
        return rc;
    status = json_get_string(out, "status");
    if (status == NULL || strcmp(status, "ok") != 0) {
        rc = cli_fail("the server at %s is not healthy: status '%s'", c->server,
                      status ? status : "(none)");
    } else {
        char *version = cli_field_text(out, "version");
        char *schema = cli_field_text(out, "schema_version");

        printf("ok %s (version %s, schema %s)\n", c->server, version, schema);
        free(version);
        free(schema);
    }
    cJSON_Delete(out);
    return rc;
}

const struct cli_command cli_cmd_health = {
    .name = "health",
    .summary = "check that the server answers (its /healthz)",
    .usage = health_usage,
    .longopts = health_opts,
    .optstring = ":h",
    .operand = NULL,
    .run = health_main,
};
