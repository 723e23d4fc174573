/* test_runspec.c - run spec validation, defaults and task expansion. */
#include "tests/unit/unit.h"

#include <stdlib.h>

#include "api/runspec.h"
#include "common/err.h"
#include "common/json.h"

#define SRC                                                                                        \
    "\"source\": \"sha256:"                                                                        \
    "0000000000000000000000000000000000000000000000000000000000000000\""

/* Validates text; returns the error's field ("" on success). */
static const char *field_of(const char *text)
{
    static struct runspec_error err;
    cJSON *in = cJSON_Parse(text);
    struct run_spec spec;
    int rc;

    if (in == NULL)
        UNIT_FAIL("test input is not JSON: %s", text);
    memset(&err, 0, sizeof(err));
    rc = runspec_validate(in, &spec, &err);
    cJSON_Delete(in);
    if (rc == 0) {
        run_spec_release(&spec);
        return "";
    }
    ASSERT_EQ(rc, ERR_INVALID);
    ASSERT_TRUE(err.message[0] != '\0');
    return err.field;
}

static void accepts_minimal_command_run(void)
{
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"true\"]}"), "");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", " SRC ", \"entry_script\": \"train.py\"}"), "");
}

static void fills_defaults(void)
{
    struct runspec_error err;
    cJSON *in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"], "
                            "\"distributed_backend\": \"ps\", \"node_count\": 2}");
    struct run_spec spec;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    ASSERT_STR_EQ(json_get_string(spec.json, "compute_target"), "default");
    ASSERT_EQ(json_get(spec.json, "worker_count")->valueint, 2);
    ASSERT_EQ(json_get(spec.json, "parameter_server_count")->valueint, 1);
    ASSERT_EQ(json_get(spec.json, "cpus_per_process")->valuedouble, 1);
    ASSERT_EQ(json_get(spec.json, "max_retries")->valueint, 0);
    ASSERT_TRUE(cJSON_IsObject(json_get(spec.json, "tags")));
    ASSERT_TRUE(cJSON_IsFalse(json_get(spec.json, "use_gpu")));
    /* The struct says the same. */
    ASSERT_STR_EQ(spec.compute_target, "default");
    ASSERT_EQ(spec.shape.backend, BACKEND_PS);
    ASSERT_EQ(spec.shape.worker_count, 2);
    ASSERT_EQ(spec.shape.parameter_server_count, 1);
    ASSERT_EQ(spec.shape.cpus_per_process, 1);
    ASSERT_EQ(spec.max_retries, 0);
    ASSERT_TRUE(!spec.use_gpu);
    ASSERT_EQ(spec.argc, 1);
    ASSERT_STR_EQ(spec.argv[0], "x");
    cJSON_Delete(in);
    run_spec_release(&spec);
}

static void names_the_bad_field(void)
{
    ASSERT_STR_EQ(field_of("{\"command\": [\"x\"]}"), "experiment");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"a b\", \"command\": [\"x\"]}"), "experiment");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\"}"), "entry_script");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"entry_script\": \"t.py\"}"), "entry_script");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", " SRC ", \"entry_script\": \"../t.py\"}"),
                  "entry_script");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", " SRC ", \"entry_script\": \"/t.py\"}"),
                  "entry_script");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"bogus\": 1}"), "bogus");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": []}"), "command");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [1]}"), "command");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"node_count\": 0}"),
                  "node_count");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"node_count\": 1.5}"),
                  "node_count");
    ASSERT_STR_EQ(
        field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"x\"}"),
        "distributed_backend");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"worker_count\": 2}"),
                  "worker_count");
    ASSERT_STR_EQ(
        field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"process_count_per_node\": 2}"),
        "process_count_per_node");
    ASSERT_STR_EQ(
        field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"gpus_per_process\": 2}"),
        "gpus_per_process");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"environment_variables\": {\"TRAINYARD_X\": \"1\"}}"),
                  "environment_variables");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"environment_variables\": {\"1A\": \"1\"}}"),
                  "environment_variables");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"tags\": {\"k\": 1}}"),
                  "tags");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", " SRC ", \"entry_script\": \"t.py\", "
                           "\"script_params\": {\"--x\": [1]}}"),
                  "script_params");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"pip_packages\": [\"--index-url=http://x\"]}"),
                  "pip_packages");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"distributed_backend\": \"ps\", \"node_count\": 5, "
                           "\"worker_count\": 2, \"parameter_server_count\": 1}"),
                  "node_count");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"priority\": 1e12}"),
                  "priority");
}

