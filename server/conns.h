/*
 * conns.h - connection deadlines and counts: a request's line and headers
 * must all arrive within the header timeout, however slowly a client drips
 * them (MHD's own timeout only counts idle time); a connection past the
 * server's or its address's cap is answered with an error at its first
 * request (MHD's own caps, set higher, only close sockets). Callbacks run
 * on MHD's threads; the sweeper is a thread of its own.
 */
#ifndef TRAINYARD_CONNS_H
#define TRAINYARD_CONNS_H

#include <microhttpd.h>
#include <stdint.h>

/* Whether a connection was within the caps when it was accepted. */
enum conns_verdict {
    CONNS_OK,
    CONNS_PEER_FULL, /* its address has more than max_per_address open */
    CONNS_SERVER_FULL, /* more than max_open are open */
};

/* Starts the sweeper; all > 0. Returns 0 or ERR_INTERNAL. */
int conns_start(int64_t header_timeout_ms, int max_open, int max_per_address);
/* Stops the sweeper (after MHD_stop_daemon). */
void conns_stop(void);
/* MHD_OPTION_NOTIFY_CONNECTION: a connection's deadline starts at accept. */
void conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode code);
/* MHD_OPTION_URI_LOG_CALLBACK: a next request on a kept-alive connection
 * starts a new deadline. Returns NULL (the request's state starts empty). */
void *conns_request_started(void *cls, const char *uri, struct MHD_Connection *conn);
/* The headers are all in (the access handler's first call): no deadline. */
void conns_headers_done(struct MHD_Connection *conn);
/* The verdict on conn at its accept (CONNS_OK when it is not known). */
enum conns_verdict conns_verdict(struct MHD_Connection *conn);
/* Connections cut for missing their header deadline so far. */
uint64_t conns_cut_count(void);

#endif
