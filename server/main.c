/*
 * main.c - the trainyard binary: one program, subcommands like nomad or
 * consul. Dispatches to the module that owns each command.
 */
#include <stdio.h>
#include <string.h>

#include "common/version.h"
#include "server/server.h"
#include "common/banned.h"

static const char usage[] =
    "usage: trainyard <command> [options]\n"
    "\n"
    "Commands:\n"
    "  server     run the control plane (REST API, store, scheduler, dashboard)\n"
    "  version    print the version\n"
    "\n"
    "Run 'trainyard <command> --help' for a command's options.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "server") == 0)
        return server_main(argc - 1, argv + 1);
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
