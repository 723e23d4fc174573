"""trainyard's Python client: submit runs, follow them and read their results.

A notebook session, for someone coming from Azure ML's estimator::

    from trainyard import Client

    client = Client()                       # server and token as the CLI finds them
    run = client.submit("./my-tf-proj", entry_script="train.py",
                        script_params={"--batch-size": 50, "--learning-rate": 0.01},
                        node_count=2, distributed_backend="pytorch",
                        pip_packages=["keras"], experiment="mnist")
    run.wait(show_output=True)              # streams the log; raises if it fails
    run.metrics()["loss"].last
    run.download("model.onnx", to="./outputs")

The server and token are found as the ``trainyard`` CLI finds them: the
arguments, else ``TRAINYARD_SERVER`` / ``TRAINYARD_TOKEN`` (or
``TRAINYARD_TOKEN_FILE``), else ``<data_dir>/server.url`` and, for a server
on this machine, ``<data_dir>/admin.token`` (``data_dir`` defaults to
``./var``, the server's default), else ``http://127.0.0.1:8080``.

Every failure the API reports raises :class:`TrainyardError` with the HTTP
``status`` and the API's ``code``, ``message`` and ``field``.  Standard library
only; Python 3.9 or later.
"""

from __future__ import annotations

import codecs
import gzip
import ipaddress
import json
import numbers
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import (IO, TYPE_CHECKING, Any, Dict, Iterator, List, Literal, Mapping, Optional,
                    Sequence, TextIO, Tuple, TypeVar, Union)

from . import _CLIENT_NAMES, _snapshot

if TYPE_CHECKING:
    from .sweeps import Sweep

# What ``trainyard`` re-exports (on first use), and the statuses.
__all__ = list(_CLIENT_NAMES) + ["FINAL_STATUSES"]

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = "./var"
#: JSON bodies larger than this go gzip-compressed (as the CLI's CLI_GZIP_MIN).
GZIP_MIN = 64 << 10
#: Run statuses after which nothing changes any more.
FINAL_STATUSES = frozenset({"completed", "failed", "canceled"})

_TIMEOUT_S = 60.0
_UPLOAD_TIMEOUT_S = 1800.0
# While following a log, how long a silent stream is kept before it is taken
# up again (the run's status is checked in between).
_FOLLOW_IDLE_S = 30.0
_FOLLOW_RETRY_S = 1.0
_TOKEN_FILE_MAX = 4096
_PAGE_SIZE = 100
_HTTP_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
    507: "insufficient_storage",
}

Json = Dict[str, Any]
PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------
# errors


class TrainyardError(Exception):
    """Any failure of a trainyard call.

    Attributes:
        status: the HTTP status of the API's answer; 0 when there was none
            (the server could not be reached, or the client refused the call
            before sending it).
        code: the API's error code (``invalid_argument``, ``not_found``,
            ``unauthenticated`` ...; SPEC §3), or for failures without an
            answer ``unavailable`` (no connection), ``invalid_argument`` (a
            bad argument caught before sending) or ``timeout``.
        message: what is wrong, in words.
        field: the input field at fault, when one is (e.g. ``node_count``).
    """

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        text = message + (" (field: %s)" % field if field else "")
        if status:
            text = "HTTP %d %s: %s" % (status, code, text)
        super().__init__(text)


class RunFailedError(TrainyardError):
    """Raised by :meth:`Run.wait` when the run ends ``failed`` or ``canceled``.

    ``code`` is ``run_failed`` or ``run_canceled``; ``message`` is the run's
    error; ``run`` is the :class:`Run` as it ended.
    """

    def __init__(self, run: "Run") -> None:
        self.run = run
        status = run.data.get("status")
        error = run.data.get("error") or ""
        message = "run %s %s" % (run.id, status) + (": " + error if error else "")
        super().__init__(0, "run_" + str(status), message)


def _arg_error(field: str, message: str) -> TrainyardError:
    return TrainyardError(0, "invalid_argument", message, field)


# --------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class MetricSummary:
    """One metric of a run: its latest value, extremes, count and last step."""

    name: str
    last: float
    min: float
    max: float
    count: int
    last_step: int


@dataclass(frozen=True)
class MetricSeries:
    """A metric's points ``(step, time, value)``, oldest first; ``time`` is
    RFC 3339 UTC, or None for points reported without one."""

    name: str
    points: List[Tuple[int, Optional[str], float]]

    @property
    def steps(self) -> List[int]:
        return [p[0] for p in self.points]

    @property
    def values(self) -> List[float]:
        return [p[2] for p in self.points]