/* A validated spec validates again to itself (SPEC §9: a returned spec is
 * accepted unchanged), for every backend. */
static void spec_is_a_fixed_point(void)
{
    static const char *const inputs[] = {
        "{\"experiment\": \"e\", \"command\": [\"x\", \"y\"]}",
        "{\"experiment\": \"e\", " SRC ", \"entry_script\": \"t.py\", "
        "\"script_params\": {\"--lr\": 0.1, \"--v\": true}, \"arguments\": [\"a\"]}",
        "{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"ps\", "
        "\"node_count\": 2, \"chief\": true, \"evaluator\": true, \"worker_count\": 3}",
        "{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"pytorch\", "
        "\"node_count\": 2, \"process_count_per_node\": 2}",
        "{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"mpi\", "
        "\"node_count\": 2, \"use_gpu\": true, \"gpus_per_process\": 2}",
        "{\"experiment\": \"e\", \"command\": [\"x\"], \"tags\": {\"a\": \"b\"}, "
        "\"environment_variables\": {\"A\": \"1\"}, \"pip_packages\": [\"numpy\"], "
        "\"priority\": 5, \"max_retries\": 2, \"max_run_duration_seconds\": 60, "
        "\"cpus_per_process\": 0.5, \"memory_mb_per_process\": 100}",
        NULL,
    };
    const char *const *text;

    for (text = inputs; *text; text++) {
        struct runspec_error err;
        cJSON *in = cJSON_Parse(*text);
        struct run_spec spec;
        struct run_spec again;

        ASSERT_TRUE(in != NULL);
        ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
        if (runspec_validate(spec.json, &again, &err) != 0)
            UNIT_FAIL("%s: its spec is refused: %s: %s", *text, err.field, err.message);
        ASSERT_TRUE(cJSON_Compare(spec.json, again.json, true));
        cJSON_Delete(in);
        run_spec_release(&spec);
        run_spec_release(&again);
    }
    /* The defaults are taken back; other values still are not. */
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"script_params\": {\"--a\": 1}}"),
                  "script_params");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"use_gpu\": true, "
                           "\"gpus_per_process\": 0}"),
                  "gpus_per_process");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], \"chief\": true}"),
                  "chief");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"distributed_backend\": \"ps\", \"process_count_per_node\": 2}"),
                  "process_count_per_node");
    ASSERT_STR_EQ(field_of("{\"experiment\": \"e\", \"command\": [\"x\"], "
                           "\"worker_count\": false}"),
                  "worker_count");
}

static void expands_tasks_per_backend(void)
{
    struct runspec_error err;
    struct store_new_task *tasks;
    char *names;
    int n;
    cJSON *in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"], "
                            "\"distributed_backend\": \"ps\", \"node_count\": 2, "
                            "\"worker_count\": 2, \"parameter_server_count\": 1, "
                            "\"chief\": true, \"evaluator\": true}");
    struct run_spec spec;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(&spec, &tasks, &names, &n);
    ASSERT_EQ(n, 5);
    ASSERT_STR_EQ(tasks[0].name, "chief");
    ASSERT_STR_EQ(tasks[1].name, "ps-0");
    ASSERT_STR_EQ(tasks[2].name, "worker-0");
    ASSERT_STR_EQ(tasks[3].name, "worker-1");
    ASSERT_EQ(tasks[3].index, 1);
    ASSERT_STR_EQ(tasks[4].type, "evaluator");
    free(tasks);
    free(names);
    cJSON_Delete(in);
    run_spec_release(&spec);

    in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"], "
                     "\"distributed_backend\": \"mpi\", \"node_count\": 3, "
                     "\"process_count_per_node\": 4}");
    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(&spec, &tasks, &names, &n);
    ASSERT_EQ(n, 4);
    ASSERT_STR_EQ(tasks[0].name, "launcher");
    ASSERT_STR_EQ(tasks[3].name, "worker-2");
    free(tasks);
    free(names);
    cJSON_Delete(in);
    run_spec_release(&spec);

    in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"], "
                     "\"distributed_backend\": \"pytorch\", \"node_count\": 2, "
                     "\"process_count_per_node\": 3}");
    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(&spec, &tasks, &names, &n);
    ASSERT_EQ(n, 6);
    ASSERT_STR_EQ(tasks[5].name, "rank-5");
    free(tasks);
    free(names);
    cJSON_Delete(in);
    run_spec_release(&spec);
}

