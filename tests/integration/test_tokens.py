"""SPEC §6 tokens and roles, including agent tokens bound to one node."""

import json
import os
import stat

import pytest

from conftest import (TOKEN_ID, TOKEN_SECRET, assert_error, is_rfc3339_utc, node_body,
                      project_tgz, uniq)


def test_admin_token_file(server):
    path = os.path.join(server.data_dir, "admin.token")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") and TOKEN_SECRET.match(text.strip()), repr(text)


@pytest.mark.parametrize("role", ["admin", "user", "viewer", "agent"])
def test_create_each_role(server, role):
    name = uniq("tok")
    r = server.post("/api/v1/tokens", {"name": name, "role": role})
    assert r.status == 201, r
    t = r.body
    assert TOKEN_ID.match(t["id"]), t
    assert TOKEN_SECRET.match(t["secret"]), t
    assert t["name"] == name and t["role"] == role
    assert is_rfc3339_utc(t["created_at"])
    # the secret authenticates (an agent is known but may not list runs)
    if role == "agent":
        assert_error(server.get("/api/v1/runs", token=t["secret"]), 403, "permission_denied")
    else:
        assert server.get("/api/v1/runs", token=t["secret"]).status == 200


@pytest.mark.parametrize("body,field", [
    ({"name": "x", "role": "root"}, "role"),
    ({"name": "x", "role": ""}, "role"),
    ({"name": "x", "role": 1}, "role"),
    ({"name": "x"}, "role"),
    ({"role": "user"}, "name"),
    ({"name": 5, "role": "user"}, "name"),
    ({"name": "x", "role": "agent", "node": 5}, "node"),
], ids=["role-unknown", "role-empty", "role-int", "role-missing", "name-missing", "name-int",
        "node-int"])
def test_create_invalid(server, body, field):
    before = len(server.list_all("/api/v1/tokens"))
    assert_error(server.post("/api/v1/tokens", body), 400, "invalid_argument", field)
    assert len(server.list_all("/api/v1/tokens")) == before


def test_create_body_errors(server):
    raw = json.dumps({"name": "x", "role": "user"}).encode()
    assert_error(server.req("POST", "/api/v1/tokens", body=raw, content_type="text/plain"),
                 415, "unsupported_media_type")
    assert_error(server.req("POST", "/api/v1/tokens", body=raw + b"}"), 400, "invalid_argument")


def test_list_has_no_secrets(server):
    made = [server.create_token(role) for role in ("user", "viewer", "agent")]
    r = server.get("/api/v1/tokens?limit=1000")
    assert r.status == 200, r
    text = json.dumps(r.body)
    items = server.list_all("/api/v1/tokens")
    ids = {t["id"] for t in items}
    for t in made:
        assert t["id"] in ids
        assert t["secret"] not in text
    assert server.admin_token not in text
    for item in items:
        assert "secret" not in item, item
        assert item["role"] in ("admin", "user", "viewer", "agent")


def test_delete_revokes(server):
    t = server.create_token("user")
    assert server.get("/api/v1/runs", token=t["secret"]).status == 200
    r = server.delete("/api/v1/tokens/" + t["id"])
    assert r.status == 204, r
    assert_error(server.get("/api/v1/runs", token=t["secret"]), 401, "unauthenticated")
    assert t["id"] not in {x["id"] for x in server.list_all("/api/v1/tokens")}
    assert_error(server.delete("/api/v1/tokens/" + t["id"]), 404, "not_found")
    assert_error(server.delete("/api/v1/tokens/tok-000000000000"), 404, "not_found")


@pytest.mark.parametrize("role", ["user", "viewer", "agent"])
def test_non_admin_cannot_manage_tokens(server, role):
    secret = server.create_token(role)["secret"]
    victim = server.create_token("viewer")
    name = uniq("tok")
    assert_error(server.post("/api/v1/tokens", {"name": name, "role": "admin"}, token=secret),
                 403, "permission_denied")
    assert name not in {t["name"] for t in server.list_all("/api/v1/tokens")}
    assert_error(server.delete("/api/v1/tokens/" + victim["id"], token=secret), 403,
                 "permission_denied")
    assert server.get("/api/v1/runs", token=victim["secret"]).status == 200


