"""SPEC §2 client commands: submit (packing, .trainyardignore, script_params,
--command), runs, run, logs, cancel, nodes, drain, metrics, artifacts,
download, experiments, tokens, completion; --json; where the server URL
and token come from; exit codes.  The real binary against a real server."""

import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.parse
import uuid

import pytest

from conftest import BAD_LOG_WORDS, BIN, RUN_ID, free_port, node_body, uniq

CLI_TIMEOUT_S = 60


def run_cli(args, server=None, token=None, env=None, cwd=None, input=None,
            timeout=CLI_TIMEOUT_S):
    """Runs `trainyard ARGS...`; with server, adds --server/--token (token
    None = the server's admin token, False = no --token).  TRAINYARD_SERVER
    and TRAINYARD_TOKEN are cleared unless env sets them."""
    args = list(args)
    common = []
    if server is not None:
        common += ["--server", server.url]
        if token is None:
            token = server.admin_token
        if token is not False:
            common += ["--token", token]
    # Right after the command name: after a "--" they would be arguments.
    argv = [BIN] + args[:1] + common + args[1:]
    e = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    e.update(env or {})
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=cwd,
                       input=input, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for word in BAD_LOG_WORDS:
        assert word not in err, "%s: %s" % (argv, err)
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def ok(res):
    assert res.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (
        res.returncode, res.stdout, res.stderr)
    return res


def write(root, rel, data="x\n"):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def make_project(root, files=None):
    os.makedirs(str(root), exist_ok=True)
    write(root, "train.py", "print('hello %s')\n" % uuid.uuid4().hex)
    for rel in files or ():
        write(root, rel, "content of %s\n" % rel)
    return str(root)


def submit_json(server, args, **kw):
    res = ok(run_cli(["submit", "--json"] + list(args), server, **kw))
    run = json.loads(res.stdout)
    assert RUN_ID.match(run["id"]), run
    return run


def queued_run(server, experiment, **fields):
    """A run that stays queued: its pool has no nodes (the shared server has
    nodes that other tests registered in "default")."""
    body = {"experiment": experiment, "command": ["true"], "compute_target": uniq("nopool")}
    body.update(fields)
    return server.create_run(body)


def snapshot_members(server, snapshot_id):
    r = server.get("/api/v1/snapshots/" + urllib.parse.quote(snapshot_id, safe=""))
    assert r.status == 200, r
    with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tf:
        members = {}
        for m in tf.getmembers():
            data = tf.extractfile(m).read() if m.isfile() else None
            members[m.name] = (m, data)
        return members


# --------------------------------------------------------------------------
# submit: packing
# --------------------------------------------------------------------------

IGNORE_RULES = """\
# comments and blank lines are ignored

*.log
!keep.log
/build
docs/*.tmp
data/
**/cache/**
secret?.txt
[ab].bin
out/**
!out/keep.txt
trailing.txt   
\\#hash.txt
"""

KEPT = [
    "train.py", ".trainyardignore", "lib/util.py", "keep.log", "sub/keep.log",
    "sub/build/y.o", "docs/a.md", "sub/docs/b.tmp", "sub/data", "secret12.txt", "c.bin",
    "out/keep.txt", "lib/__init__.py", "sub/cache", "#other.txt",
]
EXCLUDED = [
    "a.log", "sub/b.log", "build/x.o", "docs/a.tmp", "data/d.csv", "sub/data2/data/e.csv",
    "x/cache/c.bin", "cache/z.txt", "secret1.txt", "a.bin", "b.bin", "out/a.txt",
    "out/deep/b.txt", ".git/HEAD", ".git/objects/ab/cd", "__pycache__/m.pyc",
    "lib/__pycache__/n.pyc", "trailing.txt", "#hash.txt",
]


def test_submit_packs_directory_honouring_trainyardignore(server, tmp_path):
    root = make_project(tmp_path / "proj", [f for f in KEPT + EXCLUDED if f != "train.py"])
    write(root, ".trainyardignore", IGNORE_RULES)
    os.symlink("train.py", os.path.join(root, "link.py"))
    os.makedirs(os.path.join(root, "empty"))
    os.chmod(os.path.join(root, "train.py"), 0o755)

    run = submit_json(server, [root, "--entry", "train.py", "--experiment", uniq("pack")])
    source = run["spec"]["source"]
    assert source.startswith("sha256:"), run
    members = snapshot_members(server, source)
    names = set(members)

    for rel in KEPT:
        assert rel in names, "%s missing from %s" % (rel, sorted(names))
    for rel in EXCLUDED:
        assert rel not in names, "%s should be excluded: %s" % (rel, sorted(names))
    # Excluded directories are not stored either; nothing under them is.
    for d in ("build", "data", ".git", "__pycache__", "lib/__pycache__", "out/deep"):
        assert d not in names, (d, sorted(names))
        assert not any(n.startswith(d + "/") for n in names), (d, sorted(names))
    # "cache/**" excludes what is inside, not the directory itself.
    for d in ("cache", "x/cache"):
        assert d in names and not any(n.startswith(d + "/") for n in names), sorted(names)
    # Directories kept, with their type; paths are relative.
    for d in ("lib", "sub", "docs", "out", "empty", "sub/build"):
        assert d in names and members[d][0].isdir(), (d, sorted(names))
    assert all(not n.startswith(("/", "./")) and ".." not in n.split("/") for n in names)
    # Contents, modes and links survive.
    with open(os.path.join(root, "train.py"), "rb") as f:
        assert members["train.py"][1] == f.read()
    assert members["train.py"][0].mode & 0o111, oct(members["train.py"][0].mode)
    assert members["lib/util.py"][1] == b"content of lib/util.py\n"
    assert members["link.py"][0].issym() and members["link.py"][0].linkname == "train.py"


