"""Shared harness for the trainyard HTTP integration tests.

Real components only: every test talks over HTTP to a real `trainyard server`
started on port 0 with a fresh data directory.  Python stdlib + pytest only.

Binary: $TRAINYARD_BIN, default <repo>/bin/trainyard.
"""

import atexit
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
import uuid
from collections import namedtuple

import pytest

import dockerd
import openapi_check

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("TRAINYARD_BIN") or os.path.join(REPO, "bin", "trainyard")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 10.0

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")
RUN_ID = re.compile(r"^run-[0-9a-f]{12}$")
TOKEN_ID = re.compile(r"^tok-[0-9a-f]{12}$")
TOKEN_SECRET = re.compile(r"^ty_[0-9a-f]{64}$")
BAD_LOG_WORDS = ("Sanitizer", "runtime error:")

Resp = namedtuple("Resp", "status headers body")
DEFAULT = object()  # "use the server's admin token" / "pick the usual content type"


def uniq(prefix="t"):
    """A name no other test uses (fits [A-Za-z0-9._-])."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def is_rfc3339_utc(value):
    return isinstance(value, str) and RFC3339_UTC.match(value) is not None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

def _decode(headers, data):
    ctype = headers.get("content-type", "")
    if "json" in ctype:
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return data
    return data


# Every response a trainyard server gives these helpers is checked against
# api/openapi.json (openapi_check.py): a mismatch fails the test that got it.
# TRAINYARD_OPENAPI_REPORT=FILE records mismatches there instead (one JSON
# line each) and lets the tests go on: to survey a change of the document.
_SERVER_URLS = set()
OPENAPI_REPORT = os.environ.get("TRAINYARD_OPENAPI_REPORT")


def check_openapi(base_url, method, path, status, hdrs, data):
    """Asserts that a trainyard server's response matches api/openapi.json;
    responses from elsewhere (agents) pass unchecked."""
    if base_url not in _SERVER_URLS:
        return
    problems = openapi_check.check_response(method, path, status, hdrs, data, record=True)
    if not problems:
        return
    if OPENAPI_REPORT:
        with open(OPENAPI_REPORT, "a") as f:
            f.write(json.dumps({"request": "%s %s" % (method, path), "status": status,
                                "problems": problems, "test":
                                os.environ.get("PYTEST_CURRENT_TEST", "")}) + "\n")
        return
    raise AssertionError("the response to %s %s (%d, %s) does not match api/openapi.json:\n  %s"
                         "\nbody: %r" % (method, path, status, hdrs.get("content-type"),
                                         "\n  ".join(problems[:20]), data[:1000]))


def pytest_terminal_summary(terminalreporter):
    """Says which documented operations no test's response came from."""
    missing, pairs = openapi_check.unexercised()
    if not pairs:
        return
    terminalreporter.write_line("openapi: %d (operation, response) pairs checked against "
                                "api/openapi.json; operations not exercised: %s" % (
                                    pairs, ", ".join("%s %s" % m for m in missing) or "none"))


def http_request(base_url, method, path, body=None, headers=None):
    u = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT_S)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413/415); read that answer below
        r = conn.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        check_openapi(base_url, method, path, r.status, hdrs, data)
        return Resp(r.status, hdrs, _decode(hdrs, data))
    finally:
        conn.close()


def raw_request(base_url, method, path, headers, body, timeout=HTTP_TIMEOUT_S, chunked=False):
    """Send a (large) body over a raw socket, stopping as soon as the server
    starts answering, so an early 413 is read instead of hitting EPIPE/RST.
    chunked=True sends it with Transfer-Encoding: chunked (no Content-Length)."""
    u = urllib.parse.urlsplit(base_url)
    if chunked:
        parts = [b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                 for i in range(0, len(body), 65536)]
        body = b"".join(parts) + b"0\r\n\r\n"
        length_header = "Transfer-Encoding: chunked"
    else:
        length_header = "Content-Length: %d" % len(body)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\nConnection: close\r\n" % (
            method, path, u.hostname, u.port, length_header)
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        sock.sendall((head + "\r\n").encode("latin-1"))
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + timeout
        while sent < len(body) and time.monotonic() < deadline:
            r, w, _ = select.select([sock], [sock], [], 0.5)
            if r:
                break
            if w:
                try:
                    sent += sock.send(body[sent:sent + 65536])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        sock.settimeout(timeout)
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf:
                hdr, rest = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", hdr)
                if m and len(rest) >= int(m.group(1)):
                    break
    finally:
        sock.close()
    assert buf, "no HTTP response to %s %s (%d bytes sent)" % (method, path, sent)
    hdr, _, rest = buf.partition(b"\r\n\r\n")
    lines = hdr.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        rest = rest[:int(hdrs["content-length"])]
    elif "chunked" in hdrs.get("transfer-encoding", ""):
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        rest = out
    check_openapi(base_url, method, path, status, hdrs, rest)
    return Resp(status, hdrs, _decode(hdrs, rest))


