/*
 * task.c - one assigned task on this node, from assignment to its last
 * report: prepare (prepare.c: snapshot, venv), run (a process group in
 * the unpacked snapshot, as the run's uid, stdout and stderr read line by
 * line), and report (report.c: loses nothing and repeats nothing).
 */
#include "agent/task.h"
#include "agent/docker.h"
#include "agent/metricline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "common/spawn.h"
#include "common/banned.h"

/* ---- small helpers ---- */

/* Appends to a task file; returns the bytes written (fewer when the disk
 * is full: only what is on disk counts as produced). */
/* Appends to one of t's files (its log or metrics); what does not fit is
 * lost, and the first such loss fails the task when it ends
 * (task_finish): its output is no longer whole. */
static size_t write_all(struct task *t, int fd, const char *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : ENOSPC;

            if (t->write_error == NULL) {
                t->write_error =
                    xasprintf("the agent cannot write the task's %s '%s': %s; what the task "
                              "printed from then on is lost",
                              fd == t->log_fd ? "log" : "metrics",
                              fd == t->log_fd ? t->log_path : t->metrics_path, strerror(e));
                log_warn("agent: task %s: %s", t->id, t->write_error);
            }
            break;
        }
        done += (size_t)n;
    }
    return done;
}

void task_log_text(struct task *t, const char *text)
{
    t->log_size += (int64_t)write_all(t, t->log_fd, text, strlen(text));
}

void task_log_bytes(struct task *t, const char *data, size_t len)
{
    /* After the final status nothing more goes to the server. */
    if (t->finished)
        return;
    t->log_size += (int64_t)write_all(t, t->log_fd, data, len);
}

static struct task *find(struct agent *a, const char *id)
{
    struct task *t;

    for (t = a->tasks; t; t = t->next) {
        if (strcmp(t->id, id) == 0)
            return t;
    }
    return NULL;
}

int task_count(struct agent *a)
{
    struct task *t;
    int n = 0;

    for (t = a->tasks; t; t = t->next)
        n++;
    return n;
}

/* ---- lines and metrics ---- */

/* "##metric {...}": one point per numeric member; false when malformed. */
static bool parse_metric(struct task *t, const char *json, size_t len)
{
    struct buf lines;
    bool ok;

    buf_init(&lines);
    ok = metricline_parse(json, len, time_now_ms(), t->steps, &lines) > 0;
    if (ok)
        t->metrics_size += (int64_t)write_all(t, t->metrics_fd, lines.data, lines.len);
    buf_release(&lines);
    return ok;
}

static void handle_line(struct stream_reader *r, const char *line, size_t len)
{
    struct task *t = r->task;

    if (!r->is_stderr && len > 9 && memcmp(line, "##metric ", 9) == 0 &&
        parse_metric(t, line + 9, len - 9))
        return;
    t->log_size += (int64_t)write_all(t, t->log_fd, line, len);
    t->log_size += (int64_t)write_all(t, t->log_fd, "\n", 1);
}

static void flush_lines(struct stream_reader *r, bool all)
{
    char *nl;

    while ((nl = memchr(r->line.data, '\n', r->line.len)) != NULL) {
        size_t n = (size_t)(nl - r->line.data);

        handle_line(r, r->line.data, n);
        memmove(r->line.data, nl + 1, r->line.len - n - 1);
        r->line.len -= n + 1;
        r->line.data[r->line.len] = '\0';
    }
    if ((all && r->line.len > 0) || r->line.len >= MAX_LINE) {
        handle_line(r, r->line.data, r->line.len);
        buf_reset(&r->line);
    }
}

void task_stream_feed(struct stream_reader *r, const char *data, size_t len, bool end)
{
    if (len > 0)
        buf_add(&r->line, data, len);
    flush_lines(r, end);
}

/* ---- child processes ---- */

