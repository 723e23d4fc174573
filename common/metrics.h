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

/* The scheduler thread's time by part of its work: a pass is EXPIRE
 * (node timeouts, deadlines), SWEEPS, READ (the queue and nodes from
 * SQLite), PLACE (scheduler/placement.c), COMMIT (the placements'
 * write), REASONS (why runs wait, unschedulable runs) and OUTBOX (reading
 * the assignments and stops to send, starting their requests); ACK, outside
 * passes, writes the pushes agents accepted. */
enum metrics_sched_phase {
    METRICS_PHASE_EXPIRE,
    METRICS_PHASE_SWEEPS,
    METRICS_PHASE_READ,
    METRICS_PHASE_PLACE,
    METRICS_PHASE_COMMIT,
    METRICS_PHASE_REASONS,
    METRICS_PHASE_OUTBOX,
    METRICS_PHASE_ACK,
    METRICS_N_PHASES
};

/* Adds duration_us to phase. Any thread. */
void metrics_sched_phase(enum metrics_sched_phase phase, int64_t duration_us);
/* Counts one pass: its duration, and the runs and tasks it placed. */
void metrics_sched_pass(int64_t duration_us, uint64_t placed_runs, uint64_t placed_tasks);
/* Counts assignments agents accepted. */
void metrics_sched_pushed(uint64_t tasks);
/* Counts pushes that failed (refused, unreachable, timed out). */
void metrics_sched_push_failed(void);
/* Counts nodes marked down because their heartbeats stopped. */
void metrics_nodes_lost(uint64_t nodes);

/* Appends trainyard_http_requests_total,
 * trainyard_http_request_duration_seconds,
 * trainyard_http_decoded_bodies_total and the scheduler's and nodes'
 * counters (trainyard_scheduler_*, trainyard_nodes_lost_total) to out. */
void metrics_write(struct buf *out);

#endif
