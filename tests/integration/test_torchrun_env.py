"""The pytorch backend's environment is torchrun's (SPEC §4 pytorch).

For one shape (nodes x processes per node, the run's own environment), a
script that dumps os.environ runs twice: under Debian's torchrun
(`/usr/bin/python3 -m torch.distributed.run`, one launcher per node, c10d
rendezvous on loopback) and as a trainyard pytorch run on real agents on
loopback. The variables torchrun adds to its workers' environment must all
be there under trainyard, with the same values wherever the shape decides
them; addresses, ports, paths and ids are compared by name only."""

import json
import os
import subprocess
import textwrap
import urllib.parse

import pytest

from conftest import PYTHON, free_port, uniq, wait_for

RUN_TIMEOUT_S = 60.0
TORCHRUN_TIMEOUT_S = 120.0

# Set by torchrun with a value of this host, port, path or id: names only.
BY_NAME = {"MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"}
# torchrun's, with nothing of trainyard's to name: its agent reads the file
# a worker's @record writes there; trainyard has no such reader, and @record
# only logs the error when the variable is unset.
NOT_OURS = {"TORCHELASTIC_ERROR_FILE"}

DUMP = textwrap.dedent("""\
    import json, os, sys
    env = dict(os.environ)
    out = env.get("DUMP_DIR") or env["TRAINYARD_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    name = "env-%s-%s.json" % (env.get("TORCHELASTIC_RESTART_COUNT", "x"), env.get("RANK", "x"))
    with open(os.path.join(out, name), "w") as f:
        json.dump(env, f)
    # The first attempt's rank 0 fails when asked, to see the restart count.
    if env.get("FAIL_FIRST") and env.get("RANK") == "0" and \\
            env.get("TORCHELASTIC_RESTART_COUNT") == "0":
        sys.exit(3)
""")