def test_submit_same_tree_gives_same_snapshot(server, tmp_path):
    root = make_project(tmp_path / "p", ["lib/a.py", "lib/b.py"])
    exp = uniq("same")
    a = submit_json(server, [root, "--entry", "train.py", "--experiment", exp])
    b = submit_json(server, [root, "--entry", "./train.py", "--experiment", exp])
    assert a["id"] != b["id"]
    assert a["spec"]["source"] == b["spec"]["source"]
    assert b["spec"]["entry_script"] == "train.py"


def test_submit_prints_run_id(server, tmp_path):
    root = make_project(tmp_path / "p")
    exp = uniq("plain")
    res = ok(run_cli(["submit", root, "--entry", "train.py", "--experiment", exp], server))
    run_id = res.stdout.strip()
    assert RUN_ID.match(run_id), res.stdout
    r = server.get("/api/v1/runs/" + run_id)
    assert r.status == 200 and r.body["experiment"] == exp, r


def test_submit_experiment_defaults_to_sanitised_basename(server, tmp_path):
    name = "my proj+%s" % uuid.uuid4().hex[:6]
    root = make_project(tmp_path / name)
    run = submit_json(server, [root, "--entry", "train.py"])
    assert run["experiment"] == name.replace(" ", "-").replace("+", "-"), run
    # "." resolves to the directory's real name.
    run = submit_json(server, [".", "--entry", "train.py"], cwd=root)
    assert run["experiment"] == name.replace(" ", "-").replace("+", "-"), run


# --------------------------------------------------------------------------
# submit: the run spec
# --------------------------------------------------------------------------

def test_submit_script_params_conversion(server, tmp_path):
    root = make_project(tmp_path / "p")
    params = [
        "--lr=0.01", "--batch-size=50", "--flag", "--t=true", "--f=false", "--n=null",
        "--name=abc", "--zero=01", "--neg=-1e-3", "--eq=a=b", "--empty=",
        "--big=12345678901234567890", "--word=1.5x", "plain=2",
    ]
    args = [root, "--entry", "train.py", "--experiment", uniq("params")]
    for p in params:
        args += ["--param", p]
    args += ["--arg", "--extra", "--arg", "x y", "--", "--after", "z"]
    run = submit_json(server, args)
    sp = run["spec"]["script_params"]
    assert sp == {
        "--lr": 0.01, "--batch-size": 50, "--flag": True, "--t": True, "--f": False,
        "--n": None, "--name": "abc", "--zero": "01", "--neg": -0.001, "--eq": "a=b",
        "--empty": "", "--big": "12345678901234567890", "--word": "1.5x", "plain": 2,
    }, sp
    assert list(sp) == [p.split("=")[0] for p in params], list(sp)
    assert isinstance(sp["--batch-size"], int)
    assert run["spec"]["arguments"] == ["--extra", "x y", "--after", "z"]
    assert run["spec"]["entry_script"] == "train.py"
    assert run["spec"].get("command") is None


def test_submit_repeated_param_keeps_last_value_in_first_place(server, tmp_path):
    root = make_project(tmp_path / "p")
    run = submit_json(server, [root, "--entry", "train.py", "--experiment", uniq("rep"),
                               "--param", "--a=1", "--param", "--b=2", "--param", "--a=3"])
    assert list(run["spec"]["script_params"].items()) == [("--a", 3), ("--b", 2)]


def test_submit_resource_and_placement_options(server, tmp_path):
    root = make_project(tmp_path / "p")
    tag = uuid.uuid4().hex[:8]
    run = submit_json(server, [
        root, "--entry", "train.py", "--experiment", uniq("opts"),
        "--nodes", "2", "--backend", "ps", "--workers", "3", "--parameter-servers", "2",
        "--chief", "--gpu", "--gpus-per-process", "2", "--cpus", "4", "--memory-mb", "2048",
        "--pool", "gpu-pool", "--pip", "keras", "--pip", "scikit-learn==1.2",
        "--env", "A=1", "--env", "B=x=y", "--tag", "team=" + tag, "--tag", "k=v",
        "--max-retries", "2", "--max-duration", "3600", "--priority", "7",
    ])
    spec = run["spec"]
    expected = {
        "node_count": 2, "distributed_backend": "ps", "worker_count": 3,
        "parameter_server_count": 2, "chief": True, "use_gpu": True, "gpus_per_process": 2,
        "cpus_per_process": 4, "memory_mb_per_process": 2048, "compute_target": "gpu-pool",
        "pip_packages": ["keras", "scikit-learn==1.2"],
        "environment_variables": {"A": "1", "B": "x=y"},
        "max_retries": 2, "max_run_duration_seconds": 3600, "priority": 7,
    }
    for k, v in expected.items():
        assert spec[k] == v, (k, spec[k], v)
    assert run["tags"] == {"team": tag, "k": "v"}, run["tags"]
    assert [t["name"] for t in run["tasks"]] == [
        "chief", "ps-0", "ps-1", "worker-0", "worker-1", "worker-2"], run["tasks"]


def test_submit_mpi_and_pytorch_backends(server, tmp_path):
    root = make_project(tmp_path / "p")
    run = submit_json(server, [root, "--entry", "train.py", "--experiment", uniq("mpi"),
                               "--nodes", "2", "--backend", "mpi", "--processes-per-node", "2"])
    assert [t["name"] for t in run["tasks"]] == ["launcher", "worker-0", "worker-1"]
    run = submit_json(server, [root, "--entry", "train.py", "--experiment", uniq("pt"),
                               "--nodes", "2", "--backend", "pytorch",
                               "--processes-per-node", "2"])
    assert [t["name"] for t in run["tasks"]] == ["rank-0", "rank-1", "rank-2", "rank-3"]


