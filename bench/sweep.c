/*
 * sweep.c (bench) - S1 and the in-process half of S2 (issue 12), with the
 * scheduler's own code (scheduler/sweepspace.c, scheduler/tpe.c):
 *
 *   S1: the CPU time tpe_suggest() takes to propose a trial with 1,000
 *       finished observations in a 10-parameter space that mixes every
 *       kind of expression (p50 and max over 200 proposals).
 *   S2: the median over 10 seeds of the best value found in 50 trials by
 *       the TPE and by the random sampler on Branin, Hartmann-6 and a
 *       10-dimensional Rosenbrock with 3 choice dimensions, run in-process
 *       (bench/sweep_optuna.py runs Optuna's TPESampler on the same
 *       functions and spaces). The real S2 runs trials through the server.
 *
 * Usage: sweep [s1|s2 [SEEDS]] (both without an argument; s2 over 10
 * seeds unless told).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/xalloc.h"
#include "scheduler/sweepspace.h"
#include "scheduler/tpe.h"
#include "common/banned.h"

#define TRIALS 50
#define SEEDS 10
#define MAX_SEEDS 1000

/* This thread's CPU time: on a shared VM the wall time also counts what
 * the hypervisor and other processes took from the core. */
static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void parse_space(const char *text, struct sweep_space *space)
{
    cJSON *json = json_parse_trusted(text);
    struct sweep_error err;

    if (sweep_space_parse(json, space, &err) != 0) {
        fprintf(stderr, "sweep: %s: %s\n", err.field, err.message);
        exit(1);
    }
    cJSON_Delete(json);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- S1 ---- */

static const char s1_space[] = "{\"lr\": {\"loguniform\": [-9, -2]},"
                               " \"batch\": {\"choice\": [16, 32, 64, 128, 256]},"
                               " \"layers\": {\"randint\": [8]},"
                               " \"dropout\": {\"uniform\": [0, 0.5]},"
                               " \"hidden\": {\"quniform\": [32, 1024, 32]},"
                               " \"momentum\": {\"normal\": [0.9, 0.03]},"
                               " \"warmup\": {\"qloguniform\": [0, 7, 10]},"
                               " \"epochs\": {\"qnormal\": [20, 5, 1]},"
                               " \"scale\": {\"lognormal\": [0, 1]},"
                               " \"env:OPTIMIZER\": {\"choice\": [\"sgd\", \"adam\", \"adamw\"]}}";

static void s1(void)
{
    enum { N_OBS = 1000, RUNS = 200 };
    struct sweep_space space;
    struct tpe_obs *obs = xcalloc(N_OBS, sizeof(*obs));
    double *xs;
    double times[RUNS];
    double x[SWEEP_MAX_PARAMS];
    double worst = 0;
    int i;
    int j;

    parse_space(s1_space, &space);
    xs = xcalloc((size_t)N_OBS * (size_t)space.n_params, sizeof(double));
    for (i = 0; i < N_OBS; i++) {
        double *p = xs + (size_t)i * (size_t)space.n_params;
        double loss = 0;

        sweep_space_random_point(&space, 7, i, p);
        /* A loss that depends on every parameter. */
        for (j = 0; j < space.n_params; j++)
            loss += sin(p[j] * (j + 1) * 0.37);
        obs[i].x = p;
        obs[i].loss = loss;
    }
    for (i = 0; i < RUNS; i++) {
        double t0 = cpu_s();

        tpe_suggest(&space, obs, N_OBS, 42, N_OBS + i, x);
        times[i] = (cpu_s() - t0) * 1e3;
        if (times[i] > worst)
            worst = times[i];
    }
    printf("S1 tpe propose n=1000 d=10: %.3f ms p50, %.3f ms max\n", median(times, RUNS), worst);
    free(xs);
    free(obs);
    sweep_space_release(&space);
}

/* ---- S2 ---- */

static double value(const struct sweep_space *space, const double *x, int i)
{
    const struct sweep_param *p = &space->params[i];

    if (p->expr == SWEEP_CHOICE)
        return cJSON_GetArrayItem(p->choices, (int)x[i])->valuedouble;
    return x[i];
}

static double branin(const struct sweep_space *space, const double *x)
{
    double x1 = value(space, x, 0);
    double x2 = value(space, x, 1);
    double b = 5.1 / (4 * M_PI * M_PI);
    double c = 5 / M_PI;
    double t = 1 / (8 * M_PI);
    double u = x2 - b * x1 * x1 + c * x1 - 6;

    return u * u + 10 * (1 - t) * cos(x1) + 10;
}

static double hartmann6(const struct sweep_space *space, const double *x)
{
    static const double alpha[4] = { 1.0, 1.2, 3.0, 3.2 };
    static const double a[4][6] = { { 10, 3, 17, 3.5, 1.7, 8 },
                                    { 0.05, 10, 17, 0.1, 8, 14 },
                                    { 3, 3.5, 1.7, 10, 17, 8 },
                                    { 17, 8, 0.05, 10, 0.1, 14 } };
    static const double p[4][6] = { { 0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886 },
                                    { 0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991 },
                                    { 0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650 },
                                    { 0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381 } };
    double y = 0;
    int i;
    int j;

    for (i = 0; i < 4; i++) {
        double s = 0;

        for (j = 0; j < 6; j++) {
            double d = value(space, x, j) - p[i][j];

            s += a[i][j] * d * d;
        }
        y -= alpha[i] * exp(-s);
    }
    return y;
}

static double rosenbrock(const struct sweep_space *space, const double *x)
{
    double y = 0;
    int i;

    for (i = 0; i + 1 < space->n_params; i++) {
        double a = value(space, x, i);
        double b = value(space, x, i + 1);

        y += 100 * (b - a * a) * (b - a * a) + (1 - a) * (1 - a);
    }
    return y;
}

/* The spaces bench/sweep_optuna.py builds too (keep them the same). */
static const struct {
    const char *name;
    const char *space;
    double (*f)(const struct sweep_space *, const double *);
    double optimum;
} functions[] = {
    { "branin", "{\"x1\": {\"uniform\": [-5, 10]}, \"x2\": {\"uniform\": [0, 15]}}", branin,
      0.397887 },
    { "hartmann6",
      "{\"x1\": {\"uniform\": [0, 1]}, \"x2\": {\"uniform\": [0, 1]},"
      " \"x3\": {\"uniform\": [0, 1]}, \"x4\": {\"uniform\": [0, 1]},"
      " \"x5\": {\"uniform\": [0, 1]}, \"x6\": {\"uniform\": [0, 1]}}",
      hartmann6, -3.32237 },
    { "rosenbrock10",
      "{\"x0\": {\"uniform\": [-2, 2]}, \"x1\": {\"uniform\": [-2, 2]},"
      " \"x2\": {\"choice\": [-2, -1, -0.5, 0, 0.5, 1, 1.5, 2]},"
      " \"x3\": {\"uniform\": [-2, 2]}, \"x4\": {\"uniform\": [-2, 2]},"
      " \"x5\": {\"choice\": [-2, -1, -0.5, 0, 0.5, 1, 1.5, 2]},"
      " \"x6\": {\"uniform\": [-2, 2]}, \"x7\": {\"uniform\": [-2, 2]},"
      " \"x8\": {\"choice\": [-2, -1, -0.5, 0, 0.5, 1, 1.5, 2]},"
      " \"x9\": {\"uniform\": [-2, 2]}}",
      rosenbrock, 0 },
};

/* The best value of one 50-trial sweep. */
static double run_sweep(const struct sweep_space *space,
                        double (*f)(const struct sweep_space *, const double *), uint64_t seed,
                        int tpe)
{
    struct tpe_obs obs[TRIALS];
    double xs[TRIALS][SWEEP_MAX_PARAMS];
    double best = INFINITY;
    int k;

    for (k = 0; k < TRIALS; k++) {
        if (tpe)
            tpe_suggest(space, obs, (size_t)k, seed, k, xs[k]);
        else
            sweep_space_random_point(space, seed, k, xs[k]);
        obs[k].x = xs[k];
        obs[k].loss = f(space, xs[k]);
        obs[k].running = false;
        if (obs[k].loss < best)
            best = obs[k].loss;
    }
    return best;
}

static void s2(int n_seeds)
{
    size_t fi;

    for (fi = 0; fi < sizeof(functions) / sizeof(functions[0]); fi++) {
        struct sweep_space space;
        double tpe[MAX_SEEDS];
        double rnd[MAX_SEEDS];
        int s;

        parse_space(functions[fi].space, &space);
        for (s = 0; s < n_seeds; s++) {
            tpe[s] = run_sweep(&space, functions[fi].f, (uint64_t)s, 1);
            rnd[s] = run_sweep(&space, functions[fi].f, (uint64_t)s, 0);
        }
        printf("S2 in-process %s: tpe %.4f, random %.4f (median best of %d seeds x %d trials;"
               " optimum %g)\n",
               functions[fi].name, median(tpe, n_seeds), median(rnd, n_seeds), n_seeds, TRIALS,
               functions[fi].optimum);
        sweep_space_release(&space);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "s1") == 0)
        s1();
    if (argc < 2 || strcmp(argv[1], "s2") == 0) {
        int n_seeds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : SEEDS;

        s2(n_seeds < 1 || n_seeds > MAX_SEEDS ? SEEDS : n_seeds);
    }
    return 0;
}
