/* test_sweep.c - a sweep's parameter space (parsing, grid, random points,
 * values as JSON) and the TPE sampler. */
#include "tests/unit/unit.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "scheduler/sweepspace.h"
#include "scheduler/tpe.h"

static void parse_ok(const char *text, struct sweep_space *space)
{
    cJSON *json = cJSON_Parse(text);
    struct sweep_error err;
    int r;

    ASSERT_TRUE(json != NULL);
    r = sweep_space_parse(json, space, &err);
    if (r != 0)
        UNIT_FAIL("%s: %s: %s", text, err.field, err.message);
    cJSON_Delete(json);
}

/* Parses text, which must fail naming field with a message containing msg. */
static void parse_bad(const char *text, const char *field, const char *msg)
{
    cJSON *json = cJSON_Parse(text);
    struct sweep_space space = { (struct sweep_param *)1, 99 };
    struct sweep_error err;

    ASSERT_TRUE(json != NULL);
    ASSERT_EQ(sweep_space_parse(json, &space, &err), ERR_INVALID);
    /* Nothing written on failure. */
    ASSERT_EQ(space.n_params, 99);
    ASSERT_STR_EQ(err.field, field);
    if (strstr(err.message, msg) == NULL)
        UNIT_FAIL("%s: message \"%s\" lacks \"%s\"", text, err.message, msg);
    cJSON_Delete(json);
}

static void test_parse_errors(void)
{
    struct buf;
    char *many;
    char *long_name;
    size_t i;
    size_t len;

    parse_bad("[]", "parameters", "object");
    parse_bad("{}", "parameters", "at least one");
    parse_bad("{\"--lr\": {\"loguniform\": [-2, -9]}}", "parameters.--lr",
              "loguniform needs [lo, hi] with lo < hi");
    parse_bad("{\"--lr\": {\"loguniform\": [-9]}}", "parameters.--lr", "loguniform needs");
    parse_bad("{\"--lr\": {\"loguniform\": [-9, \"x\"]}}", "parameters.--lr", "loguniform needs");
    parse_bad("{\"--lr\": {\"loguniform\": [-9, 800]}}", "parameters.--lr", "exp()");
    parse_bad("{\"--lr\": {\"uniform\": [0, 1], \"choice\": [1]}}", "parameters.--lr", "one key");
    parse_bad("{\"--lr\": 0.1}", "parameters.--lr", "one key");
    parse_bad("{\"--lr\": {\"gaussian\": [0, 1]}}", "parameters.--lr", "unknown expression");
    parse_bad("{\"ok\": {\"uniform\": [0, 1]}, \"x\": {\"normal\": [0, 0]}}", "parameters.x",
              "normal needs [mu, sigma] with sigma > 0");
    parse_bad("{\"x\": {\"lognormal\": [0, 100]}}", "parameters.x", "exp()");
    parse_bad("{\"x\": {\"quniform\": [0, 1, 0]}}", "parameters.x", "q > 0");
    parse_bad("{\"x\": {\"qnormal\": [0, 1, -1]}}", "parameters.x", "q > 0");
    parse_bad("{\"x\": {\"quniform\": [0, 1e300, 1e-9]}}", "parameters.x", "steps of q");
    parse_bad("{\"x\": {\"randint\": [0]}}", "parameters.x", "upper an integer >= 1");
    parse_bad("{\"x\": {\"randint\": [2.5]}}", "parameters.x", "upper an integer >= 1");
    parse_bad("{\"x\": {\"choice\": []}}", "parameters.x", "non-empty array");
    parse_bad("{\"x\": {\"choice\": 3}}", "parameters.x", "non-empty array");
    parse_bad("{\"x\": {\"choice\": [1, 2, 1.0]}}", "parameters.x", "value 2 repeats");
    parse_bad("{\"x\": {\"choice\": [\"a\", \"b\", \"a\"]}}", "parameters.x", "value 2 repeats");
    parse_bad("{\"x\": {\"choice\": [1, null]}}", "parameters.x", "value 1 is not a number");
    parse_bad("{\"x\": {\"choice\": [[1]]}}", "parameters.x", "value 0 is not a number");
    parse_bad("{\"env:1X\": {\"choice\": [1]}}", "parameters.env:1X", "environment variable");
    parse_bad("{\"env:\": {\"choice\": [1]}}", "parameters.env:", "environment variable");
    parse_bad("{\"a=b\": {\"choice\": [1]}}", "parameters.a=b", "without '='");
    parse_bad("{\"\": {\"choice\": [1]}}", "parameters.", "1 to 128");
    parse_bad("{\"a\\tb\": {\"choice\": [1]}}", "parameters.a\tb", "printable");
    parse_bad("{\"x\": {\"uniform\": [0, 1]}, \"x\": {\"uniform\": [0, 2]}}", "parameters.x",
              "twice");

    /* 129 characters. */
    long_name = xmalloc(300);
    len = 0;
    len += (size_t)snprintf(long_name, 300, "{\"");
    for (i = 0; i < 129; i++)
        long_name[len++] = 'n';
    snprintf(long_name + len, 300 - len, "\": {\"choice\": [1]}}");
    {
        cJSON *json = cJSON_Parse(long_name);
        struct sweep_space space;
        struct sweep_error err;

        ASSERT_EQ(sweep_space_parse(json, &space, &err), ERR_INVALID);
        ASSERT_TRUE(strncmp(err.field, "parameters.nnnn", 15) == 0);
        ASSERT_EQ(strlen(err.field), 11 + 129);
        cJSON_Delete(json);
    }
    free(long_name);

    /* 65 parameters, then a choice of 1,001 values. */
    many = xmalloc(64 * 1024);
    len = (size_t)snprintf(many, 64 * 1024, "{");
    for (i = 0; i <= SWEEP_MAX_PARAMS; i++)
        len += (size_t)snprintf(many + len, 64 * 1024 - len, "%s\"p%zu\": {\"randint\": [2]}",
                                i ? ", " : "", i);
    snprintf(many + len, 64 * 1024 - len, "}");
    parse_bad(many, "parameters", "more than 64");
    len = (size_t)snprintf(many, 64 * 1024, "{\"x\": {\"choice\": [");
    for (i = 0; i <= SWEEP_MAX_CHOICES; i++)
        len += (size_t)snprintf(many + len, 64 * 1024 - len, "%s%zu", i ? ", " : "", i);
    snprintf(many + len, 64 * 1024 - len, "]}}");
    parse_bad(many, "parameters.x", "more than 1000 values");
    free(many);
}

