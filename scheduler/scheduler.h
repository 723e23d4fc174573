/*
 * scheduler.h - placement and the push to agents. One thread runs a libuv
 * loop that owns the scheduler: it places queued runs' gangs on ready
 * nodes (all of a run's tasks at once or none), writes the placements,
 * pushes assignments and stops to the agents with libcurl (curl multi on
 * the same loop), and applies the time-driven rules (node timeouts, run
 * deadlines); and it drives sweeps: samples their trials and stops what
 * their early termination policy names. The store is the truth: the
 * thread keeps its state in memory (scheduler/mirror.h), kept by what each
 * commit changed; a pass reads what changed, decides, writes.
 *
 * scheduler_new/free: main thread. scheduler_kick: any thread.
 */
#ifndef TRAINYARD_SCHEDULER_H
#define TRAINYARD_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct scheduler;

struct scheduler_config {
    struct store *store; /* borrowed; outlives the scheduler */
    int64_t node_timeout_ms;
    /* A queued run no node of its pool could ever hold fails after this
     * long (0: in the pass that finds it). */
    int64_t unschedulable_timeout_ms;
    int64_t tick_ms; /* time-driven rules run at least this often */
    const char *ca_file; /* CA for agents' HTTPS certificates, or NULL */
};

/* Starts the scheduler thread. Returns 0 or ERR_INTERNAL (logged). */
int scheduler_new(const struct scheduler_config *cfg, struct scheduler **ret_sched);
/* Stops the thread (requests in flight are abandoned) and frees it. NULL is a no-op. */
void scheduler_free(struct scheduler *sched);
/* Something changed (a run submitted or canceled, a task reported, a node
 * joined): run a pass soon. Calls coalesce. */
void scheduler_kick(struct scheduler *sched);

/* What the scheduler holds in memory and, when checked, each way it
 * differs from a fresh read of the store (one line each). */
struct scheduler_view {
    int64_t nodes, runs, queued, tasks, held, outbox, stops;
    bool checked;
    int n_differences;
    char *differences; /* NULL when none */
};
/* Asks the scheduler thread, and waits (at most 30 s for it to start
 * answering): 0, ERR_UNAVAILABLE when it does not answer, ERR_INTERNAL
 * when the store cannot be read. Checking holds the store's commits
 * while the state in memory takes in what changed and the database is
 * read afresh, so the two are compared at one point. Any thread. */
int scheduler_view(struct scheduler *sched, bool check, struct scheduler_view *ret_view);
void scheduler_view_release(struct scheduler_view *view);

#endif
