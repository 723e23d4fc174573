"""Who owns what (issue 11 items 4, 5, 15): an agent token cannot take over
a node another token owns; runs and snapshots record the name of the token
that submitted them, a user cancels only its own runs and lists filter by
owner; the last admin token cannot be deleted, and `trainyard server
--reset-admin-token` is the recovery when its secret is lost."""

import os
import stat
import subprocess

from conftest import (BIN, PYTHON, assert_error, node_body, project_tgz, uniq, wait_for)

SLEEP = [PYTHON, "-c", "import time; time.sleep(120)"]


def run_of(server, run_id):
    r = server.get("/api/v1/runs/" + run_id)
    assert r.status == 200, r
    return r.body


# --------------------------------------------------------------------------
# 4. node takeover
# --------------------------------------------------------------------------

def test_unbound_agent_token_cannot_take_over_a_node(server_factory, agent_factory):
    srv = server_factory()
    pool = uniq("pool")
    agent = agent_factory(srv, extra_args=["--pool", pool])
    run = srv.create_run({"experiment": uniq("own"), "command": SLEEP, "compute_target": pool})
    wait_for(lambda: run_of(srv, run["id"])["status"] == "running", 30, "the run to start")
    before = srv.get("/api/v1/nodes/" + agent.name).body

    # The attack: a fresh, unbound agent token registers under the node's name.
    thief = srv.create_token("agent")["secret"]
    r = srv.post("/api/v1/nodes", node_body(agent.name, pool, agent_url="http://127.0.0.1:9/"),
                 token=thief)
    assert_error(r, 403, "permission_denied", "name")
    assert agent.name in r.body["error"]["message"]
    after = srv.get("/api/v1/nodes/" + agent.name).body
    assert after["agent_url"] == before["agent_url"] == agent.url
    assert after["registered_at"] == before["registered_at"]
    # the token stayed unbound (it may still register a node of its own)
    tokens = {t["id"]: t for t in srv.list_all("/api/v1/tokens")}
    assert not [t for t in tokens.values() if t.get("node") == agent.name
                and t["role"] == "agent" and t["id"] != agent_token_id(srv, agent)]
    own = uniq("own-node")
    assert srv.post("/api/v1/nodes", node_body(own, pool), token=thief).status == 201
    # ... and the run's task is still running there, not lost
    cur = run_of(srv, run["id"])
    assert cur["status"] == "running" and cur["tasks"][0]["status"] == "running", cur
    assert cur["tasks"][0]["node"] == agent.name

    # A node an admin registered cannot be claimed by an unbound token either.
    admins = uniq("admin-node")
    srv.register_node(admins, pool)
    other = srv.create_token("agent")["secret"]
    assert_error(srv.post("/api/v1/nodes", node_body(admins, pool, cpus=1), token=other), 403,
                 "permission_denied", "name")
    assert srv.get("/api/v1/nodes/" + admins).body["cpus"] == 8

    # The node's own token re-registers (agent restart) and an admin may too.
    assert srv.post("/api/v1/runs/%s/cancel" % run["id"]).status == 200
    agent.stop()
    agent.start(srv)
    assert srv.get("/api/v1/nodes/" + agent.name).body["agent_url"] == agent.url
    r = srv.post("/api/v1/nodes", node_body(admins, pool, cpus=2))
    assert r.status == 200 and r.body["cpus"] == 2, r


def agent_token_id(srv, agent):
    return [t["id"] for t in srv.list_all("/api/v1/tokens")
            if t.get("node") == agent.name][0]


