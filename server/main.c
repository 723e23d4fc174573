/*
 * main.c - the trainyard binary: one program, subcommands like nomad or
 * consul. Dispatches to the module that owns each command.
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "agent/agent.h"
#include "agent/rsh.h"
#include "cli/cli.h"
#include "common/version.h"
#include "server/server.h"
#include "common/banned.h"

static const char usage[] =
    "usage: trainyard <command> [options]\n"
    "\n"
    "Commands:\n"
    "  server     run the control plane (REST API, store, scheduler, dashboard)\n"
    "  agent      run the node agent on this machine\n"
    "  submit     pack a source directory and submit a run\n"
    "  runs       list runs\n"
    "  run        show a run: status, tasks, metrics\n"
    "  logs       print a run's logs (-f to follow)\n"
    "  cancel     cancel a run\n"
    "  rerun      submit a run again, optionally with changed parameters\n"
    "  nodes      list the nodes\n"
    "  drain      stop placing tasks on a node (--undo to undo)\n"
    "  version    print the version\n"
    "\n"
    "Run 'trainyard <command> --help' for a command's options.\n";

/* The client commands, all run by cli_main(). */
static const char *const client_commands[] = { "submit", "runs",  "run",   "logs", "cancel",
                                               "rerun",  "nodes", "drain", NULL };

int main(int argc, char **argv)
{
    const char *const *cmd;

    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "server") == 0 || strcmp(argv[1], "agent") == 0) {
        int rc;

        /* Once, before any thread exists (libcurl's rule). */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (strcmp(argv[1], "server") == 0)
            rc = server_main(argc - 1, argv + 1);
        else
            rc = agent_main(argc - 1, argv + 1);
        curl_global_cleanup();
        return rc;
    }
    for (cmd = client_commands; *cmd; cmd++) {
        if (strcmp(argv[1], *cmd) == 0)
            return cli_main(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "rsh") == 0)
        return rsh_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("trainyard %s\n", TRAINYARD_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "trainyard: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
