"""The Python client (agent/python/trainyard/client.py) against a real server
and real agents: submit and wait with the log streamed, metrics, series,
artifacts, download, cancel, rerun, paging, errors, the CLI's packing rules
and where the server and token come from; pip-installing the package into a
fresh venv; the README's example (examples/python-client/notebook.py).
Tasks here never read the test's tmp_path (sources are uploaded), so the
harness's tmp_path hooks for root are not needed."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import urllib.parse

import pytest

import sdk_harness


_harness = sdk_harness.load()
BIN, PYTHON, REPO, RUN_ID = _harness.BIN, _harness.PYTHON, _harness.REPO, _harness.RUN_ID
uniq, wait_for = _harness.uniq, _harness.wait_for
# The harness's fixture: a private server with two ready agents, per module.
cluster = _harness.cluster

SDK_PATH = os.path.join(REPO, "agent", "python")
if SDK_PATH not in sys.path:
    sys.path.insert(0, SDK_PATH)

import trainyard  # noqa: E402
from trainyard import client as sdk  # noqa: E402

WAIT_S = 90


def write(root, rel, data="x\n", mode=None):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


TRAIN = """\
import os, sys, time, trainyard
value = int(sys.argv[sys.argv.index("--value") + 1]) if "--value" in sys.argv else 0
print("hello from train.py value=%d" % value, flush=True)
for step in range(5):
    trainyard.log_many({"loss": 1.0 / (step + 1), "acc": step * 0.1}, step=step)
out = trainyard.output_dir()
with open(os.path.join(out, "model.txt"), "w") as f:
    f.write("model value=%d\\n" % value)
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
with open(os.path.join(out, "sub", "notes.txt"), "w") as f:
    f.write("notes\\n")
