/*
 * test_earlystop.c - early termination policies: parsing, and scripted
 * metric curves fed in a fixed order where each expectation below was
 * worked out by hand from the policy's rule (the numbers are in the
 * comments).
 */
#include "tests/unit/unit.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "common/err.h"
#include "common/json.h"
#include "scheduler/earlystop.h"

static struct es_policy parse_ok(const char *text)
{
    cJSON *in = cJSON_Parse(text);
    struct es_policy p;
    struct sweep_error err;
    int rc;

    ASSERT_TRUE(in != NULL);
    memset(&err, 0, sizeof(err));
    rc = es_policy_parse(in, &p, &err);
    if (rc != 0)
        UNIT_FAIL("%s: %s: %s", text, err.field, err.message);
    cJSON_Delete(in);
    return p;
}

static void parses_policies_with_defaults(void)
{
    struct es_policy p;
    struct es_policy again;
    struct sweep_error err;
    cJSON *json;
    char *text;

    ASSERT_EQ(es_policy_parse(NULL, &p, &err), 0);
    ASSERT_EQ(p.kind, ES_NONE);
    p = parse_ok("null");
    ASSERT_EQ(p.kind, ES_NONE);
    json = es_policy_json(&p);
    ASSERT_TRUE(cJSON_IsNull(json));
    cJSON_Delete(json);

    p = parse_ok("{\"policy\": \"bandit\", \"slack_factor\": 0.1}");
    ASSERT_EQ(p.kind, ES_BANDIT);
    ASSERT_TRUE(p.has_slack_factor);
    ASSERT_TRUE(p.slack_factor == 0.1);
    ASSERT_EQ(p.evaluation_interval, 1);
    ASSERT_EQ(p.delay_evaluation, 0);
    p = parse_ok("{\"policy\": \"bandit\", \"slack_amount\": 0.2, \"evaluation_interval\": 2, "
                 "\"delay_evaluation\": 5}");
    ASSERT_TRUE(!p.has_slack_factor);
    ASSERT_TRUE(p.slack_amount == 0.2);
    ASSERT_EQ(p.evaluation_interval, 2);
    ASSERT_EQ(p.delay_evaluation, 5);
    json = es_policy_json(&p);
    text = json_print(json);
    ASSERT_STR_EQ(text, "{\"policy\":\"bandit\",\"slack_amount\":0.2,\"evaluation_interval\":2,"
                        "\"delay_evaluation\":5}");
    ASSERT_EQ(es_policy_parse(json, &again, &err), 0);
    ASSERT_EQ(again.kind, ES_BANDIT);
    ASSERT_TRUE(!again.has_slack_factor && again.slack_amount == 0.2);
    ASSERT_EQ(again.evaluation_interval, 2);
    ASSERT_EQ(again.delay_evaluation, 5);
    free(text);
    cJSON_Delete(json);

    p = parse_ok("{\"policy\": \"median_stopping\"}");
    ASSERT_EQ(p.kind, ES_MEDIAN_STOPPING);
    ASSERT_EQ(p.evaluation_interval, 1);

    p = parse_ok("{\"policy\": \"truncation_selection\", \"truncation_percentage\": 20}");
    ASSERT_EQ(p.kind, ES_TRUNCATION_SELECTION);
    ASSERT_TRUE(p.truncation_percentage == 20);
    ASSERT_TRUE(!p.exclude_finished_runs);
    json = es_policy_json(&p);
    text = json_print(json);
    ASSERT_STR_EQ(text, "{\"policy\":\"truncation_selection\",\"truncation_percentage\":20,"
                        "\"exclude_finished_runs\":false,\"evaluation_interval\":1,"
                        "\"delay_evaluation\":0}");
    free(text);
    cJSON_Delete(json);

    p = parse_ok("{\"policy\": \"asha\"}");
    ASSERT_EQ(p.kind, ES_ASHA);
    ASSERT_EQ(p.min_resource, 1);
    ASSERT_TRUE(p.reduction_factor == 3);
    json = es_policy_json(&p);
    text = json_print(json);
    ASSERT_STR_EQ(text, "{\"policy\":\"asha\",\"min_resource\":1,\"reduction_factor\":3}");
    free(text);
    cJSON_Delete(json);
}

