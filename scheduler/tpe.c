/*
 * tpe.c - the multivariate Tree-structured Parzen Estimator: the
 * observations split into the good (l) and the rest (g) by loss, a joint
 * Parzen mixture fitted to each (one product kernel per observation, over
 * every dimension at once, as in Falkner et al. 2018 and Optuna's
 * TPESampler(multivariate=True)), candidates drawn from l, and the one
 * with the largest l(x) / g(x) proposed.
 *
 * The constants and formulas follow Optuna 3.1
 * (optuna/samplers/_tpe/sampler.py and parzen_estimator.py):
 *   - gamma: the n_below = min(ceil(0.1 * n), 25) best finished trials
 *     form l (default_gamma);
 *   - weights: 1 each, but past 25 observations the older ones ramp
 *     linearly from 1/n up to 1 (default_weights), in trial order;
 *   - a prior component of weight 1.0 in each mixture (consider_prior,
 *     prior_weight): for bounded kinds a normal at the middle of the
 *     range with sigma = the range; for the normal kinds their own prior;
 *   - bandwidths by Scott's rule as in BOHB: 0.2 * n^(-1 / (d + 4)) times
 *     the range, clipped to [range / min(100, n + 2), range] (the magic
 *     clip, _calculate_numerical_params);
 *   - numeric kernels are normals truncated to the range; a quantized
 *     dimension's kernel is the mass of the bin [v - 1/2, v + 1/2] over
 *     the mass inside the range (log_pdf with q);
 *   - a categorical kernel puts prior_weight / (n + 1) on every value
 *     and 1 more on the value observed, normalized
 *     (_calculate_categorical_params);
 *   - 24 candidates (n_ei_candidates).
 * Unlike Optuna, a running trial counts with the worst finished loss (the
 * constant liar) and a candidate equal to a running trial's point is
 * proposed only when nothing else is found.
 *
 * Coordinates. Each dimension has an internal coordinate t where the
 * kernels live: the choice's index; randint's integer; the value for
 * uniform and normal; the value over q (an integer) for quniform and
 * qnormal; log(value) for the log kinds (Optuna treats a log integer
 * as continuous in log space, and so do qloguniform and qlognormal here).
 */
#include "scheduler/tpe.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "common/banned.h"

#define N_CANDIDATES 24
#define PRIOR_WEIGHT 1.0
#define GAMMA_CAP 25
#define WEIGHTS_FLAT 25
#define SIGMA0_MAGNITUDE 0.2
/* More candidates drawn when every one of the first repeats a running
 * trial, and random points tried after that. */
#define RETRY_CANDIDATES 256
/* A quantized dimension whose kernels are at least this wide (in bins)
 * uses the density at the bin's middle for its mass (relative error
 * below 1 / (24 * 4^2) * z^2); narrower ones look the mass up. */
#define WIDE_KERNEL 4.0
/* The TPE's generator streams differ from the random sampler's. */
#define TPE_SALT 0x54504553414D504Cull

/* Past this many sigmas a normal's tail mass (below 1e-19) is lost in 1.0
 * anyway; and a mixture component this far below the largest in log
 * density adds less than 1e-21 of it. */
#define TAIL_CUT 9.0
#define LOG_NEGLIGIBLE (-48.0)

static const double LOG_SQRT_2PI = 0.91893853320467274178;

enum dim_type { DIM_CAT, DIM_CONT, DIM_QUANT };

struct dim {
    const struct sweep_param *p;
    enum dim_type type;
    double lo, hi; /* the range of t */
    double range; /* the width the bandwidths scale with */
    double prior_mu, prior_sigma;
    double prior_log_mass; /* of the prior's normal inside [lo, hi] */
    int n_choices;
};

