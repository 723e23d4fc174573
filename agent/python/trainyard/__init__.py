"""trainyard -- report metrics and find your outputs from inside a trainyard task.

The trainyard node agent puts this package on ``PYTHONPATH`` of every task it
starts, so a training script can simply ``import trainyard``.  It uses only the
Python standard library and works on Python 3.6 and later.

Metrics
-------
A task reports a metric by printing one line to stdout::

    ##metric {"loss":0.25,"accuracy":0.91,"step":100}

The agent picks such lines out of the log stream and records them as run
metrics (``step`` is optional; without it the server uses the metric's
previous step + 1, starting at 0).  This module writes those lines for you::

    import trainyard
    trainyard.log("loss", 0.25, step=100)
    trainyard.log_many({"loss": 0.25, "accuracy": 0.91}, step=100)

* Names must be non-empty strings other than ``"step"``.
* Values must be finite real numbers (``int``, ``float``, NumPy scalars, 0-d
  tensors ...); ``bool``, strings, ``None``, NaN and infinities raise
  ``ValueError``.
* ``step``, when given, must be a non-negative integer.

Each line is written to the stdout file descriptor with a single ``write`` call
and flushed at once, so lines printed by several processes sharing one stdout
(for example MPI ranks, whose output all reaches the launcher) or by several
threads never interleave.

Keras
-----
``trainyard.KerasCallback`` (also available as ``trainyard.Callback``) is a
duck-typed Keras callback: pass an instance to ``model.fit(callbacks=[...])``
and every numeric entry of the epoch's ``logs`` is reported with
``step=epoch``.  Non-finite values (a diverged loss) are skipped with a note on
stderr rather than stopping training.

Environment
-----------
``trainyard.output_dir()`` returns ``$TRAINYARD_OUTPUT_DIR`` (or ``./outputs``
when not running under trainyard), creating it if needed.  Files written there
are uploaded when the task ends and listed as the run's artifacts.

``trainyard.task()`` returns a dict describing the current task, read from the
``TRAINYARD_*`` environment variables set by the agent::

    {"run_id": "...", "experiment": "...", "task_type": "worker",
     "task_index": 0, "node": "..."}

Values are ``None`` when the variable is not set (e.g. outside trainyard).

Client
------
Installed as a package (``pip install ./agent/python``, Python 3.9 or later),
``trainyard`` is also the client of a trainyard server: ``trainyard.Client``
submits runs from a notebook or script, follows them and reads their metrics
and artifacts (see ``trainyard.client``), and starts and follows
hyperparameter sweeps (``trainyard.sweeps``: ``trainyard.choice``,
``trainyard.loguniform``, ``trainyard.bandit`` ...).  It is imported on first use, so
``import trainyard`` inside a task stays as cheap as before; the copy of this
module a node agent puts on a task's ``PYTHONPATH`` has the functions above
only.
"""

import json
import math
import numbers
import os
import sys
import threading

__all__ = [
    "log",
    "log_many",
    "KerasCallback",
    "Callback",
    "output_dir",
    "task",
    "METRIC_PREFIX",
]

__version__ = "1.1"

METRIC_PREFIX = "##metric "

_write_lock = threading.Lock()


# --------------------------------------------------------------------------
# validation


def _check_name(name):
    if not isinstance(name, str):
        raise ValueError("metric name must be a string, got %r" % (name,))
    if not name:
        raise ValueError("metric name must not be empty")
    if name == "step":
        raise ValueError('"step" is reserved; pass it as step=... instead')
    return name


def _check_value(name, value):
    """Return value as a JSON-serialisable finite int or float."""
    if isinstance(value, bool):
        raise ValueError("metric %r: value must be a number, got bool" % (name,))
    if isinstance(value, (str, bytes, bytearray)) or value is None:
        raise ValueError("metric %r: value must be a number, got %r" % (name, value))
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        out = float(value)
    elif hasattr(value, "__float__"):
        # 0-d tensors / arrays and other scalar-like objects
        try:
            out = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "metric %r: value must be a number, got %r (%s)" % (name, value, exc)
            )
    else:
        raise ValueError(
            "metric %r: value must be a number, got %s" % (name, type(value).__name__)
        )
    if not math.isfinite(out):
        raise ValueError("metric %r: value must be finite, got %r" % (name, out))
    return out


def _check_step(step):
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        else:
            raise ValueError("step must be a non-negative integer, got %r" % (step,))
    step = int(step)
    if step < 0:
        raise ValueError("step must be a non-negative integer, got %r" % (step,))
    return step


# --------------------------------------------------------------------------
# output


def _emit(payload):
    """Write one ##metric line with a single write call and flush it."""
    line = METRIC_PREFIX + json.dumps(payload, separators=(",", ":"), ensure_ascii=True) + "\n"
    stream = sys.stdout
    if stream is None:  # e.g. pythonw: nowhere to report
        return
    with _write_lock:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None  # io.StringIO, Jupyter, pytest capture ...
        if fd is None:
            stream.write(line)
            stream.flush()
            return
        # Anything the script printed before must come first.
        stream.flush()
        data = line.encode("ascii")
        # A single os.write; lines are far below PIPE_BUF, so a pipe shared by
        # several processes receives them whole.  Loop only on a short write.
        while data:
            n = os.write(fd, data)
            data = data[n:]


