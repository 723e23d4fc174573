"""api/openapi.json against the server: every route in server/routes.c is in
the document and nothing else is, the server serves the file, and the
response check the HTTP helpers run (openapi_check.py) catches what differs.
(The linter runs in `make openapi-lint`; every response of every test is
checked by conftest's helpers.)"""

import copy
import json
import os
import re

import openapi_check
from conftest import REPO, uniq

ROUTE = re.compile(r'^\s*\{\s*"([A-Z]+)",\s*"([^"]+)",')


def _routes():
    with open(os.path.join(REPO, "server", "routes.c"), encoding="utf-8") as f:
        routes = {(m.group(1), re.sub(r"\{(\w+)\*\}", r"{\1}", m.group(2)))
                  for m in map(ROUTE.match, f) if m}
    assert len(routes) > 20, routes  # the table was read
    return routes


def _documented():
    doc = openapi_check.document().doc
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in openapi_check.METHODS}


def test_every_route_is_documented():
    routes, documented = _routes(), _documented()
    assert not routes - documented, "routes missing from api/openapi.json: %s" % sorted(
        routes - documented)
    assert not documented - routes, "api/openapi.json documents routes the server lacks: %s" % (
        sorted(documented - routes))


def test_served_document_is_the_file(server):
    r = server.get("/api/v1/openapi.json")
    assert r.status == 200, r
    with open(openapi_check.DOCUMENT, encoding="utf-8") as f:
        assert r.body == json.load(f)


def _raw(resp_body):
    return json.dumps(resp_body).encode()


def test_the_check_catches_mismatches(server):
    """A real run resource passes; each change the document does not allow
    is named."""
    run = server.create_run({"experiment": uniq("oa"), "command": ["true"]})
    check = openapi_check.check_response
    json_h = {"content-type": "application/json"}
    path = "/api/v1/runs/" + run["id"]
    assert check("GET", path, 200, json_h, _raw(run)) == []

    def problems(mutate, status=200, headers=json_h, method="GET", target=path):
        body = copy.deepcopy(run)
        mutate(body)
        return "\n".join(check(method, target, status, headers, _raw(body)))

    assert "'surprise'" in problems(lambda b: b.update(surprise=1))  # undocumented field
    assert "'spec'" in problems(lambda b: b["spec"].update(surprise=1))
    assert "'id'" in problems(lambda b: b.pop("id"))  # required field missing
    assert "'node_selector'" in problems(lambda b: b["spec"].pop("node_selector"))
    assert "'env'" in problems(lambda b: b["tasks"][0].pop("env"))
    assert "'status'" in problems(lambda b: b.update(status="sleeping"))  # not in the enum
    assert "'created_at'" in problems(lambda b: b.update(created_at="yesterday"))  # date-time
    assert "'node_count'" in problems(lambda b: b["spec"].update(node_count=None))  # not nullable
    assert "'gpus_per_process'" in problems(lambda b: b["spec"].update(gpus_per_process=65))
    assert "Content-Type" in problems(lambda b: None, headers={"content-type": "text/plain"})
    assert "not JSON" in "".join(check("GET", path, 200, json_h, b"{"))
    # Errors: the SPEC's error body, by status or the operation's default.
    err = {"error": {"code": "not_found", "message": "no such run"}}
    assert check("GET", path, 404, json_h, _raw(err)) == []
    assert "'code'" in "".join(check("GET", path, 404, json_h, _raw({"error": {"message": "x"}})))
    assert "'oops'" in "".join(check("GET", path, 507, json_h, _raw(dict(err, oops=1))))
    # A path or method the document lacks: a success is "undocumented", an
    # error answer must still be the error body.
    assert "undocumented path" in "".join(check("GET", "/api/v1/nosuch", 200, json_h, b"{}"))
    assert "undocumented method" in "".join(check("PATCH", path, 200, json_h, b"{}"))
    assert check("GET", "/api/v1/nosuch", 404, json_h, _raw(err)) == []
    assert "'error'" in "".join(check("GET", "/api/v1/nosuch", 404, json_h, b"{}"))
    # No content documented (204): the body must be empty.
    tok = "/api/v1/tokens/tok-0123456789ab"
    assert check("DELETE", tok, 204, {}, b"") == []
    assert "no body" in "".join(check("DELETE", tok, 204, json_h, b"{}"))
    # Streams: by content type only.
    assert check("GET", path + "/logs", 200, {"content-type": "text/plain; charset=utf-8"},
                 b"any text\n") == []
    assert "Content-Type" in "".join(check("GET", path + "/logs", 200, json_h, b"{}"))
    # An artifact path spans several segments.
    assert check("GET", path + "/artifacts/a/b/c.txt", 200,
                 {"content-type": "application/octet-stream"}, b"x") == []


def test_dashboard_files(server):
    """The dashboard's routes answer as documented (the helpers check each
    response): no token, Content-Type by extension, 404 for other names."""
    r = server.get("/", token=None)
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    r = server.get("/static/app.js", token=None)
    assert r.status == 200 and r.headers["content-type"].startswith("text/javascript"), r
    r = server.get("/static/logo.svg", token=None)
    assert r.status == 200 and r.headers["content-type"] == "image/svg+xml", r
    assert server.get("/static/" + uniq("nothing"), token=None).status == 404


def test_agent_reports_answer_as_documented(server):
    """The agent-report routes no other test calls through the helpers (the
    agents in other tests are the C ones): a status report about a pending
    task is 409, a metric batch is acknowledged once, a bad one is 400."""
    run = server.create_run({"experiment": uniq("oa"), "command": ["true"]})
    task = "/api/v1/agent/tasks/" + run["tasks"][0]["id"]
    r = server.post(task + "/status", {"status": "running"})
    assert r.status == 409 and r.body["error"]["code"] == "conflict", r
    points = [{"name": "loss", "value": 0.5, "step": 0, "time": "2026-01-01T00:00:00Z"},
              {"name": "loss", "value": 0.25, "step": 1, "time": None}]
    batch = {"seq": 10, "points": points}
    r = server.post(task + "/metrics", batch)
    assert r.status == 200 and r.body == {"seq": 10, "duplicate": False}, r
    r = server.post(task + "/metrics", batch)
    assert r.status == 200 and r.body == {"seq": 10, "duplicate": True}, r
    r = server.post(task + "/metrics", {"seq": 11, "points": [{"name": "loss", "value": "x",
                                                               "step": 2}]})
    assert r.status == 400 and r.body["error"]["field"] == "points", r
