/*
 * metrics.h - the process's own request counters and latency histograms,
 * written out in Prometheus text format.
 *
 * Routes are registered once at start-up from the main thread, before any
 * request; observations may then come from any thread (relaxed atomics).
 */
#ifndef TRAINYARD_METRICS_H
#define TRAINYARD_METRICS_H

#include <stdint.h>

#include "common/buf.h"

#define METRICS_MAX_ROUTES 64

/* Registers a route by method and pattern; returns its index, or the
 * index of "other" when the table is full. Both strings must be static. */
int metrics_route(const char *method, const char *pattern);
/* The index that counts requests matching no route, by method: GET, HEAD,
 * POST, PUT, DELETE, PATCH, OPTIONS, else OTHER (route="unmatched"), so
 * that scans and mistakes show without one series per path. Any thread. */
int metrics_unmatched(const char *method);
/* Counts a request body that came with Content-Encoding coding ("gzip" or
 * "deflate") and was decoded whole. Any thread. */
void metrics_decoded_body(const char *coding);
/* Counts one request on route with its HTTP status and duration. */
void metrics_observe(int route, int status, int64_t duration_us);
/* Appends trainyard_http_requests_total,
 * trainyard_http_request_duration_seconds and
 * trainyard_http_decoded_bodies_total to out. */
void metrics_write(struct buf *out);

#endif
