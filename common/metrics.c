/* metrics.c - lock-free request counters and latency histograms. */
#include "common/metrics.h"

#include <stdatomic.h>
#include <string.h>

#include "common/banned.h"

static const double bucket_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5 };
#define N_BUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct route_stats {
    const char *method;
    const char *pattern;
    _Atomic uint64_t by_status[600];
    _Atomic uint64_t buckets[N_BUCKETS + 1]; /* the last is +Inf */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
};

/* Methods counted by name when no route matches; any other is OTHER. */
static const char *const unmatched_methods[] = { "GET",    "HEAD",  "POST",    "PUT",
                                                 "DELETE", "PATCH", "OPTIONS", "OTHER" };
#define N_UNMATCHED (sizeof(unmatched_methods) / sizeof(unmatched_methods[0]))
#define UNMATCHED_FIRST (METRICS_MAX_ROUTES + 1)
#define N_SLOTS (UNMATCHED_FIRST + N_UNMATCHED)

/* Registered routes, "other" (past the table), then the unmatched slots. */
static struct route_stats routes[N_SLOTS];
static int n_routes;

/* Decoded request bodies: gzip, deflate. */
static const char *const codings[] = { "gzip", "deflate" };
static _Atomic uint64_t decoded[2];

static const char *slot_method(int i)
{
    return i >= UNMATCHED_FIRST ? unmatched_methods[i - UNMATCHED_FIRST] : routes[i].method;
}

static const char *slot_pattern(int i)
{
    return i >= UNMATCHED_FIRST ? "unmatched" : routes[i].pattern;
}

int metrics_route(const char *method, const char *pattern)
{
    if (n_routes == METRICS_MAX_ROUTES) {
        routes[METRICS_MAX_ROUTES].method = "ANY";
        routes[METRICS_MAX_ROUTES].pattern = "other";
        return METRICS_MAX_ROUTES;
    }
    routes[n_routes].method = method;
    routes[n_routes].pattern = pattern;
    return n_routes++;
}

int metrics_unmatched(const char *method)
{
    size_t i;

    for (i = 0; i + 1 < N_UNMATCHED; i++) {
        if (strcmp(unmatched_methods[i], method) == 0)
            return (int)(UNMATCHED_FIRST + i);
    }
    return (int)(UNMATCHED_FIRST + N_UNMATCHED - 1);
}

void metrics_decoded_body(const char *coding)
{
    size_t i;

    for (i = 0; i < sizeof(codings) / sizeof(codings[0]); i++) {
        if (strcmp(codings[i], coding) == 0)
            atomic_fetch_add_explicit(&decoded[i], 1, memory_order_relaxed);
    }
}

void metrics_observe(int route, int status, int64_t duration_us)
{
    struct route_stats *r;
    double secs = (double)duration_us / 1e6;
    size_t b;

    if (route < 0 || (size_t)route >= N_SLOTS)
        return;
    r = &routes[route];
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&r->by_status[status], 1, memory_order_relaxed);
    for (b = 0; b < N_BUCKETS && secs > bucket_bounds[b]; b++)
        ;
    atomic_fetch_add_explicit(&r->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

void metrics_write(struct buf *out)
{
    int i;
    int s;
    size_t b;

    buf_adds(out, "# HELP trainyard_http_requests_total HTTP requests by route and status.\n"
                  "# TYPE trainyard_http_requests_total counter\n");
    for (i = 0; i < (int)N_SLOTS; i++) {
        if (slot_pattern(i) == NULL)
            continue;
        for (s = 100; s < 600; s++) {
            uint64_t n = atomic_load_explicit(&routes[i].by_status[s], memory_order_relaxed);

            if (n)
                buf_printf(out,
                           "trainyard_http_requests_total{method=\"%s\",route=\"%s\","
                           "status=\"%d\"} %llu\n",
                           slot_method(i), slot_pattern(i), s, (unsigned long long)n);
        }
    }
    buf_adds(out, "# HELP trainyard_http_request_duration_seconds HTTP request latency.\n"
                  "# TYPE trainyard_http_request_duration_seconds histogram\n");
    for (i = 0; i < (int)N_SLOTS; i++) {
        uint64_t cumulative = 0;
        uint64_t count;

        if (slot_pattern(i) == NULL)
            continue;
        count = atomic_load_explicit(&routes[i].count, memory_order_relaxed);
        if (count == 0)
            continue;
        for (b = 0; b <= N_BUCKETS; b++) {
            cumulative += atomic_load_explicit(&routes[i].buckets[b], memory_order_relaxed);
            if (b < N_BUCKETS)
                buf_printf(out,
                           "trainyard_http_request_duration_seconds_bucket{method=\"%s\","
                           "route=\"%s\",le=\"%g\"} %llu\n",
                           slot_method(i), slot_pattern(i), bucket_bounds[b],
                           (unsigned long long)cumulative);
            else
                buf_printf(out,
                           "trainyard_http_request_duration_seconds_bucket{method=\"%s\","
                           "route=\"%s\",le=\"+Inf\"} %llu\n",
                           slot_method(i), slot_pattern(i), (unsigned long long)cumulative);
        }
        buf_printf(out,
                   "trainyard_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} "
                   "%.6f\n",
                   slot_method(i), slot_pattern(i),
                   (double)atomic_load_explicit(&routes[i].sum_us, memory_order_relaxed) / 1e6);
        buf_printf(out,
                   "trainyard_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} "
                   "%llu\n",
                   slot_method(i), slot_pattern(i), (unsigned long long)count);
    }
    buf_adds(out, "# HELP trainyard_http_decoded_bodies_total Request bodies sent with a "
                  "Content-Encoding and decoded, by coding.\n"
                  "# TYPE trainyard_http_decoded_bodies_total counter\n");
    for (i = 0; i < 2; i++)
        buf_printf(out, "trainyard_http_decoded_bodies_total{coding=\"%s\"} %llu\n", codings[i],
                   (unsigned long long)atomic_load_explicit(&decoded[i], memory_order_relaxed));
}