static const char every_kind[] = "{\"--c\": {\"choice\": [16, \"adam\", 0.5]},"
                                 " \"--ri\": {\"randint\": [5]},"
                                 " \"--u\": {\"uniform\": [-1, 2]},"
                                 " \"--qu\": {\"quniform\": [0, 1, 0.1]},"
                                 " \"--lu\": {\"loguniform\": [-9, -2]},"
                                 " \"--qlu\": {\"qloguniform\": [0, 5, 4]},"
                                 " \"env:N\": {\"normal\": [10, 2]},"
                                 " \"--qn\": {\"qnormal\": [32, 8, 4]},"
                                 " \"--ln\": {\"lognormal\": [0, 1]},"
                                 " \"--qln\": {\"qlognormal\": [2, 1, 0.5]}}";

static void test_space_json(void)
{
    struct sweep_space space;
    struct sweep_space again;
    cJSON *json;
    cJSON *json2;
    char *text;
    char *text2;

    parse_ok(every_kind, &space);
    ASSERT_EQ(space.n_params, 10);
    ASSERT_STR_EQ(space.params[0].name, "--c");
    ASSERT_EQ(space.params[0].expr, SWEEP_CHOICE);
    ASSERT_EQ(space.params[0].n_choices, 3);
    ASSERT_EQ(space.params[1].expr, SWEEP_RANDINT);
    ASSERT_EQ(space.params[1].b, 5);
    ASSERT_EQ(space.params[5].expr, SWEEP_QLOGUNIFORM);
    ASSERT_EQ(space.params[5].q, 4);
    ASSERT_STR_EQ(space.params[6].name, "env:N");
    json = sweep_space_json(&space);
    text = json_print(json);
    ASSERT_TRUE(strstr(text, "\"--ri\":{\"randint\":[5]}") != NULL);
    ASSERT_TRUE(strstr(text, "\"--c\":{\"choice\":[16,\"adam\",0.5]}") != NULL);
    ASSERT_TRUE(strstr(text, "\"--qu\":{\"quniform\":[0,1,0.1]}") != NULL);
    /* The JSON parses back to the same space. */
    parse_ok(text, &again);
    json2 = sweep_space_json(&again);
    text2 = json_print(json2);
    ASSERT_STR_EQ(text, text2);
    free(text);
    free(text2);
    cJSON_Delete(json);
    cJSON_Delete(json2);
    sweep_space_release(&again);
    sweep_space_release(&space);
}

