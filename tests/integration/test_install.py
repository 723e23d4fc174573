"""`make install` and the systemd units (issue 13 item 4).

`make install DESTDIR=... PREFIX=/usr` puts the binary, the units, the
options files and the bash completion in place with their modes; the units
pass `systemd-analyze verify`; and, since no systemd runs here to start
them, the server and an agent are run exactly as the installed units'
ExecStart= and environment say, inside the units' sandbox (unitrun.py: a
DynamicUser-range uid, capabilities, mount namespace, seccomp), with the
state directories under a temporary directory: a job submitted with the
installed CLI completes, and stopping the agent the way KillMode=mixed does
(SIGTERM to the agent alone) stops its tasks. `make uninstall`
removes what install added and keeps edited options files.

Installs bin/trainyard (the release build `make` makes), not $TRAINYARD_BIN."""

import glob
import os
import shlex
import shutil
import signal
import stat
import subprocess

import pytest

from conftest import REPO, Server, http_request, open_to_tasks, pid_alive, uniq, wait_for
import unitrun

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the units' sandbox (mount namespace, another "
                                                 "uid) and a root agent need root; not root here")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed "
                                   "(.ci/install-deps installs Debian's systemd package)")
UNITS = ("trainyard-server", "trainyard-agent")
AGENT_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_KILL",
              "CAP_SETUID", "CAP_SETGID"}


