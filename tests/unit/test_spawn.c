/* test_spawn.c - common/spawn.c: real processes on a real libuv loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/spawn.h"
#include "unit.h"

struct run {
    int open; /* handles not yet closed: the close callbacks find run in data */
    int64_t status;
    int signal;
    int exited;
    struct buf out_text;
    struct buf err_text;
    uv_pipe_t out;
    uv_pipe_t err;
    struct proc proc;
};

static void closed(uv_handle_t *h)
{
    struct run *r = h->data;

    r->open--;
}

static void on_exit_cb(struct proc *p, int64_t status, int sig)
{
    struct run *r = p->data;

    r->status = status;
    r->signal = sig;
    r->exited++;
    proc_close(p, closed);
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    static char mem[4096];

    (void)h;
    (void)n;
    *b = uv_buf_init(mem, sizeof(mem));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct run *r = s->data;

    if (n > 0)
        buf_add(s == (uv_stream_t *)&r->out ? &r->out_text : &r->err_text, b->base, (size_t)n);
    if (n < 0)
        uv_close((uv_handle_t *)s, closed);
}

/* Runs args to the end as cred (NULL: as this process); returns
 * proc_spawn_as's result. */
static int run_as(struct run *r, char **args, char **env, const char *cwd,
                  const struct proc_cred *cred)
{
    uv_loop_t loop;
    int rc;

    memset(r, 0, sizeof(*r));
    buf_init(&r->out_text);
    buf_init(&r->err_text);
    uv_loop_init(&loop);
    uv_pipe_init(&loop, &r->out, 0);
    uv_pipe_init(&loop, &r->err, 0);
    r->out.data = r->err.data = r->proc.data = r;
    rc =
        proc_spawn_as(&loop, &r->proc, args[0], args, env, cwd, &r->out, &r->err, on_exit_cb, cred);
    if (rc == 0) {
        r->open = 3;
        uv_read_start((uv_stream_t *)&r->out, alloc_cb, read_cb);
        uv_read_start((uv_stream_t *)&r->err, alloc_cb, read_cb);
    } else {
        r->open = 2;
        uv_close((uv_handle_t *)&r->out, closed);
        uv_close((uv_handle_t *)&r->err, closed);
    }
    while (r->open > 0)
        uv_run(&loop, UV_RUN_ONCE);
    uv_loop_close(&loop);
    return rc;
}

static int run(struct run *r, char **args, char **env, const char *cwd)
{
    return run_as(r, args, env, cwd, NULL);
}

/* As root: the child is the given uid and gid with no other groups, in a
 * session of its own, its output captured; a cwd it may not enter was
 * entered before the switch; a program it may not run fails the spawn.
 * proc_kill_uid finds what it left behind. */
static void spawn_as_switches_user(void)
{
    struct proc_cred cred = { 2000065001, 2000065001 };
    /* The daemon exists (fork returned) before sh exits. */
    char *args[] = { "sh", "-c",
                     "setsid sleep 60 </dev/null >/dev/null 2>&1 & "
                     "echo $(id -u) $(id -g) $(id -G) $(ps -o sid= -p $$); exit 4",
                     NULL };
    char *env[] = { "PATH=/usr/bin:/bin", NULL };
    char dir[] = "/tmp/trainyard-unit-spawn-as-XXXXXX";
    char path[64];
    char *prog[] = { path, NULL };
    char expect[128];
    struct run r;
    int fd;

    if (geteuid() != 0)
        return; /* switching users needs root */
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    ASSERT_EQ(run_as(&r, args, env, dir, &cred), 0);
    ASSERT_EQ(r.status, 4);
    snprintf(expect, sizeof(expect), "2000065001 2000065001 2000065001 %d\n", (int)r.proc.pid);
    ASSERT_STR_EQ(r.out_text.data, expect);
    buf_release(&r.out_text);
    buf_release(&r.err_text);
    ASSERT_EQ(proc_kill_uid(cred.uid), 0);
    ASSERT_EQ(proc_kill_uid(cred.uid), 0); /* none left */
    /* A root-only program: exec fails as the user, and the spawn says so. */
    snprintf(path, sizeof(path), "%s/prog", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0700);
    ASSERT_TRUE(fd >= 0);
    ASSERT_TRUE(write(fd, "#!/bin/sh\necho ran\n", 19) == 19);
    close(fd);
    ASSERT_EQ(run_as(&r, prog, env, NULL, &cred), -EACCES);
    buf_release(&r.out_text);
    buf_release(&r.err_text);
    unlink(path);
    rmdir(dir);
    ASSERT_EQ(proc_kill_uid(0), -EINVAL);
}

