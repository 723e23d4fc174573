/* spawn.c - posix_spawn plus a pidfd watched on the loop. See spawn.h. */
#include "common/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "common/banned.h"

static const char *env_get(char *const *env, const char *name)
{
    size_t len = strlen(name);
    int i;

    for (i = 0; env && env[i]; i++) {
        if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
            return env[i] + len + 1;
    }
    return NULL;
}

static bool executable(const char *path, const char *cwd)
{
    char full[8192];
    struct stat st;

    if (path[0] != '/' && cwd) {
        snprintf(full, sizeof(full), "%s/%s", cwd, path);
        path = full;
    }
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* file as execvp would find it with env's PATH (relative entries are
 * relative to cwd, where the child starts); NULL when it is nowhere. */
static char *resolve(const char *file, char *const *env, const char *cwd)
{
    const char *path = env_get(env, "PATH");
    const char *p;

    if (strchr(file, '/'))
        return xstrdup(file);
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *candidate = xasprintf("%.*s%s%s", (int)len, p, len ? "/" : "", file);

        if (executable(candidate, cwd))
            return candidate;
        free(candidate);
        if (end == NULL)
            return NULL;
        p = end;
    }
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct proc *p = (struct proc *)h; /* poll is its first member */
    int wstatus = 0;
    pid_t r;

    (void)status;
    (void)events;
    do
        r = waitpid(p->pid, &wstatus, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return; /* not yet: the pidfd said readable early */
    uv_poll_stop(h);
    if (r < 0)
        p->exit_cb(p, -1, 0);
    else if (WIFSIGNALED(wstatus))
        p->exit_cb(p, 0, WTERMSIG(wstatus));
    else
        p->exit_cb(p, WEXITSTATUS(wstatus), 0);
}

int proc_spawn(uv_loop_t *loop, struct proc *p, const char *file, char *const *args,
               char *const *env, const char *cwd, uv_pipe_t *out, uv_pipe_t *err,
               proc_exit_cb exit_cb)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all;
    sigset_t none;
    int out_fds[2] = { -1, -1 };
    int err_fds[2] = { -1, -1 };
    char *path = resolve(file, env, cwd);
    int rc;

    p->pid = -1;
    p->pidfd = -1;
    p->exit_cb = exit_cb;
    if (path == NULL)
        return -ENOENT;
    if (pipe2(out_fds, O_CLOEXEC) < 0 || pipe2(err_fds, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_fds[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (cwd)
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawnattr_init(&attr);
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    rc = -posix_spawn(&p->pid, path, &fa, &attr, args, env);
    if (rc == -ENOEXEC) {
        /* A script without "#!": run by sh, as execvp (and uv_spawn) did. */
        size_t n = 0;
        char **sh_args;

        while (args[n])
            n++;
        sh_args = xcalloc(n + 2, sizeof(*sh_args));
        sh_args[0] = "/bin/sh";
        sh_args[1] = path;
        memcpy(sh_args + 2, args + 1, (n > 0 ? n - 1 : 0) * sizeof(*sh_args));
        rc = -posix_spawn(&p->pid, "/bin/sh", &fa, &attr, sh_args, env);
        free(sh_args);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc < 0)
        goto out;
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (p->pidfd < 0) {
        /* Cannot watch it: it must not run unwatched. */
        rc = -errno;
        kill(-p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        goto out;
    }
    uv_poll_init(loop, &p->poll, p->pidfd);
    uv_poll_start(&p->poll, UV_READABLE, on_pidfd);
    uv_pipe_open(out, out_fds[0]);
    uv_pipe_open(err, err_fds[0]);
    out_fds[0] = -1;
    err_fds[0] = -1;
    rc = 0;
out:
    /* The child has its own copies of the write ends. */
    if (out_fds[1] >= 0)
        close(out_fds[1]);
    if (err_fds[1] >= 0)
        close(err_fds[1]);
    if (out_fds[0] >= 0)
        close(out_fds[0]);
    if (err_fds[0] >= 0)
        close(err_fds[0]);
    free(path);
    return rc;
}

void proc_close(struct proc *p, uv_close_cb cb)
{
    p->poll.data = p->data; /* what cb finds in its handle, as with uv_process_t */
    uv_close((uv_handle_t *)&p->poll, cb);
    if (p->pidfd >= 0)
        close(p->pidfd);
    p->pidfd = -1;
}
