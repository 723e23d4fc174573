"""SPEC §3.3 nodes: register, re-register, heartbeat, list/get, drain, delete,
node timeout, GET /api/v1/compute.  Every test uses its own pool so the
scheduler never places the other tests' runs on these (fake) nodes."""

import json
import os
import sqlite3
import time
from datetime import datetime

import pytest

from conftest import assert_error, is_rfc3339_utc, node_body, uniq, wait_for


def get_node(server, name, **kw):
    return server.get("/api/v1/nodes/" + name, **kw)


def pool_of(server, pool):
    r = server.get("/api/v1/compute")
    assert r.status == 200, r
    items = [p for p in r.body["items"] if p["name"] == pool]
    assert len(items) == 1, r.body
    return items[0]


def test_register_get_list(server):
    name, pool = uniq("node"), uniq("pool")
    body = node_body(name, pool, features=["python3", "mpi"], labels={"zone": "b", "rack": "7"})
    r = server.post("/api/v1/nodes", body)
    assert r.status == 201, r
    n = r.body
    secret = n.get("node_secret")
    assert isinstance(secret, str) and len(secret) >= 16, n
    for k in ("name", "pool", "agent_url", "cpus", "memory_mb", "labels", "features"):
        assert n[k] == body[k], (k, n)
    assert [g["index"] for g in n["gpus"]] == [0]
    assert n["gpus"][0]["uuid"] == body["gpus"][0]["uuid"]
    assert n["state"] == "ready"
    assert is_rfc3339_utc(n["registered_at"])
    assert isinstance(n.get("allocated"), dict) and n["allocated"]["cpus"] == 0
    assert n.get("tasks") == []

    g = get_node(server, name)
    assert g.status == 200, g
    assert "node_secret" not in g.body and secret not in json.dumps(g.body)
    assert g.body["name"] == name and g.body["state"] == "ready"
    assert g.body["cpus"] == 8 and g.body["labels"] == body["labels"]
    assert g.body["last_heartbeat"] is None or is_rfc3339_utc(g.body["last_heartbeat"])

    nodes = server.list_all("/api/v1/nodes")
    mine = [x for x in nodes if x["name"] == name]
    assert len(mine) == 1
    assert secret not in json.dumps(nodes)


def test_unknown_node_404(server):
    assert_error(get_node(server, uniq("ghost")), 404, "not_found")


def test_viewer_can_read_nodes(server, viewer_token):
    name = uniq("node")
    server.register_node(name, uniq("pool"))
    assert get_node(server, name, token=viewer_token).status == 200
    assert server.get("/api/v1/nodes", token=viewer_token).status == 200
    assert server.get("/api/v1/compute", token=viewer_token).status == 200
    assert_error(server.get("/api/v1/nodes", token=None), 401, "unauthenticated")


BAD_NODES = [
    ("name-missing", {"name": None}, "name"),
    ("name-empty", {"name": ""}, "name"),
    ("name-space", {"name": "bad name"}, "name"),
    ("name-slash", {"name": "a/b"}, "name"),
    ("name-int", {"name": 5}, "name"),
    ("pool-int", {"pool": 5}, "pool"),
    ("agent-url-missing", {"agent_url": None}, "agent_url"),
    ("agent-url-empty", {"agent_url": ""}, "agent_url"),
    ("agent-url-ftp", {"agent_url": "ftp://host:21"}, "agent_url"),
    ("agent-url-not-url", {"agent_url": "not a url"}, "agent_url"),
    ("agent-url-no-host", {"agent_url": "http://"}, "agent_url"),
    ("agent-url-javascript", {"agent_url": "javascript:alert(1)"}, "agent_url"),
    ("agent-url-int", {"agent_url": 8080}, "agent_url"),
    ("cpus-zero", {"cpus": 0}, "cpus"),
    ("cpus-negative", {"cpus": -1}, "cpus"),
    ("cpus-string", {"cpus": "8"}, "cpus"),
    ("memory-negative", {"memory_mb": -1}, "memory_mb"),
    ("memory-string", {"memory_mb": "1024"}, "memory_mb"),
    ("gpus-string", {"gpus": "2"}, "gpus"),
    ("gpus-int-entry", {"gpus": [1]}, "gpus"),
    ("gpus-negative-index", {"gpus": [{"index": -1, "name": "x"}]}, "gpus"),
    ("gpus-string-index", {"gpus": [{"index": "0", "name": "x"}]}, "gpus"),
    ("gpus-missing-index", {"gpus": [{"name": "x"}]}, "gpus"),
    ("gpus-duplicate-index", {"gpus": [{"index": 0}, {"index": 0}]}, "gpus"),
    ("labels-int-value", {"labels": {"a": 1}}, "labels"),
    ("labels-array", {"labels": ["a"]}, "labels"),
    ("labels-string", {"labels": "a=b"}, "labels"),
    ("features-int-entry", {"features": ["mpi", 1]}, "features"),
    ("features-string", {"features": "mpi"}, "features"),
    ("features-object", {"features": {"mpi": True}}, "features"),
]


