"""docker-compose.yml and deploy/Dockerfile: the whole cluster in containers.

Real daemon, real image, real compose: the Docker daemon the container
tests share (dockerd.py: the running one, or one started here with its
addresses inside 198.18.0.0/15 and its data root kept, so debian:12 and
the build's layers are cached between runs). The test builds
the project's image, brings the cluster up under a project name of its own
on a free port, submits a command job and a two-node ps job from the host
with the CLI, brings the cluster down and up again, reads the same runs,
artifacts and tokens back, and removes what it made (`down -v`).

Skipped only where no daemon can run (dockerd.py says why).
"""

import os
import shutil
import subprocess
import uuid

import pytest

import conftest
from conftest import BIN, REPO, free_port, http_request, wait_for

IMAGE = "trainyard-test:latest"
# The build stage, tagged so that it stays as the cache of the next build
# while the stale build stages an earlier source left are pruned.
BUILD_STAGE = "trainyard-test:build"
COMPOSE_FILE = os.path.join(REPO, "docker-compose.yml")
AGENTS = 3
BUILD_TIMEOUT_S = 1800
UPLOT = os.path.join(REPO, "web", "node_modules", "uplot", "dist", "uPlot.iife.min.js")


def run(argv, env=None, timeout=600, check=True, input=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=timeout, input=input, cwd=REPO)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise AssertionError("%s exited with %d\nstdout: %s\nstderr: %s" % (
            " ".join(argv), p.returncode, out[-3000:], err[-3000:]))
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


@pytest.fixture(scope="module")
def docker(docker_daemon):
    """The shared daemon (dockerd.py), and docker-compose."""
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: `make deps` (.ci/install-deps) "
                    "installs it")
    return docker_daemon