def test_submit_command(server, tmp_path):
    exp = uniq("cmd")
    run = submit_json(server, ["--command", "--experiment", exp, "--",
                               "python3", "-c", "print('hi')", "--flag"])
    assert run["spec"]["command"] == ["python3", "-c", "print('hi')", "--flag"], run["spec"]
    assert run["spec"].get("source") is None
    assert run["spec"].get("entry_script") is None
    assert run["experiment"] == exp

    # Without --experiment and without a directory: "default".
    run = submit_json(server, ["--command", "--", "true"])
    assert run["experiment"] == "default"

    # With a directory: its snapshot is the working directory.
    root = make_project(tmp_path / "withdir")
    run = submit_json(server, [root, "--command", "--experiment", exp, "--", "sh", "run.sh"])
    assert run["spec"]["command"] == ["sh", "run.sh"]
    assert "train.py" in snapshot_members(server, run["spec"]["source"])


def test_submit_server_side_rejection_exits_1_with_message(server, tmp_path):
    root = make_project(tmp_path / "p")
    res = run_cli(["submit", root, "--entry", "train.py", "--experiment", "bad name!"], server)
    assert res.returncode == 1, res
    assert res.stderr.startswith("trainyard: "), res.stderr
    assert "experiment" in res.stderr, res.stderr
    assert res.stdout == ""


# --------------------------------------------------------------------------
# runs, run, cancel
# --------------------------------------------------------------------------

def test_runs_table_filters_and_json(server):
    exp = uniq("list")
    tag = uuid.uuid4().hex[:8]
    a = queued_run(server, exp, tags={"t": tag})
    b = queued_run(server, exp)

    res = ok(run_cli(["runs", "--experiment", exp], server))
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["ID", "EXPERIMENT", "OWNER", "STATUS", "CREATED",
                                "METRICS"], lines
    assert [ln.split()[0] for ln in lines[1:]] == [b["id"], a["id"]], lines  # newest first
    for ln in lines[1:]:
        cols = ln.split()
        assert cols[1] == exp and cols[2] == "admin" and cols[3] == "queued", ln
        assert cols[4].startswith("20") and cols[5] == "-", ln

    res = ok(run_cli(["runs", "--experiment", exp, "--tag", "t:" + tag], server))
    assert [ln.split()[0] for ln in res.stdout.splitlines()[1:]] == [a["id"]]

    res = ok(run_cli(["runs", "--experiment", exp, "--limit", "1"], server))
    assert [ln.split()[0] for ln in res.stdout.splitlines()[1:]] == [b["id"]]

    res = ok(run_cli(["runs", "--experiment", exp, "--status", "completed"], server))
    assert len(res.stdout.splitlines()) == 1

    res = ok(run_cli(["runs", "--experiment", exp, "--json"], server))
    body = json.loads(res.stdout)
    assert [r["id"] for r in body["items"]] == [b["id"], a["id"]]
    assert "next_cursor" in body

    # --owner: runs of tokens of that name only
    name = uniq("owner")
    c = server.create_run({"experiment": exp, "command": ["true"], "compute_target": uniq("np")},
                          token=server.create_token("user", name=name)["secret"])
    res = ok(run_cli(["runs", "--experiment", exp, "--owner", name], server))
    assert [ln.split()[:3] for ln in res.stdout.splitlines()[1:]] == [[c["id"], exp, name]]
    res = ok(run_cli(["runs", "--experiment", exp, "--owner", "admin"], server))
    assert [ln.split()[0] for ln in res.stdout.splitlines()[1:]] == [b["id"], a["id"]]


def test_run_summary_and_json(server):
    run = queued_run(server, uniq("show"))
    res = ok(run_cli(["run", run["id"]], server))
    text = res.stdout
    assert "status:" in text and "queued" in text, text
    assert "attempt:" in text and "reason:" in text, text
    assert "owner:      admin" in text, text
    assert run["id"] in text and run["experiment"] in text
    assert "command:    true" in text, text
    task_lines = [ln.split() for ln in text.splitlines() if ln.startswith("  main")]
    assert task_lines and task_lines[0][:5] == ["main", "main", "-", "pending", "-"], text

    res = ok(run_cli(["run", run["id"], "--json"], server))
    body = json.loads(res.stdout)
    assert body["id"] == run["id"] and body["status"] == "queued"
    assert body == server.get("/api/v1/runs/" + run["id"]).body


def test_cancel(server):
    run = queued_run(server, uniq("cancel"))
    res = ok(run_cli(["cancel", run["id"]], server))
    assert res.stdout.split() == [run["id"], "canceled"], res.stdout
    assert server.get("/api/v1/runs/" + run["id"]).body["status"] == "canceled"
    # Idempotent.
    res = ok(run_cli(["cancel", run["id"], "--json"], server))
    assert json.loads(res.stdout)["status"] == "canceled"
    res = ok(run_cli(["run", run["id"]], server))
    assert "killed" in res.stdout, res.stdout


def test_rerun(server, user_token, tmp_path):
    """rerun keeps the original's parameters, changes the given ones, and
    the new run is the caller's, tagged with the original's id."""
    root = make_project(tmp_path / "p")
    orig = submit_json(server, [root, "--entry", "train.py", "--param", "--lr=0.1",
                                "--param", "--epochs=3", "--pool", uniq("nopool")])
    res = ok(run_cli(["rerun", orig["id"]], server, token=user_token))
    new_id = res.stdout.strip()
    assert RUN_ID.match(new_id) and new_id != orig["id"], res.stdout
    new = server.get("/api/v1/runs/" + new_id).body
    assert new["spec"]["script_params"] == {"--lr": 0.1, "--epochs": 3}
    assert new["tags"] == {"trainyard/rerun_of": orig["id"]}
    assert new["owner"] != orig["owner"]

    res = ok(run_cli(["rerun", "--json", orig["id"], "--param", "--lr=0.5", "--param",
                      "--fast", "--priority", "4"], server))
    new = json.loads(res.stdout)
    assert new["spec"]["script_params"] == {"--lr": 0.5, "--epochs": 3, "--fast": True}
    assert new["spec"]["priority"] == 4

    cmd_run = queued_run(server, uniq("cli"))
    res = run_cli(["rerun", cmd_run["id"], "--param", "--x=1"], server)
    assert res.returncode == 1 and "script_params" in res.stderr, res
    res = run_cli(["rerun", "run-000000000000"], server)
    assert res.returncode == 1 and "run-000000000000" in res.stderr, res