@pytest.mark.parametrize("over,field", [c[1:] for c in BAD_NODES], ids=[c[0] for c in BAD_NODES])
def test_register_rejects(server, over, field):
    name = uniq("badnode")
    body = node_body(name, uniq("pool"))
    for k, v in over.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    r = server.post("/api/v1/nodes", body)
    assert_error(r, 400, "invalid_argument", field)
    assert get_node(server, name).status == 404
    names = [n["name"] for n in server.list_all("/api/v1/nodes")]
    assert name not in names and body.get("name") not in names


def test_register_body_errors(server):
    name = uniq("n")
    raw = json.dumps(node_body(name, uniq("pool"))).encode()
    assert_error(server.req("POST", "/api/v1/nodes", body=raw, content_type="text/plain"),
                 415, "unsupported_media_type")
    assert_error(server.req("POST", "/api/v1/nodes", body=raw[:-2]), 400, "invalid_argument")
    assert_error(server.req("POST", "/api/v1/nodes", body=raw + b"x"), 400, "invalid_argument")
    assert_error(server.req("POST", "/api/v1/nodes", body=b"[1]"), 400, "invalid_argument")
    assert get_node(server, name).status == 404


def test_register_roles(server, user_token, viewer_token):
    name = uniq("n")
    body = node_body(name, uniq("pool"))
    assert_error(server.post("/api/v1/nodes", body, token=None), 401, "unauthenticated")
    assert_error(server.post("/api/v1/nodes", body, token=user_token), 403, "permission_denied")
    assert_error(server.post("/api/v1/nodes", body, token=viewer_token), 403,
                 "permission_denied")
    assert get_node(server, name).status == 404


def test_reregister_updates_and_rotates_secret(server):
    name, pool = uniq("node"), uniq("pool")
    first = server.register_node(name, pool)
    second_body = node_body(name, pool, cpus=16, labels={"zone": "c"},
                            agent_url="https://10.0.0.5:9443")
    r = server.post("/api/v1/nodes", second_body)
    assert r.status in (200, 201), r
    assert r.body["node_secret"] and r.body["node_secret"] != first["node_secret"]
    g = get_node(server, name).body
    assert g["cpus"] == 16 and g["labels"] == {"zone": "c"}
    assert g["agent_url"] == "https://10.0.0.5:9443"
    assert len([n for n in server.list_all("/api/v1/nodes") if n["name"] == name]) == 1


def test_heartbeat(server):
    name = uniq("node")
    server.register_node(name, uniq("pool"))
    before = get_node(server, name).body
    time.sleep(0.01)
    r = server.post("/api/v1/nodes/%s/heartbeat" % name, {"tasks": []})
    assert r.status == 200, r
    assert r.body["stop"] == []
    assert r.body["node"] == {"name": name, "state": "ready"}
    after = get_node(server, name).body
    assert is_rfc3339_utc(after["last_heartbeat"])
    if before.get("last_heartbeat"):
        ts = [datetime.fromisoformat(x.replace("Z", "+00:00"))
              for x in (before["last_heartbeat"], after["last_heartbeat"])]
        assert ts[1] >= ts[0], ts
    assert after["state"] == "ready"


def test_heartbeat_unknown_task_must_stop(server):
    name = uniq("node")
    server.register_node(name, uniq("pool"))
    tid = "run-0123456789ab-a1-main"
    r = server.post("/api/v1/nodes/%s/heartbeat" % name,
                    {"tasks": [{"id": tid, "status": "running"}]})
    assert r.status == 200, r
    assert tid in r.body["stop"], "server's view wins: a task it does not know must stop"


def test_heartbeat_with_many_tasks_all_checked(server):
    """A long task list is checked on a worker thread (each task is a read):
    the answer is the same, every unknown task must stop."""
    name, pool = uniq("node"), uniq("pool")
    server.register_node(name, pool)
    ids = ["run-0123456789ab-a1-w%d" % i for i in range(200)]
    r = server.post("/api/v1/nodes/%s/heartbeat" % name,
                    {"tasks": [{"id": t, "status": "running"} for t in ids]})
    assert r.status == 200, r
    assert sorted(r.body["stop"]) == sorted(ids)
    assert r.body["node"] == {"name": name, "state": "ready"}


def test_heartbeat_errors(server, user_token, viewer_token):
    name = uniq("node")
    server.register_node(name, uniq("pool"))
    assert_error(server.post("/api/v1/nodes/%s/heartbeat" % uniq("ghost"), {"tasks": []}),
                 404, "not_found")
    assert_error(server.post("/api/v1/nodes/%s/heartbeat" % name, {"tasks": "x"}),
                 400, "invalid_argument", "tasks")
    assert_error(server.req("POST", "/api/v1/nodes/%s/heartbeat" % name, body=b"{"),
                 400, "invalid_argument")
    for tok in (user_token, viewer_token):
        assert_error(server.post("/api/v1/nodes/%s/heartbeat" % name, {"tasks": []}, token=tok),
                     403, "permission_denied")