print("done é", flush=True)
"""


@pytest.fixture(scope="module")
def client(cluster):
    srv, _ = cluster
    return sdk.Client(srv.url, srv.admin_token)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdk-project")
    write(root, "train.py", TRAIN)
    write(root, "lib/util.py", "X = 1\n")
    write(root, "big.bin", "not sent\n")
    write(root, ".trainyardignore", "*.bin\n")
    return str(root)


@pytest.fixture(scope="module")
def finished(client, project):
    """One completed run of the project, shared by the read-only tests."""
    out = io.StringIO()
    run = client.submit(project, entry_script="train.py", script_params={"--value": 3},
                        experiment=uniq("sdk"), tags={"team": "sdk"})
    assert RUN_ID.match(run.id), run
    run.wait(show_output=True, output=out, timeout=WAIT_S)
    return run, out.getvalue()


# --------------------------------------------------------------------------
# submit, wait, results


def test_submit_and_wait_streams_the_log(finished, project):
    run, output = finished
    assert run.data["status"] == "completed", run.data
    assert run.status == "completed"
    assert "hello from train.py value=3" in output, output
    assert "done é" in output, output
    # The agent took the metric lines out of the log.
    assert "##metric" not in output, output
    spec = run.spec
    assert spec["entry_script"] == "train.py"
    assert spec["script_params"] == {"--value": 3}
    assert spec["source"].startswith("sha256:")
    assert run.tags["team"] == "sdk"
    # The log read afterwards is the same text.
    assert run.logs() == output


def test_metrics_series_artifacts_download(finished, tmp_path):
    run, _ = finished
    metrics = run.metrics()
    assert set(metrics) == {"loss", "acc"}, metrics
    loss = metrics["loss"]
    assert (loss.last, loss.min, loss.max, loss.count, loss.last_step) == (0.2, 0.2, 1.0, 5, 4)
    full = run.series("loss")
    assert full.name == "loss"
    assert full.steps == [0, 1, 2, 3, 4]
    assert full.values == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert all(isinstance(p[1], str) for p in full.points)
    few = run.series("loss", max_points=2)
    assert 1 <= len(few.points) <= 2, few

    arts = {a.path: a for a in run.artifacts()}
    assert set(arts) == {"model.txt", "sub/notes.txt"}, arts
    assert arts["model.txt"].size == len("model value=3\n")
    assert arts["model.txt"].task == "main"

    one = run.download("model.txt", to=str(tmp_path / "one"))
    assert one == [os.path.join(str(tmp_path / "one"), "model.txt")]
    with open(one[0]) as f:
        assert f.read() == "model value=3\n"
    every = run.download(to=str(tmp_path / "all"))
    assert sorted(os.path.relpath(p, str(tmp_path / "all")) for p in every) == [
        "model.txt", os.path.join("sub", "notes.txt")]
    assert not [n for n in os.listdir(str(tmp_path / "all")) if n.endswith("trainyard-part")]

    with pytest.raises(sdk.TrainyardError) as e:
        run.download("../escape", to=str(tmp_path))
    assert (e.value.code, e.value.field) == ("invalid_argument", "path")
    with pytest.raises(sdk.TrainyardError) as e:
        run.download("missing.txt", to=str(tmp_path))
    assert e.value.code == "not_found"
    # A symbolic link on the way is not followed.
    os.makedirs(str(tmp_path / "elsewhere"))
    os.makedirs(str(tmp_path / "linked"))
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "linked" / "sub"))
    with pytest.raises(sdk.TrainyardError) as e:
        run.download("sub/notes.txt", to=str(tmp_path / "linked"))
    assert "symbolic link" in e.value.message
    assert os.listdir(str(tmp_path / "elsewhere")) == []


def test_snapshot_leaves_out_ignored_files(client, finished, cluster):
    run, _ = finished
    srv, _ = cluster
    r = srv.get("/api/v1/snapshots/" + urllib.parse.quote(run.spec["source"], safe=""))
    assert r.status == 200
    with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tf:
        names = set(tf.getnames())
    assert names == {".trainyardignore", "lib", "lib/util.py", "train.py"}, names


def test_failed_run_raises_with_its_error(client, tmp_path):
    write(tmp_path, "fail.py", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    run = client.submit(str(tmp_path), entry_script="fail.py", experiment=uniq("sdkfail"))
    out = io.StringIO()
    with pytest.raises(sdk.RunFailedError) as e:
        run.wait(output=out, timeout=WAIT_S)
    assert isinstance(e.value, sdk.TrainyardError)
    assert e.value.code == "run_failed"
    assert e.value.run.data["status"] == "failed"
    assert run.error and run.error in e.value.message
    assert "about to fail" in out.getvalue()
    # Without raising, the run comes back as it ended.
    assert run.wait(show_output=False, raise_on_error=False).data["status"] == "failed"


def test_cancel_and_wait_timeout(client, tmp_path):
    write(tmp_path, "block.py", "import signal\nprint('started', flush=True)\nsignal.pause()\n")
    run = client.submit(str(tmp_path), entry_script="block.py", experiment=uniq("sdkcancel"))
    wait_for(lambda: "started" in run.logs(), WAIT_S, "the task to start")
    # A wait that runs out says so and leaves the run going.
    with pytest.raises(sdk.TrainyardError) as e:
        run.wait(output=io.StringIO(), timeout=0.5)
    assert e.value.code == "timeout" and e.value.status == 0
    assert run.status == "running"
    assert run.cancel() is run
    with pytest.raises(sdk.RunFailedError) as e:
        run.wait(show_output=False, timeout=WAIT_S)
    assert e.value.code == "run_canceled"
    assert run.status == "canceled"
    run.cancel()  # idempotent
    assert run.status == "canceled"


def test_rerun_with_overrides(client, finished):
    run, _ = finished
    again = run.rerun(script_params={"--extra": True, "--value": 7}, priority=3)
    assert again.id != run.id
    assert again.tags["trainyard/rerun_of"] == run.id
    assert again.spec["script_params"] == {"--value": 7, "--extra": True}
    assert again.spec["priority"] == 3
    out = io.StringIO()
    again.wait(output=out, timeout=WAIT_S)
    assert "hello from train.py value=7" in out.getvalue()
    # An override the server refuses raises with its field.
    with pytest.raises(sdk.TrainyardError) as e:
        run.rerun(node_count=0)
    assert (e.value.status, e.value.code, e.value.field) == (400, "invalid_argument",
                                                             "node_count")


def test_command_run_and_submit_spec(client):
    run = client.submit(command=["/bin/echo", "from a command"], experiment=uniq("sdkcmd"))
    out = io.StringIO()
    run.wait(output=out, timeout=WAIT_S)
    assert "from a command" in out.getvalue()
    assert run.spec.get("source") is None and run.spec["command"] == ["/bin/echo", "from a command"]
    # A returned spec goes back as is.
    again = client.submit_spec(run.spec)
    assert again.spec == run.spec


def test_image_is_a_spec_field(client):
    """image= is the spec's image (the estimator's custom_docker_image); no
    node here has the docker feature, which is why the run cannot start."""
    run = client.submit(command=["true"], experiment=uniq("sdkimg"), image="debian:12")
    try:
        assert run.spec["image"] == "debian:12"
        data = run.refresh().data
        assert data["status"] in ("queued", "failed"), data
        assert "docker" in (data.get("reason") or data.get("error") or ""), data
    finally:
        run.cancel()


# --------------------------------------------------------------------------
# listing


def test_runs_iterates_over_pages(client, cluster):
    exp = uniq("sdkpage")
    pool = uniq("nopool")  # no node: the runs stay queued
    ids = [client.submit(command=["true"], experiment=exp, compute_target=pool,
                         tags={"i": str(i), "even": str(i % 2 == 0)}).id for i in range(5)]
    pages = []
    real_call = client._call

    def counting(method, path, query=None, obj=None, timeout=None):
        if path == "/api/v1/runs" and method == "GET":
            pages.append(dict(query))
        return real_call(method, path, query, obj, timeout)

    client._call = counting
    try:
        got = [r.id for r in client.runs(experiment=exp, page_size=2)]
    finally:
        del client._call
    assert got == ids[::-1], (got, ids)
    assert len(pages) == 3 and "cursor" not in pages[0] and pages[1]["cursor"], pages
    assert [r.id for r in client.runs(experiment=exp, tag="even:True")] == ids[::-2]
    assert [r.id for r in client.runs(experiment=exp, tag=("i", "1"))] == [ids[1]]
    assert list(client.runs(experiment=exp, status="running")) == []
    assert all(r.data["status"] == "queued" for r in client.runs(experiment=exp, page_size=1))
    assert [r.id for r in client.runs(experiment=exp, owner="admin")] == ids[::-1]
    assert exp in [e["name"] for e in client.experiments()]
    for run_id in ids:
        client.run(run_id).cancel()


def test_nodes_and_experiments(client, cluster):
    _, agents = cluster
    nodes = {n["name"]: n for n in client.nodes()}
    for a in agents:
        assert nodes[a.name]["state"] == "ready", nodes
    assert isinstance(client.experiments(), list)


# --------------------------------------------------------------------------
# errors


def test_errors_carry_code_message_and_field(client, cluster, project, tmp_path):
    srv, _ = cluster
    with pytest.raises(sdk.TrainyardError) as e:
        client.submit(project, entry_script="train.py", experiment=uniq("sdkbad"),
                      node_count=0)
    err = e.value
    assert (err.status, err.code, err.field) == (400, "invalid_argument", "node_count")
    assert "node_count" in err.message and "node_count" in str(err)

    with pytest.raises(sdk.TrainyardError) as e:
        client.submit(project, entry_script="train.py", distributed_backend="horovod")
    assert (e.value.status, e.value.field) == (400, "distributed_backend")

    with pytest.raises(sdk.TrainyardError) as e:
        client.run("run-000000000000")
    assert (e.value.status, e.value.code, e.value.field) == (404, "not_found", None)

    with pytest.raises(sdk.TrainyardError) as e:
        sdk.Client(srv.url, "ty_" + "0" * 64).nodes()
    assert (e.value.status, e.value.code) == (401, "unauthenticated")

    viewer = srv.create_token("viewer")["secret"]
    with pytest.raises(sdk.TrainyardError) as e:
        sdk.Client(srv.url, viewer).submit(command=["true"])
    assert (e.value.status, e.value.code) == (403, "permission_denied")

    # Caught before anything is sent: the entry script is not packed.
    with pytest.raises(sdk.TrainyardError) as e:
        client.submit(project, entry_script="big.bin")
    assert (e.value.status, e.value.code, e.value.field) == (0, "invalid_argument",
                                                             "entry_script")
    assert ".trainyardignore" in e.value.message
    with pytest.raises(sdk.TrainyardError) as e:
        client.submit(str(tmp_path / "nowhere"), entry_script="train.py")
    assert e.value.field == "source_dir"

    # No server there: unavailable, no HTTP status.
    with pytest.raises(sdk.TrainyardError) as e:
        sdk.Client("http://127.0.0.1:1", "t").nodes()
    assert (e.value.status, e.value.code) == (0, "unavailable")


def test_large_spec_goes_gzip_compressed(client):
    sent = []
    real_open = client._opener.open

    def spying(req, *a, **kw):
        sent.append((req.get_method(), req.full_url, req.get_header("Content-encoding"),
                     len(req.data or b"") if isinstance(req.data, bytes) else None))
        return real_open(req, *a, **kw)

    env = {"V%03d" % i: "x" * 400 for i in range(200)}  # ~80 KiB of JSON
    client._opener.open = spying
    try:
        run = client.submit(command=["true"], experiment=uniq("sdkgz"),
                            compute_target=uniq("nopool"), environment_variables=env)
    finally:
        del client._opener.open
    assert run.spec["environment_variables"] == env
    posts = [s for s in sent if s[0] == "POST"]
    assert len(posts) == 1 and posts[0][2] == "gzip", sent
    assert posts[0][3] < sdk.GZIP_MIN, posts
    run.cancel()


# --------------------------------------------------------------------------
# packing: the CLI's rules


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
[!x-z]q.txt
out/**
!out/keep.txt
a/**/deep.txt
trailing.txt   
\\#hash.txt
\\!bang.txt
sp\\ ace.txt\\ 
"""