def test_unknown_run_exits_1(server):
    for args in (["run", "run-000000000000"], ["cancel", "run-000000000000"]):
        res = run_cli(args, server)
        assert res.returncode == 1, res
        assert res.stderr.startswith("trainyard: "), res.stderr
        assert "run-000000000000" in res.stderr, res.stderr
        assert res.stdout == ""


# --------------------------------------------------------------------------
# nodes, drain
# --------------------------------------------------------------------------

def test_nodes_and_drain(server):
    name = uniq("node")
    pool = uniq("pool")
    server.register_node(name, pool)

    res = ok(run_cli(["nodes"], server))
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "POOL", "STATE", "CPUS", "GPUS", "ALLOCATED"], lines
    row = [ln.split() for ln in lines if ln.split()[0] == name]
    assert row, res.stdout
    assert row[0][1:5] == [pool, "ready", "8", "1"], row
    assert "cpus=0" in lines[[ln.split()[0] for ln in lines].index(name)]

    res = ok(run_cli(["drain", name], server))
    assert res.stdout.split() == [name, "draining"], res.stdout
    assert server.get("/api/v1/nodes/" + name).body["state"] == "draining"
    res = ok(run_cli(["nodes", "--json"], server))
    nodes = {n["name"]: n for n in json.loads(res.stdout)["items"]}
    assert nodes[name]["state"] == "draining"

    res = ok(run_cli(["drain", name, "--undo", "--json"], server))
    assert json.loads(res.stdout)["state"] == "ready"
    assert server.get("/api/v1/nodes/" + name).body["state"] == "ready"


def test_drain_unknown_node_and_without_admin(server, user_token):
    res = run_cli(["drain", uniq("nonode")], server)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res
    name = uniq("node")
    server.register_node(name, uniq("pool"))
    res = run_cli(["drain", name], server, token=user_token)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res
    assert server.get("/api/v1/nodes/" + name).body["state"] == "ready"


# --------------------------------------------------------------------------
# Server and token resolution
# --------------------------------------------------------------------------

def test_resolution_from_data_dir(server_factory, tmp_path):
    data = tmp_path / "srvdata"
    srv = server_factory(data_dir=data)
    run = queued_run(srv, uniq("res"))

    # --data names the directory holding server.url and admin.token.
    res = ok(run_cli(["run", run["id"], "--data", str(data)]))
    assert run["id"] in res.stdout

    # ./var is the default data directory.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.symlink(str(data), str(cwd / "var"))
    res = ok(run_cli(["runs", "--json"], cwd=str(cwd)))
    assert run["id"] in [r["id"] for r in json.loads(res.stdout)["items"]]

    # An explicit --server on loopback still takes the token from the data dir.
    res = ok(run_cli(["run", run["id"], "--server", srv.url, "--data", str(data)]))
    port = urllib.parse.urlsplit(srv.url).port
    res = ok(run_cli(["run", run["id"], "--server", "http://localhost:%d/" % port,
                      "--data", str(data)]))

    # The environment comes before the files.
    empty = tmp_path / "empty"
    empty.mkdir()
    res = ok(run_cli(["run", run["id"], "--data", str(empty)],
                     env={"TRAINYARD_SERVER": srv.url, "TRAINYARD_TOKEN": srv.admin_token}))
    res = run_cli(["run", run["id"], "--data", str(data)],
                  env={"TRAINYARD_TOKEN": "ty_" + "0" * 64})
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res

    # Options come before the environment.
    res = ok(run_cli(["run", run["id"], "--server", srv.url, "--token", srv.admin_token],
                     env={"TRAINYARD_SERVER": "http://127.0.0.1:1",
                          "TRAINYARD_TOKEN": "wrong"}))

    # No token anywhere: the server says so, exit 1.
    res = run_cli(["run", run["id"], "--server", srv.url, "--data", str(empty)])
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res


def test_unreachable_server_exits_1(tmp_path):
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    res = run_cli(["runs", "--server", "http://127.0.0.1:%d" % port, "--token", "x"])
    assert res.returncode == 1, res
    assert res.stderr.startswith("trainyard: ") and "127.0.0.1:%d" % port in res.stderr


def test_viewer_cannot_submit(server, viewer_token, tmp_path):
    root = make_project(tmp_path / "p")
    res = run_cli(["submit", root, "--entry", "train.py"], server, token=viewer_token)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res


# --------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------

COMMANDS = ["submit", "runs", "run", "logs", "cancel", "rerun", "nodes", "drain", "metrics",
            "artifacts", "download", "experiments", "tokens", "sweep", "sweeps", "sweep-show",
            "sweep-cancel"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd):
    for flag in ("-h", "--help"):
        res = ok(run_cli([cmd, flag]))
        assert res.stdout.startswith("usage: trainyard %s" % cmd), res.stdout
        assert "--server" in res.stdout and "--json" in res.stdout
    assert cmd in ok(run_cli(["--help"])).stdout


