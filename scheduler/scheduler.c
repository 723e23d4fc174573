/*
 * scheduler.c - the scheduler thread: a libuv loop with a wake-up async,
 * a tick timer and an HTTP client to the agents. A pass: expire (node
 * timeouts, deadlines), a step of the sweeps (scheduler/sweeps.h: at most
 * every 100 ms), place the queue, then empty the outbox (push
 * assignments, send stops). Passes coalesce: a kick during a pass runs
 * one more pass after it, never two at once.
 */
#include "scheduler/scheduler.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/stall.h"
#include "common/timeutil.h"
#include "common/uvcurl.h"
#include "common/xalloc.h"
#include "scheduler/mirror.h"
#include "scheduler/placement.h"
#include "scheduler/sweeps.h"
#include "store/store.h"

#define uthash_malloc(sz) xmalloc(sz)
#include <uthash.h>

#include "common/banned.h"

/* A push or stop in flight; its task id keeps it from being sent twice.
 * Flights are found by task id (uthash: a fixed table of chains made
 * B3's 100,000 pushes a strcmp walk each). */
struct flight {
    struct scheduler *sched;
    char *task_id;
    bool is_stop;
    bool done; /* answered; kept to space out retries, or until its ack is written */
    uint64_t retry_at; /* loop time (ms) before which it is not sent again */
    UT_hash_handle hh; /* in sched->flights[is_stop] */
};

/* Accepted pushes are written at most this long after the first of a
 * batch is answered: each write waits for its commit (an fsync with
 * synchronous=full), and B3's 100,000 answers came a few at a time. */
#define ACK_BATCH_MS 50

/* A failed push or stop is tried again after this long. */
#define RETRY_MS 1000

struct scheduler {
    struct scheduler_config cfg;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    int64_t last_tick_ms; /* monotonic, when the tick last fired */
    uv_timer_t soon;
    uv_thread_t thread;
    struct uvcurl *http;
    struct flight *flights[2]; /* pushes, stops */
    /* Accepted pushes whose "pushed" is not yet written: written together
     * once the loop has handled the responses at hand (one commit for
     * many, instead of the scheduler thread waiting on one per task). */
    struct flight **acked;
    size_t n_acked;
    size_t cap_acked;
    uv_timer_t ack_timer;
    struct sweeps *sweeps;
    int64_t last_sweep_ms; /* when the sweeps last took a step */
    uv_timer_t sweep_timer; /* the next step while sweeps run */
    struct mirror *mirror; /* read at the first pass */
    /* A view asked for by another thread (scheduler_view), one at a time. */
    pthread_mutex_t view_lock; /* held by the asking thread for the whole call */
    pthread_mutex_t view_mu;
    pthread_cond_t view_cv;
    struct view_request *view;
    uint64_t last_pass; /* loop time of the last pass */
    uint64_t pass_ms; /* how long it took */
    bool stopping;
};

/* Kicked passes run at most this often (ms). */
#define PASS_GAP_MS 5
/* Sweeps take a step at most this often (ms), and at least this often
 * while one runs: a policy's verdict waits at most this long. */
#define SWEEP_GAP_MS 100

static void flight_free(struct flight *f);

/* True while a request for the task is in flight, or a failed one waits
 * out its retry delay. */
static bool in_flight(struct scheduler *s, const char *task_id, bool is_stop)
{
    struct flight *f;

    HASH_FIND_STR(s->flights[is_stop], task_id, f);
    if (f && f->done && uv_now(&s->loop) >= f->retry_at) {
        flight_free(f);
        return false;
    }
    return f != NULL;
}

/* Keeps a failed request's record until its retry time. */
static void flight_backoff(struct flight *f)
{
    f->done = true;
    f->retry_at = uv_now(&f->sched->loop) + RETRY_MS;
}

static struct flight *flight_new(struct scheduler *s, const char *task_id, bool is_stop)
{
    struct flight *f;

    /* Callers asked in_flight() first, which let an expired one go. */
    HASH_FIND_STR(s->flights[is_stop], task_id, f);
    assert(f == NULL);
    f = xcalloc(1, sizeof(*f));
    f->sched = s;
    f->task_id = xstrdup(task_id);
    f->is_stop = is_stop;
    HASH_ADD_KEYPTR(hh, s->flights[is_stop], f->task_id, strlen(f->task_id), f);
    return f;
}

static void flight_free(struct flight *f)
{
    HASH_DELETE(hh, f->sched->flights[f->is_stop], f);
    free(f->task_id);
    free(f);
}

/* Lets go of failed requests past their retry time, and has the mirror
 * give their tasks out again (a failed stop changed no row). */