FILES = [
    "lib/util.py", "keep.log", "sub/keep.log", "sub/build/y.o", "docs/a.md", "sub/docs/b.tmp",
    "sub/data", "secret12.txt", "c.bin", "out/keep.txt", "lib/__init__.py", "sub/cache",
    "#other.txt", "a.log", "sub/b.log", "build/x.o", "docs/a.tmp", "data/d.csv",
    "sub/data2/data/e.csv", "x/cache/c.bin", "cache/z.txt", "secret1.txt", "a.bin", "b.bin",
    "out/a.txt", "out/deep/b.txt", ".git/HEAD", ".git/objects/ab/cd", "__pycache__/m.pyc",
    "lib/__pycache__/n.pyc", "trailing.txt", "#hash.txt", "!bang.txt", "sp ace.txt ",
    "aq.txt", "yq.txt", "a/deep.txt", "a/b/c/deep.txt", "b/a/deep.txt", "données/é.txt",
]


def _members(srv, snapshot_id):
    r = srv.get("/api/v1/snapshots/" + urllib.parse.quote(snapshot_id, safe=""))
    assert r.status == 200, r
    out = {}
    with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tf:
        for m in tf.getmembers():
            data = tf.extractfile(m).read() if m.isfile() else None
            out[m.name] = (m.type, m.mode, m.mtime, m.linkname, m.uid, m.gid, data)
    return out