BAD_USAGE = [
    ["submit"],
    ["submit", "{dir}"],
    ["submit", "{dir}", "--entry", "missing.py"],
    ["submit", "{dir}", "--entry", "train.py", "--backend", "horovod"],
    ["submit", "{dir}", "--entry", "train.py", "--nodes", "0"],
    ["submit", "{dir}", "--entry", "train.py", "--nodes", "two"],
    ["submit", "{dir}", "--entry", "train.py", "--param", "=1"],
    ["submit", "{dir}", "--entry", "train.py", "--env", "NOVALUE"],
    ["submit", "{dir}", "--entry", "train.py", "--tag", "=v"],
    ["submit", "{dir}", "--entry", "train.py", "--cpus", "-1"],
    ["submit", "{dir}", "--entry", "train.py", "--bogus"],
    ["submit", "{dir}", "--entry", "train.py", "{dir}"],
    ["submit", "{dir}", "--entry"],
    ["submit", "{dir}/train.py", "--entry", "train.py"],
    ["submit", "--command"],
    ["submit", "--command", "--entry", "train.py", "--", "true"],
    ["runs", "--limit", "0"],
    ["runs", "--limit", "x"],
    ["runs", "--tag", "novalue"],
    ["runs", "extra"],
    ["run"],
    ["run", "a", "b"],
    ["logs"],
    ["cancel"],
    ["rerun"],
    ["rerun", "a", "b"],
    ["rerun", "a", "--param", "=1"],
    ["rerun", "a", "--priority", "x"],
    ["nodes", "x"],
    ["drain"],
    ["drain", "n", "--bogus"],
    ["runs", "--server", "ftp://example"],
    ["metrics"],
    ["metrics", "a", "b", "c"],
    ["metrics", "a", "b", "--max-points", "0"],
    ["metrics", "a", "b", "--max-points", "x"],
    ["artifacts"],
    ["artifacts", "a", "b"],
    ["download"],
    ["download", "a", "b", "c"],
    ["download", "a", "-o"],
    ["download", "a", "-o", ""],
    ["download", "a", "/abs"],
    ["experiments", "x"],
    ["tokens", "frob"],
    ["tokens", "create"],
    ["tokens", "create", "n"],
    ["tokens", "delete"],
    ["tokens", "list", "x"],
    ["tokens", "--role", "user"],
    ["tokens", "delete", "tok-1", "--node", "n"],
]


@pytest.mark.parametrize("args", BAD_USAGE, ids=[" ".join(a) for a in BAD_USAGE])
def test_bad_usage_exits_2(server, tmp_path, args):
    root = make_project(tmp_path / "p")
    args = [a.replace("{dir}", root) for a in args]
    res = run_cli(args, server)
    assert res.returncode == 2, res
    assert res.stderr.startswith("trainyard"), res.stderr
    assert res.stdout == ""


def test_unknown_command_exits_2():
    res = run_cli(["frobnicate"])
    assert res.returncode == 2 and "frobnicate" in res.stderr


# --------------------------------------------------------------------------
# Logs and --follow: real runs on the module's two-agent cluster
# --------------------------------------------------------------------------

def test_logs_of_a_finished_run(cluster, tmp_path):
    server = cluster[0]
    root = make_project(tmp_path / "p")
    write(root, "train.py", "print('line one')\nprint('line two')\n")
    run = submit_json(server, [root, "--entry", "train.py", "--experiment", uniq("logs")])
    ok(run_cli(["logs", run["id"], "-f"], server))  # returns when the run has ended
    assert server.get("/api/v1/runs/" + run["id"]).body["status"] == "completed"
    res = ok(run_cli(["logs", run["id"]], server))
    assert res.stdout == "line one\nline two\n"
    res = ok(run_cli(["logs", run["id"], "--task", "main"], server))
    assert res.stdout == "line one\nline two\n"


def test_non_ascii_file_names_reach_the_task(cluster, tmp_path):
    """UTF-8 names are packed, checked, unpacked and uploaded as artifacts
    under the names they have (whatever the caller's locale)."""
    server = cluster[0]
    root = make_project(tmp_path / "p")
    write(root, "données/entrée.txt", "é\n")
    write(root, "train.py",
          "import os\n"
          "print(open('données/entrée.txt', encoding='utf-8').read().strip(), flush=True)\n"
          "open(os.path.join(os.environ['TRAINYARD_OUTPUT_DIR'], 'résultat.txt'), 'w')"
          ".write('ok')\n")
    env = dict(os.environ, LANG="C", LC_ALL="C")
    res = run_cli(["submit", root, "--entry", "train.py", "--follow"], server, env=env)
    assert res.returncode == 0, res
    run_id = res.stdout.splitlines()[0]
    assert "é" in res.stdout, res.stdout
    paths = [a["path"] for a in server.get("/api/v1/runs/%s/artifacts" % run_id).body["items"]]
    assert "résultat.txt" in paths, paths


def test_submit_follow_exit_codes(cluster, tmp_path):
    server = cluster[0]
    root = make_project(tmp_path / "p")
    write(root, "ok.py", "print('fine')\n")
    write(root, "bad.py", "import sys\nprint('doomed')\nsys.exit(3)\n")
    res = run_cli(["submit", root, "--entry", "ok.py", "--follow"], server)
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert RUN_ID.match(lines[0]) and "fine" in lines[1:], res.stdout

    res = run_cli(["submit", root, "--entry", "bad.py", "--follow"], server)
    assert res.returncode == 1, res
    assert "doomed" in res.stdout
    assert res.stderr.startswith("trainyard: ") and "failed" in res.stderr, res.stderr


def test_logs_follow_streams_until_the_run_ends(cluster, tmp_path):
    server = cluster[0]
    root = make_project(tmp_path / "p")
    write(root, "slow.py", "import time\nfor i in range(3):\n    print(i, flush=True)\n"
                           "    time.sleep(0.5)\n")
    run_id = ok(run_cli(["submit", root, "--entry", "slow.py"], server)).stdout.strip()
    res = ok(run_cli(["logs", run_id, "-f"], server))
    assert res.stdout == "0\n1\n2\n"
    assert server.get("/api/v1/runs/" + run_id).body["status"] == "completed"


