/*
 * sweepspace.h - a sweep's parameter space (issue 12): the expressions of
 * HyperDrive (choice, randint, uniform, quniform, loguniform, qloguniform,
 * normal, qnormal, lognormal, qlognormal) parsed once into C, and the
 * grid and random samplers over them. Pure functions: any thread.
 *
 * A point of the space is an array of doubles, one per parameter in the
 * order of sweep_space.params: for choice the index of the value chosen,
 * for every other kind the value itself (randint and q-kinds already
 * rounded). Samplers work on points; the API and the runs see values
 * (sweep_space_to_json()).
 */
#ifndef TRAINYARD_SCHEDULER_SWEEPSPACE_H
#define TRAINYARD_SCHEDULER_SWEEPSPACE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most parameters one sweep may have. */
#define SWEEP_MAX_PARAMS 64
/* The most values one choice may have. */
#define SWEEP_MAX_CHOICES 1000
/* Normal kinds are cut at mu +- this many sigmas (a draw past it has a
 * probability below 1e-32), so that their values and the TPE's kernels
 * stay finite and lognormal's exp() cannot overflow. */
#define SWEEP_NORMAL_CUT 12.0

enum sweep_expr {
    SWEEP_CHOICE, /* choice([v, ...]): numbers or strings */
    SWEEP_RANDINT, /* randint(upper): an integer in [0, upper) */
    SWEEP_UNIFORM, /* uniform(lo, hi) */
    SWEEP_QUNIFORM, /* quniform(lo, hi, q) = round(uniform(lo, hi) / q) * q */
    SWEEP_LOGUNIFORM, /* loguniform(lo, hi) = exp(uniform(lo, hi)) */
    SWEEP_QLOGUNIFORM, /* qloguniform(lo, hi, q) = round(exp(uniform(lo, hi)) / q) * q */
    SWEEP_NORMAL, /* normal(mu, sigma) */
    SWEEP_QNORMAL, /* qnormal(mu, sigma, q) */
    SWEEP_LOGNORMAL, /* lognormal(mu, sigma) = exp(normal(mu, sigma)) */
    SWEEP_QLOGNORMAL, /* qlognormal(mu, sigma, q) */
};

struct sweep_param {
    char *name; /* a script_params key ("--lr") or "env:NAME" */
    enum sweep_expr expr;
    double a, b; /* lo, hi or mu, sigma; randint: b = upper (a = 0) */
    double q; /* q-kinds; 0 otherwise */
    cJSON *choices; /* choice: the array of values (owned); NULL otherwise */
    int n_choices;
};

struct sweep_space {
    struct sweep_param *params;
    int n_params;
};

/* Where a spec is wrong: the field ("parameters.--lr") and why. */
struct sweep_error {
    char field[160]; /* "parameters." and a name of up to 128 bytes */
    char message[256];
};

/*
 * Parses the sweep's "parameters" object (name -> {"expr": [args]}) into
 * *ret_space. Returns 0, or ERR_INVALID with *err filled (field named
 * "parameters" or "parameters.<name>") and nothing allocated.
 */
int sweep_space_parse(const cJSON *parameters, struct sweep_space *ret_space,
                      struct sweep_error *err);
void sweep_space_release(struct sweep_space *space);
/* The parameters back as JSON, in the shape sweep_space_parse() reads. */
cJSON *sweep_space_json(const struct sweep_space *space);

/* The number of points of a grid over space: the product of the choices'
 * sizes, or -1 when a parameter is not a choice or the product is past
 * limit. */
int64_t sweep_space_grid_size(const struct sweep_space *space, int64_t limit);
/* The k-th point of the grid (0 <= k < grid size), in a fixed order. */
void sweep_space_grid_point(const struct sweep_space *space, int64_t k, double *ret_x);
/* The k-th random point of a sweep with seed: the same (seed, k), the
 * same point, whatever was sampled before. */
void sweep_space_random_point(const struct sweep_space *space, uint64_t seed, int64_t k,
                              double *ret_x);

/* The point as {"name": value, ...}: choice values as given, others as
 * numbers. */
cJSON *sweep_space_to_json(const struct sweep_space *space, const double *x);
/* The point of values (sweep_space_to_json()'s shape). ERR_INVALID when a
 * parameter is missing, a key is not a parameter, or a value is not one
 * the space can take (a q-kind's value off its grid of q, a bounded
 * kind's outside its bounds); *ret_x is written only on success. */
int sweep_space_from_json(const struct sweep_space *space, const cJSON *values, double *ret_x);

/* The expression's name ("loguniform"). */
const char *sweep_expr_name(enum sweep_expr expr);
/* loguniform, qloguniform, lognormal, qlognormal: sampled as exp(t). */
bool sweep_expr_is_log(enum sweep_expr expr);
/* normal, qnormal, lognormal, qlognormal: a = mu, b = sigma. */
bool sweep_expr_is_normal(enum sweep_expr expr);
/* The q-kinds. */
bool sweep_expr_is_q(enum sweep_expr expr);
/* round(v / q) * q through 15 significant digits (0.3, not
 * 0.30000000000000004), never -0: every q-kind value goes through it. */
double sweep_quantize(double v, double q);

struct sweep_rng;
/* One random value of p from its prior, as a point coordinate (choice:
 * an index). */
double sweep_param_sample(const struct sweep_param *p, struct sweep_rng *rng);
/* The value of a non-choice, non-randint p for t, the variable its
 * expression draws before exp() and rounding (uniform's or normal's). */
double sweep_param_value(const struct sweep_param *p, double t);

/* A deterministic 64-bit generator (splitmix64 seeding xoshiro256**). */
struct sweep_rng {
    uint64_t s[4];
};
void sweep_rng_seed(struct sweep_rng *rng, uint64_t seed, uint64_t stream);
uint64_t sweep_rng_next(struct sweep_rng *rng);
/* Uniform in [0, 1). */
double sweep_rng_uniform(struct sweep_rng *rng);
/* Standard normal. */
double sweep_rng_normal(struct sweep_rng *rng);

#endif