/* One Parzen mixture: n observation kernels and the prior. */
struct mixture {
    int n;
    double *log_w; /* n + 1 log weights, the prior last; they sum to 1 */
    double *mu; /* d * n, by dimension: mu[j * n + i] */
    double *base; /* n: log weight plus every kernel term not depending on x */
    double *s; /* d: the observation kernels' bandwidth */
    double *inv_s; /* d */
    double *cat_hit; /* d: log kernel at the observed value minus at another */
    double *cat_miss; /* d: log kernel at a value not observed */
    double **table; /* d: narrow quantized dims: log mass of bin m (0..n_table) */
    int *n_table; /* d */
    /* Added to the prior's log weight in the density (not in sampling):
     * see mixture_fit(). */
    double prior_boost;
};

/* log(Phi(b) - Phi(a)), accurate in both tails. */
static double log_gauss_mass(double a, double b)
{
    double m;

    if (a >= 0)
        m = 0.5 * (erfc(a / M_SQRT2) - erfc(b / M_SQRT2));
    else if (b <= 0)
        m = 0.5 * (erfc(-b / M_SQRT2) - erfc(-a / M_SQRT2));
    else if (a < -TAIL_CUT && b > TAIL_CUT)
        return 0;
    else
        m = 1.0 - (a < -TAIL_CUT ? 0 : 0.5 * erfc(-a / M_SQRT2)) -
            (b > TAIL_CUT ? 0 : 0.5 * erfc(b / M_SQRT2));
    return log(fmax(m, 1e-300));
}

static void dim_init(struct dim *dm, const struct sweep_param *p)
{
    double mu = p->a;
    double sigma = p->b;

    memset(dm, 0, sizeof(*dm));
    dm->p = p;
    switch (p->expr) {
    case SWEEP_CHOICE:
        dm->type = DIM_CAT;
        dm->n_choices = p->n_choices;
        return;
    case SWEEP_RANDINT:
        dm->type = DIM_QUANT;
        dm->lo = -0.5;
        dm->hi = p->b - 0.5;
        break;
    case SWEEP_QUNIFORM:
        dm->type = DIM_QUANT;
        dm->lo = round(p->a / p->q) - 0.5;
        dm->hi = round(p->b / p->q) + 0.5;
        break;
    case SWEEP_UNIFORM:
    case SWEEP_LOGUNIFORM:
    case SWEEP_QLOGUNIFORM:
        dm->type = DIM_CONT;
        dm->lo = p->a;
        dm->hi = p->b;
        break;
    case SWEEP_QNORMAL:
        dm->type = DIM_QUANT;
        mu = p->a / p->q;
        sigma = p->b / p->q;
        dm->lo = round(mu - SWEEP_NORMAL_CUT * sigma) - 0.5;
        dm->hi = round(mu + SWEEP_NORMAL_CUT * sigma) + 0.5;
        break;
    default: /* normal, lognormal, qlognormal */
        dm->type = DIM_CONT;
        dm->lo = mu - SWEEP_NORMAL_CUT * sigma;
        dm->hi = mu + SWEEP_NORMAL_CUT * sigma;
        break;
    }
    if (sweep_expr_is_normal(p->expr)) {
        /* The prior is the expression's own normal; the bandwidths scale
         * with its central +- 2 sigma, where a uniform's scale with its
         * whole range. */
        dm->prior_mu = mu;
        dm->prior_sigma = sigma;
        dm->range = 4 * sigma;
    } else {
        dm->prior_mu = 0.5 * (dm->lo + dm->hi);
        dm->prior_sigma = dm->hi - dm->lo;
        dm->range = dm->hi - dm->lo;
    }
    dm->prior_log_mass = log_gauss_mass((dm->lo - dm->prior_mu) / dm->prior_sigma,
                                        (dm->hi - dm->prior_mu) / dm->prior_sigma);
}

/* The internal coordinate of a point's coordinate x. */
static double to_internal(const struct dim *dm, double x)
{
    const struct sweep_param *p = dm->p;
    double t;

    switch (p->expr) {
    case SWEEP_CHOICE:
    case SWEEP_RANDINT:
    case SWEEP_UNIFORM:
    case SWEEP_NORMAL:
        return x;
    case SWEEP_QUNIFORM:
    case SWEEP_QNORMAL:
        return round(x / p->q);
    default:
        /* A q-log value of 0 came from exp(t) < q / 2. */
        if (p->q > 0)
            t = log(fmax(x, p->q / 4));
        else
            t = x > 0 ? log(x) : dm->lo;
        return fmin(dm->hi, fmax(dm->lo, t));
    }
}

