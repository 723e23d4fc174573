"""Runs with an `image` run in containers (issue 13 item 3).

A real Docker daemon and a real debian:12 image (dockerd.py: the daemon
the container tests share, started here when none runs), real agents started with
`--runtime docker`, which drive the Engine API over the daemon's socket.
The tests read the daemon's state through the same API to check what the
agent made and removed.

They skip, saying why, only where no daemon can run (dockerd.py).
"""

import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import zipfile

import pytest

from conftest import BIN, free_port, make_tgz, uniq, wait_for
from dockerd import BASE_IMAGE

# debian:12 with python3, built here once and kept (about 30 s)
PYTHON_IMAGE = "trainyard-test/python3:1"
# and with pip (about 60 s)
PIP_IMAGE = "trainyard-test/python3-pip:1"
DONE = ("completed", "failed", "canceled")
GRACE_S = 2
_daemon = []


@pytest.fixture(scope="module")
def daemon(docker_daemon):
    """The shared daemon (dockerd.py), for the helpers below."""
    _daemon[:] = [docker_daemon]
    return docker_daemon


def runtime_args(d):
    return ["--runtime", "docker", "--docker-socket", d.socket]


def docker_api(method, path, body=None, timeout=60):
    return _daemon[0].api(method, path, body, timeout)


def containers(label):
    return _daemon[0].containers(label)


