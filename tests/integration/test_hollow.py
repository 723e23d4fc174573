"""Hollow nodes (`trainyard agent --hollow N`): simulated nodes that go
through the real registration, heartbeat, agent API and report paths."""
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import Spawned, wait_for


def start_hollow(srv, n, prefix, log_path, task_seconds="0.05", cpus="2"):
    return Spawned(["agent", "--hollow", str(n), "--server", srv.url, "--token",
                    srv.admin_token, "--name", prefix, "--listen", "127.0.0.1:0", "--cpus", cpus,
                    "--task-seconds", task_seconds], log_path, "hollow agent")


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
