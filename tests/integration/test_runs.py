"""SPEC §3.2 runs: create (validation, defaults, tasks), list, get, cancel,
and GET /api/v1/experiments."""

import json
import threading
import urllib.parse

import pytest

from conftest import RUN_ID, assert_error, is_rfc3339_utc, uniq

CMD = ["python3", "-c", "pass"]
SNAP = object()  # placeholder for the shared snapshot's id


def base(exp):
    return {"experiment": exp, "command": list(CMD)}


def assert_nothing_written(server, exp):
    """A rejected submission left no run and no experiment behind."""
    if isinstance(exp, str):
        assert exp not in server.experiment_names()
        if exp and len(exp) <= 128 and all(c.isascii() and (c.isalnum() or c in "._-")
                                           for c in exp):
            assert server.runs_of(exp) == []


# --------------------------------------------------------------------------
# Validation table: (id, overrides, keys to drop, expected error.field)
# --------------------------------------------------------------------------
PS = {"distributed_backend": "ps"}
CASES = [
    ("experiment-missing", {}, ["experiment"], "experiment"),
    ("experiment-empty", {"experiment": ""}, [], "experiment"),
    ("experiment-null", {"experiment": None}, [], "experiment"),
    ("experiment-int", {"experiment": 123}, [], "experiment"),
    ("experiment-space", {"experiment": "bad name"}, [], "experiment"),
    ("experiment-slash", {"experiment": "a/b"}, [], "experiment"),
    ("experiment-non-ascii", {"experiment": "exp\u00e9"}, [], "experiment"),
    ("experiment-129-chars", {"experiment": "x" * 129}, [], "experiment"),
    ("unknown-field", {"bogus_field": 1}, [], "bogus_field"),
    ("source-int", {"source": 5}, [], "source"),
    ("source-malformed", {"source": "not-a-snapshot"}, [], "source"),
    ("source-unknown", {"source": "sha256:" + "0" * 64}, [], "source"),
    ("entry-script-without-source", {"entry_script": "train.py"}, ["command"],
     ("source", "entry_script")),
    ("entry-script-int", {"source": SNAP, "entry_script": 5}, ["command"], "entry_script"),
    ("entry-script-empty", {"source": SNAP, "entry_script": ""}, ["command"], "entry_script"),
    ("entry-script-dotdot", {"source": SNAP, "entry_script": "../escape.py"}, ["command"],
     "entry_script"),
    ("entry-script-absolute", {"source": SNAP, "entry_script": "/etc/passwd"}, ["command"],
     "entry_script"),
    ("entry-script-and-command", {"source": SNAP, "entry_script": "train.py"}, [],
     ("entry_script", "command")),
    ("neither-entry-script-nor-command", {}, ["command"], ("entry_script", "command")),
    ("command-string", {"command": "python3 train.py"}, [], "command"),
    ("command-non-string-item", {"command": ["python3", 1]}, [], "command"),
    ("command-empty", {"command": []}, [], "command"),
    ("command-object", {"command": {"a": "b"}}, [], "command"),
    ("command-nul-byte", {"command": ["python3", "a\u0000b"]}, [], "command"),
    ("experiment-nul-byte", {"experiment": "x\u0000y"}, [], "experiment"),
    ("env-value-nul-byte", {"environment_variables": {"A": "a\u0000b"}}, [],
     "environment_variables"),
    ("script-params-array", {"script_params": ["--lr", "0.1"]}, [], "script_params"),
    ("script-params-string", {"script_params": "--lr 1"}, [], "script_params"),
    ("script-params-array-value", {"script_params": {"--lr": [1, 2]}}, [], "script_params"),
    ("script-params-object-value", {"script_params": {"--lr": {"a": 1}}}, [], "script_params"),
    ("arguments-string", {"arguments": "--x"}, [], "arguments"),
    ("arguments-non-string-item", {"arguments": ["--x", 2]}, [], "arguments"),
    ("arguments-object", {"arguments": {"a": "b"}}, [], "arguments"),
    ("compute-target-int", {"compute_target": 3}, [], "compute_target"),
    ("compute-target-empty", {"compute_target": ""}, [], "compute_target"),
    ("use-gpu-string", {"use_gpu": "true"}, [], "use_gpu"),
    ("use-gpu-int", {"use_gpu": 1}, [], "use_gpu"),
    ("gpus-per-process-without-use-gpu", {"gpus_per_process": 2}, [], "gpus_per_process"),
    ("gpus-per-process-negative", {"use_gpu": True, "gpus_per_process": -1}, [],
     "gpus_per_process"),
    ("gpus-per-process-string", {"use_gpu": True, "gpus_per_process": "2"}, [],
     "gpus_per_process"),
    ("cpus-per-process-negative", {"cpus_per_process": -1}, [], "cpus_per_process"),
    ("cpus-per-process-string", {"cpus_per_process": "1"}, [], "cpus_per_process"),
    ("memory-negative", {"memory_mb_per_process": -1}, [], "memory_mb_per_process"),
    ("memory-string", {"memory_mb_per_process": "1024"}, [], "memory_mb_per_process"),
    ("backend-unknown", {"distributed_backend": "horovod"}, [], "distributed_backend"),
    ("backend-int", {"distributed_backend": 1}, [], "distributed_backend"),
    ("backend-empty", {"distributed_backend": ""}, [], "distributed_backend"),
    ("node-count-zero", {"node_count": 0}, [], "node_count"),
    ("node-count-negative", {"node_count": -2}, [], "node_count"),
    ("node-count-float", {"node_count": 1.5}, [], "node_count"),
    ("node-count-string", {"node_count": "2"}, [], "node_count"),
    ("node-count-bool", {"node_count": True}, [], "node_count"),
    ("node-count-beyond-int64", {"node_count": 1e20}, [], "node_count"),
    ("pytorch-absurd-size", {"distributed_backend": "pytorch", "node_count": 1000000,
                             "process_count_per_node": 1000000}, [],
     ("node_count", "process_count_per_node")),
    ("ppn-without-backend", {"process_count_per_node": 2}, [], "process_count_per_node"),
    ("ppn-with-ps", dict(PS, process_count_per_node=2), [], "process_count_per_node"),
    ("ppn-zero-mpi", {"distributed_backend": "mpi", "process_count_per_node": 0}, [],
     "process_count_per_node"),
    ("ppn-string-pytorch", {"distributed_backend": "pytorch", "process_count_per_node": "2"},
     [], "process_count_per_node"),
    ("worker-count-without-ps", {"worker_count": 2}, [], "worker_count"),
    ("worker-count-with-mpi", {"distributed_backend": "mpi", "worker_count": 2}, [],
     "worker_count"),
    ("ps-count-without-ps", {"parameter_server_count": 1}, [], "parameter_server_count"),
    ("ps-count-with-pytorch", {"distributed_backend": "pytorch", "parameter_server_count": 1},
     [], "parameter_server_count"),
    ("chief-without-ps", {"chief": True}, [], "chief"),
    ("evaluator-without-ps", {"evaluator": True}, [], "evaluator"),
    ("evaluator-with-mpi", {"distributed_backend": "mpi", "evaluator": True}, [], "evaluator"),
    ("chief-string", dict(PS, chief="yes"), [], "chief"),
    ("worker-count-negative", dict(PS, worker_count=-1), [], "worker_count"),
    ("worker-count-float", dict(PS, worker_count=1.5), [], "worker_count"),
    ("ps-count-negative", dict(PS, parameter_server_count=-1), [], "parameter_server_count"),
    ("ps-tasks-fewer-than-nodes", dict(PS, node_count=3, worker_count=1,
                                       parameter_server_count=1), [],
     ("node_count", "worker_count", "parameter_server_count")),
    ("pip-packages-string", {"pip_packages": "numpy"}, [], "pip_packages"),
    ("pip-packages-non-string", {"pip_packages": ["numpy", 1]}, [], "pip_packages"),
    ("conda-packages-string", {"conda_packages": "scikit-learn"}, [], "conda_packages"),
    ("conda-packages-no-conda-node", {"conda_packages": ["scikit-learn"]}, [],
     ("conda_packages", "compute_target")),
    ("env-not-object", {"environment_variables": ["A=1"]}, [], "environment_variables"),
    ("env-name-leading-digit", {"environment_variables": {"1A": "x"}}, [],
     "environment_variables"),
    ("env-name-dash", {"environment_variables": {"A-B": "x"}}, [], "environment_variables"),
    ("env-name-equals", {"environment_variables": {"A=B": "x"}}, [], "environment_variables"),
    ("env-name-empty", {"environment_variables": {"": "x"}}, [], "environment_variables"),
    ("env-name-space", {"environment_variables": {"A B": "x"}}, [], "environment_variables"),
    ("env-name-trainyard-run-id", {"environment_variables": {"TRAINYARD_RUN_ID": "x"}}, [],
     "environment_variables"),
    ("env-name-trainyard-prefix", {"environment_variables": {"TRAINYARD_FOO": "x"}}, [],
     "environment_variables"),
    ("env-value-int", {"environment_variables": {"A": 1}}, [], "environment_variables"),
    ("env-value-null", {"environment_variables": {"A": None}}, [], "environment_variables"),
    ("max-duration-negative", {"max_run_duration_seconds": -1}, [], "max_run_duration_seconds"),
    ("max-duration-float", {"max_run_duration_seconds": 1.5}, [], "max_run_duration_seconds"),
    ("max-duration-string", {"max_run_duration_seconds": "60"}, [], "max_run_duration_seconds"),
    ("max-retries-negative", {"max_retries": -1}, [], "max_retries"),
    ("max-retries-string", {"max_retries": "1"}, [], "max_retries"),
    ("priority-string", {"priority": "high"}, [], "priority"),
    ("priority-float", {"priority": 1.5}, [], "priority"),
    ("priority-beyond-int64", {"priority": 1e300}, [], "priority"),
    ("tags-int-value", {"tags": {"k": 1}}, [], "tags"),
    ("tags-bool-value", {"tags": {"k": True}}, [], "tags"),
    ("tags-null-value", {"tags": {"k": None}}, [], "tags"),
    ("tags-array", {"tags": ["a"]}, [], "tags"),
    ("tags-string", {"tags": "k:v"}, [], "tags"),
]