@pytest.fixture(scope="module")
def image(docker):
    """The project's image, built from deploy/Dockerfile (layers cached)."""
    assert os.path.exists(UPLOT), "%s is missing: run `make` first (it installs " \
        "web/node_modules, which the image embeds)" % UPLOT
    before = run(["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE], env=docker.env,
                 check=False).stdout.strip()
    for target, tag in (("build", BUILD_STAGE), (None, IMAGE)):
        run(["docker", "build", "--network", "host", "-f", "deploy/Dockerfile", "-t", tag] +
            (["--target", target] if target else []) + ["."],
            env=docker.env, timeout=BUILD_TIMEOUT_S)
    after = run(["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
                env=docker.env).stdout.strip()
    # What a changed source left: the image this build replaced and the
    # untagged build stages (500 MB each) that no tag keeps as a cache.
    if before and before != after:
        run(["docker", "rmi", before], env=docker.env, check=False)
    run(["docker", "image", "prune", "-f", "--filter", "label=org.trainyard.stage=build"],
        env=docker.env, check=False)
    return IMAGE


class Cluster:
    """One compose project: docker-compose.yml under a name of its own."""

    def __init__(self, docker, image):
        self.project = "tytest" + uuid.uuid4().hex[:10]
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.env = dict(docker.env)
        self.env.update({"TRAINYARD_IMAGE": image, "TRAINYARD_PORT": str(self.port)})
        for k in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE"):
            self.env.pop(k, None)
        self.token = None

    def compose(self, *args, timeout=300, check=True):
        return run(["docker-compose", "-p", self.project, "-f", COMPOSE_FILE] + list(args),
                   env=self.env, timeout=timeout, check=check)

    def up(self):
        self.compose("up", "-d", "--no-build", "--scale", "agent=%d" % AGENTS)
        conftest._SERVER_URLS.add(self.url)
        wait_for(lambda: self.health() == "healthy", 60,
                 lambda: "the server container to be healthy:\n" + self.logs())
        self.token = self.compose("exec", "-T", "server", "cat",
                                  "/var/lib/trainyard/admin.token").stdout.strip()
        wait_for(lambda: len(self.ready_nodes()) == AGENTS, 60,
                 lambda: "%d ready nodes:\n%s" % (AGENTS, self.logs()))

    def down(self, *args):
        conftest._SERVER_URLS.discard(self.url)
        self.compose("down", *args)

    def containers(self, service):
        ids = self.compose("ps", "-q", service).stdout.split()
        assert ids, "no %s container" % service
        return ids

    def health(self):
        ids = self.compose("ps", "-q", "server").stdout.split()
        if not ids:
            return None
        return run(["docker", "inspect", "--format", "{{.State.Health.Status}}", ids[0]],
                   env=self.env, check=False).stdout.strip()

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout[-6000:]

    def get(self, path):
        r = http_request(self.url, "GET", path,
                         headers={"Authorization": "Bearer " + self.token})
        assert r.status == 200, (path, r)
        return r.body

    def ready_nodes(self):
        r = http_request(self.url, "GET", "/api/v1/nodes",
                         headers={"Authorization": "Bearer " + self.token})
        assert r.status == 200, r
        return sorted(n["name"] for n in r.body["items"] if n["state"] == "ready")

    def cli(self, *args, cwd=None, check=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
        env.update({"TRAINYARD_SERVER": self.url, "TRAINYARD_TOKEN": self.token})
        p = subprocess.run([BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, cwd=cwd, timeout=300)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if check:
            assert p.returncode == 0, "trainyard %s: exit %d\n%s\n%s\n%s" % (
                " ".join(args), p.returncode, out, err, self.logs())
        return out


@pytest.fixture
def cluster(docker, image):
    c = Cluster(docker, image)
    try:
        yield c
    finally:
        c.compose("down", "-v", "--remove-orphans", check=False)
        conftest._SERVER_URLS.discard(c.url)


# A parameter server and two workers from TF_CONFIG: the ps serves on its
# address until the run stops it (ps tasks do not end by themselves); each
# worker connects to it across the containers, writes what it got as an
# artifact and exits, which completes the run.
PS_JOB = """\
import json, os, socket, time
tf = json.loads(os.environ["TF_CONFIG"])
task = tf["task"]
name = "%s-%d" % (task["type"], task["index"])
me = socket.gethostname()
print("task", name, "on", me, "TF_CONFIG", os.environ["TF_CONFIG"], flush=True)
host, port = tf["cluster"]["ps"][0].rsplit(":", 1)
if task["type"] == "ps":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(8)
    while True:
        conn, _ = s.accept()
        conn.sendall(("hello from %s on %s\\n" % (name, me)).encode())
        conn.close()
deadline = time.monotonic() + 60
while True:
    try:
        conn = socket.create_connection((host, int(port)), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
reply = conn.makefile().readline().strip()
print(name, "got", reply, flush=True)
print('##metric {"done": 1, "step": 1}', flush=True)
with open(os.path.join(os.environ["TRAINYARD_OUTPUT_DIR"], name + ".txt"), "w") as f:
    f.write("%s on %s got %s\\n" % (name, me, reply))
"""


def submit_and_wait(c, *args, cwd=None):
    out = c.cli("submit", "--follow", *args, cwd=cwd)
    run_id = out.splitlines()[0].strip()
    assert conftest.RUN_ID.match(run_id), out
    got = c.get("/api/v1/runs/" + run_id)
    assert got["status"] == "completed", got
    return run_id, out


def test_compose_cluster_runs_jobs_and_keeps_them_across_down_and_up(cluster, tmp_path):
    c = cluster
    c.up()
    nodes = c.ready_nodes()
    # the dashboard, with the uPlot files the image embeds
    r = http_request(c.url, "GET", "/")
    assert r.status == 200 and "text/html" in r.headers["content-type"], r.headers
    r = http_request(c.url, "GET", "/static/uPlot.iife.min.js")
    assert r.status == 200 and b"uPlot" in r.body, r.headers
    # each agent is a node named after its container's hostname
    hostnames = sorted(c.compose("exec", "-T", "--index=%d" % i, "agent", "hostname")
                       .stdout.strip() for i in range(1, AGENTS + 1))
    assert nodes == hostnames, (nodes, hostnames)
    # the server runs as the image's non-root user; agents as root (task uids)
    assert c.compose("exec", "-T", "server", "id", "-u").stdout.strip() == "999"
    assert c.compose("exec", "-T", "--index=1", "agent", "id", "-u").stdout.strip() == "0"
    # agents joined with the join token, each with an agent token of its own
    # node; no agent container can read an admin token
    tokens = c.get("/api/v1/tokens")["items"]
    assert sorted(t["node"] for t in tokens if t["role"] == "agent") == nodes, tokens
    assert [t["name"] for t in tokens if t["role"] == "join"] == ["join"], tokens
    for i in range(1, AGENTS + 1):
        r = c.compose("exec", "-T", "--index=%d" % i, "agent", "sh", "-c",
                      "grep -rl %s /run /var /etc /root /tmp /home 2>/dev/null; "
                      "echo checked" % c.token)
        assert r.stdout.strip() == "checked", r.stdout

    # a command job, then a two-node ps job, through the CLI on the host
    cmd_id, out = submit_and_wait(c, "--command", "--experiment", "compose-cmd", "--",
                                  "sh", "-c", "echo hello from $(hostname) as $(id -u); "
                                  "echo artifact >$TRAINYARD_OUTPUT_DIR/out.txt")
    logs = c.cli("logs", cmd_id)
    assert "hello from " in logs and "hello from " in out, (out, logs)
    job = tmp_path / "psjob"
    job.mkdir()
    (job / "job.py").write_text(PS_JOB)
    ps_id, out = submit_and_wait(c, str(job), "--entry", "job.py", "--backend", "ps",
                                 "--nodes", "2", "--workers", "2", "--parameter-servers", "1",
                                 "--experiment", "compose-ps")
    ps = c.get("/api/v1/runs/" + ps_id)
    assert len({t["node"] for t in ps["tasks"]}) == 2, ps["tasks"]
    logs = c.cli("logs", ps_id)
    for name in ("ps-0", "worker-0", "worker-1"):
        assert "task %s on " % name in logs, logs
    for name in ("worker-0", "worker-1"):
        assert "%s got hello from ps-0 on " % name in logs, logs

    def artifacts(run_id):
        return sorted(a["path"] for a in c.get("/api/v1/runs/%s/artifacts" % run_id)["items"])
    assert artifacts(cmd_id) == ["out.txt"]
    assert artifacts(ps_id) == ["worker-0.txt", "worker-1.txt"]
    before = {i: c.get("/api/v1/runs/" + i) for i in (cmd_id, ps_id)}
    dl = tmp_path / "before"
    c.cli("download", ps_id, "--output", str(dl))
    token = c.token

    # down loses nothing that up brings back: runs, logs, artifacts, tokens
    c.down()
    c.up()
    assert c.token == token
    for run_id, was in before.items():
        again = c.get("/api/v1/runs/" + run_id)
        assert (again["status"], again["tasks"]) == (was["status"], was["tasks"]), again
    assert artifacts(cmd_id) == ["out.txt"]
    assert "task worker-1 on " in c.cli("logs", ps_id)
    dl2 = tmp_path / "after"
    c.cli("download", ps_id, "--output", str(dl2))
    for name in ("worker-0.txt", "worker-1.txt"):
        assert "got hello from ps-0 on " in (dl / name).read_text()
        assert (dl2 / name).read_text() == (dl / name).read_text()
    # the new containers are new nodes, joined with the same join token
    new_nodes = c.ready_nodes()
    assert len(new_nodes) == AGENTS and not set(new_nodes) & set(nodes), (nodes, new_nodes)
    submit_and_wait(c, "--command", "--experiment", "compose-cmd", "--", "true")

    c.down("-v")
    volumes = run(["docker", "volume", "ls", "-q", "--filter", "name=" + c.project],
                  env=c.env).stdout.split()
    assert volumes == [], volumes
