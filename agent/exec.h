/*
 * exec.h - POST /v1/exec (SPEC §4 mpi): runs what mpirun starts on this
 * node (orted) as part of the run's worker task here, streaming its output
 * to the caller (`trainyard rsh`) and ending with its exit code. The
 * stream is shared by the loop thread (which feeds it) and the MHD thread
 * (which sends it); each side drops its reference when done.
 */
#ifndef TRAINYARD_AGENT_EXEC_H
#define TRAINYARD_AGENT_EXEC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <microhttpd.h>

#include "agent/rsh.h"

struct agent;
struct exec_stream;

/*
 * Loop thread: starts argv for the mpi worker task whose exec secret is
 * secret: a process of its own, or in the task's container (docker.h).
 * Returns 200 with *ret_stream, RSH_NOT_READY while the task is not
 * running yet, or 403/400 with *ret_error.
 */
int exec_start(struct agent *a, const char *secret, const cJSON *argv,
               struct exec_stream **ret_stream, const char **ret_error);
/* Loop thread: a stream with two references, the loop's (dropped with
 * exec_stream_unref() once the exec has ended) and the MHD side's. */
struct exec_stream *exec_stream_new(void);
/* Loop thread: more output, or (done) its end with exit_code. */
void exec_stream_feed(struct exec_stream *s, const char *data, size_t len, bool done,
                      int exit_code);
void exec_stream_unref(struct exec_stream *s);
/* MHD thread: the response that streams it (takes the MHD side's reference). */
struct MHD_Response *exec_response(struct MHD_Connection *conn, struct exec_stream *stream);

#endif