def make(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-s", "-C", REPO] + list(args), env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, "make %s:\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout


def install(destdir, *extra):
    return make("install", "DESTDIR=%s" % destdir, "PREFIX=/usr", *extra)


def tree(root):
    """{path under root: (mode, kind)} of everything install made."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            out["/" + os.path.relpath(p, root)] = (stat.S_IMODE(st.st_mode),
                                                   "d" if stat.S_ISDIR(st.st_mode) else "f")
    return out


def test_install_puts_the_files_in_place_with_their_modes(tmp_path):
    dest = str(tmp_path / "dest")
    install(dest)
    files = {p: m for p, m in tree(dest).items() if m[1] == "f"}
    assert files == {
        "/usr/bin/trainyard": (0o755, "f"),
        "/usr/lib/systemd/system/trainyard-server.service": (0o644, "f"),
        "/usr/lib/systemd/system/trainyard-agent.service": (0o644, "f"),
        "/usr/share/bash-completion/completions/trainyard": (0o644, "f"),
        "/etc/default/trainyard-server": (0o644, "f"),
        "/etc/default/trainyard-agent": (0o644, "f"),
    }
    assert tree(dest)["/etc/trainyard"] == (0o700, "d")  # for agent.token
    for u in UNITS:
        with open(os.path.join(dest, "usr/lib/systemd/system/%s.service" % u)) as f:
            text = f.read()
        assert "@" + "BINDIR@" not in text and "@" + "SYSCONFDIR@" not in text
        unit = unitrun.parse_unit(os.path.join(dest, "usr/lib/systemd/system/%s.service" % u))
        assert unitrun.exec_argv(unit, {}, {"S": "/var/lib", "d": "/creds"})[0] == \
            "/usr/bin/trainyard"
        assert unitrun.values(unit, "EnvironmentFile") == ["-/etc/default/%s" % u]

    # The installed binary runs; the completion is the one it prints.
    exe = os.path.join(dest, "usr/bin/trainyard")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("trainyard "), version.stdout
    for cmd in (["--help"], ["server", "--help"], ["agent", "--help"]):
        r = subprocess.run([exe] + cmd, capture_output=True, text=True)
        assert r.returncode == 0 and "usage: trainyard" in r.stdout + r.stderr, (cmd, r)
    with open(os.path.join(dest, "usr/share/bash-completion/completions/trainyard")) as f:
        completion = f.read()
    assert completion == subprocess.run([exe, "completion", "bash"], capture_output=True,
                                        text=True, check=True).stdout
    r = subprocess.run(["bash", "-c", "source %s && complete -p trainyard" % shlex.quote(
        os.path.join(dest, "usr/share/bash-completion/completions/trainyard"))],
        capture_output=True, text=True)
    assert r.returncode == 0 and "trainyard" in r.stdout, r


def test_uninstall_removes_what_install_added_and_keeps_edited_options(tmp_path):
    dest = str(tmp_path / "dest")
    os.makedirs(os.path.join(dest, "usr/bin"))
    mine = os.path.join(dest, "usr/bin/mine")  # something install did not put there
    open(mine, "w").close()
    before = tree(dest)
    install(dest)
    server_opts = os.path.join(dest, "etc/default/trainyard-server")
    agent_opts = os.path.join(dest, "etc/default/trainyard-agent")
    with open(server_opts, "a") as f:
        f.write('TRAINYARD_SERVER_OPTS="--listen 0.0.0.0:8080"\n')
    with open(server_opts) as f:
        edited = f.read()

    # A second install keeps the edited file (and says so).
    out = install(dest)
    assert "KEEP" in out and server_opts in out, out
    with open(server_opts) as f:
        assert f.read() == edited

    out = make("uninstall", "DESTDIR=%s" % dest, "PREFIX=/usr")
    left = tree(dest)
    assert os.path.exists(server_opts) and not os.path.exists(agent_opts), left
    with open(server_opts) as f:
        assert f.read() == edited
    assert "KEEP" in out and server_opts in out, out
    # Everything else install added is gone; what was there before stays.
    os.unlink(server_opts)
    extra = {p for p in tree(dest) if p not in before and tree(dest)[p][1] == "f"}
    assert extra == set(), extra
    assert os.path.exists(mine)


@needs_analyze
def test_units_pass_systemd_analyze(tmp_path):
    """Installed without DESTDIR under a temporary PREFIX, so that the
    ExecStart= binary exists where the unit says: verify prints nothing
    (an unknown directive, a bad value or a missing binary would be printed,
    even where its exit status stays 0)."""
    prefix = str(tmp_path / "prefix")
    make("install", "PREFIX=%s" % prefix, "SYSCONFDIR=%s/etc" % prefix)
    units = [os.path.join(prefix, "lib/systemd/system/%s.service" % u) for u in UNITS]
    r = subprocess.run([ANALYZE, "verify", "--man=no"] + units, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r

    # A misspelt directive is reported: the check above can fail.
    bad = str(tmp_path / "bad.service")
    with open(units[0]) as f, open(bad, "w") as out:
        out.write(f.read().replace("ProtectHome=", "ProtectHomes="))
    r = subprocess.run([ANALYZE, "verify", "--man=no", bad], capture_output=True, text=True)
    assert "Unknown key 'ProtectHomes'" in r.stderr, r

    # The server's sandbox rates OK (below 2.0) by systemd's own measure.
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", units[0]],
                       capture_output=True, text=True)
    level = [ln for ln in r.stdout.splitlines() if "Overall exposure level" in ln]
    assert level and float(level[0].split(":")[1].split()[0]) < 2.0, r.stdout[-2000:]


class UnitProcess(Server):
    """A process started from an installed unit (unitrun); stop() is
    SIGTERM to it alone and a clean exit, as for the other tests'."""

    def __init__(self, name, unit, argv, env, sandbox, log_dir):
        Server.__init__(self, log_dir)
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, "%s.log" % name)
        self.log_paths = [self.log_path]
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(argv, env=env, preexec_fn=sandbox.preexec,
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         cwd="/")

    def label(self):
        return self.name


def start_unit(name, dest, state_root, log_dir, creds_dir=None):
    path = os.path.join(dest, "usr/lib/systemd/system/%s.service" % name)
    unit = unitrun.parse_unit(path)
    specifiers = {"S": state_root, "d": creds_dir or "/nonexistent"}
    env = unitrun.environment(unit, specifiers, root=dest)
    argv = unitrun.exec_argv(unit, env, specifiers)
    # The unit names the binary where it is installed; here that is under DESTDIR.
    assert argv[0] == "/usr/bin/trainyard", argv
    argv[0] = os.path.join(dest, "usr/bin/trainyard")
    state_dir = os.path.join(state_root, unitrun.value(unit, "StateDirectory"))
    sandbox = unitrun.Sandbox(unit, state_dir, os.path.dirname(state_root))
    os.makedirs(state_dir)
    os.chmod(state_dir, int(unitrun.value(unit, "StateDirectoryMode", "0755"), 8))
    os.chown(state_dir, sandbox.uid, sandbox.uid)
    env.update(unitrun.service_env(unit, state_dir, creds_dir))
    return UnitProcess(name, unit, argv, env, sandbox, log_dir), state_dir


