"""The scheduler's state in memory (issue 15 item 1): kept by what each
commit changed, rebuilt from SQLite at start, and always equal to a fresh
read of the database (GET /api/v1/scheduler?check=true compares them)."""
import json
import os
import sqlite3
import threading
import uuid

from conftest import Spawned, assert_error, free_port, wait_for


def start_hollow(srv, n, prefix, log_path, task_seconds):
    return Spawned(["agent", "--hollow", str(n), "--server", srv.url, "--token",
                    srv.admin_token, "--name", prefix, "--listen", "127.0.0.1:0", "--cpus", "2",
                    "--task-seconds", task_seconds], log_path, "hollow agent")


def ready_count(srv, prefix):
    items = srv.get("/api/v1/nodes?limit=1000").body["items"]
    return sum(1 for n in items if n["name"].startswith(prefix) and n["state"] == "ready")


SPECS = [
    {"command": ["true"]},
    {"command": ["true"], "distributed_backend": "ps", "node_count": 2, "chief": True},
    {"command": ["true"], "distributed_backend": "pytorch", "node_count": 2,
     "process_count_per_node": 2},
    {"command": ["true"], "priority": 5},
    {"command": ["true"], "node_selector": {"nope": "x"}},  # waits: no node has the label
]


class Submitters:
    """Threads that submit runs (and cancel every third) until stopped; they
    keep the ids the server acknowledged (201)."""

    def __init__(self, srv, exp, n_threads=3):
        self.srv, self.exp = srv, exp
        self.acked = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                        for i in range(n_threads)]

    def _loop(self, k):
        i = 0
        while not self.stop_event.is_set():
            spec = dict(SPECS[(i + k) % len(SPECS)], experiment=self.exp)
            try:
                r = self.srv.post("/api/v1/runs", spec)
            except Exception:  # noqa: BLE001 - the server was killed
                return
            if r.status != 201:
                return
            with self.lock:
                self.acked.append(r.body["id"])
            if i % 3 == 2:
                try:
                    self.srv.post("/api/v1/runs/%s/cancel" % r.body["id"])
                except Exception:  # noqa: BLE001
                    return
            i += 1

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)

    def count(self):
        with self.lock:
            return len(self.acked)


def state(srv, check=False):
    r = srv.get("/api/v1/scheduler" + ("?check=true" if check else ""))
    assert r.status == 200, r
    return r.body


def checked(srv):
    """A comparison, exact under load: the server holds its commits while it
    reads both."""
    r = srv.get("/api/v1/scheduler?check=true")
    assert r.status == 200, r
    assert r.body["checked"] and r.body["n_differences"] == 0, r.body
    return r.body


def test_state_in_memory_equals_the_database_under_load(server_factory, tmp_path):
    srv = server_factory()
    prefix = "m" + uuid.uuid4().hex[:6]
    agent = start_hollow(srv, 12, prefix, str(tmp_path / "hollow.log"), "0.2")
    try:
        wait_for(lambda: ready_count(srv, prefix) == 12, 30, "12 hollow nodes ready")
        load = Submitters(srv, "mirror").start()
        try:
            wait_for(lambda: load.count() >= 60, 60, "60 runs submitted")
            checked(srv)
            node = sorted(n["name"] for n in srv.get("/api/v1/nodes?limit=1000").body["items"])[3]
            assert srv.post("/api/v1/nodes/%s/drain" % node, {"drain": True}).status == 200
            wait_for(lambda: load.count() >= 120, 60, "120 runs submitted")
            checked(srv)
            assert srv.post("/api/v1/nodes/%s/drain" % node, {"drain": False}).status == 200
            wait_for(lambda: load.count() >= 180, 60, "180 runs submitted")
        finally:
            load.stop()
        # What waits is only what no node can take (the selector).
        def placed():
            queued = srv.list_all("/api/v1/runs?status=queued&experiment=mirror")
            s = state(srv)
            return (all(r["spec"].get("node_selector") for r in queued) and
                    s["queued"] == len(queued) and s["outbox"] == 0 and len(queued))
        waiting = wait_for(placed, 60, lambda: "the queue placed: %r" % (state(srv),))
        s = checked(srv)
        assert s["nodes"] == 12 and s["queued"] == waiting, s
    finally:
        agent.stop()
        agent.cleanup()