# --------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------

class Process:
    """What a started trainyard process (server, agent, hollow agent) shares:
    stop() is SIGTERM and a clean exit (0, sanitizer-clean log), kill() is
    SIGKILL, cleanup() never leaves it behind. Subclasses set proc,
    log_paths and label()."""

    proc = None
    log_paths = ()

    def label(self):
        return "process"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM; assert a clean exit (0) and a sanitizer-clean log."""
        if self.proc is None:
            return
        timeout = STOP_TIMEOUT_S if timeout is None else timeout
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.proc = None
                raise AssertionError("%s did not exit within %.0f s of SIGTERM:\n%s"
                                     % (self.label(), timeout, self.log_tail()))
        self.proc = None
        assert proc.returncode == 0, "%s exit code %r after SIGTERM:\n%s" % (
            self.label(), proc.returncode, self.log_tail())
        self.check_log()

    def kill(self):
        """SIGKILL (simulated crash); the log so far must still be clean."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.check_log()

    def cleanup(self):
        """Fixture teardown: never leave a process behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_text(self):
        text = ""
        for p in self.log_paths:
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                pass
        return text

    def log_tail(self, n=4000):
        return self.log_text()[-n:]

    def check_log(self):
        text = self.log_text()
        for word in BAD_LOG_WORDS:
            assert word not in text, "%s log contains %r:\n%s" % (self.label(), word,
                                                                   text[-6000:])


class Spawned(Process):
    """A trainyard command started as is (argv after the binary), stderr to
    log_path: for processes the tests drive themselves."""

    def __init__(self, args, log_path, name="trainyard"):
        self.name = name
        self.log_paths = [str(log_path)]
        with open(log_path, "wb") as err:
            self.proc = subprocess.Popen([BIN] + list(args), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def label(self):
        return self.name


class Server(Process):
    """One `trainyard server` process on 127.0.0.1:0 with its own data dir."""

    def __init__(self, data_dir, extra_args=(), cwd=None, pass_data=True):
        self.data_dir = str(data_dir)
        self.extra_args = list(extra_args)
        self.cwd = cwd
        self.pass_data = pass_data
        self.proc = None
        self.url = None
        self.admin_token = None
        self.starts = 0
        self.log_paths = []

    # -- lifecycle ---------------------------------------------------------
    def start(self, extra_args=None):
        if extra_args is not None:
            self.extra_args = list(extra_args)
        assert os.path.exists(BIN), (
            "trainyard binary not found at %s (set TRAINYARD_BIN or run make)" % BIN)
        if self.pass_data:
            os.makedirs(self.data_dir, exist_ok=True)
        url_file = os.path.join(self.data_dir, "server.url")
        if os.path.exists(url_file):
            os.unlink(url_file)
        self.starts += 1
        log_dir = self.data_dir if os.path.isdir(self.data_dir) else (self.cwd or ".")
        self.log_path = os.path.join(log_dir, "stderr.%d.log" % self.starts)
        self.out_path = os.path.join(log_dir, "stdout.%d.log" % self.starts)
        self.log_paths += [self.log_path, self.out_path]
        argv = [BIN, "server", "--listen", "127.0.0.1:0"]
        if self.pass_data:
            argv += ["--data", self.data_dir]
        argv += self.extra_args
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, cwd=self.cwd)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("server exited with %d during start-up:\n%s"
                                     % (rc, self.log_tail()))
            try:
                with open(url_file) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            if text.endswith("\n") and text.strip().startswith("http"):
                self.url = text.strip()
                _SERVER_URLS.add(self.url)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("server.url did not appear within %.0f s:\n%s"
                                     % (START_TIMEOUT_S, self.log_tail()))
            time.sleep(0.02)
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            self.admin_token = f.read().strip()
        return self

    def label(self):
        return "server"

    def check_scheduler_state(self):
        """The scheduler's state in memory equals a fresh read of the database
        (GET /api/v1/scheduler?check=true). Every server a test stops is checked.
        A server that cannot be asked (its admin token gone, TLS, stopped) is not."""
        try:
            r = self.get("/api/v1/scheduler?check=true")
        except Exception:  # noqa: BLE001 - a server that cannot be asked
            return None
        if r.status != 200 or not isinstance(r.body, dict):
            return None
        assert r.body["checked"] and r.body["n_differences"] == 0, (
            "the scheduler's state in memory differs from the database: %r" % (r.body,))
        return r.body

    def stop(self, timeout=None):
        if self.alive() and self.url and self.admin_token:
            self.check_scheduler_state()
        _SERVER_URLS.discard(self.url)
        Process.stop(self, timeout)

    def kill(self):
        _SERVER_URLS.discard(self.url)
        Process.kill(self)

    # -- HTTP --------------------------------------------------------------
    def req(self, method, path, json_body=DEFAULT, body=None, token=DEFAULT,
            content_type=DEFAULT, headers=None, raw=False, chunked=False):
        """Returns Resp(status, headers, json-or-bytes).
        token: DEFAULT = admin, None = no Authorization header, else the secret.
        content_type: DEFAULT = application/json when a body is sent, None = omit."""
        h = dict(headers or {})
        if token is DEFAULT:
            token = self.admin_token
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if json_body is not DEFAULT:
            body = json.dumps(json_body).encode("utf-8")
        if content_type is DEFAULT:
            content_type = "application/json" if body is not None else None
        if content_type is not None:
            h["Content-Type"] = content_type
        if raw:
            return raw_request(self.url, method, path, h, body or b"", chunked=chunked)
        return http_request(self.url, method, path, body=body, headers=h)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, obj=DEFAULT, **kw):
        return self.req("POST", path, json_body=obj, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    # -- resources ---------------------------------------------------------
    def create_token(self, role, name=None, node=None, token=DEFAULT):
        body = {"name": name or uniq("tok"), "role": role}
        if node is not None:
            body["node"] = node
        r = self.post("/api/v1/tokens", body, token=token)
        assert r.status == 201, r
        assert r.body["role"] == role
        return r.body

    def create_run(self, spec, token=DEFAULT):
        r = self.post("/api/v1/runs", spec, token=token)
        assert r.status == 201, r
        return r.body

    def register_node(self, name, pool, token=DEFAULT, **fields):
        body = dict(node_body(name, pool), **fields)
        r = self.post("/api/v1/nodes", body, token=token)
        assert r.status in (200, 201), r
        return r.body

    def upload_snapshot(self, data, token=DEFAULT):
        r = self.req("POST", "/api/v1/snapshots", body=data, content_type="application/gzip",
                     token=token)
        assert r.status in (200, 201), r
        return r.body

    def list_all(self, path, token=DEFAULT, page=1000):
        """Follows next_cursor; asserts every item is seen once (by id/name)."""
        sep = "&" if "?" in path else "?"
        items, cursor = [], None
        for _ in range(1000):
            p = path + sep + "limit=%d" % page
            if cursor is not None:
                p += "&cursor=" + urllib.parse.quote(cursor, safe="")
            r = self.get(p, token=token)
            assert r.status == 200, r
            assert isinstance(r.body, dict) and isinstance(r.body.get("items"), list), r
            assert "next_cursor" in r.body, r
            items += r.body["items"]
            cursor = r.body["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("pagination of %s did not end" % path)

    def assert_paginates(self, path, key):
        """GET path with a small limit: every page honours it, the cursor walk
        sees every item exactly once, and the last page says next_cursor null."""
        every = [x[key] for x in self.list_all(path)]
        assert len(every) >= 3, "need at least 3 items to page through %s" % path
        limit = max(1, len(every) // 3)
        seen, cursor = [], None
        for _ in range(len(every) + 2):
            q = path + ("&" if "?" in path else "?") + "limit=%d" % limit
            if cursor is not None:
                q += "&cursor=" + urllib.parse.quote(cursor, safe="")
            r = self.get(q)
            assert r.status == 200, r
            assert len(r.body["items"]) <= limit, (
                "%s: %d items on a page with limit=%d" % (path, len(r.body["items"]), limit))
            seen += [x[key] for x in r.body["items"]]
            cursor = r.body["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(every) and len(set(seen)) == len(seen), path

    def experiment_names(self):
        return [e["name"] for e in self.list_all("/api/v1/experiments")]

    def runs_of(self, experiment):
        r = self.get("/api/v1/runs?experiment=" + urllib.parse.quote(experiment, safe=""))
        assert r.status == 200, r
        return r.body["items"]


def node_body(name, pool, **over):
    body = {
        "name": name,
        "pool": pool,
        "agent_url": "http://127.0.0.1:1",
        "cpus": 8,
        "memory_mb": 16384,
        "gpus": [{"index": 0, "name": "NVIDIA A100", "memory_mb": 40960,
                  "uuid": "GPU-" + uuid.uuid4().hex}],
        "labels": {"zone": "a"},
        "features": ["python3", "torch"],
    }
    body.update(over)
    return body


# --------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------

def _field_matches(actual, expected):
    if actual == expected:
        return True
    return isinstance(actual, str) and any(
        actual.startswith(expected + sep) for sep in (".", "[", "/"))


def assert_error(resp, status, code, field=DEFAULT):
    """field: a name (nested paths like 'gpus[0].index' also match 'gpus'),
    a tuple of acceptable names, or DEFAULT to not check it."""
    assert resp.status == status, "expected %d %s, got %r" % (status, code, resp)
    assert isinstance(resp.body, dict) and isinstance(resp.body.get("error"), dict), resp
    err = resp.body["error"]
    assert err.get("code") == code, resp
    assert isinstance(err.get("message"), str) and err["message"], resp
    if field is DEFAULT:
        return
    fields = field if isinstance(field, tuple) else (field,)
    assert any(_field_matches(err.get("field"), f) for f in fields), (
        "expected error.field in %r, got %r" % (fields, resp))


# --------------------------------------------------------------------------
# Snapshot archives
# --------------------------------------------------------------------------

def make_tgz(members):
    """members: (name, kind, payload) with kind file|dir|symlink|hardlink|chr|blk|fifo;
    payload = bytes for files, link target for links.  Deterministic bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = 0o644
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = payload
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = payload
            elif kind in ("chr", "blk"):
                ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = payload
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            else:
                raise ValueError(kind)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def project_tgz(extra=b""):
    """A small, benign source directory."""
    return make_tgz([
        ("train.py", "file", b"print('hello')\n" + extra),
        ("lib", "dir", None),
        ("lib/util.py", "file", b"X = 1\n"),
    ])


