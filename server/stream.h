/*
 * stream.h - responses whose body grows over time (SPEC §3.2 logs with
 * follow=1, /events): an MHD content reader over a struct api_stream.
 * When the stream has nothing new the connection is suspended, and a
 * small thread resumes every suspended connection a few times a second,
 * so no HTTP thread spins or blocks waiting.
 */
#ifndef TRAINYARD_STREAM_H
#define TRAINYARD_STREAM_H

#include <microhttpd.h>

#include "api/api.h"

/* Starts the resume thread. Main thread, before serving. */
int stream_start(void);
/* Stops it and resumes every suspended connection, so that MHD can close
 * them. Main thread, before MHD_stop_daemon(). */
void stream_stop(void);
/* An MHD response that reads stream (taken over) for conn. NULL on failure
 * (the stream is freed). HTTP threads. */
struct MHD_Response *stream_response(struct MHD_Connection *conn, struct api_stream *stream);

#endif
