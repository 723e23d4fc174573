/*
 * cli.c - the client commands' entry point and shared plumbing: dispatch,
 * the common options, and where the server URL and token come from.
 */
#include "cli/cli.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "common/xalloc.h"
#include "common/parse.h"
#include "common/banned.h"

#define DEFAULT_SERVER "http://127.0.0.1:8080"
#define DEFAULT_DATA "./var"
/* server.url and admin.token are one short line each. */

/*
 * The client commands, in the order 'trainyard --help' lists them: the
 * one place dispatch, the command list and the completion script read.
 */
static const struct cli_command *const commands[] = {
    &cli_cmd_submit,       &cli_cmd_runs,        &cli_cmd_run,        &cli_cmd_logs,
    &cli_cmd_cancel,       &cli_cmd_rerun,       &cli_cmd_metrics,    &cli_cmd_artifacts,
    &cli_cmd_download,     &cli_cmd_sweep,       &cli_cmd_sweeps,     &cli_cmd_sweep_show,
    &cli_cmd_sweep_cancel, &cli_cmd_experiments, &cli_cmd_nodes,      &cli_cmd_drain,
    &cli_cmd_tokens,       &cli_cmd_health,      &cli_cmd_completion,
};

const struct cli_command *const *cli_commands(size_t *ret_count)
{
    *ret_count = sizeof(commands) / sizeof(commands[0]);
    return commands;
}

const struct cli_command *cli_find_command(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i]->name) == 0)
            return commands[i];
    }
    return NULL;
}

void cli_print_summaries(FILE *out)
{
    size_t i;

    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
}

int cli_main(int argc, char **argv)
{
    const struct cli_command *cmd = cli_find_command(argv[0]);
    struct cli c;
    int rc;

    if (cmd == NULL) {
        fprintf(stderr, "trainyard: unknown client command '%s'\n", argv[0]);
        return CLI_EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "trainyard: cannot initialise libcurl\n");
        return CLI_EXIT_FAILED;
    }
    cli_init(&c, cmd);
    rc = cmd->run(&c, argc, argv);
    cli_release(&c);
    curl_global_cleanup();
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
        fprintf(stderr, "trainyard: cannot write to stdout: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    return rc;
}

void cli_init(struct cli *c, const struct cli_command *cmd)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->command = cmd->name;
    c->data_dir = DEFAULT_DATA;
}

void cli_release(struct cli *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->server);
    free(c->token);
    c->curl = NULL;
    c->server = NULL;
    c->token = NULL;
}

bool cli_common_option(struct cli *c, int opt, const char *arg)
{
    switch (opt) {
    case CLI_OPT_SERVER:
        c->opt_server = arg;
        return true;
    case CLI_OPT_TOKEN:
        c->opt_token = arg;
        return true;
    case CLI_OPT_TOKEN_FILE:
        c->opt_token_file = arg;
        return true;
    case CLI_OPT_DATA:
        c->data_dir = arg;
        return true;
    case CLI_OPT_JSON:
        c->json = true;
        return true;
    case CLI_OPT_CA:
        c->ca_file = arg;
        return true;
    default:
        return false;
    }
}

int cli_bad_option(const struct cli *c, int opt, char **argv)
{
    /* getopt_long has already advanced optind past the faulty word. */
    const char *word = optind > 0 ? argv[optind - 1] : "?";

    if (opt == ':')
        return cli_usage_error(c, "option '%s' needs a value", word);
    if (optopt != 0 && strncmp(word, "--", 2) != 0)
        return cli_usage_error(c, "unknown option '-%c'", optopt);
    return cli_usage_error(c, "unknown or ambiguous option '%s'", word);
}

