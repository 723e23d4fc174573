/*
 * sweepspace.c - a sweep's parameter space: HyperDrive's expressions
 * parsed and checked, the grid and random samplers, points to and from
 * JSON values, and the generator every sampler draws from.
 */
#include "scheduler/sweepspace.h"

#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* The longest script_params key a parameter may name, and the longest
 * string a choice may hold. */
#define NAME_MAX_LEN 128
#define CHOICE_STRING_MAX 1024
/* The most steps of q a q-kind may span, so that its values stay exact
 * integers times q in a double. */
#define MAX_STEPS 1e15
#define NORMAL_CUT SWEEP_NORMAL_CUT
/* The largest exponent loguniform/lognormal may reach: exp(700) is finite. */
#define LOG_MAX 700.0

static const struct {
    const char *name;
    int n_args; /* 1: [upper], 2: [a, b], 3: [a, b, q]; 0: choice */
} kinds[] = {
    [SWEEP_CHOICE] = { "choice", 0 },         [SWEEP_RANDINT] = { "randint", 1 },
    [SWEEP_UNIFORM] = { "uniform", 2 },       [SWEEP_QUNIFORM] = { "quniform", 3 },
    [SWEEP_LOGUNIFORM] = { "loguniform", 2 }, [SWEEP_QLOGUNIFORM] = { "qloguniform", 3 },
    [SWEEP_NORMAL] = { "normal", 2 },         [SWEEP_QNORMAL] = { "qnormal", 3 },
    [SWEEP_LOGNORMAL] = { "lognormal", 2 },   [SWEEP_QLOGNORMAL] = { "qlognormal", 3 },
};
#define N_KINDS ((int)(sizeof(kinds) / sizeof(kinds[0])))

const char *sweep_expr_name(enum sweep_expr expr)
{
    if ((int)expr < 0 || (int)expr >= N_KINDS)
        return "?";
    return kinds[expr].name;
}

bool sweep_expr_is_log(enum sweep_expr expr)
{
    return expr == SWEEP_LOGUNIFORM || expr == SWEEP_QLOGUNIFORM || expr == SWEEP_LOGNORMAL ||
           expr == SWEEP_QLOGNORMAL;
}

bool sweep_expr_is_normal(enum sweep_expr expr)
{
    return expr == SWEEP_NORMAL || expr == SWEEP_QNORMAL || expr == SWEEP_LOGNORMAL ||
           expr == SWEEP_QLOGNORMAL;
}

bool sweep_expr_is_q(enum sweep_expr expr)
{
    return expr == SWEEP_QUNIFORM || expr == SWEEP_QLOGUNIFORM || expr == SWEEP_QNORMAL ||
           expr == SWEEP_QLOGNORMAL;
}

/* round(v / q) * q, written back through 15 significant digits so that
 * quniform(0, 1, 0.1) gives 0.3, not 0.30000000000000004; never -0. */
double sweep_quantize(double v, double q)
{
    char text[40];

    snprintf(text, sizeof(text), "%.15g", round(v / q) * q);
    return strtod(text, NULL) + 0.0;
}

/* ---- the generator ---- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sweep_rng_seed(struct sweep_rng *rng, uint64_t seed, uint64_t stream)
{
    /* Each of (seed, stream) goes through its own splitmix64 step before
     * they meet, so nearby seeds and nearby streams give unrelated states. */
    uint64_t a = seed;
    uint64_t b = stream ^ 0x6A09E667F3BCC909ull;
    uint64_t state = splitmix64(&a) ^ (splitmix64(&b) * 0xD1342543DE82EF95ull);
    int i;

    for (i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&state);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna, 2018). */
