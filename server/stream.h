/*
 * stream.h - responses whose body grows over time (SPEC §3.2 logs with
 * follow=1, /events): an MHD content reader over a struct api_stream.
 * When the stream has nothing new the connection is suspended, and a
 * small thread resumes every suspended connection soon after the store
 * commits (stream_wake()), and a few times a second in any case, so no
 * HTTP thread spins or blocks waiting.
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
/* There may be news (the store committed): suspended streams look soon.
 * Any thread; cheap. */
void stream_wake(void *unused);
/* An MHD response that reads stream (taken over) for conn. NULL on failure
 * (the stream is freed). HTTP threads. */
struct MHD_Response *stream_response(struct MHD_Connection *conn, struct api_stream *stream);

#endif
