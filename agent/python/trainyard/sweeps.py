"""Hyperparameter sweeps from Python (issue 12): a template run, a parameter
space, a sampler and an early termination policy; the trials are ordinary runs.

A notebook session, for someone coming from Azure ML's HyperDrive::

    from trainyard import Client, bandit, choice, loguniform

    client = Client()
    sweep = client.sweep("./digits", entry_script="train.py",
                         parameters={"--lr": loguniform(-9, -2),
                                     "--hidden": choice(32, 64, 128)},
                         primary_metric="accuracy", goal="maximize",
                         sampling="bayesian", max_total_runs=40, max_concurrent_runs=4,
                         early_termination=bandit(slack_factor=0.1, delay_evaluation=5))
    sweep.wait()                    # a line per trial status change and the best so far
    best = sweep.best_run()         # a Run: .parameters, .metrics(), .download() ...
    for t in sweep.trials(sort="value", descending=True)[:5]:
        print(t.trial, t.value, t.parameters)

The parameter expressions (:func:`choice`, :func:`uniform`, :func:`loguniform`
...) and the policies (:func:`bandit`, :func:`median_stopping`,
:func:`truncation_selection`, :func:`asha`) return the API's JSON objects
(``{"loguniform": [-9, -2]}``, ``{"policy": "bandit", ...}``), so a raw body
for :meth:`Client.sweep_spec` can use them too.  They check their arguments'
types; the server checks the rest (``lo < hi``, a grid's size ...) and names
the field at fault (``parameters.--lr``, ``early_termination.slack_factor``).
"""

from __future__ import annotations

import codecs
import http.client
import json
import math
import numbers
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, TextIO, Tuple, Union

from . import _SWEEP_NAMES
from .client import (Client, Json, Run, TrainyardError, _arg_error, _Resource,
                     _write)

# What ``trainyard`` re-exports (on first use).
__all__ = list(_SWEEP_NAMES) + ["SWEEP_FINAL_STATUSES"]

Number = Union[int, float]
#: A parameter expression, as the API takes it: ``{"uniform": [0, 1]}``.
Expression = Dict[str, List[Any]]
#: An early termination policy, as the API takes it: ``{"policy": "bandit", ...}``.
Policy = Dict[str, Any]

#: Sweep statuses after which nothing changes any more.
SWEEP_FINAL_STATUSES = frozenset({"completed", "failed", "canceled"})

# While following a sweep, how long a silent event stream is kept (the server
# sends a keepalive every 15 s), how long to wait before taking a dropped one
# up again, and how long a server that cannot be reached is waited for (a
# restart) before giving up.
_FOLLOW_IDLE_S = 30.0
_FOLLOW_RETRY_S = 1.0
_UNREACHABLE_S = 120.0
_MAX_EVENT = 16 << 20


# --------------------------------------------------------------------------
# parameter expressions (HyperDrive's azureml.train.hyperdrive functions)