/* The point's coordinate for a drawn internal coordinate t. */
static double from_internal(const struct dim *dm, double t)
{
    const struct sweep_param *p = dm->p;

    switch (p->expr) {
    case SWEEP_CHOICE:
        return t;
    case SWEEP_RANDINT:
        return fmin(p->b - 1, fmax(0, round(t)));
    case SWEEP_QUNIFORM:
    case SWEEP_QNORMAL:
        t = fmin(dm->hi - 0.5, fmax(dm->lo + 0.5, round(t)));
        return sweep_quantize(t * p->q, p->q);
    default:
        return sweep_param_value(p, t);
    }
}

/* Optuna's default_weights(n), in trial order. */
static double obs_weight(int i, int n)
{
    if (n < WEIGHTS_FLAT || i >= n - WEIGHTS_FLAT)
        return 1.0;
    /* np.linspace(1 / n, 1, n - 25)[i] */
    if (n - WEIGHTS_FLAT == 1)
        return 1.0 / n;
    return 1.0 / n + (1.0 - 1.0 / n) * i / (double)(n - WEIGHTS_FLAT - 1);
}

/*
 * Fits a mixture to the observations idx[0..n-1] (in trial order).
 *
 * boost_prior: the prior component's density counts prior_sigma / s times
 * more in each continuous dimension. This is what Optuna 3.1's
 * multivariate TPE computes in effect, its truncnorm.logpdf() leaving out
 * the 1 / sigma of every kernel (_truncnorm.py, logpdf()); we keep it for
 * g alone, where it was measured to help (bench/sweep, S2 over 1,000
 * seeds: Hartmann-6 -2.70 -> -2.86, Rosenbrock-10 455 -> 354, Branin
 * 0.557 -> 0.523), while l stays a proper density (the same change in l
 * made every function worse). A g that leans on its prior makes l / g
 * favour l's peaks over merely unexplored regions less than g's own
 * kernels would on their own.
 */
static void mixture_fit(struct mixture *m, const struct dim *dims, int d, const struct tpe_obs *obs,
                        const size_t *idx, int n, bool boost_prior)
{
    double sigma0 = SIGMA0_MAGNITUDE * pow(n > 1 ? n : 1, -1.0 / (d + 4));
    double total = PRIOR_WEIGHT;
    int i;
    int j;

    m->n = n;
    m->prior_boost = 0;
    m->log_w = xmalloc((size_t)(n + 1) * sizeof(double));
    m->mu = xmalloc((size_t)n * (size_t)d * sizeof(double) + 1);
    m->base = xmalloc((size_t)(n + 1) * sizeof(double));
    m->s = xcalloc((size_t)d, sizeof(double));
    m->inv_s = xcalloc((size_t)d, sizeof(double));
    m->cat_hit = xcalloc((size_t)d, sizeof(double));
    m->cat_miss = xcalloc((size_t)d, sizeof(double));
    m->table = xcalloc((size_t)d, sizeof(double *));
    m->n_table = xcalloc((size_t)d, sizeof(int));

    for (i = 0; i < n; i++)
        total += obs_weight(i, n);
    for (i = 0; i < n; i++)
        m->log_w[i] = log(obs_weight(i, n) / total);
    m->log_w[n] = log(PRIOR_WEIGHT / total);
    for (i = 0; i < n; i++)
        m->base[i] = m->log_w[i];

    for (j = 0; j < d; j++) {
        const struct dim *dm = &dims[j];
        double *mu = m->mu + (size_t)j * (size_t)n;
        double s;

        for (i = 0; i < n; i++)
            mu[i] = to_internal(dm, obs[idx[i]].x[j]);
        if (dm->type == DIM_CAT) {
            double value = PRIOR_WEIGHT / (n + 1);
            double row = dm->n_choices * value + 1;

            m->cat_hit[j] = log((value + 1) / row) - log(value / row);
            m->cat_miss[j] = log(value / row);
            for (i = 0; i < n; i++)
                m->base[i] += m->cat_miss[j];
            continue;
        }
        s = sigma0 * dm->range;
        s = fmax(s, dm->range / fmin(100.0, n + 2.0));
        s = fmin(s, dm->range);
        m->s[j] = s;
        m->inv_s[j] = 1.0 / s;
        if (boost_prior && dm->type == DIM_CONT)
            m->prior_boost += log(dm->prior_sigma / s);
        for (i = 0; i < n; i++)
            m->base[i] -= log_gauss_mass((dm->lo - mu[i]) / s, (dm->hi - mu[i]) / s);
        if (dm->type == DIM_QUANT && s < WIDE_KERNEL) {
            /* Bins never cross the range's ends (t is an integer and the
             * ends are half-integers), so a bin's mass depends only on its
             * distance in bins from the kernel's centre. */
            int k;
            int n_table = (int)ceil(SWEEP_NORMAL_CUT * s) + 2;

            m->n_table[j] = n_table;
            m->table[j] = xmalloc((size_t)(n_table + 1) * sizeof(double));
            for (k = 0; k <= n_table; k++)
                m->table[j][k] = log_gauss_mass((k - 0.5) / s, (k + 0.5) / s);
        } else {
            for (i = 0; i < n; i++)
                m->base[i] -= log(s) + LOG_SQRT_2PI;
        }
    }
}