static void child_handle_closed(uv_handle_t *h)
{
    struct task *t = h->data;

    if (--t->child_handles == 0)
        uv_timer_stop(&t->kill_timer); /* the drain timeout, if it was set */
    if (t->child_handles == 0 && t->after) {
        after_fn after = t->after;

        t->after = NULL;
        after(t, t->exit_status, t->term_signal);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    b->base = xmalloc(65536);
    b->len = 65536;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct stream_reader *r = (struct stream_reader *)s;

    if (n > 0) {
        buf_add(&r->line, b->base, (size_t)n);
        flush_lines(r, false);
    }
    free(b->base);
    if (n < 0) {
        flush_lines(r, true);
        uv_read_stop(s);
        uv_close((uv_handle_t *)&r->pipe, child_handle_closed);
    }
}

/* The child has exited but something it left (a daemon in a session of
 * its own) still holds its output open: stop waiting for the pipes. */
static void on_drain_timeout(uv_timer_t *timer)
{
    struct task *t = timer->data;
    struct stream_reader *readers[2] = { &t->out, &t->err };
    int i;

    for (i = 0; i < 2; i++) {
        if (!uv_is_closing((uv_handle_t *)&readers[i]->pipe)) {
            flush_lines(readers[i], true);
            uv_read_stop((uv_stream_t *)&readers[i]->pipe);
            uv_close((uv_handle_t *)&readers[i]->pipe, child_handle_closed);
        }
    }
}

static void on_child_exit(struct proc *p, int64_t exit_status, int term_signal)
{
    struct task *t = p->data;

    t->child_exited = true;
    t->exit_status = exit_status;
    t->term_signal = term_signal;
    /* Whatever the leader left behind in its group goes with it. */
    if (t->pgid > 0)
        kill(-t->pgid, SIGKILL);
    uv_timer_stop(&t->kill_timer);
    /* A stopped task's leftovers get no time to finish their output: its
     * gang must be gone within SPEC §4's 5 s, and they go at release. */
    uv_timer_start(&t->kill_timer, on_drain_timeout, t->stop_requested ? 100 : 2000, 0);
    proc_close(p, child_handle_closed);
}

/* The environment of t's processes; in a container (in_image) without
 * the agent's own basics (PATH, LANG...: the image's apply). */
static char **env_for(struct task *t, const cJSON *extra, bool in_image)
{
    static const char *const inherit[] = {
        "PATH", "HOME", "LANG", "LC_ALL", "USER", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
        NULL
    };
    const cJSON *e;
    char **env = xcalloc((size_t)cJSON_GetArraySize(extra) + 24, sizeof(*env));
    const char *pythonpath = NULL;
    int n = 0;
    int i;

    for (i = 0; inherit[i] && !in_image; i++) {
        const char *v = getenv(inherit[i]);
        /* A task user has its own identity and home, not the agent's. */
        bool own =
            t->has_cred && (strcmp(inherit[i], "HOME") == 0 || strcmp(inherit[i], "USER") == 0 ||
                            strcmp(inherit[i], "TMPDIR") == 0);

        if (v && !own && json_get(extra, inherit[i]) == NULL)
            env[n++] = xasprintf("%s=%s", inherit[i], v);
    }
    if (t->has_cred && json_get(extra, "HOME") == NULL && json_get(extra, "USER") == NULL)
        ident_env(&t->cred, t->src, env, &n);
    cJSON_ArrayForEach(e, extra) {
        if (strcmp(e->string, "PYTHONPATH") == 0)
            pythonpath = e->valuestring;
        else
            env[n++] = xasprintf("%s=%s", e->string, e->valuestring);
    }
    env[n++] = xasprintf("TRAINYARD_OUTPUT_DIR=%s", t->outputs);
    env[n++] = xasprintf("PYTHONUNBUFFERED=1");
    env[n++] = xasprintf("PYTHONPATH=%s%s%s", t->a->helper_dir, pythonpath ? ":" : "",
                         pythonpath ? pythonpath : "");
    env[n] = NULL;
    return env;
}

char **task_env(struct task *t, const cJSON *extra)
{
    return env_for(t, extra, false);
}

char **task_image_env(struct task *t, const cJSON *extra)
{
    return env_for(t, extra, true);
}

void task_free_strv(char **v)
{
    int i;

    for (i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/*
 * Starts argv in cwd as a new process group with env; its stdout and
 * stderr become log lines (and metrics). after runs once it has exited and
 * its pipes are drained.
 */
int task_spawn(struct task *t, char **argv, char **env, const char *cwd,
               const struct proc_cred *cred, after_fn after)
{
    int rc;

    t->after = after;
    t->child_exited = false;
    t->exit_status = -1;
    t->term_signal = 0;
    t->out.task = t;
    t->err.task = t;
    t->err.is_stderr = true;
    buf_reset(&t->out.line);
    buf_reset(&t->err.line);
    uv_pipe_init(t->a->loop, &t->out.pipe, 0);
    uv_pipe_init(t->a->loop, &t->err.pipe, 0);
    t->out.pipe.data = t;
    t->err.pipe.data = t;
    t->proc.data = t;
    t->child_handles = 3;
    rc = proc_spawn_as(t->a->loop, &t->proc, argv[0], argv, env, cwd, &t->out.pipe, &t->err.pipe,
                       on_child_exit, cred);
    if (rc != 0) {
        char msg[600];

        snprintf(msg, sizeof(msg), "cannot start '%s': %s\n", argv[0], uv_strerror(rc));
        task_log_text(t, msg);
        t->exit_status = 127;
        t->child_exited = true;
        t->pgid = 0;
        t->child_handles = 2;
        uv_close((uv_handle_t *)&t->out.pipe, child_handle_closed);
        uv_close((uv_handle_t *)&t->err.pipe, child_handle_closed);
        return 0;
    }
    t->pgid = t->proc.pid;
    uv_read_start((uv_stream_t *)&t->out.pipe, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&t->err.pipe, on_alloc, on_read);
    return 0;
}

/* ---- stopping ---- */

static void on_kill_timer(uv_timer_t *timer)
{
    struct task *t = timer->data;

    if (t->pgid > 0 && !t->child_exited) {
        log_warn("agent: task '%s' ignored SIGTERM; sending SIGKILL", t->id);
        kill(-t->pgid, SIGKILL);
    }
    task_kill_execs(t, SIGKILL);
}

bool task_stop(struct agent *a, const char *id, const char *why)
{
    struct task *t = find(a, id);

    if (t == NULL)
        return false;
    if (t->stop_requested || t->finished)
        return true;
    t->stop_requested = true;
    log_info("agent: stopping task '%s' (%s)", id, why);
    if (t->docker) {
        docker_task_stop(t);
        return true;
    }
    task_kill_execs(t, SIGTERM);
    if (t->child_handles > 0 && !t->child_exited && t->pgid > 0) {
        kill(-t->pgid, SIGTERM);
        uv_timer_start(&t->kill_timer, on_kill_timer, (uint64_t)a->grace_ms, 0);
    } else if (t->child_handles == 0) {
        /* Between steps (downloading, unpacking), or an mpi worker: end it
         * here; its execs got SIGTERM and get SIGKILL after the grace. */
        if (t->live_execs > 0)
            uv_timer_start(&t->kill_timer, on_kill_timer, (uint64_t)a->grace_ms, 0);
        task_finish(t, TASK_FAILED, -1, t->holder ? "stopped" : "stopped before it started");
    }
    return true;
}

/* Records pid and start time so a restarted agent can kill what it left. */
static void write_pid_file(struct task *t)
{
    char path[4200];
    char stat_path[64];
    char stat[1024];
    unsigned long long start = 0;
    FILE *f;

    snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", t->pgid);
    f = fopen(stat_path, "r");
    if (f) {
        if (fgets(stat, sizeof(stat), f)) {
            /* Field 22, counted after the ")" that ends the command name. */
            char *p = strrchr(stat, ')');
            int field = 2;

            while (p && *p && field < 22) {
                if (*p++ == ' ')
                    field++;
            }
            if (p)
                start = strtoull(p, NULL, 10);
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/pid", t->dir);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "%d %llu\n", t->pgid, start);
        fclose(f);
    }
}

void task_reap_leftovers(struct agent *a)
{
    char dir[4200];
    DIR *d;
    struct dirent *e;

    /* Venv builds an earlier agent did not finish: their locks go. Venvs
     * an agent before task users left writable (any task could plant code
     * there) are sealed like new ones. */
    snprintf(dir, sizeof(dir), "%s/venvs", a->work);
    d = opendir(dir);
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[8600];

        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".lock") == 0)
            unlink(path);
        else if (e->d_name[0] != '.' && a->ident != TASK_IDENT_SELF && seal_tree(path) < 0) {
            log_warn("agent: cannot seal the virtual environment '%s'; removing it", path);
            remove_tree(path);
        }
    }
    if (d)
        closedir(d);

    snprintf(dir, sizeof(dir), "%s/tasks", a->work);
    d = opendir(dir);
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[8600];
        char stat_path[64];
        char stat[1024];
        unsigned long long start = 0;
        unsigned long long now_start = 0;
        int pid = 0;
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/pid", dir, e->d_name);
        f = fopen(path, "r");
        if (f && fscanf(f, "%d %llu", &pid, &start) == 2 && pid > 0) {
            snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", pid);
            fclose(f);
            f = fopen(stat_path, "r");
            if (f && fgets(stat, sizeof(stat), f)) {
                char *p = strrchr(stat, ')');
                int field = 2;

                while (p && *p && field < 22) {
                    if (*p++ == ' ')
                        field++;
                }
                if (p)
                    now_start = strtoull(p, NULL, 10);
            }
            /* Only the same process (same start time), never a recycled pid. */
            if (now_start == start) {
                log_warn("agent: killing process group %d left by an earlier agent", pid);
                kill(-pid, SIGKILL);
            }
        }
        if (f)
            fclose(f);
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

/* ---- the task's own process ---- */

static void after_main(struct task *t, int64_t exit_status, int term_signal)
{
    char msg[128];

    if (term_signal) {
        snprintf(msg, sizeof(msg), "killed by signal %d%s", term_signal,
                 t->stop_requested ? " (stopped)" : "");
        task_finish(t, TASK_FAILED, 128 + term_signal, msg);
    } else if (exit_status == 0) {
        task_finish(t, TASK_SUCCEEDED, 0, NULL);
    } else {
        task_finish(t, TASK_FAILED, (int)exit_status, NULL);
    }
}

/* A command run with pip_packages finds the venv first on PATH, like an
 * activated venv. env has room for one more entry (env_array). */
static void use_venv(char **env, const char *python)
{
    char *bin = xstrdup(python);
    char *slash = strrchr(bin, '/');
    int i;

    if (slash)
        *slash = '\0';
    for (i = 0; env[i]; i++) {
        if (strncmp(env[i], "PATH=", 5) == 0) {
            char *path = xasprintf("PATH=%s:%s", bin, env[i] + 5);

            free(env[i]);
            env[i] = path;
        }
    }
    if (slash)
        *strrchr(bin, '/') = '\0';
    env[i] = xasprintf("VIRTUAL_ENV=%s", bin);
    env[i + 1] = NULL;
    free(bin);
}

static void launcher_retry(uv_timer_t *timer)
{
    struct task *t = timer->data;
    char *dir;
    char *python;

    if (cJSON_GetArraySize(json_get(t->assignment, "pip_packages")) == 0) {
        task_start_main(t, t->a->python);
        return;
    }
    dir = task_venv_dir(t);
    python = xasprintf("%s/bin/python", dir);
    task_start_main(t, python);
    free(python);
    free(dir);
}

void task_start_main(struct task *t, const char *python)
{
    const cJSON *argv_json = json_get(t->assignment, "argv");
    cJSON *env_json = json_get(t->assignment, "env");
    cJSON *ranks_env = NULL;
    struct task *ranks_task = t;
    bool in_image = json_get_string(t->assignment, "image") != NULL;
    bool launcher = cJSON_IsTrue(json_get(t->assignment, "mpi_launcher"));
    const cJSON *arg;
    char **argv;
    char **env;
    int n = 0;

    if (t->stop_requested) {
        task_finish(t, TASK_FAILED, -1, "stopped before it started");
        return;
    }
    if (in_image && !launcher) {
        docker_task_start(t);
        return;
    }
    if (cJSON_IsTrue(json_get(t->assignment, "mpi_worker"))) {
        /* Holds the node's slots; mpirun starts the ranks through /v1/exec. */
        t->holder = true;
        t->status = "running";
        task_queue_status(t, TASK_RUNNING, -1, NULL);
        return;
    }
    if (launcher) {
        /* mpirun starts this node's ranks itself, not through /v1/exec:
         * run it in worker-0's environment and directory, so those ranks
         * are worker-0's like every other node's ranks are their worker's
         * (its GPUs, identity and outputs). Worker-0 is assigned with the
         * launcher; wait for it a little. */
        ranks_task = task_local_worker(t);
        if (ranks_task == NULL && t->venv_wait++ < 300) {
            uv_timer_start(&t->kill_timer, launcher_retry, 100, 0);
            return;
        }
        if (in_image) {
            /* mpirun in a container of the image (docker.c) */
            docker_task_start(t);
            return;
        }
        if (ranks_task == NULL)
            ranks_task = t;
        ranks_env = cJSON_Duplicate(json_get(ranks_task->assignment, "env"), 1);
        task_mpi_defaults(t, ranks_env);
        env_json = ranks_env;
    }
    argv = xcalloc((size_t)cJSON_GetArraySize(argv_json) + 2 * cJSON_GetArraySize(env_json) + 16,
                   sizeof(*argv));
    if (ranks_env)
        n = task_mpirun_argv(t, env_json, argv);
    if (cJSON_IsTrue(json_get(t->assignment, "use_python")))
        argv[n++] = xstrdup(python);
    cJSON_ArrayForEach(arg, argv_json) {
        argv[n++] = xstrdup(arg->valuestring);
    }
    env = task_env(ranks_task, env_json);
    if (strcmp(python, t->a->python) != 0)
        use_venv(env, python);
    t->main_started = true;
    t->status = "running";
    task_spawn(t, argv, env, ranks_task->src, task_exec_cred(t), after_main);
    cJSON_Delete(ranks_env);
    if (t->pgid > 0)
        write_pid_file(t);
    /* Running once the process exists: a failure to start is reported as
     * the process's own failure (exit 127). */
    task_queue_status(t, TASK_RUNNING, -1, NULL);
    task_free_strv(argv);
    task_free_strv(env);
}

/* ---- the end of a task ---- */

static int collect_file(const char *path, const struct stat *st, int flag, struct FTW *ftw);
static cJSON *collecting;
static size_t collecting_prefix;

static int collect_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* Regular files only: links could point anywhere on this machine. */
    if (flag == FTW_F && S_ISREG(st->st_mode) && strlen(path) > collecting_prefix)
        cJSON_AddItemToArray(collecting, cJSON_CreateString(path + collecting_prefix));
    return 0;
}

/* The task's work is over: list outputs to upload and queue the final status. */
void task_finish(struct task *t, enum task_status status, int exit_code, const char *message)
{
    if (t->finished)
        return;
    t->finished = true;
    t->status = "exited";
    if (t->write_error) {
        status = TASK_FAILED;
        message = t->write_error;
    }
    if (message) {
        char line[700];

        snprintf(line, sizeof(line), "trainyard: %s\n", message);
        task_log_text(t, line);
    }
    t->uploads = cJSON_CreateArray();
    collecting = t->uploads;
    collecting_prefix = strlen(t->outputs) + 1;
    nftw(t->outputs, collect_file, 16, FTW_PHYS);
    collecting = NULL;
    t->uploads_listed = true;
    t->final_queued = true;
    task_queue_status(t, status, exit_code, message);
    if (t->a->stopping)
        task_release(t);
}

/* ---- reporting ---- */

static void task_free_cb(uv_handle_t *h)
{
    struct task *t = h->data;
    struct status_msg *m;

    if (--t->own_handles > 0)
        return;
    while ((m = t->statuses) != NULL) {
        t->statuses = m->next;
        free(m->message);
        free(m);
    }
    if (t->log_fd >= 0)
        close(t->log_fd);
    if (t->metrics_fd >= 0)
        close(t->metrics_fd);
    /* The run's last task here takes what it left running with it, before
     * its files go (nothing of it can swap them for links meanwhile). */
    if (t->has_cred)
        ident_release(t->a, t->run);
    if (t->venv_cred) {
        char *dir = task_venv_dir(t);

        task_venv_end_build(t, dir);
        free(dir);
    }
    docker_task_free(t);
    remove_tree(t->dir);
    buf_release(&t->out.line);
    buf_release(&t->err.line);
    cJSON_Delete(t->assignment);
    cJSON_Delete(t->steps);
    cJSON_Delete(t->uploads);
    free(t->id);
    free(t->run);
    free(t->dir);
    free(t->src);
    free(t->outputs);
    free(t->log_path);
    free(t->write_error);
    free(t->metrics_path);
    free(t);
}

/*
 * Forgets the task once nothing refers to it any more: no request in
 * flight, no download, unpack or exec running, and (unless the agent is
 * stopping) the final status delivered. Every callback that ends one of
 * those calls it again.
 */
void task_release(struct task *t)
{
    struct task **p;

    if (t->freeing || !t->finished || task_reporting(t) || t->live_execs > 0 || t->work_pending ||
        t->download_pending || docker_task_busy(t) || (!t->final_acked && !t->a->stopping))
        return;
    t->freeing = true;
    for (p = &t->a->tasks; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    uv_timer_stop(&t->pump_timer);
    uv_timer_stop(&t->kill_timer);
    uv_close((uv_handle_t *)&t->pump_timer, task_free_cb);
    uv_close((uv_handle_t *)&t->kill_timer, task_free_cb);
}

/* ---- the agent API's view ---- */

int task_assign(struct agent *a, const cJSON *assignment, const char **ret_error)
{
    const char *id = json_get_string(assignment, "id");
    const char *snapshot = json_get_string(assignment, "snapshot");
    const cJSON *argv = json_get(assignment, "argv");
    const cJSON *x;
    const char *ident_error = NULL;
    struct task *t;
    int ident;

    if (id == NULL || id[0] == '\0' || strlen(id) > 200 || strchr(id, '/') || id[0] == '.') {
        *ret_error = "id is required: a task id without '/'";
        return 400;
    }
    if (find(a, id))
        return 200;
    if (!cJSON_IsArray(argv) || cJSON_GetArraySize(argv) == 0) {
        *ret_error = "argv must be a non-empty array of strings";
        return 400;
    }
    cJSON_ArrayForEach(x, argv) {
        if (!cJSON_IsString(x)) {
            *ret_error = "argv must be a non-empty array of strings";
            return 400;
        }
    }
    if (!cJSON_IsObject(json_get(assignment, "env"))) {
        *ret_error = "env must be an object of strings";
        return 400;
    }
    cJSON_ArrayForEach(x, json_get(assignment, "env")) {
        if (!cJSON_IsString(x)) {
            *ret_error = "env must be an object of strings";
            return 400;
        }
    }
    if (snapshot && (strncmp(snapshot, "sha256:", 7) != 0 || strlen(snapshot) != 71 ||
                     strspn(snapshot + 7, "0123456789abcdef") != 64)) {
        *ret_error = "snapshot must be a snapshot id";
        return 400;
    }
    x = json_get(assignment, "image");
    if (x && !cJSON_IsNull(x) && !(cJSON_IsString(x) && docker_image_ok(x->valuestring))) {
        *ret_error = "image must be a Docker image reference";
        return 400;
    }
    x = json_get(assignment, "pip_packages");
    if (x && !cJSON_IsArray(x)) {
        *ret_error = "pip_packages must be an array of strings";
        return 400;
    }

    t = xcalloc(1, sizeof(*t));
    t->a = a;
    t->id = xstrdup(id);
    t->assignment = cJSON_Duplicate(assignment, 1);
    if (!cJSON_IsArray(json_get(t->assignment, "pip_packages")))
        cJSON_AddItemToObject(t->assignment, "pip_packages", cJSON_CreateArray());
    t->dir = xasprintf("%s/tasks/%s", a->work, id);
    t->src = xasprintf("%s/src", t->dir);
    t->outputs = xasprintf("%s/outputs", t->src);
    t->log_path = xasprintf("%s/log", t->dir);
    t->metrics_path = xasprintf("%s/metrics.jsonl", t->dir);
    t->steps = cJSON_CreateObject();
    t->status = "preparing";
    buf_init(&t->out.line);
    buf_init(&t->err.line);
    t->log_fd = -1;
    t->metrics_fd = -1;
    t->run =
        xstrdup(json_get_string(assignment, "run_id") ? json_get_string(assignment, "run_id") : id);
    remove_tree(t->dir);
    ident = ident_acquire(a, t->run, &t->cred, &ident_error);
    t->has_cred = ident == 1;
    /* root's, 0711: the task reaches its src/ but not the agent's files */
    if (ident >= 0 && make_dirs(t->dir, 0711) == 0 && chmod(t->dir, 0711) == 0) {
        t->log_fd = open(t->log_path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        t->metrics_fd =
            open(t->metrics_path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    }
    uv_timer_init(a->loop, &t->pump_timer);
    uv_timer_init(a->loop, &t->kill_timer);
    t->pump_timer.data = t;
    t->kill_timer.data = t;
    t->own_handles = 2;
    t->next = a->tasks;
    a->tasks = t;
    uv_timer_start(&t->pump_timer, task_on_pump_timer, PUMP_MS, PUMP_MS);
    log_info("agent: task '%s' assigned", id);
    if (t->log_fd < 0 || t->metrics_fd < 0) {
        task_finish(t, TASK_FAILED, -1,
                    ident_error ? ident_error : "cannot create the task's files");
        return 201;
    }
    task_queue_status(t, TASK_PREPARING, -1, NULL);
    task_prepare(t);
    return 201;
}

cJSON *task_list(struct agent *a, bool all)
{
    cJSON *list = cJSON_CreateArray();
    struct task *t;

    for (t = a->tasks; t; t = t->next) {
        cJSON *item;

        if (!all && t->finished)
            continue;
        item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", t->id);
        cJSON_AddStringToObject(item, "status", t->status);
        if (t->pgid > 0 && !t->child_exited)
            cJSON_AddNumberToObject(item, "pid", t->pgid);
        cJSON_AddItemToArray(list, item);
    }
    return list;
}

void task_stop_each(struct agent *a, const char *why)
{
    struct task *t;
    struct task *next;

    for (t = a->tasks; t; t = next) {
        next = t->next;
        task_stop(a, t->id, why);
    }
}

void task_stop_all(struct agent *a)
{
    struct task *t;
    struct task *next;

    for (t = a->tasks; t; t = next) {
        next = t->next;
        t->stop_requested = true;
        if (t->docker)
            docker_task_kill(t);
        task_kill_execs(t, SIGKILL);
        if (t->pgid > 0 && !t->child_exited)
            kill(-t->pgid, SIGKILL);
        /* A task whose child is still exiting is released by task_finish();
         * one between steps (or an mpi worker) ends here. */
        if (t->child_handles == 0 && !t->finished)
            task_finish(t, TASK_FAILED, -1, "the agent stopped");
        task_release(t);
    }
}
