/*
 * dockermpi.c - the mpi backend in images (SPEC §4 mpi, docker.h).
 *
 * The launcher's container runs mpirun in worker-0's directory and
 * environment, as a launcher process does on a host (task.c), with
 * worker-0's GPUs: mpirun starts that node's ranks itself, in this
 * container. Its remote shell is the static trainyard-rsh of the helper
 * directory, mounted at DOCKER_RSH_PATH (mpi.c's task_mpi_defaults),
 * which asks the nodes' agents for orted through /v1/exec.
 *
 * A worker's container holds its node's slots: `trainyard-rsh --hold`
 * idles under the container's init while /v1/exec starts orted in it
 * (docker exec) with the worker's environment, directory and user; the
 * ranks orted starts are the container's too. An exec cannot be signalled
 * through the Engine API, and its Pid (in the daemon's pid namespace) is
 * not the agent's to kill when the agent runs in a container of its own:
 * stopping the worker stops its container, whose holder passes SIGTERM to
 * every process in it (orted and ranks) and ends, and the daemon's
 * SIGKILL after the grace ends the rest; an agent's stop removes the
 * container by force. An exec whose caller went away ends when mpirun's
 * daemon notices its launcher is gone, or with the container.
 *
 * Loop thread only.
 */
#include "agent/dockerint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/exec.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/uvcurl.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* ---- what the containers run ---- */

/* trainyard-rsh at the same path in every mpi container: mpirun passes
 * its rsh agent's path on to each orted, which refuses to start when that
 * path is missing where it runs (agents' work directories differ). */
static char *rsh_bind(struct task *t)
{
    return xasprintf("%s/" AGENT_RSH_STATIC ":" DOCKER_RSH_PATH ":ro", t->a->helper_dir);
}

static void launcher_spec(struct task *t, struct docker_spec *spec)
{
    const cJSON *argv_json = json_get(t->assignment, "argv");
    struct task *ranks_task = task_local_worker(t);
    const cJSON *arg;
    cJSON *env;
    int n_bind = 0;
    int n;

    if (ranks_task == NULL)
        ranks_task = t;
    env = cJSON_Duplicate(json_get(ranks_task->assignment, "env"), 1);
    task_mpi_defaults(t, env);
    spec->argv = xcalloc((size_t)cJSON_GetArraySize(argv_json) + 2 * cJSON_GetArraySize(env) + 16,
                         sizeof(*spec->argv));
    n = task_mpirun_argv(t, env, spec->argv);
    if (cJSON_IsTrue(json_get(t->assignment, "use_python")))
        spec->argv[n++] = xstrdup("python3");
    cJSON_ArrayForEach(arg, argv_json) {
        spec->argv[n++] = xstrdup(arg->valuestring);
    }
    spec->env = task_image_env(ranks_task, env);
    docker_renumber_gpus(spec->env, cJSON_GetArraySize(json_get(ranks_task->assignment, "gpus")));
    cJSON_Delete(env);
    spec->binds[n_bind++] = xasprintf("%s:%s", ranks_task->src, ranks_task->src);
    if (ranks_task != t)
        spec->binds[n_bind++] = xasprintf("%s:%s", t->src, t->src);
    spec->binds[n_bind++] = xasprintf("%s:%s:ro", t->a->helper_dir, t->a->helper_dir);
    spec->binds[n_bind++] = rsh_bind(t);
    /* task_mpirun_argv() wrote it in the launcher's task directory. */
    spec->binds[n_bind++] = xasprintf("%s/hostfile:%s/hostfile:ro", t->dir, t->dir);
    spec->workdir = ranks_task->src;
    spec->gpus = json_get(ranks_task->assignment, "gpus");
}

static void worker_spec(struct task *t, struct docker_spec *spec)
{
    spec->argv = xcalloc(3, sizeof(*spec->argv));
    spec->argv[0] = xstrdup(DOCKER_RSH_PATH);
    spec->argv[1] = xstrdup("--hold");
    spec->env = task_image_env(t, json_get(t->assignment, "env"));
    docker_renumber_gpus(spec->env, cJSON_GetArraySize(json_get(t->assignment, "gpus")));
    spec->binds[0] = xasprintf("%s:%s", t->src, t->src);
    spec->binds[1] = xasprintf("%s:%s:ro", t->a->helper_dir, t->a->helper_dir);
    spec->binds[2] = rsh_bind(t);
    spec->workdir = t->src;
    spec->gpus = json_get(t->assignment, "gpus");
}

bool docker_mpi_spec(struct task *t, struct docker_spec *spec)
{
    if (cJSON_IsTrue(json_get(t->assignment, "mpi_launcher")))
        launcher_spec(t, spec);
    else if (cJSON_IsTrue(json_get(t->assignment, "mpi_worker")))
        worker_spec(t, spec);
    else
        return false;
    return true;
}

/* ---- /v1/exec in a worker's container ---- */

struct docker_exec {
    struct task *t;
    struct exec_stream *stream;
    char id[80]; /* the exec's id, once created */
    struct buf frames; /* output not yet a whole frame */
};

/* The exec is over: its stream ends with code (after why, if any). */
static void exec_end(struct docker_exec *x, const char *why, int code)
{
    struct task *t = x->t;

    if (why) {
        char line[700];

        snprintf(line, sizeof(line), "trainyard: cannot run orted in the container: %s\n", why);
        exec_stream_feed(x->stream, line, strlen(line), false, 0);
        task_log_bytes(t, line, strlen(line));
    }
    exec_stream_feed(x->stream, NULL, 0, true, code);
    task_exec_ended(t, x->stream);
    exec_stream_unref(x->stream);
    buf_release(&x->frames);
    free(x);
    docker_settle(t);
}

