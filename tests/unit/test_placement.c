/* test_placement.c - gang placement, GPUs, ports, reservation. */
#include "tests/unit/unit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "api/runspec.h"
#include "scheduler/placement.h"

/* A pass, with its placements as JSON for the checks below:
 * [{"run", "tasks": [{"id", "node", "gpus", "port", "address", "cpus",
 * "memory_mb", "argv", "env"}]}]. */
static void pass(struct sched_state *state, cJSON **ret_placements, cJSON **ret_reasons)
{
    struct sched_placements pl;
    cJSON *out = cJSON_CreateArray();
    size_t r;
    size_t i;

    placement_pass(state, &pl);
    *ret_reasons = cJSON_CreateObject();
    for (r = 0; r < pl.n_reasons; r++)
        cJSON_AddStringToObject(*ret_reasons, pl.reasons[r].run,
                                sched_text(&pl, pl.reasons[r].reason));
    for (r = 0; r < pl.n_runs; r++) {
        cJSON *run = cJSON_CreateObject();
        cJSON *tasks;

        cJSON_AddStringToObject(run, "run", pl.runs[r].run);
        tasks = cJSON_AddArrayToObject(run, "tasks");
        for (i = pl.runs[r].first; i < pl.runs[r].first + pl.runs[r].n; i++) {
            const struct sched_task_place *t = &pl.tasks[i];
            cJSON *o = cJSON_CreateObject();

            cJSON_AddStringToObject(o, "id", t->id);
            cJSON_AddStringToObject(o, "node", t->node);
            cJSON_AddItemToObject(o, "gpus", cJSON_Parse(sched_text(&pl, t->gpus)));
            if (t->port) {
                cJSON_AddNumberToObject(o, "port", t->port);
                cJSON_AddStringToObject(o, "address", sched_text(&pl, t->address));
            } else {
                cJSON_AddNullToObject(o, "port");
                cJSON_AddNullToObject(o, "address");
            }
            cJSON_AddNumberToObject(o, "cpus", t->cpus);
            cJSON_AddNumberToObject(o, "memory_mb", (double)t->memory_mb);
            cJSON_AddItemToObject(o, "argv", cJSON_Parse(sched_text(&pl, t->argv)));
            cJSON_AddItemToObject(o, "env", cJSON_Parse(sched_text(&pl, t->env)));
            cJSON_AddItemToArray(tasks, o);
        }
        cJSON_AddItemToArray(out, run);
    }
    sched_placements_release(&pl);
    *ret_placements = out;
}

