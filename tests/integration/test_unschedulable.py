"""Unschedulable is not waiting (issue 14 item 9).

A queued run that no node of its pool could ever hold (a GPU request where
no node has the GPUs, more CPUs than any node, a selector no node matches,
more nodes than the pool has) gets a reason starting `unschedulable:` and
fails with it after `--unschedulable-timeout`; a run that waits for capacity
(busy nodes, or nodes that are down but would do) keeps waiting.  Real
server, real agents, real processes.
"""

from conftest import uniq, wait_for

DONE = ("completed", "failed", "canceled")


def decided(reason):
    """A reason from a scheduling pass (not the one a run is created with)."""
    return reason is not None and reason != "waiting to be scheduled"


def _run(server, run_id):
    return server.get("/api/v1/runs/" + run_id).body


def _submit(server, **fields):
    spec = {"experiment": uniq("unsched"), "command": ["true"]}
    spec.update(fields)
    r = server.post("/api/v1/runs", spec)
    assert r.status == 201, r.body
    return r.body["id"]


def _until(server, run_id, cond, what, timeout=30):
    holder = {}

    def check():
        holder["run"] = _run(server, run_id)
        return cond(holder["run"])

    wait_for(check, timeout, lambda: "%s: %s" % (what, holder.get("run")))
    return holder["run"]


def test_unschedulable_runs_fail_at_once_waiting_ones_wait(server_factory, agent_factory):
    server = server_factory(extra_args=["--unschedulable-timeout", "0", "--node-timeout", "1"])
    pool = uniq("pool")
    agent_factory(server, uniq("small"), extra_args=["--pool", pool, "--label", "zone=a"],
                  cpus=4, gpus=0)
    gone = agent_factory(server, uniq("gone"), extra_args=["--pool", pool, "--label", "zone=b"],
                         cpus=2, gpus=0)
    gone.stop()
    wait_for(lambda: server.get("/api/v1/nodes/" + gone.name).body["state"] != "ready", 15,
             "the stopped agent's node to leave ready")

    cases = [
        (dict(use_gpu=True), "needs 1 GPUs on one node"),
        (dict(cpus_per_process=8), "needs 8 CPUs on one node"),
        (dict(distributed_backend="pytorch", node_count=2, process_count_per_node=5),
         "needs 5 CPUs on one node"),
        (dict(node_selector={"zone": "z"}), "that match its node_selector, ready or not: 0"),
        (dict(distributed_backend="pytorch", node_count=3), "ready or not: 2; the run needs 3"),
        (dict(compute_target=uniq("empty")), "ready or not: 0; the run needs 1"),
    ]
    ids = [(_submit(server, **dict({"compute_target": pool}, **f)), words) for f, words in cases]
    for run_id, words in ids:
        run = _until(server, run_id, lambda r: r["status"] in DONE, "the run to end")
        assert run["status"] == "failed", run
        assert run["error"].startswith("unschedulable: ") and words in run["error"], run
        assert run["reason"] is None and run["started_at"] is None, run
        assert [t["status"] for t in run["tasks"]] == ["failed"] * len(run["tasks"]), run

    # Waiting, not unschedulable: the down node would do (selector zone=b),
    # or the ready node is busy.
    down_only = _submit(server, compute_target=pool, node_selector={"zone": "b"})
    blocker = _submit(server, compute_target=pool, cpus_per_process=4, command=["sleep", "60"])
    _until(server, blocker, lambda r: r["status"] == "running", "the blocker to run")
    busy = _submit(server, compute_target=pool, cpus_per_process=4)
    run = _until(server, down_only, lambda r: decided(r["reason"]), "a reason")
    assert run["status"] == "queued", run
    assert run["reason"].startswith("waiting for nodes: ") and "ready: 0" in run["reason"], run
    run = _until(server, busy, lambda r: decided(r["reason"]), "a reason")
    assert run["status"] == "queued", run
    assert run["reason"].startswith("waiting for capacity"), run
    # Decided in the pass that set the reasons: neither has failed since.
    assert _run(server, down_only)["status"] == "queued"
    assert server.post("/api/v1/runs/%s/cancel" % blocker, {}).status == 200
    run = _until(server, busy, lambda r: r["status"] in DONE, "the waiting run to end")
    assert run["status"] == "completed", run
    assert _run(server, down_only)["status"] == "queued"
    assert server.post("/api/v1/runs/%s/cancel" % down_only, {}).status == 200


def test_unschedulable_timeout_then_fails(server_factory, agent_factory):
    server = server_factory(extra_args=["--unschedulable-timeout", "2"])
    pool = uniq("pool")
    agent_factory(server, uniq("node"), extra_args=["--pool", pool], cpus=2, gpus=0)
    run_id = _submit(server, compute_target=pool, cpus_per_process=3)
    run = _until(server, run_id, lambda r: r["status"] in DONE or decided(r["reason"]),
                 "a reason")
    assert run["status"] == "queued", run
    assert run["reason"].startswith("unschedulable: a part of this run needs 3 CPUs"), run
    run = _until(server, run_id, lambda r: r["status"] in DONE, "the run to fail", timeout=20)
    assert run["status"] == "failed" and run["error"] == (
        "unschedulable: a part of this run needs 3 CPUs on one node; the most any of the nodes "
        "of pool '%s' has, ready or not, is 2" % pool), run
    # Its queued time was at least the timeout.
    assert run["ended_at"] > run["created_at"], run
