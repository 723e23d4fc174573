"""SPEC §2 `trainyard server` command and §3.6 service endpoints."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import BAD_LOG_WORDS, BIN, Server, assert_error, check_openapi, uniq, wait_for

# --------------------------------------------------------------------------
# §3.6
# --------------------------------------------------------------------------


def test_healthz_no_token(server):
    r = server.get("/healthz", token=None)
    assert r.status == 200, r


def test_unknown_route_404(server):
    assert_error(server.get("/api/v1/" + uniq("nothing")), 404, "not_found")


PROM_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})?'
    r' (-?[0-9.]+([eE][-+]?[0-9]+)?|NaN|[+-]Inf)( -?[0-9]+)?$')


def test_metrics_prometheus_text(server):
    assert_error(server.get("/metrics", token=None), 401, "unauthenticated")
    server.get("/api/v1/runs/run-000000000000")  # a 404 to count
    r = server.get("/metrics")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    text = r.body.decode("utf-8")
    lines = [l for l in text.splitlines() if l.strip()]
    assert any(l.startswith("# TYPE ") for l in lines), text[:2000]
    samples = [l for l in lines if not l.startswith("#")]
    bad = [l for l in samples if not PROM_SAMPLE.match(l)]
    assert not bad, "not Prometheus text format: %r" % bad[:5]
    assert any("status=" in l for l in samples), text[:2000]
    assert any("route=" in l or "path=" in l for l in samples), text[:2000]
    assert any('status="404"' in l for l in samples), "request counter by status"
    names = {re.split(r"[{ ]", l, 1)[0] for l in samples}
    assert any("run" in n for n in names), names
    assert any("node" in n for n in names), names


def _norm(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_openapi(server):
    assert_error(server.get("/api/v1/openapi.json", token=None), 401, "unauthenticated")
    r = server.get("/api/v1/openapi.json")
    assert r.status == 200, r
    doc = r.body if isinstance(r.body, dict) else json.loads(r.body)
    assert isinstance(doc.get("openapi"), str) and doc["openapi"].startswith("3"), doc.get(
        "openapi")
    paths = {_norm(p) for p in doc["paths"]}
    want = [
        "/api/v1/runs", "/api/v1/runs/{}", "/api/v1/runs/{}/cancel", "/api/v1/experiments",
        "/api/v1/snapshots", "/api/v1/snapshots/{}", "/api/v1/nodes", "/api/v1/nodes/{}",
        "/api/v1/nodes/{}/heartbeat", "/api/v1/nodes/{}/drain", "/api/v1/compute",
        "/api/v1/tokens", "/api/v1/tokens/{}", "/healthz", "/metrics",
    ]
    missing = [p for p in want if p not in paths]
    assert not missing, "openapi.json lacks %r" % missing
    runs = doc["paths"][[p for p in doc["paths"] if _norm(p) == "/api/v1/runs"][0]]
    assert "get" in runs and "post" in runs


# --------------------------------------------------------------------------
# §2 the `trainyard server` command
# --------------------------------------------------------------------------

def _run_cli(args, cwd=None, timeout=10):
    return subprocess.run([BIN] + args, capture_output=True, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def _clean(p):
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    for w in BAD_LOG_WORDS:
        assert w not in out, out
    return out


def test_server_help():
    p = _run_cli(["server", "--help"])
    out = _clean(p)
    assert p.returncode == 0, out
    for opt in ("--listen", "--data", "--node-timeout", "--max-snapshot-mb", "--dev"):
        assert opt in out, (opt, out)


@pytest.mark.parametrize("args", [["--bogus-option"], ["--node-timeout", "abc"],
                                  ["--max-snapshot-mb", "-1"], ["--listen"]],
                         ids=["unknown-option", "timeout-not-number", "negative-mb",
                              "missing-value"])
def test_server_bad_usage_exit_2(tmp_path, args):
    p = _run_cli(["server", "--data", str(tmp_path)] + args)
    out = _clean(p)
    assert p.returncode == 2, (p.returncode, out)
    assert not (tmp_path / "server.url").exists()


def test_server_port_in_use_exit_1(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        p = _run_cli(["server", "--listen", "127.0.0.1:%d" % port, "--data", str(tmp_path)])
        out = _clean(p)
        assert p.returncode == 1, (p.returncode, out)
        assert not (tmp_path / "server.url").exists()
    finally:
        s.close()


def test_default_data_dir_is_var(tmp_path, server_factory):
    srv = server_factory(data_dir=tmp_path / "var", cwd=str(tmp_path), pass_data=False)
    assert (tmp_path / "var" / "admin.token").exists()
    assert srv.get("/healthz", token=None).status == 200
    assert srv.get("/api/v1/runs").status == 200


def test_lifecycle_files_and_clean_shutdown(server_factory):
    srv = server_factory()
    url_file = os.path.join(srv.data_dir, "server.url")
    with open(url_file) as f:
        assert re.match(r"^http://127\.0\.0\.1:\d+\n$", f.read())
    assert "admin.token" in srv.log_text(), "first start says where the admin token is"
    assert srv.admin_token not in srv.log_text(), "the secret itself is not logged"
    srv.stop()
    assert not os.path.exists(url_file), "server.url removed on clean shutdown"


def test_sigint_also_clean(server_factory):
    srv = server_factory()
    srv.proc.send_signal(2)
    rc = srv.proc.wait(10)
    assert rc == 0, srv.log_tail()
    srv.proc = None
    srv.check_log()


def test_keep_alive_connection_reuse(server):
    """Several requests, good and bad, on one persistent connection."""
    import http.client
    import urllib.parse
    u = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    auth = {"Authorization": "Bearer " + server.admin_token}
    jh = dict(auth, **{"Content-Type": "application/json"})
    exp = uniq("ka")
    try:
        steps = [
            ("GET", "/healthz", None, {}, 200),
            ("POST", "/api/v1/runs", b'{"experiment": "%s"' % exp.encode(), jh, 400),
            ("POST", "/api/v1/runs", json.dumps({"experiment": exp, "command": ["x"]}).encode(),
             jh, 201),
            ("GET", "/api/v1/runs?experiment=" + exp, None, auth, 200),
            ("GET", "/api/v1/" + uniq("nothing"), None, auth, 404),
            ("POST", "/api/v1/runs", b"{}", dict(auth, **{"Content-Type": "text/plain"}), 415),
            ("GET", "/api/v1/runs?experiment=" + exp, None, auth, 200),
        ]
        for method, path, body, hdrs, want in steps:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            check_openapi(server.url, method, path, r.status,
                          {k.lower(): v for k, v in r.getheaders()}, data)
            assert r.status == want, (method, path, r.status, data[:300])
            if path.startswith("/api/v1/runs?"):
                assert len(json.loads(data)["items"]) == 1
    finally:
        conn.close()


def _samples(srv):
    """/metrics as {sample name with labels: value}."""
    r = srv.get("/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode("utf-8").splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_scheduler_passes_and_placements(server_factory, agent_factory):
    srv = server_factory()
    m = _samples(srv)
    for name in ("trainyard_scheduler_pass_seconds_count", "trainyard_scheduler_pass_seconds_sum",
                 'trainyard_scheduler_pass_seconds_bucket{le="+Inf"}',
                 "trainyard_scheduler_placed_runs_total", "trainyard_scheduler_placed_tasks_total",
                 "trainyard_scheduler_pushed_tasks_total",
                 "trainyard_scheduler_push_failures_total", "trainyard_nodes_lost_total"):
        assert name in m, (name, sorted(m))
    for phase in ("expire", "sweeps", "read", "place", "commit", "reasons", "outbox", "ack"):
        assert 'trainyard_scheduler_phase_seconds_total{phase="%s"}' % phase in m, phase
    assert m["trainyard_scheduler_placed_tasks_total"] == 0
    assert m["trainyard_scheduler_pushed_tasks_total"] == 0
    passes = m["trainyard_scheduler_pass_seconds_count"]

    agent_factory(srv, uniq("node"))
    # Two tasks (pytorch, two processes on one node): one run, two assignments.
    r = srv.post("/api/v1/runs", {"experiment": "passes", "command": ["true"],
                                  "distributed_backend": "pytorch", "process_count_per_node": 2})
    assert r.status == 201, r
    run_id = r.body["id"]
    wait_for(lambda: srv.get("/api/v1/runs/" + run_id).body["status"] == "completed", 30,
             "the run completed")
    wait_for(lambda: _samples(srv)["trainyard_scheduler_pushed_tasks_total"] == 2, 10,
             "both assignments counted as accepted")
    m = _samples(srv)
    assert m["trainyard_scheduler_placed_runs_total"] == 1, m
    assert m["trainyard_scheduler_placed_tasks_total"] == 2, m
    assert m["trainyard_scheduler_pass_seconds_count"] > passes
    assert m['trainyard_scheduler_pass_seconds_bucket{le="+Inf"}'] == \
        m["trainyard_scheduler_pass_seconds_count"]
    assert m["trainyard_scheduler_pass_seconds_sum"] > 0
    # A placement was read, decided, written and pushed, the push's ack written.
    for phase in ("read", "commit", "outbox", "ack"):
        assert m['trainyard_scheduler_phase_seconds_total{phase="%s"}' % phase] > 0, phase
    assert m["trainyard_nodes_lost_total"] == 0
    assert m["trainyard_scheduler_push_failures_total"] == 0


def test_metrics_count_push_failures(server_factory):
    srv = server_factory()
    pool = uniq("pool")
    # Nothing listens on port 1: every push of the task fails.
    srv.register_node(uniq("node"), pool, agent_url="http://127.0.0.1:1")
    r = srv.post("/api/v1/runs", {"experiment": "pushes", "command": ["true"],
                                  "compute_target": pool})
    assert r.status == 201, r
    wait_for(lambda: _samples(srv)["trainyard_scheduler_push_failures_total"] >= 1, 20,
             "a failed push counted")
    m = _samples(srv)
    assert m["trainyard_scheduler_placed_tasks_total"] == 1, m
    assert m["trainyard_scheduler_pushed_tasks_total"] == 0, m


def test_metrics_count_nodes_lost(server_factory):
    srv = server_factory(["--node-timeout", "1"])
    srv.register_node(uniq("node"), uniq("pool"))
    srv.register_node(uniq("node"), uniq("pool"))
    wait_for(lambda: _samples(srv)["trainyard_nodes_lost_total"] == 2, 10,
             "two nodes counted lost")
    # Nodes already down are not counted again by later passes.
    passes = _samples(srv)["trainyard_scheduler_pass_seconds_count"]
    wait_for(lambda: _samples(srv)["trainyard_scheduler_pass_seconds_count"] >= passes + 2, 10,
             "two more passes")
    m = _samples(srv)
    assert m["trainyard_nodes_lost_total"] == 2, m
