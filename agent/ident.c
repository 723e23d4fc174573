/*
 * ident.c - who a task runs as. A root agent gives each run on this node
 * a uid (and the same gid) of its own from --task-uids, shared by that
 * run's tasks here (an mpi launcher, its ranks and orted talk through
 * shared memory and signals) and by no other run. A uid is taken with an
 * flock on /run/trainyard/uids/UID, so several agents on one machine never
 * hand out the same one, and a crashed agent's uids free themselves.
 * Whatever still runs under a uid is killed when it is taken and when its
 * run's last task here is gone.
 */
#include "agent/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/spawn.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define LOCK_DIR "/run/trainyard/uids"

struct ident_slot {
    char *run;
    uid_t uid;
    int refs;
    int lock_fd;
    struct ident_slot *next;
};

int ident_configure(struct agent *a, const char *task_user)
{
    if (task_user) {
        struct passwd *pw = getpwnam(task_user);

        if (geteuid() != 0) {
            fprintf(stderr, "trainyard agent: --task-user needs the agent to run as root\n");
            return 2;
        }
        if (pw == NULL || pw->pw_uid == 0 || pw->pw_gid == 0) {
            fprintf(stderr,
                    "trainyard agent: --task-user '%s' must be an existing user other than "
                    "root (uid and gid not 0)\n",
                    task_user);
            return 2;
        }
        a->ident = TASK_IDENT_USER;
        a->user_uid = pw->pw_uid;
        a->user_gid = pw->pw_gid;
        return 0;
    }
    if (geteuid() != 0) {
        a->ident = TASK_IDENT_SELF;
        log_warn("agent: not running as root, so tasks run as this agent's user (uid %u) and "
                 "can reach its files and each other",
                 (unsigned)geteuid());
        return 0;
    }
    a->ident = TASK_IDENT_RANGE;
    return 0;
}

static int lock_uid(uid_t uid)
{
    char path[64];
    int fd;

    snprintf(path, sizeof(path), LOCK_DIR "/%u", (unsigned)uid);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ident_acquire(struct agent *a, const char *run, struct proc_cred *ret, const char **ret_error)
{
    struct ident_slot *s;
    uid_t uid;

    if (a->ident == TASK_IDENT_SELF)
        return 0;
    if (a->ident == TASK_IDENT_USER) {
        ret->uid = a->user_uid;
        ret->gid = a->user_gid;
        return 1;
    }
    for (s = a->slots; s; s = s->next) {
        if (strcmp(s->run, run) == 0) {
            s->refs++;
            ret->uid = s->uid;
            ret->gid = (gid_t)s->uid;
            return 1;
        }
    }
    if ((mkdir("/run/trainyard", 0700) < 0 && errno != EEXIST) ||
        (mkdir(LOCK_DIR, 0700) < 0 && errno != EEXIST)) {
        *ret_error = "cannot create " LOCK_DIR " to take a task uid";
        return -1;
    }
    for (uid = a->uid_first;; uid++) {
        bool mine = false;
        int fd;

        for (s = a->slots; s; s = s->next)
            mine = mine || s->uid == uid;
        if (!mine && (fd = lock_uid(uid)) >= 0) {
            /* Nobody holds it: anything running under it is a leftover. */
            proc_kill_uid(uid);
            s = xcalloc(1, sizeof(*s));
            s->run = xstrdup(run);
            s->uid = uid;
            s->refs = 1;
            s->lock_fd = fd;
            s->next = a->slots;
            a->slots = s;
            ret->uid = uid;
            ret->gid = (gid_t)uid;
            return 1;
        }
        if (uid == a->uid_last)
            break;
    }
    *ret_error = "no task uid is free on this node (see the agent's --task-uids)";
    return -1;
}

void ident_release(struct agent *a, const char *run)
{
    struct ident_slot **p;
    struct ident_slot *s;

    if (a->ident != TASK_IDENT_RANGE)
        return;
    for (p = &a->slots; *p; p = &(*p)->next) {
        if (strcmp((*p)->run, run) == 0)
            break;
    }
    s = *p;
    assert(s != NULL && s->refs > 0);
    if (--s->refs > 0)
        return;
    /* The run is over here: nothing it started may outlive it. */
    proc_kill_uid(s->uid);
    *p = s->next;
    close(s->lock_fd);
    free(s->run);
    free(s);
}

int ident_check_reachable(struct agent *a, const char *dir)
{
    char *path = xstrdup(dir);
    char *slash;
    int rc = 0;

    if (a->ident == TASK_IDENT_SELF) {
        free(path);
        return 0;
    }
    /* Every directory above dir (dir itself is made 0711). */
    while ((slash = strrchr(path, '/')) != NULL && rc == 0) {
        struct stat st;

        *slash = '\0';
        if (path[0] == '\0')
            break;
        if (stat(path, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            fprintf(stderr,
                    "trainyard agent: work directory '%s' cannot be reached by task users: "
                    "'%s' has mode %04o, which others cannot traverse (it needs o+x); choose a "
                    "work directory whose parents do\n",
                    dir, path, (unsigned)(st.st_mode & 07777));
            rc = 1;
        }
    }
    free(path);
    return rc;
}

void ident_env(const struct proc_cred *cred, const char *home, char **env, int *n)
{
    env[(*n)++] = xasprintf("USER=ty-%u", (unsigned)cred->uid);
    env[(*n)++] = xasprintf("LOGNAME=ty-%u", (unsigned)cred->uid);
    env[(*n)++] = xasprintf("HOME=%s", home);
}
