/*
 * pack.c - a source directory as a .tar.gz snapshot, through libarchive.
 *
 * The walk is depth-first in byte order of names, and entries carry only
 * names, types, permission bits, sizes and mtimes (owner 0, no gzip time
 * stamp), so the same tree gives the same bytes and so the same snapshot id.
 * Symbolic links are stored as links, never followed; sockets, FIFOs and
 * devices are skipped with a warning.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* Deeper trees are almost certainly a mistake (or a loop of bind mounts). */
#define MAX_DEPTH 256
#define READ_CHUNK (256 * 1024)

struct pack {
    const char *root;
    struct archive *ar;
    struct cli_ignore *ignore;
    struct buf *out;
    struct cli_pack_stats stats;
    const char *must_have;
    bool found;
    char *chunk;
};

static la_ssize_t on_write(struct archive *a, void *arg, const void *data, size_t len)
{
    struct buf *out = arg;

    (void)a;
    buf_add(out, data, len);
    return (la_ssize_t)len;
}

static int archive_fail(struct pack *p, const char *what, const char *relpath)
{
    cli_fail("cannot pack '%s/%s': %s: %s", p->root, relpath, what, archive_error_string(p->ar));
    return ERR_INTERNAL;
}

/* An entry with what every entry has; the caller frees it. */
static struct archive_entry *new_entry(const char *relpath, const struct stat *st,
                                       unsigned int type)
{
    struct archive_entry *e = archive_entry_new();

    if (e == NULL) {
        fprintf(stderr, "fatal: out of memory packing a snapshot\n");
        abort();
    }
    archive_entry_set_pathname(e, relpath);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, st->st_mode & 07777 & ~(mode_t)07000);
    archive_entry_set_mtime(e, st->st_mtime, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    return e;
}

static int add_file(struct pack *p, const char *abspath, const char *relpath)
{
    struct archive_entry *e = NULL;
    struct stat st;
    int64_t left;
    ssize_t n;
    int rc = 0;
    int fd;

    /* O_NOFOLLOW: the path was a regular file when listed; never follow a
     * link swapped in since. */
    fd = open(abspath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) != 0) {
        cli_fail("cannot read '%s': %s", abspath, strerror(errno));
        rc = ERR_INTERNAL;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        cli_fail("'%s' changed while it was being packed", abspath);
        rc = ERR_INTERNAL;
        goto out;
    }
    e = new_entry(relpath, &st, AE_IFREG);
    archive_entry_set_size(e, st.st_size);
    if (archive_write_header(p->ar, e) != ARCHIVE_OK) {
        rc = archive_fail(p, "header", relpath);
        goto out;
    }
    /* A file that shrinks meanwhile is padded with zeros by libarchive; one
     * that grows is cut at the size in its header. */
    for (left = st.st_size; left > 0; left -= n) {
        n = read(fd, p->chunk, left < READ_CHUNK ? (size_t)left : READ_CHUNK);
        if (n < 0 && errno == EINTR) {
            n = 0;
            continue;
        }
        if (n < 0) {
            cli_fail("cannot read '%s': %s", abspath, strerror(errno));
            rc = ERR_INTERNAL;
            goto out;
        }
        if (n == 0)
            break;
        if (archive_write_data(p->ar, p->chunk, (size_t)n) != n) {
            rc = archive_fail(p, "data", relpath);
            goto out;
        }
    }
    p->stats.files++;
out:
    archive_entry_free(e);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int add_symlink(struct pack *p, const char *abspath, const char *relpath,
                       const struct stat *st)
{
    struct archive_entry *e;
    char target[4096];
    ssize_t n;
    int rc = 0;

    n = readlink(abspath, target, sizeof(target));
    if (n >= (ssize_t)sizeof(target))
        errno = ENAMETOOLONG;
    if (n < 0 || n >= (ssize_t)sizeof(target)) {
        cli_fail("cannot read the link '%s': %s", abspath, strerror(errno));
        return ERR_INTERNAL;
    }
    target[n] = '\0';
    e = new_entry(relpath, st, AE_IFLNK);
    archive_entry_set_perm(e, 0777);
    archive_entry_set_symlink(e, target);
    if (archive_write_header(p->ar, e) != ARCHIVE_OK)
        rc = archive_fail(p, "header", relpath);
    else
        p->stats.links++;
    archive_entry_free(e);
    return rc;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir, "." and ".." left out; NULL with a message. */
static char **list_dir(const char *abspath, size_t *ret_count)
{
    struct dirent *d;
    char **names = NULL;
    size_t count = 0;
    size_t cap = 0;
    DIR *dir;

    dir = opendir(abspath);
    if (dir == NULL) {
        cli_fail("cannot open the directory '%s': %s", abspath, strerror(errno));
        return NULL;
    }
    for (;;) {
        errno = 0;
        d = readdir(dir);
        if (d == NULL)
            break;
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 32;
            names = xrealloc(names, cap * sizeof(*names));
        }
        names[count++] = xstrdup(d->d_name);
    }
    if (errno != 0) {
        cli_fail("cannot read the directory '%s': %s", abspath, strerror(errno));
        while (count > 0)
            free(names[--count]);
        free(names);
        closedir(dir);
        return NULL;
    }
    closedir(dir);
    if (count > 0)
        qsort(names, count, sizeof(*names), compare_names);
    *ret_count = count;
    /* An empty directory gives an empty, but non-NULL, list. */
    return names ? names : xcalloc(1, sizeof(*names));
}