def test_logs_unknown_run_exits_1(server):
    res = run_cli(["logs", "run-000000000000"], server)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res


# --------------------------------------------------------------------------
# Logs and --follow against the real report endpoint, the admin token standing
# in for the agent (the run is never placed; cancel ends it)
# --------------------------------------------------------------------------

def report_log(server, task_id, offset, data):
    r = server.req("POST", "/api/v1/agent/tasks/%s/logs?offset=%d" % (task_id, offset),
                   body=data, content_type="application/octet-stream")
    assert r.status == 200, r


def popen_cli(args, server):
    argv = [BIN, args[0], "--server", server.url, "--token", server.admin_token] + args[1:]
    e = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)


def test_logs_prints_reported_text(server):
    run = queued_run(server, uniq("logs"))
    task = run["tasks"][0]["id"]
    res = ok(run_cli(["logs", run["id"]], server))
    assert res.stdout == ""
    report_log(server, task, 0, b"hello\n")
    report_log(server, task, 6, b"world\n")
    assert ok(run_cli(["logs", run["id"]], server)).stdout == "hello\nworld\n"
    assert ok(run_cli(["logs", run["id"], "--task", "main"], server)).stdout == "hello\nworld\n"
    assert ok(run_cli(["logs", run["id"], "--task", task], server)).stdout == "hello\nworld\n"
    res = run_cli(["logs", run["id"], "--task", "worker-9"], server)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res
    # An ended run: -f prints what there is and returns.
    assert server.post("/api/v1/runs/%s/cancel" % run["id"], None).status == 200
    assert ok(run_cli(["logs", run["id"], "-f"], server, timeout=20)).stdout == "hello\nworld\n"


def test_logs_follow_streams_until_the_run_is_canceled(server):
    run = queued_run(server, uniq("follow"))
    task = run["tasks"][0]["id"]
    report_log(server, task, 0, b"first\n")
    proc = popen_cli(["logs", run["id"], "--follow"], server)
    try:
        assert proc.stdout.readline() == b"first\n"
        report_log(server, task, 6, b"second\n")
        assert proc.stdout.readline() == b"second\n"
        assert proc.poll() is None, "logs -f ended while the run was queued"
        assert server.post("/api/v1/runs/%s/cancel" % run["id"], None).status == 200
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == b""


def test_submit_follow_of_a_canceled_run_exits_1(server):
    proc = popen_cli(["submit", "--follow", "--experiment", uniq("sf"), "--pool", uniq("nopool"),
                      "--command", "--", "true"], server)
    try:
        run_id = proc.stdout.readline().decode().strip()
        assert RUN_ID.match(run_id), run_id
        task = server.get("/api/v1/runs/" + run_id).body["tasks"][0]["id"]
        report_log(server, task, 0, b"working\n")
        assert proc.stdout.readline() == b"working\n"
        assert server.post("/api/v1/runs/%s/cancel" % run_id, None).status == 200
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    err = err.decode()
    assert err.startswith("trainyard: ") and "canceled" in err and run_id in err, err


# --------------------------------------------------------------------------
# metrics, artifacts, download: a real run on the module's cluster
# --------------------------------------------------------------------------

RESULTS_SCRIPT = """\
import json, os
out = os.environ["TRAINYARD_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
with open(os.path.join(out, "model.txt"), "w") as f:
    f.write("weights\\n")
with open(os.path.join(out, "sub", "deep.bin"), "wb") as f:
    f.write(bytes(range(256)) * 4)
for i in range(30):
    print("##metric " + json.dumps({"loss": 1.0 / (i + 1), "step": i}), flush=True)
print("##metric " + json.dumps({"acc": 0.5}), flush=True)
"""


@pytest.fixture(scope="module")
def finished_run(cluster, tmp_path_factory):
    """A completed run with two artifacts and two metrics."""
    server = cluster[0]
    root = make_project(tmp_path_factory.mktemp("results") / "p")
    write(root, "results.py", RESULTS_SCRIPT)
    res = ok(run_cli(["submit", root, "--entry", "results.py", "--follow",
                      "--experiment", uniq("results")], server))
    return server, res.stdout.splitlines()[0]


def test_artifacts_lists_paths_sizes_tasks(finished_run):
    server, run_id = finished_run
    rows = [line.split() for line in ok(run_cli(["artifacts", run_id], server)).stdout.splitlines()]
    assert rows[0] == ["PATH", "SIZE", "TASK"]
    assert sorted(rows[1:]) == [["model.txt", "8", "main"], ["sub/deep.bin", "1024", "main"]]
    listed = json.loads(ok(run_cli(["artifacts", run_id, "--json"], server)).stdout)
    assert sorted(a["path"] for a in listed["items"]) == ["model.txt", "sub/deep.bin"]
    res = run_cli(["artifacts", "run-000000000000"], server)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res


def test_download_all_and_one(finished_run, tmp_path):
    server, run_id = finished_run
    dest = tmp_path / "all" / "here"  # created, with its parent
    os.makedirs(str(tmp_path / "all"))
    res = ok(run_cli(["download", run_id, "-o", str(dest)], server))
    assert len(res.stdout.splitlines()) == 2, res.stdout
    assert (dest / "model.txt").read_text() == "weights\n"
    assert (dest / "sub" / "deep.bin").read_bytes() == bytes(range(256)) * 4
    assert sorted(os.listdir(str(dest))) == ["model.txt", "sub"]  # no temporary files left

    one = tmp_path / "one"
    ok(run_cli(["download", run_id, "sub/deep.bin", "--output", str(one)], server))
    assert os.listdir(str(one)) == ["sub"] and os.listdir(str(one / "sub")) == ["deep.bin"]

    # Default DIR: the current directory.
    cwd = tmp_path / "cwd"
    os.makedirs(str(cwd))
    ok(run_cli(["download", run_id, "model.txt"], server, cwd=str(cwd)))
    assert os.listdir(str(cwd)) == ["model.txt"]


