/* archive.c - safe reading and unpacking of .tar.gz snapshots. */
#include "common/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/banned.h"

static int why_fail(char *why, size_t size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int why_fail(char *why, size_t size, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return code;
}

static bool has_dotdot(const char *path)
{
    const char *p = path;

    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);

        if (len == 2 && p[0] == '.' && p[1] == '.')
            return true;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return false;
}

/* Checks one entry; 0 or ERR_INVALID with why. */
static int check_entry(struct archive_entry *e, char *why, size_t size)
{
    const char *path = archive_entry_pathname(e);
    const char *hardlink = archive_entry_hardlink(e);
    const char *symlink = archive_entry_symlink(e);
    mode_t type = archive_entry_filetype(e);

    if (path == NULL || path[0] == '\0')
        return why_fail(why, size, ERR_INVALID, "an entry has no name");
    if (path[0] == '/')
        return why_fail(why, size, ERR_INVALID, "entry '%s' has an absolute path", path);
    if (has_dotdot(path))
        return why_fail(why, size, ERR_INVALID, "entry '%s' contains '..'", path);
    if (hardlink) {
        if (hardlink[0] == '/' || has_dotdot(hardlink))
            return why_fail(why, size, ERR_INVALID, "hard link '%s' points outside ('%s')", path,
                            hardlink);
        return 0;
    }
    if (type == AE_IFLNK) {
        /* A link may only point down from where it is: a target with ".."
         * could climb out through another link ("d/up -> .." then
         * "e -> d/up/.."), which no textual check of one link can see. */
        if (symlink == NULL)
            return why_fail(why, size, ERR_INVALID, "symbolic link '%s' has no target", path);
        if (symlink[0] == '/' || has_dotdot(symlink))
            return why_fail(why, size, ERR_INVALID,
                            "symbolic link '%s' -> '%s' must point inside the directory, "
                            "without '..'",
                            path, symlink);
        return 0;
    }
    if (type != AE_IFREG && type != AE_IFDIR)
        return why_fail(why, size, ERR_INVALID,
                        "entry '%s' is not a file, directory or link (devices, fifos and "
                        "sockets are refused)",
                        path);
    return 0;
}

/* A reader of the archive open as fd (the caller's: libarchive does not
 * close it). The file is opened here, not by libarchive, so that its
 * descriptor's whole life is in our code, where ThreadSanitizer sees it
 * (libarchive's own opens are fortified variants it does not intercept:
 * tests/tsan.supp). */