def _torch_missing():
    r = subprocess.run([PYTHON, "-c", "import torch.distributed.run"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode != 0


pytestmark = pytest.mark.skipif(_torch_missing(),
                                reason="needs Debian's python3-torch in " + PYTHON)


def dump_env(script, out, env, argv=()):
    """The environment `PYTHON script` sees when started with exactly env."""
    subprocess.run([PYTHON, str(script)] + list(argv), env=dict(env, DUMP_DIR=str(out)),
                   check=True, timeout=30)
    with open(os.path.join(str(out), "env-x-x.json")) as f:
        return json.load(f)


def torchrun_envs(tmp_path, nodes, ppn, max_restarts, user_env):
    """{rank: environment} of a torchrun job of nodes x ppn workers on
    loopback, and the variables torchrun added (those Python adds itself,
    like LC_CTYPE, and user_env are left out)."""
    script = tmp_path / "dump.py"
    script.write_text(DUMP)
    out = tmp_path / "torchrun"
    out.mkdir()
    base = {"PATH": "/usr/bin:/bin"}
    base.update(user_env)
    plain = dump_env(script, tmp_path, base)
    port = free_port()
    job = uniq("cmp")
    # Debian's torch 1.13 on Python >= 3.11 cannot parse its own default
    # --redirects/--tee "0" (Std(0) is no longer an iterated flag member);
    # "1" (stdout to its log dir, and to the console) is parsed.
    procs = [subprocess.Popen(
        [PYTHON, "-m", "torch.distributed.run", "--nnodes=%d" % nodes,
         "--nproc_per_node=%d" % ppn, "--node_rank=%d" % n, "--rdzv_backend=c10d",
         "--rdzv_endpoint=127.0.0.1:%d" % port, "--rdzv_id=" + job,
         "--max_restarts=%d" % max_restarts, "--redirects", "1", "--tee", "1",
         "--log_dir", str(tmp_path / ("logs-%d" % n)), str(script)],
        env=dict(base, DUMP_DIR=str(out)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for n in range(nodes)]
    try:
        for p in procs:
            text = p.communicate(timeout=TORCHRUN_TIMEOUT_S)[0].decode(errors="replace")
            assert p.returncode == 0, text[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    envs = {}
    for r in range(nodes * ppn):
        with open(os.path.join(str(out), "env-0-%d.json" % r)) as f:
            envs[r] = json.load(f)
    added = set().union(*(set(e) for e in envs.values())) - set(plain) - {"DUMP_DIR"}
    return envs, added


def trainyard_envs(srv, pool, nodes, ppn, max_retries, user_env):
    """The finished run and {rank: environment} of its last attempt, where
    rank 0 of the first attempt failed (when there are retries)."""
    env = dict(user_env, FAIL_FIRST="1") if max_retries else dict(user_env)
    run = srv.create_run({
        "experiment": uniq("torchrun"), "compute_target": pool, "node_count": nodes,
        "process_count_per_node": ppn, "distributed_backend": "pytorch",
        "max_retries": max_retries, "environment_variables": env,
        "command": [PYTHON, "-c", DUMP]})

    def done():
        r = srv.get("/api/v1/runs/" + run["id"])
        assert r.status == 200, r
        return r.body if r.body["status"] in ("completed", "failed", "canceled") else None
    final = wait_for(done, RUN_TIMEOUT_S, "run %s to end" % run["id"])
    assert final["status"] == "completed", final
    assert final["attempt"] == (2 if max_retries else 1), final
    envs = {}
    for r in range(nodes * ppn):
        path = "env-%d-%d.json" % (final["attempt"] - 1, r)
        resp = srv.get("/api/v1/runs/%s/artifacts/%s?task=%s" % (
            run["id"], urllib.parse.quote(path), "rank-%d" % r))
        assert resp.status == 200, (path, resp)
        body = resp.body
        envs[r] = body if isinstance(body, dict) else json.loads(body.decode())
    return final, envs


@pytest.mark.parametrize("nodes,ppn,user_env", [
    (2, 2, {}),
    (1, 1, {}),
    (1, 2, {"OMP_NUM_THREADS": "3", "NCCL_ASYNC_ERROR_HANDLING": "0"}),
], ids=["2x2", "1x1", "1x2-user-set"])
def test_pytorch_env_is_torchruns(tmp_path, server_factory, agent_factory, nodes, ppn, user_env):
    retries = 2 if nodes > 1 else 0
    theirs, added = torchrun_envs(tmp_path, nodes, ppn, retries, user_env)
    assert {"RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"} <= added, added  # torchrun ran
    assert ("OMP_NUM_THREADS" in added) == (ppn > 1 and "OMP_NUM_THREADS" not in user_env)

    srv = server_factory()
    pool = uniq("trun")
    for i in range(nodes):
        agent_factory(srv, uniq("trun%d" % i), ["--pool", pool])
    run, ours = trainyard_envs(srv, pool, nodes, ppn, retries, user_env)

    for rank in range(nodes * ppn):
        t, o = theirs[rank], ours[rank]
        missing = sorted(k for k in added - NOT_OURS if k not in o)
        assert not missing, "rank %d lacks torchrun's %s" % (rank, missing)
        for key in sorted(added - NOT_OURS - BY_NAME - {"TORCHELASTIC_RESTART_COUNT"}):
            assert o[key] == t[key], (rank, key, o[key], t[key])
        for key in user_env:
            assert o[key] == t[key] == user_env[key], (rank, key, o[key], t[key])
        # Restarts: torchrun's count of them is the run's attempt - 1.
        assert t["TORCHELASTIC_RESTART_COUNT"] == "0"
        assert o["TORCHELASTIC_RESTART_COUNT"] == str(run["attempt"] - 1)
        assert o["TORCHELASTIC_MAX_RESTARTS"] == str(retries) == t["TORCHELASTIC_MAX_RESTARTS"]
        assert o["TORCHELASTIC_RUN_ID"] == run["id"]
        assert o["MASTER_ADDR"] == "127.0.0.1" and o["MASTER_PORT"] == ours[0]["MASTER_PORT"]
        assert t["MASTER_PORT"] == theirs[0]["MASTER_PORT"]
    # Ranks, local ranks and node ranks take each value once (per node).
    for env in (theirs, ours):
        assert sorted(int(e["RANK"]) for e in env.values()) == list(range(nodes * ppn))
        assert sorted((int(e["GROUP_RANK"]), int(e["LOCAL_RANK"])) for e in env.values()) == \
            [(n, lr) for n in range(nodes) for lr in range(ppn)]
