"""SPEC §7: every acknowledged write survives a restart (SIGTERM or SIGKILL)."""

import json
import os
import socket
import threading

from conftest import assert_error, node_body, project_tgz, sha256_id, uniq, wait_for

RUN_KEYS = ("id", "experiment", "status", "spec", "created_at", "ended_at", "attempt", "tags")


def _run_view(run):
    v = {k: run.get(k) for k in RUN_KEYS}
    v["tasks"] = [(t["id"], t["name"], t["type"], t["index"], t["status"]) for t in run["tasks"]]
    return v


def _node_view(node):
    return {k: node.get(k) for k in ("name", "pool", "agent_url", "cpus", "memory_mb", "labels",
                                     "features", "state", "registered_at")}


def _populate(srv):
    """Create one of everything; returns what must survive."""
    w = {"exp": uniq("persist"), "pool": uniq("pool"), "n1": uniq("node"), "n2": uniq("node")}
    w["user"] = srv.create_token("user")
    w["viewer"] = srv.create_token("viewer")
    w["agent"] = srv.create_token("agent")
    w["revoked"] = srv.create_token("user")
    assert srv.delete("/api/v1/tokens/" + w["revoked"]["id"]).status == 204
    r = srv.post("/api/v1/nodes", node_body(w["n1"], w["pool"]), token=w["agent"]["secret"])
    assert r.status == 201, r
    srv.register_node(w["n2"], w["pool"], cpus=2, labels={"x": "y"})
    assert srv.post("/api/v1/nodes/%s/drain" % w["n2"], {"drain": True}).status == 200
    w["snap"] = project_tgz(uniq("snap").encode())
    w["snap_id"] = srv.upload_snapshot(w["snap"])["id"]
    assert w["snap_id"] == sha256_id(w["snap"])
    runs = [
        srv.create_run({"experiment": w["exp"], "source": w["snap_id"],
                        "entry_script": "train.py", "script_params": {"--lr": 0.5},
                        "tags": {"k": "v"}}, token=w["user"]["secret"]),
        srv.create_run({"experiment": w["exp"], "command": ["true"],
                        "distributed_backend": "ps", "node_count": 2, "chief": True}),
        srv.create_run({"experiment": w["exp"], "command": ["true"]}),
    ]
    r = srv.post("/api/v1/runs/%s/cancel" % runs[2]["id"])
    assert r.status == 200 and r.body["status"] == "canceled"
    w["run_ids"] = [x["id"] for x in runs]
    w["runs"] = {rid: _run_view(srv.get("/api/v1/runs/" + rid).body) for rid in w["run_ids"]}
    w["nodes"] = {n: _node_view(srv.get("/api/v1/nodes/" + n).body) for n in (w["n1"], w["n2"])}
    w["tokens"] = {t["id"]: (t["name"], t["role"]) for t in srv.list_all("/api/v1/tokens")}
    w["admin"] = srv.admin_token
    return w


def _verify(srv, w):
    assert srv.admin_token == w["admin"], "admin.token rewritten on restart"
    assert srv.get("/api/v1/runs").status == 200, "old admin token rejected"
    for rid, view in w["runs"].items():
        r = srv.get("/api/v1/runs/" + rid)
        assert r.status == 200, r
        assert _run_view(r.body) == view
    assert [x["id"] for x in srv.runs_of(w["exp"])] == w["run_ids"][::-1]
    exps = [e for e in srv.list_all("/api/v1/experiments") if e["name"] == w["exp"]]
    assert len(exps) == 1 and exps[0]["run_count"] == 3, exps
    for name, view in w["nodes"].items():
        r = srv.get("/api/v1/nodes/" + name)
        assert r.status == 200, r
        assert _node_view(r.body) == view
    tokens = {t["id"]: (t["name"], t["role"]) for t in srv.list_all("/api/v1/tokens")}
    for tid, view in w["tokens"].items():
        assert tokens.get(tid) == view, (tid, view, tokens.get(tid))
    g = srv.get("/api/v1/snapshots/" + w["snap_id"])
    assert g.status == 200 and g.body == w["snap"]
    # secrets and roles still work; the revoked one still does not
    assert srv.get("/api/v1/runs", token=w["user"]["secret"]).status == 200
    assert_error(srv.post("/api/v1/runs", {"experiment": w["exp"], "command": ["x"]},
                          token=w["viewer"]["secret"]), 403, "permission_denied")
    assert_error(srv.get("/api/v1/runs", token=w["revoked"]["secret"]), 401, "unauthenticated")
    agent = w["agent"]["secret"]
    assert srv.post("/api/v1/nodes/%s/heartbeat" % w["n1"], {"tasks": []},
                    token=agent).status == 200
    assert_error(srv.post("/api/v1/nodes", node_body(uniq("node"), w["pool"]), token=agent),
                 403, "permission_denied")
    # and the server keeps taking writes with fresh ids
    new = srv.create_run({"experiment": w["exp"], "command": ["true"]})
    assert new["id"] not in w["run_ids"]
    assert srv.runs_of(w["exp"])[0]["id"] == new["id"]