@pytest.mark.parametrize("overrides,drop,field", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_create_rejects_invalid_spec(server, snapshot, overrides, drop, field):
    exp = uniq("bad")
    body = base(exp)
    for k, v in overrides.items():
        body[k] = snapshot[0] if v is SNAP else v
    for k in drop:
        body.pop(k, None)
    r = server.post("/api/v1/runs", body)
    assert_error(r, 400, "invalid_argument", field)
    assert_nothing_written(server, body.get("experiment"))


def test_experiment_name_128_chars_and_full_charset_accepted(server):
    for exp in ["e" * 116 + uniq("")[1:], "Az09._-" + uniq("x")]:
        assert len(exp) <= 128
        run = server.create_run(base(exp))
        assert run["experiment"] == exp
        assert exp in server.experiment_names()


# --------------------------------------------------------------------------
# Body-level errors
# --------------------------------------------------------------------------

def _bodies(exp):
    good = json.dumps(base(exp))
    e = exp.encode()
    return {
        "truncated": good[:-1].encode(),
        "trailing-garbage": (good + " xyz").encode(),
        "two-objects": (good + "{}").encode(),
        "array": ("[" + good + "]").encode(),
        "string": json.dumps(exp).encode(),
        "null": b"null",
        "number": b"42",
        "empty": b"",
        "not-json": b"experiment=" + e,
        "deep-nesting": b'{"experiment": "' + e + b'", "command": ["x"], "tags": ' + b"[" * 200000,
    }


@pytest.mark.parametrize("kind", sorted(_bodies("x")))
def test_create_rejects_malformed_body(server, kind):
    exp = uniq("malformed")
    r = server.req("POST", "/api/v1/runs", body=_bodies(exp)[kind])
    assert_error(r, 400, "invalid_argument")
    assert_nothing_written(server, exp)
    assert server.get("/healthz", token=None).status == 200


def test_create_rejects_invalid_utf8(server_factory):
    # a private server: if this is accepted, the bytes poison every later list response
    srv = server_factory()
    exp = uniq("utf8")
    body = (b'{"experiment": "' + exp.encode() +
            b'", "command": ["x"], "tags": {"k": "\xff\xfe"}}')
    r = srv.req("POST", "/api/v1/runs", body=body)
    lst = srv.get("/api/v1/runs")
    assert isinstance(lst.body, dict), "GET /api/v1/runs is no longer valid JSON: %r" % (
        lst.body[:300],)
    assert_error(r, 400, "invalid_argument")
    assert_nothing_written(srv, exp)


def test_concurrent_submissions(server):
    exp = uniq("conc")
    results = []

    def worker():
        for _ in range(5):
            results.append(server.post("/api/v1/runs", base(exp)))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 80 and all(r.status == 201 for r in results), [
        r for r in results if r.status != 201][:3]
    ids = {r.body["id"] for r in results}
    assert len(ids) == 80
    assert {r["id"] for r in server.list_all("/api/v1/runs?experiment=" + exp)} == ids
    assert [e["run_count"] for e in server.list_all("/api/v1/experiments")
            if e["name"] == exp] == [80]


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_create_wrong_content_type_415(server, ctype):
    exp = uniq("ctype")
    r = server.req("POST", "/api/v1/runs", body=json.dumps(base(exp)).encode(),
                   content_type=ctype)
    assert_error(r, 415, "unsupported_media_type")
    assert_nothing_written(server, exp)


def test_create_json_with_charset_accepted(server):
    exp = uniq("charset")
    r = server.req("POST", "/api/v1/runs", body=json.dumps(base(exp)).encode(),
                   content_type="application/json; charset=utf-8")
    assert r.status == 201, r


def test_create_body_over_1mib_413(server):
    exp = uniq("big")
    body = base(exp)
    body["tags"] = {"big": "a" * (1024 * 1024 + 100)}
    r = server.req("POST", "/api/v1/runs", body=json.dumps(body).encode(), raw=True)
    assert_error(r, 413, "payload_too_large")
    assert_nothing_written(server, exp)
    assert server.get("/healthz", token=None).status == 200


@pytest.mark.parametrize("who", ["none", "bad", "malformed-header", "viewer", "agent"])
def test_create_auth(server, viewer_token, who):
    exp = uniq("auth")
    if who == "none":
        r = server.post("/api/v1/runs", base(exp), token=None)
        assert_error(r, 401, "unauthenticated")
    elif who == "bad":
        r = server.post("/api/v1/runs", base(exp), token="ty_" + "0" * 64)
        assert_error(r, 401, "unauthenticated")
    elif who == "malformed-header":
        r = server.post("/api/v1/runs", base(exp), token=None,
                        headers={"Authorization": "Basic " + server.admin_token})
        assert_error(r, 401, "unauthenticated")
    elif who == "viewer":
        r = server.post("/api/v1/runs", base(exp), token=viewer_token)
        assert_error(r, 403, "permission_denied")
    else:
        agent = server.create_token("agent", node=uniq("n"))["secret"]
        r = server.post("/api/v1/runs", base(exp), token=agent)
        assert_error(r, 403, "permission_denied")
    assert_nothing_written(server, exp)


def test_user_can_submit(server, user_token):
    run = server.create_run(base(uniq("user")), token=user_token)
    assert run["status"] == "queued"


# --------------------------------------------------------------------------
# Accepted runs: defaults, echo, tasks
# --------------------------------------------------------------------------

def _task_triples(run):
    return [(t["name"], t["type"], t["index"]) for t in run["tasks"]]


def _check_tasks(run):
    for t in run["tasks"]:
        assert t["id"] == "%s-a1-%s" % (run["id"], t["name"]), t
        assert t["status"] == "pending", t


def test_create_fills_defaults(server):
    exp = uniq("defaults")
    r = server.post("/api/v1/runs", base(exp))
    assert r.status == 201, r
    assert "application/json" in r.headers.get("content-type", "")
    run = r.body
    assert RUN_ID.match(run["id"]), run["id"]
    assert run["experiment"] == exp
    assert run["status"] == "queued"
    assert isinstance(run.get("reason"), str) and run["reason"], run
    assert run["attempt"] == 1
    assert is_rfc3339_utc(run["created_at"]), run["created_at"]
    assert run.get("started_at") is None and run.get("ended_at") is None
    assert run.get("tags") == {}
    spec = run["spec"]
    expected = {
        "experiment": exp, "command": CMD, "compute_target": "default", "use_gpu": False,
        "cpus_per_process": 1, "memory_mb_per_process": 0, "node_count": 1,
        "process_count_per_node": 1, "max_retries": 0, "priority": 0,
        "max_run_duration_seconds": 0, "script_params": {}, "arguments": [], "tags": {},
    }
    for k, v in expected.items():
        assert spec.get(k) == v, "spec[%r] = %r, want %r" % (k, spec.get(k), v)
    assert spec.get("distributed_backend") is None
    assert _task_triples(run) == [("main", "main", 0)]
    _check_tasks(run)
    got = server.get("/api/v1/runs/" + run["id"])
    assert got.status == 200 and got.body["spec"] == spec and got.body["id"] == run["id"]


@pytest.mark.parametrize("extra", [
    {},
    {"distributed_backend": "ps", "node_count": 2, "tags": {"a": "b"}},
    {"distributed_backend": "pytorch", "node_count": 2, "process_count_per_node": 2},
    {"distributed_backend": "mpi", "node_count": 2},
])
def test_create_reply_is_the_stored_run(server, extra):
    """The 201 is built without reading the run back: it must be exactly
    what GET returns (a pool without nodes keeps the run queued)."""
    body = dict(base(uniq("same")), compute_target=uniq("nonodes"), **extra)
    r = server.post("/api/v1/runs", body)
    assert r.status == 201, r
    got = server.get("/api/v1/runs/" + r.body["id"])
    assert got.status == 200, got
    assert json.dumps(got.body) == json.dumps(r.body), (json.dumps(got.body), json.dumps(r.body))


def test_create_echoes_full_spec(server, snapshot):
    exp = uniq("full")
    body = {
        "experiment": exp, "source": snapshot[0], "entry_script": "train.py",
        "script_params": {"--lr": 0.01, "--batch-size": 50, "--flag": True, "--off": False,
                          "--none": None, "--name": "abc"},
        "arguments": ["--extra", "1"], "compute_target": "default", "use_gpu": True,
        "gpus_per_process": 2, "cpus_per_process": 2, "memory_mb_per_process": 1024,
        "pip_packages": ["numpy"], "environment_variables": {"FOO_1": "bar", "_X": ""},
        "max_run_duration_seconds": 60, "max_retries": 2, "priority": 7,
        "tags": {"team": "vision", "url": "a:b"},
    }
    run = server.create_run(body)
    spec = run["spec"]
    for k, v in body.items():
        assert spec.get(k) == v, "spec[%r] = %r, want %r" % (k, spec.get(k), v)
    assert list(spec["script_params"]) == list(body["script_params"]), "order lost"
    assert run["tags"] == body["tags"]
    assert _task_triples(run) == [("main", "main", 0)]


def test_fractional_cpus_and_negative_priority_accepted(server):
    body = dict(base(uniq("frac")), cpus_per_process=0.5, priority=-3)
    spec = server.create_run(body)["spec"]
    assert spec["cpus_per_process"] == 0.5 and spec["priority"] == -3


def test_use_gpu_defaults_gpus_per_process_to_1(server):
    spec = server.create_run(dict(base(uniq("gpu")), use_gpu=True))["spec"]
    assert spec["use_gpu"] is True and spec["gpus_per_process"] == 1


def test_ps_defaults_and_tasks(server):
    run = server.create_run(dict(base(uniq("ps")), distributed_backend="ps", node_count=2))
    spec = run["spec"]
    assert spec["distributed_backend"] == "ps"
    assert spec["worker_count"] == 2 and spec["parameter_server_count"] == 1
    assert spec.get("chief", False) is False and spec.get("evaluator", False) is False
    assert _task_triples(run) == [("ps-0", "ps", 0), ("worker-0", "worker", 0),
                                  ("worker-1", "worker", 1)]
    _check_tasks(run)
    assert run["status"] == "queued" and run["reason"]


def test_ps_with_chief_and_evaluator_tasks(server):
    run = server.create_run(dict(base(uniq("ps")), distributed_backend="ps", node_count=3,
                                 worker_count=1, parameter_server_count=2, chief=True,
                                 evaluator=True))
    assert _task_triples(run) == [("chief", "chief", 0), ("ps-0", "ps", 0), ("ps-1", "ps", 1),
                                  ("worker-0", "worker", 0), ("evaluator", "evaluator", 0)]
    _check_tasks(run)


def test_pytorch_tasks(server):
    run = server.create_run(dict(base(uniq("pt")), distributed_backend="pytorch", node_count=2,
                                 process_count_per_node=2))
    assert _task_triples(run) == [("rank-%d" % i, "rank", i) for i in range(4)]
    _check_tasks(run)


def test_mpi_tasks(server):
    run = server.create_run(dict(base(uniq("mpi")), distributed_backend="mpi", node_count=2,
                                 process_count_per_node=3))
    assert run["spec"]["process_count_per_node"] == 3
    assert _task_triples(run) == [("launcher", "launcher", 0), ("worker-0", "worker", 0),
                                  ("worker-1", "worker", 1)]
    _check_tasks(run)


def test_conda_packages_accepted_with_conda_node_in_pool(server):
    pool = uniq("condapool")
    server.register_node(uniq("conda-node"), pool, features=["python3", "conda"])
    # node_count 2 with one node: stays queued, nothing is ever sent to the fake agent
    run = server.create_run(dict(base(uniq("conda")), compute_target=pool, node_count=2,
                                 distributed_backend="pytorch",
                                 conda_packages=["scikit-learn"]))
    assert run["spec"]["conda_packages"] == ["scikit-learn"]
    assert run["status"] == "queued" and run["reason"]


# --------------------------------------------------------------------------
# Get / list
# --------------------------------------------------------------------------

def test_get_unknown_run_404(server):
    for rid in ["run-000000000000", "nope"]:
        assert_error(server.get("/api/v1/runs/" + rid), 404, "not_found")


def test_viewer_can_read(server, viewer_token):
    run = server.create_run(base(uniq("read")))
    assert server.get("/api/v1/runs/" + run["id"], token=viewer_token).status == 200
    assert server.get("/api/v1/runs", token=viewer_token).status == 200
    assert server.get("/api/v1/experiments", token=viewer_token).status == 200


def test_list_requires_token(server):
    assert_error(server.get("/api/v1/runs", token=None), 401, "unauthenticated")


def test_list_experiment_filter_newest_first(server):
    exp = uniq("list")
    ids = [server.create_run(base(exp))["id"] for _ in range(3)]
    server.create_run(base(uniq("other")))
    assert [r["id"] for r in server.runs_of(exp)] == ids[::-1]


def test_list_unfiltered_newest_first(server):
    a = server.create_run(base(uniq("g")))["id"]
    b = server.create_run(base(uniq("g")))["id"]
    ids = [r["id"] for r in server.list_all("/api/v1/runs")]
    assert ids.index(b) < ids.index(a)
    assert len(ids) == len(set(ids))


def test_list_status_filter(server):
    exp = uniq("status")
    a = server.create_run(base(exp))["id"]
    b = server.create_run(base(exp))["id"]
    assert server.post("/api/v1/runs/%s/cancel" % a).status == 200
    q = "/api/v1/runs?experiment=%s&status=" % exp
    assert [r["id"] for r in server.get(q + "canceled").body["items"]] == [a]
    assert [r["id"] for r in server.get(q + "queued").body["items"]] == [b]
    assert server.get(q + "running").body["items"] == []


def test_list_tag_filter(server):
    exp = uniq("tags")
    v1, v2 = uniq("v"), uniq("v")
    a = server.create_run(dict(base(exp), tags={"team": v1}))["id"]
    b = server.create_run(dict(base(exp), tags={"team": v2, "url": "http://x:1"}))["id"]
    server.create_run(base(exp))
    r = server.get("/api/v1/runs?tag=" + urllib.parse.quote("team:" + v1))
    assert r.status == 200 and [x["id"] for x in r.body["items"]] == [a]
    r = server.get("/api/v1/runs?experiment=%s&tag=%s" % (exp, urllib.parse.quote("team:" + v2)))
    assert [x["id"] for x in r.body["items"]] == [b]
    r = server.get("/api/v1/runs?experiment=%s&tag=%s" % (exp, urllib.parse.quote("url:http://x:1")))
    assert [x["id"] for x in r.body["items"]] == [b], "tag value containing ':'"
    r = server.get("/api/v1/runs?experiment=%s&tag=team:nomatch" % exp)
    assert r.body["items"] == []


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1", "1.5"])
def test_list_limit_bounds(server, limit):
    assert_error(server.get("/api/v1/runs?limit=" + limit), 400, "invalid_argument", "limit")


def test_list_limit_edges_ok(server):
    exp = uniq("lim")
    for _ in range(2):
        server.create_run(base(exp))
    r = server.get("/api/v1/runs?limit=1000")
    assert r.status == 200
    r = server.get("/api/v1/runs?experiment=%s&limit=1" % exp)
    assert r.status == 200 and len(r.body["items"]) == 1 and r.body["next_cursor"]


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "3abc", "-1", "99999999999999999999"])
def test_list_bad_cursor(server, cursor):
    assert_error(server.get("/api/v1/runs?cursor=" + cursor), 400, "invalid_argument", "cursor")