uint64_t sweep_rng_next(struct sweep_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sweep_rng_uniform(struct sweep_rng *rng)
{
    return (double)(sweep_rng_next(rng) >> 11) * 0x1.0p-53;
}

double sweep_rng_normal(struct sweep_rng *rng)
{
    /* Box-Muller, one of the pair: u1 in (0, 1] keeps log() finite. */
    double u1 = 1.0 - sweep_rng_uniform(rng);
    double u2 = sweep_rng_uniform(rng);

    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- parsing ---- */

static int fail(struct sweep_error *err, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct sweep_error *err, const char *name, const char *fmt, ...)
{
    va_list ap;

    if (name)
        snprintf(err->field, sizeof(err->field), "parameters.%s", name);
    else
        snprintf(err->field, sizeof(err->field), "parameters");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

static bool env_name_ok(const char *s)
{
    size_t i;

    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (i = 1; s[i]; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

static bool name_ok(const char *name)
{
    size_t len = strlen(name);
    size_t i;

    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    if (strncmp(name, "env:", 4) == 0)
        return env_name_ok(name + 4);
    for (i = 0; i < len; i++)
        if (!isprint((unsigned char)name[i]) || name[i] == '=')
            return false;
    return true;
}

static bool choice_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return a->valuedouble == b->valuedouble;
    if (cJSON_IsString(a) && cJSON_IsString(b))
        return strcmp(a->valuestring, b->valuestring) == 0;
    return false;
}

static int parse_choice(const char *name, const cJSON *args, struct sweep_param *p,
                        struct sweep_error *err)
{
    const cJSON *v;
    const cJSON *w;
    int n = 0;

    if (!cJSON_IsArray(args) || cJSON_GetArraySize(args) < 1)
        return fail(err, name, "choice needs a non-empty array of numbers or strings");
    if (cJSON_GetArraySize(args) > SWEEP_MAX_CHOICES)
        return fail(err, name, "choice has more than %d values", SWEEP_MAX_CHOICES);
    cJSON_ArrayForEach(v, args) {
        if (cJSON_IsNumber(v)) {
            if (!isfinite(v->valuedouble))
                return fail(err, name, "choice value %d is not a finite number", n);
        } else if (cJSON_IsString(v)) {
            if (strlen(v->valuestring) > CHOICE_STRING_MAX)
                return fail(err, name, "choice value %d is longer than %d bytes", n,
                            CHOICE_STRING_MAX);
        } else {
            return fail(err, name, "choice value %d is not a number or a string", n);
        }
        for (w = args->child; w != v; w = w->next)
            if (choice_equal(v, w))
                return fail(err, name, "choice value %d repeats an earlier one", n);
        n++;
    }
    p->choices = cJSON_Duplicate(args, true);
    p->n_choices = n;
    return 0;
}

/* Reads the n numeric arguments of a non-choice expression into args. */
static bool read_args(const cJSON *array, int n, double *args)
{
    const cJSON *v;
    int i = 0;

    if (!cJSON_IsArray(array) || cJSON_GetArraySize(array) != n)
        return false;
    cJSON_ArrayForEach(v, array) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return false;
        args[i++] = v->valuedouble;
    }
    return true;
}

static const char *const usage[] = {
    [SWEEP_CHOICE] = "",
    [SWEEP_RANDINT] = "randint needs [upper] with upper an integer >= 1",
    [SWEEP_UNIFORM] = "uniform needs [lo, hi] with lo < hi",
    [SWEEP_QUNIFORM] = "quniform needs [lo, hi, q] with lo < hi and q > 0",
    [SWEEP_LOGUNIFORM] = "loguniform needs [lo, hi] with lo < hi",
    [SWEEP_QLOGUNIFORM] = "qloguniform needs [lo, hi, q] with lo < hi and q > 0",
    [SWEEP_NORMAL] = "normal needs [mu, sigma] with sigma > 0",
    [SWEEP_QNORMAL] = "qnormal needs [mu, sigma, q] with sigma > 0 and q > 0",
    [SWEEP_LOGNORMAL] = "lognormal needs [mu, sigma] with sigma > 0",
    [SWEEP_QLOGNORMAL] = "qlognormal needs [mu, sigma, q] with sigma > 0 and q > 0",
};

/* The range of values (before rounding to q) a non-choice kind can take. */
static void value_range(const struct sweep_param *p, double *ret_lo, double *ret_hi)
{
    double lo = p->a;
    double hi = p->b;

    if (sweep_expr_is_normal(p->expr)) {
        lo = p->a - NORMAL_CUT * p->b;
        hi = p->a + NORMAL_CUT * p->b;
    }
    if (sweep_expr_is_log(p->expr)) {
        lo = exp(lo);
        hi = exp(hi);
    }
    *ret_lo = lo;
    *ret_hi = hi;
}

static int parse_numeric(const char *name, enum sweep_expr expr, const cJSON *array,
                         struct sweep_param *p, struct sweep_error *err)
{
    double args[3] = { 0, 0, 0 };
    double lo;
    double hi;

    if (!read_args(array, kinds[expr].n_args, args))
        return fail(err, name, "%s", usage[expr]);
    if (expr == SWEEP_RANDINT) {
        if (args[0] < 1 || args[0] > MAX_STEPS || args[0] != floor(args[0]))
            return fail(err, name, "%s", usage[expr]);
        p->a = 0;
        p->b = args[0];
        return 0;
    }
    p->a = args[0];
    p->b = args[1];
    p->q = kinds[expr].n_args == 3 ? args[2] : 0;
    if (sweep_expr_is_normal(expr) ? !(p->b > 0) : !(p->a < p->b))
        return fail(err, name, "%s", usage[expr]);
    if (kinds[expr].n_args == 3 && !(p->q > 0))
        return fail(err, name, "%s", usage[expr]);
    if (sweep_expr_is_normal(expr) &&
        (!isfinite(p->a - NORMAL_CUT * p->b) || !isfinite(p->a + NORMAL_CUT * p->b)))
        return fail(err, name, "%s needs mu +- %g sigma to be finite", kinds[expr].name,
                    NORMAL_CUT);
    if (sweep_expr_is_log(expr)) {
        lo = sweep_expr_is_normal(expr) ? p->a - NORMAL_CUT * p->b : p->a;
        hi = sweep_expr_is_normal(expr) ? p->a + NORMAL_CUT * p->b : p->b;
        if (lo < -LOG_MAX || hi > LOG_MAX)
            return fail(err, name,
                        sweep_expr_is_normal(expr)
                            ? "%s needs mu +- %g sigma within [-%g, %g] (exp() of it is finite)"
                            : "%s needs [lo, hi] within [-%g, %g] (exp() of them is finite)",
                        kinds[expr].name, sweep_expr_is_normal(expr) ? NORMAL_CUT : LOG_MAX,
                        LOG_MAX, LOG_MAX);
    }
    p->expr = expr;
    if (p->q > 0) {
        value_range(p, &lo, &hi);
        if (fabs(lo / p->q) > MAX_STEPS || fabs(hi / p->q) > MAX_STEPS)
            return fail(err, name, "%s spans more than %g steps of q", kinds[expr].name, MAX_STEPS);
    }
    return 0;
}

static int parse_param(const cJSON *item, struct sweep_param *p, struct sweep_error *err)
{
    const char *name = item->string;
    const cJSON *key;
    int kind;

    if (!name_ok(name))
        return fail(err, name,
                    strncmp(name, "env:", 4) == 0
                        ? "an environment variable name is [A-Za-z_][A-Za-z0-9_]*"
                        : "a parameter name is 1 to %d printable characters without '='",
                    NAME_MAX_LEN);
    if (!cJSON_IsObject(item) || item->child == NULL || item->child->next != NULL)
        return fail(err, name,
                    "an expression is an object with one key: choice, randint, uniform, "
                    "quniform, loguniform, qloguniform, normal, qnormal, lognormal or "
                    "qlognormal");
    key = item->child;
    for (kind = 0; kind < N_KINDS; kind++)
        if (strcmp(key->string, kinds[kind].name) == 0)
            break;
    if (kind == N_KINDS)
        return fail(err, name,
                    "unknown expression '%.64s' (choice, randint, uniform, quniform, "
                    "loguniform, qloguniform, normal, qnormal, lognormal, qlognormal)",
                    key->string);
    memset(p, 0, sizeof(*p));
    p->expr = (enum sweep_expr)kind;
    if (kind == SWEEP_CHOICE)
        return parse_choice(name, key, p, err);
    return parse_numeric(name, p->expr, key, p, err);
}

int sweep_space_parse(const cJSON *parameters, struct sweep_space *ret_space,
                      struct sweep_error *err)
{
    struct sweep_space space = { NULL, 0 };
    const cJSON *item;
    const char *dup;
    int n;
    int r;

    if (!cJSON_IsObject(parameters))
        return fail(err, NULL, "parameters is an object of name -> expression");
    n = cJSON_GetArraySize(parameters);
    if (n < 1)
        return fail(err, NULL, "parameters needs at least one parameter");
    if (n > SWEEP_MAX_PARAMS)
        return fail(err, NULL, "parameters has more than %d parameters", SWEEP_MAX_PARAMS);
    dup = json_duplicate_key(parameters);
    if (dup)
        return fail(err, dup, "parameter named twice");
    space.params = xcalloc((size_t)n, sizeof(*space.params));
    cJSON_ArrayForEach(item, parameters) {
        struct sweep_param *p = &space.params[space.n_params];

        r = parse_param(item, p, err);
        if (r < 0) {
            cJSON_Delete(p->choices);
            sweep_space_release(&space);
            return r;
        }
        p->name = xstrdup(item->string);
        space.n_params++;
    }
    *ret_space = space;
    return 0;
}

void sweep_space_release(struct sweep_space *space)
{
    int i;

    for (i = 0; i < space->n_params; i++) {
        free(space->params[i].name);
        cJSON_Delete(space->params[i].choices);
    }
    free(space->params);
    space->params = NULL;
    space->n_params = 0;
}

cJSON *sweep_space_json(const struct sweep_space *space)
{
    cJSON *out = cJSON_CreateObject();
    int i;

    for (i = 0; i < space->n_params; i++) {
        const struct sweep_param *p = &space->params[i];
        cJSON *expr = cJSON_CreateObject();
        cJSON *args;

        if (p->expr == SWEEP_CHOICE) {
            args = cJSON_Duplicate(p->choices, true);
        } else {
            args = cJSON_CreateArray();
            if (p->expr != SWEEP_RANDINT)
                cJSON_AddItemToArray(args, cJSON_CreateNumber(p->a));
            cJSON_AddItemToArray(args, cJSON_CreateNumber(p->b));
            if (p->q > 0)
                cJSON_AddItemToArray(args, cJSON_CreateNumber(p->q));
        }
        cJSON_AddItemToObject(expr, kinds[p->expr].name, args);
        cJSON_AddItemToObject(out, p->name, expr);
    }
    return out;
}

/* ---- grid and random points ---- */

int64_t sweep_space_grid_size(const struct sweep_space *space, int64_t limit)
{
    int64_t size = 1;
    int i;

    for (i = 0; i < space->n_params; i++) {
        if (space->params[i].expr != SWEEP_CHOICE)
            return -1;
        size *= space->params[i].n_choices;
        if (size > limit)
            return -1;
    }
    return size;
}

void sweep_space_grid_point(const struct sweep_space *space, int64_t k, double *ret_x)
{
    int i;

    assert(k >= 0);
    /* Mixed radix, the last parameter the fastest digit. */
    for (i = space->n_params - 1; i >= 0; i--) {
        int64_t n = space->params[i].n_choices;

        assert(space->params[i].expr == SWEEP_CHOICE && n > 0);
        ret_x[i] = (double)(k % n);
        k /= n;
    }
    assert(k == 0);
}

double sweep_param_sample(const struct sweep_param *p, struct sweep_rng *rng)
{
    double v;

    switch (p->expr) {
    case SWEEP_CHOICE:
        v = floor(sweep_rng_uniform(rng) * p->n_choices);
        return v < p->n_choices ? v : p->n_choices - 1;
    case SWEEP_RANDINT:
        v = floor(sweep_rng_uniform(rng) * p->b);
        return v < p->b ? v : p->b - 1;
    case SWEEP_UNIFORM:
    case SWEEP_QUNIFORM:
    case SWEEP_LOGUNIFORM:
    case SWEEP_QLOGUNIFORM:
        v = p->a + sweep_rng_uniform(rng) * (p->b - p->a);
        break;
    default:
        v = sweep_rng_normal(rng);
        v = p->a + p->b * fmax(-NORMAL_CUT, fmin(NORMAL_CUT, v));
        break;
    }
    return sweep_param_value(p, v);
}

double sweep_param_value(const struct sweep_param *p, double t)
{
    assert(p->expr != SWEEP_CHOICE && p->expr != SWEEP_RANDINT);
    if (sweep_expr_is_log(p->expr))
        t = exp(t);
    if (p->q > 0)
        t = sweep_quantize(t, p->q);
    return t;
}

void sweep_space_random_point(const struct sweep_space *space, uint64_t seed, int64_t k,
                              double *ret_x)
{
    struct sweep_rng rng;
    int i;

    sweep_rng_seed(&rng, seed, (uint64_t)k);
    for (i = 0; i < space->n_params; i++)
        ret_x[i] = sweep_param_sample(&space->params[i], &rng);
}

/* ---- points as JSON ---- */

cJSON *sweep_space_to_json(const struct sweep_space *space, const double *x)
{
    cJSON *out = cJSON_CreateObject();
    int i;

    for (i = 0; i < space->n_params; i++) {
        const struct sweep_param *p = &space->params[i];
        cJSON *v;

        if (p->expr == SWEEP_CHOICE) {
            assert(x[i] >= 0 && x[i] < p->n_choices);
            v = cJSON_Duplicate(cJSON_GetArrayItem(p->choices, (int)x[i]), true);
        } else {
            v = cJSON_CreateNumber(x[i]);
        }
        cJSON_AddItemToObject(out, p->name, v);
    }
    return out;
}

/* True when v is on q's grid (within rounding of the decimal text). */
static bool on_grid(double v, double q)
{
    double snapped = sweep_quantize(v, q);

    return fabs(v - snapped) <= 1e-9 * fmax(fabs(v), q);
}

/* Whether the space can take v for p (not a choice); sets *ret_v to the
 * canonical value. */
static bool value_ok(const struct sweep_param *p, double v, double *ret_v)
{
    double lo;
    double hi;

    if (!isfinite(v))
        return false;
    if (p->expr == SWEEP_RANDINT) {
        *ret_v = v;
        return v >= 0 && v < p->b && v == floor(v);
    }
    value_range(p, &lo, &hi);
    if (p->q > 0) {
        if (!on_grid(v, p->q))
            return false;
        v = sweep_quantize(v, p->q);
        lo = sweep_quantize(lo, p->q);
        hi = sweep_quantize(hi, p->q);
    } else {
        /* exp() of the bounds may differ from the sampled value in the
         * last bits. */
        lo -= 1e-12 * fabs(lo);
        hi += 1e-12 * fabs(hi);
    }
    if (sweep_expr_is_log(p->expr) && p->q == 0 && v <= 0)
        return false;
    *ret_v = v;
    return v >= lo && v <= hi;
}

int sweep_space_from_json(const struct sweep_space *space, const cJSON *values, double *ret_x)
{
    double x[SWEEP_MAX_PARAMS];
    int i;
    int k;

    assert(space->n_params <= SWEEP_MAX_PARAMS);
    if (!cJSON_IsObject(values) || cJSON_GetArraySize(values) != space->n_params)
        return ERR_INVALID;
    for (i = 0; i < space->n_params; i++) {
        const struct sweep_param *p = &space->params[i];
        const cJSON *v = json_get(values, p->name);
        const cJSON *c;

        if (v == NULL)
            return ERR_INVALID;
        if (p->expr == SWEEP_CHOICE) {
            k = 0;
            cJSON_ArrayForEach(c, p->choices) {
                if (choice_equal(v, c))
                    break;
                k++;
            }
            if (c == NULL)
                return ERR_INVALID;
            x[i] = k;
        } else if (!cJSON_IsNumber(v) || !value_ok(p, v->valuedouble, &x[i])) {
            return ERR_INVALID;
        }
    }
    memcpy(ret_x, x, (size_t)space->n_params * sizeof(*x));
    return 0;
}