static int atoi_safe(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

/* Appends a node named name to *nodes: a ready one (add_node) or not. */
static struct sched_node *new_node(struct sched_node **nodes, int *n_nodes, const char *name,
                                   double cpus, int gpus)
{
    struct sched_node *n;
    int i;

    *nodes = realloc(*nodes, (size_t)(*n_nodes + 1) * sizeof(**nodes));
    n = &(*nodes)[(*n_nodes)++];
    memset(n, 0, sizeof(*n));
    n->name = strdup(name);
    n->pool = strdup("default");
    n->host = strdup(name);
    n->agent_url = strdup("http://x:1");
    n->cpus = cpus;
    for (i = 0; i < gpus; i++)
        n->gpus[n->n_gpus++] = i;
    return n;
}

static void add_node(struct sched_state *st, const char *name, double cpus, double used_cpus,
                     int gpus)
{
    struct sched_node *n = new_node(&st->nodes, &st->n_nodes, name, cpus, gpus);

    n->used_cpus = used_cpus;
    n->port_min = 20000;
    n->port_max = 20001;
}

/* A queued run of spec_text (a POST /runs body, with use_gpu when it
 * asks for GPUs) and the members of extra (JSON text, or NULL) over it. */
static void add_run(struct sched_state *st, const char *id, const char *spec_text,
                    const char *extra, int64_t attempt)
{
    cJSON *in = cJSON_Parse(spec_text);
    cJSON *over = extra ? cJSON_Parse(extra) : NULL;
    cJSON *e;
    struct runspec_error err;

    ASSERT_TRUE(in != NULL && (extra == NULL || over != NULL));
    if (json_get(in, "gpus_per_process")->valueint > 0)
        cJSON_AddTrueToObject(in, "use_gpu");
    cJSON_ArrayForEach(e, over) {
        cJSON_DeleteItemFromObjectCaseSensitive(in, e->string);
        cJSON_AddItemToObject(in, e->string, cJSON_Duplicate(e, true));
    }
    if (placement_add_run(st, id, attempt, in, &err) != 0)
        UNIT_FAIL("%s: %s", err.field, err.message);
    cJSON_Delete(over);
    cJSON_Delete(in);
}

#define SPEC(backend, nodes, ppn, cpus, gpus)                                                      \
    "{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": " backend ", "         \
    "\"node_count\": " #nodes ", \"process_count_per_node\": " #ppn ", "                           \
    "\"cpus_per_process\": " #cpus ", \"memory_mb_per_process\": 0, \"gpus_per_process\": " #gpus  \
    ", \"compute_target\": \"default\", \"conda_packages\": [], \"environment_variables\": {}, "   \
    "\"script_params\": {}, \"arguments\": []}"

/* One parameter server and one worker on one node, no GPU. */
#define PS_SPEC                                                                                    \
    "{\"experiment\": \"e\", \"command\": [\"x\"], \"distributed_backend\": \"ps\", "              \
    "\"node_count\": 1, \"process_count_per_node\": 1, \"worker_count\": 1, "                      \
    "\"parameter_server_count\": 1, \"chief\": false, \"evaluator\": false, "                      \
    "\"cpus_per_process\": 1, \"memory_mb_per_process\": 0, \"gpus_per_process\": 0, "             \
    "\"compute_target\": \"default\", \"conda_packages\": [], \"environment_variables\": {}, "     \
    "\"script_params\": {}, \"arguments\": []}"

static void gpus_are_disjoint_and_ports_unique(void)
{
    struct sched_state state = { .nodes = NULL };
    cJSON *placements;
    cJSON *reasons;
    const char *a;
    const char *b;

    add_node(&state, "n1", 8, 0, 2);
    add_run(&state, "r1", SPEC("null", 1, 1, 1, 1), NULL, 1);
    add_run(&state, "r2", SPEC("null", 1, 1, 1, 1), NULL, 1);
    add_run(&state, "r3", SPEC("null", 1, 1, 1, 1), NULL, 1);
    add_run(&state, "r4", PS_SPEC, NULL, 1);
    pass(&state, &placements, &reasons);
    ASSERT_EQ(cJSON_GetArraySize(placements), 2);
    a = json_get_string(
        json_get(cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(placements, 0), "tasks"), 0),
                 "env"),
        "CUDA_VISIBLE_DEVICES");
    b = json_get_string(
        json_get(cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(placements, 1), "tasks"), 0),
                 "env"),
        "CUDA_VISIBLE_DEVICES");
    ASSERT_STR_EQ(a, "0");
    ASSERT_STR_EQ(b, "1");
    /* r3 waits for a GPU and reserves n1, so the ps run behind it waits too. */
    ASSERT_TRUE(json_get(reasons, "r3") != NULL);
    ASSERT_TRUE(json_get(reasons, "r4") != NULL);
    cJSON_Delete(placements);
    cJSON_Delete(reasons);
    store_sched_state_release(&state);
}

static void a_waiting_gang_is_not_starved(void)
{
    struct sched_state state = { .nodes = NULL };
    cJSON *placements;
    cJSON *reasons;

    add_node(&state, "n1", 4, 2, 0);
    add_node(&state, "n2", 4, 0, 0);
    add_node(&state, "n3", 1, 0, 0);
    /* The gang needs both 4-CPU nodes whole; n1 is half busy. */
    add_run(&state, "gang", SPEC("\"pytorch\"", 2, 1, 4, 0), NULL, 1);
    add_run(&state, "small", SPEC("null", 1, 1, 1, 0), NULL, 1);
    pass(&state, &placements, &reasons);
    /* The small run may only backfill onto n3, which the gang cannot use. */
    ASSERT_EQ(cJSON_GetArraySize(placements), 1);
    ASSERT_STR_EQ(json_get_string(cJSON_GetArrayItem(placements, 0), "run"), "small");
    ASSERT_STR_EQ(
        json_get_string(cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(placements, 0), "tasks"), 0),
                        "node"),
        "n3");
    ASSERT_TRUE(json_get(reasons, "gang") != NULL);
    cJSON_Delete(placements);
    cJSON_Delete(reasons);
    store_sched_state_release(&state);
}

