"""Tasks isolated from the agent and from each other (issue 11 items 1-3, 18):
real jobs through a real server and a real root agent try to read the
agent's secrets and files, other runs' files and the snapshot cache, to
plant code for later runs, and to make the agent upload files they may not
read; tokens stay off command lines and out of environments; a gang with a
task that ignores SIGTERM is gone within SPEC §4's 5 s.

The parts that need a root agent skip (saying so) when not run as root."""

import json
import pwd
import os
import shutil
import stat
import subprocess
import textwrap
import time

import pytest

from conftest import (BIN, PYTHON, Server, agent_work_dir, open_to_tasks, pid_alive, uniq,
                      wait_for)
from test_exec import (_venv_usable, artifact, describe, get_run, run_logs, snapshot_of,
                       submit, wait_completed, wait_run)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="tasks run as other users only under a root "
                                                 "agent; not root here")
UID_FIRST, UID_LAST = 2000000000, 2000065535


def py(code, python=PYTHON):
    return [python, "-c", textwrap.dedent(code)]


def proc_file(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read()


def outputs_json(srv, run_id, name="result.json"):
    return json.loads(artifact(srv, run_id, name).decode())


# --------------------------------------------------------------------------
# 1. who a task runs as
# --------------------------------------------------------------------------

@needs_root
def test_tasks_run_unprivileged_with_a_uid_per_run(server_factory, agent_factory, tmp_path):
    srv = server_factory()
    agent = agent_factory(srv, uniq("who"))
    meet = str(tmp_path)
    # Each run records who it is, then waits for the other: both run at once.
    code = py("""
        import json, os, sys, time
        meet, me = sys.argv[1], sys.argv[2]
        info = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                "groups": os.getgroups(), "home": os.environ.get("HOME"),
                "user": os.environ.get("USER"), "logname": os.environ.get("LOGNAME"),
                "cwd": os.getcwd(), "src_mode": os.stat(".").st_mode & 0o7777,
                "src_owner": os.stat(".").st_uid}
        with open(os.path.join(meet, me + ".tmp"), "w") as f:
            json.dump(info, f)
        os.rename(os.path.join(meet, me + ".tmp"), os.path.join(meet, me))
        deadline = time.time() + 30
        while len([n for n in os.listdir(meet) if n.startswith("run")]) < 2:
            assert time.time() < deadline, "the other run never came"
            time.sleep(0.05)
        out = os.environ["TRAINYARD_OUTPUT_DIR"]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(info, f)
    """)
    runs = [submit(srv, command=code + [meet, "run%d" % i]) for i in range(2)]
    infos = []
    for r in runs:
        wait_completed(srv, r["id"])
        infos.append(outputs_json(srv, r["id"]))
    for info in infos:
        assert info["uid"] == info["euid"] == info["gid"], info
        assert UID_FIRST <= info["uid"] <= UID_LAST, info
        assert info["groups"] in ([], [info["gid"]]), info
        assert info["home"] == info["cwd"], info
        assert info["user"] == info["logname"] == "ty-%d" % info["uid"], info
        assert info["src_owner"] == info["uid"] and info["src_mode"] == 0o700, info
    assert infos[0]["uid"] != infos[1]["uid"], infos
    # The agent's own directories: root's, others may only traverse.
    st = os.stat(agent.work)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o711
    st = os.stat(os.path.join(agent.work, "snapshots"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700


@needs_root
def test_untraversable_work_dir_is_refused_at_start(server_factory, agent_factory, tmp_path):
    srv = server_factory()
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(closed, 0o700)
    a = agent_factory(srv, uniq("closed"), start=False)
    a.start(srv, work=str(closed / "work"), wait=False)
    rc = a.proc.wait(timeout=30)
    assert rc == 1
    log = a.log_text()
    assert "cannot be reached by task users" in log and str(closed) in log, log


# --------------------------------------------------------------------------
# 1-2. a job trying to read the agent's secrets and other runs' files
# --------------------------------------------------------------------------

ATTACK = """
    import json, os, sys
    agent_pid, work, victim_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    results = {}

    def attempt(name, fn):
        try:
            results[name] = ("ok", repr(fn())[:20000])
        except OSError as e:
            results[name] = ("denied", type(e).__name__)

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    attempt("environ", lambda: read("/proc/%d/environ" % agent_pid))
    attempt("cmdline", lambda: read("/proc/%d/cmdline" % agent_pid))
    attempt("list_work", lambda: os.listdir(work))
    attempt("list_tasks", lambda: os.listdir(os.path.join(work, "tasks")))
    attempt("list_snapshots", lambda: os.listdir(os.path.join(work, "snapshots")))
    attempt("victim_src", lambda: os.listdir(victim_dir))
    attempt("victim_secret", lambda: read(os.path.join(victim_dir, "secret.txt")))
    attempt("victim_log", lambda: read(os.path.join(os.path.dirname(victim_dir), "log")))
    attempt("mem", lambda: read("/proc/%d/mem" % agent_pid))
    attempt("kill_agent", lambda: os.kill(agent_pid, 0))
    out = os.environ["TRAINYARD_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(results, f)
"""


@needs_root
@pytest.mark.parametrize("token_via", ["argv", "env"])
def test_job_cannot_read_agent_secrets_or_other_runs(server_factory, agent_factory, token_via):
    srv = server_factory()
    agent = agent_factory(srv, uniq("atk"), token_via=token_via)
    # What the agent shows to anyone who reads /proc: never its token.
    assert agent.token.encode() not in proc_file(agent.pid, "cmdline")
    assert agent.token.encode() not in proc_file(agent.pid, "environ")
    # A victim run holding a secret in its directory, still running.
    sid = snapshot_of(srv, {"secret.txt": "victim-secret-%s\n" % uniq("s"),
                            "wait.py": "import signal\nsignal.pause()\n"})
    victim = submit(srv, source=sid, entry_script="wait.py")
    run = wait_run(srv, victim["id"], "running")
    victim_task = run["tasks"][0]["id"]
    victim_src = os.path.join(agent.work, "tasks", victim_task, "src")
    wait_for(lambda: os.path.exists(os.path.join(victim_src, "secret.txt")), 10, "victim unpacked")
    attacker = submit(srv, command=py(ATTACK) + [str(agent.pid), agent.work, victim_src])
    wait_completed(srv, attacker["id"])
    res = outputs_json(srv, attacker["id"])
    text = json.dumps(res)
    assert agent.token not in text and srv.admin_token not in text, res
    assert "victim-secret" not in text, res
    for name in ("environ", "list_work", "list_tasks", "list_snapshots", "victim_src",
                 "victim_secret", "victim_log", "mem", "kill_agent"):
        assert res[name][0] == "denied", (name, res[name])
    assert srv.post("/api/v1/runs/%s/cancel" % victim["id"], {}).status == 200
    wait_run(srv, victim["id"])


# --------------------------------------------------------------------------
# 3. no code planted for later runs
# --------------------------------------------------------------------------

PLANT = """
    import json, os, sys, site, sysconfig
    marker_dir = sys.argv[1]
    payload = "open(%r + '/ran-' + str(__import__('os').getpid()), 'w').close()\\n" % marker_dir
    results = {}
    targets = [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    targets.append(sysconfig.get_paths()["purelib"])  # the venv's site-packages
    targets.append(os.path.join(sys.prefix, "bin"))
    for d in targets:
        for name in ("sitecustomize.py", "usercustomize.py", "typkg/__init__.py",
                     "trainyard/__init__.py", "python"):
            path = os.path.join(d, name)
            try:
                with open(path, "a") as f:
                    f.write(payload)
                results[path] = "written"
            except OSError as e:
                results[path] = type(e).__name__
    results["prefix"] = sys.prefix
    out = os.environ["TRAINYARD_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(results, f)
"""


@needs_root
@pytest.mark.skipif(not _venv_usable(), reason="%s -m venv cannot install pip here" % PYTHON)
def test_helper_dir_and_shared_venv_are_read_only_to_tasks(server_factory, agent_factory,
                                                           tmp_path):
    srv = server_factory()
    agent = agent_factory(srv, uniq("plant"))
    pkg = tmp_path / "typkg-src"
    (pkg / "typkg").mkdir(parents=True)
    (pkg / "typkg" / "__init__.py").write_text("VALUE = 7\n")
    (pkg / "setup.py").write_text("from setuptools import setup\n"
                                  "setup(name='typkg', version='0.1', packages=['typkg'])\n")
    open_to_tasks(pkg)  # pip runs as a uid of its own and builds in place
    markers = tmp_path / "markers"
    markers.mkdir()
    open_to_tasks(markers)
    env = {"PIP_NO_INDEX": "1"}
    planter = submit(srv, command=py(PLANT, "python") + [str(markers)], pip_packages=[str(pkg)],
                     environment_variables=env)
    wait_completed(srv, planter["id"], timeout=120)
    res = outputs_json(srv, planter["id"])
    written = [p for p, r in res.items() if r == "written"]
    assert written == [], res
    venv = res["prefix"]
    assert venv.startswith(os.path.join(agent.work, "venvs")), res
    # Sealed: root's, nothing in it writable by group or others.
    for root, dirs, files in os.walk(venv):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            assert st.st_uid == 0, os.path.join(root, n)
            if not stat.S_ISLNK(st.st_mode):
                assert not st.st_mode & 0o022, os.path.join(root, n)
    # A later run (another user's, say) with the same venv and helper.
    later = submit(srv, command=py("""
        import os, sys, typkg, trainyard
        print("later run", typkg.VALUE, sys.prefix)
    """, "python"), pip_packages=[str(pkg)], environment_variables=env)
    wait_completed(srv, later["id"], timeout=120)
    log = run_logs(srv, later["id"])
    assert "using the cached virtual environment" in log and "later run 7" in log, log
    assert os.listdir(markers) == [], os.listdir(markers)


# --------------------------------------------------------------------------
# 1. outputs: links a task planted are not followed by the (root) agent
# --------------------------------------------------------------------------

def test_outputs_symlinks_upload_nothing_secret(server_factory, agent_factory):
    srv = server_factory()
    agent = agent_factory(srv, uniq("links"), token_via="file")
    secrets_paths = [agent.token_file, "/etc/shadow"]
    run = submit(srv, command=py("""
        import os, sys
        out = os.environ["TRAINYARD_OUTPUT_DIR"]
        os.makedirs(os.path.join(out, "sub"), exist_ok=True)
        with open(os.path.join(out, "ok.txt"), "w") as f:
            f.write("fine\\n")
        for i, target in enumerate(sys.argv[1:]):
            os.symlink(target, os.path.join(out, "secret-%d" % i))
            os.symlink(target, os.path.join(out, "sub", "secret-%d" % i))
        os.symlink("/etc", os.path.join(out, "etc"))
        os.symlink(os.path.dirname(sys.argv[1]), os.path.join(out, "agentdir"))
        os.mkfifo(os.path.join(out, "fifo"))
    """) + secrets_paths)
    wait_completed(srv, run["id"])
    r = srv.get("/api/v1/runs/%s/artifacts" % run["id"])
    assert r.status == 200, r
    items = r.body["items"] if isinstance(r.body, dict) else r.body
    names = sorted(a["path"] for a in items)
    assert names == ["ok.txt"], names
    assert artifact(srv, run["id"], "ok.txt") == b"fine\n"
    with open(agent.token_file) as f:
        assert f.read().strip() == agent.token


# --------------------------------------------------------------------------
# 2. tokens by file, for the agent and the CLI, and the dev server's agent
# --------------------------------------------------------------------------

def test_agent_token_file_and_hidden_token(server_factory, agent_factory):
    srv = server_factory()
    by_file = agent_factory(srv, uniq("tf"), token_via="file")
    assert by_file.token.encode() not in proc_file(by_file.pid, "cmdline")
    assert by_file.token.encode() not in proc_file(by_file.pid, "environ")
    by_argv = agent_factory(srv, uniq("ta"), token_via="argv")
    cmdline = proc_file(by_argv.pid, "cmdline")
    assert by_argv.token.encode() not in cmdline and b"--token" in cmdline, cmdline
    by_env = agent_factory(srv, uniq("te"), token_via="env")
    assert by_env.token.encode() not in proc_file(by_env.pid, "environ")


def test_agent_token_file_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    two = tmp_path / "two"
    two.write_text("a b\n")
    for path, words in ((str(tmp_path / "missing"), "cannot read"), (str(empty), "no token"),
                        (str(two), "one token on one line")):
        p = subprocess.run([BIN, "agent", "--server", "http://127.0.0.1:9", "--token-file", path],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert p.returncode == 2, p
        assert words.encode() in p.stderr and path.encode() in p.stderr, p.stderr
    p = subprocess.run([BIN, "agent", "--server", "http://127.0.0.1:9", "--token", "x",
                        "--token-file", str(two)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and b"cannot be used together" in p.stderr, p.stderr


def test_cli_token_file(server_factory, tmp_path):
    srv = server_factory()
    tf = tmp_path / "tok"
    tf.write_text(srv.admin_token + "\n")
    os.chmod(tf, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    p = subprocess.run([BIN, "runs", "--server", srv.url, "--token-file", str(tf), "--json"],
                       capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([BIN, "runs", "--server", srv.url, "--json"], capture_output=True,
                       timeout=60, env=dict(env, TRAINYARD_TOKEN_FILE=str(tf)),
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "bad"
    bad.write_text("wrong-token\n")
    p = subprocess.run([BIN, "runs", "--server", srv.url, "--token-file", str(bad)],
                       capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p
    p = subprocess.run([BIN, "runs", "--server", srv.url, "--token-file", str(tmp_path / "no")],
                       capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and b"cannot read" in p.stderr, p.stderr


def _children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return kids


def test_dev_server_agent_gets_its_token_by_file(tmp_path):
    srv = Server(tmp_path / "data", extra_args=["--dev"])
    try:
        srv.start()
        host = os.uname().nodename
        wait_for(lambda: srv.get("/api/v1/nodes/" + host).status == 200 and
                 srv.get("/api/v1/nodes/" + host).body.get("state") == "ready", 60,
                 lambda: "the dev agent to be ready:\n" + srv.log_tail())
        kids = [k for k in _children(srv.proc.pid) if b"agent" in proc_file(k, "cmdline")]
        assert len(kids) == 1, kids
        cmdline = proc_file(kids[0], "cmdline")
        assert b"--token-file" in cmdline, cmdline
        assert srv.admin_token.encode() not in cmdline
        assert srv.admin_token.encode() not in proc_file(kids[0], "environ")
        st = os.stat(os.path.join(srv.data_dir, "admin.token"))
        assert stat.S_IMODE(st.st_mode) == 0o600
    finally:
        try:
            if srv.alive():
                srv.stop()
        finally:
            srv.cleanup()


# --------------------------------------------------------------------------
# 18. a task that ignores SIGTERM does not keep its gang alive
# --------------------------------------------------------------------------

GANG = """
    import os, signal, sys, time
    pids_dir = sys.argv[1]
    kind = os.environ["TRAINYARD_TASK_TYPE"]
    index = os.environ["TRAINYARD_TASK_INDEX"]
    me = "%s-%s" % (kind, index)
    if kind == "ps":
        # Ignores SIGTERM, and so does a daemon it leaves in a session of its own
        # (which only a root agent's per-run uid can find).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if kind == "ps" and sys.argv[2] == "daemon":
        child = os.fork()
        if child == 0:
            os.setsid()
            with open(os.path.join(pids_dir, me + "-daemon"), "w") as f:
                f.write(str(os.getpid()))
            while True:
                signal.pause()  # until SIGKILL (SIGTERM is ignored)
    with open(os.path.join(pids_dir, me + ".tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.rename(os.path.join(pids_dir, me + ".tmp"), os.path.join(pids_dir, me))
    if kind == "worker" and index == "1":
        deadline = time.time() + 30
        want = 4 if sys.argv[2] == "daemon" else 3
        while len(os.listdir(pids_dir)) < want and time.time() < deadline:
            time.sleep(0.05)
        at = os.path.join(pids_dir, "..", "failed-at")
        with open(at + ".tmp", "w") as f:
            f.write(repr(time.time()))
        os.rename(at + ".tmp", at)
        sys.exit(3)
    while True:
        signal.pause()  # until stopped
"""


def test_gang_with_a_sigterm_ignorer_is_gone_within_5s(server_factory, agent_factory, tmp_path):
    srv = server_factory()
    agent_factory(srv, uniq("gang"), grace=None)  # the agent's default grace
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    if ROOT:
        open_to_tasks(pids_dir)
    run = submit(srv, distributed_backend="ps", node_count=1, worker_count=2,
                 parameter_server_count=1,
                 command=py(GANG) + [str(pids_dir), "daemon" if ROOT else "-"])
    failed_at_file = tmp_path / "failed-at"
    wait_for(failed_at_file.exists, 60, lambda: "worker-1 to fail; " + describe(srv, run["id"]))
    with open(failed_at_file) as f:
        failed_at = float(f.read())
    pids = {}
    for n in os.listdir(pids_dir):
        if not n.endswith(".tmp"):
            with open(pids_dir / n) as f:
                pids[n] = int(f.read())
    assert set(pids) >= {"ps-0", "worker-0", "worker-1"} | ({"ps-0-daemon"} if ROOT else set())
    wait_for(lambda: not any(pid_alive(p) for p in pids.values()), 15,
             lambda: "the gang's processes to go: %r" % {n: p for n, p in pids.items()
                                                         if pid_alive(p)}, interval=0.02)
    gone_after = time.time() - failed_at
    done = wait_run(srv, run["id"], timeout=30)
    assert done["status"] == "failed", describe(srv, run["id"])
    # SPEC §4: the whole gang within 5 s of the decision (which came after
    # the failure, so this bound is the stricter one).
    assert gone_after < 5.0, gone_after


STOPPABLE = """
    import os, signal, sys
    out = sys.argv[1]
    me = os.environ["TRAINYARD_TASK_TYPE"] + "-" + os.environ["TRAINYARD_TASK_INDEX"]
    def on_term(signum, frame):
        with open(os.path.join(out, me + ".term"), "w") as f:
            f.write("saved a checkpoint")
        sys.exit(0)
    if me == "worker-0":
        signal.signal(signal.SIGTERM, on_term)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    with open(os.path.join(out, me + ".pid.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.rename(os.path.join(out, me + ".pid.tmp"), os.path.join(out, me + ".pid"))
    while True:
        signal.pause()  # until the agent's SIGTERM (worker-0) or SIGKILL
"""


def test_agent_stop_gives_tasks_the_grace(server_factory, agent_factory, tmp_path):
    """SIGTERM to the agent: its tasks get SIGTERM and the grace period (to
    save a checkpoint), as on cancel; one that ignores SIGTERM is killed
    after it, and the agent exits."""
    srv = server_factory()
    agent = agent_factory(srv, uniq("graceful"), grace=2)
    out = tmp_path / "out"
    out.mkdir()
    if ROOT:
        open_to_tasks(out)
    run = submit(srv, distributed_backend="ps", node_count=1, worker_count=2,
                 parameter_server_count=0, command=py(STOPPABLE) + [str(out)])
    wait_for(lambda: (out / "worker-0.pid").exists() and (out / "worker-1.pid").exists(), 60,
             lambda: "both workers to start; " + describe(srv, run["id"]))
    ignorer = int((out / "worker-1.pid").read_text())
    agent.stop()  # asserts a clean exit within the harness's bound
    assert (out / "worker-0.term").read_text() == "saved a checkpoint"
    assert not (out / "worker-1.term").exists()
    wait_for(lambda: not pid_alive(ignorer), 5, "the SIGTERM ignorer to be killed")


@needs_root
def test_task_user_runs_every_task_as_that_user(server_factory, agent_factory):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user here")
    srv = server_factory()
    agent_factory(srv, uniq("tu"), ["--task-user", "nobody"])
    run = submit(srv, command=py("""
        import json, os
        out = os.environ["TRAINYARD_OUTPUT_DIR"]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}, f)
    """))
    wait_completed(srv, run["id"])
    res = outputs_json(srv, run["id"])
    assert res["uid"] == nobody.pw_uid and res["gid"] == nobody.pw_gid, res
    assert res["groups"] in ([], [nobody.pw_gid]), res
    # root is refused as a task user, and so is a user that does not exist.
    for bad in ("root", "no-such-user-here"):
        p = subprocess.run([BIN, "agent", "--server", srv.url, "--token", "x", "--task-user", bad],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert p.returncode == 2 and b"--task-user" in p.stderr and bad.encode() in p.stderr, p


@needs_root
def test_venvs_left_writable_by_an_older_agent_are_sealed_at_start(server_factory,
                                                                    agent_factory):
    srv = server_factory()
    a = agent_factory(srv, uniq("old"), start=False)
    a.work = agent_work_dir(a.name)
    planted = os.path.join(a.work, "venvs", "0123456789abcdef", "lib", "sitecustomize.py")
    os.makedirs(os.path.dirname(planted))
    with open(planted, "w") as f:
        f.write("print('planted')\n")
    for path in (planted, os.path.dirname(planted)):
        os.chown(path, UID_FIRST + 123, UID_FIRST + 123)
        os.chmod(path, 0o777 if os.path.isdir(path) else 0o666)
    a.start(srv)
    for path in (planted, os.path.dirname(planted)):
        st = os.lstat(path)
        assert st.st_uid == 0 and st.st_gid == 0 and not st.st_mode & 0o022, (path, oct(st.st_mode))
