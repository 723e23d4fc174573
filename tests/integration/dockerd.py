"""The one Docker daemon the container tests share (test_docker_tasks.py,
test_compose.py), started at most once per session.

The daemon used is the one answering at /var/run/docker.sock, or the one
another test session started (at OWN_SOCKET), or else one started here (root only) with its own socket, exec root and data root. The
data root is kept under /var/lib/trainyard-test/docker, so debian:12 (made
with debootstrap: no registry is reachable), the test images and the
project image's build layers are cached between runs.

The started daemon's bridge and address pools lie inside 198.18.0.0/15
(benchmarking addresses, RFC 2544), never Docker's default 172.17.0.0/16,
and it runs without its iptables rules: with them it sets the FORWARD
policy to DROP, and with br_netfilter (which it loads) that drops the
frames of every other bridge on the host, test_distributed.py's test hosts
included. Task containers use the host's network, compose's containers one
bridge and published ports through docker-proxy: nothing needs Docker's NAT.

Where no daemon can run (not root, or dockerd exits: a container without
the privileges...), the tests skip with the reason; a missing package is a
failure (.ci/install-deps installs them).
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

SYSTEM_SOCKET = "/var/run/docker.sock"
STATE = "/var/lib/trainyard-test"
DATA_ROOT = STATE + "/docker"
LOG = STATE + "/dockerd.log"
OWN_SOCKET = "/run/trainyard-test-docker.sock"
EXEC_ROOT = "/run/trainyard-test-docker"
PIDFILE = "/run/trainyard-test-docker.pid"
BIP = "198.18.252.1/24"
ADDRESS_POOL = "base=198.18.128.0/18,size=24"
BASE_IMAGE = "debian:12"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Daemon:
    """A Docker daemon: its socket, the environment for the docker and
    docker-compose commands, and its process when the tests started it."""

    def __init__(self, sock):
        self.socket = sock
        self.env = dict(os.environ, DOCKER_HOST="unix://" + sock)
        self.proc = None

    def api(self, method, path, body=None, timeout=60):
        """(status, parsed JSON or text) from the daemon's Engine API."""
        conn = _UnixConnection(self.socket, timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")

    def answers(self):
        try:
            return self.api("GET", "/_ping", timeout=5)[0] == 200
        except OSError:
            return False

    def containers(self, label):
        """Containers (running or not) with the label `k=v` (or key `k`)."""
        filters = urllib.parse.quote(json.dumps({"label": [label]}))
        status, body = self.api("GET", "/containers/json?all=1&filters=" + filters)
        assert status == 200, body
        return body

    def has_image(self, ref):
        return self.api("GET", "/images/%s/json" % ref)[0] == 200

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _start_own():
    os.makedirs(DATA_ROOT, exist_ok=True)
    d = Daemon(OWN_SOCKET)
    with open(LOG, "ab") as log:
        d.proc = subprocess.Popen(
            ["dockerd", "--host", "unix://" + OWN_SOCKET, "--data-root", DATA_ROOT,
             "--exec-root", EXEC_ROOT, "--pidfile", PIDFILE, "--bip", BIP,
             "--default-address-pool", ADDRESS_POOL, "--iptables=false"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and d.proc.poll() is None and not d.answers():
        time.sleep(0.2)
    if d.answers():
        return d
    d.stop()
    with open(LOG, "rb") as f:
        tail = f.read()[-800:].decode("utf-8", "replace").strip()
    pytest.skip("the Docker daemon cannot run on this machine (dockerd did not answer "
                "within 60 s; its log ends: %s)" % tail)


def _make_base_image(d):
    """debian:12 by deploy/base-image (debootstrap, about 40 s), unless the
    daemon has it."""
    if d.has_image(BASE_IMAGE):
        return
    p = subprocess.run(["sh", os.path.join(REPO, "deploy", "base-image")], env=d.env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800)
    assert p.returncode == 0, "deploy/base-image failed: " + \
        p.stdout.decode("utf-8", "replace")[-3000:]
    assert d.has_image(BASE_IMAGE)


def start():
    """The daemon the tests use, with debian:12: the system's, or one
    started here (stop() it at the end)."""
    for tool in ("docker", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail("%s is not installed: `make deps` (.ci/install-deps) installs it" % tool)
    d = Daemon(SYSTEM_SOCKET)
    if not d.answers() and Daemon(OWN_SOCKET).answers():
        # another test session's (it stops it when that session ends)
        d = Daemon(OWN_SOCKET)
    elif not d.answers():
        if os.geteuid() != 0:
            pytest.skip("no Docker daemon answers at %s and only root can start one "
                        "(running as uid %d)" % (SYSTEM_SOCKET, os.geteuid()))
        if shutil.which("dockerd") is None:
            pytest.fail("dockerd is not installed: `make deps` (.ci/install-deps) installs "
                        "Debian's docker.io")
        d = _start_own()
    try:
        _make_base_image(d)
    except BaseException:
        d.stop()
        raise
    return d