def test_packing_matches_the_cli(client, cluster, tmp_path):
    srv, _ = cluster
    root = tmp_path / "proj"
    write(root, "train.py", "print('hi')\n", mode=0o755)
    for rel in FILES:
        write(root, rel, "content of %s\n" % rel)
    write(root, ".trainyardignore", IGNORE_RULES)
    os.symlink("train.py", str(root / "link.py"))
    os.makedirs(str(root / "empty"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    p = subprocess.run([BIN, "submit", "--json", "--server", srv.url, "--token", srv.admin_token,
                        str(root), "--entry", "train.py", "--experiment", uniq("pack"),
                        "--pool", uniq("nopool")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    by_cli = _members(srv, json.loads(p.stdout)["spec"]["source"])
    sid = client.upload(str(root), "train.py")
    by_sdk = _members(srv, sid)
    assert sorted(by_sdk) == sorted(by_cli)
    assert by_sdk == by_cli
    assert "empty" in by_sdk and "link.py" in by_sdk and "sp ace.txt " not in by_sdk
    # The same tree packs to the same bytes, so the same id.
    assert client.upload(str(root)) == sid


def test_ignore_patterns():
    rules = sdk._snapshot.IgnoreRules("*.py[co]\n/top/*.txt\n!/top/keep.txt\nlogs/\n"
                                      "a/**/b\n**/z\n[[:digit:]]x\n\\\\w\n")
    m = rules.match
    assert m("x.pyc", False) and m("d/x.pyo", False) and not m("x.py", False)
    assert m("top/a.txt", False) and not m("top/keep.txt", False)
    assert not m("top/sub/a.txt", False) and not m("x/top/a.txt", False)
    assert m("logs", True) and not m("logs", False) and m("d/logs", True)
    assert m("a/b", False) and m("a/x/y/b", False) and not m("xa/b", False)
    assert m("z", False) and m("q/r/z", True)
    assert m("1x", False) and not m("ax", False)
    assert m("\\w", False) and not m("w", False)


# --------------------------------------------------------------------------
# the client's configuration


def test_server_and_token_found_like_the_cli(cluster, monkeypatch, tmp_path):
    srv, _ = cluster
    for k in list(os.environ):
        if k.startswith("TRAINYARD_"):
            monkeypatch.delenv(k)
    # <data_dir>/server.url and admin.token, for a server on this machine.
    c = sdk.Client(data_dir=srv.data_dir)
    assert c.server == srv.url and c.nodes()
    # The current directory's ./var, as the CLI's --data default.
    monkeypatch.chdir(str(tmp_path))
    shutil.copytree(srv.data_dir, str(tmp_path / "var"),
                    ignore=lambda d, names: [n for n in names
                                             if n not in ("server.url", "admin.token")])
    assert sdk.Client().server == srv.url and sdk.Client().nodes()
    # The environment wins over the data directory; TRAINYARD_TOKEN over the file.
    user = srv.create_token("user")["secret"]
    monkeypatch.setenv("TRAINYARD_SERVER", srv.url + "/")
    monkeypatch.setenv("TRAINYARD_TOKEN", user)
    monkeypatch.setenv("TRAINYARD_TOKEN_FILE", str(tmp_path / "missing"))
    c = sdk.Client(data_dir=str(tmp_path / "elsewhere"))
    assert c.server == srv.url
    with pytest.raises(sdk.TrainyardError) as e:
        c.run("run-000000000000")
    assert e.value.code == "not_found"  # authenticated as the user
    monkeypatch.delenv("TRAINYARD_TOKEN")
    with pytest.raises(sdk.TrainyardError) as e:
        sdk.Client()
    assert e.value.field == "token_file" and "missing" in e.value.message
    token_file = write(tmp_path, "tok", "\n  %s  \n" % user)
    monkeypatch.setenv("TRAINYARD_TOKEN_FILE", token_file)
    assert sdk.Client().experiments() is not None
    # Arguments win over everything.
    assert sdk.Client(srv.url, token_file=token_file).server == srv.url
    with pytest.raises(sdk.TrainyardError) as e:
        sdk.Client("ftp://x")
    assert e.value.field == "server"
    with pytest.raises(sdk.TrainyardError) as e:
        sdk.Client(srv.url, token="a", token_file=token_file)
    assert e.value.field == "token"


# --------------------------------------------------------------------------
# the package


def test_package_is_lazy_and_task_helper_unchanged(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRAINYARD_") and k != "PYTHONPATH"}
    # Importing trainyard does not load the client.
    p = subprocess.run([PYTHON, "-c", "import sys, trainyard; "
                        "print('trainyard.client' in sys.modules, trainyard.Client.__module__, "
                        "sorted(n for n in ('Client', 'Run') if n in dir(trainyard)))"],
                       env=dict(env, PYTHONPATH=SDK_PATH), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[0] == "False trainyard.client ['Client', 'Run']", p.stdout
    # A task's helper directory holds __init__.py alone (the agent writes the
    # embedded copy): the logging API works, the client says what it needs.
    helper = tmp_path / "helper" / "trainyard"
    helper.mkdir(parents=True)
    shutil.copy(os.path.join(SDK_PATH, "trainyard", "__init__.py"), str(helper))
    code = textwrap.dedent("""
        import trainyard
        trainyard.log("loss", 0.5, step=1)
        try:
            trainyard.Client
        except ImportError as e:
            print("ImportError:", e)
        try:
            trainyard.nothing
        except AttributeError as e:
            print("AttributeError:", e)
        """)
    p = subprocess.run([PYTHON, "-c", code], env=dict(env, PYTHONPATH=str(tmp_path / "helper")),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == '##metric {"loss":0.5,"step":1}', lines
    assert lines[1].startswith("ImportError: trainyard.Client needs the trainyard package"), lines
    assert lines[2] == "AttributeError: module 'trainyard' has no attribute 'nothing'", lines


def test_package_type_checks(tmp_path):
    """mypy --strict finds the package (py.typed, annotations, the in-run
    helper's type declarations in __init__.pyi) and the README's examples
    consistent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env["MYPYPATH"] = SDK_PATH
    p = subprocess.run([PYTHON, "-m", "mypy", "--strict", "--python-version", "3.9",
                        "--cache-dir", str(tmp_path / "cache"),
                        os.path.join(SDK_PATH, "trainyard"),
                        os.path.join(REPO, "examples", "python-client", "notebook.py"),
                        os.path.join(REPO, "examples", "python-client", "sweep.py")],
                       env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert p.returncode == 0, p.stdout
    assert p.stdout.startswith("Success: no issues found"), p.stdout


def test_pip_installs_offline_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRAINYARD_", "PIP_")) and k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    p = subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", str(venv)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert p.returncode == 0, p.stdout.decode()
    # A copy of the package directory: the build writes its egg-info there.
    src = tmp_path / "src"
    shutil.copytree(SDK_PATH, str(src), ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                      "*.egg-info"))
    p = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index",
                        "--no-build-isolation", str(src)], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout.decode()
    code = ("import os, trainyard, trainyard.client as c; "
            "d = os.path.dirname(trainyard.__file__); "
            "print(d); print(trainyard.__version__); "
            "print(sorted(os.listdir(d))); print(trainyard.Client is c.Client)")
    p = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    where, version, files, same = p.stdout.splitlines()
    assert where.startswith(str(venv)) and "site-packages" in where, where
    assert version == trainyard.__version__
    for name in ("__init__.py", "__init__.pyi", "client.py", "sweeps.py", "_snapshot.py",
                 "py.typed"):
        assert name in files, files
    assert same == "True"


def test_readme_example_runs(cluster, tmp_path):
    """examples/python-client/notebook.py is the README's example, verbatim."""
    srv, _ = cluster
    out = sdk_harness.run_example(srv, "notebook.py", tmp_path)
    assert "trained: w=" in out and "\ncompleted\n" in out, out
    assert "['model.json']" in out, out
    assert "{'--lr': 0.05, '--epochs': 30}" in out, out
    assert out.rstrip().endswith("400 invalid_argument node_count"), out
