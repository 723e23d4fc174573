"""Nothing a client sends can fail other people's jobs (issue 11, items 7-10
and 17): each test does the attack against a real server (and a real agent
where liveness matters) and checks the safe outcome. Nothing here asserts
on speed; the polls are bounded generously for slow machines."""

import json
import socket
import threading
import time
import urllib.parse

from conftest import (
    PYTHON, assert_error, http_request, raw_request, uniq, wait_for,
)

GENEROUS_S = 60.0


def host_port(srv):
    u = urllib.parse.urlsplit(srv.url)
    return u.hostname, u.port


def healthy(srv):
    try:
        return http_request(srv.url, "GET", "/healthz").status == 200
    except OSError:
        return False


def connect_from(srv, source):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(GENEROUS_S)
    s.connect(host_port(srv))
    return s


def dup_key_body():
    """The issue's body: 87,000 keys (1 MB), the repeated one last."""
    keys = ",".join('"k%06d":1' % i for i in range(87000))
    return ("{" + keys + ',"k086999":2}').encode()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


# -- item 7 ------------------------------------------------------------------

def test_one_megabyte_of_keys_gets_its_400_and_the_server_answers(server_factory):
    srv = server_factory()
    body = dup_key_body()
    headers = {"Authorization": "Bearer " + srv.admin_token,
               "Content-Type": "application/json"}
    answers = []

    def post():
        answers.append(raw_request(srv.url, "POST", "/api/v1/runs", headers, body,
                                   timeout=GENEROUS_S))

    posters = [threading.Thread(target=post) for _ in range(2)]
    for t in posters:
        t.start()
    wait_for(lambda: healthy(srv), GENEROUS_S, "/healthz while the bodies are checked")
    for t in posters:
        t.join(GENEROUS_S)
    assert len(answers) == 2
    for r in answers:
        assert_error(r, 400, "invalid_argument", "k086999")
        assert "twice" in r.body["error"]["message"]
    # Nothing was stored.
    assert srv.get("/api/v1/runs").body["items"] == []
    # The same keys inside script_params are named too.
    spec = ('{"experiment":"e","command":["true"],"environment_variables":'
            + dup_key_body().decode() + "}").encode()
    r = raw_request(srv.url, "POST", "/api/v1/runs", headers, spec, timeout=GENEROUS_S)
    assert_error(r, 400, "invalid_argument", "environment_variables")


# -- item 8 ------------------------------------------------------------------

def test_a_large_log_reads_whole_and_followed_from_an_offset(server_factory, agent_factory):
    srv = server_factory()
    agent = agent_factory(srv)
    lines = 200000  # about 2.5 MiB of short lines, sent in several chunks
    code = ("import sys\nfor i in range(%d): sys.stdout.write('line %%07d\\n' %% i)\n"
            % lines)
    run = srv.create_run({"experiment": uniq("log"), "command": [PYTHON, "-c", code]})
    rid = run["id"]
    wait_for(lambda: srv.get("/api/v1/runs/" + rid).body["status"] == "completed", GENEROUS_S,
             "the run to complete")
    want = b"".join(b"line %07d\n" % i for i in range(lines))
    r = srv.get("/api/v1/runs/%s/logs" % rid)
    assert r.status == 200
    assert r.body == want
    # A follower from an offset gets exactly the rest, then the stream ends.
    offset = len(want) - 12345
    r = http_request(srv.url, "GET", "/api/v1/runs/%s/logs?follow=1&offset=%d" % (rid, offset),
                     headers={"Authorization": "Bearer " + srv.admin_token})
    assert r.status == 200
    assert r.body == want[offset:]
    assert agent.alive()


# -- item 9 ------------------------------------------------------------------

