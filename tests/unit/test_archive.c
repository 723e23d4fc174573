/* test_archive.c - snapshot archives: safe ones pass, escapes are refused. */
#include "tests/unit/unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/err.h"

static char dir[] = "/tmp/trainyard-archive-XXXXXX";

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

    ASSERT_EQ(archive_check(a, why, sizeof(why)), 0);
    snprintf(out, sizeof(out), "%s/out", dir);
    mkdir(out, 0700);
    if (archive_unpack(a, out, why, sizeof(why)) != 0)
        UNIT_FAIL("unpack failed: %s", why);
    snprintf(check, sizeof(check), "grep -q hi '%s/sub/f.txt' && test -L '%s/link'", out, out);
    ASSERT_EQ(system(check), 0);
}

static void refuses_escapes(void)
{
    char why[256];

    ASSERT_EQ(archive_check(python_archive("dotdot", "i = tarfile.TarInfo(\"a/../../x\"); "
                                                     "t.addfile(i, io.BytesIO(b\"\"))"),
                            why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(python_archive("abs", "i = tarfile.TarInfo(\"/tmp/x\"); "
                                                  "t.addfile(i, io.BytesIO(b\"\"))"),
                            why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(python_archive("hard", "i = tarfile.TarInfo(\"h\"); "
                                                   "i.type = tarfile.LNKTYPE; "
                                                   "i.linkname = \"/etc/passwd\"; "
                                                   "t.addfile(i)"),
                            why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(archive_check(make_archive("symlink", "ln -s /etc/passwd p", "p"), why, sizeof(why)),
              ERR_INVALID);
    ASSERT_EQ(
        archive_check(make_archive("uplink", "mkdir d; ln -s ../../x d/l", "d"), why, sizeof(why)),
        ERR_INVALID);
    ASSERT_EQ(archive_check(make_archive("fifo", "mkfifo f", "f"), why, sizeof(why)), ERR_INVALID);
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
    ASSERT_EQ(archive_check(path, why, sizeof(why)), ERR_INVALID);
    snprintf(cmd, sizeof(cmd), "echo 'not an archive' | gzip > '%s'", path);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(archive_check(path, why, sizeof(why)), ERR_INVALID);
}

UNIT_LIST(archive_tests) = {
    { "archive/accepts_and_unpacks_a_plain_tree", accepts_and_unpacks_a_plain_tree },
    { "archive/refuses_escapes", refuses_escapes },
    { "archive/refuses_non_gzip", refuses_non_gzip },
    { NULL, NULL },
};