int cli_usage_error(const struct cli *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "trainyard %s: ", c->command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'trainyard %s --help' for its options.\n", c->command);
    return CLI_EXIT_USAGE;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("trainyard: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EXIT_FAILED;
}

bool cli_parse_long(const char *s, long min, long max, long *ret)
{
    return parse_long(s, min, max, ret);
}

void cli_format_number(double v, char *out, size_t size)
{
    snprintf(out, size, "%.6g", v);
}

void cli_format_exact(double v, char *out, size_t size)
{
    int digits;

    /* The fewest digits that read back as the same double. */
    for (digits = 6; digits < 17; digits++) {
        snprintf(out, size, "%.*g", digits, v);
        if (strtod(out, NULL) == v)
            return;
    }
    snprintf(out, size, "%.17g", v);
}

/* A one-line file of the server's data directory (server.url,
 * admin.token), or NULL when it is missing or not one line of text. */
static char *data_file(const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s", dir, name);
    char why[256];
    char *text = file_read_secret(path, why, sizeof(why));

    free(path);
    return text;
}

/*
 * True when the URL's host is a loopback address: localhost, 127.0.0.0/8
 * or ::1. The URL has been checked to start with a scheme and "://".
 */
static bool host_is_loopback(const char *url)
{
    const char *host = strstr(url, "://") + 3;
    const char *end;
    const char *at;
    char name[256];
    unsigned char addr[16];
    size_t len;

    /* Skip user information, if any, before the host. */
    end = host + strcspn(host, "/?#");
    at = memchr(host, '@', (size_t)(end - host));
    if (at)
        host = at + 1;
    if (*host == '[') {
        host++;
        end = strchr(host, ']');
        if (end == NULL)
            return false;
    } else {
        end = host + strcspn(host, ":/?#");
    }
    len = (size_t)(end - host);
    if (len == 0 || len >= sizeof(name))
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    if (strcasecmp(name, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, name, addr) == 1)
        return addr[0] == 127;
    if (inet_pton(AF_INET6, name, addr) == 1) {
        static const unsigned char v6_loopback[16] = { 0, 0, 0, 0, 0, 0, 0, 0,
                                                       0, 0, 0, 0, 0, 0, 0, 1 };

        return memcmp(addr, v6_loopback, sizeof(addr)) == 0;
    }
    return false;
}

int cli_resolve(struct cli *c)
{
    const char *env;
    const char *env_file;
    size_t len;

    free(c->server);
    free(c->token);
    c->server = NULL;
    c->token = NULL;

    env = getenv("TRAINYARD_SERVER");
    if (c->opt_server)
        c->server = xstrdup(c->opt_server);
    else if (env && *env)
        c->server = xstrdup(env);
    else
        c->server = data_file(c->data_dir, "server.url");
    if (c->server == NULL)
        c->server = xstrdup(DEFAULT_SERVER);
    if (strncasecmp(c->server, "http://", 7) != 0 && strncasecmp(c->server, "https://", 8) != 0)
        return cli_usage_error(c, "server URL '%s' must start with http:// or https://", c->server);
    len = strlen(c->server);
    while (len > 0 && c->server[len - 1] == '/')
        c->server[--len] = '\0';
    if (strstr(c->server, "://")[3] == '\0')
        return cli_usage_error(c, "server URL '%s' has no host", c->server);
    c->loopback = host_is_loopback(c->server);

    env = getenv("TRAINYARD_TOKEN");
    env_file = getenv("TRAINYARD_TOKEN_FILE");
    if (c->opt_token && c->opt_token_file)
        return cli_usage_error(c, "--token and --token-file cannot be used together");
    if (c->opt_token) {
        c->token = xstrdup(c->opt_token);
    } else if (c->opt_token_file || (!(env && *env) && env_file && *env_file)) {
        char why[512];

        c->token =
            file_read_secret(c->opt_token_file ? c->opt_token_file : env_file, why, sizeof(why));
        if (c->token == NULL)
            return cli_usage_error(c, "%s", why);
    } else if (env && *env)
        c->token = xstrdup(env);
    else if (c->loopback)
        c->token = data_file(c->data_dir, "admin.token");
    if (c->token && strpbrk(c->token, "\r\n"))
        return cli_usage_error(c, "the token must be one line");
    return 0;
}
