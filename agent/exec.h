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
#include <microhttpd.h>

struct agent;
struct exec_stream;

/* The marker that ends the stream: "\x1etrainyard-exit:<code>\n". */
#define EXEC_EXIT_MARKER "\x1etrainyard-exit:"

/*
 * Loop thread: starts argv for the mpi worker task whose exec secret is
 * secret. Returns 200 with *ret_stream, or 403/400/404 with *ret_error.
 */
int exec_start(struct agent *a, const char *secret, const cJSON *argv,
               struct exec_stream **ret_stream, const char **ret_error);
/* MHD thread: the response that streams it (takes the MHD side's reference). */
struct MHD_Response *exec_response(struct MHD_Connection *conn, struct exec_stream *stream);

#endif