def test_cursor_pagination_covers_all_once(server):
    exp = uniq("page")
    ids = [server.create_run(base(exp))["id"] for _ in range(5)][::-1]
    seen, cursor, pages = [], None, 0
    while True:
        q = "/api/v1/runs?experiment=%s&limit=2" % exp
        if cursor:
            q += "&cursor=" + urllib.parse.quote(cursor, safe="")
        r = server.get(q)
        assert r.status == 200, r
        assert len(r.body["items"]) <= 2
        seen += [x["id"] for x in r.body["items"]]
        pages += 1
        if pages == 1:
            # a run created mid-pagination must not shift or repeat later pages
            server.create_run(base(exp))
        cursor = r.body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert seen == ids


# --------------------------------------------------------------------------
# Cancel
# --------------------------------------------------------------------------

def test_cancel_queued_run_idempotent(server):
    run = server.create_run(dict(base(uniq("cancel")), distributed_backend="ps", node_count=2))
    r = server.post("/api/v1/runs/%s/cancel" % run["id"])
    assert r.status == 200, r
    c = r.body
    assert c["status"] == "canceled"
    assert is_rfc3339_utc(c["ended_at"])
    assert c["tasks"] and all(t["status"] == "killed" for t in c["tasks"]), c["tasks"]
    g = server.get("/api/v1/runs/" + run["id"]).body
    assert g["status"] == "canceled" and all(t["status"] == "killed" for t in g["tasks"])
    again = server.post("/api/v1/runs/%s/cancel" % run["id"])
    assert again.status == 200 and again.body["status"] == "canceled"
    assert again.body["ended_at"] == c["ended_at"]


