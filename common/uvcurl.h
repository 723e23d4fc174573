/*
 * uvcurl.h - HTTP requests on a libuv loop: libcurl's multi interface
 * driven by uv_poll_t / uv_timer_t (curl_multi_socket_action).
 *
 * Every function must be called on the loop's thread; callbacks run there
 * too. A request's callback runs exactly once: with the response, with a
 * transport error, or with UVCURL_CANCELED from uvcurl_free().
 */
#ifndef TRAINYARD_UVCURL_H
#define TRAINYARD_UVCURL_H

#include <stddef.h>
#include <uv.h>

#include "common/buf.h"

struct uvcurl;

#define UVCURL_CANCELED (-1L)

struct uvcurl_response {
    long status; /* HTTP status; 0 on a transport error; UVCURL_CANCELED */
    const char *error; /* transport error text, or NULL */
    struct buf *body; /* the body (capped at max_body), unless download_file was set */
};

typedef void (*uvcurl_cb)(void *arg, const struct uvcurl_response *resp);

struct uvcurl_request {
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *url;
    const char *bearer; /* Authorization: Bearer ..., or NULL */
    const char *content_type; /* of the body, or NULL */
    const void *body; /* copied; or NULL */
    size_t body_len;
    const char *body_file; /* send this file's contents as the body instead */
    const char *download_file; /* write a 2xx body to this file (created 0600) */
    long timeout_ms; /* whole request; 0 = 30 s; negative: no limit */
    size_t max_body; /* in-memory body cap; 0 = 16 MiB */
    /* When set, a 2xx body is handed to on_data as it arrives (never
     * buffered; resp->body is then empty); other bodies are buffered. */
    void (*on_data)(void *arg, const char *data, size_t len);
};

/* A client on loop. Returns NULL if curl cannot start (logged). */
struct uvcurl *uvcurl_new(uv_loop_t *loop);
/* Cancels every request (their callbacks run with UVCURL_CANCELED) and
 * frees the client once its handles are closed; the loop must run on
 * for that. NULL is a no-op. */
void uvcurl_free(struct uvcurl *uc);
/* Starts a request. Returns 0, or ERR_INTERNAL when it cannot start (the
 * callback is then not called). */
int uvcurl_start(struct uvcurl *uc, const struct uvcurl_request *req, uvcurl_cb cb, void *arg);
/* Verifies HTTPS peers against the CA certificates in file (borrowed;
 * must outlive uc). Without it the system's CAs are used. */
void uvcurl_set_ca(struct uvcurl *uc, const char *file);
/* Up to n connections to each host (default 8), and at most 2n requests
 * to it inside curl at once; more wait in order, their timeouts not yet
 * running. 0: no limit (a client whose requests stay open). */
void uvcurl_set_max_connections(struct uvcurl *uc, long n);
/* Connects to this Unix socket instead of the URL's host (the URL still
 * names the path; e.g. http://localhost/_ping). path is copied. */
void uvcurl_set_unix_socket(struct uvcurl *uc, const char *path);
/* Requests in flight. */
int uvcurl_active(const struct uvcurl *uc);

#endif