def test_download_refuses_paths_escaping_dir(finished_run, tmp_path):
    server, run_id = finished_run
    dest = tmp_path / "d"
    os.makedirs(str(dest))
    for bad in ["../model.txt", "/etc/passwd", "sub/../../x", "./model.txt"]:
        res = run_cli(["download", run_id, bad, "-o", str(dest)], server)
        assert res.returncode == 2 and "must be relative" in res.stderr, res
    assert os.listdir(str(dest)) == []

    # A symbolic link inside DIR is not followed out of it.
    outside = tmp_path / "outside"
    os.makedirs(str(outside))
    os.symlink(str(outside), str(dest / "sub"))
    res = run_cli(["download", run_id, "sub/deep.bin", "-o", str(dest)], server)
    assert res.returncode == 1 and "symbolic link" in res.stderr, res
    assert os.listdir(str(outside)) == []

    res = run_cli(["download", run_id, "nothing.txt", "-o", str(dest)], server)
    assert res.returncode == 1 and "no artifact 'nothing.txt'" in res.stderr, res
    res = run_cli(["download", run_id, "--task", "worker-7", "-o", str(dest)], server)
    assert res.returncode == 1 and "worker-7" in res.stderr, res
    assert sorted(os.listdir(str(dest))) == ["sub"]


def test_metrics_table_and_series(finished_run):
    server, run_id = finished_run
    rows = [line.split() for line in ok(run_cli(["metrics", run_id], server)).stdout.splitlines()]
    assert rows[0] == ["NAME", "LAST", "MIN", "MAX", "COUNT", "LAST_STEP"]
    assert sorted(rows[1:]) == [["acc", "0.5", "0.5", "0.5", "1", "0"],
                                ["loss", "0.0333333", "0.0333333", "1", "30", "29"]]
    summary = json.loads(ok(run_cli(["metrics", run_id, "--json"], server)).stdout)
    assert {m["name"] for m in summary["items"]} == {"acc", "loss"}

    lines = ok(run_cli(["metrics", run_id, "loss"], server)).stdout.splitlines()
    assert lines[0] == "loss: 30 points, steps 0 to 29"
    bars = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
    assert len(lines[1]) == 30 and set(lines[1]) <= set(bars)
    assert lines[1][0] == bars[-1] and lines[1][-1] == bars[0]  # falling loss
    assert lines[2:] == ["first  1", "last   0.0333333", "min    0.0333333", "max    1"]

    lines = ok(run_cli(["metrics", run_id, "loss", "--max-points", "10"], server)).stdout
    lines = lines.splitlines()
    assert 1 <= len(lines[1]) <= 10, lines
    assert lines[3:] == ["last   0.0333333", "min    0.0333333", "max    1"]
    series = json.loads(ok(run_cli(["metrics", run_id, "loss", "--max-points", "4",
                                    "--json"], server)).stdout)
    assert series["name"] == "loss" and 1 <= len(series["points"]) <= 4

    res = run_cli(["metrics", run_id, "nosuch"], server)
    assert res.returncode == 1 and "no metric 'nosuch'" in res.stderr, res
    res = run_cli(["metrics", "run-000000000000"], server)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res


# --------------------------------------------------------------------------
# experiments and tokens
# --------------------------------------------------------------------------

def test_experiments(server):
    name = uniq("exp")
    queued_run(server, name)
    queued_run(server, name)
    rows = [line.split() for line in ok(run_cli(["experiments"], server)).stdout.splitlines()]
    assert rows[0] == ["NAME", "RUNS", "LAST_ACTIVITY"]
    mine = [r for r in rows if r[0] == name]
    assert len(mine) == 1 and mine[0][1] == "2" and mine[0][2].endswith("Z"), rows
    page = json.loads(ok(run_cli(["experiments", "--json"], server)).stdout)
    assert any(e["name"] == name and e["run_count"] == 2 for e in page["items"]), page


def test_tokens_create_list_delete(server, user_token):
    name = uniq("tok")
    res = ok(run_cli(["tokens", "create", name, "--role", "viewer"], server))
    token_id, secret = res.stdout.splitlines()
    assert token_id.startswith("tok-") and secret.startswith("ty_")
    assert "not shown again" in res.stderr
    ok(run_cli(["runs", "--limit", "1"], server, token=secret))  # the secret works

    listing = ok(run_cli(["tokens"], server)).stdout
    assert listing.splitlines()[0].split() == ["ID", "NAME", "ROLE", "NODE", "CREATED"]
    row = [line.split() for line in listing.splitlines() if line.startswith(token_id)]
    assert row and row[0][1:4] == [name, "viewer", "-"], listing
    assert secret not in listing
    page = json.loads(ok(run_cli(["tokens", "list", "--json"], server)).stdout)
    assert any(t["id"] == token_id and "secret" not in t for t in page["items"])

    created = json.loads(ok(run_cli(["tokens", "create", uniq("agent"), "--role", "agent",
                                     "--node", "n1", "--json"], server)).stdout)
    assert created["node"] == "n1" and created["secret"].startswith("ty_")

    assert ok(run_cli(["tokens", "delete", token_id], server)).stdout == "%s deleted\n" % token_id
    assert token_id not in ok(run_cli(["tokens"], server)).stdout
    res = run_cli(["runs"], server, token=secret)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res
    res = run_cli(["tokens", "delete", token_id], server)
    assert res.returncode == 1, res

    # Not an admin: refused by the server, nothing created.
    res = run_cli(["tokens", "create", uniq("x"), "--role", "admin"], server, token=user_token)
    assert res.returncode == 1 and res.stderr.startswith("trainyard: "), res
    res = run_cli(["tokens"], server, token=user_token)
    assert res.returncode == 1, res
    res = run_cli(["tokens", "create", name, "--role", "wizard"], server)
    assert res.returncode == 1 and "role" in res.stderr, res