def sha256_id(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

_SESSION = {}


@pytest.fixture(scope="session")
def docker_daemon():
    """The Docker daemon of the container tests (dockerd.py), with debian:12."""
    d = dockerd.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The shared server.  Tests must not depend on each other: unique names."""
    srv = Server(tmp_path_factory.mktemp("shared-data"))
    srv.start()
    _SESSION["server"] = srv
    try:
        yield srv
    finally:
        _SESSION.pop("server", None)
        try:
            srv.stop()
        finally:
            srv.cleanup()


@pytest.fixture(autouse=True)
def _shared_server_still_alive():
    """Pin a crash of the shared server on the test that caused it."""
    yield
    srv = _SESSION.get("server")
    if srv is not None and srv.proc is not None and srv.proc.poll() is not None:
        pytest.fail("shared server died (exit %r):\n%s" % (srv.proc.returncode, srv.log_tail()))


@pytest.fixture
def server_factory(tmp_path):
    """Start private servers: server_factory(extra_args=[...], data_dir=None)."""
    servers = []

    def make(extra_args=(), data_dir=None, start=True, **kw):
        d = data_dir or tmp_path / ("data-%d" % len(servers))
        srv = Server(d, extra_args, **kw)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    errors = []
    for srv in servers:
        try:
            if srv.alive():
                srv.stop()
        except AssertionError as e:
            errors.append(e)
        finally:
            srv.cleanup()
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def user_token(server):
    return server.create_token("user")["secret"]


@pytest.fixture(scope="session")
def viewer_token(server):
    return server.create_token("viewer")["secret"]


@pytest.fixture(scope="session")
def snapshot(server):
    """(id, bytes) of a benign snapshot stored on the shared server."""
    data = project_tgz(uuid.uuid4().hex.encode())
    body = server.upload_snapshot(data)
    return body["id"], data


# --------------------------------------------------------------------------
# Node agents and waiting (end-to-end execution tests)
# --------------------------------------------------------------------------

AGENT_READY_TIMEOUT_S = 30.0
PYTHON = "/usr/bin/python3"


def wait_for(cond, timeout=30.0, what="condition", interval=0.1):
    """Polls cond() until it returns something truthy; returns that value.
    Raises AssertionError naming `what` (a string or a callable giving one)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (
                timeout, what() if callable(what) else what))
        time.sleep(interval)


