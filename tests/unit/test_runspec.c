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
    cJSON *spec = NULL;
    int rc;

    if (in == NULL)
        UNIT_FAIL("test input is not JSON: %s", text);
    memset(&err, 0, sizeof(err));
    rc = runspec_validate(in, &spec, &err);
    cJSON_Delete(in);
    cJSON_Delete(spec);
    if (rc == 0)
        return "";
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
    cJSON *spec = NULL;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    ASSERT_STR_EQ(json_get_string(spec, "compute_target"), "default");
    ASSERT_EQ(json_get(spec, "worker_count")->valueint, 2);
    ASSERT_EQ(json_get(spec, "parameter_server_count")->valueint, 1);
    ASSERT_EQ(json_get(spec, "cpus_per_process")->valuedouble, 1);
    ASSERT_EQ(json_get(spec, "max_retries")->valueint, 0);
    ASSERT_TRUE(cJSON_IsObject(json_get(spec, "tags")));
    ASSERT_TRUE(cJSON_IsFalse(json_get(spec, "use_gpu")));
    cJSON_Delete(in);
    cJSON_Delete(spec);
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
        cJSON *spec = NULL;
        cJSON *again = NULL;

        ASSERT_TRUE(in != NULL);
        ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
        if (runspec_validate(spec, &again, &err) != 0)
            UNIT_FAIL("%s: its spec is refused: %s: %s", *text, err.field, err.message);
        ASSERT_TRUE(cJSON_Compare(spec, again, true));
        cJSON_Delete(in);
        cJSON_Delete(spec);
        cJSON_Delete(again);
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
    cJSON *spec = NULL;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(spec, &tasks, &names, &n);
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
    cJSON_Delete(spec);

    in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"], "
                     "\"distributed_backend\": \"mpi\", \"node_count\": 3, "
                     "\"process_count_per_node\": 4}");
    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(spec, &tasks, &names, &n);
    ASSERT_EQ(n, 4);
    ASSERT_STR_EQ(tasks[0].name, "launcher");
    ASSERT_STR_EQ(tasks[3].name, "worker-2");
    free(tasks);
    free(names);
    cJSON_Delete(in);
    cJSON_Delete(spec);

    in = cJSON_Parse("{\"experiment\": \"e\", \"command\": [\"x\"], "
                     "\"distributed_backend\": \"pytorch\", \"node_count\": 2, "
                     "\"process_count_per_node\": 3}");
    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(spec, &tasks, &names, &n);
    ASSERT_EQ(n, 6);
    ASSERT_STR_EQ(tasks[5].name, "rank-5");
    free(tasks);
    free(names);
    cJSON_Delete(in);
    cJSON_Delete(spec);
}

UNIT_LIST(runspec_tests) = {
    { "runspec/accepts_minimal_command_run", accepts_minimal_command_run },
    { "runspec/fills_defaults", fills_defaults },
    { "runspec/names_the_bad_field", names_the_bad_field },
    { "runspec/spec_is_a_fixed_point", spec_is_a_fixed_point },
    { "runspec/expands_tasks_per_backend", expands_tasks_per_backend },
    { NULL, NULL },
};
