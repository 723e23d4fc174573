"""The Python client's sweeps (agent/python/trainyard/sweeps.py) against a real
server and real agents: client.sweep with the expression and policy helpers,
Sweep.wait following the event stream (also across a server restart),
trials, best_run, cancel, listing, runs(sweep=...) and field-named errors."""

import io
import os
import re
import subprocess
import sys
import threading

import pytest

import sdk_harness


_harness = sdk_harness.load()
PYTHON, REPO, RUN_ID = _harness.PYTHON, _harness.REPO, _harness.RUN_ID
uniq, wait_for, free_port = _harness.uniq, _harness.wait_for, _harness.free_port
# The harness's fixtures: a private server with two ready agents per module,
# and private servers and agents per test.
cluster = _harness.cluster
server_factory, agent_factory = _harness.server_factory, _harness.agent_factory

SDK_PATH = os.path.join(REPO, "agent", "python")
if SDK_PATH not in sys.path:
    sys.path.insert(0, SDK_PATH)

import trainyard  # noqa: E402
from trainyard import client as sdk  # noqa: E402

WAIT_S = 120

# Reports the metric "acc" along the curve --curve ("0.5,0.6"), one report a
# step, then stays alive --linger seconds, so that a policy's verdict (made
# within about a third of a second of a report) finds it running.
TRAIN = """\
import argparse, time, trainyard
p = argparse.ArgumentParser()
p.add_argument("--curve")
p.add_argument("--linger", type=float, default=0)
a = p.parse_args()
for step, v in enumerate(a.curve.split(",")):
    trainyard.log("acc", float(v), step=step)
time.sleep(a.linger)
"""

# median_stopping at interval 1: trial 2's 0.1 is below the median 0.55 of
# the others' running averages (0.5, 0.6); trial 3 (0.9) is not.
CURVES = ["0.5,0.6,0.7", "0.6,0.7,0.8", "0.1,0.2,0.3", "0.9,0.9,0.85"]


@pytest.fixture(scope="module")
def client(cluster):
    srv, _ = cluster
    return sdk.Client(srv.url, srv.admin_token)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdk-sweep-project")
    with open(os.path.join(str(root), "train.py"), "w") as f:
        f.write(TRAIN)
    return str(root)


@pytest.fixture(scope="module")
def finished(client, project):
    """A grid sweep with median stopping, waited for with its output."""
    out = io.StringIO()
    sweep = client.sweep(project, entry_script="train.py", script_params={"--linger": 2},
                         experiment=uniq("sdksweep"),
                         parameters={"--curve": trainyard.choice(CURVES)},
                         primary_metric="acc", goal="maximize", sampling="grid",
                         max_concurrent_runs=1, early_termination=trainyard.median_stopping())
    assert sweep.id.startswith("swp-") and sweep.data["status"] == "running", sweep.data
    assert sweep.wait(show_output=True, output=out, timeout=WAIT_S) is sweep
    return sweep, out.getvalue()


# --------------------------------------------------------------------------
# the helpers


def test_expression_and_policy_helpers_build_the_api_objects():
    assert trainyard.choice(16, 32, 64) == {"choice": [16, 32, 64]}
    assert trainyard.choice([16, 32]) == trainyard.choice((16, 32)) == {"choice": [16, 32]}
    assert trainyard.choice(range(3)) == {"choice": [0, 1, 2]}
    assert trainyard.choice("relu", 0.5) == {"choice": ["relu", 0.5]}
    assert trainyard.randint(5) == {"randint": [5]}
    assert trainyard.uniform(0, 1.5) == {"uniform": [0, 1.5]}
    assert trainyard.quniform(0, 10, 2) == {"quniform": [0, 10, 2]}
    assert trainyard.loguniform(-9, -2) == {"loguniform": [-9, -2]}
    assert trainyard.qloguniform(0, 5, 1) == {"qloguniform": [0, 5, 1]}
    assert trainyard.normal(0, 1) == {"normal": [0, 1]}
    assert trainyard.qnormal(10, 3, 1) == {"qnormal": [10, 3, 1]}
    assert trainyard.lognormal(0, 1) == {"lognormal": [0, 1]}
    assert trainyard.qlognormal(0, 1, 0.5) == {"qlognormal": [0, 1, 0.5]}
    assert trainyard.bandit(slack_factor=0.1, delay_evaluation=5) == {
        "policy": "bandit", "slack_factor": 0.1, "evaluation_interval": 1,
        "delay_evaluation": 5}
    assert trainyard.bandit(slack_amount=0.2, evaluation_interval=2)["slack_amount"] == 0.2
    assert trainyard.median_stopping() == {"policy": "median_stopping",
                                           "evaluation_interval": 1, "delay_evaluation": 0}
    assert trainyard.truncation_selection(20, exclude_finished_runs=True) == {
        "policy": "truncation_selection", "truncation_percentage": 20,
        "evaluation_interval": 1, "delay_evaluation": 0, "exclude_finished_runs": True}
    assert trainyard.asha() == {"policy": "asha", "min_resource": 1, "reduction_factor": 3}
    assert trainyard.asha(2, 4) == {"policy": "asha", "min_resource": 2, "reduction_factor": 4}
    # Misuse raises TrainyardError naming the argument, before anything is sent.
    for call, field in ((lambda: trainyard.choice(), "options"),
                        (lambda: trainyard.choice([None]), "options"),
                        (lambda: trainyard.uniform("0", 1), "min_value"),
                        (lambda: trainyard.normal(0, float("nan")), "sigma"),
                        (lambda: trainyard.quniform(0, 1, True), "q"),
                        (lambda: trainyard.randint(2.5), "upper"),
                        (lambda: trainyard.bandit(), "slack_factor"),
                        (lambda: trainyard.bandit(slack_factor=0.1, slack_amount=1),
                         "slack_factor"),
                        (lambda: trainyard.median_stopping(delay_evaluation="5"),
                         "delay_evaluation"),
                        (lambda: trainyard.truncation_selection(10, exclude_finished_runs=1),
                         "exclude_finished_runs"),
                        (lambda: trainyard.asha(reduction_factor=None), "reduction_factor")):
        with pytest.raises(trainyard.TrainyardError) as e:
            call()
        assert (e.value.status, e.value.code, e.value.field) == (0, "invalid_argument",
                                                                 field), e.value