static int walk(struct pack *p, const char *absdir, const char *reldir, int depth)
{
    char **names;
    size_t count = 0;
    size_t i;
    int rc = 0;

    if (depth > MAX_DEPTH) {
        cli_fail("'%s' is nested more than %d directories deep", absdir, MAX_DEPTH);
        return ERR_INTERNAL;
    }
    names = list_dir(absdir, &count);
    if (names == NULL)
        return ERR_INTERNAL;
    for (i = 0; i < count && rc == 0; i++) {
        char *abspath = xasprintf("%s/%s", absdir, names[i]);
        char *relpath = reldir ? xasprintf("%s/%s", reldir, names[i]) : xstrdup(names[i]);
        struct stat st;

        if (lstat(abspath, &st) != 0) {
            rc = ERR_INTERNAL;
            cli_fail("cannot stat '%s': %s", abspath, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            if (strcmp(names[i], ".git") == 0 || strcmp(names[i], "__pycache__") == 0 ||
                cli_ignore_match(p->ignore, relpath, true)) {
                p->stats.skipped++;
            } else {
                struct archive_entry *e = new_entry(relpath, &st, AE_IFDIR);

                if (archive_write_header(p->ar, e) != ARCHIVE_OK)
                    rc = archive_fail(p, "header", relpath);
                archive_entry_free(e);
                if (rc == 0) {
                    p->stats.dirs++;
                    rc = walk(p, abspath, relpath, depth + 1);
                }
            }
        } else if (cli_ignore_match(p->ignore, relpath, false)) {
            p->stats.skipped++;
        } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            rc = S_ISREG(st.st_mode) ? add_file(p, abspath, relpath)
                                     : add_symlink(p, abspath, relpath, &st);
            if (rc == 0 && p->must_have && strcmp(relpath, p->must_have) == 0)
                p->found = true;
        } else {
            fprintf(stderr, "trainyard: warning: skipping '%s': not a file, directory or link\n",
                    abspath);
            p->stats.skipped++;
        }
        free(abspath);
        free(relpath);
    }
    for (i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

int cli_pack(const char *dir, const char *must_have, struct buf *out,
             struct cli_pack_stats *ret_stats)
{
    struct pack p;
    char *ignore_path;
    int rc;

    memset(&p, 0, sizeof(p));
    p.root = dir;
    p.out = out;
    p.must_have = must_have;
    ignore_path = xasprintf("%s/.trainyardignore", dir);
    rc = cli_ignore_load(ignore_path, &p.ignore);
    free(ignore_path);
    if (rc < 0)
        return rc;
    p.ar = archive_write_new();
    if (p.ar == NULL) {
        fprintf(stderr, "fatal: out of memory packing a snapshot\n");
        abort();
    }
    p.chunk = xmalloc(READ_CHUNK);
    /* "!timestamp": no time in the gzip header, for reproducible bytes. */
    if (archive_write_set_format_pax_restricted(p.ar) != ARCHIVE_OK ||
        archive_write_add_filter_gzip(p.ar) != ARCHIVE_OK ||
        archive_write_set_filter_option(p.ar, "gzip", "timestamp", NULL) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(p.ar, 1) != ARCHIVE_OK ||
        archive_write_open2(p.ar, out, NULL, on_write, NULL, NULL) != ARCHIVE_OK) {
        rc = ERR_INTERNAL;
        cli_fail("cannot start a .tar.gz: %s", archive_error_string(p.ar));
        goto out;
    }
    rc = walk(&p, dir, NULL, 0);
    if (archive_write_close(p.ar) != ARCHIVE_OK && rc == 0) {
        rc = ERR_INTERNAL;
        cli_fail("cannot finish the .tar.gz: %s", archive_error_string(p.ar));
    }
    if (rc == 0 && must_have && !p.found) {
        rc = ERR_NOT_FOUND;
        cli_fail("'%s' is not in '%s' (or .trainyardignore excludes it)", must_have, dir);
    }
    if (rc == 0 && ret_stats)
        *ret_stats = p.stats;
out:
    archive_write_free(p.ar);
    cli_ignore_free(p.ignore);
    free(p.chunk);
    return rc;
}