def test_new_admin_token_can_create_tokens(server):
    admin2 = server.create_token("admin")["secret"]
    server.create_token("user", token=admin2)


def test_no_and_bad_tokens_401(server):
    for tok in (None, "", "ty_" + "0" * 64, server.admin_token + "x", server.admin_token[:-1]):
        hdrs = {"Authorization": "Bearer " + tok} if tok is not None else None
        r = server.get("/api/v1/tokens", token=None, headers=hdrs)
        assert_error(r, 401, "unauthenticated")


# --------------------------------------------------------------------------
# Agent tokens
# --------------------------------------------------------------------------

def test_agent_token_bound_at_creation(server):
    n1, n2, pool = uniq("an"), uniq("an"), uniq("pool")
    tok = server.create_token("agent", node=n1)
    assert tok.get("node") == n1
    s = tok["secret"]
    assert_error(server.post("/api/v1/nodes", node_body(n2, pool), token=s), 403,
                 "permission_denied")
    assert server.get("/api/v1/nodes/" + n2).status == 404
    r = server.post("/api/v1/nodes", node_body(n1, pool), token=s)
    assert r.status == 201, r
    assert server.post("/api/v1/nodes/%s/heartbeat" % n1, {"tasks": []}, token=s).status == 200


def test_agent_token_bound_to_first_node(server, snapshot):
    pool = uniq("pool")
    first, second, other = uniq("an"), uniq("an"), uniq("an")
    tok = server.create_token("agent")
    s = tok["secret"]
    server.register_node(other, pool)  # registered by admin
    r = server.post("/api/v1/nodes", node_body(first, pool), token=s)
    assert r.status == 201, r
    listed = [t for t in server.list_all("/api/v1/tokens") if t["id"] == tok["id"]]
    assert listed and listed[0].get("node") == first, listed
    # now bound: cannot register or heartbeat any other node
    assert_error(server.post("/api/v1/nodes", node_body(second, pool), token=s), 403,
                 "permission_denied")
    assert server.get("/api/v1/nodes/" + second).status == 404
    assert_error(server.post("/api/v1/nodes", node_body(other, pool, cpus=1), token=s), 403,
                 "permission_denied")
    assert server.get("/api/v1/nodes/" + other).body["cpus"] == 8
    assert_error(server.post("/api/v1/nodes/%s/heartbeat" % other, {"tasks": []}, token=s),
                 403, "permission_denied")
    # its own node: re-register and heartbeat work
    r = server.post("/api/v1/nodes", node_body(first, pool, cpus=4), token=s)
    assert r.status in (200, 201), r
    assert server.post("/api/v1/nodes/%s/heartbeat" % first, {"tasks": []}, token=s).status == 200
    # not an admin: no drain/delete, no runs, no uploads
    assert_error(server.post("/api/v1/nodes/%s/drain" % other, {"drain": True}, token=s), 403,
                 "permission_denied")
    assert_error(server.delete("/api/v1/nodes/" + other, token=s), 403, "permission_denied")
    assert_error(server.get("/api/v1/runs", token=s), 403, "permission_denied")
    assert_error(server.req("POST", "/api/v1/snapshots", body=project_tgz(b"# agent"),
                            content_type="application/gzip", token=s), 403, "permission_denied")
    # but it may download a snapshot
    r = server.get("/api/v1/snapshots/" + snapshot[0], token=s)
    assert r.status == 200 and r.body == snapshot[1]


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_tokens_limit_bounds(server, limit):
    assert_error(server.get("/api/v1/tokens?limit=" + limit), 400, "invalid_argument", "limit")


def test_tokens_pagination(server):
    for _ in range(3):
        server.create_token("viewer")
    server.assert_paginates("/api/v1/tokens", "id")


def test_create_rejects_invalid_utf8(server_factory):
    srv = server_factory()  # private: accepted bad bytes would poison later list responses
    r = srv.req("POST", "/api/v1/tokens", body=b'{"name": "\xff\xfe", "role": "user"}')
    lst = srv.get("/api/v1/tokens")
    assert isinstance(lst.body, dict), "GET /api/v1/tokens is no longer valid JSON: %r" % (
        lst.body[:300],)
    assert_error(r, 400, "invalid_argument")
