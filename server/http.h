/*
 * http.h - libmicrohttpd callbacks of the control plane. server.c starts
 * the daemon with these; they run on MHD's threads.
 */
#ifndef TRAINYARD_HTTP_H
#define TRAINYARD_HTTP_H

#include <microhttpd.h>

#include "api/api.h"

struct http {
    struct api_ctx *ctx;
};

/* MHD access handler; cls is a struct http. */
enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **req_cls);
/* MHD_OPTION_UNESCAPE_CALLBACK for the path and query arguments: decodes
 * %XX, but an encoded NUL ("%00") becomes byte 0x01. A NUL would cut the C
 * string short and let "a%00b" pass as "a"; 0x01 is a control character
 * every name, id and path check refuses. Any thread. */
size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s);
/* Stops deferring answers (api_request.defer) and waits until every
 * deferred one is resumed: before MHD_stop_daemon. */
void http_drain(void);
/* MHD_OPTION_NOTIFY_COMPLETED callback (cls: the struct http): frees the
 * request state. */
void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                    enum MHD_RequestTerminationCode toe);

#endif
