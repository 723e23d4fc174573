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

/* The scheduler's passes: a histogram of their durations. */
static const double pass_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,  0.5,    1,     2.5,  5,     10 };
#define N_PASS_BUCKETS (sizeof(pass_bounds) / sizeof(pass_bounds[0]))
static _Atomic uint64_t pass_buckets[N_PASS_BUCKETS + 1]; /* the last is +Inf */
static _Atomic uint64_t pass_sum_us;
static _Atomic uint64_t pass_count;
static _Atomic uint64_t phase_us[METRICS_N_PHASES];
static const char *const phase_names[METRICS_N_PHASES] = { "expire", "sweeps",  "read",   "place",
                                                           "commit", "reasons", "outbox", "ack" };
static _Atomic uint64_t placed_runs_total;
static _Atomic uint64_t placed_tasks_total;
static _Atomic uint64_t pushed_tasks_total;
static _Atomic uint64_t push_failures_total;
static _Atomic uint64_t nodes_lost_total;

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

static void add_us(_Atomic uint64_t *to, int64_t us)
{
    atomic_fetch_add_explicit(to, (uint64_t)(us > 0 ? us : 0), memory_order_relaxed);
}

void metrics_sched_phase(enum metrics_sched_phase phase, int64_t duration_us)
{
    if ((unsigned)phase < METRICS_N_PHASES)
        add_us(&phase_us[phase], duration_us);
}

void metrics_sched_pass(int64_t duration_us, uint64_t placed_runs, uint64_t placed_tasks)
{
    double secs = (double)duration_us / 1e6;
    size_t b;

    for (b = 0; b < N_PASS_BUCKETS && secs > pass_bounds[b]; b++)
        ;
    atomic_fetch_add_explicit(&pass_buckets[b], 1, memory_order_relaxed);
    add_us(&pass_sum_us, duration_us);
    atomic_fetch_add_explicit(&pass_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&placed_runs_total, placed_runs, memory_order_relaxed);
    atomic_fetch_add_explicit(&placed_tasks_total, placed_tasks, memory_order_relaxed);
}

void metrics_sched_pushed(uint64_t tasks)
{
    atomic_fetch_add_explicit(&pushed_tasks_total, tasks, memory_order_relaxed);
}

void metrics_sched_push_failed(void)
{
    atomic_fetch_add_explicit(&push_failures_total, 1, memory_order_relaxed);
}

void metrics_nodes_lost(uint64_t nodes)
{
    atomic_fetch_add_explicit(&nodes_lost_total, nodes, memory_order_relaxed);
}

static uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void write_counter(struct buf *out, const char *name, const char *help, uint64_t v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
               (unsigned long long)v);
}

static void write_sched(struct buf *out)
{
    uint64_t cumulative = 0;
    size_t b;
    int i;

    buf_adds(out, "# HELP trainyard_scheduler_pass_seconds Duration of the scheduler's passes "
                  "(expire, sweeps, read, place, commit, reasons, outbox).\n"
                  "# TYPE trainyard_scheduler_pass_seconds histogram\n");
    for (b = 0; b <= N_PASS_BUCKETS; b++) {
        cumulative += load(&pass_buckets[b]);
        if (b < N_PASS_BUCKETS)
            buf_printf(out, "trainyard_scheduler_pass_seconds_bucket{le=\"%g\"} %llu\n",
                       pass_bounds[b], (unsigned long long)cumulative);
        else
            buf_printf(out, "trainyard_scheduler_pass_seconds_bucket{le=\"+Inf\"} %llu\n",
                       (unsigned long long)cumulative);
    }
    buf_printf(out, "trainyard_scheduler_pass_seconds_sum %.6f\n",
               (double)load(&pass_sum_us) / 1e6);
    buf_printf(out, "trainyard_scheduler_pass_seconds_count %llu\n",
               (unsigned long long)load(&pass_count));
    buf_adds(out, "# HELP trainyard_scheduler_phase_seconds_total The scheduler thread's time "
                  "by part of its work (ack: writing accepted pushes, between passes).\n"
                  "# TYPE trainyard_scheduler_phase_seconds_total counter\n");
    for (i = 0; i < METRICS_N_PHASES; i++)
        buf_printf(out, "trainyard_scheduler_phase_seconds_total{phase=\"%s\"} %.6f\n",
                   phase_names[i], (double)load(&phase_us[i]) / 1e6);
    write_counter(out, "trainyard_scheduler_placed_runs_total",
                  "Runs placed (all their tasks assigned to nodes).", load(&placed_runs_total));
    write_counter(out, "trainyard_scheduler_placed_tasks_total", "Tasks assigned to nodes.",
                  load(&placed_tasks_total));
    write_counter(out, "trainyard_scheduler_pushed_tasks_total",
                  "Assignments their agents accepted.", load(&pushed_tasks_total));
    write_counter(out, "trainyard_scheduler_push_failures_total",
                  "Pushes of assignments that failed (refused, unreachable, timed out); each is "
                  "tried again.",
                  load(&push_failures_total));
    write_counter(out, "trainyard_nodes_lost_total",
                  "Nodes marked down because their heartbeats stopped.", load(&nodes_lost_total));
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
    write_sched(out);
}