static void test_grid(void)
{
    struct sweep_space space;
    struct sweep_space mixed;
    double x[3];
    bool seen[24] = { false };
    int64_t k;

    parse_ok("{\"a\": {\"choice\": [1, 2, 3]}, \"b\": {\"choice\": [\"x\", \"y\"]},"
             " \"c\": {\"choice\": [0, 10, 20, 30]}}",
             &space);
    ASSERT_EQ(sweep_space_grid_size(&space, 1000), 24);
    ASSERT_EQ(sweep_space_grid_size(&space, 24), 24);
    ASSERT_EQ(sweep_space_grid_size(&space, 23), -1);
    for (k = 0; k < 24; k++) {
        int id;

        sweep_space_grid_point(&space, k, x);
        ASSERT_TRUE(x[0] >= 0 && x[0] < 3 && x[1] >= 0 && x[1] < 2 && x[2] >= 0 && x[2] < 4);
        ASSERT_TRUE(x[0] == floor(x[0]) && x[1] == floor(x[1]) && x[2] == floor(x[2]));
        id = (int)(x[0] * 8 + x[1] * 4 + x[2]);
        /* The first parameter is the slowest: the k-th point in that order. */
        ASSERT_EQ(id, k);
        ASSERT_TRUE(!seen[id]);
        seen[id] = true;
    }
    for (k = 0; k < 24; k++)
        ASSERT_TRUE(seen[k]);
    sweep_space_release(&space);

    parse_ok("{\"a\": {\"choice\": [1, 2]}, \"b\": {\"uniform\": [0, 1]}}", &mixed);
    ASSERT_EQ(sweep_space_grid_size(&mixed, 1000), -1);
    sweep_space_release(&mixed);
}

static void test_random_reproducible(void)
{
    struct sweep_space space;
    double a[20][SWEEP_MAX_PARAMS];
    double b[SWEEP_MAX_PARAMS];
    int k;
    int differ = 0;

    parse_ok(every_kind, &space);
    for (k = 0; k < 20; k++)
        sweep_space_random_point(&space, 1234, k, a[k]);
    /* The k-th point does not depend on what was sampled before. */
    for (k = 19; k >= 0; k--) {
        sweep_space_random_point(&space, 1234, k, b);
        ASSERT_TRUE(memcmp(a[k], b, (size_t)space.n_params * sizeof(double)) == 0);
    }
    /* Points differ from each other, and with another seed. */
    ASSERT_TRUE(memcmp(a[0], a[1], (size_t)space.n_params * sizeof(double)) != 0);
    for (k = 0; k < 20; k++) {
        sweep_space_random_point(&space, 1235, k, b);
        differ += memcmp(a[k], b, (size_t)space.n_params * sizeof(double)) != 0;
    }
    ASSERT_EQ(differ, 20);
    sweep_space_release(&space);
}

static bool is_multiple(double v, double q)
{
    double r = v / q;

    return fabs(r - round(r)) < 1e-9;
}

