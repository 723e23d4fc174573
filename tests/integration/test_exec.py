"""End-to-end execution: a real server and real node agents on loopback run
real processes (SPEC §3.2, §3.4, §4 single and pytorch, §5, §6, §7).

Tests that do not break their cluster share the module's `cluster` (a
private server and two agents); the others build their own with
server_factory/agent_factory.  Every wait is bounded polling."""

import json
import os
import random
import signal
import subprocess
import textwrap
import time
import urllib.parse

import pytest

from conftest import (BIN, PYTHON, assert_error, free_port, http_request, open_to_tasks,
                      make_tgz, pid_alive, uniq, wait_for)

FINAL = ("completed", "failed", "canceled")
RUN_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def snapshot_of(srv, files):
    """Uploads {relative path: str|bytes} as a snapshot; returns its id."""
    members, dirs = [], set()
    for rel in sorted(files):
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                members.append((d, "dir", None))
        data = files[rel]
        members.append((rel, "file", data.encode() if isinstance(data, str) else data))
    return srv.upload_snapshot(make_tgz(members))["id"]


def submit(srv, **spec):
    spec.setdefault("experiment", uniq("exec"))
    return srv.create_run(spec)


def py(code):
    """A `command` running Python code (no shell)."""
    return [PYTHON, "-c", textwrap.dedent(code)]


def get_run(srv, run_id):
    r = srv.get("/api/v1/runs/" + run_id)
    assert r.status == 200, r
    return r.body


def run_logs(srv, run_id, query=""):
    r = srv.get("/api/v1/runs/%s/logs%s" % (run_id, query))
    assert r.status == 200, r
    return r.body.decode("utf-8", "replace") if isinstance(r.body, bytes) else str(r.body)


def describe(srv, run_id):
    run = get_run(srv, run_id)
    return "run %s: status=%s attempt=%s error=%r reason=%r tasks=%s\nlogs:\n%s" % (
        run_id, run["status"], run.get("attempt"), run.get("error"), run.get("reason"),
        [(t["name"], t["status"], t.get("node"), t.get("exit_code")) for t in run["tasks"]],
        run_logs(srv, run_id)[-3000:])


def wait_run(srv, run_id, statuses=FINAL, timeout=RUN_TIMEOUT_S):
    statuses = (statuses,) if isinstance(statuses, str) else statuses

    def done():
        run = get_run(srv, run_id)
        return run if run["status"] in statuses else None
    return wait_for(done, timeout, lambda: "status in %r; %s" % (statuses, describe(srv, run_id)))


def wait_completed(srv, run_id, timeout=RUN_TIMEOUT_S):
    run = wait_run(srv, run_id, timeout=timeout)
    assert run["status"] == "completed", describe(srv, run_id)
    return run


def artifact(srv, run_id, path, task=None):
    q = "?task=" + urllib.parse.quote(task, safe="") if task else ""
    r = srv.get("/api/v1/runs/%s/artifacts/%s%s" % (run_id, urllib.parse.quote(path), q))
    assert r.status == 200, (path, r)
    if isinstance(r.body, (dict, list)):  # a JSON content type was decoded already
        return json.dumps(r.body).encode()
    return r.body


def artifact_json(srv, run_id, path, task=None):
    return json.loads(artifact(srv, run_id, path, task).decode("utf-8"))


def read_pids(path, count, timeout=RUN_TIMEOUT_S):
    """Waits for a task to write `count` pids (space-separated) to path."""
    def ready():
        try:
            with open(path) as f:
                words = f.read().split()
        except FileNotFoundError:
            return None
        return [int(w) for w in words] if len(words) == count else None
    return wait_for(ready, timeout, "pids in %s" % path)


def kill_leftovers(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(pids, timeout=5.0):
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout,
             lambda: "pids %r to be gone (alive: %r)" % (
                 pids, [p for p in pids if pid_alive(p)]))