def test_no_node_goes_down_while_user_requests_hold_the_server(server_factory, agent_factory):
    # A short node timeout (heartbeats every second) and one user worker.
    srv = server_factory(extra_args=["--node-timeout", "3", "--threads", "1"])
    agent = agent_factory(srv)
    run = srv.create_run({"experiment": uniq("hold"), "command": ["sleep", "600"]})
    rid = run["id"]
    wait_for(lambda: srv.get("/api/v1/runs/" + rid).body["status"] == "running", GENEROUS_S,
             "the run to start")
    user = srv.create_token("user")["secret"]
    headers = {"Authorization": "Bearer " + user, "Content-Type": "application/json"}
    body = dup_key_body()
    stop = threading.Event()
    errors = []

    def attack():
        while not stop.is_set():
            try:
                raw_request(srv.url, "POST", "/api/v1/runs", headers, body, timeout=GENEROUS_S)
                http_request(srv.url, "GET", "/api/v1/runs?limit=1000",
                             headers={"Authorization": "Bearer " + user})
            except OSError as e:
                errors.append(e)

    attackers = [threading.Thread(target=attack) for _ in range(6)]
    for t in attackers:
        t.start()
    try:
        # Several node timeouts under load: the node stays ready throughout.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            node = srv.get("/api/v1/nodes/" + agent.name).body
            assert node["state"] == "ready", node
            time.sleep(0.5)
    finally:
        stop.set()
        for t in attackers:
            t.join(GENEROUS_S)
    got = srv.get("/api/v1/runs/" + rid).body
    assert got["status"] == "running", got
    assert got["tasks"][0]["status"] == "running"
    srv.post("/api/v1/runs/%s/cancel" % rid, {})


# -- item 10 -----------------------------------------------------------------

def test_unauthenticated_routes_take_no_body(server_factory):
    srv = server_factory()
    before = rss_kb(srv.proc.pid)
    body = b"x" * (1 << 20)
    socks = []
    try:
        for _ in range(100):
            s = connect_from(srv, "127.0.0.2")
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            try:
                s.sendall(body)
            except OSError:
                pass  # refused on the headers: the connection is closed
            socks.append(s)
        assert healthy(srv)
        # None of those bodies is held (100 MiB if they were).
        assert rss_kb(srv.proc.pid) - before < 50 * 1024
    finally:
        for s in socks:
            s.close()
    r = raw_request(srv.url, "GET", "/healthz", {"Content-Type": "application/json"}, b"{}")
    assert_error(r, 413, "payload_too_large")
    assert "takes no request body" in r.body["error"]["message"]
    # A GET that needs a token takes none either, token or not.
    r = raw_request(srv.url, "GET", "/api/v1/runs",
                    {"Content-Type": "application/json",
                     "Authorization": "Bearer " + srv.admin_token}, b"{}")
    assert_error(r, 413, "payload_too_large")


def test_idle_and_slow_sockets_do_not_starve_healthz(server_factory):
    srv = server_factory(extra_args=["--max-connections-per-ip", "50", "--header-timeout", "2"])
    socks = []
    try:
        # 300 idle sockets from one address: all but 50 are closed at once.
        for _ in range(300):
            try:
                socks.append(connect_from(srv, "127.0.0.2"))
            except OSError:
                break
        wait_for(lambda: healthy(srv), GENEROUS_S, "/healthz with 300 idle sockets open")
        # A client that drips a header line now and then is cut off at its
        # header deadline, not kept alive by each line.
        s = connect_from(srv, "127.0.0.3")
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < GENEROUS_S:
            try:
                s.sendall(b"X-Drip: 1\r\n")
            except OSError:
                closed = True
                break
            s.settimeout(0.5)
            try:
                if s.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
        s.close()
        assert closed, "a dripping client kept its connection"
    finally:
        for s in socks:
            s.close()
    assert healthy(srv)