static void flights_expire(struct scheduler *s)
{
    struct flight *f;
    struct flight *tmp;
    int k;

    for (k = 0; k < 2; k++) {
        HASH_ITER(hh, s->flights[k], f, tmp)
        {
            if (f->done && uv_now(&s->loop) >= f->retry_at) {
                if (s->mirror)
                    mirror_again(s->mirror, f->task_id);
                flight_free(f);
            }
        }
    }
}

/* Adds the time since *t to phase and moves *t to now. */
static void phase_done(enum metrics_sched_phase phase, int64_t *t)
{
    int64_t now = time_mono_us();

    metrics_sched_phase(phase, now - *t);
    *t = now;
}

/* Writes the accepted pushes at hand, then lets their flights go. */
static void on_ack_timer(uv_timer_t *t)
{
    struct scheduler *s = t->data;
    const char **ids = xcalloc(s->n_acked + 1, sizeof(*ids));
    int64_t start = time_mono_us();
    bool written;
    size_t i;

    for (i = 0; i < s->n_acked; i++)
        ids[i] = s->acked[i]->task_id;
    written = store_sched_pushed_ok(s->cfg.store, ids, s->n_acked) == 0;
    metrics_sched_pushed(s->n_acked);
    phase_done(METRICS_PHASE_ACK, &start);
    for (i = 0; i < s->n_acked; i++) {
        /* Not written: pushed again (the agent takes a task twice). */
        if (!written && s->mirror)
            mirror_again(s->mirror, s->acked[i]->task_id);
        flight_free(s->acked[i]);
    }
    s->n_acked = 0;
    free(ids);
}

static void flight_acked(struct flight *f)
{
    struct scheduler *s = f->sched;

    f->done = true;
    f->retry_at = UINT64_MAX; /* not sent again before it is written */
    if (s->n_acked == s->cap_acked) {
        s->cap_acked = s->cap_acked ? 2 * s->cap_acked : 64;
        s->acked = xrealloc(s->acked, s->cap_acked * sizeof(*s->acked));
    }
    s->acked[s->n_acked++] = f;
    if (!uv_is_active((uv_handle_t *)&s->ack_timer))
        uv_timer_start(&s->ack_timer, on_ack_timer, ACK_BATCH_MS, 0);
}

static void schedule_pass(struct scheduler *s);

static void on_pushed(void *arg, const struct uvcurl_response *resp)
{
    struct flight *f = arg;
    struct scheduler *s = f->sched;
    char error[300];

    if (resp->status == UVCURL_CANCELED) {
        flight_free(f);
        return;
    }
    if (resp->status >= 200 && resp->status < 300) {
        flight_acked(f);
        return;
    } else {
        if (resp->status)
            snprintf(error, sizeof(error), "the agent refused the task (HTTP %ld): %.200s",
                     resp->status, resp->body->data);
        else
            snprintf(error, sizeof(error), "cannot reach the agent: %s", resp->error);
        log_warn("scheduler: push of task '%s' failed: %s", f->task_id, error);
        metrics_sched_push_failed();
        store_sched_push_failed(s->cfg.store, f->task_id, error, time_now_ms());
        schedule_pass(s);
        flight_backoff(f);
        return;
    }
    flight_free(f);
}

static void on_stopped(void *arg, const struct uvcurl_response *resp)
{
    struct flight *f = arg;

    if (resp->status == UVCURL_CANCELED) {
        flight_free(f);
        return;
    }
    /* 404: the agent no longer has it, which is what a stop wants. */
    if ((resp->status >= 200 && resp->status < 300) || resp->status == 404) {
        if (store_sched_stopped(f->sched->cfg.store, f->task_id, resp->status == 404) < 0)
            mirror_again(f->sched->mirror, f->task_id);
    } else {
        log_warn("scheduler: stop of task '%s' failed: %s", f->task_id,
                 resp->error ? resp->error : "agent error");
        flight_backoff(f);
        return;
    }
    flight_free(f);
}

/* Is a request about this task already on its way? (For a stop, a push
 * counts too: the agent would answer 404 first and run the task after.) */
static bool on_the_way(void *arg, const char *task_id, bool is_stop)
{
    struct scheduler *s = arg;

    return in_flight(s, task_id, is_stop) || (is_stop && in_flight(s, task_id, false));
}