@dataclass(frozen=True)
class Artifact:
    """A file a task of the run wrote under its outputs directory."""

    path: str
    size: int
    task: str


# --------------------------------------------------------------------------
# finding the server and the token (as cli/cli.c's cli_resolve)


def _read_secret(path: str) -> str:
    """The one token in a file (surrounding white space dropped), as the CLI reads it."""
    try:
        with open(path, "rb") as f:
            data = f.read(_TOKEN_FILE_MAX + 1)
    except OSError as exc:
        raise _arg_error("token_file", "cannot read '%s': %s" % (path, exc.strerror or exc)) \
            from None
    if len(data) > _TOKEN_FILE_MAX:
        raise _arg_error("token_file", "'%s' is too long for a token" % path)
    text = data.strip(b" \t\r\n")
    if not text:
        raise _arg_error("token_file", "'%s' holds no token" % path)
    if any(b < 0x21 or b == 0x7F for b in text):
        raise _arg_error("token_file", "'%s' must hold one token on one line" % path)
    return text.decode("utf-8", "replace")


def _data_file(data_dir: str, name: str) -> Optional[str]:
    try:
        return _read_secret(os.path.join(data_dir, name))
    except TrainyardError:
        return None


def _host_is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json_default(value: Any) -> Any:
    # NumPy scalars and other number types in script_params, tags ...
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError("%s is not a JSON value" % type(value).__name__)


def _dumps(obj: Any) -> bytes:
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise _arg_error("spec", "the request cannot be sent as JSON: %s" % exc) from None


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


# --------------------------------------------------------------------------
# the client