static void pytorch_env_is_consistent(void)
{
    struct sched_state state = { .nodes = NULL };
    cJSON *placements;
    cJSON *reasons;
    cJSON *t;
    const char *master = NULL;
    int i = 0;

    add_node(&state, "n1", 4, 0, 0);
    add_node(&state, "n2", 4, 0, 0);
    /* A third attempt of a run allowed five: torchrun's restart count. */
    add_run(&state, "pt", SPEC("\"pytorch\"", 2, 2, 1, 0), "{\"max_retries\": 5}", 3);
    pass(&state, &placements, &reasons);
    ASSERT_EQ(cJSON_GetArraySize(placements), 1);
    cJSON_ArrayForEach(t, json_get(cJSON_GetArrayItem(placements, 0), "tasks")) {
        cJSON *env = json_get(t, "env");
        char want[16];

        snprintf(want, sizeof(want), "%d", i);
        ASSERT_STR_EQ(json_get_string(env, "RANK"), want);
        snprintf(want, sizeof(want), "%d", i % 2);
        ASSERT_STR_EQ(json_get_string(env, "LOCAL_RANK"), want);
        snprintf(want, sizeof(want), "%d", i / 2);
        ASSERT_STR_EQ(json_get_string(env, "NODE_RANK"), want);
        ASSERT_STR_EQ(json_get_string(env, "WORLD_SIZE"), "4");
        snprintf(want, sizeof(want), "%d", i);
        ASSERT_STR_EQ(json_get_string(env, "ROLE_RANK"), want);
        ASSERT_STR_EQ(json_get_string(env, "ROLE_WORLD_SIZE"), "4");
        ASSERT_STR_EQ(json_get_string(env, "ROLE_NAME"), "default");
        ASSERT_STR_EQ(json_get_string(env, "GROUP_WORLD_SIZE"), "2");
        ASSERT_STR_EQ(json_get_string(env, "TORCHELASTIC_RESTART_COUNT"), "2");
        ASSERT_STR_EQ(json_get_string(env, "TORCHELASTIC_MAX_RESTARTS"), "5");
        ASSERT_STR_EQ(json_get_string(env, "TORCHELASTIC_RUN_ID"), "pt");
        ASSERT_STR_EQ(json_get_string(env, "TORCHELASTIC_USE_AGENT_STORE"), "False");
        ASSERT_STR_EQ(json_get_string(env, "NCCL_ASYNC_ERROR_HANDLING"), "1");
        ASSERT_STR_EQ(json_get_string(env, "OMP_NUM_THREADS"), "1");
        ASSERT_STR_EQ(json_get_string(env, "MASTER_PORT"), "20000");
        if (master == NULL)
            master = json_get_string(t, "node");
        ASSERT_STR_EQ(json_get_string(env, "MASTER_ADDR"), master);
        i++;
    }
    ASSERT_TRUE(strcmp(json_get_string(cJSON_GetArrayItem(
                                           json_get(cJSON_GetArrayItem(placements, 0), "tasks"), 0),
                                       "node"),
                       json_get_string(cJSON_GetArrayItem(
                                           json_get(cJSON_GetArrayItem(placements, 0), "tasks"), 2),
                                       "node")) != 0);
    cJSON_Delete(placements);
    cJSON_Delete(reasons);
    store_sched_state_release(&state);
}

static void picks_the_tightest_node(void)
{
    struct sched_state state = { .nodes = NULL };
    cJSON *placements;
    cJSON *reasons;
    char name[32];
    int i;

    add_node(&state, "big-gpu", 64, 0, 8);
    add_node(&state, "one-gpu", 4, 0, 1);
    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "cpu-%d", i);
        add_node(&state, name, 1 + i % 8, 0, 0);
    }
    /* 3 CPUs, no GPU: the tightest is a 3-CPU node, not a GPU node. */
    add_run(&state, "cpu3", SPEC("null", 1, 1, 3, 0), NULL, 1);
    /* 1 GPU: the 1-GPU node, not the 8-GPU one. */
    add_run(&state, "gpu1", SPEC("null", 1, 1, 1, 1), NULL, 1);
    for (i = 0; i < 1500; i++) {
        char id[32];

        snprintf(id, sizeof(id), "r%d", i);
        add_run(&state, id, SPEC("null", 1, 1, 1, 0), NULL, 1);
    }
    pass(&state, &placements, &reasons);
    ASSERT_EQ(cJSON_GetArraySize(placements), 1502);
    ASSERT_STR_EQ(
        json_get_string(cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(placements, 1), "tasks"), 0),
                        "node"),
        "one-gpu");
    {
        const char *n0 = json_get_string(
            cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(placements, 0), "tasks"), 0), "node");
        int which = atoi_safe(n0 + 4);

        ASSERT_EQ(1 + which % 8, 3);
    }
    cJSON_Delete(placements);
    cJSON_Delete(reasons);
    store_sched_state_release(&state);
}

