"""Runs with an `image` run in containers (issue 13 item 3).

A real Docker daemon and a real debian:12 image (dockerd.py: the daemon
the container tests share, started here when none runs), real agents started with
`--runtime docker`, which drive the Engine API over the daemon's socket.
The tests read the daemon's state through the same API to check what the
agent made and removed.

They skip, saying why, only where no daemon can run (dockerd.py).
"""

import os
import subprocess
import time

import pytest

from conftest import BIN, make_tgz, uniq, wait_for
from dockerd import BASE_IMAGE

# debian:12 with python3, built here once and kept (about 30 s)
PYTHON_IMAGE = "trainyard-test/python3:1"
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


@pytest.fixture(scope="module")
def python_image(daemon, tmp_path_factory):
    if docker_api("GET", "/images/%s/json" % PYTHON_IMAGE)[0] != 200:
        d = tmp_path_factory.mktemp("pyimage")
        (d / "Dockerfile").write_text(
            "FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends "
            "python3 && rm -rf /var/lib/apt/lists/*\n" % BASE_IMAGE)
        p = subprocess.run(["docker", "build", "--network", "host", "-t", PYTHON_IMAGE, str(d)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
                           env=dict(daemon.env, DOCKER_BUILDKIT="0"))
        assert p.returncode == 0, p.stdout.decode()[-3000:]
    return PYTHON_IMAGE


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
