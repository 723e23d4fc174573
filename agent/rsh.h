/*
 * rsh.h - `trainyard rsh HOST CMD...`: the remote shell mpirun uses
 * (OMPI_MCA_plm_rsh_agent) inside an mpi run. Instead of ssh it asks
 * HOST's agent to run CMD (POST /v1/exec with the run's exec secret from
 * TRAINYARD_MPI_SECRET; agents from TRAINYARD_MPI_AGENTS), streams its
 * output and exits with its exit code. CMD is split into words as a POSIX
 * shell would (mpirun quotes for a remote shell) but never run by one.
 *
 * Two clients speak this: `trainyard rsh` (rsh.c, libcurl) on hosts, and
 * the static `trainyard-rsh` (agent/static/rsh.c, libc only) that mpirun
 * runs inside a run's image. What they share is in rshwire.c (plain C and
 * libc only). Any thread; no state.
 */
#ifndef TRAINYARD_RSH_H
#define TRAINYARD_RSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* The marker that ends an exec's stream: "\x1etrainyard-exit:<code>\n". */
#define EXEC_EXIT_MARKER "\x1etrainyard-exit:"
/* /v1/exec's answer while the run's worker task on that node is not
 * running yet (its snapshot, image or container is on its way): the
 * clients ask again, every RSH_RETRY_MS for at most RSH_RETRY_FOR_MS. */
#define RSH_NOT_READY 409
#define RSH_RETRY_MS 500
#define RSH_RETRY_FOR_MS (30L * 60 * 1000)

/* Returns the remote command's exit code, 255 when it could not run it. */
int rsh_main(int argc, char **argv);

/*
 * Splits text into words like a POSIX shell: blanks separate, quotes and
 * backslashes are removed. Refuses (returns NULL) text with shell
 * operators or expansions outside quotes. The caller frees each word and
 * the array (NULL-terminated).
 */
char **rsh_split(const char *text);

/*
 * The body of POST /v1/exec for the command in argv[0..argc) (joined
 * with blanks, then split by rsh_split): {"argv": [...]}. NULL when the
 * command needs a shell (see rsh_split). Caller frees.
 */
char *rsh_body(int argc, char *const *argv);

/* An exec's reply as it arrives: output passes through to stdout, the
 * exit marker ends it. Embedded; rsh_sink_release() frees. */
struct rsh_sink {
    struct buf tail; /* held back: may be the start of the exit marker */
    int exit_code;
    bool ended; /* the marker came */
};

/* The monotonic clock in ms (for the retries of RSH_NOT_READY). */
int64_t rsh_now_ms(void);

void rsh_sink_init(struct rsh_sink *s);
void rsh_sink_release(struct rsh_sink *s);
/* Feeds reply bytes; 0, or -1 when stdout cannot take them. */
int rsh_sink_feed(struct rsh_sink *s, const char *data, size_t len);

#endif
