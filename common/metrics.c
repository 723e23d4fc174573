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

static struct route_stats routes[METRICS_MAX_ROUTES + 1];
static int n_routes;

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

void metrics_observe(int route, int status, int64_t duration_us)
{
    struct route_stats *r;
    double secs = (double)duration_us / 1e6;
    size_t b;

    if (route < 0 || route > METRICS_MAX_ROUTES)
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
    for (i = 0; i <= METRICS_MAX_ROUTES; i++) {
        if (routes[i].pattern == NULL)
            continue;
        for (s = 100; s < 600; s++) {
            uint64_t n = atomic_load_explicit(&routes[i].by_status[s], memory_order_relaxed);

            if (n)
                buf_printf(out,
                           "trainyard_http_requests_total{method=\"%s\",route=\"%s\","
                           "status=\"%d\"} %llu\n",
                           routes[i].method, routes[i].pattern, s, (unsigned long long)n);
        }
    }
    buf_adds(out, "# HELP trainyard_http_request_duration_seconds HTTP request latency.\n"
                  "# TYPE trainyard_http_request_duration_seconds histogram\n");
    for (i = 0; i <= METRICS_MAX_ROUTES; i++) {
        uint64_t cumulative = 0;
        uint64_t count;

        if (routes[i].pattern == NULL)
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
                           routes[i].method, routes[i].pattern, bucket_bounds[b],
                           (unsigned long long)cumulative);
            else
                buf_printf(out,
                           "trainyard_http_request_duration_seconds_bucket{method=\"%s\","
                           "route=\"%s\",le=\"+Inf\"} %llu\n",
                           routes[i].method, routes[i].pattern, (unsigned long long)cumulative);
        }
        buf_printf(out,
                   "trainyard_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} "
                   "%.6f\n",
                   routes[i].method, routes[i].pattern,
                   (double)atomic_load_explicit(&routes[i].sum_us, memory_order_relaxed) / 1e6);
        buf_printf(out,
                   "trainyard_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} "
                   "%llu\n",
                   routes[i].method, routes[i].pattern, (unsigned long long)count);
    }
}
