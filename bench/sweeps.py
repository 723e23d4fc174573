#!/usr/bin/python3
"""sweeps.py (bench) - S2 and S3 of issue 12 through a real server and agent.

S2: search quality against a peer, same budget, same objective, in one run:
trainyard's `bayesian` (TPE) and `random` sweeps against Optuna's
TPESampler (default settings) on Branin, Hartmann-6 and a 10-dimensional
Rosenbrock with 3 `choice` dimensions; 50 trials, one at a time
(max_concurrent_runs 1, as Optuna's sequential loop), median best value
over 10 seeds. trainyard's trials are real runs: a trivial Python command
that computes the function of its environment and prints `##metric`. The
functions are bench/sweep_optuna.py's, the same text for both.

S3: early-termination savings on examples/digits: the same 12 random trials
(one seed) with no policy, median stopping, bandit and ASHA; trial-seconds
used (the sum of the trials' run times) and the best accuracy.

Usage: sweeps.py URL TOKEN [S2] [S3]. Prints only; never fails on a figure.
"""
import gzip
import inspect
import io
import json
import os
import statistics
import sys
import tarfile
import time
import urllib.request
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_optuna  # noqa: E402  (the functions, and Optuna's side)

PYTHON = "/usr/bin/python3"
URL, TOKEN = sys.argv[1], sys.argv[2]
WANT = set(sys.argv[3:]) or {"S2", "S3"}


def api(method, path, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    if data is not None:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def wait_all(ids, timeout):
    deadline = time.time() + timeout
    left = set(ids)
    while left and time.time() < deadline:
        for i in list(left):
            if api("GET", "/api/v1/sweeps/" + i)["status"] != "running":
                left.discard(i)
        time.sleep(0.5)
    return not left


def seconds(a, b):
    p = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (p(b) - p(a)).total_seconds()


# ---- S2 ----

def space_of(name):
    if name == "branin":
        return {"env:X1": {"uniform": [-5, 10]}, "env:X2": {"uniform": [0, 15]}}
    if name == "hartmann6":
        return {"env:X%d" % (j + 1): {"uniform": [0, 1]} for j in range(6)}
    return {"env:X%d" % j: ({"choice": sweep_optuna.CHOICES} if j in (2, 5, 8)
                            else {"uniform": [-2, 2]}) for j in range(10)}


def trial_command(fn):
    """The function's own text, called with a stand-in for Optuna's trial
    that reads the values from the environment."""
    consts = "".join("%s = %r\n" % (k, getattr(sweep_optuna, k))
                     for k in ("ALPHA", "A", "P", "CHOICES"))
    code = ("import json, math, os\n" + consts + inspect.getsource(fn) +
            "class T:\n"
            "    def suggest_float(self, n, lo, hi): return float(os.environ[n.upper()])\n"
            "    suggest_categorical = lambda self, n, c: float(os.environ[n.upper()])\n"
            "print('##metric ' + json.dumps({'value': %s(T())}))\n" % fn.__name__)
    return [PYTHON, "-c", code]


def s2():
    seeds = sweep_optuna.SEEDS
    sweeps = {}
    for name, fn, _ in sweep_optuna.FUNCTIONS:
        for sampling in ("bayesian", "random"):
            for seed in range(seeds):
                s = api("POST", "/api/v1/sweeps", {
                    "run": {"experiment": "bench-s2", "command": trial_command(fn)},
                    "parameters": space_of(name), "sampling": sampling, "seed": seed,
                    "primary_metric": {"name": "value", "goal": "minimize"},
                    "max_total_runs": sweep_optuna.TRIALS, "max_concurrent_runs": 1})
                sweeps[(name, sampling, seed)] = s["id"]
    start = time.time()
    done = wait_all(sweeps.values(), 1800)
    took = time.time() - start
    optuna_best = sweep_optuna.medians(seeds)
    for name, _, optimum in sweep_optuna.FUNCTIONS:
        med = {}
        for sampling in ("bayesian", "random"):
            bests = []
            for seed in range(seeds):
                b = api("GET", "/api/v1/sweeps/" + sweeps[(name, sampling, seed)])["best_run"]
                if b is not None:
                    bests.append(b["value"])
            med[sampling] = statistics.median(bests) if bests else float("nan")
        print("S2 %s: trainyard tpe %.4f, trainyard random %.4f, optuna tpe %.4f "
              "(median best of %d seeds x %d trials, lower is better; optimum %g)"
              % (name, med["bayesian"], med["random"], optuna_best[name], seeds,
                 sweep_optuna.TRIALS, optimum))
    print("# S2 conditions: %d sweeps of %d trials at once, each one trial at a time, "
          "%.0f s%s" % (len(sweeps), sweep_optuna.TRIALS, took,
                        "" if done else " (TIMED OUT: figures partial)"))


# ---- S3 ----

def digits_snapshot():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "digits")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for f in sorted(os.listdir(root)):
            if f.endswith(".py"):
                tf.add(os.path.join(root, f), arcname=f)
    return api("POST", "/api/v1/snapshots", raw=gzip.compress(raw.getvalue()),
               ctype="application/gzip")["id"]


POLICIES = [
    ("none", None),
    ("median_stopping", {"policy": "median_stopping", "delay_evaluation": 5}),
    ("bandit", {"policy": "bandit", "slack_factor": 0.1, "delay_evaluation": 5}),
    ("asha", {"policy": "asha", "min_resource": 4, "reduction_factor": 3}),
]


def s3():
    sid = digits_snapshot()
    base = None
    for name, policy in POLICIES:
        s = api("POST", "/api/v1/sweeps", {
            "run": {"experiment": "bench-s3", "source": sid, "entry_script": "train.py",
                    "script_params": {"--min-accuracy": 0}},
            "parameters": {"--lr": {"loguniform": [-9, -2]},
                           "--hidden": {"choice": [16, 32, 64, 128]},
                           "--epochs": {"choice": [30, 60, 120]}},
            "sampling": "random", "seed": 3, "early_termination": policy,
            "primary_metric": {"name": "accuracy", "goal": "maximize"},
            "max_total_runs": 12, "max_concurrent_runs": 2})
        done = wait_all([s["id"]], 900)
        s = api("GET", "/api/v1/sweeps/" + s["id"])
        trials = api("GET", "/api/v1/sweeps/%s/runs" % s["id"])["items"]
        used = sum(seconds(t["started_at"], t["ended_at"]) for t in trials
                   if t["started_at"] and t["ended_at"])
        base = used if base is None else base
        best = s["best_run"]["value"] if s["best_run"] else float("nan")
        print("S3 %s: %.1f trial-seconds (%.0f%% of no policy), best accuracy %.4f, "
              "%d of %d trials stopped early%s"
              % (name, used, 100 * used / base if base else 0, best,
                 s["trials"]["early_terminated"], len(trials), "" if done else " (TIMED OUT)"))
    print("# S3 conditions: examples/digits (lr loguniform(-9,-2), hidden choice(16..128), "
          "epochs choice(30,60,120)), the same 12 random trials (seed 3), 2 at a time, one "
          "agent; a trial's seconds include starting Python and importing torch (about 2 s)")


if "S2" in WANT:
    s2()
if "S3" in WANT:
    s3()
