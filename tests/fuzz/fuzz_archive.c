/*
 * fuzz_archive.c - snapshot archive checking (common/archive.c). The first
 * byte picks the layer: odd, the rest is the upload as is (gzip and tar
 * both fuzzed); even, the rest is a tar that is gzip-compressed here, so
 * that mutations reach tar headers and entries instead of breaking the
 * deflate stream. archive_check runs with small limits (1 MiB unpacked,
 * ratio 100) so that bombs stay cheap; an archive it accepts is unpacked
 * under a directory three levels deep, which must succeed or fail with a
 * reason, and leave nothing beside that directory.
 */
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/archive.h"
#include "common/err.h"

static char base[] = "/tmp/trainyard-fuzz-archive-XXXXXX";

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_base(void)
{
    nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* gzip of data, in a buffer the caller frees. */
static unsigned char *gzip(const uint8_t *data, size_t size, size_t *ret_len)
{
    z_stream z;
    size_t cap = deflateBound(NULL, size) + 64;
    unsigned char *out = malloc(cap);

    FUZZ_ASSERT(out != NULL, "out of memory");
    memset(&z, 0, sizeof(z));
    FUZZ_ASSERT(deflateInit2(&z, 1, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) == Z_OK,
                "deflateInit2");
    z.next_in = (unsigned char *)data;
    z.avail_in = (unsigned)size;
    z.next_out = out;
    z.avail_out = (unsigned)cap;
    FUZZ_ASSERT(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
    *ret_len = z.total_out;
    deflateEnd(&z);
    return out;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    FUZZ_ASSERT(fd >= 0, "cannot create %s", path);
    FUZZ_ASSERT(write(fd, data, len) == (ssize_t)len, "cannot write %s", path);
    close(fd);
}

/* The entries of dir other than keep. */
static int others(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    FUZZ_ASSERT(d != NULL, "cannot open %s", dir);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, keep) != 0)
            n++;
    }
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct archive_limits limits = {
        .max_bytes = 1 << 20,
        .max_ratio = 100,
        .bytes_name = "max-bytes",
        .ratio_name = "max-ratio",
    };
    static const char *const levels[] = { "", "/a", "/a/b", "/a/b/c", "/a/b/c/out" };
    static bool made;
    char path[256];
    char dir[256];
    char why[512];
    size_t i;
    int rc;

    if (size == 0)
        return 0;
    if (!made) {
        FUZZ_ASSERT(mkdtemp(base) != NULL, "mkdtemp");
        atexit(remove_base); /* libFuzzer ends with exit() */
        made = true;
    }
    snprintf(path, sizeof(path), "%s/upload.tar.gz", base);
    if (data[0] & 1) {
        write_file(path, data + 1, size - 1);
    } else {
        size_t len;
        unsigned char *packed = gzip(data + 1, size - 1, &len);

        write_file(path, packed, len);
        free(packed);
    }
    why[0] = '\0';
    rc = archive_check(path, &limits, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || rc == ERR_INVALID || rc == ERR_TOO_LARGE, "rc %d", rc);
    FUZZ_ASSERT(rc == 0 || why[0] != '\0', "a refusal without a reason");
    if (rc != 0)
        return 0;
    for (i = 1; i < sizeof(levels) / sizeof(levels[0]); i++) {
        snprintf(dir, sizeof(dir), "%s%s", base, levels[i]);
        FUZZ_ASSERT(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    }
    why[0] = '\0';
    rc = archive_unpack(path, dir, &limits, why, sizeof(why));
    FUZZ_ASSERT(rc == 0 || why[0] != '\0', "a failed unpack without a reason");
    /* Nothing beside the next level down at any level: no entry climbed
     * out (the base also holds the upload). */
    for (i = 0; i + 1 < sizeof(levels) / sizeof(levels[0]); i++) {
        snprintf(dir, sizeof(dir), "%s%s", base, levels[i]);
        FUZZ_ASSERT(others(dir, strrchr(levels[i + 1], '/') + 1) == (i == 0),
                    "an entry escaped to %s (%s)", dir, why);
    }
    snprintf(dir, sizeof(dir), "%s/a", base);
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