/* Whether x is in every_kind's support, each parameter checked by hand. */
static void check_support(const struct sweep_space *space, const double *x)
{
    ASSERT_TRUE(x[0] == 0 || x[0] == 1 || x[0] == 2);
    ASSERT_TRUE(x[1] >= 0 && x[1] <= 4 && x[1] == floor(x[1]));
    ASSERT_TRUE(x[2] >= -1 && x[2] <= 2);
    ASSERT_TRUE(x[3] >= 0 && x[3] <= 1 && is_multiple(x[3], 0.1));
    ASSERT_TRUE(x[4] >= exp(-9) * (1 - 1e-12) && x[4] <= exp(-2) * (1 + 1e-12));
    ASSERT_TRUE(x[5] >= 0 && x[5] <= round(exp(5) / 4) * 4 && is_multiple(x[5], 4));
    ASSERT_TRUE(isfinite(x[6]) && fabs(x[6] - 10) <= 12 * 2);
    ASSERT_TRUE(isfinite(x[7]) && is_multiple(x[7], 4) && fabs(x[7] - 32) <= 12 * 8 + 4);
    ASSERT_TRUE(x[8] > 0 && isfinite(x[8]));
    ASSERT_TRUE(x[9] >= 0 && isfinite(x[9]) && is_multiple(x[9], 0.5));
    (void)space;
}

static void test_samples_in_support(void)
{
    struct sweep_space space;
    double x[SWEEP_MAX_PARAMS];
    double back[SWEEP_MAX_PARAMS];
    double lo[SWEEP_MAX_PARAMS];
    double hi[SWEEP_MAX_PARAMS];
    int k;
    int j;

    parse_ok(every_kind, &space);
    for (j = 0; j < space.n_params; j++) {
        lo[j] = INFINITY;
        hi[j] = -INFINITY;
    }
    for (k = 0; k < 5000; k++) {
        cJSON *values;

        sweep_space_random_point(&space, 99, k, x);
        check_support(&space, x);
        values = sweep_space_to_json(&space, x);
        ASSERT_EQ(sweep_space_from_json(&space, values, back), 0);
        ASSERT_TRUE(memcmp(x, back, (size_t)space.n_params * sizeof(double)) == 0);
        cJSON_Delete(values);
        for (j = 0; j < space.n_params; j++) {
            lo[j] = fmin(lo[j], x[j]);
            hi[j] = fmax(hi[j], x[j]);
        }
    }
    /* The samples cover the support: every choice and randint value, both
     * ends of the uniforms, a spread for the normals. */
    ASSERT_EQ(lo[0], 0);
    ASSERT_EQ(hi[0], 2);
    ASSERT_EQ(lo[1], 0);
    ASSERT_EQ(hi[1], 4);
    ASSERT_TRUE(lo[2] < -0.99 && hi[2] > 1.99);
    ASSERT_TRUE(lo[3] == 0 && hi[3] == 1);
    ASSERT_TRUE(lo[4] < exp(-8.9) && hi[4] > exp(-2.1));
    ASSERT_TRUE(lo[6] < 10 - 2 * 2 && hi[6] > 10 + 2 * 2);
    ASSERT_TRUE(lo[7] <= 32 - 16 && hi[7] >= 32 + 16);
    sweep_space_release(&space);
}