def _secrets_not_on_disk(data_dir, secrets):
    for dirpath, _, files in os.walk(data_dir):
        for fn in files:
            if fn == "admin.token" or fn.endswith(".log"):
                continue
            with open(os.path.join(dirpath, fn), "rb") as f:
                blob = f.read()
            for s in secrets:
                assert s.encode() not in blob, "token secret stored in clear in %s" % fn


def test_restart_after_sigterm(server_factory):
    srv = server_factory()
    w = _populate(srv)
    srv.stop()
    assert not os.path.exists(os.path.join(srv.data_dir, "server.url"))
    _secrets_not_on_disk(srv.data_dir, [w["admin"]] + [w[k]["secret"] for k in
                                                       ("user", "viewer", "agent", "revoked")])
    old_url = srv.url
    srv.start()
    assert srv.url.startswith("http://127.0.0.1:")
    _verify(srv, w)
    assert old_url  # different port is fine; the file is rewritten at each start


def test_restart_after_sigkill(server_factory):
    srv = server_factory()
    w = _populate(srv)
    # a concurrent burst of acknowledged writes, then a crash right after the last 201
    burst = []

    def worker():
        for _ in range(5):
            burst.append(srv.create_run({"experiment": w["exp"] + "-burst",
                                         "command": ["true"]})["id"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(burst) == 40
    last_tok = srv.create_token("viewer")
    srv.kill()
    srv.start()
    _verify(srv, w)
    assert {x["id"] for x in srv.list_all("/api/v1/runs?experiment=%s-burst" % w["exp"])} == set(burst)
    assert srv.get("/api/v1/runs", token=last_tok["secret"]).status == 200


def _post_and_hang_up(srv, spec):
    """Sends a whole submission and closes the socket before the answer."""
    u = srv.url.split("//", 1)[1]
    host, port = u.split(":")
    body = json.dumps(spec).encode()
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (srv.admin_token.encode(), len(body), body))
    s.close()


def test_sigterm_while_submissions_wait_on_their_commit(server_factory):
    """A submission's connection is parked until its run commits: clients
    that hang up first, and a SIGTERM in the middle of a burst, leave a
    clean exit (no leak, no abort) and every acknowledged run stored."""
    srv = server_factory()
    exp = uniq("inflight")
    for _ in range(20):
        _post_and_hang_up(srv, {"experiment": exp + "-gone", "command": ["true"]})
    acked = []
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            try:
                r = srv.post("/api/v1/runs", {"experiment": exp, "command": ["true"]})
            except OSError:
                return  # the server is stopping
            if r.status != 201:
                return
            acked.append(r.body["id"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 40, 30, "40 acknowledged submissions")
    srv.stop()  # asserts exit 0 and a sanitizer-clean log
    stop.set()
    for t in threads:
        t.join(30)
    srv.start()
    stored = {x["id"] for x in srv.list_all("/api/v1/runs?experiment=%s" % exp)}
    assert set(acked) <= stored
    # the hung-up clients' runs were committed all the same
    wait_for(lambda: len(srv.list_all("/api/v1/runs?experiment=%s-gone" % exp)) == 20, 10,
             "the runs of clients that hung up")