def test_helpers_load_on_first_use():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRAINYARD_") and k != "PYTHONPATH"}
    code = ("import sys, trainyard; print('trainyard.sweeps' in sys.modules, "
            "'trainyard.client' in sys.modules); print(trainyard.loguniform(-9, -2)); "
            "print(trainyard.Sweep.__module__, 'choice' in dir(trainyard))")
    p = subprocess.run([PYTHON, "-c", code], env=dict(env, PYTHONPATH=SDK_PATH),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["False False", "{'loguniform': [-9, -2]}",
                                     "trainyard.sweeps True"], p.stdout


# --------------------------------------------------------------------------
# a sweep end to end


def test_wait_prints_each_trial_change_and_the_best(finished):
    sweep, output = finished
    assert sweep.data["status"] == "completed", sweep.data
    assert sweep.status == "completed"
    lines = output.splitlines()
    last = {}
    seen = set()
    for line in lines:
        m = re.match(r"trial (\d+) +(\S+) +acc=(\S+) +--curve=(\S+)$", line)
        if m:
            key = (int(m.group(1)), m.group(2))
            assert key not in seen, ("a status shown twice", line, output)
            seen.add(key)
            last[int(m.group(1))] = (m.group(2), m.group(4))
    assert last == {0: ("completed", CURVES[0]), 1: ("completed", CURVES[1]),
                    2: ("early_terminated", CURVES[2]), 3: ("completed", CURVES[3])}, output
    best = "trial 3 (%s): acc=0.85  --curve=%s" % (sweep.data["best_run"]["id"], CURVES[3])
    assert "best so far: " + best in lines, output
    assert lines[-2:] == ["sweep %s completed: 4/4 trials created, 3 completed, 1 canceled "
                          "(1 early terminated)" % sweep.id, "best: " + best], output
    assert "##metric" not in output


def test_trials_sorted_and_the_best_run(finished, client):
    sweep, _ = finished
    trials = sweep.trials()
    assert [t.trial for t in trials] == [0, 1, 2, 3], trials
    assert [t.parameters["--curve"] for t in trials] == CURVES
    assert [t.status for t in trials] == ["completed", "completed", "canceled", "completed"]
    assert [t.early_terminated for t in trials] == [False, False, True, False]
    assert trials[2].reason == "early_terminated"
    assert [t.value for t in trials[:2]] + [trials[3].value] == pytest.approx([0.7, 0.8, 0.85])
    assert all(RUN_ID.match(t.id) and t.created_at and t.ended_at for t in trials), trials
    by_value = sweep.trials(sort="value", descending=True)
    assert [t.trial for t in by_value][:3] == [3, 1, 0], by_value
    assert [t.trial for t in sweep.trials(sort="value")][-3:] == [0, 1, 3]
    values = [t.value for t in by_value]
    assert values == sorted(values, reverse=True), values

    best = sweep.best_run()
    assert isinstance(best, trainyard.Run) and best.id == trials[3].id
    assert best.parameters == {"--curve": CURVES[3]}
    assert (best.sweep_id, best.trial) == (sweep.id, 3)
    assert best.spec["script_params"] == {"--linger": 2, "--curve": CURVES[3]}
    assert best.metrics()["acc"].last == 0.85
    # A trial's run, and the sweep's runs.
    stopped = trials[2].run()
    assert stopped.data["status"] == "canceled" and stopped.parameters == trials[2].parameters
    [event] = [e for e in stopped.data["events"] if e["type"] == "early_terminated"]
    assert event["data"]["policy"] == "median_stopping" and event["data"]["interval"] == 1
    ids = sorted(t.id for t in trials)
    assert sorted(r.id for r in client.runs(sweep=sweep.id)) == ids
    assert sorted(r.id for r in client.runs(sweep=sweep, page_size=1)) == ids
    assert sorted(r.id for r in sweep.runs()) == ids
    assert list(client.runs(sweep=sweep, status="running")) == []
    # The trials are runs of the sweep's experiment.
    assert {r.sweep_id for r in client.runs(experiment=sweep.experiment)} == {sweep.id}


def test_get_and_list_sweeps(finished, client):
    sweep, _ = finished
    again = client.get_sweep(sweep.id)
    assert again.id == sweep.id and again.data["best_run"] == sweep.data["best_run"]
    assert again.spec["sampling"] == "grid" and again.spec["max_total_runs"] == 4
    assert again.spec["early_termination"]["policy"] == "median_stopping"
    assert again.counts["completed"] == 3 and again.counts["early_terminated"] == 1
    assert sweep.id in [s.id for s in client.sweeps(page_size=1)]
    assert sweep.id in [s.id for s in client.sweeps(status="completed")]
    assert sweep.id not in [s.id for s in client.sweeps(status="running")]
    assert repr(again).startswith("Sweep(id=%r" % sweep.id)
    # A completed sweep cannot be canceled.
    with pytest.raises(trainyard.TrainyardError) as e:
        again.cancel()
    assert (e.value.status, e.value.code) == (409, "conflict")
    with pytest.raises(trainyard.TrainyardError) as e:
        client.get_sweep("swp-000000000000")
    assert (e.value.status, e.value.code) == (404, "not_found")


def test_random_sweep_timeout_cancel_and_raw_spec(client):
    space = {"env:LR": trainyard.loguniform(-9, -2), "env:H": trainyard.choice(16, 32, 64),
             "env:N": trainyard.qnormal(10, 3, 1), "env:K": trainyard.randint(5),
             "env:U": trainyard.quniform(0, 10, 2)}
    sweep = client.sweep(command=["sleep", "60"], experiment=uniq("sdksweepcancel"),
                         parameters=space, primary_metric="loss", goal="minimize", seed=7,
                         max_total_runs=10, max_concurrent_runs=2,
                         early_termination=trainyard.asha(reduction_factor=2))
    assert sweep.spec["seed"] == 7 and sweep.spec["primary_metric"] == {"name": "loss",
                                                                        "goal": "minimize"}
    wait_for(lambda: sweep.refresh().counts.get("running") == 2, WAIT_S, "two trials running")
    # A wait that runs out says so and leaves the sweep going.
    out = io.StringIO()
    with pytest.raises(trainyard.TrainyardError) as e:
        sweep.wait(output=out, timeout=0.5)
    assert (e.value.status, e.value.code) == (0, "timeout")
    assert "running" in out.getvalue()
    assert sweep.status == "running"
    assert sweep.cancel() is sweep and sweep.data["status"] == "canceled"
    out = io.StringIO()
    with pytest.raises(trainyard.SweepFailedError) as e:
        sweep.wait(output=out, timeout=WAIT_S)
    assert isinstance(e.value, trainyard.TrainyardError)
    assert e.value.code == "sweep_canceled" and e.value.sweep is sweep
    assert out.getvalue().splitlines()[-1] == "best: none", out.getvalue()
    assert sweep.wait(show_output=False, raise_on_error=False).data["status"] == "canceled"
    assert sweep.cancel().data["status"] == "canceled"  # a canceled sweep: unchanged
    trials = sweep.trials()
    assert [t.status for t in trials] == ["canceled", "canceled"], trials
    for t in trials:
        p = t.parameters
        assert 0.000123 < float(p["env:LR"]) < 0.1354, p
        assert p["env:H"] in (16, 32, 64) and p["env:K"] in range(5), p
        assert p["env:U"] in (0, 2, 4, 6, 8, 10), p
    assert sweep.best_run() is None

    # The raw body: the same spec again gives the same trials (same seed).
    raw = client.sweep_spec(sweep.spec)
    try:
        assert raw.spec == sweep.spec
        wait_for(lambda: raw.refresh().counts.get("created") == 2, WAIT_S, "two trials")
        assert [t.parameters for t in raw.trials()] == [t.parameters for t in trials]
    finally:
        raw.cancel()


def test_bad_specs_raise_with_the_field(client, project):
    before = [s.id for s in client.sweeps()]
    common = dict(entry_script="train.py", primary_metric="acc", goal="maximize",
                  max_total_runs=2)
    cases = [
        (dict(common, script_params={"--curve": "1"},
              parameters={"--curve": trainyard.choice("1", "2")}), 400, "parameters.--curve"),
        (dict(common, parameters={"env:X": trainyard.uniform(1, 0)}), 400, "parameters.env:X"),
        (dict(common, parameters={"env:X": {"nosuch": [1]}}), 400, "parameters.env:X"),
        (dict(common, parameters={}), 400, "parameters"),
        (dict(common, parameters={"env:X": trainyard.uniform(0, 1)}, goal="up"), 400,
         "primary_metric.goal"),
        (dict(common, parameters={"env:X": trainyard.uniform(0, 1)}, sampling="grid"), 400,
         "sampling"),
        (dict(common, parameters={"env:X": trainyard.uniform(0, 1)}, max_total_runs=0), 400,
         "max_total_runs"),
        (dict(common, parameters={"env:X": trainyard.uniform(0, 1)}, node_count=0), 400,
         "run.node_count"),
        (dict(common, parameters={"env:X": trainyard.uniform(0, 1)},
              early_termination=trainyard.asha(reduction_factor=1)), 400,
         "early_termination.reduction_factor"),
        (dict(common, parameters=[("env:X", {"uniform": [0, 1]})]), 0, "parameters"),
        (dict(common, parameters={"env:X": trainyard.uniform(0, 1)}, entry_script="nope.py"),
         0, "entry_script"),
    ]
    for kwargs, status, field in cases:
        with pytest.raises(trainyard.TrainyardError) as e:
            client.sweep(project, **kwargs)
        assert (e.value.status, e.value.code, e.value.field) == (
            status, "invalid_argument", field), (kwargs, e.value)
    with pytest.raises(trainyard.TrainyardError) as e:
        client.sweep_spec({"parameters": {"env:X": {"uniform": [0, 1]}}})
    assert (e.value.status, e.value.field) == (400, "run")
    assert [s.id for s in client.sweeps()] == before


# --------------------------------------------------------------------------
# following across a server restart


def test_wait_takes_the_stream_up_again_after_a_restart(server_factory, agent_factory,
                                                        tmp_path):
    srv = server_factory(["--listen", "127.0.0.1:%d" % free_port()])
    agent_factory(srv, uniq("node"), cpus=4)
    c = sdk.Client(srv.url, srv.admin_token)
    trial = "import os, time; time.sleep(0.5); print('##metric {\"acc\": %s}' % os.environ['X'])"
    sweep = c.sweep(command=[PYTHON, "-c", trial], experiment=uniq("sdkrestart"),
                    parameters={"env:X": trainyard.choice(1, 2, 3, 4, 5, 6)},
                    primary_metric="acc", goal="maximize", sampling="grid",
                    max_concurrent_runs=1)
    out = io.StringIO()
    result = {}

    def follow():
        try:
            result["sweep"] = sweep.wait(output=out, timeout=WAIT_S)
        except BaseException as exc:  # reported by the test below
            result["error"] = exc

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        wait_for(lambda: "trial 1 " in out.getvalue(), WAIT_S, "trial 1 in the output")
        srv.kill()
        srv.start()
    finally:
        follower.join(WAIT_S + 30)
    assert not follower.is_alive()
    assert "error" not in result, (result, out.getvalue())
    assert result["sweep"].data["status"] == "completed"
    text = out.getvalue()
    for n in range(6):
        assert re.search(r"^trial %d +completed +acc=%d " % (n, n + 1), text, re.M), text
    assert text.splitlines()[-1].startswith("best: trial 5 ("), text


# --------------------------------------------------------------------------
# the README's example


def test_readme_sweep_example_runs(cluster, tmp_path):
    """examples/python-client/sweep.py is the README's sweep example, verbatim."""
    srv, _ = cluster
    lines = sdk_harness.run_example(srv, "sweep.py", tmp_path).splitlines()
    assert re.match(r"sweep swp-[0-9a-f]{12} completed: 8/8 trials created, ", lines[-8]), lines
    assert lines[-7].startswith("best: trial "), lines
    assert all(re.match(r"\d+ (completed|canceled) [0-9.e-]+ \{'--lr': ", x)
               for x in lines[-6:-3]), lines
    assert lines[-3].startswith("{'--lr': ") and lines[-2].endswith("model.json']"), lines
    assert lines[-1] == "8 trials", lines
