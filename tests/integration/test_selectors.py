"""Node selectors (SPEC §9): a run's `node_selector` picks nodes by their
agents' `--label`s.

Two real agents with different labels in one pool: a run selecting one
label runs only on that node (by the API and by `trainyard submit
--node-selector`); a run no node matches stays queued with a reason that
says so (unschedulable); a bad selector is a 400 naming the field.  Real server, real
agents, real processes.
"""

import os
import subprocess

from conftest import BIN, assert_error, uniq, wait_for

DONE = ("completed", "failed", "canceled")


def _two_labelled_agents(server_factory, agent_factory, pool):
    server = server_factory()
    a = agent_factory(server, uniq("zone-a"),
                      extra_args=["--pool", pool, "--label", "zone=a", "--label", "disk=ssd"])
    b = agent_factory(server, uniq("zone-b"),
                      extra_args=["--pool", pool, "--label", "zone=b", "--label", "disk=ssd"])
    return server, a, b


def _finished(server, run_id):
    holder = {}

    def done():
        r = server.get("/api/v1/runs/" + run_id)
        holder["run"] = r.body
        return r.status == 200 and r.body["status"] in DONE

    wait_for(done, 60, lambda: "run %s to end: %s" % (run_id, holder.get("run")))
    return holder["run"]


def test_selector_places_only_on_matching_nodes(server_factory, agent_factory):
    pool = uniq("pool")
    server, a, b = _two_labelled_agents(server_factory, agent_factory, pool)
    e = uniq("sel")
    ids = []
    for i in range(4):
        # Alternating, so a selector that were ignored would land on the
        # wrong node in about half the runs.
        zone = "a" if i % 2 == 0 else "b"
        r = server.post("/api/v1/runs", {"experiment": e, "command": ["true"], "compute_target": pool,
                               "node_selector": {"disk": "ssd", "zone": zone}})
        assert r.status == 201, r.body
        assert r.body["spec"]["node_selector"] == {"disk": "ssd", "zone": zone}
        ids.append((r.body["id"], a.name if zone == "a" else b.name))
    for run_id, want in ids:
        run = _finished(server, run_id)
        assert run["status"] == "completed", run
        assert [t["node"] for t in run["tasks"]] == [want], run

    # The CLI's --node-selector (repeatable) sends the same field.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    e2 = uniq("selcli")
    p = subprocess.run([BIN, "submit", "--server", server.url, "--token", server.admin_token,
                        "--experiment", e2, "--pool", pool, "--node-selector", "zone=b",
                        "--node-selector", "disk=ssd", "--command", "--", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    runs = server.runs_of(e2)
    assert len(runs) == 1
    assert runs[0]["spec"]["node_selector"] == {"zone": "b", "disk": "ssd"}
    run = _finished(server, runs[0]["id"])
    assert run["status"] == "completed" and run["tasks"][0]["node"] == b.name, run

    p = subprocess.run([BIN, "submit", "--server", server.url, "--token", server.admin_token,
                        "--experiment", e2, "--node-selector", "zone", "--command", "--", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    assert p.returncode != 0 and b"--node-selector takes KEY=VALUE" in p.stderr, p.stderr

    # The nodes carry their labels for the dashboard.
    node = server.get("/api/v1/nodes/" + a.name).body
    assert node["labels"] == {"zone": "a", "disk": "ssd"}


def test_selector_no_node_matches_stays_queued(server_factory, agent_factory):
    pool = uniq("pool")
    server, a, b = _two_labelled_agents(server_factory, agent_factory, pool)
    e = uniq("sel")
    # zone=a and zone=b each match a node, but no node has both a label
    # zone=c; nor does any node match zone=a with disk=hdd.
    bad = []
    for sel in ({"zone": "c"}, {"zone": "a", "disk": "hdd"}):
        r = server.post("/api/v1/runs", {"experiment": e, "command": ["true"], "compute_target": pool,
                               "node_selector": sel})
        assert r.status == 201, r.body
        bad.append(r.body["id"])
    good = server.post("/api/v1/runs", {"experiment": e, "command": ["true"], "compute_target": pool,
                              "node_selector": {"zone": "a"}}).body["id"]
    assert _finished(server, good)["status"] == "completed"
    for run_id in bad:
        def has_reason():
            run = server.get("/api/v1/runs/" + run_id).body
            return run["status"] == "queued" and "node_selector" in (run.get("reason") or "")
        wait_for(has_reason, 30, lambda: "a reason naming node_selector: %s"
                 % server.get("/api/v1/runs/" + run_id).body)
        run = server.get("/api/v1/runs/" + run_id).body
        assert run["tasks"][0]["node"] is None, run
        # No node, ready or not, matches: unschedulable (it fails after
        # --unschedulable-timeout, 600 s by default; test_unschedulable.py).
        assert run["reason"].startswith("unschedulable: nodes of pool '%s' that match its "
                                        "node_selector, ready or not: 0" % pool), run


def test_bad_selectors_are_refused(server):
    e = uniq("sel")
    base = {"experiment": e, "command": ["true"]}
    for sel, words in (
            ("zone=a", "must be an object"),
            (["zone", "a"], "must be an object"),
            ({"zone": 1}, "must be a string"),
            ({"zone": None}, "must be a string"),
            ({"": "a"}, "key ''"),
            ({"bad key": "a"}, "key 'bad key'"),
            ({"k": "x" * 257}, "over 256"),
            (dict(("k%d" % i, "v") for i in range(33)), "more than 32")):
        r = server.post("/api/v1/runs", dict(base, node_selector=sel))
        assert_error(r, 400, "invalid_argument", "node_selector")
        assert words in r.body["error"]["message"], (sel, r.body)
    r = server.req("POST", "/api/v1/runs",
                   body=b'{"experiment": "x", "command": ["true"], '
                        b'"node_selector": {"a": "1", "a": "2"}}')
    assert_error(r, 400, "invalid_argument", "node_selector")
    assert not server.runs_of(e)
    # An empty selector is the default: every node.
    r = server.post("/api/v1/runs", dict(base, node_selector={}))
    assert r.status == 201 and r.body["spec"]["node_selector"] == {}
    r = server.post("/api/v1/runs", base)
    assert r.status == 201 and r.body["spec"]["node_selector"] == {}