def test_run_read_after_write_is_current(server):
    """GET /api/v1/runs/{id} is served from a cache of rendered bodies; a
    write (here a cancel) must show in the very next read."""
    run = server.create_run(base(uniq("cache")))
    for _ in range(3):
        g = server.get("/api/v1/runs/" + run["id"])
        assert g.status == 200 and g.body["status"] == "queued", g
    assert server.post("/api/v1/runs/%s/cancel" % run["id"]).status == 200
    g = server.get("/api/v1/runs/" + run["id"]).body
    assert g["status"] == "canceled" and all(t["status"] == "killed" for t in g["tasks"])
    other = server.create_run(base(uniq("cache")))
    assert server.get("/api/v1/runs/" + other["id"]).body["id"] == other["id"]
    assert server.get("/api/v1/runs/" + run["id"]).body["status"] == "canceled"


def test_cancel_unknown_404(server):
    assert_error(server.post("/api/v1/runs/run-000000000000/cancel"), 404, "not_found")


def test_cancel_roles(server, viewer_token, user_token):
    run = server.create_run(base(uniq("cr")))
    path = "/api/v1/runs/%s/cancel" % run["id"]
    assert_error(server.post(path, token=None), 401, "unauthenticated")
    assert_error(server.post(path, token=viewer_token), 403, "permission_denied")
    assert server.get("/api/v1/runs/" + run["id"]).body["status"] == "queued"
    # a user cancels only its own runs (test_ownership.py has the rest)
    assert_error(server.post(path, token=user_token), 403, "permission_denied")
    assert server.get("/api/v1/runs/" + run["id"]).body["status"] == "queued"
    own = server.create_run(base(uniq("cr")), token=user_token)
    r = server.post("/api/v1/runs/%s/cancel" % own["id"], token=user_token)
    assert r.status == 200 and r.body["status"] == "canceled"
    r = server.post(path)
    assert r.status == 200 and r.body["status"] == "canceled"


# --------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------

def test_experiments_list(server):
    exp = uniq("exps")
    assert exp not in server.experiment_names()
    server.create_run(base(exp))
    server.create_run(base(exp))
    items = [e for e in server.list_all("/api/v1/experiments") if e["name"] == exp]
    assert len(items) == 1, items
    e = items[0]
    assert e["run_count"] == 2
    assert is_rfc3339_utc(e["created_at"]) and is_rfc3339_utc(e["last_activity"])


def test_experiments_requires_token(server):
    assert_error(server.get("/api/v1/experiments", token=None), 401, "unauthenticated")


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_experiments_limit_bounds(server, limit):
    assert_error(server.get("/api/v1/experiments?limit=" + limit), 400, "invalid_argument",
                 "limit")


def test_experiments_pagination(server):
    for _ in range(3):
        server.create_run(base(uniq("expage")))
    server.assert_paginates("/api/v1/experiments", "name")
