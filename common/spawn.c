/* spawn.c - posix_spawn plus a pidfd watched on the loop. See spawn.h. */
#include "common/spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
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

/* The forked child's side of proc_spawn_as: async-signal-safe calls and
 * raw system calls only (the parent may have other threads). Writes the
 * errno of the step that failed to report and exits. */
static void child_as(const char *path, char *const *args, char *const *env, const char *cwd,
                     int out_fd, int err_fd, int report, const struct proc_cred *cred)
{
    struct sigaction dfl;
    sigset_t none;
    int e = 0;
    int devnull;
    int sig;

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        goto fail;
    devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        goto fail;
    /* Everything else closes on exec; report stays open until then. */
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        int fd;

        for (fd = 3; fd < 65536; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (cwd && chdir(cwd) < 0)
        goto fail;
    if (syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, cred->gid, cred->gid, cred->gid) < 0 ||
        syscall(SYS_setresuid, cred->uid, cred->uid, cred->uid) < 0)
        goto fail;
    execve(path, args, env);
    if (errno == ENOEXEC) {
        /* A script without "#!": run by sh, as execvp does. */
        char *sh_args[4096];
        size_t n = 0;

        sh_args[0] = (char *)"/bin/sh";
        sh_args[1] = (char *)path;
        while (args[0] && args[n + 1] && n + 3 < sizeof(sh_args) / sizeof(sh_args[0])) {
            sh_args[n + 2] = args[n + 1];
            n++;
        }
        sh_args[n + 2] = NULL;
        execve("/bin/sh", sh_args, env);
    }
fail:
    e = errno;
    while (write(report, &e, sizeof(e)) < 0 && errno == EINTR)
        ;
    _exit(127);
}

/* Forks the child of proc_spawn_as; returns 0 or a negative errno (the
 * child's, when it failed before exec). */
static int fork_as(pid_t *ret_pid, const char *path, char *const *args, char *const *env,
                   const char *cwd, int out_fd, int err_fd, const struct proc_cred *cred)
{
    int report[2];
    int e = 0;
    ssize_t n;
    pid_t pid;

    if (pipe2(report, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        e = errno;
        close(report[0]);
        close(report[1]);
        return -e;
    }
    if (pid == 0)
        child_as(path, args, env, cwd, out_fd, err_fd, report[1], cred);
    close(report[1]);
    do
        n = read(report[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof(e)) {
        waitpid(pid, NULL, 0);
        return -(e ? e : EPERM);
    }
    *ret_pid = pid;
    return 0;
}

/* Whether process pid (a /proc entry name) has uid as its real,
 * effective or saved uid, and is not a zombie (nothing left to kill). */
static bool runs_as(const char *pid, uid_t uid)
{
    char path[64];
    char line[256];
    bool match = false;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long r, e, s;

        if (strncmp(line, "State:", 6) == 0 && strchr(line, 'Z'))
            break;
        if (sscanf(line, "Uid: %lu %lu %lu", &r, &e, &s) == 3) {
            match = r == uid || e == uid || s == uid;
            break;
        }
    }
    fclose(f);
    return match;
}

int proc_kill_uid(uid_t uid)
{
    int round;

    if (uid == 0)
        return -EINVAL;
    /* Until a pass finds none: one killed mid-fork may leave a child. */
    for (round = 0; round < 20; round++) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        int found = 0;

        if (d == NULL)
            return -errno;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && runs_as(e->d_name, uid) &&
                kill((pid_t)strtol(e->d_name, NULL, 10), SIGKILL) == 0)
                found++;
        }
        closedir(d);
        if (found == 0)
            return 0;
    }
    return -EAGAIN;
}

int proc_spawn(uv_loop_t *loop, struct proc *p, const char *file, char *const *args,
               char *const *env, const char *cwd, uv_pipe_t *out, uv_pipe_t *err,
               proc_exit_cb exit_cb)
{
    return proc_spawn_as(loop, p, file, args, env, cwd, out, err, exit_cb, NULL);
}

int proc_spawn_as(uv_loop_t *loop, struct proc *p, const char *file, char *const *args,
                  char *const *env, const char *cwd, uv_pipe_t *out, uv_pipe_t *err,
                  proc_exit_cb exit_cb, const struct proc_cred *cred)
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
    if (cred) {
        rc = fork_as(&p->pid, path, args, env, cwd, out_fds[1], err_fds[1], cred);
        if (rc < 0)
            goto out;
        goto watch;
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
watch:
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