def log(name, value, step=None):
    """Report one metric: prints ``##metric {"<name>":<value>,"step":<step>}``.

    ``step`` is omitted from the line when None.  Raises ValueError for an
    empty/non-string name, a non-numeric or non-finite value, or a bad step.
    """
    name = _check_name(name)
    payload = {name: _check_value(name, value)}
    step = _check_step(step)
    if step is not None:
        payload["step"] = step
    _emit(payload)


def log_many(metrics, step=None):
    """Report several metrics on one line, e.g. ``log_many({"loss": l, "acc": a}, step=i)``.

    The pairs keep the dict's order; ``step`` comes last and is omitted when None.
    Raises ValueError if ``metrics`` is empty or any name/value is invalid
    (nothing is printed in that case).
    """
    if not hasattr(metrics, "items"):
        raise ValueError("log_many expects a dict of name -> number, got %r" % (metrics,))
    payload = {}
    for name, value in metrics.items():
        name = _check_name(name)
        payload[name] = _check_value(name, value)
    if not payload:
        raise ValueError("log_many needs at least one metric")
    step = _check_step(step)
    if step is not None:
        payload["step"] = step
    _emit(payload)


# --------------------------------------------------------------------------
# Keras


class KerasCallback(object):
    """Duck-typed Keras callback reporting each epoch's logs as trainyard metrics.

    ``model.fit(x, y, epochs=10, callbacks=[trainyard.KerasCallback()])``

    ``on_epoch_end(epoch, logs)`` logs every numeric entry of ``logs`` with
    ``step=epoch`` on one ``##metric`` line; non-numeric entries are ignored
    and non-finite ones are skipped with a note on stderr.  All other hooks
    are no-ops.
    """

    _supports_tf_logs = False  # tf.keras: give us plain Python/NumPy logs

    def __init__(self):
        self.model = None
        self.params = {}
        self.validation_data = None

    # -- the one hook that does something
    def on_epoch_end(self, epoch, logs=None):
        metrics = {}
        skipped = []
        for key, value in (logs or {}).items():
            if not isinstance(key, str) or not key or key == "step":
                continue
            try:
                metrics[key] = _check_value(key, value)
            except ValueError:
                if _is_numberish(value):
                    skipped.append(key)
        if skipped:
            sys.stderr.write(
                "trainyard: epoch %s: not logging non-finite %s\n" % (epoch, ", ".join(skipped))
            )
        if metrics:
            log_many(metrics, step=epoch)

    # -- plumbing Keras expects
    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    # tf.keras asks these to decide whether to call per-batch hooks at all
    def _implements_train_batch_hooks(self):
        return False

    def _implements_test_batch_hooks(self):
        return False

    def _implements_predict_batch_hooks(self):
        return False


Callback = KerasCallback


def _is_numberish(value):
    if isinstance(value, (bool, str, bytes, bytearray)) or value is None:
        return False
    return isinstance(value, numbers.Real) or hasattr(value, "__float__")


# --------------------------------------------------------------------------
# environment


def output_dir():
    """Return $TRAINYARD_OUTPUT_DIR (or "./outputs" outside trainyard), creating it."""
    path = os.environ.get("TRAINYARD_OUTPUT_DIR") or "./outputs"
    os.makedirs(path, exist_ok=True)
    return path


def task():
    """Describe the current task from the TRAINYARD_* environment variables.

    Returns ``{"run_id", "experiment", "task_type", "task_index", "node"}``;
    ``task_index`` is an int; any value is None when its variable is unset.
    """
    env = os.environ
    index = env.get("TRAINYARD_TASK_INDEX")
    try:
        index = int(index) if index not in (None, "") else None
    except ValueError:
        index = None
    return {
        "run_id": env.get("TRAINYARD_RUN_ID") or None,
        "experiment": env.get("TRAINYARD_EXPERIMENT") or None,
        "task_type": env.get("TRAINYARD_TASK_TYPE") or None,
        "task_index": index,
        "node": env.get("TRAINYARD_NODE") or None,
    }


# --------------------------------------------------------------------------
# the client (trainyard.client), imported on first use

_CLIENT_NAMES = (
    "Client",
    "Run",
    "TrainyardError",
    "RunFailedError",
    "MetricSummary",
    "MetricSeries",
    "Artifact",
)

# trainyard.sweeps: the sweep resource, HyperDrive's parameter expressions
# and the early termination policies.
_SWEEP_NAMES = (
    "Sweep",
    "Trial",
    "SweepFailedError",
    "choice",
    "randint",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
    "bandit",
    "median_stopping",
    "truncation_selection",
    "asha",
)


def __getattr__(name):
    """trainyard.Client, trainyard.choice and friends, from trainyard.client
    and trainyard.sweeps on first use (PEP 562)."""
    if name in _CLIENT_NAMES or name in _SWEEP_NAMES:
        try:
            if name in _CLIENT_NAMES:
                from . import client as module
            else:
                from . import sweeps as module
        except ImportError as exc:
            raise ImportError(
                "trainyard.%s needs the trainyard package (pip install <repository>/agent/python);"
                " the helper a node agent puts on a task's PYTHONPATH has only the in-run"
                " functions (%s)" % (name, exc)
            )
        return getattr(module, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    return sorted(set(globals()) | set(_CLIENT_NAMES) | set(_SWEEP_NAMES))