static struct archive *open_reader(int fd, char *why, size_t size, int *ret_rc)
{
    struct archive *a = archive_read_new();

    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK) {
        *ret_rc = why_fail(why, size, ERR_INVALID, "not a gzip-compressed tar archive: %s",
                           archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/*
 * The most unpacked bytes an archive of packed bytes may have under
 * limits; *ret_by_ratio tells which limit that is.
 */
static int64_t unpacked_cap(const struct archive_limits *limits, int64_t packed, bool *ret_by_ratio)
{
    int64_t cap = limits->max_bytes;
    int64_t by_ratio;

    assert(limits->max_bytes > 0 && limits->max_ratio >= 0);
    *ret_by_ratio = false;
    if (limits->max_ratio == 0)
        return cap;
    by_ratio = packed > INT64_MAX / limits->max_ratio ? INT64_MAX : packed * limits->max_ratio;
    if (by_ratio < ARCHIVE_RATIO_FLOOR)
        by_ratio = ARCHIVE_RATIO_FLOOR;
    if (by_ratio < cap) {
        cap = by_ratio;
        *ret_by_ratio = true;
    }
    return cap;
}

static int too_large(const struct archive_limits *limits, bool by_ratio, int64_t packed, char *why,
                     size_t size)
{
    if (by_ratio)
        return why_fail(why, size, ERR_TOO_LARGE,
                        "the archive unpacks to more than %lld times its %lld bytes (the limit "
                        "set by %s)",
                        (long long)limits->max_ratio, (long long)packed, limits->ratio_name);
    return why_fail(why, size, ERR_TOO_LARGE,
                    "the archive unpacks to more than %lld bytes (the limit set by %s)",
                    (long long)limits->max_bytes, limits->bytes_name);
}

/* Walks the archive; with dir set, writes each entry under it. */
static int walk(const char *path, const char *dir, const struct archive_limits *limits, char *why,
                size_t size)
{
    struct archive *a;
    struct archive *disk = NULL;
    struct archive_entry *e;
    struct stat st;
    int64_t entries = 0;
    int64_t done = 0; /* unpacked bytes of the entries before this one */
    int64_t cap;
    bool by_ratio;
    int rc = 0;
    int fd;
    int r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = why_fail(why, size, ERR_INTERNAL, "cannot read '%s': %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    cap = unpacked_cap(limits, (int64_t)st.st_size, &by_ratio);
    a = open_reader(fd, why, size, &rc);
    if (a == NULL) {
        close(fd);
        return rc;
    }
    if (dir) {
        disk = archive_write_disk_new();
        /* libarchive's own guards as a second line behind check_entry()
         * (absolute paths are refused there: entries are written under the
         * absolute dir, so libarchive's absolute-path guard cannot be used). */
        archive_write_disk_set_options(disk, ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                 ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                 ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM);
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const void *block;
        size_t len;
        la_int64_t offset;
        int64_t end = 0; /* this entry's unpacked size so far: holes count */

        if (entries == 0 && archive_filter_code(a, 0) != ARCHIVE_FILTER_GZIP) {
            rc = why_fail(why, size, ERR_INVALID, "the archive must be gzip-compressed");
            goto out;
        }
        if (++entries > ARCHIVE_MAX_ENTRIES) {
            rc = why_fail(why, size, ERR_INVALID, "more than %d entries", ARCHIVE_MAX_ENTRIES);
            goto out;
        }
        if ((rc = check_entry(e, why, size)) < 0)
            goto out;
        /* A header that declares more than is left fails before any of
         * its data is inflated. */
        if (archive_entry_size_is_set(e) && archive_entry_size(e) > cap - done) {
            rc = too_large(limits, by_ratio, (int64_t)st.st_size, why, size);
            goto out;
        }
        if (disk) {
            char full[8192];
            const char *hardlink = archive_entry_hardlink(e);

            snprintf(full, sizeof(full), "%s/%s", dir, archive_entry_pathname(e));
            archive_entry_set_pathname(e, full);
            if (hardlink) {
                snprintf(full, sizeof(full), "%s/%s", dir, hardlink);
                archive_entry_set_hardlink(e, full);
            }
            if (archive_write_header(disk, e) != ARCHIVE_OK) {
                rc = why_fail(why, size, ERR_INVALID, "cannot unpack '%s': %s",
                              archive_entry_pathname(e), archive_error_string(disk));
                goto out;
            }
        }
        while ((r = archive_read_data_block(a, &block, &len, &offset)) == ARCHIVE_OK) {
            if (offset < 0 || (uint64_t)offset + len > (uint64_t)(cap - done)) {
                rc = too_large(limits, by_ratio, (int64_t)st.st_size, why, size);
                goto out;
            }
            if (offset + (int64_t)len > end)
                end = offset + (int64_t)len;
            if (disk && archive_write_data_block(disk, block, len, offset) != ARCHIVE_OK) {
                rc = why_fail(why, size, ERR_INTERNAL, "cannot write '%s': %s",
                              archive_entry_pathname(e), archive_error_string(disk));
                goto out;
            }
        }
        done += end;
        if (r != ARCHIVE_EOF) {
            rc = why_fail(why, size, ERR_INVALID, "corrupt archive: %s", archive_error_string(a));
            goto out;
        }
        if (disk && archive_write_finish_entry(disk) != ARCHIVE_OK) {
            rc = why_fail(why, size, ERR_INTERNAL, "cannot finish '%s': %s",
                          archive_entry_pathname(e), archive_error_string(disk));
            goto out;
        }
    }
    if (r != ARCHIVE_EOF)
        rc = why_fail(why, size, ERR_INVALID, "not a gzip-compressed tar archive: %s",
                      archive_error_string(a));
    else if (entries == 0 && archive_filter_code(a, 0) != ARCHIVE_FILTER_GZIP)
        rc = why_fail(why, size, ERR_INVALID, "the archive must be gzip-compressed");
out:
    if (disk) {
        archive_write_close(disk);
        archive_write_free(disk);
    }
    archive_read_free(a);
    close(fd);
    return rc;
}

int archive_check(const char *path, const struct archive_limits *limits, char *why, size_t why_size)
{
    return walk(path, NULL, limits, why, why_size);
}

int archive_unpack(const char *path, const char *dir, const struct archive_limits *limits,
                   char *why, size_t why_size)
{
    return walk(path, dir, limits, why, why_size);
}
