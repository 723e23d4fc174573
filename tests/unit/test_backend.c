/* test_backend.c - the domain's names and the backends' table
 * (common/backend.c): task lists, how tasks split over nodes, completion
 * rules, and that the table agrees with what the run spec validator and
 * runspec_tasks() give for real specs. */
#include "tests/unit/unit.h"

#include <stdlib.h>
#include <string.h>

#include "api/runspec.h"
#include "common/backend.h"
#include "common/json.h"

static void names_round_trip(void)
{
    int i;

    for (i = 0; i < RUN_STATUS_COUNT; i++)
        ASSERT_EQ(run_status_parse(run_status_name((enum run_status)i)), i);
    for (i = 0; i < TASK_STATUS_COUNT; i++)
        ASSERT_EQ(task_status_parse(task_status_name((enum task_status)i)), i);
    for (i = 0; i < TASK_TYPE_COUNT; i++)
        ASSERT_EQ(task_type_parse(task_type_name((enum task_type)i)), i);
    for (i = 0; i < BACKEND_COUNT; i++)
        ASSERT_EQ(backend_parse(backend_rules((enum backend)i)->name), i);
    ASSERT_EQ(run_status_parse("done"), -1);
    ASSERT_EQ(task_status_parse(NULL), -1);
    ASSERT_EQ(backend_parse("horovod"), -1);
    ASSERT_EQ(backend_parse(NULL), BACKEND_NONE);
    ASSERT_TRUE(run_status_is_final(RUN_CANCELED) && !run_status_is_final(RUN_RUNNING));
    ASSERT_TRUE(task_status_is_live(TASK_ASSIGNED) && !task_status_is_live(TASK_PENDING));
    ASSERT_TRUE(task_status_is_ended(TASK_LOST) && !task_status_is_ended(TASK_RUNNING));
    ASSERT_TRUE(task_status_is_reportable(TASK_FAILED) && !task_status_is_reportable(TASK_KILLED));
}

static void features_from_names(void)
{
    cJSON *list = cJSON_Parse("[\"python3\", \"docker\", \"mpi\", 7, \"torch\"]");

    ASSERT_EQ(features_of(list), FEATURE_MPI | FEATURE_DOCKER);
    ASSERT_STR_EQ(feature_name(1), "conda");
    cJSON_Delete(list);
}

/* The task names of a spec (validated from text), joined by spaces, and
 * each task's group as a digit. */
static void layout(const char *text, char *names, size_t size, char *groups)
{
    cJSON *in = cJSON_Parse(text);
    struct run_spec spec;
    struct runspec_error err;
    struct store_new_task *tasks;
    struct run_shape shape;
    char *buf;
    int n;
    int i;

    ASSERT_EQ(runspec_validate(in, &spec, &err), 0);
    runspec_tasks(&spec, &tasks, &buf, &n);
    shape = spec.shape;
    ASSERT_EQ(n, backend_rules(shape.backend)->task_count(&shape));
    names[0] = '\0';
    for (i = 0; i < n; i++) {
        struct task_slot slot;

        backend_rules(shape.backend)->slot(&shape, i, &slot);
        ASSERT_STR_EQ(task_type_name(slot.type), tasks[i].type);
        ASSERT_EQ(slot.index, tasks[i].index);
        snprintf(names + strlen(names), size - strlen(names), "%s%s", i ? " " : "", tasks[i].name);
        groups[i] = (char)('0' + slot.group);
    }
    groups[n] = '\0';
    free(tasks);
    free(buf);
    run_spec_release(&spec);
    cJSON_Delete(in);
}

static void task_lists_and_groups(void)
{
    char names[512];
    char groups[64];

    layout("{\"experiment\": \"e\", \"command\": [\"x\"]}", names, sizeof(names), groups);
    ASSERT_STR_EQ(names, "main");
    ASSERT_STR_EQ(groups, "0");
    layout("{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"ps\", "
           "\"node_count\": 2, \"worker_count\": 3, \"parameter_server_count\": 1, "
           "\"chief\": true, \"evaluator\": true}",
           names, sizeof(names), groups);
    ASSERT_STR_EQ(names, "chief ps-0 worker-0 worker-1 worker-2 evaluator");
    ASSERT_STR_EQ(groups, "010101");
    layout("{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"pytorch\", "
           "\"node_count\": 2, \"process_count_per_node\": 3}",
           names, sizeof(names), groups);
    ASSERT_STR_EQ(names, "rank-0 rank-1 rank-2 rank-3 rank-4 rank-5");
    ASSERT_STR_EQ(groups, "000111");
    layout("{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"mpi\", "
           "\"node_count\": 3, \"process_count_per_node\": 2}",
           names, sizeof(names), groups);
    ASSERT_STR_EQ(names, "launcher worker-0 worker-1 worker-2");
    ASSERT_STR_EQ(groups, "0012");
}