# A task that writes its pid and its child's pid to $PIDFILE, then sleeps.
# MARKER (optional): when that file already exists it exits 0 at once;
# otherwise it creates it first.
SLEEPER = py("""
    import os, subprocess, sys, time
    marker = os.environ.get("MARKER")
    if marker and os.path.exists(marker):
        print("marker found: done", flush=True)
        sys.exit(0)
    if marker:
        open(marker, "w").close()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    path = os.environ["PIDFILE"]
    with open(path + ".tmp", "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    os.rename(path + ".tmp", path)
    print("sleeping", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def leftovers():
    """Pids a test saw; whatever is still alive is SIGKILLed at teardown."""
    pids = []
    yield pids
    kill_leftovers(pids)


# --------------------------------------------------------------------------
# 1. argv and environment (§3.2 script_params/arguments, §4 common env)
# --------------------------------------------------------------------------

DUMP_ENV = """\
import json, os, sys
import trainyard
out = os.environ["TRAINYARD_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "env.json"), "w") as f:
    json.dump({"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(),
               "data": open("data/input.txt").read(), "helper": trainyard.__file__,
               "script_here": os.path.isfile(os.path.join(os.getcwd(), "scripts", "dump.py")),
               "script_abs": os.path.abspath(sys.argv[0])}, f)
print("dumped")
"""


def test_argv_and_environment(cluster):
    srv, agents = cluster
    sid = snapshot_of(srv, {"scripts/dump.py": DUMP_ENV, "data/input.txt": "from the snapshot\n"})
    run = submit(srv, source=sid, entry_script="scripts/dump.py",
                 script_params={"--lr": 0.01, "--flag": True, "--off": False, "--name": "x",
                                "--none": None},
                 arguments=["pos one", "--extra=1", "last"],
                 environment_variables={"MY_VAR": "hello world", "OTHER_VAR": "2"})
    done = wait_completed(srv, run["id"])
    task = done["tasks"][0]
    assert task["name"] == "main" and task["status"] == "succeeded" and task["exit_code"] == 0
    got = artifact_json(srv, run["id"], "env.json")
    argv, env = got["argv"], got["env"]
    assert argv[0].endswith("scripts/dump.py"), argv
    assert argv[1:] == ["--lr", "0.01", "--flag", "--name", "x", "--none",
                        "pos one", "--extra=1", "last"], argv
    assert got["data"] == "from the snapshot\n"
    assert got["script_here"], got["cwd"]  # the working directory is the unpacked snapshot
    assert got["script_abs"] == os.path.join(got["cwd"], "scripts", "dump.py")
    assert env["TRAINYARD_RUN_ID"] == run["id"]
    assert env["TRAINYARD_EXPERIMENT"] == run["experiment"]
    assert env["TRAINYARD_TASK_TYPE"] == "main"
    assert env["TRAINYARD_TASK_INDEX"] == "0"
    assert env["TRAINYARD_NODE"] == task["node"]
    assert task["node"] in [a.name for a in agents]
    out = env["TRAINYARD_OUTPUT_DIR"]
    assert os.path.isabs(out) and out.endswith("/outputs"), out
    assert os.path.normpath(out) == os.path.join(os.path.realpath(got["cwd"]), "outputs")
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["MY_VAR"] == "hello world" and env["OTHER_VAR"] == "2"
    pp = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    assert any(os.path.isfile(os.path.join(p, "trainyard", "__init__.py")) for p in pp), pp
    assert os.path.dirname(os.path.dirname(got["helper"])) in pp


# --------------------------------------------------------------------------
# 2. metrics and logs (§5)
# --------------------------------------------------------------------------

MALFORMED = ["##metric not json", '##metric {"loss": "text"}', "##metric {}",
             "##metric [1, 2]", '##metric {"loss": 1', "##metric"]


def test_metrics_and_logs(cluster):
    srv, _ = cluster
    run = submit(srv, command=py("""
        import trainyard
        for i in range(200):
            print("line %03d" % i)
            if i % 2 == 0:
                print('##metric {"loss": %d, "step": %d}' % (i // 2, i // 2))
        for m in MALFORMED:
            print(m)
        trainyard.log("acc", 0.5, step=7)
        trainyard.log("acc", 0.75, step=9)
        print("end")
    """.replace("MALFORMED", repr(MALFORMED))))
    wait_completed(srv, run["id"])
    text = run_logs(srv, run["id"])
    lines = text.splitlines()
    numbered = [ln for ln in lines if ln.startswith("line ")]
    assert numbered == ["line %03d" % i for i in range(200)], text[-2000:]
    assert not any(ln.startswith('##metric {"loss": ') and ln.endswith("}") and
                   '"text"' not in ln for ln in lines), "a valid metric line is in the log"
    assert not any('"acc"' in ln for ln in lines), "trainyard.log's lines are in the log"
    for m in MALFORMED:
        assert lines.count(m) == 1, (m, text[-1500:])
    assert "end" in lines

    r = srv.get("/api/v1/runs/%s/metrics" % run["id"])
    assert r.status == 200, r
    by_name = {m["name"]: m for m in r.body["items"]}
    assert set(by_name) == {"loss", "acc"}, r.body
    loss = by_name["loss"]
    assert (loss["count"], loss["last"], loss["min"], loss["max"], loss["last_step"]) == \
        (100, 99, 0, 99, 99), loss
    acc = by_name["acc"]
    assert (acc["count"], acc["last"], acc["min"], acc["max"], acc["last_step"]) == \
        (2, 0.75, 0.5, 0.75, 9), acc
    assert get_run(srv, run["id"])["metrics"].get("loss") == 99

    r = srv.get("/api/v1/runs/%s/metrics/loss" % run["id"])
    assert r.status == 200, r
    assert r.body["name"] == "loss"
    full = r.body["points"]
    assert [(p[0], p[2]) for p in full] == [(i, i) for i in range(100)], full[:5]
    r = srv.get("/api/v1/runs/%s/metrics/loss?max_points=10" % run["id"])
    assert r.status == 200, r
    few = r.body["points"]
    assert 2 <= len(few) <= 10, few
    assert all((p[0], p[2]) in {(q[0], q[2]) for q in full} for p in few), few
    assert [p[0] for p in few] == sorted(p[0] for p in few)


# --------------------------------------------------------------------------
# 3. outputs (§3.2 artifacts, §5)
# --------------------------------------------------------------------------

def test_outputs_listed_and_downloadable(cluster):
    srv, _ = cluster
    rnd = random.Random(7)
    blob = bytes(rnd.getrandbits(8) for _ in range(200000)) + b"\x00\xff" * 10
    files = {
        "a.txt": b"top level\n",
        "sub/dir/blob.bin": blob,
        "sub/with space.txt": "caf\u00e9 \u2603\n".encode(),
        "sub/dir/deeper/empty.dat": b"",
    }
    sid = snapshot_of(srv, {"payload/" + k: v for k, v in files.items()} | {
        "copy.py": textwrap.dedent("""\
            import os, shutil
            out = os.environ["TRAINYARD_OUTPUT_DIR"]
            for root, _, names in os.walk("payload"):
                for n in names:
                    rel = os.path.relpath(os.path.join(root, n), "payload")
                    os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
                    shutil.copyfile(os.path.join(root, n), os.path.join(out, rel))
            """)})
    run = submit(srv, source=sid, entry_script="copy.py")
    done = wait_completed(srv, run["id"])
    items = srv.get("/api/v1/runs/%s/artifacts" % run["id"]).body["items"]
    listed = {i["path"]: i for i in items}
    assert set(listed) == set(files), items
    for path, data in files.items():
        assert listed[path]["size"] == len(data), listed[path]
        assert listed[path]["task"] in (done["tasks"][0]["id"], done["tasks"][0]["name"])
        assert artifact(srv, run["id"], path) == data, path


# --------------------------------------------------------------------------
# 4-6. cancel, deadline, retries (§3.2, §4 gang rule)
# --------------------------------------------------------------------------

def test_cancel_leaves_no_process(cluster, tmp_path, leftovers):
    srv, _ = cluster
    pidfile = str(tmp_path / "pids")
    run = submit(srv, command=SLEEPER, environment_variables={"PIDFILE": pidfile})
    pids = read_pids(pidfile, 2)
    leftovers += pids
    assert all(pid_alive(p) for p in pids)
    wait_run(srv, run["id"], "running")
    r = srv.post("/api/v1/runs/%s/cancel" % run["id"], {})
    assert r.status == 200, r
    assert r.body["status"] == "canceled"
    wait_gone(pids, 5.0)
    assert get_run(srv, run["id"])["status"] == "canceled"
    wait_for(lambda: get_run(srv, run["id"])["tasks"][0]["status"] == "killed", 10,
             lambda: describe(srv, run["id"]))
    r = srv.post("/api/v1/runs/%s/cancel" % run["id"], {})
    assert r.status == 200 and r.body["status"] == "canceled", r


def test_max_run_duration_fails_and_kills(cluster, tmp_path, leftovers):
    srv, _ = cluster
    pidfile = str(tmp_path / "pids")
    run = submit(srv, command=SLEEPER, max_run_duration_seconds=2,
                 environment_variables={"PIDFILE": pidfile})
    pids = read_pids(pidfile, 2)
    leftovers += pids
    done = wait_run(srv, run["id"], timeout=20)
    assert done["status"] == "failed", describe(srv, run["id"])
    assert "max_run_duration" in (done.get("error") or ""), done.get("error")
    wait_gone(pids, 5.0)
    assert done["tasks"][0]["status"] not in ("running", "succeeded", "pending")


def test_retry_after_failure_completes_on_attempt_2(cluster, tmp_path):
    srv, _ = cluster
    marker = str(tmp_path / "marker")
    run = submit(srv, max_retries=1, environment_variables={"MARKER": marker}, command=py("""
        import os, sys
        m = os.environ["MARKER"]
        if not os.path.exists(m):
            open(m, "w").close()
            print("attempt one fails", flush=True)
            sys.exit(3)
        print("attempt two succeeds", flush=True)
    """))
    done = wait_completed(srv, run["id"], timeout=45)
    assert done["attempt"] == 2, done
    assert done["tasks"][0]["status"] == "succeeded"
    assert "attempt two succeeds" in run_logs(srv, run["id"])


# --------------------------------------------------------------------------
# 7. node loss (§7)
# --------------------------------------------------------------------------

def test_agent_sigkill_loses_task_and_retries_elsewhere(server_factory, agent_factory,
                                                        tmp_path, leftovers):
    srv = server_factory(["--node-timeout", "3"])
    doomed = agent_factory(srv, uniq("doomed"))
    # Both runs start on `doomed`, the only node; then a second node joins.
    pid_a, pid_b = str(tmp_path / "pids-a"), str(tmp_path / "pids-b")
    run_a = submit(srv, command=SLEEPER, environment_variables={"PIDFILE": pid_a})
    run_b = submit(srv, command=SLEEPER, max_retries=1,
                   environment_variables={"PIDFILE": pid_b, "MARKER": str(tmp_path / "m")})
    leftovers += read_pids(pid_a, 2) + read_pids(pid_b, 2)
    for r in (run_a, run_b):
        run = wait_run(srv, r["id"], "running")
        assert run["tasks"][0]["node"] == doomed.name
    spare = agent_factory(srv, uniq("spare"))
    doomed.kill()

    wait_for(lambda: srv.get("/api/v1/nodes/" + doomed.name).body["state"] == "down", 15,
             "node %s down" % doomed.name)
    a = wait_run(srv, run_a["id"], timeout=20)
    assert a["status"] == "failed", describe(srv, run_a["id"])
    assert a["tasks"][0]["status"] == "lost", a["tasks"]
    assert a.get("error"), a
    b = wait_completed(srv, run_b["id"], timeout=30)
    assert b["attempt"] == 2 and b["tasks"][0]["node"] == spare.name, b
    assert "marker found: done" in run_logs(srv, run_b["id"])


# --------------------------------------------------------------------------
# 8. server crash and restart (§7)
# --------------------------------------------------------------------------

def test_server_sigkill_restart_loses_and_repeats_nothing(server_factory, agent_factory):
    port = free_port()
    srv = server_factory(["--listen", "127.0.0.1:%d" % port])
    assert srv.url.endswith(":%d" % port), srv.url
    agent_factory(srv, uniq("node"))
    run = submit(srv, command=py("""
        import time
        for i in range(60):
            print("tick %02d" % i, flush=True)
            print('##metric {"m": %d, "step": %d}' % (i * 10, i), flush=True)
            time.sleep(0.1)
    """))

    def some_points():
        r = srv.get("/api/v1/runs/%s/metrics" % run["id"])
        return r.status == 200 and any(m["count"] >= 10 for m in r.body["items"])
    wait_for(some_points, 20, lambda: describe(srv, run["id"]))
    srv.kill()
    srv.start()  # same data dir, same port
    assert srv.url.endswith(":%d" % port), srv.url
    wait_completed(srv, run["id"], timeout=40)
    r = srv.get("/api/v1/runs/%s/metrics/m" % run["id"])
    assert r.status == 200, r
    steps = [p[0] for p in r.body["points"]]
    assert sorted(steps) == list(range(60)), steps
    assert [p[2] for p in sorted(r.body["points"])] == [i * 10 for i in range(60)]
    ticks = [ln for ln in run_logs(srv, run["id"]).splitlines() if ln.startswith("tick ")]
    assert ticks == ["tick %02d" % i for i in range(60)], ticks


def test_outputs_of_a_task_ending_while_the_server_is_down(server_factory, agent_factory,
                                                          tmp_path):
    """The task ends (and its outputs wait for upload) during a server outage."""
    port = free_port()
    srv = server_factory(["--listen", "127.0.0.1:%d" % port])
    agent_factory(srv, uniq("node"))
    pidfile = str(tmp_path / "pid")
    run = submit(srv, environment_variables={"PIDFILE": pidfile}, command=py("""
        import os, time
        with open(os.environ["PIDFILE"], "w") as f:
            f.write(str(os.getpid()))
        for i in range(20):
            print('##metric {"m": %d}' % i, flush=True)
            time.sleep(0.1)
        out = os.environ["TRAINYARD_OUTPUT_DIR"]
        os.makedirs(os.path.join(out, "ckpt"), exist_ok=True)
        with open(os.path.join(out, "ckpt", "final.txt"), "w") as f:
            f.write("written while the server was down\\n")
    """))
    [pid] = read_pids(pidfile, 1)
    wait_run(srv, run["id"], "running")
    srv.kill()
    wait_gone([pid], 20)
    time.sleep(2)  # the outage goes on after the task ended (not a wait on a condition)
    srv.start()
    wait_completed(srv, run["id"], timeout=30)
    listed = [i["path"] for i in srv.get("/api/v1/runs/%s/artifacts" % run["id"]).body["items"]]
    assert listed == ["ckpt/final.txt"], listed
    assert artifact(srv, run["id"], "ckpt/final.txt") == b"written while the server was down\n"
    r = srv.get("/api/v1/runs/%s/metrics/m" % run["id"])
    assert [p[0] for p in r.body["points"]] == list(range(20)), r.body


# --------------------------------------------------------------------------
# 9. agent restart (§7)
# --------------------------------------------------------------------------

def test_agent_restart_kills_old_task(server_factory, agent_factory, tmp_path, leftovers):
    srv = server_factory()
    agent = agent_factory(srv, uniq("node"))
    pidfile = str(tmp_path / "pids")
    run = submit(srv, command=SLEEPER, environment_variables={"PIDFILE": pidfile})
    pids = read_pids(pidfile, 2)
    leftovers += pids
    wait_run(srv, run["id"], "running")
    agent.kill()
    assert all(pid_alive(p) for p in pids), "the task should outlive a SIGKILLed agent"
    agent.start(srv)  # same name, same work dir
    wait_gone(pids, 5.0)
    done = wait_run(srv, run["id"], timeout=15)
    assert done["status"] == "failed", describe(srv, run["id"])
    assert done["tasks"][0]["status"] == "lost", done["tasks"]


# --------------------------------------------------------------------------
# 10. GPU accounting (§3.2 use_gpu, §4 CUDA_VISIBLE_DEVICES)
# --------------------------------------------------------------------------

GPU_TASK = py("""
    import os, time
    out = os.environ["TRAINYARD_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cvd.txt"), "w") as f:
        f.write(os.environ["CUDA_VISIBLE_DEVICES"])
    deadline = time.time() + 30
    while not os.path.exists(os.environ["RELEASE"]) and time.time() < deadline:
        time.sleep(0.05)
""")


def test_gpu_accounting(server_factory, agent_factory, tmp_path):
    srv = server_factory()
    agent = agent_factory(srv, uniq("gpu"), gpus=2)
    release = str(tmp_path / "release")
    env = {"RELEASE": release}
    r1 = submit(srv, command=GPU_TASK, use_gpu=True, environment_variables=env)
    r2 = submit(srv, command=GPU_TASK, use_gpu=True, environment_variables=env)
    running = [wait_run(srv, r["id"], "running") for r in (r1, r2)]
    r3 = submit(srv, command=GPU_TASK, use_gpu=True, gpus_per_process=2,
                environment_variables=env)
    # The scheduler's pass replaces the reason given at submission with its own.
    wait_for(lambda: (lambda x: x["status"] == "queued" and
                      "gpu" in (x.get("reason") or "").lower())(get_run(srv, r3["id"])), 10,
             lambda: "a reason naming GPUs; " + describe(srv, r3["id"]))
    g1, g2 = (set(r["tasks"][0]["gpus"]) for r in running)
    assert len(g1) == len(g2) == 1 and not g1 & g2 and g1 | g2 == {0, 1}, (g1, g2)
    assert get_run(srv, r3["id"])["status"] == "queued"
    node = srv.get("/api/v1/nodes/" + agent.name).body
    assert sorted(node["allocated"]["gpus"]) == [0, 1], node
    open(release, "w").close()
    for r, g in ((r1, g1), (r2, g2)):
        wait_completed(srv, r["id"])
        assert artifact(srv, r["id"], "cvd.txt").decode() == str(g.pop())
    done = wait_completed(srv, r3["id"])
    assert sorted(done["tasks"][0]["gpus"]) == [0, 1]
    assert sorted(artifact(srv, r3["id"], "cvd.txt").decode().split(",")) == ["0", "1"]


# --------------------------------------------------------------------------
# 11. pytorch gang across two agents (§4)
# --------------------------------------------------------------------------

def test_pytorch_gang_waits_for_second_node(server_factory, agent_factory):
    srv = server_factory()
    pool = uniq("pt")
    first = agent_factory(srv, uniq("pt0"), ["--pool", pool])
    run = submit(srv, compute_target=pool, node_count=2, distributed_backend="pytorch",
                 command=py("""
                     import json, os
                     out = os.environ["TRAINYARD_OUTPUT_DIR"]
                     os.makedirs(out, exist_ok=True)
                     with open(os.path.join(out, "env-%s.json" % os.environ["RANK"]), "w") as f:
                         json.dump(dict(os.environ), f)
                 """))
    queued = wait_for(lambda: (lambda x: x if x.get("reason") else None)(
        get_run(srv, run["id"])), 10, lambda: describe(srv, run["id"]))
    assert queued["status"] == "queued", queued
    assert pool in queued["reason"] or "node" in queued["reason"], queued["reason"]
    second = agent_factory(srv, uniq("pt1"), ["--pool", pool])
    done = wait_completed(srv, run["id"])
    tasks = {t["name"]: t for t in done["tasks"]}
    assert set(tasks) == {"rank-0", "rank-1"}
    assert {t["node"] for t in tasks.values()} == {first.name, second.name}
    envs = [artifact_json(srv, run["id"], "env-%d.json" % i) for i in range(2)]
    for i, e in enumerate(envs):
        assert e["RANK"] == str(i) and e["WORLD_SIZE"] == "2", e
        assert e["LOCAL_RANK"] == "0" and e["LOCAL_WORLD_SIZE"] == "1"
        assert e["NODE_RANK"] == e["GROUP_RANK"] == str(i)
        assert e["TRAINYARD_TASK_TYPE"] == "rank" and e["TRAINYARD_TASK_INDEX"] == str(i)
        assert e["TRAINYARD_NODE"] == tasks["rank-%d" % i]["node"]
    assert envs[0]["MASTER_ADDR"] == envs[1]["MASTER_ADDR"] == "127.0.0.1"
    assert envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]
    assert 0 < int(envs[0]["MASTER_PORT"]) < 65536
    if tasks["rank-0"].get("address"):
        assert tasks["rank-0"]["address"] == "127.0.0.1:" + envs[0]["MASTER_PORT"]


# --------------------------------------------------------------------------
# 12-13. security (§6)
# --------------------------------------------------------------------------

def test_agent_api_refuses_other_callers(cluster):
    srv, agents = cluster
    url = srv.get("/api/v1/nodes/" + agents[0].name).body["agent_url"]
    assert url == agents[0].url
    body = json.dumps({"id": "evil-task", "argv": ["/bin/true"], "env": {}}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": "Bearer " + srv.admin_token},
                    {"Authorization": "Bearer " + agents[0].token}):
        h = dict(headers, **{"Content-Type": "application/json"})
        r = http_request(url, "POST", "/v1/tasks", body=body, headers=h)
        assert_error(r, 401, "unauthenticated")
        r = http_request(url, "GET", "/v1/tasks", headers=headers)
        assert_error(r, 401, "unauthenticated")
        r = http_request(url, "DELETE", "/v1/tasks/evil-task", headers=headers)
        assert_error(r, 401, "unauthenticated")
    assert http_request(url, "GET", "/healthz").status == 200
    # The agent API's errors have /api/v1's shape (SPEC §3).
    assert_error(http_request(url, "POST", "/v1/exec", body=b"{}"), 401, "unauthenticated")
    assert_error(http_request(url, "POST", "/v1/exec", body=b"[]",
                              headers={"Authorization": "Bearer x"}), 400, "invalid_argument")
    assert_error(http_request(url, "POST", "/v1/exec", body=b'{"argv": ["orted"]}',
                              headers={"Authorization": "Bearer x"}), 403, "permission_denied")
    assert_error(http_request(url, "GET", "/v1/nothing"), 401, "unauthenticated")


def test_rsh_clients_report_refusals(cluster):
    """Both clients of /v1/exec, `trainyard rsh` and the static trainyard-rsh
    the agent writes beside its Python helper (for mpi runs in images),
    say why an agent refused and exit 255, as ssh does when it cannot run
    the command; the static one has no TLS and says so for an https agent."""
    srv, agents = cluster
    static = os.path.join(agents[0].work, "python", "trainyard-rsh")
    assert os.access(static, os.X_OK), static
    with open(static, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    env = dict(os.environ, TRAINYARD_MPI_SECRET="not-a-secret",
               TRAINYARD_MPI_AGENTS=json.dumps({"nodehost": agents[0].url}))
    for client in ([BIN, "rsh"], [static]):
        p = subprocess.run(client + ["-x", "nodehost", "orted --version"], env=env,
                           capture_output=True, timeout=30)
        assert p.returncode == 255, p
        assert b"the agent refused (HTTP 403)" in p.stderr, p.stderr
        assert b"no mpi task of this agent has that exec secret" in p.stderr, p.stderr
        p = subprocess.run(client + ["otherhost", "orted"], env=env, capture_output=True,
                           timeout=30)
        assert p.returncode == 255 and b"host 'otherhost' is not a node of this run" in \
            p.stderr, p.stderr
    p = subprocess.run([static, "h", "orted"], capture_output=True, timeout=30,
                       env=dict(env, TRAINYARD_MPI_AGENTS='{"h": "https://127.0.0.1:1"}'))
    assert p.returncode == 255 and b"needs agents serving plain http" in p.stderr, p.stderr
    # --hold (a worker container's command) idles until SIGTERM, then exits
    # 0; outside a container of its own (here) it signals nothing else.
    hold = subprocess.Popen([static, "--hold"])
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        def catches_term():
            with open("/proc/%d/status" % hold.pid) as f:
                caught = [ln.split()[1] for ln in f if ln.startswith("SigCgt:")]
            return caught and int(caught[0], 16) & (1 << (signal.SIGTERM - 1))

        wait_for(catches_term, 10, "trainyard-rsh --hold to handle SIGTERM")
        assert hold.poll() is None
        hold.terminate()
        assert hold.wait(10) == 0
        assert bystander.poll() is None
    finally:
        for p in (hold, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("entry", ["../train.py", "/etc/passwd", "a/../../train.py", "..",
                                   "a/.."])
def test_entry_script_outside_snapshot_rejected(cluster, entry):
    srv, _ = cluster
    sid = snapshot_of(srv, {"train.py": "print('hi')\n", "a/x.py": "\n"})
    r = srv.post("/api/v1/runs", {"experiment": uniq("exec"), "source": sid,
                                  "entry_script": entry})
    assert_error(r, 400, "invalid_argument", "entry_script")


# --------------------------------------------------------------------------
# 14. pip_packages (§5)
# --------------------------------------------------------------------------

def _venv_usable():
    try:
        r = subprocess.run([PYTHON, "-m", "ensurepip", "--version"], capture_output=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _venv_usable(),
                    reason="%s -m venv cannot install pip here (python3-venv may be missing)"
                    % PYTHON)
def test_pip_packages_local_directory_and_cache(server_factory, agent_factory, tmp_path):
    srv = server_factory()
    agent_factory(srv, uniq("pip"))
    pkg = tmp_path / "typkg-src"
    (pkg / "typkg").mkdir(parents=True)
    (pkg / "typkg" / "__init__.py").write_text("VALUE = 42\n")
    (pkg / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='typkg', version='0.1', packages=['typkg'])\n")
    if os.geteuid() == 0:
        open_to_tasks(pkg)  # pip runs as a uid of its own and builds in place
    sid = snapshot_of(srv, {"use.py": "import sys, typkg\n"
                                      "print('typkg says', typkg.VALUE, 'prefix', sys.prefix)\n"})
    use = {"source": sid, "entry_script": "use.py",
           "environment_variables": {"PIP_NO_INDEX": "1"}}  # nothing from the network
    first = submit(srv, pip_packages=[str(pkg)], **use)
    wait_completed(srv, first["id"], timeout=120)
    log1 = run_logs(srv, first["id"])
    assert "typkg says 42" in log1, log1
    assert "using the cached virtual environment" not in log1
    second = submit(srv, pip_packages=[str(pkg)], **use)
    wait_completed(srv, second["id"], timeout=60)
    log2 = run_logs(srv, second["id"])
    assert "using the cached virtual environment" in log2, log2
    assert "typkg says 42" in log2
    bad = submit(srv, pip_packages=["/nonexistent"], **use)
    done = wait_run(srv, bad["id"], timeout=120)
    assert done["status"] == "failed", describe(srv, bad["id"])
    log3 = run_logs(srv, bad["id"])
    assert "/nonexistent" in log3 and "ERROR" in log3, log3  # pip's own words
    assert "typkg says" not in log3


# --------------------------------------------------------------------------
# 15. the CLI against a real agent (§2)
# --------------------------------------------------------------------------

def _cli(srv, args, timeout=90):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    return subprocess.run([BIN] + args + ["--server", srv.url, "--token", srv.admin_token],
                          capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("fail", [False, True], ids=["succeeds", "fails"])
def test_cli_submit_follow(cluster, tmp_path, fail):
    srv, _ = cluster
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text(textwrap.dedent("""\
        import sys, time
        for i in range(5):
            print("epoch %d of the cli run" % i, flush=True)
            time.sleep(0.05)
        if "--fail" in sys.argv:
            print("about to fail", flush=True)
            sys.exit(3)
        print("cli run done")
        """))
    args = ["submit", str(proj), "--entry", "train.py", "--experiment", uniq("cli"), "--follow"]
    if fail:
        args += ["--param", "--fail"]
    res = _cli(srv, args)
    out, err = res.stdout.decode(), res.stderr.decode()
    for word in ("Sanitizer", "runtime error:"):
        assert word not in err, err
    for i in range(5):
        assert "epoch %d of the cli run" % i in out, (out, err)
    if fail:
        assert res.returncode == 1, (res.returncode, out, err)
        assert "about to fail" in out
        assert "failed" in err, err
    else:
        assert res.returncode == 0, (res.returncode, out, err)
        assert "cli run done" in out