def _number(kind: str, name: str, value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _arg_error(name, "%s(): %s must be a number, got %r" % (kind, name, value))
    out: Number = int(value) if isinstance(value, numbers.Integral) else float(value)
    if not math.isfinite(out):
        raise _arg_error(name, "%s(): %s must be finite, got %r" % (kind, name, value))
    return out


def _integer(kind: str, name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _arg_error(name, "%s(): %s must be an integer, got %r" % (kind, name, value))
    return int(value)


def _expr(kind: str, names: Tuple[str, ...], values: Tuple[Any, ...]) -> Expression:
    return {kind: [_number(kind, n, v) for n, v in zip(names, values)]}


def choice(*options: Any) -> Expression:
    """One of the options: ``choice(16, 32, 64)``, ``choice([16, 32, 64])``,
    ``choice(range(1, 5))`` or strings, ``choice("relu", "tanh")``. The only
    expression ``grid`` sampling takes."""
    if len(options) == 1 and isinstance(options[0], (list, tuple, range)):
        options = tuple(options[0])
    if not options:
        raise _arg_error("options", "choice(): give at least one option")
    out: List[Any] = []
    for value in options:
        out.append(value if isinstance(value, str) else _number("choice", "options", value))
    return {"choice": out}


def randint(upper: int) -> Expression:
    """An integer n with 0 <= n < upper, uniformly."""
    return {"randint": [_integer("randint", "upper", upper)]}


def uniform(min_value: Number, max_value: Number) -> Expression:
    """A real number between min_value and max_value, uniformly."""
    return _expr("uniform", ("min_value", "max_value"), (min_value, max_value))


def quniform(min_value: Number, max_value: Number, q: Number) -> Expression:
    """round(uniform(min_value, max_value) / q) * q."""
    return _expr("quniform", ("min_value", "max_value", "q"), (min_value, max_value, q))


def loguniform(min_value: Number, max_value: Number) -> Expression:
    """exp(uniform(min_value, max_value)): ``loguniform(-9, -2)`` is between
    about 0.000123 and 0.135, as likely in each decade."""
    return _expr("loguniform", ("min_value", "max_value"), (min_value, max_value))


def qloguniform(min_value: Number, max_value: Number, q: Number) -> Expression:
    """round(exp(uniform(min_value, max_value)) / q) * q."""
    return _expr("qloguniform", ("min_value", "max_value", "q"), (min_value, max_value, q))


def normal(mu: Number, sigma: Number) -> Expression:
    """A real number, normally distributed with mean mu and deviation sigma."""
    return _expr("normal", ("mu", "sigma"), (mu, sigma))


def qnormal(mu: Number, sigma: Number, q: Number) -> Expression:
    """round(normal(mu, sigma) / q) * q."""
    return _expr("qnormal", ("mu", "sigma", "q"), (mu, sigma, q))


def lognormal(mu: Number, sigma: Number) -> Expression:
    """exp(normal(mu, sigma))."""
    return _expr("lognormal", ("mu", "sigma"), (mu, sigma))


def qlognormal(mu: Number, sigma: Number, q: Number) -> Expression:
    """round(exp(normal(mu, sigma)) / q) * q."""
    return _expr("qlognormal", ("mu", "sigma", "q"), (mu, sigma, q))


# --------------------------------------------------------------------------
# early termination policies


def _interval(kind: str, evaluation_interval: int, delay_evaluation: int) -> Policy:
    return {"policy": kind,
            "evaluation_interval": _integer(kind, "evaluation_interval", evaluation_interval),
            "delay_evaluation": _integer(kind, "delay_evaluation", delay_evaluation)}


def bandit(slack_factor: Optional[Number] = None, slack_amount: Optional[Number] = None,
           evaluation_interval: int = 1, delay_evaluation: int = 0) -> Policy:
    """HyperDrive's BanditPolicy: at each evaluation, stops a trial whose
    value is worse than the best's by more than slack_factor (a ratio: best
    / (1 + slack_factor) when maximizing) or slack_amount (an absolute
    difference); give one of the two. A trial's k-th report of the primary
    metric is its interval k; evaluations are every evaluation_interval
    intervals after the first delay_evaluation."""
    if (slack_factor is None) == (slack_amount is None):
        raise _arg_error("slack_factor", "bandit(): give slack_factor or slack_amount "
                         "(one of the two)")
    policy = _interval("bandit", evaluation_interval, delay_evaluation)
    if slack_factor is not None:
        policy["slack_factor"] = _number("bandit", "slack_factor", slack_factor)
    if slack_amount is not None:
        policy["slack_amount"] = _number("bandit", "slack_amount", slack_amount)
    return policy


def median_stopping(evaluation_interval: int = 1, delay_evaluation: int = 0) -> Policy:
    """HyperDrive's MedianStoppingPolicy: stops a trial whose best value so
    far is worse than the median of the other trials' running averages at
    the same interval."""
    return _interval("median_stopping", evaluation_interval, delay_evaluation)


def truncation_selection(truncation_percentage: int, evaluation_interval: int = 1,
                         delay_evaluation: int = 0,
                         exclude_finished_runs: bool = False) -> Policy:
    """HyperDrive's TruncationSelectionPolicy: at each evaluation, stops the
    trials in the lowest truncation_percentage percent (1..99) by value at
    that interval; exclude_finished_runs leaves finished trials out of the
    comparison."""
    policy = _interval("truncation_selection", evaluation_interval, delay_evaluation)
    policy["truncation_percentage"] = _integer("truncation_selection", "truncation_percentage",
                                               truncation_percentage)
    if not isinstance(exclude_finished_runs, bool):
        raise _arg_error("exclude_finished_runs", "truncation_selection(): "
                         "exclude_finished_runs must be True or False")
    policy["exclude_finished_runs"] = exclude_finished_runs
    return policy


def asha(min_resource: int = 1, reduction_factor: int = 3) -> Policy:
    """Asynchronous successive halving (Li et al. 2020), which HyperDrive
    lacks: rungs at the metric's ``step`` min_resource * reduction_factor^k;
    a trial reaching a rung goes on only when its value is in the top
    1/reduction_factor of the values seen at that rung."""
    return {"policy": "asha",
            "min_resource": _integer("asha", "min_resource", min_resource),
            "reduction_factor": _integer("asha", "reduction_factor", reduction_factor)}


# --------------------------------------------------------------------------
# errors and trials


class SweepFailedError(TrainyardError):
    """Raised by :meth:`Sweep.wait` when the sweep ends ``failed`` or
    ``canceled``: ``code`` is ``sweep_failed`` or ``sweep_canceled``,
    ``message`` the sweep's error, ``sweep`` the :class:`Sweep` as it ended."""

    def __init__(self, sweep: "Sweep") -> None:
        self.sweep = sweep
        status = sweep.data.get("status")
        error = sweep.data.get("error") or ""
        message = "sweep %s %s" % (sweep.id, status) + (": " + error if error else "")
        super().__init__(0, "sweep_" + str(status), message)


@dataclass(frozen=True)
class Trial:
    """One trial of a sweep: its run's ``id``, its number ``trial`` (from 0),
    the run's ``status``, ``reason`` (``early_terminated`` for a trial a
    policy stopped), the ``parameters`` it ran with and ``value``, the last
    reported value of the primary metric (None before the first report).
    Times are RFC 3339 UTC or None."""

    client: Client = field(repr=False, compare=False)
    id: str
    trial: int
    status: str
    reason: Optional[str]
    parameters: Dict[str, Any]
    value: Optional[float]
    created_at: Optional[str]
    started_at: Optional[str]
    ended_at: Optional[str]

    @property
    def early_terminated(self) -> bool:
        return self.reason == "early_terminated"

    def run(self) -> Run:
        """The trial's run (read now)."""
        return self.client.run(self.id)


def _trial(client: Client, item: Json) -> Trial:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise TrainyardError(0, "internal", "the server's answer is not a trial")
    return Trial(client, item["id"], int(item.get("trial") or 0), str(item.get("status")),
                 item.get("reason"), dict(item.get("parameters") or {}), item.get("value"),
                 item.get("created_at"), item.get("started_at"), item.get("ended_at"))


# --------------------------------------------------------------------------
# the sweep


class Sweep(_Resource):
    """A sweep. ``data`` is the sweep resource as last read; ``status``
    (``running``, ``completed``, ``canceled``, ``failed``) reads it afresh,
    the other properties (``id``, ``experiment``, ``spec`` with every
    default filled, ``error``) use the last read (:meth:`refresh` reads
    again)."""

    _kind = "sweep"
    _collection = "/api/v1/sweeps/"

    @property
    def counts(self) -> Dict[str, int]:
        """Trials ``created`` and by run status, plus ``early_terminated``."""
        return {k: int(v) for k, v in (self.data.get("trials") or {}).items()}

    def cancel(self) -> "Sweep":
        """Cancels the unfinished trials and starts no more; the sweep ends
        ``canceled``. Canceling a canceled sweep changes nothing; one that
        completed or failed raises TrainyardError (409 ``conflict``).
        Returns self."""
        self.data = self.client._call("POST", self._path("/cancel"))
        return self

    def trials(self, sort: str = "trial", descending: bool = False) -> List[Trial]:
        """Every trial, by number (``sort="trial"``) or by primary-metric
        value (``sort="value"``; trials without one last)."""
        answer = self.client._call("GET", self._path("/runs"),
                                   {"sort": sort, "order": "desc" if descending else "asc"})
        return [_trial(self.client, item) for item in answer.get("items") or []]

    def best_run(self) -> Optional[Run]:
        """The completed trial with the best value (read now), or None while
        no trial has completed. Its ``parameters`` are what it ran with."""
        best = self.refresh().data.get("best_run")
        if not isinstance(best, dict) or not isinstance(best.get("id"), str):
            return None
        return self.client.run(best["id"])

    def runs(self) -> Iterator[Run]:
        """The trials as runs, newest first (``client.runs(sweep=...)``)."""
        return self.client.runs(sweep=self.id)

    # ---- following

    def wait(self, show_output: bool = True, timeout: Optional[float] = None,
             output: Optional[TextIO] = None, raise_on_error: bool = True) -> "Sweep":
        """Waits until the sweep ends, following its event stream.

        show_output: write a line to output (default sys.stdout) each time a
        trial's status changes (``trial 3    completed        acc=0.93
        --lr=0.01``) and each time the best so far changes, then the sweep's
        outcome. A dropped stream (a server restart) is taken up again.
        timeout: seconds to wait at most, then TrainyardError with code
        ``timeout`` (the sweep goes on). Raises SweepFailedError when the
        sweep ends ``failed`` or ``canceled`` (unless raise_on_error is
        False). Returns self, refreshed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = _Follow(self, show_output, output)
        unreachable_since: Optional[float] = None
        while True:
            try:
                self._follow_once(follow, deadline)
                # Ended or dropped: read the sweep and its trials (what a
                # dropped stream missed, or the fallback when none is served).
                self.refresh()
                follow.catch_up(self.trials())
                unreachable_since = None
            except TrainyardError as exc:
                if exc.status != 0 or exc.code != "unavailable":
                    raise
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > _UNREACHABLE_S:
                    raise
            if self.data.get("status") in SWEEP_FINAL_STATUSES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TrainyardError(0, "timeout", "sweep %s is still %s"
                                     % (self.id, self.data.get("status")))
            time.sleep(_FOLLOW_RETRY_S if deadline is None
                       else max(0.0, min(_FOLLOW_RETRY_S, deadline - time.monotonic())))
        follow.finish()
        if raise_on_error and self.data.get("status") != "completed":
            raise SweepFailedError(self)
        return self

    def _follow_once(self, follow: "_Follow", deadline: Optional[float]) -> None:
        """One event stream, until it ends, drops or stays silent too long.
        Raises TrainyardError for an HTTP error other than 429/503 (too many
        streams: the caller polls instead)."""
        idle = _FOLLOW_IDLE_S
        if deadline is not None:
            idle = max(0.1, min(idle, deadline - time.monotonic()))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        try:
            with self.client._open("GET", self._path("/events"), timeout=idle) as resp:
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    pending += decoder.decode(chunk).replace("\r\n", "\n")
                    while "\n\n" in pending:
                        block, pending = pending.split("\n\n", 1)
                        follow.block(block)
                    if len(pending) > _MAX_EVENT:
                        raise TrainyardError(0, "internal", "an event of sweep %s's stream is "
                                             "larger than %d MiB" % (self.id, _MAX_EVENT >> 20))
        except (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException):
            pass  # a silent or dropped stream: the caller reads the sweep and goes on
        except TrainyardError as exc:
            if exc.status not in (429, 503):
                raise


def _exact(value: Any) -> str:
    """A parameter's value as it can be typed back (floats in the fewest digits)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _pairs(parameters: Any) -> str:
    if not isinstance(parameters, dict) or not parameters:
        return "-"
    return " ".join("%s=%s" % (k, _exact(v)) for k, v in parameters.items())


def _value(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "%.6g" % value
    return "-"


class _Follow:
    """Sweep.wait's state: the trials' statuses and the best as last shown."""

    def __init__(self, sweep: Sweep, show: bool, out: Optional[TextIO]) -> None:
        self.sweep = sweep
        self.show = show
        self.out = out
        self.metric = str((sweep.spec.get("primary_metric") or {}).get("name") or "value")
        self.shown: Dict[int, str] = {}
        self.best: Optional[str] = None

    def _print(self, line: str) -> None:
        if self.show:
            _write(self.out, line + "\n")

    def block(self, block: str) -> None:
        """One Server-Sent Events block: ``event: K`` and ``data: D`` lines."""
        kind = None
        data: List[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].lstrip(" ")
            elif line.startswith("data:"):
                data.append(line[5:][1:] if line[5:6] == " " else line[5:])
        if kind is None or not data:
            return  # a comment (keepalive)
        try:
            item = json.loads("\n".join(data))
        except ValueError:
            return
        if not isinstance(item, dict):
            return
        if kind == "trial":
            self.trial(item)
        elif kind == "sweep" and item.get("id") == self.sweep.id:
            self.sweep.data = item
            self.best_line()

    def trial(self, item: Json) -> None:
        n = item.get("trial")
        if not isinstance(n, int):
            return
        status = "early_terminated" if item.get("reason") == "early_terminated" \
            else str(item.get("status"))
        if self.shown.get(n) == status:
            return
        self.shown[n] = status
        self._print("trial %-4d %-16s %s=%-12s %s" % (n, status, self.metric,
                                                      _value(item.get("value")),
                                                      _pairs(item.get("parameters"))))

    def catch_up(self, trials: List[Trial]) -> None:
        for t in trials:
            self.trial({"trial": t.trial, "status": t.status, "reason": t.reason,
                        "value": t.value, "parameters": t.parameters})
        self.best_line()

    def _best_text(self) -> Optional[str]:
        best = self.sweep.data.get("best_run")
        if not isinstance(best, dict):
            return None
        return "trial %s (%s): %s=%s  %s" % (best.get("trial"), best.get("id"), self.metric,
                                             _value(best.get("value")),
                                             _pairs(best.get("parameters")))

    def best_line(self) -> None:
        text = self._best_text()
        if text is not None and text != self.best:
            self.best = text
            self._print("best so far: " + text)

    def finish(self) -> None:
        data = self.sweep.data
        counts = self.sweep.counts
        total = (data.get("spec") or {}).get("max_total_runs")
        parts = ["%d/%s trials created" % (counts.get("created", 0), total)]
        for status in ("queued", "starting", "running", "completed", "failed", "canceled"):
            if counts.get(status):
                parts.append("%d %s" % (counts[status], status))
        line = "sweep %s %s: %s" % (self.sweep.id, data.get("status"), ", ".join(parts))
        if counts.get("early_terminated"):
            line += " (%d early terminated)" % counts["early_terminated"]
        self._print(line)
        if data.get("error"):
            self._print("error: %s" % data["error"])
        self._print("best: " + (self._best_text() or "none"))