static void test_values_json(void)
{
    struct sweep_space space;
    double x[SWEEP_MAX_PARAMS] = { 1, 3, 0.25, 0.3, exp(-5), 8, 11.5, 36, 2.5, 1.5 };
    double back[SWEEP_MAX_PARAMS];
    cJSON *values;
    char *text;

    parse_ok(every_kind, &space);
    x[3] = sweep_quantize(0.1 * 3, 0.1);
    values = sweep_space_to_json(&space, x);
    text = json_print(values);
    /* Choices as given, integral numbers without a fraction, q-kinds on
     * their decimal grid. */
    ASSERT_TRUE(strstr(text, "\"--c\":\"adam\"") != NULL);
    ASSERT_TRUE(strstr(text, "\"--ri\":3,") != NULL);
    ASSERT_TRUE(strstr(text, "\"--qu\":0.3,") != NULL);
    ASSERT_TRUE(strstr(text, "\"--qlu\":8,") != NULL);
    ASSERT_TRUE(strstr(text, "\"--qn\":36,") != NULL);
    ASSERT_EQ(sweep_space_from_json(&space, values, back), 0);
    ASSERT_TRUE(memcmp(x, back, (size_t)space.n_params * sizeof(double)) == 0);
    free(text);
    cJSON_Delete(values);

    /* Values the space cannot take. */
    {
        static const struct {
            const char *key;
            const char *value;
        } bad[] = {
            { "--c", "\"sgd\"" }, { "--c", "32" },     { "--ri", "5" },     { "--ri", "1.5" },
            { "--ri", "-1" },     { "--u", "2.5" },    { "--u", "\"1\"" },  { "--qu", "0.35" },
            { "--qu", "1.1" },    { "--lu", "0.5" },   { "--qlu", "6" },    { "--qn", "33" },
            { "--ln", "-1" },     { "--qln", "0.75" }, { "env:N", "null" },
        };
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            cJSON *v = sweep_space_to_json(&space, x);

            cJSON_ReplaceItemInObject(v, bad[i].key, cJSON_Parse(bad[i].value));
            back[0] = -7;
            if (sweep_space_from_json(&space, v, back) != ERR_INVALID)
                UNIT_FAIL("%s = %s was taken", bad[i].key, bad[i].value);
            ASSERT_EQ(back[0], -7);
            cJSON_Delete(v);
        }
    }
    /* A parameter missing, one too many. */
    values = sweep_space_to_json(&space, x);
    cJSON_DeleteItemFromObject(values, "--u");
    ASSERT_EQ(sweep_space_from_json(&space, values, back), ERR_INVALID);
    cJSON_AddNumberToObject(values, "--v", 1);
    ASSERT_EQ(sweep_space_from_json(&space, values, back), ERR_INVALID);
    cJSON_Delete(values);
    values = sweep_space_to_json(&space, x);
    cJSON_AddNumberToObject(values, "--v", 1);
    ASSERT_EQ(sweep_space_from_json(&space, values, back), ERR_INVALID);
    cJSON_Delete(values);
    sweep_space_release(&space);
}

static void test_rng(void)
{
    struct sweep_rng a;
    struct sweep_rng b;
    double sum = 0;
    double sum2 = 0;
    int i;

    sweep_rng_seed(&a, 5, 0);
    sweep_rng_seed(&b, 5, 1);
    ASSERT_TRUE(sweep_rng_next(&a) != sweep_rng_next(&b));
    for (i = 0; i < 100000; i++) {
        double u = sweep_rng_uniform(&a);
        double z = sweep_rng_normal(&b);

        ASSERT_TRUE(u >= 0 && u < 1);
        sum += z;
        sum2 += z * z;
    }
    ASSERT_TRUE(fabs(sum / 100000) < 0.02);
    ASSERT_TRUE(fabs(sum2 / 100000 - 1) < 0.03);
}

/* Runs a sequential sweep of n trials of f on space with the TPE (or the
 * random sampler); xs gets the points (n * n_params). */
static void run(const struct sweep_space *space, double (*f)(const double *), int n, uint64_t seed,
                bool tpe, double *xs)
{
    struct tpe_obs *obs = xcalloc((size_t)n, sizeof(*obs));
    int d = space->n_params;
    int k;

    for (k = 0; k < n; k++) {
        double *x = xs + (size_t)k * (size_t)d;

        if (tpe)
            tpe_suggest(space, obs, (size_t)k, seed, k, x);
        else
            sweep_space_random_point(space, seed, k, x);
        obs[k].x = x;
        obs[k].loss = f(x);
    }
    free(obs);
}