def _build_image(daemon, tmp_path_factory, tag, dockerfile, **files):
    d = tmp_path_factory.mktemp("image")
    (d / "Dockerfile").write_text(dockerfile)
    for name, data in files.items():
        (d / name).write_bytes(data)
    p = subprocess.run(["docker", "build", "--network", "host", "-t", tag, str(d)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
                       env=dict(daemon.env, DOCKER_BUILDKIT="0"))
    assert p.returncode == 0, p.stdout.decode()[-3000:]


def _debian_image(daemon, tmp_path_factory, tag, packages):
    """debian:12 with these Debian packages, built once and kept."""
    if docker_api("GET", "/images/%s/json" % tag)[0] != 200:
        _build_image(daemon, tmp_path_factory, tag,
                     "FROM %s\nRUN apt-get update && apt-get install -y "
                     "--no-install-recommends %s && rm -rf /var/lib/apt/lists/*\n"
                     % (BASE_IMAGE, packages))
    return tag


@pytest.fixture(scope="module")
def python_image(daemon, tmp_path_factory):
    return _debian_image(daemon, tmp_path_factory, PYTHON_IMAGE, "python3")


@pytest.fixture(scope="module")
def pip_image(daemon, tmp_path_factory):
    return _debian_image(daemon, tmp_path_factory, PIP_IMAGE, "python3 python3-pip")


@pytest.fixture
def docker_agent(daemon, server_factory, agent_factory):
    """A server and one agent with --runtime docker; at the end no container
    of that node is left."""
    server = server_factory(extra_args=["--unschedulable-timeout", "0"])
    pool = uniq("dpool")
    agent = agent_factory(server, uniq("dnode"),
                          extra_args=["--pool", pool] + runtime_args(daemon), grace=GRACE_S)
    yield server, agent, pool
    agent.stop()
    assert containers("trainyard.node=" + agent.name) == []


def _submit(server, pool, **fields):
    spec = {"experiment": uniq("img"), "compute_target": pool, "image": BASE_IMAGE}
    spec.update(fields)
    r = server.post("/api/v1/runs", spec)
    assert r.status == 201, r.body
    return r.body["id"]


def _wait_done(server, run_id, timeout=60):
    holder = {}

    def done():
        holder["run"] = server.get("/api/v1/runs/" + run_id).body
        return holder["run"]["status"] in DONE

    wait_for(done, timeout, lambda: "run %s to end: %s" % (run_id, holder.get("run")))
    return holder["run"]


def _logs(server, run_id):
    r = server.get("/api/v1/runs/%s/logs" % run_id)
    assert r.status == 200
    return r.body if isinstance(r.body, str) else r.body.decode()


def test_registers_docker_feature(docker_agent):
    server, agent, _ = docker_agent
    node = server.get("/api/v1/nodes/" + agent.name).body
    assert "docker" in node["features"], node


def test_command_runs_in_the_image(docker_agent):
    server, agent, pool = docker_agent
    script = ("echo hello-from-image; "
              "test -f /.dockerenv && echo dockerenv=yes; "
              "echo cgroup:; cat /proc/self/cgroup; "
              "echo uid=$(id -u) pwd=$(pwd); "
              "echo out > $TRAINYARD_OUTPUT_DIR/result.txt; "
              "echo to-stderr >&2; "
              "echo '##metric {\"loss\": 0.5}'")
    run_id = _submit(server, pool, command=["sh", "-c", script])
    run = _wait_done(server, run_id)
    logs = _logs(server, run_id)
    print(logs)
    assert run["status"] == "completed", (run, logs)
    assert "hello-from-image" in logs
    assert "dockerenv=yes" in logs
    assert "to-stderr" in logs
    cgroup = logs.split("cgroup:", 1)[1].split("uid=", 1)[0]
    with open("/proc/self/cgroup") as f:
        host_v1 = any(line.split(":")[1] for line in f if line.count(":") >= 2)
    if host_v1:  # cgroup v1: the container's own cgroups are /docker/<id>
        assert "/docker/" in cgroup, cgroup
    uid = logs.split("uid=", 1)[1].split()[0]
    assert uid != "0", logs  # the task's own unprivileged uid, not the image's root
    task = run["tasks"][0]
    # the task directory, mounted at the same path, is the working directory
    assert "pwd=%s/tasks/%s/src\n" % (agent.work, task["id"]) in logs, logs
    arts = server.get("/api/v1/runs/%s/artifacts" % run_id).body["items"]
    assert [a["path"] for a in arts] == ["result.txt"], arts
    metrics = server.get("/api/v1/runs/%s/metrics" % run_id).body["items"]
    assert [m["name"] for m in metrics] == ["loss"], metrics
    assert task["status"] == "succeeded"
    assert containers("trainyard.run=" + run_id) == []


def test_entry_script_runs_with_the_images_python(docker_agent, python_image):
    """entry_script runs with the image's python3; the trainyard helper the
    agent mounts is importable and its metrics arrive."""
    server, agent, pool = docker_agent
    tgz = make_tgz([("train.py", "file",
                     b"import sys, trainyard\n"
                     b"print('python', sys.executable, sys.argv[1:])\n"
                     b"trainyard.log('loss', 0.25, step=3)\n")])
    snapshot = server.upload_snapshot(tgz)["id"]
    run_id = _submit(server, pool, image=python_image, source=snapshot,
                     entry_script="train.py", script_params={"--lr": 0.1})
    run = _wait_done(server, run_id)
    logs = _logs(server, run_id)
    assert run["status"] == "completed", (run, logs)
    assert "python /usr/bin/python3 ['--lr', '0.1']" in logs, logs
    metrics = server.get("/api/v1/runs/%s/metrics" % run_id).body["items"]
    assert [(m["name"], m["last"], m["last_step"]) for m in metrics] == [("loss", 0.25, 3)]

    # debian:12 (minbase) has no python3: exit 127, as for a process, and
    # the container's init says why in the log
    run_id = _submit(server, pool, source=snapshot, entry_script="train.py")
    run = _wait_done(server, run_id)
    logs = _logs(server, run_id)
    print(logs)
    assert run["status"] == "failed" and run["tasks"][0]["exit_code"] == 127, run
    assert "exec python3 failed" in logs, logs


def test_cli_submit_with_image_and_a_source_directory(docker_agent, tmp_path):
    """`trainyard submit DIR --image`: the snapshot, unpacked on the node,
    is the container's working directory."""
    server, agent, pool = docker_agent
    src = tmp_path / "proj"
    src.mkdir()
    (src / "run.sh").write_text("echo from-snapshot $(cat data.txt); test -f /.dockerenv\n")
    (src / "data.txt").write_text("42\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    p = subprocess.run([BIN, "submit", "--server", server.url, "--token", server.admin_token,
                        str(src), "--image", BASE_IMAGE, "--pool", pool, "--command",
                        "--follow", "--", "sh", "run.sh"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out
    assert "from-snapshot 42" in out, out


def test_cancel_stops_the_container_within_the_grace(docker_agent):
    server, agent, pool = docker_agent
    # One that leaves on SIGTERM, one that ignores it (SIGKILL after the grace).
    for script in ("echo started; sleep 300",
                   "trap '' TERM; echo started; while :; do sleep 0.2; done"):
        run_id = _submit(server, pool, command=["sh", "-c", script])
        wait_for(lambda: "started" in _logs(server, run_id), 60,
                 "the container to start: %s" % run_id)
        running = containers("trainyard.run=" + run_id)
        assert len(running) == 1 and running[0]["State"] == "running", running
        labels = running[0]["Labels"]
        assert labels["trainyard.node"] == agent.name
        assert labels["trainyard.task"] == server.get(
            "/api/v1/runs/" + run_id).body["tasks"][0]["id"]
        t0 = time.monotonic()
        assert server.post("/api/v1/runs/%s/cancel" % run_id, {}).status == 200
        wait_for(lambda: containers("trainyard.run=" + run_id) == [], GRACE_S + 8,
                 "the canceled run's container to be removed")
        print("%r: container gone %.2f s after cancel" % (script, time.monotonic() - t0))
        run = _wait_done(server, run_id)
        assert run["status"] == "canceled", run


def test_bad_image_fails_with_the_daemons_message(docker_agent):
    server, agent, pool = docker_agent
    image = "trainyard-test/no-such-image:%s" % uniq("v")
    run_id = _submit(server, pool, image=image, command=["true"])
    run = _wait_done(server, run_id, timeout=120)
    print(run["error"])
    assert run["status"] == "failed", run
    assert "cannot pull image '%s'" % image in run["error"], run
    # the daemon's own words follow ours
    assert len(run["error"]) > len("cannot pull image '%s': " % image) + 10, run
    assert "trainyard: pulling image '%s'" % image in _logs(server, run_id)
    # the run's events: the pull began, then the run failed with its error
    events = [(e["type"], e["data"].get("message") or e["data"].get("status"))
              for e in run["events"]]
    pulling = events.index(("progress", "pulling image '%s'" % image))
    assert events.index(("status", "failed")) > pulling, events
    assert [e for e in run["events"] if e["type"] == "progress"][0]["data"]["task"] == \
        run["tasks"][0]["id"]

    r = server.post("/api/v1/runs", {"experiment": "e", "command": ["true"],
                                     "image": "Not An Image"})
    assert r.status == 400 and r.body["error"]["field"] == "image", r.body


def test_gpus_are_requested_from_the_daemon(daemon, server_factory, agent_factory):
    """No GPU here: the daemon refuses the task's device request for the
    nvidia driver, which shows the request was made (its exact indices
    are in tests/unit/test_docker.c)."""
    server = server_factory()
    pool = uniq("gpool")
    agent = agent_factory(server, uniq("gnode"), gpus=2,
                          extra_args=["--pool", pool] + runtime_args(daemon))
    run_id = _submit(server, pool, use_gpu=True, command=["true"])
    run = _wait_done(server, run_id)
    print(run["error"])
    assert run["status"] == "failed", run
    assert "cannot start the container" in run["error"] and "nvidia" in run["error"], run
    assert containers("trainyard.node=" + agent.name) == []


def test_pytorch_ranks_run_in_the_image(docker_agent):
    server, agent, pool = docker_agent
    run_id = _submit(server, pool, distributed_backend="pytorch", process_count_per_node=2,
                     command=["sh", "-c", "echo rank=$RANK of $WORLD_SIZE "
                                          "master=$MASTER_ADDR:$MASTER_PORT; "
                                          "test -f /.dockerenv"])
    run = _wait_done(server, run_id)
    logs = _logs(server, run_id)
    assert run["status"] == "completed", (run, logs)
    assert "[rank-0] rank=0 of 2" in logs and "[rank-1] rank=1 of 2" in logs, logs


def test_ps_tasks_run_in_the_image(docker_agent):
    """ps: TF_CONFIG in every container; the run completes with its worker,
    and the parameter server's container (which would run on) is stopped."""
    server, agent, pool = docker_agent
    script = ('echo "$TRAINYARD_TASK_TYPE tf=$TF_CONFIG"; '
              'if [ "$TRAINYARD_TASK_TYPE" = ps ]; then exec sleep 300; fi')
    run_id = _submit(server, pool, distributed_backend="ps", worker_count=1,
                     parameter_server_count=1, command=["sh", "-c", script])
    run = _wait_done(server, run_id)
    logs = _logs(server, run_id)
    assert run["status"] == "completed", (run, logs)
    assert '[worker-0] worker tf={"cluster"' in logs and '[ps-0] ps tf={"cluster"' in logs, logs
    wait_for(lambda: containers("trainyard.run=" + run_id) == [], GRACE_S + 8,
             "the parameter server's container to be removed")


def test_restarted_agent_removes_what_it_left(docker_agent):
    server, agent, pool = docker_agent
    run_id = _submit(server, pool, command=["sh", "-c", "echo started; sleep 300"])
    wait_for(lambda: "started" in _logs(server, run_id), 60, "the container to start")
    agent.kill()
    left = containers("trainyard.run=" + run_id)
    assert len(left) == 1, left
    agent.start(server, extra_args=["--pool", pool] + runtime_args(_daemon[0]), grace=GRACE_S)
    wait_for(lambda: containers("trainyard.run=" + run_id) == [], 30,
             "the restarted agent to remove the container its predecessor left")
    run = _wait_done(server, run_id)
    assert run["status"] == "failed", run


def test_stopping_agent_removes_its_containers(docker_agent):
    server, agent, pool = docker_agent
    run_id = _submit(server, pool, command=["sh", "-c", "echo started; sleep 300"])
    wait_for(lambda: "started" in _logs(server, run_id), 60, "the container to start")
    assert len(containers("trainyard.run=" + run_id)) == 1
    agent.stop()  # SIGTERM: a clean, sanitizer-clean exit 0
    assert containers("trainyard.run=" + run_id) == []


def test_agent_refuses_to_start_without_a_daemon(server_factory, agent_factory, tmp_path):
    """--runtime docker promises the feature: with no daemon the agent says
    so and exits instead of registering without it."""
    server = server_factory()
    agent = agent_factory(server, uniq("nodaemon"), start=False)
    with pytest.raises(AssertionError, match="does not answer"):
        agent.start(server, extra_args=["--runtime", "docker", "--docker-socket",
                                        str(tmp_path / "no.sock")])
    assert agent.proc.wait(10) == 1
    agent.proc = None


def test_image_runs_need_a_docker_node(server_factory, agent_factory):
    """No daemon needed: placement sends runs with an image only to nodes
    with the docker feature."""
    server = server_factory(extra_args=["--unschedulable-timeout", "0"])
    pool = uniq("plain")
    agent_factory(server, uniq("pnode"), extra_args=["--pool", pool])
    run_id = _submit(server, pool, command=["true"])
    run = server.get("/api/v1/runs/" + run_id).body
    assert "docker" not in server.get("/api/v1/nodes").body["items"][0]["features"]
    # At submission, or already the pass's verdict.
    assert ("0 ready node(s) that suit this run" in (run["reason"] or "") or
            "with docker, ready or not: 0" in (run["reason"] or run["error"] or "")), run
    run = _wait_done(server, run_id)
    assert run["status"] == "failed", run
    assert "unschedulable: nodes of pool '%s' with docker, ready or not: 0" % pool in \
        run["error"], run


def _progress(run):
    """The messages of a run's progress events, oldest first (printed with
    their times)."""
    events = [e for e in run["events"] if e["type"] in ("progress", "status")]
    print("\n".join("%s %s" % (e["time"], e["data"].get("message") or e["data"]["status"])
                    for e in events))
    return [e["data"]["message"] for e in events if e["type"] == "progress"]


@pytest.fixture(scope="module")
def registry(daemon, tmp_path_factory):
    """A real image registry on 127.0.0.1 (Debian's docker-registry): no
    other can be reached here. The daemon pushes to and pulls from it
    without TLS (loopback registries are insecure by default)."""
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("docker-registry is not installed: `make deps` (.ci/install-deps) "
                    "installs it")
    d = tmp_path_factory.mktemp("registry")
    port = free_port()
    (d / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
        "http:\n  addr: 127.0.0.1:%d\n" % (d / "data", port))
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen([exe, "serve", str(d / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def answers():
        try:
            return urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=2).status
        except OSError:
            return proc.poll() is not None  # ended: fail below
    try:
        wait_for(answers, 30, "the registry to answer")
        assert proc.poll() is None, (d / "log").read_text()
        yield "127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(30)


def test_pull_progress_in_the_runs_events(docker_agent, registry, tmp_path_factory):
    """An image the daemon lacks is pulled from a registry: the run's events
    say so (pulling, pulled with its digest and size), the log has the
    steps, and the run runs in it."""
    server, agent, pool = docker_agent
    image = "%s/trainyard-test/pulled:%s" % (registry, uniq("v"))
    # a layer of its own (3 MiB), so the pull downloads something
    _build_image(_daemon[0], tmp_path_factory, image,
                 "FROM %s\nCOPY blob /blob\n" % BASE_IMAGE, blob=os.urandom(3 << 20))
    p = subprocess.run(["docker", "push", image], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300, env=_daemon[0].env)
    assert p.returncode == 0, p.stdout.decode()[-3000:]
    assert docker_api("DELETE", "/images/%s" % image)[0] == 200
    assert not _daemon[0].has_image(image)
    try:
        run_id = _submit(server, pool, image=image, command=["sh", "-c", "wc -c < /blob"])
        run = _wait_done(server, run_id, timeout=120)
        logs = _logs(server, run_id)
        progress = _progress(run)
        print(progress, logs)
        assert run["status"] == "completed", (run, logs)
        assert "3145728" in logs, logs
        assert progress[0] == "pulling image '%s'" % image, progress
        pulled = [m for m in progress if m.startswith("pulled image")]
        assert len(pulled) == 1, progress
        # its digest and what came down: the new layer, about 3 MiB
        assert pulled[0].startswith("pulled image '%s' (sha256:" % image), pulled
        assert " of 3.0 MiB" in pulled[0] or " of 3.1 MiB" in pulled[0], pulled
        assert "trainyard: pull: " in logs and "Pull complete" in logs, logs
    finally:
        docker_api("DELETE", "/images/%s?force=1" % image)


# ---- pip_packages in images ----

def _wheel(name, value):
    """A pure-Python wheel of module `name` (VALUE = value), made here:
    nothing can be fetched from PyPI."""
    dist = name.replace("-", "_")
    files = {"%s/__init__.py" % dist: ("VALUE = %r\n" % value).encode(),
             "%s-0.1.dist-info/METADATA" % dist:
                 ("Metadata-Version: 2.1\nName: %s\nVersion: 0.1\n" % name).encode(),
             "%s-0.1.dist-info/WHEEL" % dist:
                 b"Wheel-Version: 1.0\nGenerator: trainyard-test\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += "%s,sha256=%s,%d\n" % (path, digest, len(data))
    record += "%s-0.1.dist-info/RECORD,,\n" % dist
    files["%s-0.1.dist-info/RECORD" % dist] = record.encode()
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return "%s-0.1-py3-none-any.whl" % dist, raw.getvalue()


@pytest.fixture(scope="module")
def package_index(tmp_path_factory):
    """A directory of wheels served on 127.0.0.1 (pip's --find-links):
    the builds reach it through the host's network, as they would an
    index the node reaches. Yields (url, add(name, value))."""
    d = tmp_path_factory.mktemp("wheels")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(d), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def add(name, value):
        fname, data = _wheel(name, value)
        (d / fname).write_bytes(data)

    try:
        yield "http://127.0.0.1:%d/" % httpd.server_address[1], add
    finally:
        httpd.shutdown()
        httpd.server_close()


def _derived_tags(run):
    tags = set()
    for m in _progress(run):
        for word in m.split():
            if word.startswith("trainyard-derived:"):
                tags.add(word.rstrip(":"))
    return tags


def test_pip_packages_build_a_derived_image_once(docker_agent, pip_image, package_index):
    """pip_packages with an image: a derived image is built (pip from the
    run's PIP_* settings, through the host's network), tagged by the image
    and package set, and the next run with the same set uses it as is."""
    server, agent, pool = docker_agent
    url, add = package_index
    name = uniq("typkg").replace("-", "_")
    add(name, 42)
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url}
    command = ["python3", "-c", "import %s as m; print('typkg says', m.VALUE)" % name]
    tags = set()
    try:
        first = _submit(server, pool, image=pip_image, pip_packages=[name],
                        environment_variables=env, command=command)
        run = _wait_done(server, first, timeout=300)
        logs = _logs(server, first)
        progress = _progress(run)
        tags |= _derived_tags(run)
        print(progress)
        assert run["status"] == "completed", (run, logs)
        assert "typkg says 42" in logs, logs
        assert len(tags) == 1, progress
        tag = tags.pop()
        tags.add(tag)
        assert "building image %s: pip_packages on '%s'" % (tag, pip_image) in progress
        assert "built image %s (pip_packages on '%s')" % (tag, pip_image) in progress
        assert "Successfully installed %s-0.1" % name.replace("_", "-") in logs or \
            "Successfully installed %s-0.1" % name in logs, logs
        status, img = docker_api("GET", "/images/%s/json" % tag)
        assert status == 200 and img["Config"]["Labels"]["trainyard.base"] == pip_image, img

        # the same image and packages (in another order, repeated): no build
        second = _submit(server, pool, image=pip_image, pip_packages=[name, name],
                         environment_variables=env, command=command)
        run = _wait_done(server, second, timeout=120)
        progress = _progress(run)
        assert run["status"] == "completed", run
        assert "typkg says 42" in _logs(server, second)
        assert "using the cached image %s (pip_packages on '%s')" % (tag, pip_image) \
            in progress, progress
        assert not any(m.startswith("building image") for m in progress), progress
        assert docker_api("GET", "/images/%s/json" % tag)[1]["Created"] == img["Created"]
        assert containers("trainyard.run=" + second) == []
    finally:
        for tag in tags:
            docker_api("DELETE", "/images/%s" % tag)


def test_tasks_needing_one_derived_image_build_it_once(docker_agent, pip_image,
                                                        package_index):
    """Two ranks of one run on one node need the same derived image at the
    same time: one builds it, the other waits for that build."""
    server, agent, pool = docker_agent
    url, add = package_index
    name = uniq("typkg").replace("-", "_")
    add(name, 7)
    run_id = _submit(server, pool, image=pip_image, pip_packages=[name],
                     distributed_backend="pytorch", process_count_per_node=2,
                     environment_variables={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url},
                     command=["python3", "-c", "import os, %s as m; print('rank', "
                              "os.environ['RANK'], m.VALUE)" % name])
    run = _wait_done(server, run_id, timeout=300)
    tags = _derived_tags(run)
    try:
        logs = _logs(server, run_id)
        progress = _progress(run)
        print(progress)
        assert run["status"] == "completed", (run, logs)
        assert "rank 0 7" in logs and "rank 1 7" in logs, logs
        # one build event per waiting task, of one build: the daemon ran it once
        assert len(tags) == 1, progress
        assert logs.count("Successfully installed") == 2, logs  # its output, in both logs
        assert "waiting for another task's build of the same image" in logs, logs
        built = [m for m in progress if m.startswith("built image")]
        assert len(built) == 2, progress
    finally:
        for tag in tags:
            docker_api("DELETE", "/images/%s" % tag)


def test_cancel_during_a_build(docker_agent, pip_image, package_index):
    """A run canceled while its derived image is built ends at once; the
    build runs on in the daemon and its image is there for the next run."""
    server, agent, pool = docker_agent
    url, add = package_index
    name = uniq("typkg").replace("-", "_")
    add(name, 1)
    run_id = _submit(server, pool, image=pip_image, pip_packages=[name],
                     environment_variables={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url},
                     command=["sleep", "300"])  # canceled whether the build has ended or not
    holder = {}

    def building():
        holder["run"] = server.get("/api/v1/runs/" + run_id).body
        return any(m.startswith("building image") for m in _progress(holder["run"]))

    wait_for(building, 120, lambda: "the build to start: %s" % holder.get("run"))
    tag = _derived_tags(holder["run"]).pop()
    try:
        assert server.post("/api/v1/runs/%s/cancel" % run_id, {}).status == 200
        run = _wait_done(server, run_id)
        assert run["status"] == "canceled", run
        assert containers("trainyard.run=" + run_id) == []
        wait_for(lambda: _daemon[0].has_image(tag), 300, "the build to end with its image")
    finally:
        wait_for(lambda: docker_api("DELETE", "/images/%s" % tag)[0] in (200, 404), 300,
                 "the derived image to be removable")


def test_failed_builds_end_the_run_with_their_message(docker_agent, pip_image, package_index):
    server, agent, pool = docker_agent
    url, _ = package_index
    missing = uniq("nosuchpkg")
    run_id = _submit(server, pool, image=pip_image, pip_packages=[missing],
                     environment_variables={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url},
                     command=["true"])
    run = _wait_done(server, run_id, timeout=300)
    print(run["error"])
    assert run["status"] == "failed", run
    assert "cannot install pip_packages in image '%s': the build of trainyard-derived:" \
        % pip_image in run["error"], run
    # the build's error and pip's own last words
    assert "returned a non-zero code: 1" in run["error"], run
    assert "its last output: ERROR: No matching distribution found for %s" % missing \
        in run["error"], run

    # an image without python3: the same, with the shell's words
    run_id = _submit(server, pool, pip_packages=[missing], command=["true"])
    run = _wait_done(server, run_id, timeout=300)
    print(run["error"])
    assert run["status"] == "failed", run
    assert "cannot install pip_packages in image '%s'" % BASE_IMAGE in run["error"], run
    assert "returned a non-zero code: 127; its last output: env: 'python3': No such file " \
        "or directory" in run["error"], run
    assert containers("trainyard.run=" + run_id) == []


def test_conda_packages_with_an_image_are_refused(server_factory):
    server = server_factory()
    r = server.post("/api/v1/runs", {"experiment": "e", "command": ["true"],
                                     "image": BASE_IMAGE, "conda_packages": ["numpy"]})
    assert r.status == 400 and r.body["error"]["field"] == "conda_packages", r.body
    assert "install them in the image" in r.body["error"]["message"], r.body


# ---- the mpi backend in images ----

# debian:12 with Open MPI, python3 and mpi4py, built here once and kept
# (about 90 s)
MPI_IMAGE = "trainyard-test/openmpi:1"

# Each rank says where it runs: /.dockerenv exists only in a container, its
# PID 1 is docker-init with the container's command (mpirun in the
# launcher's, trainyard-rsh --hold in a worker's), and its mounts show
# whose task directories it has.
MPI_RANKS = b"""\
import json, os, signal, sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
with open("/proc/1/cmdline", "rb") as f:
    init = f.read().replace(b"\\0", b" ").decode()
info = {"rank": comm.Get_rank(), "size": comm.Get_size(),
        "sum": comm.allreduce(comm.Get_rank(), op=MPI.SUM),
        "dockerenv": os.path.exists("/.dockerenv"), "init": init, "uid": os.getuid(),
        "node": os.environ.get("TRAINYARD_NODE"),
        "task": "%s-%s" % (os.environ.get("TRAINYARD_TASK_TYPE"),
                           os.environ.get("TRAINYARD_TASK_INDEX")),
        "output_dir": os.environ.get("TRAINYARD_OUTPUT_DIR")}
with open("/proc/self/mountinfo") as f:  # task directories mounted in its container
    info["mounts"] = sorted({ln.split()[4] for ln in f if "/tasks/" in ln.split()[4]})
with open(os.path.join(os.environ["TRAINYARD_OUTPUT_DIR"], "rank-%d.txt" % comm.Get_rank()),
          "w") as f:
    f.write("rank %d\\n" % comm.Get_rank())
os.write(1, ("RANKINFO %s\\n" % json.dumps(info)).encode())  # one write: ranks share a pipe
comm.Barrier()
if "--sleep" in sys.argv:
    os.write(1, b"rank %d sleeps\\n" % comm.Get_rank())
    signal.pause()  # until the cancel's SIGTERM
"""


@pytest.fixture(scope="module")
def mpi_image(daemon, tmp_path_factory):
    return _debian_image(daemon, tmp_path_factory, MPI_IMAGE,
                         "openmpi-bin python3 python3-mpi4py")


@pytest.fixture
def mpi_nodes(daemon, server_factory, agent_factory):
    """A server and two agents with --runtime docker at distinct hosts on
    loopback, 127.0.0.2 and 127.0.0.3. Open MPI takes a host whose address
    is one of this machine's (127.0.0.1) for mpirun's own and starts its
    ranks itself; neither of these is, so mpirun (in the launcher's
    container) reaches both through trainyard-rsh and /v1/exec, and where
    each rank runs shows which agent started it. The image brings Open
    MPI. At the end no container of either node is left."""
    server = server_factory(extra_args=["--unschedulable-timeout", "0"])
    pool = uniq("mpool")
    agents = [agent_factory(server, uniq("mnode"), cpus=2, grace=GRACE_S,
                            extra_args=["--pool", pool, "--listen", host] + runtime_args(daemon))
              for host in ("127.0.0.2:0", "127.0.0.3:0")]
    yield server, agents, pool
    for a in agents:
        a.stop()
        assert containers("trainyard.node=" + a.name) == []


def _task_logs(server, run_id, task):
    text = server.get("/api/v1/runs/%s/logs?task=%s" % (run_id, task)).body
    return text.decode() if isinstance(text, bytes) else text


def _rank_infos(logs):
    return {i["rank"]: i for i in (json.loads(ln.split("RANKINFO ", 1)[1])
                                   for ln in logs.splitlines() if "RANKINFO " in ln)}


def _submit_mpi(server, pool, image, *params):
    snapshot = server.upload_snapshot(make_tgz([("ranks.py", "file", MPI_RANKS)]))["id"]
    return _submit(server, pool, image=image, source=snapshot, entry_script="ranks.py",
                   distributed_backend="mpi", node_count=2, process_count_per_node=1,
                   script_params={p: "" for p in params} if params else None)


def test_mpi_ranks_run_in_containers_on_both_nodes(mpi_nodes, mpi_image):
    """mpirun runs in the launcher's container and reaches each node through
    the static trainyard-rsh, whose /v1/exec starts orted in that node's
    worker container (docker exec): rank r runs in worker-r's container,
    with worker-r's environment, as the run's uid. Both ranks' output is in
    the launcher's log, their files in the run's artifacts, and every
    container is removed."""
    server, agents, pool = mpi_nodes
    run_id = _submit_mpi(server, pool, mpi_image)
    run = _wait_done(server, run_id, timeout=180)
    logs = _logs(server, run_id)
    print(logs)
    assert run["status"] == "completed", (run, logs)
    tasks = {t["name"]: t for t in run["tasks"]}
    assert sorted(tasks) == ["launcher", "worker-0", "worker-1"], tasks
    # the workers' containers only held their nodes: stopped once the
    # launcher is done, they end succeeded, as on hosts
    assert {t["status"] for t in tasks.values()} == {"succeeded"}, tasks
    assert tasks["launcher"]["node"] == tasks["worker-0"]["node"] != tasks["worker-1"]["node"]
    work = {a.name: a.work for a in agents}
    ranks = _rank_infos(_task_logs(server, run_id, "launcher"))
    assert sorted(ranks) == [0, 1], logs
    for r, info in ranks.items():
        worker = tasks["worker-%d" % r]
        assert info["size"] == 2 and info["sum"] == 1, info
        assert info["dockerenv"], info  # in a container, not on the host
        assert info["uid"] != 0, info  # as the run's own uid, as on a host
        assert info["task"] == "worker-%d" % r, info  # node r's worker task
        assert info["node"] == worker["node"], info
        assert "%s/tasks/%s/src/outputs" % (work[worker["node"]], worker["id"]) == \
            info["output_dir"], info
        # in the worker's container (its holder is PID 1's child), which has
        # that worker's directory and no other
        assert info["init"].startswith("/sbin/docker-init -- /usr/local/libexec/trainyard-rsh "
                                       "--hold"), info
        assert info["mounts"] == ["%s/tasks/%s/src" % (work[worker["node"]], worker["id"])], info
    items = server.get("/api/v1/runs/%s/artifacts" % run_id).body["items"]
    assert sorted(i["path"] for i in items) == ["rank-0.txt", "rank-1.txt"], items
    # orted's own words reach the worker's log (none here but the stop)
    assert "[worker-1] trainyard: stopped" in logs, logs
    wait_for(lambda: containers("trainyard.run=" + run_id) == [], GRACE_S + 8,
             "the run's containers to be removed")


def _processes_with(marker):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_mpi_cancel_leaves_no_container_nor_process(mpi_nodes, mpi_image):
    server, agents, pool = mpi_nodes
    marker = "--" + uniq("sleep").replace("-", "")
    run_id = _submit_mpi(server, pool, mpi_image, "--sleep", marker)

    def both_sleep():
        text = _task_logs(server, run_id, "launcher")
        return "rank 0 sleeps" in text and "rank 1 sleeps" in text

    wait_for(both_sleep, 180, lambda: "both ranks to run: %s" % _logs(server, run_id))
    running = containers("trainyard.run=" + run_id)
    assert sorted(c["State"] for c in running) == ["running"] * 3, running
    by_node = [c["Labels"]["trainyard.node"] for c in running]
    # the launcher's and worker-0's on one node, worker-1's on the other
    assert sorted(by_node.count(a.name) for a in agents) == [1, 2], by_node
    # seen from the host: the two ranks, mpirun and the launcher's init
    assert len(_processes_with(marker)) == 4, _processes_with(marker)
    t0 = time.monotonic()
    assert server.post("/api/v1/runs/%s/cancel" % run_id, {}).status == 200
    wait_for(lambda: containers("trainyard.run=" + run_id) == [], GRACE_S + 8,
             "the canceled run's containers to be removed")
    print("containers gone %.2f s after cancel" % (time.monotonic() - t0))
    assert _processes_with(marker) == []
    run = _wait_done(server, run_id)
    assert run["status"] == "canceled", run
    assert {t["status"] for t in run["tasks"]} == {"killed"}, run["tasks"]


def test_mpi_agent_stop_removes_its_containers(mpi_nodes, mpi_image):
    """An agent stopping while orted runs in its worker's container (an exec
    in flight) removes its containers and exits cleanly; the gang rule then
    ends the run and the other node's containers go too."""
    server, agents, pool = mpi_nodes
    run_id = _submit_mpi(server, pool, mpi_image, "--sleep")
    wait_for(lambda: "rank 1 sleeps" in _task_logs(server, run_id, "launcher"), 180,
             lambda: "both ranks to run: %s" % _logs(server, run_id))
    run = server.get("/api/v1/runs/" + run_id).body
    worker1 = [t for t in run["tasks"] if t["name"] == "worker-1"][0]
    other = [a for a in agents if a.name == worker1["node"]][0]
    other.stop()  # SIGTERM: a clean, sanitizer-clean exit 0
    assert containers("trainyard.node=" + other.name) == []
    run = _wait_done(server, run_id)
    assert run["status"] == "failed", run
    wait_for(lambda: containers("trainyard.run=" + run_id) == [], GRACE_S + 8,
             "the other node's containers to be removed")


def test_mpi_with_an_image_is_accepted(server_factory, agent_factory):
    """Submission no longer refuses the mpi backend with an image: the run
    has its launcher and one worker per node, and needs nodes with docker
    only (the image brings Open MPI): a pool whose node has the host's
    mpirun but no docker cannot run it, and the error names docker alone."""
    server = server_factory(extra_args=["--unschedulable-timeout", "0"])
    pool = uniq("plain")
    agent_factory(server, uniq("pnode"), extra_args=["--pool", pool])
    r = server.post("/api/v1/runs", {"experiment": uniq("mpi"), "command": ["true"],
                                     "image": BASE_IMAGE, "distributed_backend": "mpi",
                                     "node_count": 1, "compute_target": pool})
    assert r.status == 201, r.body
    run = server.get("/api/v1/runs/" + r.body["id"]).body
    assert sorted(t["name"] for t in run["tasks"]) == ["launcher", "worker-0"], run["tasks"]
    run = _wait_done(server, r.body["id"])
    assert run["status"] == "failed", run
    assert "unschedulable: nodes of pool '%s' with docker, ready or not: 0" % pool in \
        run["error"], run["error"]
