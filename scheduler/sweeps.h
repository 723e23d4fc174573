/*
 * sweeps.h - the sweep driver (issue 12), run by the scheduler thread: it
 * keeps each running sweep's sampler and early termination state in
 * memory, rebuilt from the store at start (trials and their primary
 * metric's points, in arrival order), and in each step stops the trials
 * its policy names, creates trials up to max_concurrent_runs and ends
 * sweeps that are done. Scheduler thread only.
 */
#ifndef TRAINYARD_SCHEDULER_SWEEPS_H
#define TRAINYARD_SCHEDULER_SWEEPS_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct sweeps;

struct sweeps *sweeps_new(struct store *store);
void sweeps_free(struct sweeps *sw);
/* One step at now_ms. Returns true when it created or stopped runs (a
 * placement pass should follow). */
bool sweeps_step(struct sweeps *sw, int64_t now_ms);
/* Whether any sweep is running (as of the last step). */
bool sweeps_active(const struct sweeps *sw);

#endif
