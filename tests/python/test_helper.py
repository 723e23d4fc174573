"""Tests for the trainyard Python helper (agent/python/trainyard) and the digits example.

Every check runs the code in a fresh /usr/bin/python3 subprocess with
PYTHONPATH=agent/python, the way the node agent runs a task.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER_PATH = os.path.join(ROOT, "agent", "python")
DIGITS = os.path.join(ROOT, "examples", "digits", "train.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _env(extra=None):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRAINYARD_") and k not in ("PYTHONPATH", "PYTHONUNBUFFERED")
    }
    env["PYTHONPATH"] = HELPER_PATH
    env.update(extra or {})
    return env


def run_py(code, cwd, env=None, timeout=60):
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code)],
        cwd=str(cwd),
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=timeout,
    )


def ok(code, cwd, env=None):
    p = run_py(code, cwd, env)
    assert p.returncode == 0, p.stderr
    return p.stdout


def metric_lines(stdout):
    return [l for l in stdout.splitlines() if l.startswith("##metric ")]


# ---------------------------------------------------------------- log / log_many


def test_log_exact_format(tmp_path):
    out = ok(
        """
        import trainyard
        trainyard.log("loss", 0.25, step=100)
        trainyard.log("accuracy", 0.91)
        trainyard.log("count", 7, step=0)
        """,
        tmp_path,
    )
    assert out == (
        '##metric {"loss":0.25,"step":100}\n'
        '##metric {"accuracy":0.91}\n'
        '##metric {"count":7,"step":0}\n'
    )


def test_log_many_exact_format(tmp_path):
    out = ok(
        """
        import trainyard
        trainyard.log_many({"loss": 0.25, "accuracy": 0.91}, step=100)
        trainyard.log_many({"b": 1, "a": -2.5})
        """,
        tmp_path,
    )
    assert out == (
        '##metric {"loss":0.25,"accuracy":0.91,"step":100}\n'
        '##metric {"b":1,"a":-2.5}\n'
    )


def test_lines_are_flushed_immediately_and_ordered_with_prints(tmp_path):
    # stdout is a pipe here (block-buffered, no PYTHONUNBUFFERED): the metric line
    # must appear after the earlier print and before the process ends.
    out = ok(
        """
        import sys, os, trainyard
        print("before")
        trainyard.log("x", 1, step=1)
        print("after")
        sys.stdout.flush()
        os._exit(0)
        """,
        tmp_path,
    )
    assert out == 'before\n##metric {"x":1,"step":1}\nafter\n'


def test_metric_line_survives_hard_exit(tmp_path):
    out = ok(
        """
        import os, trainyard
        trainyard.log("x", 2)
        os._exit(0)
        """,
        tmp_path,
    )
    assert out == '##metric {"x":2}\n'


def test_concurrent_writers_do_not_interleave(tmp_path):
    out = ok(
        """
        import threading, trainyard
        name = "m" * 200
        def work(t):
            for i in range(300):
                trainyard.log_many({name: float(i), "thread": t}, step=i)
        ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        """,
        tmp_path,
    )
    lines = out.splitlines()
    assert len(lines) == 1200
    for line in lines:
        assert line.startswith("##metric ")
        json.loads(line[len("##metric "):])


def test_names_are_json_escaped(tmp_path):
    out = ok(
        """
        import trainyard
        trainyard.log('we"ird\\nname', 1.5)
        """,
        tmp_path,
    )
    lines = out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0][len("##metric "):]) == {'we"ird\nname': 1.5}


@pytest.mark.parametrize(
    "call",
    [
        'trainyard.log("loss", float("nan"))',
        'trainyard.log("loss", float("inf"))',
        'trainyard.log("loss", float("-inf"))',
        'trainyard.log("loss", "0.5")',
        'trainyard.log("loss", None)',
        'trainyard.log("loss", True)',
        'trainyard.log("loss", [1])',
        'trainyard.log("loss", 1j)',
        'trainyard.log("", 1)',
        'trainyard.log(None, 1)',
        'trainyard.log(3, 1)',
        'trainyard.log("step", 1)',
        'trainyard.log("loss", 1, step=-1)',
        'trainyard.log("loss", 1, step="3")',
        'trainyard.log("loss", 1, step=1.5)',
        'trainyard.log_many({})',
        'trainyard.log_many({"a": 1, "b": float("nan")})',
        'trainyard.log_many({"a": 1, "": 2})',
        'trainyard.log_many({"a": "x"})',
        'trainyard.log_many([("a", 1)])',
    ],
)
def test_invalid_input_raises_value_error_and_prints_nothing(tmp_path, call):
    out = ok(
        """
        import trainyard
        try:
            %s
        except ValueError:
            print("ValueError")
        else:
            print("no error")
        """
        % call,
        tmp_path,
    )
    assert out == "ValueError\n"


# ---------------------------------------------------------------- Keras callback


def test_keras_callback_logs_numeric_entries_with_epoch_step(tmp_path):
    p = run_py(
        """
        import trainyard
        assert trainyard.Callback is trainyard.KerasCallback
        cb = trainyard.KerasCallback()
        cb.set_model(object()); cb.set_params({"epochs": 2})
        cb.on_train_begin(); cb.on_epoch_begin(0); cb.on_batch_begin(0); cb.on_batch_end(0, {"loss": 9})
        cb.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75, "name": "x", "flag": True, "none": None})
        cb.on_epoch_end(1, {"loss": 0.25, "val_loss": float("nan"), "accuracy": 1})
        cb.on_epoch_end(2, None)
        cb.on_epoch_end(3, {})
        cb.on_train_end()
        """,
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == (
        '##metric {"loss":0.5,"accuracy":0.75,"step":0}\n'
        '##metric {"loss":0.25,"accuracy":1,"step":1}\n'
    )
    assert "val_loss" in p.stderr  # the skipped non-finite value is mentioned


# ---------------------------------------------------------------- environment


def test_output_dir_default_is_created(tmp_path):
    out = ok("import trainyard; print(trainyard.output_dir())", tmp_path)
    assert out == "./outputs\n"
    assert (tmp_path / "outputs").is_dir()


def test_output_dir_from_env_is_created(tmp_path):
    target = tmp_path / "a" / "b" / "outputs"
    out = ok(
        "import trainyard; print(trainyard.output_dir())",
        tmp_path,
        {"TRAINYARD_OUTPUT_DIR": str(target)},
    )
    assert out == str(target) + "\n"
    assert target.is_dir()
    assert not (tmp_path / "outputs").exists()


def test_task_from_env(tmp_path):
    out = ok(
        "import json, trainyard; print(json.dumps(trainyard.task(), sort_keys=True))",
        tmp_path,
        {
            "TRAINYARD_RUN_ID": "r-1",
            "TRAINYARD_EXPERIMENT": "digits",
            "TRAINYARD_TASK_TYPE": "worker",
            "TRAINYARD_TASK_INDEX": "2",
            "TRAINYARD_NODE": "gpu-3",
        },
    )
    assert json.loads(out) == {
        "run_id": "r-1",
        "experiment": "digits",
        "task_type": "worker",
        "task_index": 2,
        "node": "gpu-3",
    }


def test_task_outside_trainyard(tmp_path):
    out = ok("import json, trainyard; print(json.dumps(trainyard.task()))", tmp_path)
    assert set(json.loads(out)) == {"run_id", "experiment", "task_type", "task_index", "node"}


# ---------------------------------------------------------------- digits example


def _has_torch_and_sklearn():
    try:
        r = subprocess.run(
            [PYTHON, "-c", "import torch, sklearn"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _has_torch_and_sklearn(), reason=PYTHON + " lacks torch/sklearn")
def test_digits_example_trains(tmp_path):
    outputs = tmp_path / "outputs"
    p = subprocess.run(
        [PYTHON, DIGITS, "--epochs", "30"],
        cwd=str(tmp_path),
        env=_env({"TRAINYARD_OUTPUT_DIR": str(outputs), "PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    records = [json.loads(l[len("##metric "):]) for l in metric_lines(p.stdout)]
    assert len(records) >= 30
    for r in records:
        assert {"loss", "accuracy", "step"} <= set(r)
    assert [r["step"] for r in records] == list(range(len(records)))
    assert records[-1]["accuracy"] >= 0.9
    assert (outputs / "model.pt").is_file()
    summary = json.loads((outputs / "metrics.json").read_text())
    assert summary["accuracy"] >= 0.9
