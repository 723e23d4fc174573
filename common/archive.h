/*
 * archive.h - source snapshots as .tar.gz files, through libarchive:
 * checking that an archive is safe to unpack, and unpacking it.
 *
 * Safe means: gzip-compressed tar; every entry a regular file, directory,
 * symbolic link or hard link; no absolute path and no ".." component, in
 * names and in link targets alike (so no chain of links can climb out); no
 * link that points outside the directory; at most ARCHIVE_MAX_ENTRIES
 * entries; and within the caller's struct archive_limits, which are checked
 * while the archive is read, so a bomb costs no more than the limit. Any
 * thread may call.
 */
#ifndef TRAINYARD_ARCHIVE_H
#define TRAINYARD_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_MAX_ENTRIES 200000
/* The defaults of trainyard server's --max-snapshot-unpacked-mb and
 * --max-snapshot-ratio (and the agent's --max-snapshot-unpacked-mb). */
#define ARCHIVE_DEFAULT_MAX_MB 4096
#define ARCHIVE_DEFAULT_MAX_RATIO 100
/* Below this many unpacked bytes the ratio is not checked: a small archive
 * cannot be a bomb, and a tiny one of repetitive text may exceed any ratio. */
#define ARCHIVE_RATIO_FLOOR (INT64_C(1) << 20)

struct archive_limits {
    /* Unpacked bytes, all entries together, holes of sparse files
     * included; > 0. */
    int64_t max_bytes;
    /* Unpacked bytes per byte of the archive file; 0 for no limit. */
    int64_t max_ratio;
    /* The settings' names, for the message that says which was exceeded
     * ("--max-snapshot-unpacked-mb"); borrowed. */
    const char *bytes_name;
    const char *ratio_name;
};

/*
 * Reads the whole archive at path and checks it as above. Returns 0, or
 * ERR_INVALID with a reason in why (why_size bytes), ERR_TOO_LARGE when a
 * limit is exceeded (reading stops there; why names the setting), or
 * ERR_INTERNAL when the file cannot be read.
 */
int archive_check(const char *path, const struct archive_limits *limits, char *why,
                  size_t why_size);

/*
 * Unpacks the archive at path into the existing directory dir, checking
 * every entry as archive_check() does before it is written. Returns 0 or
 * ERR_INVALID / ERR_TOO_LARGE / ERR_INTERNAL with a reason in why; on
 * failure dir may hold part of the archive (the caller removes it).
 */
int archive_unpack(const char *path, const char *dir, const struct archive_limits *limits,
                   char *why, size_t why_size);

#endif
