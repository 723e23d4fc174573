/*
 * prepare.c - getting a task ready to run: the snapshot (downloaded into
 * the root-only cache, checked against its id, unpacked as root into a
 * directory only root may enter, then given to the run's uid), the
 * outputs directory, and the venv of its pip_packages (built under a uid
 * of its own, then sealed).
 */
#include "agent/task.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* ---- preparing: venv ---- */

char *task_venv_dir(struct task *t)
{
    const cJSON *pkgs = json_get(t->assignment, "pip_packages");
    struct buf key;
    char hex[CRYPTO_SHA256_HEX_LEN];
    const cJSON *p;
    char *dir;

    buf_init(&key);
    buf_adds(&key, t->a->python_version ? t->a->python_version : t->a->python);
    cJSON_ArrayForEach(p, pkgs) {
        buf_addc(&key, '\n');
        buf_adds(&key, p->valuestring);
    }
    crypto_sha256_hex(key.data, key.len, hex);
    buf_release(&key);
    dir = xasprintf("%s/venvs/%.16s", t->a->work, hex);
    return dir;
}

static void venv_retry(uv_timer_t *timer);

/*
 * A venv is built in its final directory (scripts pip installs name their
 * interpreter by absolute path, so it cannot be moved afterwards) while
 * <dir>.lock is held; <dir>/.trainyard-ready marks it complete. An agent
 * removes stale locks when it starts (task_reap_leftovers).
 */

/* The build's uid is not the run's: the run's other processes cannot
 * touch the venv while it is built, and what the build code leaves
 * running is killed before the venv is sealed (root's, read-only) for
 * every run to use. */
static char *venv_key(const char *dir)
{
    return xasprintf("venv:%s", dir);
}

void task_venv_end_build(struct task *t, const char *dir)
{
    char *key = venv_key(dir);

    if (t->venv_cred)
        ident_release(t->a, key);
    t->venv_cred = false;
    free(key);
}

/* The environment of a venv build: the job's, but the build's own home
 * (the venv; its pip cache is dropped before sealing) and identity.
 * task_env() left room. */
static char **venv_env(struct task *t, const char *dir)
{
    char **env = task_env(t, json_get(t->assignment, "env"));
    int n;
    int i;

    for (i = n = 0; env[i]; i++) {
        if (strncmp(env[i], "HOME=", 5) == 0 || strncmp(env[i], "USER=", 5) == 0 ||
            strncmp(env[i], "LOGNAME=", 8) == 0)
            free(env[i]);
        else
            env[n++] = env[i];
    }
    if (t->venv_cred)
        ident_env(&t->venv_build, dir, env, &n);
    env[n] = NULL;
    return env;
}

static void venv_failed(struct task *t, const char *why)
{
    char *dir = task_venv_dir(t);
    char *lock = xasprintf("%s.lock", dir);

    task_venv_end_build(t, dir);
    remove_tree(dir);
    unlink(lock);
    task_finish(t, TASK_FAILED, -1, why);
    free(dir);
    free(lock);
}