def pid_alive(pid):
    """True while pid is a live process (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


_WORK_DIRS = []


def _remove_work_dirs():
    for d in _WORK_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_remove_work_dirs)


def agent_work_dir(name):
    """A fresh work directory for an agent, removed when the test session
    ends. Not under pytest's tmp_path: that is 0700 (/tmp/pytest-of-root),
    and a root agent's tasks run as users of their own, who must traverse
    every directory above the work directory to reach theirs."""
    d = tempfile.mkdtemp(prefix="ty-agent-%s-" % name, dir="/tmp")
    os.chmod(d, 0o711)
    _WORK_DIRS.append(d)
    return d


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """As root, tmp_path lives under a base of this session's own that task
    users may traverse: pytest's default (/tmp/pytest-of-root) is made 0700
    again by every session that starts, including other people's."""
    if os.geteuid() == 0 and not config.option.basetemp:
        base = tempfile.mkdtemp(prefix="ty-pytest-", dir="/tmp")
        os.chmod(base, 0o711)
        config.option.basetemp = os.path.join(base, "t")
        _WORK_DIRS.append(base)


def open_to_tasks(path):
    """Lets tasks (which a root agent runs as uids of their own) write in
    path: sticky and world-writable like /tmp, with every directory above
    it up to / traversable (o+x). pytest makes its tmp directories 0700."""
    path = os.path.abspath(str(path))
    os.chmod(path, 0o1777)
    parent = os.path.dirname(path)
    while parent != "/":
        mode = os.stat(parent).st_mode
        if not mode & 0o001:
            os.chmod(parent, (mode & 0o7777) | 0o001)
        parent = os.path.dirname(parent)
    return path


