/*
 * runner.c - runs every unit test in its own process with a timeout and
 * ends with "N passed, N failed". An argument runs only the tests whose
 * name contains it.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/unit.h"

extern const struct unit_test runspec_tests[];
extern const struct unit_test store_tests[];
extern const struct unit_test routes_tests[];
extern const struct unit_test archive_tests[];
extern const struct unit_test common_tests[];
extern const struct unit_test placement_tests[];
extern const struct unit_test spawn_tests[];
extern const struct unit_test limits_tests[];
extern const struct unit_test coding_tests[];
extern const struct unit_test earlystop_tests[];
extern const struct unit_test sweep_tests[];
extern const struct unit_test docker_tests[];
extern const struct unit_test backend_tests[];
extern const struct unit_test rsh_tests[];

static const struct unit_test *const lists[] = { common_tests,    runspec_tests, store_tests,
                                                 routes_tests,    archive_tests, placement_tests,
                                                 spawn_tests,     limits_tests,  coding_tests,
                                                 earlystop_tests, sweep_tests,   docker_tests,
                                                 backend_tests,   rsh_tests };

static int run_one(const struct unit_test *t)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        alarm(30);
        t->fn();
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "  killed by signal %d%s\n", WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

int main(int argc, char **argv)
{
    int passed = 0;
    int failed = 0;
    size_t i;
    const struct unit_test *t;

    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        for (t = lists[i]; t->name; t++) {
            if (argc > 1 && strstr(t->name, argv[1]) == NULL)
                continue;
            fflush(stdout);
            if (run_one(t) == 0) {
                printf("ok   %s\n", t->name);
                passed++;
            } else {
                printf("FAIL %s\n", t->name);
                failed++;
            }
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