static void after_pip(struct task *t, int64_t exit_status, int term_signal)
{
    char *dir = task_venv_dir(t);
    char *lock = xasprintf("%s.lock", dir);
    char *ready = xasprintf("%s/.trainyard-ready", dir);
    char *python = xasprintf("%s/bin/python", dir);
    char *cache;
    bool sealed;
    int fd;

    if (exit_status != 0 || term_signal) {
        venv_failed(t, "pip install failed; its output is in the log");
        goto out;
    }
    sealed = !t->venv_cred;
    task_venv_end_build(t, dir);
    cache = xasprintf("%s/.cache", dir);
    remove_tree(cache);
    free(cache);
    if (!sealed && seal_tree(dir) < 0) {
        venv_failed(t, "cannot seal the virtual environment");
    } else if ((fd = open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        venv_failed(t, "cannot mark the virtual environment ready");
    } else {
        close(fd);
        unlink(lock);
        task_log_text(t, "trainyard: virtual environment ready\n");
        task_start_main(t, python);
    }
out:
    free(dir);
    free(lock);
    free(ready);
    free(python);
}

static void after_venv(struct task *t, int64_t exit_status, int term_signal)
{
    const cJSON *pkgs = json_get(t->assignment, "pip_packages");
    const cJSON *p;
    char *dir = task_venv_dir(t);
    char **argv = xcalloc((size_t)cJSON_GetArraySize(pkgs) + 8, sizeof(*argv));
    char **env = venv_env(t, dir);
    int n = 0;

    if (exit_status != 0 || term_signal || t->stop_requested) {
        venv_failed(t, "cannot create the virtual environment");
        goto out;
    }
    argv[n++] = xasprintf("%s/bin/python", dir);
    argv[n++] = xstrdup("-m");
    argv[n++] = xstrdup("pip");
    argv[n++] = xstrdup("install");
    argv[n++] = xstrdup("--no-input");
    argv[n++] = xstrdup("--disable-pip-version-check");
    cJSON_ArrayForEach(p, pkgs) {
        argv[n++] = xstrdup(p->valuestring);
    }
    task_log_text(t, "trainyard: pip install\n");
    task_spawn(t, argv, env, dir, t->venv_cred ? &t->venv_build : NULL, after_pip);
out:
    free(dir);
    task_free_strv(argv);
    task_free_strv(env);
}

static void prepare_venv(struct task *t)
{
    char *dir = task_venv_dir(t);
    char *lock = xasprintf("%s.lock", dir);
    char *ready = xasprintf("%s/.trainyard-ready", dir);
    char *python = xasprintf("%s/bin/python", dir);
    struct stat st;
    int fd;

    if (stat(ready, &st) == 0) {
        task_log_text(t, "trainyard: using the cached virtual environment\n");
        task_start_main(t, python);
    } else if ((fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        if (errno == EEXIST) {
            /* Another task builds the same one: wait for it. */
            if (t->venv_wait++ == 0)
                task_log_text(t, "trainyard: waiting for the virtual environment\n");
            uv_timer_start(&t->kill_timer, venv_retry, 500, 0);
        } else {
            task_finish(t, TASK_FAILED, -1, "cannot lock the virtual environment");
        }
    } else {
        char *argv[] = { t->a->python, "-m", "venv", "--system-site-packages", dir, NULL };
        char *key = venv_key(dir);
        const char *error = NULL;
        int got;

        close(fd);
        remove_tree(dir); /* what a failed build left */
        got = ident_acquire(t->a, key, &t->venv_build, &error);
        free(key);
        t->venv_cred = got == 1;
        if (got < 0 || mkdir(dir, 0755) < 0 || chmod(dir, 0755) < 0 ||
            (t->venv_cred && chown(dir, t->venv_build.uid, t->venv_build.gid) < 0)) {
            venv_failed(t, error ? error : "cannot create the virtual environment's directory");
        } else {
            char **env = venv_env(t, dir);

            task_log_text(t, "trainyard: creating a virtual environment\n");
            task_spawn(t, argv, env, dir, t->venv_cred ? &t->venv_build : NULL, after_venv);
            task_free_strv(env);
        }
    }
    free(dir);
    free(lock);
    free(ready);
    free(python);
}

static void venv_retry(uv_timer_t *timer)
{
    struct task *t = timer->data;

    if (t->stop_requested) {
        task_finish(t, TASK_FAILED, -1, "stopped before it started");
        return;
    }
    prepare_venv(t);
}

static void prepared(struct task *t)
{
    if (t->stop_requested) {
        task_finish(t, TASK_FAILED, -1, "stopped before it started");
        return;
    }
    if (make_dirs(t->outputs, 0700) < 0) {
        task_finish(t, TASK_FAILED, -1, "cannot create the outputs directory");
        return;
    }
    /* Unpacked as root in a directory only root can enter; now the run's. */
    if (t->has_cred && chown_tree(t->src, t->cred.uid, t->cred.gid) < 0) {
        task_finish(t, TASK_FAILED, -1, "cannot give the task directory to the task's user");
        return;
    }
    /* In an image the packages go into a derived image (dockerimage.c). */
    if (cJSON_GetArraySize(json_get(t->assignment, "pip_packages")) > 0 &&
        json_get_string(t->assignment, "image") == NULL)
        prepare_venv(t);
    else
        task_start_main(t, t->a->python);
}

/* ---- preparing: snapshot ---- */

struct unpack_work {
    uv_work_t req;
    struct task *task;
    char *archive;
    char why[512];
    int rc;
};

static void unpack_work(uv_work_t *req)
{
    struct unpack_work *w = req->data;
    struct archive_limits limits = {
        .max_bytes = w->task->a->max_unpacked_bytes,
        .max_ratio = 0, /* the server checked it, on these very bytes */
        .bytes_name = "the agent's --max-snapshot-unpacked-mb",
        .ratio_name = "",
    };

    w->rc = archive_unpack(w->archive, w->task->src, &limits, w->why, sizeof(w->why));
}

static void unpack_done(uv_work_t *req, int status)
{
    struct unpack_work *w = req->data;
    struct task *t = w->task;
    char msg[700];

    (void)status;
    t->work_pending = false;
    if (t->finished) {
        /* Stopped while unpacking: nothing more to do but let it go. */
        free(w->archive);
        free(w);
        task_release(t);
        return;
    }
    if (w->rc < 0) {
        snprintf(msg, sizeof(msg), "cannot unpack the snapshot: %s", w->why);
        task_finish(t, TASK_FAILED, -1, msg);
    } else {
        prepared(t);
    }
    free(w->archive);
    free(w);
}

static void unpack(struct task *t, const char *archive)
{
    struct unpack_work *w = xcalloc(1, sizeof(*w));

    w->task = t;
    w->archive = xstrdup(archive);
    w->req.data = w;
    t->work_pending = true;
    if (uv_queue_work(t->a->loop, &w->req, unpack_work, unpack_done) != 0) {
        t->work_pending = false;
        free(w->archive);
        free(w);
        task_finish(t, TASK_FAILED, -1, "cannot unpack the snapshot");
    }
}

static char *cache_path(struct task *t)
{
    const char *id = json_get_string(t->assignment, "snapshot");

    return xasprintf("%s/snapshots/%s.tar.gz", t->a->work, id + 7);
}

static void on_downloaded(void *arg, const struct uvcurl_response *resp)
{
    struct task *t = arg;
    char *path = cache_path(t);
    char *tmp = xasprintf("%s.%s.part", path, t->id);
    char msg[600];
    char hex[CRYPTO_SHA256_HEX_LEN];
    struct crypto_sha256 *h;
    char block[65536];
    ssize_t n;
    int fd;

    t->download_pending = false;
    if (t->finished) {
        unlink(tmp);
        task_release(t);
        goto out;
    }
    if (resp->status != 200) {
        unlink(tmp);
        snprintf(msg, sizeof(msg), "cannot download the snapshot: %s",
                 resp->status ? "the server refused it" : resp->error);
        task_finish(t, TASK_FAILED, -1, msg);
        goto out;
    }
    /* The id is the content's hash: check it before trusting the file. */
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    h = crypto_sha256_new();
    while (fd >= 0 && (n = read(fd, block, sizeof(block))) > 0)
        crypto_sha256_update(h, block, (size_t)n);
    if (fd >= 0)
        close(fd);
    crypto_sha256_final(h, hex);
    if (strcmp(hex, json_get_string(t->assignment, "snapshot") + 7) != 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        task_finish(t, TASK_FAILED, -1, "the downloaded snapshot does not match its id");
        goto out;
    }
    unpack(t, path);
out:
    free(path);
    free(tmp);
}

void task_prepare(struct task *t)
{
    const char *snapshot = json_get_string(t->assignment, "snapshot");
    char *path;
    char *tmp;
    char url[256];
    struct stat st;

    if (make_dirs(t->src, 0700) < 0 || chmod(t->src, 0700) < 0) {
        task_finish(t, TASK_FAILED, -1, "cannot create the task directory");
        return;
    }
    if (snapshot == NULL) {
        prepared(t);
        return;
    }
    path = cache_path(t);
    if (stat(path, &st) == 0) {
        unpack(t, path);
        free(path);
        return;
    }
    tmp = xasprintf("%s.%s.part", path, t->id);
    snprintf(url, sizeof(url), "/api/v1/snapshots/%s", snapshot);
    if (agent_server_request(t->a, "GET", url, NULL, NULL, 0, NULL, tmp, on_downloaded, t) < 0)
        task_finish(t, TASK_FAILED, -1, "cannot start the snapshot download");
    else
        t->download_pending = true;
    free(path);
    free(tmp);
}
