/* test_archive.c - snapshot archives: safe ones pass, escapes are refused. */
#include "tests/unit/unit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/err.h"

static char dir[] = "/tmp/trainyard-archive-XXXXXX";
static const struct archive_limits limits = {
    .max_bytes = (int64_t)ARCHIVE_DEFAULT_MAX_MB << 20,
    .max_ratio = ARCHIVE_DEFAULT_MAX_RATIO,
    .bytes_name = "max-bytes",
    .ratio_name = "max-ratio",
};

/* Each test runs in its own process, so each makes its own directory. */
static void make_dir(void)
{
    static int made; /* not the template's last letter: mkdtemp may put an X there */

    if (!made && mkdtemp(dir) == NULL)
        UNIT_FAIL("mkdtemp failed");
    made = 1;
}

/* Builds a hostile archive with Python's tarfile (GNU tar cleans names). */
static const char *python_archive(const char *name, const char *member_code)
{
    static char path[512];
    char cmd[2048];

    make_dir();
    snprintf(path, sizeof(path), "%s/%s.tar.gz", dir, name);
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 -c 'import tarfile, io\n"
             "t = tarfile.open(\"%s\", \"w:gz\")\n"
             "%s\n"
             "t.close()'",
             path, member_code);
    if (system(cmd) != 0)
        UNIT_FAIL("cannot build archive: %s", cmd);
    return path;
}

/* Builds an archive with the shell's tar from a script run in a fresh dir. */
static const char *make_archive(const char *name, const char *setup, const char *tar_args)
{
    static char path[512];
    char cmd[2048];

    make_dir();
    snprintf(path, sizeof(path), "%s/%s.tar.gz", dir, name);
    snprintf(cmd, sizeof(cmd),
             "set -e; rm -rf '%s/src'; mkdir -p '%s/src'; cd '%s/src'; %s; tar czf '%s' %s", dir,
             dir, dir, setup, path, tar_args);
    if (system(cmd) != 0)
        UNIT_FAIL("cannot build archive: %s", cmd);
    return path;
}

static void accepts_and_unpacks_a_plain_tree(void)
{
    char why[256];
    char out[600];
    char check[1400];
    const char *a =
        make_archive("ok", "mkdir sub; echo hi > sub/f.txt; ln -s sub/f.txt link", "sub link");

    ASSERT_EQ(archive_check(a, &limits, why, sizeof(why)), 0);
    snprintf(out, sizeof(out), "%s/out", dir);
    mkdir(out, 0700);
    if (archive_unpack(a, out, &limits, why, sizeof(why)) != 0)
        UNIT_FAIL("unpack failed: %s", why);
    snprintf(check, sizeof(check), "grep -q hi '%s/sub/f.txt' && test -L '%s/link'", out, out);
    ASSERT_EQ(system(check), 0);
}

static void refuses_escapes(void)
{
    char why[256];

    ASSERT_EQ(archive_check(python_archive("dotdot", "i = tarfile.TarInfo(\"a/../../x\"); "
                                                     "t.addfile(i, io.BytesIO(b\"\"))"),
                            &limits, why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(python_archive("abs", "i = tarfile.TarInfo(\"/tmp/x\"); "
                                                  "t.addfile(i, io.BytesIO(b\"\"))"),
                            &limits, why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(python_archive("hard", "i = tarfile.TarInfo(\"h\"); "
                                                   "i.type = tarfile.LNKTYPE; "
                                                   "i.linkname = \"/etc/passwd\"; "
                                                   "t.addfile(i)"),
                            &limits, why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(make_archive("symlink", "ln -s /etc/passwd p", "p"), &limits, why,
                            sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(make_archive("uplink", "mkdir d; ln -s ../../x d/l", "d"), &limits, why,
                            sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(make_archive("fifo", "mkfifo f", "f"), &limits, why, sizeof(why)),
              ERR_INVALID);
}

static void refuses_non_gzip(void)
{
    char why[256];
    char path[600];
    char cmd[1300];

    make_archive("x", "echo x > x", "x");
    snprintf(path, sizeof(path), "%s/plain.tar", dir);
    snprintf(cmd, sizeof(cmd), "cd '%s/src' && tar cf '%s' x", dir, path);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(archive_check(path, &limits, why, sizeof(why)), ERR_INVALID);
    snprintf(cmd, sizeof(cmd), "echo 'not an archive' | gzip > '%s'", path);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(archive_check(path, &limits, why, sizeof(why)), ERR_INVALID);
}

/* A bomb: one file of zeros, far above both the ratio and the size limit. */
static void refuses_bombs_by_ratio_and_size(void)
{
    struct archive_limits l = limits;
    char why[256];
    char out[600];
    char cmd[1400];
    const char *bomb = python_archive("bomb", "i = tarfile.TarInfo(\"zeros\"); i.size = 64 << 20; "
                                              "t.addfile(i, io.BytesIO(bytes(i.size)))");

    ASSERT_EQ(archive_check(bomb, &l, why, sizeof(why)), ERR_TOO_LARGE);
    ASSERT_TRUE(strstr(why, "max-ratio") != NULL);
    l.max_ratio = 0;
    l.max_bytes = 32 << 20;
    ASSERT_EQ(archive_check(bomb, &l, why, sizeof(why)), ERR_TOO_LARGE);
    ASSERT_TRUE(strstr(why, "max-bytes") != NULL);
    snprintf(out, sizeof(out), "%s/bomb-out", dir);
    mkdir(out, 0700);
    ASSERT_EQ(archive_unpack(bomb, out, &l, why, sizeof(why)), ERR_TOO_LARGE);
    snprintf(cmd, sizeof(cmd), "test $(du -sm '%s' | cut -f1) -le 32 && rm -rf '%s'", out, out);
    ASSERT_EQ(system(cmd), 0);
    l.max_bytes = 64 << 20;
    ASSERT_EQ(archive_check(bomb, &l, why, sizeof(why)), 0);
}

/* A sparse file's holes count: its size is what unpacking would make. */
static void counts_sparse_holes(void)
{
    struct archive_limits l = limits;
    char why[256];
    const char *sparse = make_archive("sparse", "truncate -s 64M hole; echo x >> hole", "-S hole");

    l.max_ratio = 0;
    l.max_bytes = 32 << 20;
    ASSERT_EQ(archive_check(sparse, &l, why, sizeof(why)), ERR_TOO_LARGE);
}

/* Under ARCHIVE_RATIO_FLOOR the ratio is not checked: a small file of
 * repetitive text compresses far more than 100 times. */
static void small_repetitive_archive_passes(void)
{
    char why[256];
    const char *small = python_archive("small", "i = tarfile.TarInfo(\"table\"); i.size = 900000; "
                                                "t.addfile(i, io.BytesIO(b\"a\" * i.size))");

    if (archive_check(small, &limits, why, sizeof(why)) != 0)
        UNIT_FAIL("refused: %s", why);
}

UNIT_LIST(archive_tests) = {
    { "archive/refuses_bombs_by_ratio_and_size", refuses_bombs_by_ratio_and_size },
    { "archive/counts_sparse_holes", counts_sparse_holes },
    { "archive/small_repetitive_archive_passes", small_repetitive_archive_passes },
    { "archive/accepts_and_unpacks_a_plain_tree", accepts_and_unpacks_a_plain_tree },
    { "archive/refuses_escapes", refuses_escapes },
    { "archive/refuses_non_gzip", refuses_non_gzip },
    { NULL, NULL },
};
