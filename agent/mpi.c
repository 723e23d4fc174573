/*
 * mpi.c - what a task does for the mpi backend (SPEC §4): the launcher's
 * mpirun command line, hostfile and Open MPI defaults, and the worker's
 * side of /v1/exec (exec.c): which task an exec secret belongs to, and
 * the execs it runs (orted) as that task's processes.
 */
#include "agent/task.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/docker.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* ---- mpi execs ---- */

void task_kill_execs(struct task *t, int sig)
{
    int i;

    for (i = 0; i < t->n_execs; i++) {
        if (!t->execs[i].ended && t->execs[i].pgid > 0)
            kill(-t->execs[i].pgid, sig);
    }
}

struct task *task_for_exec(struct agent *a, const char *secret)
{
    struct task *t;

    for (t = a->tasks; t; t = t->next) {
        const char *mine = json_get_string(json_get(t->assignment, "env"), "TRAINYARD_MPI_SECRET");

        if (t->holder && !t->finished && !t->stop_requested && mine && secret &&
            crypto_equal(mine, secret) &&
            t->live_execs < (int)(sizeof(t->execs) / sizeof(t->execs[0])))
            return t;
    }
    return NULL;
}

bool task_exec_pending(struct agent *a, const char *secret)
{
    struct task *t;

    for (t = a->tasks; t; t = t->next) {
        const char *mine = json_get_string(json_get(t->assignment, "env"), "TRAINYARD_MPI_SECRET");

        if (!t->holder && !t->finished && !t->stop_requested && mine && secret &&
            cJSON_IsTrue(json_get(t->assignment, "mpi_worker")) && crypto_equal(mine, secret))
            return true;
    }
    return false;
}

bool task_in_container(struct task *t)
{
    return t->docker != NULL;
}

const char *task_id(struct task *t)
{
    return t->id;
}

const char *task_exec_cwd(struct task *t)
{
    return t->src;
}

const struct proc_cred *task_exec_cred(struct task *t)
{
    return t->has_cred ? &t->cred : NULL;
}

void task_exec_started(struct task *t, struct exec_stream *stream)
{
    int i;

    /* Reuse an ended slot (task_for_exec checked that one is free). */
    for (i = 0; i < t->n_execs && !t->execs[i].ended; i++)
        ;
    if (i == t->n_execs)
        t->n_execs++;
    t->execs[i].stream = stream;
    t->execs[i].pgid = 0;
    t->execs[i].ended = false;
    t->live_execs++;
}

void task_exec_pid(struct task *t, struct exec_stream *stream, int pid)
{
    int i;

    for (i = 0; i < t->n_execs; i++) {
        if (t->execs[i].stream == stream)
            t->execs[i].pgid = pid;
    }
}

void task_exec_ended(struct task *t, struct exec_stream *stream)
{
    int i;

    for (i = 0; i < t->n_execs; i++) {
        if (t->execs[i].stream == stream) {
            t->execs[i].ended = true;
            t->execs[i].stream = NULL;
        }
    }
    if (--t->live_execs == 0)
        task_release(t);
}

char **task_exec_env(struct task *t)
{
    cJSON *env = cJSON_Duplicate(json_get(t->assignment, "env"), 1);
    char **out;

    /* Ranks start in mpirun's directory when it exists here, else in
     * $HOME: make that the unpacked snapshot of this node's task. */
    cJSON_DeleteItemFromObjectCaseSensitive(env, "HOME");
    cJSON_AddStringToObject(env, "HOME", t->src);
    task_mpi_defaults(t, env);
    if (t->docker) {
        out = task_image_env(t, env);
        docker_renumber_gpus(out, cJSON_GetArraySize(json_get(t->assignment, "gpus")));
    } else {
        out = task_env(t, env);
    }
    cJSON_Delete(env);
    return out;
}

/* Keeps MPI traffic on the nodes' network (STYLE.md, Open MPI notes): the
 * /24 of every IPv4 host, unless the run's environment says otherwise. */