def set_options(dest, name, opts):
    """Edits the installed options file as an admin would."""
    path = os.path.join(dest, "etc/default", name)
    with open(path, "a") as f:
        f.write("%s=\"%s\"\n" % ("TRAINYARD_SERVER_OPTS" if name.endswith("server")
                                 else "TRAINYARD_AGENT_OPTS", opts))


@needs_root
def test_server_and_agent_run_as_their_units_say(tmp_path):
    base = str(tmp_path / "sys")  # stands for /: DESTDIR, /var/lib, the credentials
    os.makedirs(base)
    os.chmod(base, 0o711)
    dest = os.path.join(base, "dest")
    install(dest)
    state_root = os.path.join(base, "var-lib")
    os.makedirs(state_root)
    os.chmod(state_root, 0o755)
    log_dir = str(tmp_path)

    # The server, as an unprivileged uid of systemd's dynamic range.
    set_options(dest, "trainyard-server", "--listen 127.0.0.1:0")
    server, data = start_unit("trainyard-server", dest, state_root, log_dir)
    try:
        assert "--data" in server.argv and server.argv[server.argv.index("--data") + 1] == data
        url_file = os.path.join(data, "server.url")
        wait_for(lambda: os.path.exists(url_file) or not server.alive(), 20,
                 lambda: "server.url:\n" + server.log_tail())
        assert server.alive(), server.log_tail()
        wait_for(lambda: open(url_file).read().endswith("\n"), 5, "server.url")
        server.url = open(url_file).read().strip()
        with open(os.path.join(data, "admin.token")) as f:
            server.admin_token = f.read().strip()
        st = os.stat(os.path.join(data, "admin.token"))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (unitrun.DYNAMIC_UID, 0o600)
        status = unitrun.proc_status(server.proc.pid)
        assert status["Uid"].split()[0] == str(unitrun.DYNAMIC_UID), status
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
        assert http_request(server.url, "GET", "/healthz").status == 200

        # The agent, as root, its token a credential (a copy of agent.token).
        node = uniq("unit")
        token = server.create_token("agent", node=node)["secret"]
        token_file = os.path.join(dest, "etc/trainyard/agent.token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        creds = os.path.join(base, "credentials")
        os.makedirs(creds, 0o700)
        shutil.copy(token_file, os.path.join(creds, "token"))
        os.chmod(os.path.join(creds, "token"), 0o400)
        set_options(dest, "trainyard-agent", "--server %s --name %s --listen 127.0.0.1:0 "
                    "--grace 2" % (server.url, node))
        agent, work = start_unit("trainyard-agent", dest, state_root, log_dir, creds)
        try:
            assert agent.argv[agent.argv.index("--work") + 1] == work
            assert agent.argv[agent.argv.index("--token-file") + 1] == creds + "/token"
            wait_for(lambda: (server.get("/api/v1/nodes/" + node).body or {}).get("state")
                     == "ready" or not agent.alive(), 30,
                     lambda: "node %s ready:\n%s" % (node, agent.log_tail()))
            assert agent.alive(), agent.log_tail()
            status = unitrun.proc_status(agent.proc.pid)
            assert int(status["CapEff"], 16) == unitrun.cap_mask(AGENT_CAPS), status
            assert status["NoNewPrivs"] == "1", status
            assert stat.S_IMODE(os.stat(work).st_mode) == 0o711

            # A job through the installed CLI completes, its output uploaded.
            project = tmp_path / "project"
            project.mkdir()
            (project / "train.py").write_text(
                "import os, pathlib\n"
                "print('##metric {\"loss\": 0.5, \"step\": 1}')\n"
                "print('uid', os.getuid(), flush=True)\n"
                "pathlib.Path(os.environ['TRAINYARD_OUTPUT_DIR'], 'done.txt').write_text('ok')\n")
            admin_file = os.path.join(data, "admin.token")
            cli = [os.path.join(dest, "usr/bin/trainyard")]
            common = ["--server", server.url, "--token-file", admin_file]
            r = subprocess.run(cli + ["submit", str(project), "--entry", "train.py",
                                      "--follow"] + common,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, "%s\n%s\nagent:\n%s" % (r.stdout, r.stderr,
                                                              agent.log_tail())
            run_id = [w for w in r.stdout.split() + r.stderr.split() if w.startswith("run-")][0]
            run = server.get("/api/v1/runs/" + run_id).body
            assert run["status"] == "completed", run
            logs = server.get("/api/v1/runs/%s/logs" % run_id).body
            logs = logs.decode() if isinstance(logs, bytes) else str(logs)
            uid = int(logs.split("uid ")[1].split()[0])
            assert 2000000000 <= uid <= 2000065535, logs  # a task user of its own
            got = server.get("/api/v1/runs/%s/artifacts/done.txt" % run_id)
            assert got.status == 200 and got.body == b"ok", got

            # Stopping the unit (KillMode=mixed: SIGTERM to the agent alone):
            # the agent kills its tasks' process groups and exits 0 within
            # TimeoutStopSec; nothing of the task outlives it.
            (tmp_path / "marks").mkdir()
            marks = open_to_tasks(tmp_path / "marks")
            r = server.post("/api/v1/runs", {
                "experiment": "unit-stop",
                "command": ["/bin/sh", "-c", "echo $$ >%s/pid; exec sleep 600" % marks]})
            assert r.status == 201, r
            pid_file = os.path.join(marks, "pid")
            wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), 60,
                     lambda: "the task to start:\n" + agent.log_tail())
            task_pid = int(open(pid_file).read())
            assert pid_alive(task_pid)
            timeout_stop = int(unitrun.value(unitrun.parse_unit(os.path.join(
                dest, "usr/lib/systemd/system/trainyard-agent.service")), "TimeoutStopSec"))
            agent.stop(timeout=timeout_stop)
            assert not pid_alive(task_pid)
        finally:
            agent.cleanup()
        server.stop()
        assert not glob.glob(os.path.join(data, "*.tmp"))
    finally:
        server.cleanup()