@pytest.fixture(autouse=True)
def _tmp_path_open_to_tasks(request):
    """Tests hand tmp_path to their jobs (pid files, markers): as root, the
    jobs' task users must be able to write there."""
    if os.geteuid() == 0 and "tmp_path" in request.fixturenames:
        open_to_tasks(request.getfixturevalue("tmp_path"))
    yield


class Agent(Process):
    """One `trainyard agent` process on 127.0.0.1:0 with its own work dir.

    start(server, name, extra_args) starts it with a node-bound agent token
    and waits (bounded) until GET /api/v1/nodes/{name} shows it ready at the
    URL it serves on; stop() is SIGTERM + clean exit (0, sanitizer-clean
    stderr); kill() is SIGKILL."""

    def __init__(self, base_dir):
        self.base_dir = str(base_dir)
        self.proc = None
        self.name = None
        self.work = None
        self.server = None
        self.token = None
        self.url = None
        self.starts = 0
        self.log_paths = []

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def start(self, server, name=None, extra_args=(), work=None, cpus=4, gpus=0, grace=2,
              wait=True, token_via="argv"):
        """token_via: how the agent gets its token: "argv" (--token), "env"
        (TRAINYARD_TOKEN) or "file" (--token-file, a 0600 file in base_dir).
        grace=None leaves the agent's default."""
        assert os.path.exists(BIN), "trainyard binary not found at %s" % BIN
        if name is not None:
            self.name = name
        assert self.name, "an agent needs a name"
        if work is not None:
            self.work = str(work)
        elif self.work is None:
            self.work = agent_work_dir(self.name)
        if self.server is not server or self.token is None:
            self.token = server.create_token("agent", node=self.name)["secret"]
        self.server = server
        self.starts += 1
        self.log_path = os.path.join(self.base_dir, "agent-%s.stderr.%d.log" % (
            self.name, self.starts))
        self.log_paths.append(self.log_path)
        argv = [BIN, "agent", "--server", server.url,
                "--name", self.name, "--listen", "127.0.0.1:0", "--work", self.work,
                "--cpus", str(cpus), "--gpus", str(gpus),
                "--python", PYTHON] + list(extra_args)
        if grace is not None:
            argv += ["--grace", str(grace)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
        if token_via == "argv":
            argv += ["--token", self.token]
        elif token_via == "env":
            env["TRAINYARD_TOKEN"] = self.token
        else:
            assert token_via == "file", token_via
            self.token_file = os.path.join(self.base_dir, "agent-%s.token" % self.name)
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
            argv += ["--token-file", self.token_file]
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         cwd=self.base_dir)
        self.url = None
        if wait:
            self.wait_ready()
        return self

    def _current_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=AGENT_READY_TIMEOUT_S):
        def ready():
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("agent %s exited with %d during start-up:\n%s"
                                     % (self.name, rc, self.log_tail()))
            if self.url is None:
                m = re.search(r"serving on (http://\S+),", self._current_log())
                if not m:
                    return False
                self.url = m.group(1)
            r = self.server.get("/api/v1/nodes/" + self.name)
            return (r.status == 200 and r.body.get("state") == "ready"
                    and r.body.get("agent_url") == self.url
                    and "registered node" in self._current_log())
        wait_for(ready, timeout, lambda: "agent %s to be ready:\n%s" % (
            self.name, self.log_tail()))
        return self

    def label(self):
        return "agent %s" % self.name

    def stop(self, timeout=STOP_TIMEOUT_S + 10):
        Process.stop(self, timeout)

