/* test_rsh.c - what both clients of /v1/exec share (agent/rshwire.c):
 * the request body from mpirun's command, and the reply's exit marker.
 * The clients themselves run against real agents in
 * tests/integration/test_shared_host.py (trainyard rsh) and
 * test_docker_tasks.py (the static trainyard-rsh in an image). */
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/rsh.h"

static void body_from_mpiruns_command(void)
{
    char *one[] = { " orted --daemonize -mca ess \"env\" -mca orte_hnp_uri "
                    "\"1.0;tcp://10.0.0.1:5000\"" };
    char *words[] = { "orted", "a\\\"b", "tab\there" };
    char *shell[] = { "orted; rm -rf /" };
    char *body;

    /* mpirun passes the whole command as one argument, quoted for a shell. */
    body = rsh_body(1, one);
    ASSERT_STR_EQ(body, "{\"argv\": [\"orted\", \"--daemonize\", \"-mca\", \"ess\", \"env\", "
                        "\"-mca\", \"orte_hnp_uri\", \"1.0;tcp://10.0.0.1:5000\"]}");
    free(body);
    /* JSON escapes for quotes, backslashes and control characters. */
    body = rsh_body(3, words);
    ASSERT_STR_EQ(body, "{\"argv\": [\"orted\", \"a\\\"b\", \"tab\", \"here\"]}");
    free(body);
    ASSERT_TRUE(rsh_body(1, shell) == NULL);
}

/* The marker ends the reply wherever the reply is cut; what comes before
 * it is the command's output. */
static void exit_marker_anywhere(void)
{
    static const char reply[] = "line one\nno newline at the end\n" EXEC_EXIT_MARKER "42\n";
    size_t len = sizeof(reply) - 1;
    size_t cut;

    for (cut = 0; cut <= len; cut++) {
        struct rsh_sink sink;
        char out[256];
        FILE *f = tmpfile();
        int saved = dup(1);
        size_t n;

        ASSERT_TRUE(f != NULL && saved >= 0);
        fflush(stdout);
        dup2(fileno(f), 1);
        rsh_sink_init(&sink);
        ASSERT_EQ(rsh_sink_feed(&sink, reply, cut), 0);
        ASSERT_TRUE(!sink.ended || cut == len);
        ASSERT_EQ(rsh_sink_feed(&sink, reply + cut, len - cut), 0);
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
        ASSERT_TRUE(sink.ended);
        ASSERT_EQ(sink.exit_code, 42);
        rewind(f);
        n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        ASSERT_STR_EQ(out, "line one\nno newline at the end\n");
        fclose(f);
        rsh_sink_release(&sink);
    }
}

UNIT_LIST(rsh_tests) = {
    { "rsh/body_from_mpiruns_command", body_from_mpiruns_command },
    { "rsh/exit_marker_anywhere", exit_marker_anywhere },
    { NULL, NULL },
};