# --------------------------------------------------------------------------
# bash completion, generated from the command table
# --------------------------------------------------------------------------

def bash(script):
    p = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=CLI_TIMEOUT_S, env={"PATH": os.environ["PATH"], "TY": BIN})
    assert p.returncode == 0, p
    assert p.stderr == b"", p.stderr
    return p.stdout.decode()


def complete(*words):
    """What bash's completion of `trainyard WORDS...` offers (the last word
    is the one being completed)."""
    script = ('source <("$TY" completion bash)\n'
              'COMP_WORDS=(trainyard %s); COMP_CWORD=%d\n'
              '_trainyard; printf "%%s\\n" "${COMPREPLY[@]}"\n'
              % (" ".join("'%s'" % w for w in words), len(words)))
    return sorted(w for w in bash(script).splitlines() if w)


def test_completion_registers_and_completes():
    assert bash('source <("$TY" completion bash); complete -p trainyard').strip() == \
        "complete -F _trainyard trainyard"
    assert complete("ar") == ["artifacts"]
    assert complete("to") == ["tokens"]
    assert complete("tokens", "") == ["create", "delete", "list"]
    assert complete("tokens", "create", "n", "--role", "") == ["admin", "agent", "user", "viewer"]
    assert complete("tokens", "create", "") == []  # a NAME: nothing to offer
    assert complete("download", "run-1", "--ou") == ["--output"]
    assert complete("metrics", "x", "--max") == ["--max-points"]
    assert complete("completion", "") == ["bash"]
    assert complete("runs", "--status", "c") == ["canceled", "completed"]
    assert complete("runs", "--bogus-prefix") == []


def test_completion_of_directories_and_files(tmp_path):
    os.makedirs(str(tmp_path / "dir1"))
    write(tmp_path, "file1", "x")
    base = str(tmp_path) + "/"
    assert complete("download", "run-1", "-o", base) == [base + "dir1"]
    assert complete("submit", base) == [base + "dir1"]
    assert complete("runs", "--token-file", base) == [base + "dir1", base + "file1"]
    # Only the first operand of submit completes; the option value is skipped.
    assert complete("submit", "--experiment", "e", base) == [base + "dir1"]
    assert complete("submit", base + "dir1", base) == []


def test_help_dispatch_and_completion_agree():
    """Every command the completion offers runs, is in 'trainyard --help',
    and its --help names every option the completion offers for it."""
    top = ok(run_cli(["--help"])).stdout
    commands = complete("")
    assert set(COMMANDS + ["metrics", "artifacts", "download", "experiments", "tokens",
                           "completion"]) <= set(commands)
    for cmd in commands:
        if cmd in ("server", "agent", "version", "help"):
            continue
        assert "\n  %s " % cmd in top, cmd
        usage = ok(run_cli([cmd, "--help"])).stdout
        assert usage.startswith("usage: trainyard %s" % cmd)
        for opt in complete(cmd, "-"):
            assert opt in usage, (cmd, opt)


def test_completion_bad_usage():
    for args in (["completion"], ["completion", "zsh"], ["completion", "bash", "x"]):
        res = run_cli(args)
        assert res.returncode == 2 and res.stderr.startswith("trainyard completion: "), res


def test_download_when_several_tasks_wrote_the_same_path(cluster, tmp_path):
    """Two tasks write outputs/rank.txt: all of them go under DIR/TASK/,
    one of them needs --task."""
    server = cluster[0]
    root = make_project(tmp_path / "p")
    write(root, "rank.py", "import os\n"
                           "with open(os.path.join(os.environ['TRAINYARD_OUTPUT_DIR'],"
                           " 'rank.txt'), 'w') as f:\n"
                           "    f.write(os.environ['RANK'])\n")
    res = ok(run_cli(["submit", root, "--entry", "rank.py", "--backend", "pytorch",
                      "--nodes", "2", "--follow"], server))
    run_id = res.stdout.splitlines()[0]
    tasks = sorted(a["task"] for a in server.get(
        "/api/v1/runs/%s/artifacts" % run_id).body["items"])
    assert len(tasks) == 2, tasks
    dest = tmp_path / "d"
    ok(run_cli(["download", run_id, "-o", str(dest)], server))
    assert sorted(os.listdir(str(dest))) == tasks
    assert sorted((dest / t / "rank.txt").read_text() for t in tasks) == ["0", "1"]

    res = run_cli(["download", run_id, "rank.txt", "-o", str(tmp_path / "e")], server)
    assert res.returncode == 1 and "--task" in res.stderr, res
    assert not os.path.exists(str(tmp_path / "e"))
    ok(run_cli(["download", run_id, "rank.txt", "--task", tasks[1], "-o",
                str(tmp_path / "e")], server))
    assert os.listdir(str(tmp_path / "e")) == ["rank.txt"]


# --------------------------------------------------------------------------
# health: the server's /healthz (the container image's HEALTHCHECK)
# --------------------------------------------------------------------------

def test_health_needs_no_token_and_fails_when_nothing_answers(server):
    r = run_cli(["health"], server=server, token=False)
    assert r.returncode == 0, r
    assert r.stdout.startswith("ok %s (version " % server.url), r.stdout
    r = run_cli(["health", "--json"], server=server, token=False)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "ok", r
    r = run_cli(["health", "--server", "http://127.0.0.1:%d" % free_port()])
    assert r.returncode == 1 and "cannot reach" in r.stderr, r
    r = run_cli(["health", "extra"], server=server)
    assert r.returncode == 2, r
