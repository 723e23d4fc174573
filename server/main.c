/*
 * main.c - the trainyard binary: one program, subcommands like nomad or
 * consul. Dispatches to the module that owns each command.
 */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "agent/agent.h"
#include "agent/rsh.h"
#include "cli/cli.h"
#include "common/version.h"
#include "server/server.h"
#include "common/banned.h"

static const char usage_head[] =
    "usage: trainyard <command> [options]\n"
    "\n"
    "Commands:\n"
    "  server       run the control plane (REST API, store, scheduler, dashboard)\n"
    "  agent        run the node agent on this machine\n";

static const char usage_tail[] = "  version      print the version\n"
                                 "\n"
                                 "Run 'trainyard <command> --help' for a command's options.\n";

/* The usage: the client commands come from cli's command table. */
static void print_usage(FILE *out)
{
    fputs(usage_head, out);
    cli_print_summaries(out);
    fputs(usage_tail, out);
}

int main(int argc, char **argv)
{
    /* File names are UTF-8 whatever the caller's locale: libarchive
     * converts names through the locale's charset, and in the C locale it
     * refuses every non-ASCII one. Only LC_CTYPE: numbers keep C's format. */
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
        setlocale(LC_CTYPE, "");
    if (argc < 2) {
        print_usage(stderr);
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
    if (cli_find_command(argv[1]))
        return cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "rsh") == 0)
        return rsh_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("trainyard %s\n", TRAINYARD_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    fprintf(stderr, "trainyard: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