static void label(struct sched_node *n, const char *key, const char *value)
{
    n->labels = realloc(n->labels, (size_t)(2 * n->n_labels + 2) * sizeof(char *));
    n->labels[2 * n->n_labels] = strdup(key);
    n->labels[2 * n->n_labels + 1] = strdup(value);
    n->n_labels++;
}

static const char *node_of(const cJSON *placements, const char *run_id, int task)
{
    const cJSON *p;

    cJSON_ArrayForEach(p, placements) {
        if (strcmp(json_get_string(p, "run"), run_id) == 0)
            return json_get_string(cJSON_GetArrayItem(json_get(p, "tasks"), task), "node");
    }
    return NULL;
}

/* Labels are matched as given: every pair of the selector, exactly. */
static void selectors_pick_labelled_nodes(void)
{
    struct sched_state state = { .nodes = NULL };
    cJSON *placements;
    cJSON *reasons;
    const char *r7;
    char name[16];
    int i;

    /* Many unlabelled nodes first, so a selector has nodes to skip. */
    for (i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "u%03d", i);
        add_node(&state, name, 8, 0, 0);
    }
    add_node(&state, "za", 8, 0, 0);
    label(&state.nodes[state.n_nodes - 1], "zone", "a");
    add_node(&state, "zb1", 8, 0, 0);
    label(&state.nodes[state.n_nodes - 1], "zone", "b");
    label(&state.nodes[state.n_nodes - 1], "disk", "ssd");
    add_node(&state, "zb2", 8, 0, 0);
    label(&state.nodes[state.n_nodes - 1], "disk", "ssd");
    label(&state.nodes[state.n_nodes - 1], "zone", "b");
    add_node(&state, "zab", 8, 0, 0);
    label(&state.nodes[state.n_nodes - 1], "zone", "ab");
    add_run(&state, "r1", SPEC("null", 1, 1, 1, 0), "{\"node_selector\": {\"zone\": \"a\"}}", 1);
    add_run(&state, "r2", SPEC("\"pytorch\"", 2, 1, 1, 0),
            "{\"node_selector\": {\"disk\": \"ssd\", \"zone\": \"b\"}}", 1);
    add_run(&state, "r3", SPEC("null", 1, 1, 1, 0), "{\"node_selector\": {\"zone\": \"c\"}}", 1);
    add_run(&state, "r4", SPEC("\"pytorch\"", 2, 1, 1, 0), "{\"node_selector\": {\"zone\": \"a\"}}",
            1);
    /* za has 7 CPUs free: r5 waits for it (and reserves it), r6 too. */
    add_run(&state, "r5", SPEC("null", 1, 1, 8, 0), "{\"node_selector\": {\"zone\": \"a\"}}", 1);
    add_run(&state, "r6", SPEC("null", 1, 1, 8, 0), "{\"node_selector\": {\"zone\": \"a\"}}", 1);
    add_run(&state, "r7", SPEC("null", 1, 1, 1, 0), NULL, 1);
    pass(&state, &placements, &reasons);
    ASSERT_EQ(cJSON_GetArraySize(placements), 3);
    ASSERT_STR_EQ(node_of(placements, "r1", 0), "za");
    ASSERT_TRUE(strcmp(node_of(placements, "r2", 0), "zb1") == 0 ||
                strcmp(node_of(placements, "r2", 0), "zb2") == 0);
    ASSERT_TRUE(strcmp(node_of(placements, "r2", 1), "zb1") == 0 ||
                strcmp(node_of(placements, "r2", 1), "zb2") == 0);
    ASSERT_TRUE(strcmp(node_of(placements, "r2", 0), node_of(placements, "r2", 1)) != 0);
    ASSERT_STR_EQ(json_get_string(reasons, "r3"),
                  "unschedulable: nodes of pool 'default' that match its node_selector, ready or "
                  "not: 0; the run needs 1 distinct nodes");
    ASSERT_STR_EQ(json_get_string(reasons, "r4"),
                  "unschedulable: nodes of pool 'default' that match its node_selector, ready or "
                  "not: 1; the run needs 2 distinct nodes");
    ASSERT_TRUE(strncmp(json_get_string(reasons, "r5"), "waiting for capacity", 20) == 0);
    ASSERT_TRUE(strncmp(json_get_string(reasons, "r6"), "waiting for capacity", 20) == 0);
    r7 = node_of(placements, "r7", 0);
    ASSERT_TRUE(r7 != NULL && strcmp(r7, "za") != 0);
    cJSON_Delete(placements);
    cJSON_Delete(reasons);
    store_sched_state_release(&state);
}

