"""A returned spec is accepted back unchanged, and runs can be rerun (SPEC §9).

Every backend's returned `spec` is POSTed back to /api/v1/runs and must give
201 with an equal spec; POST /api/v1/runs/{id}/rerun repeats a run (with
and without overrides) as a new run owned by the caller, tagged
`trainyard/rerun_of` with the original's id.  Real server, real agent.
"""

import pytest

from conftest import RUN_ID, assert_error, project_tgz, uniq, wait_for

RERUN_TAG = "trainyard/rerun_of"


def _specs(snapshot_id):
    """One submission per backend and shape, with the optional fields set."""
    e = uniq("rerun")
    cmd = ["true"]
    return [
        {"experiment": e, "command": cmd},
        {"experiment": e, "source": snapshot_id, "entry_script": "train.py",
         "script_params": {"--lr": 0.01, "--verbose": True, "--off": False, "--n": None},
         "arguments": ["extra"]},
        {"experiment": e, "command": cmd, "tags": {"team": "a", "k/x": "1"},
         "environment_variables": {"A": "1"}, "pip_packages": ["numpy"], "priority": 7,
         "max_retries": 2, "max_run_duration_seconds": 60, "cpus_per_process": 0.5,
         "memory_mb_per_process": 64, "compute_target": uniq("pool"),
         "node_selector": {"zone": "a", "gpu.kind": "x-1"}},
        {"experiment": e, "command": cmd, "distributed_backend": "ps", "node_count": 2,
         "worker_count": 3, "parameter_server_count": 2, "chief": True, "evaluator": True},
        {"experiment": e, "command": cmd, "distributed_backend": "ps"},
        {"experiment": e, "command": cmd, "distributed_backend": "pytorch", "node_count": 2,
         "process_count_per_node": 2},
        {"experiment": e, "command": cmd, "distributed_backend": "mpi", "node_count": 2,
         "use_gpu": True, "gpus_per_process": 2, "process_count_per_node": 3},
    ]


@pytest.mark.parametrize("index", range(7))
def test_returned_spec_is_accepted_unchanged(server, snapshot, index):
    spec_in = _specs(snapshot[0])[index]
    first = server.create_run(spec_in)
    got = server.get("/api/v1/runs/" + first["id"])
    assert got.status == 200, got
    spec = got.body["spec"]
    again = server.post("/api/v1/runs", spec)
    assert again.status == 201, (spec, again)
    assert again.body["id"] != first["id"]
    assert again.body["spec"] == spec
    assert server.get("/api/v1/runs/" + again.body["id"]).body["spec"] == spec


def test_defaults_taken_back_but_real_mistakes_still_refused(server):
    e = uniq("rerun")
    bad = [
        ({"command": ["x"], "script_params": {"--a": 1}}, "script_params"),
        ({"command": ["x"], "gpus_per_process": 1}, "gpus_per_process"),
        ({"command": ["x"], "use_gpu": True, "gpus_per_process": 0}, "gpus_per_process"),
        ({"command": ["x"], "chief": True}, "chief"),
        ({"command": ["x"], "worker_count": 2}, "worker_count"),
        ({"command": ["x"], "process_count_per_node": 2}, "process_count_per_node"),
        ({"command": ["x"], "distributed_backend": "ps", "process_count_per_node": 2},
         "process_count_per_node"),
    ]
    for body, field in bad:
        body = dict(body, experiment=e)
        assert_error(server.post("/api/v1/runs", body), 400, "invalid_argument", field)
    ok = server.post("/api/v1/runs", {"experiment": e, "command": ["x"], "script_params": {},
                                      "gpus_per_process": 0, "chief": False,
                                      "worker_count": None, "process_count_per_node": 1})
    assert ok.status == 201, ok
    assert server.runs_of(e)[0]["id"] == ok.body["id"]  # the refused ones left nothing


def test_rerun_without_and_with_overrides(server, user_token):
    e = uniq("rerun")
    orig = server.create_run({"experiment": e, "command": ["true"],
                              "tags": {"team": "a"}, "priority": 1})
    plain = server.post("/api/v1/runs/%s/rerun" % orig["id"], token=user_token)
    assert plain.status == 201, plain
    assert RUN_ID.match(plain.body["id"]) and plain.body["id"] != orig["id"]
    assert plain.body["experiment"] == e
    assert plain.body["owner"] != orig["owner"]  # the caller's token name
    assert plain.body["tags"] == {"team": "a", RERUN_TAG: orig["id"]}
    want = dict(orig["spec"], tags={"team": "a", RERUN_TAG: orig["id"]})
    assert plain.body["spec"] == want
    listed = server.get("/api/v1/runs?tag=%s:%s" % (RERUN_TAG, orig["id"])).body["items"]
    assert [r["id"] for r in listed] == [plain.body["id"]]

    # A rerun of a rerun names its own original.
    again = server.post("/api/v1/runs/%s/rerun" % plain.body["id"], {})
    assert again.status == 201, again
    assert again.body["tags"][RERUN_TAG] == plain.body["id"]

    e2 = uniq("rerun2")
    over = server.post("/api/v1/runs/%s/rerun" % orig["id"],
                       {"priority": 5, "experiment": e2, "command": ["echo", "hi"],
                        "tags": {"b": "c"}}, token=user_token)
    assert over.status == 201, over
    assert over.body["experiment"] == e2
    assert over.body["spec"]["priority"] == 5
    assert over.body["spec"]["command"] == ["echo", "hi"]
    assert over.body["tags"] == {"b": "c", RERUN_TAG: orig["id"]}


def test_rerun_mistakes(server, viewer_token):
    orig = server.create_run({"experiment": uniq("rerun"), "command": ["true"]})
    path = "/api/v1/runs/%s/rerun" % orig["id"]
    assert_error(server.post(path, {"bogus": 1}), 400, "invalid_argument", "bogus")
    assert_error(server.post(path, {"priority": "high"}), 400, "invalid_argument", "priority")
    assert_error(server.post(path, {"script_params": {"--x": 1}}), 400, "invalid_argument",
                 "script_params")
    assert_error(server.post(path, body=b"[1]"), 400, "invalid_argument")
    assert_error(server.post(path, body=b"{", content_type="application/json"), 400,
                 "invalid_argument")
    assert_error(server.post("/api/v1/runs/run-000000000000/rerun"), 404, "not_found")
    assert_error(server.post(path, token=viewer_token), 403, "permission_denied")
    assert_error(server.post(path, token=None), 401, "unauthenticated")
    assert len(server.runs_of(orig["experiment"])) == 1  # nothing was created


def test_rerun_runs_again(server_factory, agent_factory):
    srv = server_factory()
    agent = agent_factory(srv)
    snap = srv.upload_snapshot(project_tgz())["id"]
    orig = srv.create_run({"experiment": uniq("rerun"), "source": snap,
                           "entry_script": "train.py", "script_params": {"--x": 1}})

    def ended(run_id):
        r = srv.get("/api/v1/runs/" + run_id).body
        return r if r["status"] in ("completed", "failed", "canceled") else None

    first = wait_for(lambda: ended(orig["id"]), what="the original run to end")
    assert first["status"] == "completed", (first, agent.log_tail())
    rerun = srv.post("/api/v1/runs/%s/rerun" % orig["id"])
    assert rerun.status == 201, rerun
    second = wait_for(lambda: ended(rerun.body["id"]), what="the rerun to end")
    assert second["status"] == "completed", (second, agent.log_tail())
    assert second["spec"]["entry_script"] == "train.py"
    assert second["spec"]["script_params"] == {"--x": 1}