static void mixture_release(struct mixture *m, int d)
{
    int j;

    for (j = 0; j < d; j++)
        free(m->table[j]);
    free(m->table);
    free(m->n_table);
    free(m->cat_hit);
    free(m->cat_miss);
    free(m->s);
    free(m->inv_s);
    free(m->base);
    free(m->mu);
    free(m->log_w);
}

/* The log density of the prior component at internal point t. */
static double prior_log_pdf(const struct dim *dims, int d, const double *t)
{
    double lp = 0;
    int j;

    for (j = 0; j < d; j++) {
        const struct dim *dm = &dims[j];
        double z;

        if (dm->type == DIM_CAT) {
            lp -= log(dm->n_choices);
            continue;
        }
        z = (t[j] - dm->prior_mu) / dm->prior_sigma;
        if (dm->type == DIM_QUANT)
            lp += log_gauss_mass(z - 0.5 / dm->prior_sigma, z + 0.5 / dm->prior_sigma);
        else
            lp += -0.5 * z * z - log(dm->prior_sigma) - LOG_SQRT_2PI;
        lp -= dm->prior_log_mass;
    }
    return lp;
}

/* log of the mixture's density at internal point t; acc holds n doubles. */
static double mixture_log_pdf(const struct mixture *m, const struct dim *dims, int d,
                              const double *t, double *acc)
{
    int n = m->n;
    double top;
    double sum;
    double prior;
    int i;
    int j;

    memcpy(acc, m->base, (size_t)n * sizeof(double));
    for (j = 0; j < d; j++) {
        const double *mu = m->mu + (size_t)j * (size_t)n;
        double x = t[j];

        if (dims[j].type == DIM_CAT) {
            double hit = m->cat_hit[j];

            for (i = 0; i < n; i++)
                acc[i] += mu[i] == x ? hit : 0.0;
        } else if (m->table[j]) {
            const double *table = m->table[j];
            int n_table = m->n_table[j];
            double s = m->s[j];

            for (i = 0; i < n; i++) {
                int k = (int)fabs(x - mu[i]);

                if (k <= n_table) {
                    acc[i] += table[k];
                } else {
                    double z = k / s;

                    acc[i] += -0.5 * z * z - log(s) - LOG_SQRT_2PI;
                }
            }
        } else {
            double inv_s = m->inv_s[j];

            for (i = 0; i < n; i++) {
                double z = (x - mu[i]) * inv_s;

                acc[i] -= 0.5 * z * z;
            }
        }
    }
    prior = m->log_w[n] + m->prior_boost + prior_log_pdf(dims, d, t);
    top = prior;
    for (i = 0; i < n; i++)
        top = acc[i] > top ? acc[i] : top;
    sum = exp(prior - top);
    for (i = 0; i < n; i++)
        if (acc[i] - top > LOG_NEGLIGIBLE)
            sum += exp(acc[i] - top);
    return top + log(sum);
}

