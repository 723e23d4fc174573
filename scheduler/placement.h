/*
 * placement.h - deciding where a run's tasks go, as a pure function of the
 * cluster state (a sched_state, store/store.h): which distinct nodes, which
 * GPUs and ports, and each task's argv and environment (SPEC §4).
 * Any thread; no I/O.
 */
#ifndef TRAINYARD_PLACEMENT_H
#define TRAINYARD_PLACEMENT_H

#include <cjson/cJSON.h>

#include "store/store.h"

/*
 * Places every queued run of state that fits, in order, updating the
 * nodes' usage in state as it goes. *out gets the placements for
 * store_sched_place() and the new reasons of the runs that wait, for
 * store_sched_reasons(); release it with sched_placements_release(). It
 * borrows strings from state.
 */
void placement_pass(struct sched_state *state, struct sched_placements *out);

/*
 * Appends to a state built by hand (tests, benchmarks) a queued run with
 * the spec POST /runs would store for spec_input and the tasks it would
 * have, with ids "<id>-<name>". Returns 0, or ERR_INVALID when spec_input
 * is not a valid run spec (err, which may be NULL, says why).
 * store_sched_state_release() frees it.
 */
struct runspec_error;
int placement_add_run(struct sched_state *state, const char *id, int64_t attempt,
                      const cJSON *spec_input, struct runspec_error *err);

#endif