static void send_outbox(struct scheduler *s)
{
    cJSON *push;
    cJSON *stop;
    const cJSON *item;
    char url[2048];

    mirror_outbox(s->mirror, on_the_way, s, &push, &stop);
    cJSON_ArrayForEach(item, push) {
        const cJSON *task = json_get(item, "task");
        const char *id = json_get_string(task, "id");
        struct uvcurl_request req;
        struct flight *f;
        char *body;

        snprintf(url, sizeof(url), "%s/v1/tasks", json_get_string(item, "url"));
        body = json_print(task);
        memset(&req, 0, sizeof(req));
        req.method = "POST";
        req.url = url;
        req.bearer = json_get_string(item, "secret");
        req.content_type = "application/json";
        req.body = body;
        req.body_len = strlen(body);
        req.timeout_ms = 10000;
        f = flight_new(s, id, false);
        if (uvcurl_start(s->http, &req, on_pushed, f) < 0) {
            flight_free(f);
            mirror_again(s->mirror, id);
        }
        free(body);
    }
    cJSON_ArrayForEach(item, stop) {
        const char *id = json_get_string(item, "task");
        struct uvcurl_request req;
        struct flight *f;

        snprintf(url, sizeof(url), "%s/v1/tasks/%s", json_get_string(item, "url"), id);
        memset(&req, 0, sizeof(req));
        req.method = "DELETE";
        req.url = url;
        req.bearer = json_get_string(item, "secret");
        req.timeout_ms = 10000;
        f = flight_new(s, id, true);
        if (uvcurl_start(s->http, &req, on_stopped, f) < 0) {
            flight_free(f);
            mirror_again(s->mirror, id);
        }
    }
    cJSON_Delete(push);
    cJSON_Delete(stop);
}

/*
 * The node timeout, lengthened by the time this server was itself stalled
 * within it (and within that lengthening): heartbeats it failed to read
 * while stalled do not count against a node (issue 11: two slow requests
 * held the HTTP threads 18 s and a node was marked down).
 */
static int64_t liveness_timeout(int64_t node_timeout_ms)
{
    int64_t now = time_mono_us() / 1000;
    int64_t ext = stall_ms_since(now - node_timeout_ms);

    if (ext > 0)
        ext = stall_ms_since(now - node_timeout_ms - ext);
    if (ext > 0)
        log_debug("scheduler: the server stalled %lld ms lately; node timeout now %lld ms",
                  (long long)ext, (long long)(node_timeout_ms + ext));
    return node_timeout_ms + ext;
}

static void on_sweep_timer(uv_timer_t *t)
{
    schedule_pass(t->data);
}

/* The state in memory, read whole at the first pass and then kept by
 * what each commit changed. */
static bool mirror_ready(struct scheduler *s)
{
    if (s->mirror == NULL && mirror_new(s->cfg.store, &s->mirror) < 0)
        return false;
    return mirror_sync(s->mirror) == 0;
}

/* A pass. The time-driven rules run on ticks only: a kicked pass (a
 * heartbeat, a report) must not write for them, or late nodes' heartbeats
 * feed passes that write again (B12), and only when something is due. */
static void pass(struct scheduler *s, bool tick)
{
    int64_t now = time_now_ms();
    int64_t start_us = time_mono_us();
    int64_t t = start_us;

    uv_update_time(&s->loop);
    s->last_pass = uv_now(&s->loop);
    struct sched_state state;
    struct sched_placements placements;
    bool changed = false;
    int64_t timeout;
    int failed = 0;
    size_t placed_runs = 0;
    size_t placed_tasks = 0;

    if (!mirror_ready(s)) {
        log_warn("scheduler: cannot read the state; trying again at the next pass");
        return;
    }
    phase_done(METRICS_PHASE_READ, &t);
    timeout = liveness_timeout(s->cfg.node_timeout_ms);
    if (tick && mirror_expire_due(s->mirror, now, timeout))
        store_sched_expire(s->cfg.store, now, timeout, &changed);
    phase_done(METRICS_PHASE_EXPIRE, &t);
    /* Trials made here are placed by this pass. */
    if (now - s->last_sweep_ms >= SWEEP_GAP_MS || now < s->last_sweep_ms) {
        s->last_sweep_ms = now;
        sweeps_step(s->sweeps, now);
        if (sweeps_active(s->sweeps) && !uv_is_active((uv_handle_t *)&s->sweep_timer))
            uv_timer_start(&s->sweep_timer, on_sweep_timer, SWEEP_GAP_MS, 0);
    }
    phase_done(METRICS_PHASE_SWEEPS, &t);
    /* What the rules and the sweeps wrote. */
    mirror_sync(s->mirror);
    if (mirror_state(s->mirror, now, timeout, &state) == 0) {
        phase_done(METRICS_PHASE_READ, &t);
        placement_pass(&state, &placements);
        phase_done(METRICS_PHASE_PLACE, &t);
        mirror_placed(s->mirror, placements.n_runs);
        if (placements.n_runs > 0) {
            if (store_sched_place(s->cfg.store, &placements, now) == 0) {
                placed_runs = placements.n_runs;
                placed_tasks = placements.n_tasks;
            }
            log_info("scheduler: placed %zu run(s)", placements.n_runs);
        }
        phase_done(METRICS_PHASE_COMMIT, &t);
        store_sched_reasons(s->cfg.store, &placements, now);
        sched_placements_release(&placements);
    }
    mirror_state_release(&state);
    /* What this pass placed (for the outbox) and the reasons it wrote
     * (which runs are unschedulable). */
    mirror_sync(s->mirror);
    if (mirror_any_unschedulable(s->mirror) &&
        store_sched_unschedulable(s->cfg.store, now, s->cfg.unschedulable_timeout_ms, &failed) ==
            0 &&
        failed > 0)
        log_info("scheduler: failed %d unschedulable run(s)", failed);
    phase_done(METRICS_PHASE_REASONS, &t);
    send_outbox(s);
    phase_done(METRICS_PHASE_OUTBOX, &t);
    metrics_sched_pass(t - start_us, placed_runs, placed_tasks);
    uv_update_time(&s->loop);
    s->pass_ms = uv_now(&s->loop) - s->last_pass;
}