static void on_exec_frame(void *arg, bool is_stderr, const char *data, size_t len)
{
    struct docker_exec *x = arg;

    (void)is_stderr; /* one stream, as orted's pipes are on a host */
    exec_stream_feed(x->stream, data, len, false, 0);
    task_log_bytes(x->t, data, len);
}

static void on_exec_output(void *arg, const char *data, size_t len)
{
    struct docker_exec *x = arg;

    docker_demux(&x->frames, data, len, on_exec_frame, x);
}

static void on_exec_inspected(void *arg, const struct uvcurl_response *resp)
{
    struct docker_exec *x = arg;
    cJSON *body = NULL;
    int64_t code = -1;
    char msg[512];

    docker_task_call_ended(x->t);
    if (resp->status == 200)
        body = json_parse(resp->body->data, resp->body->len);
    if (body && json_int(json_get(body, "ExitCode"), 0, 255, &code)) {
        cJSON_Delete(body);
        exec_end(x, NULL, (int)code);
        return;
    }
    cJSON_Delete(body);
    /* Gone with its container (removed at a stop of the agent): killed. */
    if (resp->status == 404 || resp->status == 200) {
        exec_end(x, NULL, 128 + 9);
        return;
    }
    docker_daemon_message(resp, msg, sizeof(msg));
    exec_end(x, msg, 255);
}

static void on_exec_done(void *arg, const struct uvcurl_response *resp)
{
    struct docker_exec *x = arg;
    struct docker *d = x->t->docker->d;
    char path[256];
    char msg[512];

    docker_task_call_ended(x->t);
    if (resp->status != 200 && resp->status != 101) {
        docker_daemon_message(resp, msg, sizeof(msg));
        exec_end(x, msg, 127);
        return;
    }
    snprintf(path, sizeof(path), "/exec/%s/json", x->id);
    if (docker_request(d, x->t, x, "GET", path, NULL, NULL, 0, DOCKER_CALL_TIMEOUT_MS, NULL,
                       on_exec_inspected) < 0)
        exec_end(x, "the agent is stopping", 255);
}

static void on_exec_created(void *arg, const struct uvcurl_response *resp)
{
    static const char start[] = "{\"Detach\": false, \"Tty\": false}";
    struct docker_exec *x = arg;
    struct docker *d = x->t->docker->d;
    cJSON *body = NULL;
    const char *id;
    char path[256];
    char msg[512];

    docker_task_call_ended(x->t);
    if (resp->status == 201)
        body = json_parse(resp->body->data, resp->body->len);
    id = json_get_string(body, "Id");
    if (id && strlen(id) < sizeof(x->id) && strspn(id, "0123456789abcdef") == strlen(id))
        snprintf(x->id, sizeof(x->id), "%s", id);
    cJSON_Delete(body);
    if (x->id[0] == '\0') {
        docker_daemon_message(resp, msg, sizeof(msg));
        exec_end(x, msg, 127);
        return;
    }
    /* Non-detached: the reply is the exec's output until it ends. */
    snprintf(path, sizeof(path), "/exec/%s/start", x->id);
    if (docker_request(d, x->t, x, "POST", path, "application/json", start, strlen(start), -1,
                       on_exec_output, on_exec_done) < 0)
        exec_end(x, "the agent is stopping", 255);
}

static void add_strings(cJSON *obj, const char *key, char *const *v)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    int i;

    for (i = 0; v[i]; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(v[i]));
}

void docker_exec_start(struct task *t, char *const *argv, char *const *env,
                       struct exec_stream *stream)
{
    struct docker_task *k = t->docker;
    struct docker_exec *x = xcalloc(1, sizeof(*x));
    cJSON *body = cJSON_CreateObject();
    char path[256];
    char *text;

    x->t = t;
    x->stream = stream;
    buf_init(&x->frames);
    if (k->step != STEP_RUN || k->container == NULL) {
        exec_end(x, "the worker's container is not running", 255);
        cJSON_Delete(body);
        return;
    }
    cJSON_AddBoolToObject(body, "AttachStdin", false);
    cJSON_AddBoolToObject(body, "AttachStdout", true);
    cJSON_AddBoolToObject(body, "AttachStderr", true);
    cJSON_AddBoolToObject(body, "Tty", false);
    add_strings(body, "Cmd", argv);
    add_strings(body, "Env", env);
    cJSON_AddStringToObject(body, "WorkingDir", t->src);
    if (t->has_cred) {
        char user[64];

        snprintf(user, sizeof(user), "%u:%u", (unsigned)t->cred.uid, (unsigned)t->cred.gid);
        cJSON_AddStringToObject(body, "User", user);
    }
    text = json_print(body);
    cJSON_Delete(body);
    snprintf(path, sizeof(path), "/containers/%s/exec", k->container);
    if (docker_request(k->d, t, x, "POST", path, "application/json", text, strlen(text),
                       DOCKER_CALL_TIMEOUT_MS, NULL, on_exec_created) < 0)
        exec_end(x, "the agent is stopping", 255);
    free(text);
    log_info("agent: task '%s': orted in container %.12s", t->id, k->container);
}