/* What the store keeps reads back (common/spec.c) as what was validated:
 * argv from entry_script, script_params and arguments; pairs in order. */
static void the_stored_spec_reads_back(void)
{
    struct runspec_error err;
    cJSON *in =
        cJSON_Parse("{\"experiment\": \"e\", " SRC ", \"entry_script\": \"t.py\", "
                    "\"script_params\": {\"--lr\": 0.01, \"--fast\": true, \"--no\": false, "
                    "\"--flag\": null, \"--name\": \"x y\", \"--n\": 3}, "
                    "\"arguments\": [\"a\"], \"environment_variables\": {\"B\": \"2\", "
                    "\"A\": \"1\"}, \"node_selector\": {\"zone\": \"z\"}, "
                    "\"distributed_backend\": \"mpi\", \"node_count\": 2, "
                    "\"conda_packages\": [\"numpy\"], \"max_run_duration_seconds\": 9}");
    const char *want[] = { "t.py",   "--lr", "0.01", "--fast", "--flag",
                           "--name", "x y",  "--n",  "3",      "a" };
    struct run_spec spec;
    struct run_spec back;
    char *text;
    int i;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    text = json_print(spec.json);
    ASSERT_EQ(run_spec_parse(text, &back), 0);
    ASSERT_TRUE(back.use_python);
    ASSERT_EQ(back.argc, 10);
    for (i = 0; i < back.argc; i++)
        ASSERT_STR_EQ(back.argv[i], want[i]);
    ASSERT_EQ(back.n_env, 2);
    ASSERT_STR_EQ(back.env[0].key, "B");
    ASSERT_STR_EQ(run_spec_env(&back, "A"), "1");
    ASSERT_TRUE(run_spec_env(&back, "C") == NULL);
    ASSERT_EQ(back.n_selector, 1);
    ASSERT_STR_EQ(back.selector[0].value, "z");
    ASSERT_EQ(back.shape.backend, BACKEND_MPI);
    ASSERT_EQ(back.shape.node_count, 2);
    ASSERT_EQ(back.features, FEATURE_MPI | FEATURE_CONDA);
    ASSERT_EQ(back.max_run_duration_s, 9);
    ASSERT_STR_EQ(back.source, spec.source);
    ASSERT_TRUE(back.image == NULL);
    free(text);
    run_spec_release(&back);
    run_spec_release(&spec);
    cJSON_Delete(in);
}

/* A stored spec that is not what validation writes (a row changed by
 * hand) is refused, not trusted. */
static void a_spec_not_written_by_validation_is_refused(void)
{
    static const char *const changes[][2] = {
        { "node_count", "0" },
        { "node_count", "\"2\"" },
        { "distributed_backend", "\"x\"" },
        { "command", "[]" },
        { "command", "[1]" },
        { "environment_variables", "{\"A\": 1}" },
        { "cpus_per_process", "-1" },
        { "experiment", "null" },
        { "pip_packages", "null" },
        { "entry_script", "\"t.py\"" },
    };
    struct runspec_error err;
    cJSON *in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"]}");
    struct run_spec spec;
    struct run_spec back;
    size_t i;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    for (i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        cJSON *bad = cJSON_Duplicate(spec.json, true);
        char *text;

        cJSON_ReplaceItemInObjectCaseSensitive(bad, changes[i][0], cJSON_Parse(changes[i][1]));
        text = json_print(bad);
        if (run_spec_parse(text, &back) != ERR_INVALID)
            UNIT_FAIL("accepted: %s", text);
        free(text);
        cJSON_Delete(bad);
    }
    ASSERT_EQ(run_spec_parse("not json", &back), ERR_INVALID);
    ASSERT_EQ(run_spec_parse("[]", &back), ERR_INVALID);
    run_spec_release(&spec);
    cJSON_Delete(in);
}

UNIT_LIST(runspec_tests) = {
    { "runspec/the_stored_spec_reads_back", the_stored_spec_reads_back },
    { "runspec/a_spec_not_written_by_validation_is_refused",
      a_spec_not_written_by_validation_is_refused },
    { "runspec/accepts_minimal_command_run", accepts_minimal_command_run },
    { "runspec/fills_defaults", fills_defaults },
    { "runspec/names_the_bad_field", names_the_bad_field },
    { "runspec/spec_is_a_fixed_point", spec_is_a_fixed_point },
    { "runspec/expands_tasks_per_backend", expands_tasks_per_backend },
    { NULL, NULL },
};
