"""The sweep client commands (issue 12 item 6): sweep (--search, --sampling,
--policy, --follow), sweeps, sweep-show, sweep-cancel; --json; exit codes
for bad syntax (2) and the server's 400s (1).  The real binary against a
real server with a real agent running the trials."""

import json
import os
import pty
import re
import select
import subprocess
import time

import pytest

from conftest import BIN, uniq, wait_for
from test_cli import complete, ok, run_cli

SWEEP_ID = re.compile(r"^swp-[0-9a-f]{12}$")
SWEEP_TIMEOUT_S = 120

# Reports acc three times (steps 0, 1, 2); the last is
# lr * 10 + 0.5 for relu + SEED / 100.
TRAIN_PY = """\
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--act")
p.add_argument("--hidden", type=int, default=0)
p.add_argument("--drop", type=float, default=0)
p.add_argument("--base", type=float, default=0)
a = p.parse_args()
seed = int(os.environ.get("SEED", "0"))
for step in range(3):
    acc = a.base + a.lr * 10 * (step + 1) / 3 + (0.5 if a.act == "relu" else 0) + seed / 100
    print("##metric " + json.dumps({"acc": acc, "step": step}), flush=True)
"""


@pytest.fixture
def pool(server, agent_factory):
    """A pool of one agent of this test's own: trials run there only."""
    name = uniq("swpool")
    agent_factory(server, uniq("node"), cpus=8, extra_args=["--pool", name])
    return name


def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text(TRAIN_PY)
    return str(root)


def get(server, path):
    r = server.get(path)
    assert r.status == 200, r
    return r.body


def sweep_ids(server):
    return {s["id"] for s in server.list_all("/api/v1/sweeps")}


# --------------------------------------------------------------------------
# sweep --follow, sweeps, sweep-show
# --------------------------------------------------------------------------

def test_grid_sweep_follow_prints_trials_and_best_then_show_and_list(server, pool, tmp_path):
    root = project(tmp_path)
    exp = uniq("cligrid")
    res = ok(run_cli(["sweep", root, "--entry", "train.py", "--param", "--base=1",
                      "--search", "lr=choice(0.1, 0.2)",
                      "--search", "--act=choice(relu, 'tanh')",
                      "--search", "env:SEED=choice(7)",
                      "--sampling", "grid", "--metric", "acc", "--goal", "max",
                      "--concurrent", "2", "--pool", pool, "--experiment", exp,
                      "--policy", "median(interval=1,delay=5)", "--follow"],
                     server, timeout=SWEEP_TIMEOUT_S))
    lines = res.stdout.splitlines()
    sid = lines[0]
    assert SWEEP_ID.match(sid), res.stdout
    # A line per trial state change, the best so far, then the final table.
    assert any(re.match(r"trial 0 +completed +acc=", l) for l in lines), res.stdout
    assert any(l.startswith("best so far: trial ") for l in lines), res.stdout
    assert "sweep %s completed: 4/4 trials created, 4 completed" % sid in res.stdout
    header = [l for l in lines if l.startswith("TRIAL")]
    assert header and header[-1].split() == ["TRIAL", "STATUS", "ACC", "RUN", "PARAMETERS"], \
        res.stdout
    best = lines[-1]
    assert best.startswith("best: trial "), res.stdout
    assert "acc=3.57" in best and "--lr=0.2 --act=relu env:SEED=7" in best, best

    s = get(server, "/api/v1/sweeps/" + sid)
    assert s["status"] == "completed" and s["experiment"] == exp, s
    spec = s["spec"]
    assert spec["parameters"] == {"--lr": {"choice": [0.1, 0.2]},
                                  "--act": {"choice": ["relu", "tanh"]},
                                  "env:SEED": {"choice": [7]}}, spec
    assert spec["early_termination"]["policy"] == "median_stopping", spec
    assert spec["early_termination"]["evaluation_interval"] == 1, spec
    assert spec["early_termination"]["delay_evaluation"] == 5, spec
    assert spec["run"]["script_params"] == {"--base": 1}, spec
    assert spec["max_concurrent_runs"] == 2 and spec["max_total_runs"] == 4, spec
    run = get(server, "/api/v1/runs/" + s["best_run"]["id"])
    assert run["spec"]["script_params"] == {"--base": 1, "--lr": 0.2, "--act": "relu"}, run
    assert run["spec"]["environment_variables"]["SEED"] == "7", run

    # sweep-show: the summary, the policy in --policy's syntax, the trials.
    res = ok(run_cli(["sweep-show", sid, "--sort", "value"], server))
    out = res.stdout
    assert re.search(r"^status: +completed$", out, re.M), out
    assert re.search(r"^policy: +median\(interval=1, delay=5\)$", out, re.M), out
    assert re.search(r"^metric: +acc \(maximize\)$", out, re.M), out
    assert "--lr=choice(0.1,0.2) --act=choice('relu','tanh') env:SEED=choice(7)" in out, out
    rows = out[out.index("TRIAL"):].splitlines()[1:]
    values = [float(r.split()[2]) for r in rows]
    assert len(values) == 4 and values == sorted(values, reverse=True), out
    assert rows[0].split()[3] == s["best_run"]["id"], out

    shown = json.loads(ok(run_cli(["sweep-show", sid, "--json"], server)).stdout)
    assert shown["id"] == sid and shown["status"] == "completed", shown
    assert [t["trial"] for t in shown["runs"]] == [0, 1, 2, 3], shown

    # sweeps: the table, a status filter, --json.
    res = ok(run_cli(["sweeps"], server))
    assert res.stdout.splitlines()[0].split() == ["ID", "STATUS", "EXPERIMENT", "TRIALS", "BEST",
                                                  "CREATED"], res.stdout
    [row] = [l.split() for l in res.stdout.splitlines() if l.startswith(sid)]
    assert row[1:5] == ["completed", exp, "4/4", "3.57"], row
    res = ok(run_cli(["sweeps", "--status", "running"], server))
    assert sid not in res.stdout
    listed = json.loads(ok(run_cli(["sweeps", "--json", "--status", "completed"], server)).stdout)
    assert sid in [x["id"] for x in listed["items"]], listed

    # Following an ended sweep prints it and returns; with --json, lines of events.
    res = ok(run_cli(["sweep-show", sid, "--follow", "--json"], server, timeout=30))
    events = [json.loads(l) for l in res.stdout.splitlines()]
    assert {e["event"] for e in events} == {"trial", "sweep"}, events
    assert events[-1]["event"] == "sweep" and events[-1]["data"]["status"] == "completed", events


