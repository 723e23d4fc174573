/*
 * placement.c (bench) - B3 and B4: the cost of one placement pass, with
 * the scheduler's own code (scheduler/placement.c) on a synthetic cluster
 * state in the form the scheduler's state in memory gives placement
 * (nodes and the queue's head as C structs, each run's spec validated as
 * POST /runs validates it). Building that state is not included; the line
 * says so.
 *
 *   B3: N queued single-task runs (a mix of 1-GPU, CPU-only and 8-GPU
 *       8-rank gangs) onto M nodes; growth shown for 10k/100k tasks and
 *       1k/10k nodes.
 *   B4: one 64-rank gang placed at 10,000 nodes, p99 over 200 passes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/xalloc.h"
#include "scheduler/placement.h"
#include "common/banned.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: on a shared VM the wall time also counts what
 * the hypervisor took from the core (steal), which varies from run to run. */
static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_node(struct sched_state *st, int i, int gpus)
{
    struct sched_node *n = &st->nodes[st->n_nodes++];
    char name[32];
    int k;

    memset(n, 0, sizeof(*n));
    snprintf(name, sizeof(name), "node-%05d", i);
    n->name = xstrdup(name);
    n->pool = xstrdup("default");
    n->host = xstrdup(name);
    n->agent_url = xstrdup("http://h:1");
    n->cpus = 64;
    for (k = 0; k < gpus; k++)
        n->gpus[n->n_gpus++] = k;
    n->port_min = 20000;
    n->port_max = 29999;
    /* Labels as agents' --label: zone z0..z3, rack r00..r99. */
    n->labels = xcalloc(5, sizeof(char *));
    n->labels[0] = xstrdup("zone");
    snprintf(name, sizeof(name), "z%d", i % 4);
    n->labels[1] = xstrdup(name);
    n->labels[2] = xstrdup("rack");
    snprintf(name, sizeof(name), "r%02d", i % 100);
    n->labels[3] = xstrdup(name);
    n->n_labels = 2;
}

/* Adds queued run i of kind: 0 = CPU-only, 1 = one GPU, 2 = an 8-rank
 * gang of 8-GPU nodes (pytorch, 8 processes on one node); returns its
 * task count. */
static int add_run(struct sched_state *state, int i, int kind, bool selector)
{
    cJSON *spec = cJSON_CreateObject();
    int n = kind == 2 ? 8 : 1;
    char id[48];

    snprintf(id, sizeof(id), "run-%06d", i);
    cJSON_AddStringToObject(spec, "experiment", "bench");
    cJSON_AddItemToObject(spec, "command", cJSON_CreateStringArray((const char *[]){ "x" }, 1));
    if (kind == 2)
        cJSON_AddStringToObject(spec, "distributed_backend", "pytorch");
    if (kind == 2)
        cJSON_AddNumberToObject(spec, "process_count_per_node", n);
    cJSON_AddBoolToObject(spec, "use_gpu", kind != 0);
    if (selector) {
        /* Every run picks a zone (a quarter of the nodes); one in ten
         * also a rack (a hundredth). */
        cJSON *sel = cJSON_AddObjectToObject(spec, "node_selector");
        char v[16];

        snprintf(v, sizeof(v), "z%d", i % 4);
        cJSON_AddStringToObject(sel, "zone", v);
        if (i % 10 == 0) {
            snprintf(v, sizeof(v), "r%02d", (i / 10) % 100);
            cJSON_AddStringToObject(sel, "rack", v);
        }
    }
    if (placement_add_run(state, id, 1, spec, NULL) != 0) {
        fprintf(stderr, "bench/placement: run %s is not valid\n", id);
        exit(1);
    }
    cJSON_Delete(spec);
    return n;
}

static void b3(int n_nodes, int n_tasks, bool selector)
{
    struct sched_state state = { .nodes = xcalloc((size_t)n_nodes, sizeof(struct sched_node)) };
    struct sched_placements placements;
    int tasks = 0;
    int placed_tasks;
    int i;
    double t0;
    double t1;
    double c0;
    double c1;

    /* A tenth of the nodes have 8 GPUs, the rest 1 GPU or none. */
    for (i = 0; i < n_nodes; i++)
        add_node(&state, i, i % 10 == 0 ? 8 : i % 2);
    for (i = 0; tasks < n_tasks; i++)
        tasks += add_run(&state, i, i % 50 == 0 ? 2 : i % 2, selector);
    t0 = now_s();
    c0 = cpu_s();
    placement_pass(&state, &placements);
    c1 = cpu_s();
    t1 = now_s();
    placed_tasks = (int)placements.n_tasks;
    printf(
        "%s %d tasks onto %d nodes%s: %.1f ms (CPU %.1f ms), %d tasks placed, %.0f "
        "placements/s (placement only; building its input from the state in memory not included)\n",
        selector ? "B3s" : "B3", tasks, n_nodes,
        selector ? " (every run a zone selector, 1 in 10 a rack too)" : "", (t1 - t0) * 1000,
        (c1 - c0) * 1000, placed_tasks, placed_tasks / (t1 - t0));
    sched_placements_release(&placements);
    store_sched_state_release(&state);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void b4(void)
{
    double lat[200];
    int i;
    int k;

    for (i = 0; i < 200; i++) {
        struct sched_state state = { .nodes = xcalloc(10000, sizeof(struct sched_node)) };
        struct sched_placements placements;
        cJSON *spec;
        double t0;

        for (k = 0; k < 10000; k++)
            add_node(&state, k, 8);
        /* 64 ranks: 8 nodes x 8 processes, one GPU each. */
        spec = cJSON_Parse("{\"experiment\": \"b\", \"command\": [\"x\"], "
                           "\"distributed_backend\": \"pytorch\", \"node_count\": 8, "
                           "\"process_count_per_node\": 8, \"use_gpu\": true}");
        if (placement_add_run(&state, "gang", 1, spec, NULL) != 0) {
            fprintf(stderr, "B4: the gang's spec is not valid\n");
            exit(1);
        }
        cJSON_Delete(spec);
        t0 = now_s();
        placement_pass(&state, &placements);
        lat[i] = now_s() - t0;
        if (placements.n_runs != 1)
            fprintf(stderr, "B4: the gang was not placed\n");
        sched_placements_release(&placements);
        store_sched_state_release(&state);
    }
    qsort(lat, 200, sizeof(lat[0]), cmp_double);
    printf("B4 64-rank gang at 10000 nodes: p50=%.2fms p99=%.2fms (a pass with only this run; "
           "includes indexing the nodes)\n",
           lat[100] * 1000, lat[198] * 1000);
}

/* "placement b4": B4 alone (for a profile). */
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "b4") == 0) {
        b4();
        return 0;
    }
    b3(1000, 10000, false);
    b3(10000, 10000, false);
    b3(1000, 100000, false);
    b3(10000, 100000, false);
    b3(10000, 10000, true);
    b3(10000, 100000, true);
    b4();
    return 0;
}
