"""Hollow nodes (`trainyard agent --hollow N`): simulated nodes that go
through the real registration, heartbeat, agent API and report paths."""
import os
import re
import signal
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import Spawned, wait_for


def start_hollow(srv, n, prefix, log_path, task_seconds="0.05", cpus="2", extra=()):
    return Spawned(["agent", "--hollow", str(n), "--server", srv.url, "--token",
                    srv.admin_token, "--name", prefix, "--listen", "127.0.0.1:0", "--cpus", cpus,
                    "--task-seconds", task_seconds] + list(extra), log_path, "hollow agent")


def ready_nodes(srv, prefix):
    body = srv.get("/api/v1/nodes?limit=1000").body
    return [n for n in body["items"] if n["name"].startswith(prefix) and n["state"] == "ready"]


def test_hollow_nodes_run_many_runs(server_factory, tmp_path):
    srv = server_factory()
    prefix = "h" + uuid.uuid4().hex[:6]
    log_path = str(tmp_path / "hollow.log")
    proc = start_hollow(srv, 40, prefix, log_path)
    try:
        wait_for(lambda: len(ready_nodes(srv, prefix)) == 40, 30, "40 hollow nodes ready")
        ids = []
        for i in range(120):
            r = srv.post("/api/v1/runs", {"experiment": "hollow", "command": ["true"]})
            assert r.status == 201, r
            ids.append(r.body["id"])

        def all_completed():
            runs = srv.get("/api/v1/runs?experiment=hollow&limit=1000").body["items"]
            done = [x for x in runs if x["status"] == "completed"]
            return len(done) == 120
        wait_for(all_completed, 60, "120 runs completed on hollow nodes")
        run = srv.get("/api/v1/runs/" + ids[0]).body
        assert run["metrics"].get("loss") is not None, run
        assert run["tasks"][0]["node"].startswith(prefix)
        # The hollow agent API refuses callers without the node's secret.
        node = ready_nodes(srv, prefix)[0]
        req = urllib.request.Request(node["agent_url"] + "/v1/tasks", method="POST",
                                     data=b'{"id": "x"}',
                                     headers={"Authorization": "Bearer wrong",
                                              "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401
    finally:
        try:
            proc.stop()
        finally:
            proc.cleanup()


def test_cancel_reaches_hollow_nodes(server_factory, tmp_path):
    srv = server_factory()
    prefix = "c" + uuid.uuid4().hex[:6]
    log_path = str(tmp_path / "hollow.log")
    proc = start_hollow(srv, 4, prefix, log_path, task_seconds="600")
    try:
        wait_for(lambda: len(ready_nodes(srv, prefix)) == 4, 30, "hollow nodes ready")
        r = srv.post("/api/v1/runs", {"experiment": "hollow-cancel", "command": ["sleep", "600"]})
        assert r.status == 201, r
        run_id = r.body["id"]
        wait_for(lambda: srv.get("/api/v1/runs/" + run_id).body["status"] == "running", 30,
                 "run running")
        assert srv.post("/api/v1/runs/%s/cancel" % run_id).status == 200
        # The node frees the task's CPU once the stop went through.
        wait_for(lambda: all(not n["tasks"] for n in ready_nodes(srv, prefix)), 15,
                 "hollow node released the task")
    finally:
        try:
            proc.stop()
        finally:
            proc.cleanup()


STATS_LINE = re.compile(r"^heartbeats n=(\d+) failed=(\d+) p50=([0-9.]+)ms p90=([0-9.]+)ms "
                        r"p99=([0-9.]+)ms max=([0-9.]+)ms \(3 nodes, (SIGUSR1|exit)\)$")


def test_hollow_heartbeat_stats(server_factory, tmp_path):
    # --node-timeout 3: a heartbeat a second per node.
    srv = server_factory(["--node-timeout", "3"])
    prefix = "s" + uuid.uuid4().hex[:6]
    stats = str(tmp_path / "beats.txt")
    proc = start_hollow(srv, 3, prefix, str(tmp_path / "hollow.log"),
                        extra=["--heartbeat-stats", stats])
    try:
        wait_for(lambda: len(ready_nodes(srv, prefix)) == 3, 30, "3 hollow nodes ready")
        # Each SIGUSR1 appends the round trips since the last line: until
        # one holds a heartbeat.
        seen = []

        def a_line_with_beats():
            proc.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(stats) and
                     len(open(stats).read().splitlines()) > len(seen), 10, "a stats line")
            seen[:] = open(stats).read().splitlines()
            return int(STATS_LINE.match(seen[-1]).group(1)) > 0
        wait_for(a_line_with_beats, 20, "a stats line counting heartbeats")
        m = STATS_LINE.match(seen[-1])
        assert m.group(7) == "SIGUSR1" and m.group(2) == "0", seen
        p50, p90, p99, top = (float(m.group(i)) for i in (3, 4, 5, 6))
        assert 0 < p50 <= p90 <= p99 and top > 0, seen
    finally:
        try:
            proc.stop()
        finally:
            proc.cleanup()
    lines = open(stats).read().splitlines()
    assert all(STATS_LINE.match(l) for l in lines), lines
    assert STATS_LINE.match(lines[-1]).group(7) == "exit", lines