void task_mpi_defaults(struct task *t, cJSON *env)
{
    const char *hosts = json_get_string(env, "TRAINYARD_MPI_HOSTS");
    bool in_image = json_get_string(t->assignment, "image") != NULL;
    struct buf nets;
    char *list = xstrdup(hosts ? hosts : "");
    char *save = NULL;
    char *item;

    buf_init(&nets);
    for (item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        unsigned a1, a2, a3, a4;
        char net[64];

        if (sscanf(item, "%u.%u.%u.%u:", &a1, &a2, &a3, &a4) == 4) {
            snprintf(net, sizeof(net), "%u.%u.%u.0/24", a1, a2, a3);
            if (strstr(nets.data, net) == NULL)
                buf_printf(&nets, "%s%s", nets.len ? "," : "", net);
        }
    }
    /* In an image, the static trainyard-rsh the container has (the host's
     * binary needs the host's libraries). */
    if (json_get(env, "OMPI_MCA_plm_rsh_agent") == NULL) {
        char *rsh = in_image ? xstrdup(DOCKER_RSH_PATH) : xasprintf("%s rsh", t->a->self_exe);

        cJSON_AddStringToObject(env, "OMPI_MCA_plm_rsh_agent", rsh);
        free(rsh);
    }
    /* trainyard rsh verifies agents that serve HTTPS with the same CA. */
    if (t->a->ca && !in_image && json_get(env, "TRAINYARD_CA") == NULL)
        cJSON_AddStringToObject(env, "TRAINYARD_CA", t->a->ca);
    if (json_get(env, "OMPI_MCA_plm_rsh_no_tree_spawn") == NULL)
        cJSON_AddStringToObject(env, "OMPI_MCA_plm_rsh_no_tree_spawn", "1");
    if (json_get(env, "OMPI_MCA_routed") == NULL)
        cJSON_AddStringToObject(env, "OMPI_MCA_routed", "direct");
    /* orted must stay in the exec's process group, not daemonize away. */
    if (json_get(env, "OMPI_MCA_orte_leave_session_attached") == NULL)
        cJSON_AddStringToObject(env, "OMPI_MCA_orte_leave_session_attached", "1");
    /* Several "nodes" on one machine crash Open MPI's shared memory. */
    if (json_get(env, "OMPI_MCA_btl") == NULL)
        cJSON_AddStringToObject(env, "OMPI_MCA_btl", "self,tcp");
    if (nets.len && json_get(env, "OMPI_MCA_oob_tcp_if_include") == NULL)
        cJSON_AddStringToObject(env, "OMPI_MCA_oob_tcp_if_include", nets.data);
    if (nets.len && json_get(env, "OMPI_MCA_btl_tcp_if_include") == NULL)
        cJSON_AddStringToObject(env, "OMPI_MCA_btl_tcp_if_include", nets.data);
    if (geteuid() == 0 && !t->has_cred) {
        cJSON_AddStringToObject(env, "OMPI_ALLOW_RUN_AS_ROOT", "1");
        cJSON_AddStringToObject(env, "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    free(list);
    buf_release(&nets);
}

/* mpirun's argv before the program (SPEC §4 mpi): hostfile, -np, -x. */
int task_mpirun_argv(struct task *t, const cJSON *env, char **argv)
{
    const char *hosts = json_get_string(env, "TRAINYARD_MPI_HOSTS");
    const char *np = json_get_string(env, "TRAINYARD_MPI_NP");
    char *path = xasprintf("%s/hostfile", t->dir);
    char *list = xstrdup(hosts ? hosts : "");
    char *save = NULL;
    char *item;
    const cJSON *e;
    FILE *f = fopen(path, "w");
    int n = 0;

    for (item = strtok_r(list, ",", &save); f && item; item = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(item, ':');

        if (colon) {
            *colon = '\0';
            fprintf(f, "%s slots=%s\n", item, colon + 1);
        }
    }
    if (f) {
        fchmod(fileno(f), 0644); /* mpirun reads it as the task's user */
        fclose(f);
    }
    free(list);
    argv[n++] = xstrdup("mpirun");
    argv[n++] = xstrdup("--hostfile");
    argv[n++] = path;
    argv[n++] = xstrdup("-np");
    argv[n++] = xstrdup(np ? np : "1");
    argv[n++] = xstrdup("--map-by");
    argv[n++] = xstrdup("slot");
    argv[n++] = xstrdup("--bind-to");
    argv[n++] = xstrdup("none");
    /* The job's environment; each node's worker supplies its own GPUs,
     * task identity and helper path. */
    cJSON_ArrayForEach(e, env) {
        if (strncmp(e->string, "OMPI_", 5) == 0 || strcmp(e->string, "CUDA_VISIBLE_DEVICES") == 0 ||
            strcmp(e->string, "TRAINYARD_TASK_TYPE") == 0 ||
            strcmp(e->string, "TRAINYARD_TASK_INDEX") == 0 ||
            strcmp(e->string, "TRAINYARD_NODE") == 0 || strcmp(e->string, "PYTHONPATH") == 0)
            continue;
        argv[n++] = xstrdup("-x");
        argv[n++] = xstrdup(e->string);
    }
    argv[n++] = xstrdup("-x");
    argv[n++] = xstrdup("PYTHONUNBUFFERED");
    return n;
}

/* The mpi worker of the launcher's run on this node (node rank 0). */
struct task *task_local_worker(struct task *launcher)
{
    const char *run = json_get_string(launcher->assignment, "run_id");
    struct task *w;

    for (w = launcher->a->tasks; w; w = w->next) {
        const char *wrun = json_get_string(w->assignment, "run_id");

        if (w->holder && !w->finished && wrun && run && strcmp(wrun, run) == 0 &&
            json_get(w->assignment, "index")->valueint == 0)
            return w;
    }
    return NULL;
}