class Client:
    """A connection to a trainyard server.

    Args:
        server: the server's URL (``http://host:port`` or ``https://...``).
        token: the API token (``Authorization: Bearer``).
        token_file: a file holding the token, instead of ``token``.
        data_dir: a server data directory to read ``server.url`` and, for a
            server on this machine, ``admin.token`` from (default ``./var``,
            as ``trainyard --data``).
        ca: a file of CA certificates to check an ``https://`` server with.
        timeout: seconds an ordinary call may take (uploads, downloads and
            log streams have their own, longer limits).

    Arguments left None are found as the CLI finds them (see the module).
    """

    def __init__(self, server: Optional[str] = None, token: Optional[str] = None, *,
                 token_file: Optional[PathLike] = None, data_dir: Optional[PathLike] = None,
                 ca: Optional[PathLike] = None, timeout: float = _TIMEOUT_S) -> None:
        data = os.fspath(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
        env_server = os.environ.get("TRAINYARD_SERVER")
        url = server or env_server or _data_file(data, "server.url") or DEFAULT_SERVER
        if not url.lower().startswith(("http://", "https://")):
            raise _arg_error("server", "server URL '%s' must start with http:// or https://"
                             % url)
        url = url.rstrip("/")
        if not urllib.parse.urlsplit(url).netloc:
            raise _arg_error("server", "server URL '%s' has no host" % url)
        self.server: str = url
        self.loopback = _host_is_loopback(url)

        env_token = os.environ.get("TRAINYARD_TOKEN")
        env_file = os.environ.get("TRAINYARD_TOKEN_FILE")
        if token is not None and token_file is not None:
            raise _arg_error("token", "give token or token_file, not both")
        if token is not None:
            secret: Optional[str] = token
        elif token_file is not None:
            secret = _read_secret(os.fspath(token_file))
        elif not env_token and env_file:
            secret = _read_secret(env_file)
        elif env_token:
            secret = env_token
        elif self.loopback:
            secret = _data_file(data, "admin.token")
        else:
            secret = None
        if secret is not None and ("\r" in secret or "\n" in secret):
            raise _arg_error("token", "the token must be one line")
        self._token = secret
        self.timeout = timeout
        handlers: List[urllib.request.BaseHandler] = []
        if url.lower().startswith("https://"):
            context = ssl.create_default_context(cafile=os.fspath(ca) if ca else None)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        if self.loopback:
            # A proxy cannot reach this machine's loopback server.
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return "Client(server=%r)" % self.server

    # ---- HTTP

    def _open(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
              body: Union[bytes, IO[bytes], None] = None, content_type: Optional[str] = None,
              headers: Optional[Mapping[str, str]] = None,
              timeout: Optional[float] = None) -> Any:
        """Sends a request; returns the open response of a 2xx answer, else
        raises TrainyardError with the API's error."""
        url = self.server + path
        if query:
            pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v))
                     for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        req = urllib.request.Request(url, data=body, method=method)
        req.add_header("Accept", "application/json, text/plain, */*")
        if self._token:
            req.add_header("Authorization", "Bearer " + self._token)
        if content_type:
            req.add_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            return self._opener.open(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read()
            finally:
                exc.close()
            raise self._http_error(exc.code, raw, method, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrainyardError(0, "unavailable", "cannot reach %s: %s" % (url, reason)) \
                from None

    @staticmethod
    def _http_error(status: int, raw: bytes, method: str, path: str) -> TrainyardError:
        err: Any = None
        try:
            err = json.loads(raw.decode("utf-8")).get("error")
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
        code = _HTTP_CODES.get(status, "internal" if status >= 500 else "invalid_argument")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            field = err.get("field")
            return TrainyardError(status, str(err.get("code") or code), err["message"],
                                  field if isinstance(field, str) and field else None)
        return TrainyardError(status, code, "%s %s answered HTTP %d" % (method, path, status))

    def _call(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
              obj: Any = None, timeout: Optional[float] = None) -> Any:
        """A JSON call: obj (when not None) is the body; returns the parsed answer."""
        body = None if obj is None else _dumps(obj)
        ctype = None if obj is None else "application/json"
        if body is not None and len(body) > GZIP_MIN:
            # Large specs go compressed; a server that refuses the coding
            # (415, or 400 naming no field: an older one reads gzip as bad
            # JSON) gets the body again as is, as the CLI does.
            try:
                with self._open(method, path, query, gzip.compress(body, mtime=0), ctype,
                                {"Content-Encoding": "gzip"}, timeout) as resp:
                    return self._json(resp, method, path)
            except TrainyardError as exc:
                if not (exc.status == 415 or (exc.status == 400 and exc.field is None)):
                    raise
        with self._open(method, path, query, body, ctype, None, timeout) as resp:
            return self._json(resp, method, path)

    @staticmethod
    def _json(resp: Any, method: str, path: str) -> Any:
        raw = resp.read()
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise TrainyardError(resp.status, "internal", "the answer to %s %s is not JSON"
                                 % (method, path)) from None

    def _pages(self, path: str, query: Mapping[str, Any],
               page_size: int = _PAGE_SIZE) -> Iterator[Json]:
        """The items of a list endpoint, page after page (next_cursor)."""
        q = dict(query)
        q["limit"] = page_size
        while True:
            page = self._call("GET", path, q)
            for item in page.get("items") or []:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return
            q["cursor"] = cursor

    # ---- snapshots and specs

    def upload(self, source_dir: PathLike, entry_script: Optional[str] = None) -> str:
        """Packs source_dir (as ``trainyard submit`` does) and uploads it;
        returns the snapshot id. With entry_script, that file must be packed."""
        try:
            packed = _snapshot.pack(os.fspath(source_dir), entry_script)
        except _snapshot.PackError as exc:
            field = "entry_script" if entry_script and "is not in" in str(exc) else "source_dir"
            raise _arg_error(field, str(exc)) from None
        with packed.file:
            with self._open("POST", "/api/v1/snapshots", body=packed.file,
                            content_type="application/gzip",
                            headers={"Content-Length": str(packed.size)},
                            timeout=_UPLOAD_TIMEOUT_S) as resp:
                answer = self._json(resp, "POST", "/api/v1/snapshots")
        sid = answer.get("id") if isinstance(answer, dict) else None
        if sid != packed.id:
            raise TrainyardError(0, "internal", "the server stored the snapshot as %r, but its "
                                 "bytes hash to %s" % (sid, packed.id))
        return packed.id

    def run_spec(self, source_dir: Optional[PathLike] = None, *,
                 entry_script: Optional[str] = None,
                 script_params: Optional[Mapping[str, Any]] = None,
                 arguments: Optional[Sequence[str]] = None,
                 command: Optional[Sequence[str]] = None,
                 experiment: Optional[str] = None,
                 compute_target: Optional[str] = None,
                 node_count: Optional[int] = None,
                 process_count_per_node: Optional[int] = None,
                 distributed_backend: Optional[str] = None,
                 worker_count: Optional[int] = None,
                 parameter_server_count: Optional[int] = None,
                 chief: Optional[bool] = None,
                 evaluator: Optional[bool] = None,
                 use_gpu: Optional[bool] = None,
                 gpus_per_process: Optional[int] = None,
                 cpus_per_process: Optional[float] = None,
                 memory_mb_per_process: Optional[int] = None,
                 pip_packages: Optional[Sequence[str]] = None,
                 conda_packages: Optional[Sequence[str]] = None,
                 environment_variables: Optional[Mapping[str, str]] = None,
                 tags: Optional[Mapping[str, str]] = None,
                 node_selector: Optional[Mapping[str, str]] = None,
                 max_run_duration_seconds: Optional[int] = None,
                 max_retries: Optional[int] = None,
                 priority: Optional[int] = None,
                 image: Optional[str] = None) -> Json:
        """Builds a run spec (SPEC §3.2) as :meth:`submit` sends it, uploading
        source_dir's snapshot; arguments left None are left to the server's
        defaults. Useful to inspect a spec, or as the template of a sweep."""
        if command is not None:
            if entry_script is not None:
                raise _arg_error("command", "give entry_script or command, not both")
            if script_params:
                raise _arg_error("script_params", "script_params go with entry_script; put a "
                                 "command's arguments in command")
            if isinstance(command, str) or not command:
                raise _arg_error("command", "command must be a non-empty list of strings "
                                 "(argv, run without a shell)")
        else:
            if source_dir is None:
                raise _arg_error("source_dir", "a source directory is required (or give "
                                 "command)")
            if not entry_script:
                raise _arg_error("entry_script", "entry_script is required (or give command)")
            while entry_script.startswith("./"):
                entry_script = entry_script[2:]
        for name, value in (("arguments", arguments), ("pip_packages", pip_packages),
                            ("conda_packages", conda_packages)):
            if isinstance(value, str):
                raise _arg_error(name, "%s must be a list of strings, not a string" % name)
        if source_dir is not None and not os.path.isdir(os.fspath(source_dir)):
            raise _arg_error("source_dir", "'%s' is not a directory" % os.fspath(source_dir))
        if experiment is None:
            experiment = _experiment_from_dir(source_dir)
        spec: Json = {"experiment": experiment}
        if source_dir is not None:
            spec["source"] = self.upload(source_dir, entry_script if command is None else None)
        if command is not None:
            spec["command"] = list(command)
        else:
            spec["entry_script"] = entry_script
            spec["script_params"] = dict(script_params or {})
        fields: Sequence[Tuple[str, Any]] = (
            ("arguments", None if arguments is None else list(arguments)),
            ("compute_target", compute_target),
            ("node_count", node_count),
            ("process_count_per_node", process_count_per_node),
            ("distributed_backend", distributed_backend),
            ("worker_count", worker_count),
            ("parameter_server_count", parameter_server_count),
            ("chief", chief),
            ("evaluator", evaluator),
            ("use_gpu", use_gpu),
            ("gpus_per_process", gpus_per_process),
            ("cpus_per_process", cpus_per_process),
            ("memory_mb_per_process", memory_mb_per_process),
            ("pip_packages", None if pip_packages is None else list(pip_packages)),
            ("conda_packages", None if conda_packages is None else list(conda_packages)),
            ("environment_variables",
             None if environment_variables is None else dict(environment_variables)),
            ("tags", None if tags is None else dict(tags)),
            ("node_selector", None if node_selector is None else dict(node_selector)),
            ("max_run_duration_seconds", max_run_duration_seconds),
            ("max_retries", max_retries),
            ("priority", priority),
            ("image", image),
        )
        for key, value in fields:
            if value is not None:
                spec[key] = value
        return spec

    # ---- runs

    def submit(self, source_dir: Optional[PathLike] = None, **kwargs: Any) -> "Run":
        """Packs and uploads source_dir, submits a run of it and returns the :class:`Run`.

        Takes the arguments of :meth:`run_spec`, each the run spec field of
        the same name (SPEC §3.2): ``entry_script``, ``script_params`` (in
        order; ``True``/``None`` give the bare flag, ``False`` leaves it
        out), ``arguments``, ``command`` (argv instead of a script;
        source_dir then optional), ``experiment`` (default: source_dir's
        base name), ``compute_target``, ``node_count``,
        ``process_count_per_node``, ``distributed_backend`` (``"mpi"``,
        ``"ps"``, ``"pytorch"`` or None), ``worker_count``,
        ``parameter_server_count``, ``chief``, ``evaluator``, ``use_gpu``,
        ``gpus_per_process``, ``cpus_per_process``,
        ``memory_mb_per_process``, ``pip_packages``, ``conda_packages``,
        ``environment_variables``, ``tags``, ``node_selector``,
        ``max_run_duration_seconds``, ``max_retries``, ``priority``,
        ``image`` (a Docker image the tasks run in).

        The directory is packed without ``.git/``, ``__pycache__/`` and what
        its ``.trainyardignore`` excludes. Raises TrainyardError when the
        server refuses the spec (``code``/``field`` say what is wrong).
        """
        return self.submit_spec(self.run_spec(source_dir, **kwargs))

    def submit_spec(self, spec: Mapping[str, Any]) -> "Run":
        """Submits a run spec as is (``POST /api/v1/runs``), e.g. a returned ``run.spec``."""
        return Run(self, self._call("POST", "/api/v1/runs", obj=dict(spec)))

    def run(self, run_id: str) -> "Run":
        """The run with this id (read now)."""
        return Run(self, self._call("GET", "/api/v1/runs/" + _quote(run_id)))

    def runs(self, experiment: Optional[str] = None, status: Optional[str] = None,
             tag: Union[str, Tuple[str, str], None] = None, owner: Optional[str] = None,
             sweep: Union[str, "Sweep", None] = None,
             page_size: int = _PAGE_SIZE) -> Iterator["Run"]:
        """Runs, newest first, fetched page by page as the iterator goes.

        tag: ``"key:value"`` or a ``(key, value)`` pair. sweep: only the
        trials of this sweep (its id or the :class:`Sweep`). page_size: runs
        per request (1 to 1000).
        """
        if isinstance(tag, tuple):
            tag = "%s:%s" % tag
        sweep_id = sweep if sweep is None or isinstance(sweep, str) else sweep.id
        query = {"experiment": experiment, "status": status, "tag": tag, "owner": owner,
                 "sweep": sweep_id}
        for item in self._pages("/api/v1/runs", query, page_size):
            yield Run(self, item)

    def nodes(self) -> List[Json]:
        """Every node (compute host) with its state, capacity and allocation."""
        return list(self._pages("/api/v1/nodes", {}))

    def experiments(self) -> List[Json]:
        """Every experiment: ``name``, run counts and last activity."""
        return list(self._pages("/api/v1/experiments", {}))

    # ---- sweeps (trainyard.sweeps)

    def sweep(self, source_dir: Optional[PathLike] = None, *,
              parameters: Mapping[str, Mapping[str, Any]],
              primary_metric: str,
              goal: Literal["maximize", "minimize"],
              sampling: Literal["random", "grid", "bayesian"] = "random",
              max_total_runs: Optional[int] = None,
              max_concurrent_runs: Optional[int] = None,
              max_duration_seconds: Optional[int] = None,
              early_termination: Optional[Mapping[str, Any]] = None,
              seed: Optional[int] = None,
              **run_fields: Any) -> "Sweep":
        """Packs and uploads source_dir and starts a sweep of it; returns the
        :class:`~trainyard.sweeps.Sweep`.

        parameters: name -> expression, a name being a ``script_params`` key
        (``"--lr"``) or ``"env:NAME"`` for an environment variable, an
        expression ``trainyard.choice(16, 32)``, ``trainyard.loguniform(-9,
        -2)`` ... (or the API's dict, ``{"choice": [16, 32]}``).
        primary_metric, goal: the metric the trials report (``##metric``)
        and whether to ``"maximize"`` or ``"minimize"`` it; a trial's value
        is its last report. sampling: ``"random"``, ``"grid"`` (``choice``
        only: every point of the product once) or ``"bayesian"`` (TPE).
        max_total_runs: trials in all (1..10,000; required but for grid).
        max_concurrent_runs: trials at a time (default all).
        max_duration_seconds: then running trials are canceled and the sweep
        completes. early_termination: ``trainyard.bandit(...)``,
        ``median_stopping(...)``, ``truncation_selection(...)``,
        ``asha(...)`` or None. seed: the same seed and space give the same
        trials (random and grid).

        run_fields: the template run, as :meth:`submit` takes it
        (``entry_script``, ``script_params`` without the swept names,
        ``command``, ``experiment``, ``node_count``, ``distributed_backend``,
        ``use_gpu`` ...). Raises TrainyardError when the server refuses the
        sweep, ``field`` naming what is wrong (``parameters.--lr``,
        ``run.node_count``, ``early_termination.slack_factor`` ...).
        """
        if not isinstance(parameters, Mapping):
            raise _arg_error("parameters", "parameters must be a dict of name -> expression")
        if not isinstance(primary_metric, str):
            raise _arg_error("primary_metric", "primary_metric must be the metric's name")
        body: Json = {
            "run": self.run_spec(source_dir, **run_fields),
            "parameters": {k: dict(v) if isinstance(v, Mapping) else v
                           for k, v in parameters.items()},
            "sampling": sampling,
            "primary_metric": {"name": primary_metric, "goal": goal},
            "early_termination": None if early_termination is None else dict(early_termination),
        }
        for key, value in (("max_total_runs", max_total_runs),
                           ("max_concurrent_runs", max_concurrent_runs),
                           ("max_duration_seconds", max_duration_seconds), ("seed", seed)):
            if value is not None:
                body[key] = value
        return self.sweep_spec(body)

    def sweep_spec(self, body: Mapping[str, Any]) -> "Sweep":
        """Starts a sweep from the API's body as is (``POST /api/v1/sweeps``:
        ``run``, ``parameters``, ``sampling``, ``primary_metric`` ...), e.g.
        a returned ``sweep.spec``."""
        from .sweeps import Sweep
        return Sweep(self, self._call("POST", "/api/v1/sweeps", obj=dict(body)))

    def get_sweep(self, sweep_id: str) -> "Sweep":
        """The sweep with this id (read now). (``client.sweep(...)`` starts one.)"""
        from .sweeps import Sweep
        return Sweep(self, self._call("GET", "/api/v1/sweeps/" + _quote(sweep_id)))

    def sweeps(self, status: Optional[str] = None,
               page_size: int = _PAGE_SIZE) -> Iterator["Sweep"]:
        """Sweeps, newest first, fetched page by page as the iterator goes;
        status: only those ``running``, ``completed``, ``canceled`` or
        ``failed``."""
        from .sweeps import Sweep
        for item in self._pages("/api/v1/sweeps", {"status": status}, page_size):
            yield Sweep(self, item)


def _experiment_from_dir(source_dir: Optional[PathLike]) -> str:
    """As the CLI: the directory's base name in the experiment alphabet, else 'default'."""
    if source_dir is None:
        return "default"
    base = os.path.basename(os.path.realpath(os.fspath(source_dir)))[:128]
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in base)
    return name or "default"


# --------------------------------------------------------------------------
# runs


_R = TypeVar("_R", bound="_Resource")


class _Resource:
    """What a run and a sweep share: ``data`` is the resource as last read;
    ``status`` reads it afresh, the other properties use the last read
    (:meth:`refresh` reads again)."""

    _kind = "resource"
    _collection = "/api/v1/"
    client: Client
    data: Json

    def __init__(self, client: Client, data: Json) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise TrainyardError(0, "internal", "the server's answer is not a " + self._kind)
        self.client = client
        self.data = data

    def __repr__(self) -> str:
        return "%s(id=%r, experiment=%r, status=%r)" % (
            type(self).__name__, self.id, self.data.get("experiment"), self.data.get("status"))

    def _path(self, suffix: str = "") -> str:
        return self._collection + _quote(self.id) + suffix

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        """The status, read from the server now."""
        return str(self.refresh().data["status"])

    @property
    def experiment(self) -> str:
        return str(self.data.get("experiment"))

    @property
    def spec(self) -> Json:
        """The spec as the server accepted it, defaults filled."""
        return dict(self.data.get("spec") or {})

    @property
    def error(self) -> Optional[str]:
        """Why it failed (as last read)."""
        return self.data.get("error")

    def refresh(self: _R) -> _R:
        """Reads the resource again; returns self."""
        self.data = self.client._call("GET", self._path())
        return self


class Run(_Resource):
    """A submitted run. ``data`` is the run resource as last read (SPEC §3.2);
    ``status`` reads it afresh, the other properties use the last read
    (:meth:`refresh` reads again)."""

    _kind = "run"
    _collection = "/api/v1/runs/"

    @property
    def tags(self) -> Dict[str, str]:
        return dict(self.data.get("tags") or {})

    @property
    def tasks(self) -> List[Json]:
        return list(self.data.get("tasks") or [])

    @property
    def sweep_id(self) -> Optional[str]:
        """The sweep this run is a trial of (None for other runs)."""
        return self.data.get("sweep_id")

    @property
    def trial(self) -> Optional[int]:
        """The trial's number in its sweep, from 0 (None for other runs)."""
        return self.data.get("trial")

    @property
    def parameters(self) -> Optional[Dict[str, Any]]:
        """A trial's swept parameters, name -> value (None for other runs)."""
        params = self.data.get("parameters")
        return dict(params) if isinstance(params, dict) else None

    def cancel(self) -> "Run":
        """Stops every task; the run ends ``canceled`` (idempotent). Returns self."""
        answer = self.client._call("POST", self._path("/cancel"))
        if isinstance(answer, dict) and answer.get("id") == self.id:
            self.data = answer
        return self

    def rerun(self, source_dir: Optional[PathLike] = None, **overrides: Any) -> "Run":
        """Submits this run again as a new run (``POST /runs/{id}/rerun``).

        overrides: run spec fields to change, by their JSON names (e.g.
        ``priority=5``, ``node_count=2``); each replaces the original's
        field, except ``script_params``, which are merged into the
        original's (as ``trainyard rerun --param``). source_dir: pack and
        upload this directory as the new run's source. The new run is tagged
        ``trainyard/rerun_of=<this id>``.
        """
        body: Json = dict(overrides)
        if "script_params" in body and body["script_params"] is not None:
            merged = dict(self.refresh().spec.get("script_params") or {})
            merged.update(body["script_params"])
            body["script_params"] = merged
        if source_dir is not None:
            body["source"] = self.client.upload(source_dir,
                                                body.get("entry_script",
                                                         self.spec.get("entry_script")))
        return Run(self.client, self.client._call("POST", self._path("/rerun"),
                                                  obj=body if body else None))

    # ---- logs and waiting

    def logs(self, task: Optional[str] = None) -> str:
        """The log so far (every task, lines prefixed with the task name in
        a multi-task run; or only the task named or numbered ``task``)."""
        with self.client._open("GET", self._path("/logs"), {"task": task},
                               timeout=_UPLOAD_TIMEOUT_S) as resp:
            text: str = resp.read().decode("utf-8", "replace")
        return text

    def stream_logs(self, out: Optional[TextIO] = None, task: Optional[str] = None,
                    timeout: Optional[float] = None) -> None:
        """Writes the log to out (default sys.stdout) as it arrives, until the run ends.

        Raises TrainyardError with code ``timeout`` after timeout seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        offset = 0
        while True:
            offset = self._follow_once(out, task, offset, deadline)
            if self.refresh().data.get("status") in FINAL_STATUSES:
                # Whatever came after the stream ended.
                offset = self._follow_once(out, task, offset, deadline, follow=False)
                return
            _check_deadline(deadline, self)
            time.sleep(_FOLLOW_RETRY_S)

    def _follow_once(self, out: Optional[TextIO], task: Optional[str], offset: int,
                     deadline: Optional[float], follow: bool = True) -> int:
        """One log stream from offset; returns the offset it reached."""
        idle = _FOLLOW_IDLE_S
        if deadline is not None:
            idle = max(0.1, min(idle, deadline - time.monotonic()))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        query = {"follow": 1 if follow else 0, "offset": offset, "task": task}
        try:
            with self.client._open("GET", self._path("/logs"), query, timeout=idle) as resp:
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    offset += len(chunk)
                    _write(out, decoder.decode(chunk))
        except (socket.timeout, TimeoutError, ConnectionError):
            pass  # a silent or dropped stream: the caller checks and takes it up again
        except TrainyardError as exc:
            if exc.status != 0:
                raise
        _write(out, decoder.decode(b"", final=True))
        return offset

    def wait(self, show_output: bool = True, timeout: Optional[float] = None,
             output: Optional[TextIO] = None, raise_on_error: bool = True) -> "Run":
        """Waits until the run ends, like Azure ML's ``wait_for_completion``.

        show_output: stream the run's log to output (default sys.stdout) as it
        arrives. timeout: seconds to wait at most, then TrainyardError with
        code ``timeout`` (the run goes on). Raises RunFailedError when the run
        ends ``failed`` or ``canceled`` (unless raise_on_error is False).
        Returns self, refreshed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if show_output:
            self.stream_logs(output, timeout=timeout)
        else:
            delay = 0.1
            while self.refresh().data.get("status") not in FINAL_STATUSES:
                _check_deadline(deadline, self)
                time.sleep(delay if deadline is None
                           else max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 2, 2.0)
        if raise_on_error and self.data.get("status") != "completed":
            raise RunFailedError(self)
        return self

    wait_for_completion = wait

    # ---- results

    def metrics(self) -> Dict[str, MetricSummary]:
        """Every metric the run reported: name -> latest value, min, max, count, last step."""
        answer = self.client._call("GET", self._path("/metrics"))
        out: Dict[str, MetricSummary] = {}
        for m in answer.get("items") or []:
            out[m["name"]] = MetricSummary(m["name"], m.get("last"), m.get("min"), m.get("max"),
                                           int(m.get("count") or 0), m.get("last_step"))
        return out

    def series(self, name: str, max_points: Optional[int] = None) -> MetricSeries:
        """One metric's points; with max_points, downsampled by the server to at
        most that many, keeping the shape."""
        answer = self.client._call("GET", self._path("/metrics/" + _quote(name)),
                                   {"max_points": max_points})
        points = [(int(p[0]), p[1], p[2]) for p in answer.get("points") or []]
        return MetricSeries(answer.get("name", name), points)

    def artifacts(self) -> List[Artifact]:
        """The files the run's tasks wrote under their outputs directory."""
        answer = self.client._call("GET", self._path("/artifacts"))
        return [Artifact(a["path"], int(a.get("size") or 0), a.get("task") or "")
                for a in answer.get("items") or []]

    def download(self, path: Optional[str] = None, to: PathLike = ".",
                 task: Optional[str] = None) -> List[str]:
        """Saves artifact ``path`` (or every artifact) under directory ``to`` at
        the same relative path, as ``trainyard download`` does; returns the
        files saved.

        When several tasks wrote the same path, files go under
        ``to/TASK/PATH`` (or pick one with ``task``). A path that would land
        outside ``to`` is refused before anything is saved, and no symbolic
        link on the way is followed; each file is written under a temporary
        name and renamed once complete.
        """
        if path is not None and not _stays_inside(path):
            raise _arg_error("path", "'%s' must be relative, without '.' or '..' parts" % path)
        chosen = [a for a in self.artifacts()
                  if (path is None or a.path == path) and (task is None or a.task == task)]
        if not chosen:
            raise TrainyardError(0, "not_found", "run '%s' has no artifact%s%s" % (
                self.id, " '%s'" % path if path else "", " of task " + task if task else ""))
        by_task = len({a.path for a in chosen}) < len(chosen)
        if by_task and path is not None:
            raise _arg_error("task", "several tasks wrote '%s'; pick one with task=" % path)
        dests = [a.task + "/" + a.path if by_task else a.path for a in chosen]
        for a, dest in zip(chosen, dests):
            if not _stays_inside(dest):
                raise TrainyardError(0, "invalid_argument", "refusing artifact '%s' of task "
                                     "'%s': its path would lead out of '%s'"
                                     % (a.path, a.task, os.fspath(to)))
        root = os.fspath(to)
        os.makedirs(root, exist_ok=True)
        saved: List[str] = []
        dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for a, dest in zip(chosen, dests):
                self._save(a, dirfd, dest)
                saved.append(os.path.join(root, dest))
        finally:
            os.close(dirfd)
        return saved

    def _save(self, artifact: Artifact, dirfd: int, dest: str) -> None:
        parts = dest.split("/")
        fd = os.dup(dirfd)
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                                  os.O_CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    raise TrainyardError(0, "invalid_argument", "refusing to write under '%s': "
                                         "%s (a symbolic link would lead out)"
                                         % (part, exc.strerror)) from None
                os.close(fd)
                fd = nxt
            base = parts[-1]
            tmp = ".%s.trainyard-part" % base
            url = self._path("/artifacts/" + "/".join(_quote(p) for p in artifact.path.split("/")))
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW |
                             os.O_CLOEXEC, 0o644, dir_fd=fd)
            try:
                with os.fdopen(out_fd, "wb") as out, \
                        self.client._open("GET", url, {"task": artifact.task},
                                          timeout=_UPLOAD_TIMEOUT_S) as resp:
                    while True:
                        chunk = resp.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                os.rename(tmp, base, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=fd)
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)


def _stays_inside(path: str) -> bool:
    """True for a relative path of clean parts: no '', '.', '..' or leading '/'."""
    return bool(path) and all(p not in ("", ".", "..") for p in path.split("/"))


def _check_deadline(deadline: Optional[float], run: Run) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TrainyardError(0, "timeout", "run %s is still %s" % (run.id,
                                                                    run.data.get("status")))


def _write(out: Optional[TextIO], text: str) -> None:
    if not text:
        return
    stream = out if out is not None else sys.stdout
    if stream is None:
        return
    stream.write(text)
    stream.flush()