static void what_each_task_holds(void)
{
    struct run_shape mpi = { .backend = BACKEND_MPI,
                             .node_count = 2,
                             .process_count_per_node = 4,
                             .cpus_per_process = 1.5,
                             .memory_mb_per_process = 100,
                             .gpus_per_process = 1 };
    struct run_shape torch = mpi;
    struct task_slot s;

    backend_rules(BACKEND_MPI)->slot(&mpi, 0, &s);
    ASSERT_TRUE(s.type == TASK_LAUNCHER && s.cpus == 0 && s.gpus == 0 && !s.needs_port);
    backend_rules(BACKEND_MPI)->slot(&mpi, 2, &s);
    ASSERT_TRUE(s.type == TASK_WORKER && s.index == 1 && s.group == 1);
    ASSERT_TRUE(s.cpus == 6 && s.memory_mb == 400 && s.gpus == 4);
    torch.backend = BACKEND_PYTORCH;
    backend_rules(BACKEND_PYTORCH)->slot(&torch, 0, &s);
    ASSERT_TRUE(s.needs_port && s.cpus == 1.5 && s.gpus == 1);
    backend_rules(BACKEND_PYTORCH)->slot(&torch, 5, &s);
    ASSERT_TRUE(!s.needs_port && s.group == 1);
    ASSERT_EQ(backend_rules(BACKEND_MPI)->features, FEATURE_MPI);
    ASSERT_EQ(backend_rules(BACKEND_PS)->features, 0);
}

static void completion_rules(void)
{
    struct run_shape ps = { .backend = BACKEND_PS, .node_count = 1, .worker_count = 2 };
    struct run_shape chief = ps;
    struct task_tally t;

    memset(&t, 0, sizeof(t));
    t.n[TASK_WORKER] = 2;
    t.succeeded[TASK_WORKER] = 1;
    t.n[TASK_PS] = 1;
    ASSERT_TRUE(!backend_rules(BACKEND_PS)->done(&ps, &t));
    t.succeeded[TASK_WORKER] = 2; /* the parameter server runs on: it is stopped */
    ASSERT_TRUE(backend_rules(BACKEND_PS)->done(&ps, &t));
    chief.chief = true;
    ASSERT_TRUE(!backend_rules(BACKEND_PS)->done(&chief, &t));
    t.n[TASK_CHIEF] = t.succeeded[TASK_CHIEF] = 1;
    ASSERT_TRUE(backend_rules(BACKEND_PS)->done(&chief, &t));

    memset(&t, 0, sizeof(t));
    t.n[TASK_RANK] = 4;
    t.succeeded[TASK_RANK] = 3;
    ASSERT_TRUE(!backend_rules(BACKEND_PYTORCH)->done(&ps, &t));
    t.succeeded[TASK_RANK] = 4;
    ASSERT_TRUE(backend_rules(BACKEND_PYTORCH)->done(&ps, &t));

    memset(&t, 0, sizeof(t));
    t.n[TASK_WORKER] = 2;
    t.n[TASK_LAUNCHER] = 1;
    ASSERT_TRUE(!backend_rules(BACKEND_MPI)->done(&ps, &t));
    t.succeeded[TASK_LAUNCHER] = 1;
    ASSERT_TRUE(backend_rules(BACKEND_MPI)->done(&ps, &t));
    ASSERT_TRUE(backend_rules(BACKEND_MPI)->live_tasks_succeed);
    ASSERT_TRUE(!task_type_decides(TASK_EVALUATOR) && task_type_decides(TASK_PS));
}

UNIT_LIST(backend_tests) = {
    { "backend/names_round_trip", names_round_trip },
    { "backend/features_from_names", features_from_names },
    { "backend/task_lists_and_groups", task_lists_and_groups },
    { "backend/what_each_task_holds", what_each_task_holds },
    { "backend/completion_rules", completion_rules },
    { NULL, NULL },
};