def test_random_sweep_of_several_expressions_prints_the_id_then_follows(server, pool, tmp_path):
    root = project(tmp_path)
    res = ok(run_cli(["sweep", root, "--entry", "./train.py",
                      "--search", "lr=loguniform(-9,-2)",
                      "--search", "hidden=choice(32,64,128)",
                      "--search", "env:SEED=randint(100)",
                      "--search", "drop = quniform( 0 , 1 , 0.25 )",
                      "--sampling", "random", "--seed", "42", "--runs", "3",
                      "--concurrent", "3", "--max-duration", "600",
                      "--max-trial-duration", "300", "--metric", "acc", "--goal", "min",
                      "--policy", "bandit(slack=0.1,interval=1,delay=5)", "--pool", pool],
                     server))
    sid = res.stdout.strip()
    assert SWEEP_ID.match(sid), res.stdout
    assert "trainyard sweep-show %s --follow" % sid in res.stderr, res.stderr
    spec = get(server, "/api/v1/sweeps/" + sid)["spec"]
    assert spec["parameters"] == {"--lr": {"loguniform": [-9, -2]},
                                  "--hidden": {"choice": [32, 64, 128]},
                                  "env:SEED": {"randint": [100]},
                                  "--drop": {"quniform": [0, 1, 0.25]}}, spec
    assert spec["sampling"] == "random" and spec["seed"] == 42, spec
    assert spec["primary_metric"] == {"name": "acc", "goal": "minimize"}, spec
    assert spec["max_total_runs"] == 3 and spec["max_duration_seconds"] == 600, spec
    assert spec["run"]["max_run_duration_seconds"] == 300, spec
    assert spec["early_termination"]["policy"] == "bandit", spec
    assert spec["early_termination"]["slack_factor"] == 0.1, spec
    assert spec["early_termination"]["delay_evaluation"] == 5, spec

    res = ok(run_cli(["sweep-show", sid, "--follow"], server, timeout=SWEEP_TIMEOUT_S))
    assert "sweep %s completed: 3/3 trials created, 3 completed" % sid in res.stdout, res.stdout
    best = res.stdout.splitlines()[-1]
    s = get(server, "/api/v1/sweeps/" + sid)
    assert best.startswith("best: trial %d (%s): acc=" % (s["best_run"]["trial"],
                                                          s["best_run"]["id"])), best
    # --goal min: the best is the lowest.
    values = [t["value"] for t in get(server, "/api/v1/sweeps/%s/runs" % sid)["items"]]
    assert s["best_run"]["value"] == min(values), (s, values)
    res = ok(run_cli(["sweep-show", sid], server))
    assert re.search(r"^policy: +bandit\(slack=0\.1, interval=1, delay=5\)$", res.stdout, re.M), \
        res.stdout
    assert re.search(r"^sampling: +random \(seed 42\)$", res.stdout, re.M), res.stdout


