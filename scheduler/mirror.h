/*
 * mirror.h - the scheduler's state in memory: every node, the runs not
 * ended and their tasks, the tasks that hold resources and those waiting
 * for a push or a stop, as C structs owned by the scheduler thread. It is
 * read whole from the store at start and then kept by the rows each
 * commit changed (store_changes_take()): a pass reads what changed, not
 * the queue. SQLite stays the durable log; the mirror is what a fresh read
 * of it would give (mirror_compare() checks that).
 *
 * One thread (the scheduler's).
 */
#ifndef TRAINYARD_SCHEDULER_MIRROR_H
#define TRAINYARD_SCHEDULER_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/buf.h"
#include "store/store.h"

struct mirror;

/* Reads the store's state. 0 or ERR_INTERNAL (logged). */
int mirror_new(struct store *store, struct mirror **ret_mirror);
void mirror_free(struct mirror *m);
/* Applies what commits changed since the last sync. 0 or ERR_INTERNAL
 * (then the next sync reads everything again). */
int mirror_sync(struct mirror *m);

/*
 * The input of a placement pass: the head of the queue (priority, then
 * age; at least 1,000 runs, more while passes place many, see
 * mirror_placed()) and the nodes of the pools they want,
 * ready or absent as of now with node_timeout_ms. It borrows from the
 * mirror: valid until the next mirror_sync(); release it with
 * mirror_state_release().
 */
int mirror_state(struct mirror *m, int64_t now_ms, int64_t node_timeout_ms,
                 struct sched_state *ret_state);
void mirror_state_release(struct sched_state *state);
/* The last pass placed n runs: the next head is twice that, within its
 * bounds. */
void mirror_placed(struct mirror *m, size_t n);

/*
 * Assignments to push: [{"task": {assignment}, "url", "secret", "node"}]
 * for assigned tasks not yet accepted by their agent, and stops to send:
 * [{"task", "url", "secret"}]. Those for which skip(arg, task id, is_stop)
 * is true (the caller's requests already on their way) are left out
 * before anything of them is built.
 */
void mirror_outbox(struct mirror *m, bool (*skip)(void *arg, const char *task_id, bool is_stop),
                   void *arg, cJSON **ret_push, cJSON **ret_stop);

/* The outbox hands each task it gives out once: it is not given again
 * until its row changes (the push was accepted, refused, the task ended,
 * a stop went through), or the caller says, when its request ended
 * without changing the row (a stop that failed, a request that could not
 * start), that the task should be looked at again. */
void mirror_again(struct mirror *m, const char *task_id);

/* Is a time-driven rule due (store_sched_expire): a node silent past its
 * timeout or down with live tasks, or a run past its deadline? */
bool mirror_expire_due(struct mirror *m, int64_t now_ms, int64_t node_timeout_ms);

/* Is any queued run unschedulable (its clock running)? Only then can
 * store_sched_unschedulable() have a run to fail. */
bool mirror_any_unschedulable(const struct mirror *m);

/* What the mirror holds. */
struct mirror_counts {
    int64_t nodes, runs, queued, tasks, held, outbox, stops;
};
void mirror_counts(const struct mirror *m, struct mirror_counts *ret);

/* Compares the mirror with a fresh read of the store: appends one line
 * per difference to out and returns how many (or ERR_INTERNAL). */
int mirror_compare(struct mirror *m, struct buf *out);

#endif