static void on_soon(uv_timer_t *t)
{
    pass(t->data, false);
}

/* Runs a pass soon, coalescing kicks: at once when the last pass started
 * long enough ago, else when it has. Long enough is PASS_GAP_MS, or twice
 * the last pass's duration when that is more: a cheap pass runs at once
 * (a submission's latency), a burst against a costly pass waits and is
 * placed by fewer passes. */
static void schedule_pass(struct scheduler *s)
{
    uint64_t now;
    uint64_t gap;
    uint64_t wait = 0;

    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) || uv_is_active((uv_handle_t *)&s->soon))
        return;
    /* Starts at least PASS_GAP_MS apart, and twice as long as the last
     * pass took: passes never take more than half of the thread. */
    gap = s->pass_ms * 2 > PASS_GAP_MS ? s->pass_ms * 2 : PASS_GAP_MS;
    now = uv_now(&s->loop);
    if (now < s->last_pass + gap)
        wait = s->last_pass + gap - now;
    uv_timer_start(&s->soon, on_soon, wait, 0);
}

static void on_tick(uv_timer_t *t)
{
    struct scheduler *s = t->data;
    int64_t now = time_mono_us() / 1000;

    /* A tick this late means the loop itself was stalled. */
    if (s->last_tick_ms > 0)
        stall_record(s->last_tick_ms + s->cfg.tick_ms, now);
    s->last_tick_ms = now;
    flights_expire(s);
    pass(s, true);
}

/* ---- views for other threads ---- */

struct view_request {
    bool check;
    struct scheduler_view *out;
    int rc;
    bool taken; /* by the scheduler thread: the asker waits for it */
    bool done;
};

static void answer_view(struct scheduler *s, struct view_request *v)
{
    struct mirror_counts c;
    struct buf diff;
    int n = 0;

    buf_init(&diff);
    v->rc = mirror_ready(s) ? 0 : ERR_INTERNAL;
    if (v->rc == 0 && v->check && (n = mirror_compare(s->mirror, &diff)) < 0)
        v->rc = ERR_INTERNAL;
    if (v->rc == 0) {
        mirror_counts(s->mirror, &c);
        *v->out = (struct scheduler_view){ c.nodes,  c.runs,  c.queued, c.tasks, c.held,
                                           c.outbox, c.stops, v->check, n,       NULL };
        if (n > 0)
            v->out->differences = xstrdup(diff.data);
    }
    buf_release(&diff);
}

static void take_view(struct scheduler *s)
{
    struct view_request *v;

    pthread_mutex_lock(&s->view_mu);
    v = s->view;
    if (v)
        v->taken = true;
    pthread_mutex_unlock(&s->view_mu);
    if (v == NULL)
        return;
    answer_view(s, v);
    pthread_mutex_lock(&s->view_mu);
    v->done = true;
    s->view = NULL;
    pthread_cond_signal(&s->view_cv);
    pthread_mutex_unlock(&s->view_mu);
}