PROBE = r"""
import ctypes, errno, mmap, os, socket, sys
state, elsewhere = sys.argv[1], sys.argv[2]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
attempt("state", lambda: open(os.path.join(state, "probe"), "w").close())
attempt("tmp", lambda: open(sys.argv[3], "w").close())
attempt("elsewhere", lambda: open(os.path.join(elsewhere, "probe"), "w").close())
attempt("etc", lambda: open("/etc/trainyard-probe", "w").close())
attempt("root", lambda: os.listdir("/root"))
attempt("wx", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC))
attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close())
print(" ".join("%s=%s" % kv for kv in sorted(out.items())), flush=True)
if len(sys.argv) > 4:  # swapoff(2) is not a @system-service call: the filter kills
    ctypes.CDLL(None, use_errno=True).swapoff(b"/nonexistent")
    print("survived swapoff", flush=True)
"""


@needs_root
@needs_analyze
def test_the_server_units_sandbox_restricts_what_it_says(tmp_path):
    """What test_server_and_agent_run_as_their_units_say runs the server in
    does restrict: a probe in the server unit's sandbox may write its state
    directory and a private /tmp only, has no W+X memory and no netlink
    socket, and dies on a system call outside @system-service."""
    base = str(tmp_path / "sys")
    os.makedirs(base)
    os.chmod(base, 0o711)
    dest = os.path.join(base, "dest")
    install(dest)
    unit = unitrun.parse_unit(os.path.join(dest, "usr/lib/systemd/system/trainyard-server.service"))
    state_root = os.path.join(base, "var-lib")
    state = os.path.join(state_root, "trainyard")
    os.makedirs(state, 0o700)
    sandbox = unitrun.Sandbox(unit, state, base)
    os.chown(state, sandbox.uid, sandbox.uid)
    env = unitrun.service_env(unit, state)

    in_tmp = "/tmp/%s" % uniq("unit-probe")

    def probe(*extra):
        argv = ["/usr/bin/python3", "-c", PROBE, state, dest, in_tmp] + list(extra)
        return subprocess.run(argv, env=env, preexec_fn=sandbox.preexec, capture_output=True,
                              text=True, timeout=60)

    r = probe()
    assert r.returncode == 0, r
    assert r.stdout.split() == ["elsewhere=EROFS", "etc=EROFS", "inet=ok",
                                "netlink=EAFNOSUPPORT", "root=EACCES", "state=ok", "tmp=ok",
                                "wx=EPERM"], r
    assert os.path.exists(os.path.join(state, "probe"))
    assert not os.path.exists(in_tmp)  # it was the sandbox's own /tmp
    r = probe("swapoff")
    assert r.returncode == -signal.SIGSYS and "survived" not in r.stdout, r
