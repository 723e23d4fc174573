/*
 * files.c - the agent's file-system helpers for task, venv and helper
 * directories. The agent runs as root and tasks may plant links in what
 * they own, so nothing here follows a link.
 */
#include "agent/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/xalloc.h"
#include "common/banned.h"

int make_dirs(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    char *slash;
    int rc = 0;

    for (slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            rc = ERR_INTERNAL;
        *slash = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        rc = ERR_INTERNAL;
    free(p);
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void remove_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* nftw has no argument for its callback: the tree walks are on the loop
 * thread (or one thread-pool job at a time for a task), never nested. */
static __thread uid_t walk_uid;
static __thread gid_t walk_gid;
static __thread int walk_failed;

static int chown_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (lchown(path, walk_uid, walk_gid) < 0)
        walk_failed = errno;
    return 0;
}

int chown_tree(const char *path, uid_t uid, gid_t gid)
{
    walk_uid = uid;
    walk_gid = gid;
    walk_failed = 0;
    if (nftw(path, chown_entry, 16, FTW_PHYS) < 0)
        return ERR_INTERNAL;
    return walk_failed ? ERR_INTERNAL : 0;
}

static int seal_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    mode_t mode;

    (void)ftw;
    if (lchown(path, 0, 0) < 0)
        walk_failed = errno;
    if (flag == FTW_SL || S_ISLNK(st->st_mode))
        return 0;
    mode = st->st_mode & 07777 & ~(mode_t)(S_IWGRP | S_IWOTH | S_ISUID | S_ISGID | S_ISVTX);
    mode |= S_IRUSR | S_IRGRP | S_IROTH;
    if (S_ISDIR(st->st_mode) || (st->st_mode & S_IXUSR))
        mode |= S_IXUSR | S_IXGRP | S_IXOTH;
    if (chmod(path, mode) < 0)
        walk_failed = errno;
    return 0;
}

int seal_tree(const char *path)
{
    walk_failed = 0;
    if (nftw(path, seal_entry, 16, FTW_PHYS) < 0)
        return ERR_INTERNAL;
    return walk_failed ? ERR_INTERNAL : 0;
}

int open_regular_under(int dirfd, const char *rel)
{
    char *copy = xstrdup(rel);
    char *save = NULL;
    char *part = strtok_r(copy, "/", &save);
    int fd = dup(dirfd);
    struct stat st;

    while (fd >= 0 && part) {
        char *next = strtok_r(NULL, "/", &save);
        int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (next ? O_DIRECTORY : 0);
        int sub = strcmp(part, "..") == 0 ? (errno = EPERM, -1) : openat(fd, part, flags);

        close(fd);
        fd = sub;
        part = next;
    }
    free(copy);
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        errno = EPERM;
        fd = -1;
    }
    if (fd >= 0)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}