def test_follow_on_a_terminal_redraws_a_live_table(server, pool, tmp_path):
    """On a terminal, --follow redraws one table in place (cursor up, clear)
    and leaves the final table and best line."""
    argv = [BIN, "sweep", "--server", server.url, "--token", server.admin_token,
            "--command", "--search", "env:SEED=choice(1,2)", "--sampling", "grid",
            "--metric", "acc", "--goal", "max", "--pool", pool, "--follow", "--",
            "/usr/bin/python3", "-c",
            "import os; print('##metric {\"acc\": %s}' % os.environ['SEED'], flush=True)"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(BIN, argv, env)
    out = b""
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode("utf-8", "replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert "\x1b[" in text and "A\x1b[J" in text, text
    assert "TRIAL" in text and "best: trial 1 (" in text and "acc=2" in text, text


# --------------------------------------------------------------------------
# sweep-cancel
# --------------------------------------------------------------------------

def test_sweep_cancel_stops_the_sweep_and_ends_a_follower(server, pool):
    res = ok(run_cli(["sweep", "--command", "--search", "env:X=uniform(0,1)", "--runs", "6",
                      "--concurrent", "2", "--metric", "acc", "--goal", "max", "--pool", pool,
                      "--", "sleep", "60"], server))
    sid = res.stdout.strip()
    assert SWEEP_ID.match(sid), res.stdout
    argv = [BIN, "sweep-show", "--server", server.url, "--token", server.admin_token, sid,
            "--follow"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: get(server, "/api/v1/sweeps/" + sid)["trials"]["running"] == 2, 60,
                 "two trials running")
        res = ok(run_cli(["sweep-cancel", sid], server))
        assert res.stdout.startswith("%s canceled: 2/6 trials created, 2 canceled" % sid), \
            res.stdout
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    out, err = out.decode(), err.decode()
    assert follower.returncode == 1, (out, err)
    assert err.startswith("trainyard: sweep %s canceled" % sid), err
    assert "sweep %s canceled" % sid in out, out
    # Again: a no-op; --json gives the sweep.
    again = json.loads(ok(run_cli(["sweep-cancel", sid, "--json"], server)).stdout)
    assert again["status"] == "canceled" and again["trials"]["created"] == 2, again
    res = ok(run_cli(["sweeps", "--status", "canceled"], server))
    assert sid in res.stdout


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

BASE = ["--metric", "acc", "--goal", "max", "--runs", "2"]
BAD_SYNTAX = [
    (["--search", "lr"], "bad --search 'lr': no '='"),
    (["--search", "lr=loguniform(-9,-2"], "the ')' is missing"),
    (["--search", "lr=loguniform -9,-2"], "there is more after the end"),
    (["--search", "lr=nosuch(1)"], "unknown expression 'nosuch'"),
    (["--search", "lr=uniform(a,1)"], "uniform takes numbers; 'a' is not one"),
    (["--search", "lr=choice()"], "bad --search 'lr=choice()'"),
    (["--search", "lr=choice('a)"], "a quoted string is not closed"),
    (["--search", "=choice(1)"], "name is missing"),
    (["--search", "lr=choice(1)", "--search", "--lr=choice(2)"], "'--lr' is given twice"),
    (["--search", "lr=choice(1)", "--policy", "bandit(slack=0.1,bogus=2)"],
     "unknown key 'bogus' for bandit; it takes slack, slack_amount"),
    (["--search", "lr=choice(1)", "--policy", "asha(interval=1)"], "unknown key 'interval'"),
    (["--search", "lr=choice(1)", "--policy", "hyperband(eta=3)"], "unknown policy 'hyperband'"),
    (["--search", "lr=choice(1)", "--policy", "bandit(slack)"], "each argument is KEY=VALUE"),
    (["--search", "lr=choice(1)", "--policy", "bandit(slack=x)"], "slack must be a number"),
    (["--search", "lr=choice(1)", "--policy", "truncation(exclude_finished=yes)"],
     "exclude_finished must be true or false"),
    (["--search", "lr=choice(1)", "--policy", "median(delay=1,delay=2)"], "given twice"),
    (["--search", "lr=choice(1)", "--sampling", "hill"], "--sampling must be grid"),
    (["--search", "lr=choice(1)", "--goal", "up"], "--goal must be max or min"),
    (["--search", "lr=choice(1)", "--runs", "0"], "--runs must be a whole number"),
    (["--search", "lr=choice(1)", "--seed", "-1"], "--seed must be a whole number"),
]


@pytest.mark.parametrize("args,message", BAD_SYNTAX, ids=[" ".join(a) for a, _ in BAD_SYNTAX])
def test_bad_search_and_policy_syntax_exits_2(server, tmp_path, args, message):
    root = project(tmp_path)
    before = sweep_ids(server)
    res = run_cli(["sweep", root, "--entry", "train.py"] + BASE + args, server)
    assert res.returncode == 2, res
    assert res.stderr.startswith("trainyard sweep: "), res.stderr
    assert message in res.stderr, res.stderr
    assert res.stdout == ""
    assert sweep_ids(server) == before


@pytest.mark.parametrize("args,message", [
    (["{dir}", "--entry", "train.py"], "at least one --search"),
    (["{dir}", "--entry", "train.py", "--search", "lr=choice(1)", "--runs", "2"],
     "--metric M and --goal max|min are required"),
    (["--search", "env:X=choice(1)", "--metric", "a", "--goal", "max"],
     "a source directory is required"),
])
def test_missing_parts_exit_2(server, tmp_path, args, message):
    root = project(tmp_path)
    res = run_cli(["sweep"] + [a.replace("{dir}", root) for a in args], server)
    assert res.returncode == 2 and message in res.stderr, res


SERVER_400 = [
    (["--search", "lr=choice(1)", "--runs", "20000"], "max_total_runs"),
    (["--search", "lr=uniform(1,0)"], "parameters.--lr"),
    (["--search", "lr=uniform(0,1)", "--sampling", "grid"], "sampling"),
    (["--search", "lr=choice(1)", "--policy", "bandit(interval=1)"], "early_termination"),
    (["--search", "lr=choice(1)", "--policy", "asha(reduction_factor=1)"],
     "early_termination.reduction_factor"),
    (["--search", "lr=choice(1)", "--param", "--lr=3"], "parameters.--lr"),
    (["--search", "lr=choice(1)", "--nodes", "2", "--backend", "ps", "--workers", "0"], "run."),
]


@pytest.mark.parametrize("args,field", SERVER_400, ids=[" ".join(a) for a, _ in SERVER_400])
def test_server_400_exits_1_with_the_field(server, tmp_path, args, field):
    root = project(tmp_path)
    before = sweep_ids(server)
    res = run_cli(["sweep", root, "--entry", "train.py"] + BASE + args, server)
    assert res.returncode == 1, res
    assert res.stderr.startswith("trainyard: "), res.stderr
    assert "(field: %s" % field in res.stderr, res.stderr
    assert res.stdout == ""
    assert sweep_ids(server) == before


def test_command_sweep_of_a_script_parameter_is_a_400(server):
    res = run_cli(["sweep", "--command", "--search", "lr=choice(1)", "--runs", "1",
                   "--metric", "a", "--goal", "max", "--", "true"], server)
    assert res.returncode == 1 and "(field: parameters.--lr)" in res.stderr, res


def test_unknown_sweep_exits_1(server):
    for cmd in (["sweep-show", "swp-000000000000"], ["sweep-show", "swp-000000000000",
                                                      "--follow"],
                ["sweep-cancel", "swp-000000000000"]):
        res = run_cli(cmd, server)
        assert res.returncode == 1 and res.stderr.startswith("trainyard: "), (cmd, res)
    res = run_cli(["sweeps", "--status", "bogus"], server)
    assert res.returncode == 1 and "(field: status)" in res.stderr, res
    for cmd in (["sweep-show"], ["sweep-cancel"], ["sweep-show", "a", "--sort", "x"],
                ["sweeps", "extra"]):
        res = run_cli(cmd, server)
        assert res.returncode == 2, (cmd, res)


def test_completion_knows_the_sweep_commands():
    assert complete("swe") == ["sweep", "sweep-cancel", "sweep-show", "sweeps"]
    assert complete("sweep", "d", "--sea") == ["--search"]
    assert complete("sweep", "d", "--sampling", "") == ["bayesian", "grid", "random"]
    assert complete("sweep", "d", "--goal", "") == ["max", "min"]
    assert complete("sweep", "d", "--pip", "") == []
    assert "--node-selector" in complete("sweep", "d", "--no")
    assert complete("sweeps", "--status", "") == ["canceled", "completed", "failed", "running"]
    assert complete("runs", "--status", "q") == ["queued"]
    assert complete("sweep-show", "x", "--sort", "") == ["trial", "value"]