def test_kill_9_under_load_rebuilds_the_same_state(server_factory, tmp_path):
    port = free_port()
    srv = server_factory(["--listen", "127.0.0.1:%d" % port])
    prefix = "k" + uuid.uuid4().hex[:6]
    agent = start_hollow(srv, 8, prefix, str(tmp_path / "hollow.log"), "0.3")
    try:
        wait_for(lambda: ready_count(srv, prefix) == 8, 30, "8 hollow nodes ready")
        load = Submitters(srv, "kill9").start()
        wait_for(lambda: load.count() >= 100, 60, "100 runs submitted")
        srv.kill()
        load.stop()
        srv.start()
        # Rebuilt from the database at start: equal to a fresh read, and
        # every acknowledged run is there.
        s = checked(srv)
        assert s["nodes"] == 8, s
        for rid in load.acked:
            assert srv.get("/api/v1/runs/" + rid).status == 200, rid
        # And kept so after the restart, under more load.
        more = Submitters(srv, "kill9-after").start()
        wait_for(lambda: more.count() >= 40, 60, "40 more runs submitted")
        more.stop()
        checked(srv)
        wait_for(lambda: state(srv)["outbox"] == 0, 60, "the outbox emptied")
        checked(srv)
    finally:
        agent.stop()
        agent.cleanup()


def set_priority_behind(srv, run_id, priority):
    """Writes with a connection of its own, not the server's writer."""
    db = sqlite3.connect(os.path.join(srv.data_dir, "trainyard.db"), timeout=10)
    try:
        db.execute("UPDATE runs SET priority = ? WHERE id = ?", (priority, run_id))
        db.commit()
    finally:
        db.close()


def test_a_write_behind_the_servers_back_is_a_difference(server_factory):
    """The comparison can fail: a row changed by another connection (not
    the server's writer) is not in the state in memory."""
    srv = server_factory()
    run = srv.create_run({"experiment": "behind", "command": ["true"]})
    assert checked(srv)["queued"] == 1
    set_priority_behind(srv, run["id"], 42)
    body = state(srv, check=True)
    assert body["n_differences"] >= 1, body
    assert any("status, priority" in d for d in body["differences"]), body
    # Put back, so the check at the server's stop passes.
    set_priority_behind(srv, run["id"], 0)
    assert checked(srv)["n_differences"] == 0


def test_a_stored_spec_that_is_not_one_is_not_placed(server_factory, tmp_path):
    """A queued run whose stored spec was changed behind the server's back
    into something validation never writes is refused when the scheduler
    reads it (logged, not placed), and nothing else is held up or aborts."""
    srv = server_factory()
    bad = srv.create_run({"experiment": "badspec", "command": ["true"]})
    # Both a command and an entry script: the API's shape, never validation's.
    spec = dict(bad["spec"], entry_script="train.py")
    db = sqlite3.connect(os.path.join(srv.data_dir, "trainyard.db"), timeout=10)
    try:
        db.execute("UPDATE runs SET spec = ? WHERE id = ?", (json.dumps(spec), bad["id"]))
        db.commit()
    finally:
        db.close()
    prefix = "b" + uuid.uuid4().hex[:6]
    agent = start_hollow(srv, 1, prefix, str(tmp_path / "hollow.log"), "0.2")
    try:
        wait_for(lambda: ready_count(srv, prefix) == 1, 30, "the hollow node ready")
        good = srv.create_run({"experiment": "badspec", "command": ["true"]})
        wait_for(lambda: srv.get("/api/v1/runs/" + good["id"]).body["status"] == "completed",
                 30, "the good run completed")
        assert srv.get("/api/v1/runs/" + bad["id"]).body["status"] == "queued"
        assert "not a run spec" in open(srv.log_path).read()
        r = srv.post("/api/v1/runs/%s/cancel" % bad["id"], {})
        assert r.status == 200 and r.body["status"] == "canceled", r
        assert checked(srv)["queued"] == 0
    finally:
        agent.stop()
        agent.cleanup()


def test_scheduler_state_is_for_admins(server, user_token):
    assert_error(server.get("/api/v1/scheduler", token=user_token), 403, "permission_denied")
    assert_error(server.get("/api/v1/scheduler?check=maybe"), 400, "invalid_argument")