def _stop_all(agents, servers=()):
    """Stops agents, then servers; kills whatever is left; raises the first
    failure after everything is cleaned up."""
    errors = []
    for proc_owner in list(agents) + list(servers):
        try:
            if proc_owner.alive():
                proc_owner.stop()
        except AssertionError as e:
            errors.append(e)
        finally:
            proc_owner.cleanup()
    if errors:
        raise errors[0]


@pytest.fixture
def agent_factory(server_factory, tmp_path):
    """agent_factory(server, name, extra_args=(), **kw) -> a started, ready Agent.
    Its agents are stopped (clean exit asserted) before server_factory's servers."""
    agents = []
    base = tmp_path / "agents"
    base.mkdir(exist_ok=True)

    def make(server, name=None, extra_args=(), start=True, **kw):
        a = Agent(base)
        a.name = name or uniq("node")
        agents.append(a)
        if start:
            a.start(server, extra_args=extra_args, **kw)
        return a

    yield make
    _stop_all(agents)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A private server (default node timeout) with two ready agents on
    loopback, shared by a module's non-destructive tests.  Yields
    (server, [agent0, agent1])."""
    base = tmp_path_factory.mktemp("cluster")
    srv = Server(base / "data")
    agents = []
    try:
        srv.start()
        for i in range(2):
            a = Agent(base)
            a.name = uniq("node%d" % i)
            agents.append(a)
            a.start(srv, wait=False)  # start both, then wait: their start-ups overlap
        for a in agents:
            a.wait_ready()
        yield srv, agents
    finally:
        try:
            _stop_all(agents, [srv])
        finally:
            for a in agents:
                a.cleanup()
            srv.cleanup()