/* A normal (mu, s) draw inside [lo, hi] (mu is inside): by rejection,
 * which accepts at least a third of the draws since s <= hi - lo. */
static double truncated_normal(struct sweep_rng *rng, double mu, double s, double lo, double hi)
{
    int tries;
    double v = mu;

    for (tries = 0; tries < 64; tries++) {
        v = mu + s * sweep_rng_normal(rng);
        if (v >= lo && v <= hi)
            return v;
    }
    return fmin(hi, fmax(lo, v));
}

/* Draws one point from mixture m into x (point coordinates). */
static void mixture_sample(const struct mixture *m, const struct dim *dims, int d,
                           struct sweep_rng *rng, double *x)
{
    double u = sweep_rng_uniform(rng);
    int comp = m->n; /* the prior, unless u lands on an observation */
    int i;
    int j;

    for (i = 0; i < m->n; i++) {
        u -= exp(m->log_w[i]);
        if (u < 0) {
            comp = i;
            break;
        }
    }
    for (j = 0; j < d; j++) {
        const struct dim *dm = &dims[j];
        double t;

        if (dm->type == DIM_CAT) {
            double value = PRIOR_WEIGHT / (m->n + 1);
            double row = dm->n_choices * value + 1;

            if (comp < m->n && sweep_rng_uniform(rng) * row < 1) {
                t = m->mu[(size_t)j * (size_t)m->n + (size_t)comp];
            } else {
                t = floor(sweep_rng_uniform(rng) * dm->n_choices);
                t = fmin(t, dm->n_choices - 1);
            }
        } else if (comp < m->n) {
            t = truncated_normal(rng, m->mu[(size_t)j * (size_t)m->n + (size_t)comp], m->s[j],
                                 dm->lo, dm->hi);
        } else {
            t = truncated_normal(rng, dm->prior_mu, dm->prior_sigma, dm->lo, dm->hi);
        }
        x[j] = from_internal(dm, t);
    }
}

struct order {
    double loss;
    int running;
    size_t i;
};

static int order_cmp(const void *a, const void *b)
{
    const struct order *x = a;
    const struct order *y = b;

    if (x->loss != y->loss)
        return x->loss < y->loss ? -1 : 1;
    if (x->running != y->running)
        return x->running - y->running;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int size_cmp(const void *a, const void *b)
{
    size_t x = *(const size_t *)a;
    size_t y = *(const size_t *)b;

    return x < y ? -1 : x > y;
}

static bool repeats_running(const struct tpe_obs *obs, size_t n, int d, const double *x)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (obs[i].running && memcmp(obs[i].x, x, (size_t)d * sizeof(double)) == 0)
            return true;
    return false;
}

/* Scores n_cand candidates drawn from below; keeps the best one not
 * repeating a running trial in best (returns false when all repeat). */
static bool propose(const struct mixture *below, const struct mixture *above,
                    const struct dim *dims, int d, const struct tpe_obs *obs, size_t n,
                    struct sweep_rng *rng, int n_cand, double *best, double *any)
{
    double x[SWEEP_MAX_PARAMS];
    double t[SWEEP_MAX_PARAMS];
    double best_score = -INFINITY;
    double any_score = -INFINITY;
    double *acc = xmalloc((size_t)(above->n > below->n ? above->n : below->n) * sizeof(double) +
                          sizeof(double));
    bool found = false;
    int c;
    int j;