static void spawn_captures_output_and_exit_code(void)
{
    char *args[] = { "sh", "-c", "echo out; echo err >&2; pwd; echo $ONLY; exit 3", NULL };
    char *env[] = { "PATH=/usr/bin:/bin", "ONLY=here", NULL };
    struct run r;

    ASSERT_EQ(run(&r, args, env, "/tmp"), 0);
    ASSERT_EQ(r.exited, 1);
    ASSERT_EQ(r.status, 3);
    ASSERT_EQ(r.signal, 0);
    ASSERT_STR_EQ(r.out_text.data, "out\n/tmp\nhere\n");
    ASSERT_STR_EQ(r.err_text.data, "err\n");
    buf_release(&r.out_text);
    buf_release(&r.err_text);
}

static void spawn_reports_signal_and_new_session(void)
{
    /* Its own session: its pid is its process group and session id. */
    char *args[] = { "sh", "-c", "test $(ps -o sid= -p $$) -eq $$ && kill -TERM $$", NULL };
    char *env[] = { "PATH=/usr/bin:/bin", NULL };
    struct run r;

    ASSERT_EQ(run(&r, args, env, NULL), 0);
    ASSERT_EQ(r.signal, SIGTERM);
    buf_release(&r.out_text);
    buf_release(&r.err_text);
}

static void spawn_missing_program_fails_cleanly(void)
{
    char *args[] = { "no-such-program-here", NULL };
    char *env[] = { "PATH=/usr/bin:/bin", NULL };
    char *abs[] = { "/nonexistent/x", NULL };
    struct run r;

    ASSERT_EQ(run(&r, args, env, NULL), -ENOENT);
    ASSERT_EQ(r.exited, 0);
    buf_release(&r.out_text);
    buf_release(&r.err_text);
    ASSERT_EQ(run(&r, abs, env, NULL), -ENOENT);
    buf_release(&r.out_text);
    buf_release(&r.err_text);
}

static void spawn_runs_a_script_without_shebang_with_sh(void)
{
    char path[] = "/tmp/trainyard-unit-spawn-XXXXXX";
    char *args[] = { path, "one", "two", NULL };
    char *env[] = { "PATH=/usr/bin:/bin", NULL };
    struct run r;
    int fd = mkstemp(path);

    ASSERT_TRUE(fd >= 0);
    ASSERT_TRUE(write(fd, "echo \"$1-$2\"\n", 13) == 13);
    close(fd);
    chmod(path, 0700);
    ASSERT_EQ(run(&r, args, env, NULL), 0);
    unlink(path);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_EQ(r.out_text.data, "one-two\n");
    buf_release(&r.out_text);
    buf_release(&r.err_text);
}

UNIT_LIST(spawn_tests) = {
    { "spawn/runs_a_script_without_shebang_with_sh", spawn_runs_a_script_without_shebang_with_sh },
    { "spawn/captures_output_and_exit_code", spawn_captures_output_and_exit_code },
    { "spawn/reports_signal_and_new_session", spawn_reports_signal_and_new_session },
    { "spawn/missing_program_fails_cleanly", spawn_missing_program_fails_cleanly },
    { "spawn/as_switches_user", spawn_as_switches_user },
    { NULL, NULL },
};