static void parse_errors_name_the_field(void)
{
    static const char *const cases[][2] = {
        { "\"bandit\"", "early_termination" },
        { "[]", "early_termination" },
        { "{}", "early_termination.policy" },
        { "{\"policy\": 5}", "early_termination.policy" },
        { "{\"policy\": \"hyperband\"}", "early_termination.policy" },
        { "{\"policy\": \"bandit\"}", "early_termination.slack_factor" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0}", "early_termination.slack_factor" },
        { "{\"policy\": \"bandit\", \"slack_factor\": \"0.1\"}", "early_termination.slack_factor" },
        { "{\"policy\": \"bandit\", \"slack_amount\": -1}", "early_termination.slack_amount" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"slack_amount\": 0.2}",
          "early_termination.slack_amount" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"evaluation_interval\": 0}",
          "early_termination.evaluation_interval" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"evaluation_interval\": 1.5}",
          "early_termination.evaluation_interval" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"delay_evaluation\": -1}",
          "early_termination.delay_evaluation" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"delay_evaluation\": true}",
          "early_termination.delay_evaluation" },
        { "{\"policy\": \"bandit\", \"slack_factor\": 0.1, \"truncation_percentage\": 10}",
          "early_termination.truncation_percentage" },
        { "{\"policy\": \"median_stopping\", \"colour\": 1}", "early_termination.colour" },
        { "{\"policy\": \"median_stopping\", \"slack_factor\": 0.1}",
          "early_termination.slack_factor" },
        { "{\"policy\": \"truncation_selection\"}", "early_termination.truncation_percentage" },
        { "{\"policy\": \"truncation_selection\", \"truncation_percentage\": 100}",
          "early_termination.truncation_percentage" },
        { "{\"policy\": \"truncation_selection\", \"truncation_percentage\": 0.5}",
          "early_termination.truncation_percentage" },
        { "{\"policy\": \"truncation_selection\", \"truncation_percentage\": 10, "
          "\"exclude_finished_runs\": 1}",
          "early_termination.exclude_finished_runs" },
        { "{\"policy\": \"asha\", \"min_resource\": 0}", "early_termination.min_resource" },
        { "{\"policy\": \"asha\", \"min_resource\": 2.5}", "early_termination.min_resource" },
        { "{\"policy\": \"asha\", \"reduction_factor\": 1}", "early_termination.reduction_factor" },
        { "{\"policy\": \"asha\", \"reduction_factor\": \"3\"}",
          "early_termination.reduction_factor" },
        { "{\"policy\": \"asha\", \"evaluation_interval\": 1}",
          "early_termination.evaluation_interval" },
        { "{\"policy\": \"asha\", \"policy\": \"bandit\"}", "early_termination.policy" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *in = cJSON_Parse(cases[i][0]);
        struct es_policy p;
        struct sweep_error err;

        ASSERT_TRUE(in != NULL);
        memset(&p, 0x5a, sizeof(p));
        memset(&err, 0, sizeof(err));
        if (es_policy_parse(in, &p, &err) != ERR_INVALID)
            UNIT_FAIL("%s: accepted", cases[i][0]);
        if (strcmp(err.field, cases[i][1]) != 0)
            UNIT_FAIL("%s: field '%s' (%s), want '%s'", cases[i][0], err.field, err.message,
                      cases[i][1]);
        ASSERT_TRUE(err.message[0] != '\0');
        /* Nothing written on failure. */
        ASSERT_EQ(((unsigned char *)&p)[0], 0x5a);
        cJSON_Delete(in);
    }
}

/*
 * A script: reports fed in order. expect: 's' the policy stops the trial
 * now, 'k' it keeps it, 'i' the report is ignored (the trial was stopped
 * or ended), 'e' the trial ends by itself (no report). step 0 means the
 * trial's interval (its report count).
 */
struct rep {
    int trial;
    double value;
    char expect;
    int64_t step;
};

static struct es_state *run(const char *policy, bool maximize, const struct rep *r, size_t n)
{
    struct es_policy p = parse_ok(policy);
    struct es_state *es = es_new(&p, maximize, 16);
    int k[16] = { 0 };
    size_t i;

    for (i = 0; i < n; i++) {
        struct es_verdict v;
        bool stop;

        if (r[i].expect == 'e') {
            es_trial_ended(es, r[i].trial);
            continue;
        }
        if (r[i].expect != 'i')
            k[r[i].trial]++;
        stop = es_report(es, r[i].trial, r[i].step ? r[i].step : k[r[i].trial], r[i].value, &v);
        if (stop != (r[i].expect == 's'))
            UNIT_FAIL("%s: report %zu (trial %d, interval %d, value %g): %s, want %c (%s)", policy,
                      i, r[i].trial, k[r[i].trial], r[i].value, stop ? "stopped" : "kept",
                      r[i].expect, v.message);
        ASSERT_EQ(v.interval, k[r[i].trial]);
        ASSERT_TRUE(v.stop == stop);
        if (r[i].expect == 'i')
            ASSERT_TRUE(strstr(v.message, "ignored") != NULL);
    }
    return es;
}

#define RUN(policy, maximize, script)                                                              \
    es_free(run(policy, maximize, script, sizeof(script) / sizeof(script[0])))

/* One report and its verdict, for checking the numbers in it. */
static struct es_verdict report(struct es_state *es, int trial, int64_t step, double value)
{
    struct es_verdict v;

    es_report(es, trial, step, value, &v);
    return v;
}

static void bandit_slack_factor_maximize_with_delay(void)
{
    /* slack_factor 0.25, delay 2: intervals 3, 4, ... are evaluated;
     * threshold = best at k / 1.25. */
    static const struct rep script[] = {
        { 0, 0.5, 'k', 0 },  { 1, 0.4, 'k', 0 },  { 2, 0.1, 'k', 0 }, /* k1: delayed */
        { 0, 0.7, 'k', 0 },  { 1, 0.5, 'k', 0 },  { 2, 0.2, 'k', 0 }, /* k2: delayed */
        { 0, 0.9, 'k', 0 }, /* k3: best 0.9, threshold 0.72 */
        { 1, 0.7, 's', 0 }, /* 0.7 < 0.72 */
        { 2, 0.8, 'k', 0 },  { 0, 0.95, 'k', 0 }, /* k4: threshold 0.76 */
        { 2, 0.75, 's', 0 }, /* 0.75 < 0.76 */
        { 1, 0.99, 'i', 0 }, { 2, 0.99, 'i', 0 }, { 0, 0.99, 'k', 0 },
    };
    struct es_policy p = parse_ok("{\"policy\": \"bandit\", \"slack_factor\": 0.25}");
    struct es_state *es;
    struct es_verdict v;
    cJSON *json;
    char *text;

    RUN("{\"policy\": \"bandit\", \"slack_factor\": 0.25, \"delay_evaluation\": 2}", true, script);

    /* The verdict's numbers and words. */
    es = es_new(&p, true, 2);
    v = report(es, 0, 10, 0.91);
    ASSERT_TRUE(!v.stop);
    v = report(es, 1, 10, 0.52);
    ASSERT_TRUE(v.stop);
    ASSERT_EQ(v.interval, 1);
    ASSERT_EQ(v.step, 10);
    ASSERT_TRUE(v.value == 0.52);
    ASSERT_TRUE(fabs(v.threshold - 0.91 / 1.25) < 1e-12);
    ASSERT_STR_EQ(v.message, "bandit: 0.52 at interval 1 is below best 0.91 / (1 + 0.25) = 0.728");
    json = es_verdict_json(&p, &v);
    text = json_print(json);
    ASSERT_STR_EQ(text, "{\"policy\":\"bandit\",\"interval\":1,\"step\":10,\"value\":0.52,"
                        "\"threshold\":0.728,\"message\":\"bandit: 0.52 at interval 1 is below "
                        "best 0.91 / (1 + 0.25) = 0.728\"}");
    free(text);
    cJSON_Delete(json);
    es_free(es);
}

static void bandit_slack_amount_minimize_with_interval(void)
{
    /* slack_amount 0.25, evaluation_interval 2: intervals 2, 4, ...;
     * threshold = best at k + 0.25 (a finished trial's values count). */
    static const struct rep script[] = {
        { 0, 1.0, 'k', 0 },   { 0, 0.5, 'k', 0 },   { 0, 0, 'e', 0 }, /* best at k2: 0.5 */
        { 0, 0.1, 'i', 0 }, /* ended: ignored */
        { 1, 0.9, 'k', 0 },   { 1, 0.75, 'k', 0 }, /* k2: 0.75 is not above 0.5 + 0.25 */
        { 1, 0.25, 'k', 0 },  { 1, 0.5, 'k', 0 }, /* k4: best is itself */
        { 2, 4.0, 'k', 0 }, /* k1 is not evaluated */
        { 2, 0.875, 's', 0 }, /* k2: 0.875 > 0.75 */
        { 3, 0.5, 'k', 0 },   { 3, 0.625, 'k', 0 }, { 3, 9.0, 'k', 0 }, /* k3 is not evaluated */
        { 3, 0.875, 's', 0 }, /* k4: 0.875 > 0.5 + 0.25 */
    };
    struct es_policy p = parse_ok("{\"policy\": \"bandit\", \"slack_amount\": 0.25}");
    struct es_state *es = es_new(&p, false, 2);
    struct es_verdict v;

    RUN("{\"policy\": \"bandit\", \"slack_amount\": 0.25, \"evaluation_interval\": 2}", false,
        script);
    v = report(es, 0, 1, 1.0);
    v = report(es, 1, 1, 1.5);
    ASSERT_TRUE(v.stop);
    ASSERT_TRUE(v.threshold == 1.25);
    ASSERT_STR_EQ(v.message, "bandit: 1.5 at interval 1 is above best 1 + 0.25 = 1.25");
    es_free(es);
}

static void bandit_factor_minimize_and_amount_maximize(void)
{
    /* minimize, slack_factor 0.5: threshold = best * 1.5, the best
     * including the trial's own value. */
    static const struct rep by_factor[] = {
        { 0, 1.0, 'k', 0 },  { 1, 1.5, 'k', 0 }, /* == 1.5: kept */
        { 2, 1.75, 's', 0 }, { 3, 0.5, 'k', 0 }, /* the new best */
        { 4, 1.0, 's', 0 }, /* 1.0 > 0.75 */
    };
    /* maximize, slack_amount 0.25: threshold = best - 0.25. */
    static const struct rep by_amount[] = {
        { 0, 1.0, 'k', 0 },
        { 1, 0.75, 'k', 0 },
        { 2, 0.5, 's', 0 },
        { 3, -2.0, 's', 0 },
    };

    RUN("{\"policy\": \"bandit\", \"slack_factor\": 0.5}", false, by_factor);
    RUN("{\"policy\": \"bandit\", \"slack_amount\": 0.25}", true, by_amount);
}

static void median_stopping_maximize_with_delay(void)
{
    /* delay 1: intervals 2, 3, ...; a trial stops when its best value so
     * far is below the median of the other trials' running averages at
     * k. Running averages at k1: 0.5, 0.25, 0.125. */
    static const struct rep script[] = {
        { 0, 0.5, 'k', 0 },    { 1, 0.25, 'k', 0 },
        { 2, 0.125, 'k', 0 },  { 0, 0.75, 'k', 0 }, /* k2: no other trial there yet; avg 0.625 */
        { 1, 0.5, 's', 0 }, /* 0.5 < median [0.625]; avg 0.375 */
        { 2, 1.0, 'k', 0 }, /* 1.0 >= median [0.375, 0.625] = 0.5; avg 0.5625 */
        { 0, 0.875, 'k', 0 }, /* k3: alone; avg 0.708 */
        { 2, 0.25, 'k', 0 }, /* its best so far, 1.0, is above 0.708 */
        { 1, 0.9, 'i', 0 },    { 3, 0.0625, 'k', 0 }, /* k1: delayed */
        { 3, 0.0625, 's', 0 }, /* k2: median [0.375, 0.5625, 0.625] = 0.5625 */
    };
    struct es_policy p = parse_ok("{\"policy\": \"median_stopping\"}");
    struct es_state *es = es_new(&p, true, 3);
    struct es_verdict v;

    RUN("{\"policy\": \"median_stopping\", \"delay_evaluation\": 1}", true, script);
    v = report(es, 0, 1, 0.5);
    ASSERT_STR_EQ(v.message, "median_stopping: no other trial reached interval 1 yet");
    ASSERT_TRUE(isnan(v.threshold));
    v = report(es, 1, 1, 0.25);
    ASSERT_TRUE(v.stop);
    ASSERT_TRUE(v.threshold == 0.5);
    ASSERT_STR_EQ(v.message, "median_stopping: best 0.25 up to interval 1 is below 0.5, the "
                             "median of the running averages of 1 other trials at interval 1");
    es_free(es);
}

static void median_stopping_minimize_with_interval(void)
{
    /* evaluation_interval 2: intervals 2, 4, ... */
    static const struct rep script[] = {
        { 0, 1.0, 'k', 0 },  { 1, 1.25, 'k', 0 }, /* k1: not evaluated */
        { 0, 0.75, 'k', 0 }, /* k2: alone; avg 0.875 */
        { 1, 0.75, 'k', 0 }, /* 0.75 <= median [0.875]; avg 1.0 */
        { 2, 4.0, 'k', 0 }, /* k1: not evaluated */
        { 2, 2.0, 's', 0 }, /* 2.0 > median [0.875, 1.0] = 0.9375; avg 3.0 */
        { 3, 1.0, 'k', 0 },  { 3, 1.0, 'k', 0 }, /* == median [0.875, 1.0, 3.0]: kept */
        { 3, 3.0, 'k', 0 }, /* k3: not evaluated */
        { 0, 0.5, 'k', 0 },  { 0, 0.25, 'k', 0 }, /* k4: alone; avg 0.625 */
        { 1, 0.5, 'k', 0 },  { 1, 0.5, 'k', 0 }, /* 0.5 <= 0.625; avg 0.75 */
        { 3, 0.75, 's', 0 }, /* best 0.75 > median [0.625, 0.75] = 0.6875 */
    };

    RUN("{\"policy\": \"median_stopping\", \"evaluation_interval\": 2}", false, script);
}

/* truncation_percentage 34: floor(n * 0.34) trials are cut: none of 2, one
 * of 3 or 4. Trial 0 finishes first. */
static const struct rep truncation_common[] = {
    { 0, 0.9, 'k', 0 }, { 0, 0.95, 'k', 0 }, { 0, 0, 'e', 0 },
    { 1, 0.5, 'k', 0 }, { 1, 0.6, 'k', 0 },
};

static void truncation_selection_keeps_finished_runs(void)
{
    static const struct rep script[] = {
        truncation_common[0], truncation_common[1], truncation_common[2], truncation_common[3],
        truncation_common[4], { 2, 0.7, 'k', 0 }, /* k1 [0.5, 0.7, 0.9]: the worst is cut; ties kept
                                                   */
        { 2, 0.5, 's', 0 }, /* k2 [0.5, 0.6, 0.95]: it is the worst */
        { 3, 0.6, 'k', 0 }, /* k1 [0.5, 0.6, 0.7, 0.9]: one cut */
        { 3, 0.4, 's', 0 }, /* k2 [0.4, 0.5, 0.6, 0.95] */
    };

    RUN("{\"policy\": \"truncation_selection\", \"truncation_percentage\": 34}", true, script);
}

static void truncation_selection_excludes_finished_runs(void)
{
    static const struct rep script[] = {
        truncation_common[0], truncation_common[1], truncation_common[2], truncation_common[3],
        truncation_common[4], { 2, 0.7, 'k', 0 }, /* k1 [0.5, 0.7]: none cut */
        { 2, 0.5, 'k', 0 }, /* k2 [0.5, 0.6]: none cut (trial 0's 0.95 left out) */
        { 3, 0.6, 'k', 0 }, /* k1 [0.5, 0.6, 0.7]: the worst is cut */
        { 3, 0.4, 's', 0 }, /* k2 [0.4, 0.5, 0.6] */
    };
    struct es_policy p =
        parse_ok("{\"policy\": \"truncation_selection\", "
                 "\"truncation_percentage\": 50, \"exclude_finished_runs\": true}");
    struct es_state *es = es_new(&p, true, 3);
    struct es_verdict v;

    RUN("{\"policy\": \"truncation_selection\", \"truncation_percentage\": 34, "
        "\"exclude_finished_runs\": true}",
        true, script);

    v = report(es, 0, 1, 0.9);
    v = report(es, 1, 1, 0.5);
    ASSERT_TRUE(v.stop);
    ASSERT_TRUE(v.threshold == 0.9);
    ASSERT_STR_EQ(v.message, "truncation_selection: 0.5 at interval 1 is below 0.9: the worst "
                             "50% (1 of 2 trials) at interval 1 are cut");
    /* A stopped trial is not a finished one: its 0.5 keeps counting. */
    es_trial_ended(es, 1);
    es_trial_ended(es, 0);
    v = report(es, 2, 1, 0.4); /* [0.4, 0.5]: one cut (alone it would be kept) */
    ASSERT_TRUE(v.stop);
    ASSERT_TRUE(v.threshold == 0.5);
    es_free(es);
}

static void truncation_selection_minimize_with_delay_and_interval(void)
{
    /* delay 2, interval 2: only k4 of these is evaluated. */
    static const struct rep script[] = {
        { 0, 1.0, 'k', 0 }, { 1, 2.0, 'k', 0 }, { 0, 1.0, 'k', 0 }, { 1, 2.0, 'k', 0 },
        { 0, 1.0, 'k', 0 }, { 1, 2.0, 'k', 0 }, { 0, 1.0, 'k', 0 }, /* k4: alone */
        { 1, 2.0, 's', 0 }, /* k4 [2.0, 1.0]: the worse half */
    };

    RUN("{\"policy\": \"truncation_selection\", \"truncation_percentage\": 50, "
        "\"delay_evaluation\": 2, \"evaluation_interval\": 2}",
        false, script);
}

static void asha_reduction_factor_2(void)
{
    /* Rungs at steps 1, 2, 4, 8; the cutoff is the median of the values
     * recorded at the rung. */
    static const struct rep script[] = {
        { 0, 0.1, 'k', 1 },  { 0, 0.2, 'k', 2 }, { 0, 0.3, 'k', 3 },
        { 0, 0.4, 'k', 4 },  { 0, 0.5, 'k', 5 }, { 0, 0.6, 'k', 6 },
        { 0, 0.7, 'k', 7 },  { 0, 0.8, 'k', 8 }, /* rungs: 1 [.1] 2 [.2] 4 [.4] 8 [.8] */
        { 1, 0.05, 's', 1 }, /* below 0.1; rung 1 [.05 .1] */
        { 2, 0.2, 'k', 1 }, /* above 0.075; rung 1 [.05 .1 .2] */
        { 2, 0.15, 's', 2 }, /* below 0.2; rung 2 [.15 .2] */
        { 3, 0.3, 'k', 1 }, /* above 0.1 */
        { 3, 0.25, 'k', 2 }, /* above 0.175 */
        { 3, 0.1, 'k', 3 }, /* no rung at step 3 */
        { 3, 0.35, 's', 4 }, /* below 0.4 */
        { 3, 0.9, 'i', 5 },
    };
    struct es_policy p = parse_ok("{\"policy\": \"asha\", \"reduction_factor\": 2}");
    struct es_state *es = es_new(&p, true, 2);
    struct es_verdict v;

    RUN("{\"policy\": \"asha\", \"min_resource\": 1, \"reduction_factor\": 2}", true, script);
    v = report(es, 0, 4, 0.5);
    ASSERT_TRUE(isnan(v.threshold));
    ASSERT_STR_EQ(v.message, "asha: the first value at rung 4");
    v = report(es, 0, 7, 0.1);
    ASSERT_TRUE(!v.stop);
    ASSERT_STR_EQ(v.message, "asha: step 7 reaches no new rung");
    v = report(es, 1, 5, 0.25);
    ASSERT_TRUE(v.stop);
    ASSERT_TRUE(v.threshold == 0.5);
    ASSERT_STR_EQ(v.message, "asha: 0.25 at step 5 is below the cutoff 0.5 for the best 1/2 of "
                             "the 1 values at rung 4");
    es_free(es);
}

static void asha_reduction_factor_3(void)
{
    /* minimize; rungs at steps 1, 3, 9; the cutoff is the 1/3 quantile of
     * the losses recorded (linear interpolation). */
    static const struct rep script[] = {
        { 0, 1.0, 'k', 1 },  { 0, 0.9, 'k', 2 }, { 0, 0.8, 'k', 3 },
        { 0, 0.7, 'k', 4 },  { 0, 0.6, 'k', 5 }, { 0, 0.5, 'k', 6 },
        { 0, 0.4, 'k', 7 },  { 0, 0.3, 'k', 8 }, { 0, 0.2, 'k', 9 }, /* 1 [1] 3 [.8] 9 [.2] */
        { 1, 0.5, 'k', 1 }, /* below 1.0; rung 1 [.5 1] */
        { 2, 0.7, 's', 1 }, /* above 0.5 + (1 - 0.5) / 3 = 0.667; rung 1 [.5 .7 1] */
        { 3, 0.6, 'k', 1 }, /* below 0.5 + 0.2 / 3 = 0.633; rung 1 [.5 .6 .7 1] */
        { 3, 0.85, 's', 3 }, /* above 0.8; rung 3 [.8 .85] */
        { 4, 0.81, 'k', 5 }, /* rung 1 skipped: step 5 reaches rung 3 first; 0.81 is below
                                0.8 + 0.05 / 3 = 0.817 */
        { 4, 0.19, 'k', 9 }, /* below 0.2 */
        { 5, 0.61, 's', 1 }, /* rung 1 [.5 .6 .7 1]: cutoff 0.6 (with 0.81 there: 0.633) */
    };
    /* min_resource 2: rungs at 2, 6, 18; step 1 is below every rung. */
    static const struct rep min2[] = {
        { 0, 0.9, 'k', 1 },  { 0, 0.9, 'k', 2 }, { 0, 0.9, 'k', 6 }, /* rung 2 [.9] 6 [.9] */
        { 1, 0.1, 'k', 1 },  { 1, 0.1, 's', 2 }, /* rung 2 [.1 .9] */
        { 2, 0.95, 'k', 5 }, /* above 0.1 + 0.8 * 2 / 3 = 0.633 */
        { 2, 0.5, 's', 6 }, /* below 0.9 */
    };

    RUN("{\"policy\": \"asha\", \"reduction_factor\": 3}", false, script);
    RUN("{\"policy\": \"asha\", \"min_resource\": 2, \"reduction_factor\": 3}", true, min2);
}

static void no_policy_and_nan(void)
{
    struct es_policy none = parse_ok("null");
    struct es_policy bandit = parse_ok("{\"policy\": \"bandit\", \"slack_factor\": 0.1}");
    struct es_state *es = es_new(&none, true, 2);
    struct es_verdict v;
    cJSON *json;
    char *text;
    int i;

    for (i = 0; i < 5; i++) {
        v = report(es, 0, i, 1.0);
        ASSERT_TRUE(!v.stop);
        v = report(es, 1, i, -1e9);
        ASSERT_TRUE(!v.stop);
    }
    ASSERT_EQ(v.interval, 5);
    es_free(es);

    /* NaN is the worst value, whichever the goal. */
    es = es_new(&bandit, true, 2);
    report(es, 0, 1, 1.0);
    v = report(es, 1, 1, NAN);
    ASSERT_TRUE(v.stop);
    json = es_verdict_json(&bandit, &v);
    text = json_print(json);
    ASSERT_TRUE(strstr(text, "\"value\":null") != NULL);
    free(text);
    cJSON_Delete(json);
    es_free(es);
    es = es_new(&bandit, false, 3);
    report(es, 0, 1, 1.0);
    ASSERT_TRUE(report(es, 1, 1, NAN).stop);
    /* An infinite loss is the worst but one, and leaves the best alone. */
    v = report(es, 2, 1, INFINITY);
    ASSERT_TRUE(v.stop);
    ASSERT_TRUE(v.threshold == 1.1);
    es_free(es);
}

/*
 * The state's incremental arrays against the rules computed from scratch
 * (every trial's history rescanned) on random curves fed in a random
 * order, with trials ending by themselves now and then.
 */
#define REF_TRIALS 40
#define REF_REPORTS 30

struct ref {
    double g[REF_TRIALS][REF_REPORTS]; /* goodness at each interval */
    int k[REF_TRIALS];
    char state[REF_TRIALS]; /* 'a' active, 's' stopped, 'e' ended */
    int64_t rung_of[REF_TRIALS]; /* asha: last rung index, -1 */
    double rung_g[64][REF_TRIALS * REF_REPORTS]; /* asha: by rung index */
    int rung_n[64];
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double quantile(double *v, int n, double q)
{
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;

    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[lo] * (1 - (pos - lo)) + v[hi] * (pos - lo);
}

/* The reference verdict for trial t's report (already in r): stop, and
 * the threshold in goodness (NAN when no rule applied). */
static bool ref_verdict(struct ref *r, const struct es_policy *p, int t, int64_t step,
                        double *ret_threshold)
{
    static double v[REF_TRIALS * REF_REPORTS];
    int k = r->k[t];
    double g = r->g[t][k - 1];
    bool due = k > p->delay_evaluation && k % p->evaluation_interval == 0;
    int n = 0;
    int u;
    int j;

    *ret_threshold = NAN;
    if (p->kind == ES_BANDIT && due) {
        double best = -INFINITY;

        for (u = 0; u < REF_TRIALS; u++)
            best = r->k[u] >= k && r->g[u][k - 1] > best ? r->g[u][k - 1] : best;
        /* maximize only here: threshold = best - slack_amount */
        *ret_threshold = best - p->slack_amount;
        return g < *ret_threshold;
    }
    if (p->kind == ES_MEDIAN_STOPPING && due) {
        double best = -INFINITY;

        for (u = 0; u < REF_TRIALS; u++) {
            double sum = 0;

            if (u == t || r->k[u] < k)
                continue;
            for (j = 0; j < k; j++)
                sum += r->g[u][j];
            v[n++] = sum / k;
        }
        if (n == 0)
            return false;
        for (j = 0; j < k; j++)
            best = r->g[t][j] > best ? r->g[t][j] : best;
        *ret_threshold = quantile(v, n, 0.5);
        return best < *ret_threshold;
    }
    if (p->kind == ES_TRUNCATION_SELECTION && due) {
        int cut;

        for (u = 0; u < REF_TRIALS; u++) {
            if (r->k[u] >= k && !(p->exclude_finished_runs && r->state[u] == 'e'))
                v[n++] = r->g[u][k - 1];
        }
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        cut = (int)floor(n * p->truncation_percentage / 100);
        *ret_threshold = v[cut < n ? cut : n - 1];
        return cut > 0 && g < v[cut];
    }
    if (p->kind == ES_ASHA) {
        int64_t i = -1;
        double r_i = (double)p->min_resource;

        while (r_i <= (double)step) {
            i++;
            r_i *= p->reduction_factor;
        }
        if (i <= r->rung_of[t])
            return false;
        r->rung_of[t] = i;
        n = r->rung_n[i];
        memcpy(v, r->rung_g[i], (size_t)n * sizeof(*v));
        r->rung_g[i][r->rung_n[i]++] = g;
        if (n == 0)
            return false;
        *ret_threshold = quantile(v, n, 1 - 1 / p->reduction_factor);
        return g < *ret_threshold;
    }
    return false;
}

static void matches_the_rules_from_scratch(void)
{
    static const char *const policies[] = {
        "{\"policy\": \"bandit\", \"slack_amount\": 0.15, \"delay_evaluation\": 3}",
        "{\"policy\": \"median_stopping\", \"evaluation_interval\": 2, \"delay_evaluation\": 1}",
        "{\"policy\": \"truncation_selection\", \"truncation_percentage\": 30}",
        "{\"policy\": \"truncation_selection\", \"truncation_percentage\": 25, "
        "\"exclude_finished_runs\": true}",
        "{\"policy\": \"asha\", \"min_resource\": 2, \"reduction_factor\": 2}",
        "{\"policy\": \"asha\", \"reduction_factor\": 3}",
    };
    static struct ref r;
    size_t i;

    for (i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        struct es_policy p = parse_ok(policies[i]);
        struct es_state *es = es_new(&p, true, REF_TRIALS);
        unsigned seed = 1234;
        int64_t step[REF_TRIALS] = { 0 };
        int stops = 0;
        int n;
        int t;

        memset(&r, 0, sizeof(r));
        for (t = 0; t < REF_TRIALS; t++) {
            r.state[t] = 'a';
            r.rung_of[t] = -1;
        }
        for (n = 0; n < REF_TRIALS * REF_REPORTS; n++) {
            struct es_verdict v;
            double threshold;
            double value;
            bool want;

            t = rand_r(&seed) % REF_TRIALS;
            if (r.state[t] != 'a' || r.k[t] == REF_REPORTS)
                continue;
            if (rand_r(&seed) % 50 == 0) {
                r.state[t] = 'e';
                es_trial_ended(es, t);
                continue;
            }
            /* A rising curve of the trial's own height, with noise. */
            value = (0.5 + 0.5 * (t % 7) / 7.0) * (1 - exp(-(r.k[t] + 1) / 8.0)) +
                    0.05 * rand_r(&seed) / RAND_MAX;
            step[t] += 1 + rand_r(&seed) % 3;
            r.g[t][r.k[t]++] = value;
            want = ref_verdict(&r, &p, t, step[t], &threshold);
            if (es_report(es, t, step[t], value, &v) != want)
                UNIT_FAIL("%s: report %d (trial %d, interval %d): %s, the rule says %s (%s)",
                          policies[i], n, t, r.k[t], v.stop ? "stopped" : "kept",
                          want ? "stop" : "keep", v.message);
            if (isnan(threshold) != isnan(v.threshold) ||
                (!isnan(threshold) && fabs(threshold - v.threshold) > 1e-12))
                UNIT_FAIL("%s: report %d: threshold %.17g, the rule says %.17g", policies[i], n,
                          v.threshold, threshold);
            if (want) {
                r.state[t] = 's';
                stops++;
            }
        }
        /* The curves were made for the rules to bite, but not always. */
        if (stops == 0 || stops == REF_TRIALS)
            UNIT_FAIL("%s: %d of %d trials stopped", policies[i], stops, REF_TRIALS);
        es_free(es);
    }
}

UNIT_LIST(earlystop_tests) = {
    { "earlystop/parses_policies_with_defaults", parses_policies_with_defaults },
    { "earlystop/parse_errors_name_the_field", parse_errors_name_the_field },
    { "earlystop/bandit_slack_factor_maximize_with_delay",
      bandit_slack_factor_maximize_with_delay },
    { "earlystop/bandit_slack_amount_minimize_with_interval",
      bandit_slack_amount_minimize_with_interval },
    { "earlystop/bandit_factor_minimize_and_amount_maximize",
      bandit_factor_minimize_and_amount_maximize },
    { "earlystop/median_stopping_maximize_with_delay", median_stopping_maximize_with_delay },
    { "earlystop/median_stopping_minimize_with_interval", median_stopping_minimize_with_interval },
    { "earlystop/truncation_selection_keeps_finished_runs",
      truncation_selection_keeps_finished_runs },
    { "earlystop/truncation_selection_excludes_finished_runs",
      truncation_selection_excludes_finished_runs },
    { "earlystop/truncation_selection_minimize_with_delay_and_interval",
      truncation_selection_minimize_with_delay_and_interval },
    { "earlystop/asha_reduction_factor_2", asha_reduction_factor_2 },
    { "earlystop/asha_reduction_factor_3", asha_reduction_factor_3 },
    { "earlystop/no_policy_and_nan", no_policy_and_nan },
    { "earlystop/matches_the_rules_from_scratch", matches_the_rules_from_scratch },
    { NULL, NULL },
};