int scheduler_view(struct scheduler *s, bool check, struct scheduler_view *ret_view)
{
    struct view_request v = { check, ret_view, ERR_UNAVAILABLE, false, false };
    struct timespec until;
    int64_t deadline = time_now_ms() + 30000;

    memset(ret_view, 0, sizeof(*ret_view));
    until.tv_sec = (time_t)(deadline / 1000);
    until.tv_nsec = (long)(deadline % 1000) * 1000000;
    pthread_mutex_lock(&s->view_lock);
    pthread_mutex_lock(&s->view_mu);
    s->view = &v;
    uv_async_send(&s->wake);
    while (!v.done && (pthread_cond_timedwait(&s->view_cv, &s->view_mu, &until) == 0 || v.taken))
        ;
    if (!v.done)
        s->view = NULL; /* not taken in time: no longer asked */
    pthread_mutex_unlock(&s->view_mu);
    pthread_mutex_unlock(&s->view_lock);
    return v.done ? v.rc : ERR_UNAVAILABLE;
}

void scheduler_view_release(struct scheduler_view *view)
{
    free(view->differences);
    view->differences = NULL;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_wake(uv_async_t *a)
{
    struct scheduler *s = a->data;
    size_t i;

    if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
        take_view(s);
        schedule_pass(s);
        return;
    }
    uvcurl_free(s->http);
    s->http = NULL;
    /* Accepted pushes are still written; what is left are failed
     * requests waiting to be retried. */
    uv_timer_stop(&s->ack_timer);
    on_ack_timer(&s->ack_timer);
    free(s->acked);
    s->acked = NULL;
    for (i = 0; i < 2; i++) {
        while (s->flights[i])
            flight_free(s->flights[i]);
    }
    uv_timer_stop(&s->tick);
    uv_timer_stop(&s->soon);
    uv_timer_stop(&s->sweep_timer);
    uv_close((uv_handle_t *)&s->sweep_timer, on_closed);
    uv_close((uv_handle_t *)&s->tick, on_closed);
    uv_close((uv_handle_t *)&s->soon, on_closed);
    uv_close((uv_handle_t *)&s->ack_timer, on_closed);
    uv_close((uv_handle_t *)&s->wake, on_closed);
}

static void thread_main(void *arg)
{
    struct scheduler *s = arg;

    pthread_setname_np(pthread_self(), "ty-scheduler");

    uv_run(&s->loop, UV_RUN_DEFAULT);
}

int scheduler_new(const struct scheduler_config *cfg, struct scheduler **ret_sched)
{
    struct scheduler *s = xcalloc(1, sizeof(*s));

    s->cfg = *cfg;
    if (s->cfg.tick_ms <= 0)
        s->cfg.tick_ms = 1000;
    if (uv_loop_init(&s->loop) != 0) {
        free(s);
        return ERR_INTERNAL;
    }
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_init(&s->loop, &s->soon);
    s->soon.data = s;
    uv_timer_init(&s->loop, &s->ack_timer);
    s->ack_timer.data = s;
    uv_timer_init(&s->loop, &s->sweep_timer);
    s->sweep_timer.data = s;
    s->sweeps = sweeps_new(s->cfg.store);
    pthread_mutex_init(&s->view_lock, NULL);
    pthread_mutex_init(&s->view_mu, NULL);
    pthread_cond_init(&s->view_cv, NULL);
    s->http = uvcurl_new(&s->loop);
    if (s->http == NULL)
        goto err;
    if (s->cfg.ca_file)
        uvcurl_set_ca(s->http, s->cfg.ca_file);
    uv_timer_start(&s->tick, on_tick, (uint64_t)s->cfg.tick_ms, (uint64_t)s->cfg.tick_ms);
    uv_timer_start(&s->soon, on_soon, 0, 0);
    if (uv_thread_create(&s->thread, thread_main, s) != 0)
        goto err;
    *ret_sched = s;
    return 0;
err:
    log_error("scheduler: cannot start");
    s->stopping = true;
    on_wake(&s->wake);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    sweeps_free(s->sweeps);
    pthread_mutex_destroy(&s->view_lock);
    pthread_mutex_destroy(&s->view_mu);
    pthread_cond_destroy(&s->view_cv);
    free(s);
    return ERR_INTERNAL;
}

void scheduler_free(struct scheduler *s)
{
    if (s == NULL)
        return;
    __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
    uv_async_send(&s->wake);
    uv_thread_join(&s->thread);
    if (uv_loop_close(&s->loop) != 0)
        log_warn("scheduler: loop closed with handles open");
    sweeps_free(s->sweeps);
    mirror_free(s->mirror);
    pthread_mutex_destroy(&s->view_lock);
    pthread_mutex_destroy(&s->view_mu);
    pthread_cond_destroy(&s->view_cv);
    free(s);
}

void scheduler_kick(struct scheduler *s)
{
    if (s)
        uv_async_send(&s->wake);
}