static double quadratic(const double *x)
{
    return (x[0] - 0.3) * (x[0] - 0.3);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void test_tpe_deterministic(void)
{
    struct sweep_space space;
    double xs[30 * 10];
    double again[30 * 10];
    double other[10];
    struct tpe_obs obs[30];
    int k;

    parse_ok(every_kind, &space);
    run(&space, quadratic, 30, 3, true, xs);
    run(&space, quadratic, 30, 3, true, again);
    ASSERT_TRUE(memcmp(xs, again, sizeof(xs)) == 0);
    /* The same observations, the same proposal; another k, another. */
    for (k = 0; k < 30; k++) {
        obs[k].x = xs + k * 10;
        obs[k].loss = quadratic(obs[k].x);
        obs[k].running = false;
    }
    tpe_suggest(&space, obs, 30, 3, 30, again);
    tpe_suggest(&space, obs, 30, 3, 30, other);
    ASSERT_TRUE(memcmp(again, other, sizeof(other)) == 0);
    tpe_suggest(&space, obs, 30, 3, 31, other);
    ASSERT_TRUE(memcmp(again, other, sizeof(other)) != 0);
    sweep_space_release(&space);
}

static void test_tpe_in_support(void)
{
    struct sweep_space space;
    double *xs = xcalloc(200 * 10, sizeof(double));
    double back[10];
    int k;

    parse_ok(every_kind, &space);
    run(&space, quadratic, 200, 8, true, xs);
    for (k = 0; k < 200; k++) {
        cJSON *values = sweep_space_to_json(&space, xs + k * 10);

        check_support(&space, xs + k * 10);
        ASSERT_EQ(sweep_space_from_json(&space, values, back), 0);
        ASSERT_TRUE(memcmp(xs + k * 10, back, sizeof(back)) == 0);
        cJSON_Delete(values);
    }
    free(xs);
    sweep_space_release(&space);
}

static void test_tpe_concentrates(void)
{
    struct sweep_space space;
    uint64_t seed;

    parse_ok("{\"x\": {\"uniform\": [-1, 1]}}", &space);
    for (seed = 1; seed <= 5; seed++) {
        double tpe[40];
        double rnd[40];
        double dt[20];
        double dr[20];
        int k;

        run(&space, quadratic, 40, seed, true, tpe);
        run(&space, quadratic, 40, seed, false, rnd);
        for (k = 0; k < 20; k++) {
            dt[k] = fabs(tpe[20 + k] - 0.3);
            dr[k] = fabs(rnd[20 + k] - 0.3);
        }
        qsort(dt, 20, sizeof(double), cmp_double);
        qsort(dr, 20, sizeof(double), cmp_double);
        /* Medians: TPE's at most a third of random's. */
        if (!(dt[10] < dr[10] / 3))
            UNIT_FAIL("seed %d: tpe median distance %g, random %g", (int)seed, dt[10], dr[10]);
    }
    sweep_space_release(&space);
}

static double choice_loss(const double *x)
{
    return (x[0] - 2) * (x[0] - 2) + (x[1] - 1) * (x[1] - 1);
}

static void test_tpe_running_no_duplicates(void)
{
    struct sweep_space space;
    uint64_t seed;

    /* 16 points; 10 finished, then 8 proposed while the earlier ones run. */
    parse_ok(
        "{\"a\": {\"choice\": [1, 2, 3, 4]}, \"b\": {\"choice\": [\"p\", \"q\", \"r\", \"s\"]}}",
        &space);
    for (seed = 0; seed < 20; seed++) {
        struct tpe_obs obs[18];
        double xs[18][2];
        int k;
        int r;

        for (k = 0; k < 10; k++) {
            sweep_space_random_point(&space, seed, k, xs[k]);
            obs[k].x = xs[k];
            obs[k].loss = choice_loss(xs[k]);
            obs[k].running = false;
        }
        for (k = 10; k < 18; k++) {
            tpe_suggest(&space, obs, (size_t)k, seed, k, xs[k]);
            for (r = 10; r < k; r++)
                if (xs[r][0] == xs[k][0] && xs[r][1] == xs[k][1])
                    UNIT_FAIL("seed %d: trial %d repeats running trial %d", (int)seed, k, r);
            obs[k].x = xs[k];
            obs[k].loss = 0;
            obs[k].running = true;
        }
    }
    sweep_space_release(&space);
}

UNIT_LIST(sweep_tests) = {
    { "sweep_parse_errors", test_parse_errors },
    { "sweep_space_json", test_space_json },
    { "sweep_grid", test_grid },
    { "sweep_random_reproducible", test_random_reproducible },
    { "sweep_samples_in_support", test_samples_in_support },
    { "sweep_values_json", test_values_json },
    { "sweep_rng", test_rng },
    { "tpe_deterministic", test_tpe_deterministic },
    { "tpe_in_support", test_tpe_in_support },
    { "tpe_concentrates", test_tpe_concentrates },
    { "tpe_running_no_duplicates", test_tpe_running_no_duplicates },
    { NULL, NULL },
};