def test_two_unbound_tokens_racing_for_a_new_name(server_factory):
    srv = server_factory()
    pool, name = uniq("pool"), uniq("node")
    first = srv.create_token("agent")["secret"]
    second = srv.create_token("agent")["secret"]
    assert srv.post("/api/v1/nodes", node_body(name, pool), token=first).status == 201
    assert_error(srv.post("/api/v1/nodes", node_body(name, pool, cpus=1), token=second), 403,
                 "permission_denied", "name")
    assert srv.get("/api/v1/nodes/" + name).body["cpus"] == 8
    # first is bound: it re-registers its node as often as it restarts
    assert srv.post("/api/v1/nodes", node_body(name, pool, cpus=3), token=first).status == 200
    # a token an admin binds to the name explicitly may (the rotation path)
    rotated = srv.create_token("agent", node=name)["secret"]
    assert srv.post("/api/v1/nodes", node_body(name, pool, cpus=4), token=rotated).status == 200


# --------------------------------------------------------------------------
# 5. runs have owners
# --------------------------------------------------------------------------

def test_runs_and_snapshots_record_their_owner(server):
    alice = server.create_token("user", name=uniq("alice"))
    tgz = project_tgz(uniq("snap").encode())
    r = server.req("POST", "/api/v1/snapshots", body=tgz, content_type="application/gzip",
                   token=alice["secret"])
    assert r.status == 201 and r.body["owner"] == alice["name"], r
    # the same content again: stored once, the first uploader stays its owner
    bob = server.create_token("user", name=uniq("bob"))
    again = server.req("POST", "/api/v1/snapshots", body=tgz, content_type="application/gzip",
                       token=bob["secret"])
    assert again.status == 201 and again.body == r.body, again
    run = server.create_run({"experiment": uniq("own"), "command": ["true"],
                             "compute_target": uniq("nopool")}, token=alice["secret"])
    assert run["owner"] == alice["name"]
    assert run_of(server, run["id"])["owner"] == alice["name"]
    listed = server.get("/api/v1/runs?experiment=" + run["experiment"]).body["items"]
    assert [x["owner"] for x in listed] == [alice["name"]]
    # an admin's run is the admin token's
    mine = server.create_run({"experiment": run["experiment"], "command": ["true"],
                              "compute_target": uniq("nopool")})
    assert mine["owner"] == "admin"


def test_list_filters_by_owner(server):
    exp = uniq("own")
    names = [uniq("u"), uniq("u")]
    tokens = [server.create_token("user", name=n)["secret"] for n in names]
    ids = {n: [] for n in names}
    for i in range(3):
        n = names[i % 2]
        run = server.create_run({"experiment": exp, "command": ["true"],
                                 "compute_target": uniq("nopool")}, token=tokens[i % 2])
        ids[n].insert(0, run["id"])
    for n in names:
        got = server.get("/api/v1/runs?owner=%s&experiment=%s" % (n, exp)).body["items"]
        assert [x["id"] for x in got] == ids[n]
        assert {x["owner"] for x in got} == {n}
    # two tokens of one name are one owner
    twin = server.create_token("user", name=names[0])["secret"]
    run = server.create_run({"experiment": exp, "command": ["true"],
                             "compute_target": uniq("nopool")}, token=twin)
    got = server.get("/api/v1/runs?owner=" + names[0]).body["items"]
    assert [x["id"] for x in got] == [run["id"]] + ids[names[0]]
    assert server.get("/api/v1/runs?owner=" + uniq("nobody")).body["items"] == []
    assert_error(server.get("/api/v1/runs?owner=bad%20name"), 400, "invalid_argument", "owner")
    # a paged list by owner
    server.assert_paginates("/api/v1/runs?owner=" + names[0], "id")