def test_drain_and_undrain(server, user_token):
    name, pool = uniq("node"), uniq("pool")
    server.register_node(name, pool)
    path = "/api/v1/nodes/%s/drain" % name
    assert_error(server.post(path, {"drain": True}, token=user_token), 403, "permission_denied")
    r = server.post(path, {"drain": True})
    assert r.status == 200, r
    assert get_node(server, name).body["state"] == "draining"
    assert pool_of(server, pool)["ready_nodes"] == 0
    r = server.post(path, {"drain": False})
    assert r.status == 200, r
    assert get_node(server, name).body["state"] == "ready"
    assert pool_of(server, pool)["ready_nodes"] == 1


@pytest.mark.parametrize("body", [{"drain": "yes"}, {"drain": 1}, {}, {"drain": None}])
def test_drain_bad_body(server, body):
    name = uniq("node")
    server.register_node(name, uniq("pool"))
    assert_error(server.post("/api/v1/nodes/%s/drain" % name, body), 400, "invalid_argument",
                 "drain")
    assert get_node(server, name).body["state"] == "ready"


def test_drain_unknown_404(server):
    assert_error(server.post("/api/v1/nodes/%s/drain" % uniq("ghost"), {"drain": True}),
                 404, "not_found")


def test_delete(server, user_token):
    name, pool = uniq("node"), uniq("pool")
    server.register_node(name, pool)
    assert_error(server.delete("/api/v1/nodes/" + name, token=user_token), 403,
                 "permission_denied")
    r = server.delete("/api/v1/nodes/" + name)
    assert r.status == 204, r
    assert_error(get_node(server, name), 404, "not_found")
    assert_error(server.delete("/api/v1/nodes/" + name), 404, "not_found")
    assert_error(server.post("/api/v1/nodes/%s/heartbeat" % name, {"tasks": []}), 404,
                 "not_found")
    assert name not in [n["name"] for n in server.list_all("/api/v1/nodes")]


def test_compute_totals_and_free(server):
    pool = uniq("pool")
    a, b = uniq("node"), uniq("node")
    server.register_node(a, pool, cpus=8, memory_mb=16384)
    server.register_node(b, pool, cpus=4, memory_mb=8192, gpus=[])
    p = pool_of(server, pool)
    assert p["nodes"] == 2 and p["ready_nodes"] == 2
    assert p["cpus"] == 12 and p["cpus_free"] == 12
    assert p["memory_mb"] == 24576 and p["memory_mb_free"] == 24576
    assert p["gpus"] == 1 and p["gpus_free"] == 1
    assert server.delete("/api/v1/nodes/" + b).status == 204
    p = pool_of(server, pool)
    assert p["nodes"] == 1 and p["cpus"] == 8 and p["gpus"] == 1


def test_node_goes_down_after_timeout(server_factory):
    srv = server_factory(["--node-timeout", "1"])
    name, pool = uniq("node"), uniq("pool")
    srv.register_node(name, pool)
    assert get_node(srv, name).body["state"] == "ready"
    deadline = time.monotonic() + 6
    state = None
    while time.monotonic() < deadline:
        state = get_node(srv, name).body["state"]
        if state == "down":
            break
        time.sleep(0.1)
    assert state == "down"
    assert pool_of(srv, pool)["ready_nodes"] == 0
    # Once the scheduler's tick has stored it down, coming back is a write:
    # the heartbeat leaves the HTTP thread for a worker (offload).
    db = sqlite3.connect(os.path.join(srv.data_dir, "trainyard.db"))
    try:
        wait_for(lambda: db.execute("SELECT state FROM nodes WHERE name = ?",
                                    (name,)).fetchone()[0] == "down", 10, "the node stored down")
    finally:
        db.close()
    r = srv.post("/api/v1/nodes/%s/heartbeat" % name, {"tasks": []})
    assert r.status == 200, r
    assert r.body["node"]["state"] == "ready"
    assert get_node(srv, name).body["state"] == "ready"


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_nodes_limit_bounds(server, limit):
    assert_error(server.get("/api/v1/nodes?limit=" + limit), 400, "invalid_argument", "limit")


def test_nodes_pagination(server):
    pool = uniq("pool")
    for _ in range(3):
        server.register_node(uniq("node"), pool)
    server.assert_paginates("/api/v1/nodes", "name")


def test_register_rejects_nul_and_invalid_utf8(server_factory):
    srv = server_factory()  # private: accepted bad bytes would poison later list responses
    name = uniq("node")
    r = srv.post("/api/v1/nodes", node_body("a\u0000" + name, uniq("pool")))
    assert_error(r, 400, "invalid_argument", "name")
    assert get_node(srv, "a").status == 404
    raw = json.dumps(node_body(name, uniq("pool"), labels={"k": "LABEL"})).encode()
    r = srv.req("POST", "/api/v1/nodes", body=raw.replace(b"LABEL", b"\xff\xfe"))
    lst = srv.get("/api/v1/nodes")
    assert isinstance(lst.body, dict), "GET /api/v1/nodes is no longer valid JSON: %r" % (
        lst.body[:300],)
    assert_error(r, 400, "invalid_argument")
    assert get_node(srv, name).status == 404