    for (c = 0; c < n_cand; c++) {
        double score;

        mixture_sample(below, dims, d, rng, x);
        for (j = 0; j < d; j++)
            t[j] = to_internal(&dims[j], x[j]);
        score = mixture_log_pdf(below, dims, d, t, acc) - mixture_log_pdf(above, dims, d, t, acc);
        if (score > any_score || c == 0) {
            any_score = score;
            memcpy(any, x, (size_t)d * sizeof(double));
        }
        if ((score > best_score || !found) && !repeats_running(obs, n, d, x)) {
            best_score = score;
            memcpy(best, x, (size_t)d * sizeof(double));
            found = true;
        }
    }
    free(acc);
    return found;
}

void tpe_suggest(const struct sweep_space *space, const struct tpe_obs *obs, size_t n,
                 uint64_t seed, int64_t k, double *ret_x)
{
    int d = space->n_params;
    struct dim dims[SWEEP_MAX_PARAMS];
    struct order *order;
    size_t *below_idx;
    size_t *above_idx;
    struct mixture below;
    struct mixture above;
    struct sweep_rng rng;
    double liar = -INFINITY;
    double any[SWEEP_MAX_PARAMS];
    size_t n_finished = 0;
    size_t n_below;
    bool *in_below;
    size_t i;
    size_t a;
    int j;

    assert(d >= 1 && d <= SWEEP_MAX_PARAMS);
    for (i = 0; i < n; i++) {
        if (obs[i].running)
            continue;
        n_finished++;
        if (isfinite(obs[i].loss))
            liar = fmax(liar, obs[i].loss);
    }
    /* The startup trials are the random sampler's: with the same seed a
     * bayesian sweep starts as a random one does. */
    if (n < TPE_STARTUP_TRIALS || n_finished == 0) {
        sweep_space_random_point(space, seed, k, ret_x);
        return;
    }
    if (liar == -INFINITY)
        liar = INFINITY;

    order = xmalloc(n * sizeof(*order));
    for (i = 0; i < n; i++) {
        order[i].loss = obs[i].running ? liar : obs[i].loss;
        if (isnan(order[i].loss))
            order[i].loss = INFINITY;
        order[i].running = obs[i].running;
        order[i].i = i;
    }
    qsort(order, n, sizeof(*order), order_cmp);
    n_below = (n_finished + 9) / 10;
    if (n_below > GAMMA_CAP)
        n_below = GAMMA_CAP;
    below_idx = xmalloc(n * sizeof(size_t));
    above_idx = below_idx + n_below;
    for (i = 0; i < n; i++)
        below_idx[i] = order[i].i;
    /* Back to trial order, which the weights follow. */
    qsort(below_idx, n_below, sizeof(size_t), size_cmp);
    in_below = xcalloc(n, sizeof(bool));
    for (i = 0; i < n_below; i++)
        in_below[below_idx[i]] = true;
    for (i = 0, a = 0; i < n; i++)
        if (!in_below[i])
            above_idx[a++] = i;
    free(in_below);
    free(order);

    for (j = 0; j < d; j++)
        dim_init(&dims[j], &space->params[j]);
    mixture_fit(&below, dims, d, obs, below_idx, (int)n_below, false);
    mixture_fit(&above, dims, d, obs, above_idx, (int)(n - n_below), true);
    free(below_idx);

    sweep_rng_seed(&rng, seed ^ TPE_SALT, (uint64_t)k);
    if (!propose(&below, &above, dims, d, obs, n, &rng, N_CANDIDATES, ret_x, any) &&
        !propose(&below, &above, dims, d, obs, n, &rng, RETRY_CANDIDATES, ret_x, any)) {
        /* Every candidate repeats a running trial: l is concentrated on
         * them. A random point that does not, else the best candidate. */
        int tries;

        memcpy(ret_x, any, (size_t)d * sizeof(double));
        for (tries = 0; tries < RETRY_CANDIDATES; tries++) {
            double x[SWEEP_MAX_PARAMS];

            for (j = 0; j < d; j++)
                x[j] = sweep_param_sample(&space->params[j], &rng);
            if (!repeats_running(obs, n, d, x)) {
                memcpy(ret_x, x, (size_t)d * sizeof(double));
                break;
            }
        }
    }
    mixture_release(&below, d);
    mixture_release(&above, d);
}
