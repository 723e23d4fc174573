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


@pytest.mark.parametrize("role", ["admin", "user", "viewer", "agent", "join"])
def test_create_each_role(server, role):
    name = uniq("tok")
    r = server.post("/api/v1/tokens", {"name": name, "role": role})
    assert r.status == 201, r
    t = r.body
    assert TOKEN_ID.match(t["id"]), t
    assert TOKEN_SECRET.match(t["secret"]), t
    assert t["name"] == name and t["role"] == role
    assert is_rfc3339_utc(t["created_at"])
    # the secret authenticates (an agent or join token is known but may not list runs)
    if role in ("agent", "join"):
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
        assert item["role"] in ("admin", "user", "viewer", "agent", "join")


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


# --------------------------------------------------------------------------
# join tokens: server --join-token-file, how agents join without an admin token
# --------------------------------------------------------------------------

def read_secret(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") and TOKEN_SECRET.match(text.strip()), repr(text)
    return text.strip()


def test_join_token_file_made_kept_and_replaced(server_factory, tmp_path):
    path = str(tmp_path / "join" / "join.token")
    os.makedirs(os.path.dirname(path))
    srv = server_factory(extra_args=["--join-token-file", path])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = read_secret(path)
    joins = [t for t in srv.list_all("/api/v1/tokens") if t["role"] == "join"]
    assert len(joins) == 1 and joins[0]["name"] == "join" and joins[0]["node"] is None, joins
    # a restart keeps the file and its token
    srv.stop()
    srv.start()
    assert read_secret(path) == secret
    # a file that holds no join token of this server (here, a user token) is replaced
    user = srv.create_token("user")["secret"]
    with open(path, "w") as f:
        f.write(user + "\n")
    srv.stop()
    srv.start()
    fresh = read_secret(path)
    assert fresh not in (secret, user)
    r = srv.post("/api/v1/tokens", {"name": "n1", "role": "agent", "node": uniq("n")}, token=fresh)
    assert r.status == 201, r


def test_join_token_makes_agent_tokens_for_new_nodes_only(server_factory, tmp_path):
    path = str(tmp_path / "join.token")
    srv = server_factory(extra_args=["--join-token-file", path])
    join = read_secret(path)
    node = uniq("node")
    r = srv.post("/api/v1/tokens", {"name": node, "role": "agent", "node": node}, token=join)
    assert r.status == 201, r
    assert r.body["role"] == "agent" and r.body["node"] == node
    agent = r.body["secret"]
    # the agent token registers its node
    r = srv.post("/api/v1/nodes", node_body(node, "default"), token=agent)
    assert r.status == 201, r
    # the same name again, or the name of a node that exists, belongs to someone
    before = srv.list_all("/api/v1/tokens")
    r = srv.post("/api/v1/tokens", {"name": node, "role": "agent", "node": node}, token=join)
    assert_error(r, 403, "permission_denied", "node")
    assert node in r.body["error"]["message"]
    other = uniq("node")
    assert srv.post("/api/v1/nodes", node_body(other, "default")).status == 201
    r = srv.post("/api/v1/tokens", {"name": other, "role": "agent", "node": other}, token=join)
    assert_error(r, 403, "permission_denied", "node")
    # nothing else: no other role, no unbound agent token, no other endpoint
    for body in ({"name": "x", "role": "admin"}, {"name": "x", "role": "user"},
                 {"name": "x", "role": "join"}, {"name": "x", "role": "agent"},
                 {"name": "x", "role": "agent", "node": None}):
        assert_error(srv.post("/api/v1/tokens", body, token=join), 403, "permission_denied",
                     "role")
    assert srv.list_all("/api/v1/tokens") == before
    assert_error(srv.get("/api/v1/tokens", token=join), 403, "permission_denied")
    assert_error(srv.get("/api/v1/runs", token=join), 403, "permission_denied")
    assert_error(srv.post("/api/v1/nodes", node_body(uniq("node"), "default"), token=join),
                 403, "permission_denied")
    # bad input is still named
    assert_error(srv.post("/api/v1/tokens", {"name": "x", "role": "agent", "node": "a b"},
                          token=join), 400, "invalid_argument", "node")
    # revoked, it is refused, and the next start writes a new one
    jid = [t["id"] for t in srv.list_all("/api/v1/tokens") if t["role"] == "join"][0]
    assert srv.delete("/api/v1/tokens/" + jid).status == 204
    assert_error(srv.post("/api/v1/tokens", {"name": "y", "role": "agent", "node": uniq("n")},
                          token=join), 401, "unauthenticated")
    srv.stop()
    srv.start()
    assert read_secret(path) != join
