/*
 * earlystop.h - early termination of sweep trials (issue 12): HyperDrive's
 * bandit, median stopping and truncation selection, and asynchronous
 * successive halving (ASHA, Li et al. 2020). A policy's state is built
 * from the primary metric's reports in the order they arrived; each
 * report gets a verdict at once. Pure: any thread, no I/O.
 *
 * A trial's k-th report of the primary metric (k from 1) is its interval k.
 * HyperDrive's rules apply at intervals k with k > delay_evaluation and
 * k % evaluation_interval == 0; ASHA's rungs are on the report's step:
 * min_resource * reduction_factor^i. "Worse" is below when the goal is
 * to maximize, above when it is to minimize. A trial is stopped:
 *   bandit: when its value at k is worse than best / (1 + slack_factor)
 *     (maximize; best * (1 + slack_factor) to minimize) or best -+
 *     slack_amount, best = the best value any trial (itself and ended
 *     ones included) reported at interval k;
 *   median_stopping: when its best value up to k is worse than the median
 *     of the running averages (mean of reports 1..k) of the other trials
 *     that reached k (none: no verdict);
 *   truncation_selection: when its value at k is among the worst
 *     floor(n * truncation_percentage / 100) of the n values at k (its own
 *     included, ended trials' left out with exclude_finished_runs); ties
 *     with the last kept value are kept;
 *   asha (as Ray Tune's AsyncHyperBandScheduler): when a report's step
 *     first reaches a rung (the highest one at or below the step, above
 *     the trial's last; rungs jumped over are skipped) and its value is
 *     worse than the (1 - 1/reduction_factor) quantile (linear
 *     interpolation) of the values recorded at that rung before it; the
 *     value is then recorded there. evaluation_interval and
 *     delay_evaluation do not apply.
 * Values recorded stay when their trial is stopped or ends (except as
 * said for exclude_finished_runs). One es_state is used by one thread at
 * a time.
 */
#ifndef TRAINYARD_SCHEDULER_EARLYSTOP_H
#define TRAINYARD_SCHEDULER_EARLYSTOP_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "scheduler/sweepspace.h"

enum es_kind {
    ES_NONE,
    ES_BANDIT,
    ES_MEDIAN_STOPPING,
    ES_TRUNCATION_SELECTION,
    ES_ASHA,
};

struct es_policy {
    enum es_kind kind;
    int evaluation_interval; /* 1..1,000,000, default 1 */
    int delay_evaluation; /* 0..1,000,000, default 0 */
    /* bandit: exactly one of slack_factor (0..1e9] / slack_amount (0..1e300] */
    bool has_slack_factor;
    double slack_factor;
    double slack_amount;
    /* truncation_selection */
    double truncation_percentage; /* 1..99 */
    bool exclude_finished_runs;
    /* asha */
    int64_t min_resource; /* 1..2^53, default 1 */
    double reduction_factor; /* 1.01..100, default 3 */
};

/*
 * Parses the sweep's "early_termination" (null or absent: ES_NONE; else
 * {"policy": "bandit" | "median_stopping" | "truncation_selection" |
 * "asha", and that policy's fields}). 0, or ERR_INVALID with *err naming
 * the field ("early_termination.slack_factor").
 */
int es_policy_parse(const cJSON *in, struct es_policy *ret_policy, struct sweep_error *err);
/* The policy as JSON (null for ES_NONE), every field filled. */
cJSON *es_policy_json(const struct es_policy *policy);
/* "none", "bandit", "median_stopping", "truncation_selection", "asha". */
const char *es_kind_name(enum es_kind kind);

/* Why a trial was stopped, with the numbers that decided it. */
struct es_verdict {
    bool stop;
    int interval; /* the trial's report count */
    int64_t step;
    double value; /* what the trial reported */
    double threshold; /* the value it had to reach (not be worse than); NaN
                       * when no rule applied (message says why) */
    char message[256]; /* the rule in words, with the numbers */
};
/* The verdict as JSON: {"policy", "interval", "step", "value",
 * "threshold", "message"}. */
cJSON *es_verdict_json(const struct es_policy *policy, const struct es_verdict *v);

struct es_state;

/* The state of a sweep of at most max_trials trials; maximize is the
 * primary metric's goal. */
struct es_state *es_new(const struct es_policy *policy, bool maximize, int max_trials);
void es_free(struct es_state *es);
/*
 * Trial (0 <= trial < max_trials) reported value at step. Fills *ret and
 * returns ret->stop: whether the policy stops the trial now. A stopped or
 * ended trial's later reports are ignored (stop false). A NaN value
 * counts as the worst value there is. About 10 us or less per report with
 * 1,000 trials (a binary search and a memmove of at most max_trials
 * doubles; memory grows with the reports: a double per report per
 * interval, plus a copy per report with exclude_finished_runs).
 */
bool es_report(struct es_state *es, int trial, int64_t step, double value, struct es_verdict *ret);
/* The trial ended by itself (succeeded or failed): it reports no more;
 * truncation selection with exclude_finished_runs leaves it out. A no-op
 * for a trial the policy stopped: its values keep counting (a stopped
 * trial is not a finished run). */
void es_trial_ended(struct es_state *es, int trial);

#endif
