/*
 * archive.h - source snapshots as .tar.gz files, through libarchive:
 * checking that an archive is safe to unpack, and unpacking it.
 *
 * Safe means: gzip-compressed tar; every entry a regular file, directory,
 * symbolic link or hard link; no absolute path and no ".." component, in
 * names and in link targets alike (so no chain of links can climb out); no
 * link that points outside the directory; at most ARCHIVE_MAX_ENTRIES
 * entries and ARCHIVE_MAX_BYTES unpacked. Any thread may call.
 */
#ifndef TRAINYARD_ARCHIVE_H
#define TRAINYARD_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_MAX_ENTRIES 200000
#define ARCHIVE_MAX_BYTES (INT64_C(16) << 30)

/*
 * Reads the whole archive at path and checks it as above. Returns 0, or
 * ERR_INVALID with a reason in why (why_size bytes), or ERR_INTERNAL when
 * the file cannot be read.
 */
int archive_check(const char *path, char *why, size_t why_size);

/*
 * Unpacks the archive at path into the existing directory dir, checking
 * every entry as archive_check() does before it is written. Returns 0 or
 * ERR_INVALID / ERR_INTERNAL with a reason in why.
 */
int archive_unpack(const char *path, const char *dir, char *why, size_t why_size);

#endif
