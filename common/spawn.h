/*
 * spawn.h - starting a process cheaply and watching it on a libuv loop.
 *
 * libuv 1.44's uv_spawn forks: the cost of a launch grows with the
 * caller's memory (page tables are copied). This uses posix_spawn (glibc
 * clones with CLONE_VM | CLONE_VFORK, so nothing is copied) and watches
 * the exit through a pidfd polled on the loop; the child is reaped with
 * waitpid on its own pid only, so processes started with uv_spawn are
 * left to libuv. Loop thread only.
 */
#ifndef TRAINYARD_SPAWN_H
#define TRAINYARD_SPAWN_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct proc;

typedef void (*proc_exit_cb)(struct proc *p, int64_t exit_status, int term_signal);

struct proc {
    uv_poll_t poll; /* first: on the pidfd; close with proc_close */
    int pidfd;
    pid_t pid;
    proc_exit_cb exit_cb;
    void *data; /* the caller's */
};

/*
 * Starts file with args (NULL-terminated) and env in cwd, as the leader
 * of a new session (so its own process group), with stdin from /dev/null,
 * stdout and stderr into out and err (initialised, not yet open; they are
 * opened on the read ends) and every other descriptor closed. file
 * without a '/' is looked up in env's PATH. Signal dispositions and mask
 * start at their defaults. exit_cb runs once when it exits.
 * Returns 0, or a negative errno (uv_strerror() names it); on failure
 * only out and err need closing.
 */
int proc_spawn(uv_loop_t *loop, struct proc *p, const char *file, char *const *args,
               char *const *env, const char *cwd, uv_pipe_t *out, uv_pipe_t *err,
               proc_exit_cb exit_cb);
/* Who a process runs as: setgroups(0), setgid and setuid before exec. */
struct proc_cred {
    uid_t uid;
    gid_t gid;
};

/*
 * proc_spawn as cred (NULL: as the caller). Changing identity needs a
 * fork (posix_spawn cannot do it): the child drops its supplementary
 * groups, then sets gid and uid (real, effective and saved) and fails
 * the spawn (-EPERM ...) when any step fails, before anything of the
 * program runs. Needs root (CAP_SETUID/CAP_SETGID) unless cred is the
 * caller's own.
 */
int proc_spawn_as(uv_loop_t *loop, struct proc *p, const char *file, char *const *args,
                  char *const *env, const char *cwd, uv_pipe_t *out, uv_pipe_t *err,
                  proc_exit_cb exit_cb, const struct proc_cred *cred);
/* Sends SIGKILL to every process running as uid (real, effective or
 * saved; uid != 0), found in /proc, pass after pass until one finds none
 * (no helper process: nothing new appears below the caller). Returns 0
 * or a negative errno. */
int proc_kill_uid(uid_t uid);
/* Stops watching and closes the pidfd; cb as uv_close's, with a handle
 * whose data is p->data (as with a uv_process_t). */
void proc_close(struct proc *p, uv_close_cb cb);

#endif