/* A node that is not ready (draining, down): in state->absent. */
static struct sched_node *add_absent(struct sched_state *st, const char *name, double cpus,
                                     int gpus)
{
    return new_node(&st->absent, &st->n_absent, name, cpus, gpus);
}

static bool starts_with(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Nodes that are not ready count for what could ever run (a run no node
 * could hold is unschedulable), never for where a run goes now. */
static void unschedulable_is_not_waiting(void)
{
    struct sched_state state = { .nodes = NULL };
    cJSON *placements;
    cJSON *reasons;

    add_node(&state, "n1", 4, 0, 2);
    label(add_absent(&state, "down1", 16, 8), "zone", "x");
    add_run(&state, "u1", SPEC("null", 1, 1, 1, 4), NULL, 1);
    add_run(&state, "u2", SPEC("null", 1, 1, 1, 9), NULL, 1);
    add_run(&state, "u3", SPEC("null", 1, 1, 32, 0), NULL, 1);
    add_run(&state, "u4", SPEC("null", 1, 1, 1, 0), "{\"node_selector\": {\"zone\": \"x\"}}", 1);
    add_run(&state, "u5", SPEC("\"pytorch\"", 3, 1, 1, 0), NULL, 1);
    add_run(&state, "u6", SPEC("null", 1, 1, 1, 0), "{\"compute_target\": \"nowhere\"}", 1);
    add_run(&state, "u7", SPEC("null", 1, 1, 1, 0), NULL, 1);
    pass(&state, &placements, &reasons);
    ASSERT_EQ(cJSON_GetArraySize(placements), 1);
    ASSERT_STR_EQ(node_of(placements, "u7", 0), "n1");
    /* down1 could hold 4 GPUs, were it back. */
    ASSERT_TRUE(starts_with(json_get_string(reasons, "u1"), "waiting for capacity"));
    ASSERT_STR_EQ(json_get_string(reasons, "u2"),
                  "unschedulable: a part of this run needs 9 GPUs on one node; the most any of "
                  "the nodes of pool 'default' has, ready or not, is 8");
    ASSERT_STR_EQ(json_get_string(reasons, "u3"),
                  "unschedulable: a part of this run needs 32 CPUs on one node; the most any of "
                  "the nodes of pool 'default' has, ready or not, is 16");
    ASSERT_STR_EQ(json_get_string(reasons, "u4"),
                  "waiting for nodes: nodes of pool 'default' that match its node_selector that "
                  "are ready: 0; it needs 1");
    ASSERT_STR_EQ(json_get_string(reasons, "u5"),
                  "unschedulable: nodes of pool 'default', ready or not: 2; the run needs 3 "
                  "distinct nodes");
    ASSERT_STR_EQ(json_get_string(reasons, "u6"),
                  "unschedulable: nodes of pool 'nowhere', ready or not: 0; the run needs 1 "
                  "distinct nodes");
    cJSON_Delete(placements);
    cJSON_Delete(reasons);
    store_sched_state_release(&state);
}

UNIT_LIST(placement_tests) = {
    { "placement/picks_the_tightest_node", picks_the_tightest_node },
    { "placement/gpus_are_disjoint_and_ports_unique", gpus_are_disjoint_and_ports_unique },
    { "placement/a_waiting_gang_is_not_starved", a_waiting_gang_is_not_starved },
    { "placement/pytorch_env_is_consistent", pytorch_env_is_consistent },
    { "placement/selectors_pick_labelled_nodes", selectors_pick_labelled_nodes },
    { "placement/unschedulable_is_not_waiting", unschedulable_is_not_waiting },
    { NULL, NULL },
};