def test_followers_are_capped_per_run_and_in_all(server_factory):
    srv = server_factory(extra_args=["--max-followers-per-run", "2", "--max-followers", "3"])
    runs = [srv.create_run({"experiment": uniq("f"), "command": ["true"]})["id"]
            for _ in range(3)]
    auth = "Authorization: Bearer %s\r\n" % srv.admin_token
    streams = []

    def follow(rid, what="logs?follow=1"):
        s = socket.create_connection(host_port(srv), timeout=GENEROUS_S)
        s.sendall(("GET /api/v1/runs/%s/%s HTTP/1.1\r\nHost: x\r\n%s\r\n"
                   % (rid, what, auth)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        return s, head

    def status_of(head):
        return int(head.split(b" ", 2)[1])

    try:
        for what in ("logs?follow=1", "events"):
            s, head = follow(runs[0], what)
            streams.append(s)
            assert status_of(head) == 200, head
        s, head = follow(runs[0])
        s.close()
        assert status_of(head) == 429, head
        r = http_request(srv.url, "GET", "/api/v1/runs/%s/logs?follow=1" % runs[0],
                         headers={"Authorization": "Bearer " + srv.admin_token})
        assert_error(r, 429, "too_many_requests")
        s, head = follow(runs[1])
        streams.append(s)
        assert status_of(head) == 200, head
        r = http_request(srv.url, "GET", "/api/v1/runs/%s/events" % runs[2],
                         headers={"Authorization": "Bearer " + srv.admin_token})
        assert_error(r, 503, "unavailable")
        # A follower that leaves frees its place.
        streams.pop().close()

        def room():
            s, head = follow(runs[2])
            if status_of(head) == 200:
                streams.append(s)
                return True
            s.close()
            return False
        wait_for(room, GENEROUS_S, "a place freed by a closed follower")
    finally:
        for s in streams:
            s.close()


# -- item 17 -----------------------------------------------------------------

def test_request_paths_cannot_forge_log_lines(server_factory):
    srv = server_factory()
    forged = "FORGED-%s" % uniq()
    r = http_request(srv.url, "GET", "/x%0a2026-01-01T00:00:00.000Z%20info%20" + forged + "%1b[2J")
    assert r.status == 404
    wait_for(lambda: forged in srv.log_text(), GENEROUS_S, "the request in the server log")
    lines = [line for line in srv.log_text().splitlines() if forged in line]
    assert lines, srv.log_tail()
    for line in lines:
        assert "info http: GET /x\\x0a2026" in line, line
        assert "\\x1b[2J" in line and "\x1b" not in line, line
    assert not any(line.startswith("2026-01-01T00:00:00.000Z")
                   for line in srv.log_text().splitlines())


def raw_get(sock, path, token=None):
    """Sends one GET on sock and reads the answer until the server closes
    the connection or the body is in; returns (status, headers, body)."""
    auth = "Authorization: Bearer %s\r\n" % token if token else ""
    sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, auth)).encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                      if l.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_connections_past_the_caps_get_an_error_and_are_closed(server_factory):
    """Past --max-connections-per-ip a client's next connection is answered
    429 and closed; past --max-connections, 503; once the others close, the
    same request is served."""
    srv = server_factory(extra_args=["--max-connections-per-ip", "4",
                                     "--max-connections", "16"])
    held = []
    try:
        # Each is served once (so the server has surely accepted it) and
        # kept open.
        for _ in range(4):
            held.append(connect_from(srv, "127.0.0.4"))
            assert raw_get(held[-1], "/healthz")[0] == 200
        extra = connect_from(srv, "127.0.0.4")
        status, headers, body = raw_get(extra, "/healthz")
        assert status == 429, (status, body)
        assert headers.get("connection", "").lower() == "close", headers
        err = json.loads(body)["error"]
        assert err["code"] == "too_many_requests", err
        assert "--max-connections-per-ip" in err["message"], err
        assert extra.recv(1) == b"", "the connection past the cap stayed open"
        extra.close()
        # Another address is not affected by this one's cap.
        assert healthy(srv)

        # Fill the server: 16 open in all, from other addresses.
        for i in range(12):
            held.append(connect_from(srv, "127.0.1.%d" % (i + 1)))
            assert raw_get(held[-1], "/healthz")[0] == 200
        full = connect_from(srv, "127.0.2.1")
        status, _, body = raw_get(full, "/healthz")
        assert status == 503, (status, body)
        assert json.loads(body)["error"]["code"] == "unavailable"
        full.close()
    finally:
        for s in held:
            s.close()
    # Once they are closed, the same client is served again.
    wait_for(lambda: raw_get(connect_from(srv, "127.0.0.4"), "/healthz")[0] == 200,
             GENEROUS_S, "a connection from 127.0.0.4 to be served")


def test_401_names_the_bearer_scheme(server):
    r = http_request(server.url, "GET", "/api/v1/runs")
    assert_error(r, 401, "unauthenticated")
    assert r.headers.get("www-authenticate") == "Bearer", r.headers