def test_user_cancels_only_its_own_runs(server, viewer_token):
    alice = server.create_token("user", name=uniq("alice"))["secret"]
    bob = server.create_token("user", name=uniq("bob"))["secret"]
    spec = {"experiment": uniq("own"), "command": ["true"], "compute_target": uniq("nopool")}
    a = server.create_run(spec, token=alice)
    b = server.create_run(spec, token=bob)

    # The attack: bob cancels alice's run.
    r = server.post("/api/v1/runs/%s/cancel" % a["id"], {}, token=bob)
    assert_error(r, 403, "permission_denied")
    assert a["id"] in r.body["error"]["message"]
    assert run_of(server, a["id"])["status"] == "queued"
    assert_error(server.post("/api/v1/runs/%s/cancel" % a["id"], {}, token=viewer_token), 403,
                 "permission_denied")
    assert run_of(server, a["id"])["status"] == "queued"

    # alice cancels her own; the admin cancels bob's
    r = server.post("/api/v1/runs/%s/cancel" % a["id"], {}, token=alice)
    assert r.status == 200 and r.body["status"] == "canceled", r
    r = server.post("/api/v1/runs/%s/cancel" % b["id"], {})
    assert r.status == 200 and r.body["status"] == "canceled", r
    # still 403 for bob once it is canceled: whose run it is comes first
    assert_error(server.post("/api/v1/runs/%s/cancel" % a["id"], {}, token=bob), 403,
                 "permission_denied")


# --------------------------------------------------------------------------
# 15. the last admin token
# --------------------------------------------------------------------------

def admin_ids(srv):
    return [t["id"] for t in srv.list_all("/api/v1/tokens") if t["role"] == "admin"]


def test_last_admin_token_cannot_be_deleted(server_factory):
    srv = server_factory()
    [first] = admin_ids(srv)
    r = srv.delete("/api/v1/tokens/" + first)
    assert_error(r, 409, "conflict")
    assert first in r.body["error"]["message"]
    assert srv.get("/api/v1/tokens").status == 200  # still works
    second = srv.create_token("admin")
    assert srv.delete("/api/v1/tokens/" + first).status == 204
    srv.admin_token = second["secret"]
    assert srv.get("/api/v1/tokens", token=srv.admin_token).status == 200
    assert_error(srv.delete("/api/v1/tokens/" + second["id"], token=second["secret"]), 409,
                 "conflict")
    assert admin_ids(srv) == [second["id"]]
    # other roles go as before
    user = srv.create_token("user")
    assert srv.delete("/api/v1/tokens/" + user["id"], token=second["secret"]).status == 204


def reset_admin_token(data_dir):
    res = subprocess.run([BIN, "server", "--data", str(data_dir), "--reset-admin-token"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res
    path = os.path.join(str(data_dir), "admin.token")
    assert path in res.stdout, res.stdout
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        return f.read().strip()


def test_reset_admin_token_recovers_a_lost_secret(server_factory, tmp_path):
    data = tmp_path / "data"
    srv = server_factory(data_dir=data)
    old = srv.admin_token
    [old_id] = admin_ids(srv)
    user = srv.create_token("user")
    srv.stop()
    # the admin lost the secret (and the file)
    os.unlink(str(data / "admin.token"))
    new = reset_admin_token(data)
    assert new != old
    srv.start()
    assert srv.admin_token == new
    assert srv.get("/api/v1/tokens", token=new).status == 200
    # earlier tokens keep working; the lost one can now be revoked
    assert srv.get("/api/v1/runs", token=user["secret"]).status == 200
    assert len(admin_ids(srv)) == 2 and old_id in admin_ids(srv)
    assert srv.delete("/api/v1/tokens/" + old_id, token=new).status == 204
    assert srv.get("/api/v1/tokens", token=old).status == 401
    # and while a server runs: the new token works at once, no restart
    newer = reset_admin_token(data)
    assert srv.get("/api/v1/tokens", token=newer).status == 200


def test_reset_admin_token_replaces_a_planted_link(server_factory, tmp_path):
    data = tmp_path / "data"
    srv = server_factory(data_dir=data)
    srv.stop()
    bait = tmp_path / "bait"
    bait.write_text("")
    os.unlink(str(data / "admin.token"))
    os.symlink(str(bait), str(data / "admin.token"))
    new = reset_admin_token(data)
    assert bait.read_text() == ""  # the secret did not go through the link
    assert not os.path.islink(str(data / "admin.token"))
    srv.start()
    assert srv.get("/api/v1/tokens", token=new).status == 200
