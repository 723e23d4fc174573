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
 * nodes' usage in state as it goes. *ret_placements gets the placements
 * for store_sched_place() (release them with sched_placements_release();
 * they borrow strings from state); *ret_reasons an object run id -> why it
 * waits, for the runs whose reason differs from the one they have
 * ("reason").
 */
void placement_pass(struct sched_state *state, struct sched_placements *ret_placements,
                    cJSON **ret_reasons);

#endif
