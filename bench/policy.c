/*
 * policy.c (bench) - S1, the early termination half: the cost of one
 * report of the primary metric to a policy (scheduler/earlystop.c) in a
 * sweep of 1,000 trials that report 100 times each, in lockstep (every
 * trial's k-th report, then every trial's (k+1)-th). Each trial follows a
 * noisy learning curve of its own height, so the policies stop some
 * trials as they would in a sweep; a stopped trial reports no more, and
 * the time is divided by the reports made (the loop around es_report()
 * included). This thread's CPU time; the best of three runs.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/json.h"
#include "scheduler/earlystop.h"
#include "common/banned.h"

#define TRIALS 1000
#define REPORTS 100
#define RUNS 3

static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A fixed generator, so every run sees the same curves. */
static double uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* One sweep over the curves (value[t][k - 1]): returns seconds of CPU,
 * and the reports made and trials stopped. */
static double sweep(const struct es_policy *policy, double (*value)[REPORTS], long *ret_reports,
                    int *ret_stopped)
{
    struct es_state *es = es_new(policy, true, TRIALS);
    static bool stopped[TRIALS];
    long reports = 0;
    int n_stopped = 0;
    double start;
    double spent;
    int k;
    int t;

    for (t = 0; t < TRIALS; t++)
        stopped[t] = false;
    start = cpu_s();
    for (k = 1; k <= REPORTS; k++) {
        for (t = 0; t < TRIALS; t++) {
            struct es_verdict v;

            if (stopped[t])
                continue;
            stopped[t] = es_report(es, t, k, value[t][k - 1], &v);
            reports++;
            n_stopped += stopped[t];
        }
    }
    spent = cpu_s() - start;
    es_free(es);
    *ret_reports = reports;
    *ret_stopped = n_stopped;
    return spent;
}

int main(void)
{
    static const char *const policies[] = {
        "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"delay_evaluation\": 5}",
        "{\"policy\": \"median_stopping\", \"delay_evaluation\": 5}",
        "{\"policy\": \"truncation_selection\", \"truncation_percentage\": 20, "
        "\"delay_evaluation\": 5}",
        "{\"policy\": \"asha\", \"min_resource\": 1, \"reduction_factor\": 3}",
    };
    static double value[TRIALS][REPORTS];
    uint64_t seed = 7;
    size_t i;
    int t;
    int k;

    /* Trial t learns towards its own height in [0.5, 1), with noise. */
    for (t = 0; t < TRIALS; t++) {
        double height = 0.5 + 0.5 * uniform(&seed);

        for (k = 1; k <= REPORTS; k++)
            value[t][k - 1] = height * (1 - exp(-k / 20.0)) + 0.02 * (uniform(&seed) - 0.5);
    }
    for (i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        cJSON *in = json_parse_trusted(policies[i]);
        struct es_policy p;
        struct sweep_error err;
        double best = INFINITY;
        long reports = 0;
        int stopped = 0;
        int run;

        if (es_policy_parse(in, &p, &err) != 0) {
            fprintf(stderr, "policy: %s: %s\n", err.field, err.message);
            return 1;
        }
        cJSON_Delete(in);
        for (run = 0; run < RUNS; run++) {
            double s = sweep(&p, value, &reports, &stopped);

            best = s < best ? s : best;
        }
        printf("S1 policy %s: %.0f ns per report (%d trials x %d reports)\n", es_kind_name(p.kind),
               best / (double)reports * 1e9, TRIALS, REPORTS);
        fprintf(stderr, "  (%ld reports made, %d trials stopped)\n", reports, stopped);
    }
    return 0;
}
