"""HTTP details (issue 14 item 3): request bodies with Content-Encoding gzip
or deflate are decoded, bounded by the route's limit once decoded; any other
coding is 415; requests matching no route are counted in /metrics; an
HTTP/1.1 request without Host is 400; the CLI sends large JSON bodies
gzip-compressed.  The real server over real sockets."""

import gzip
import json
import os
import re
import socket
import subprocess
import urllib.parse
import zlib

from conftest import BIN, assert_error, check_openapi, make_tgz, sha256_id, uniq

JSON_LIMIT = 1024 * 1024


def spec(e, **more):
    return dict({"experiment": e, "command": ["true"], "compute_target": uniq("nopool")}, **more)


def post_encoded(server, path, data, coding, content_type="application/json", chunked=False,
                 token=None):
    headers = {"Content-Encoding": coding} if coding is not None else {}
    return server.req("POST", path, body=data, content_type=content_type, headers=headers,
                      raw=chunked, chunked=chunked,
                      **({} if token is None else {"token": token}))


def metric(server, name, **labels):
    """The value of one sample of the server's /metrics (0 when absent)."""
    r = server.get("/metrics")
    assert r.status == 200, r
    text = r.body.decode() if isinstance(r.body, bytes) else r.body
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    for line in text.splitlines():
        if line.startswith("%s{%s} " % (name, want)):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def raw_head(server, request):
    """Sends request bytes as they are; returns (status, headers, body)."""
    u = urllib.parse.urlsplit(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    status = int(lines[0].split()[1])
    method, target = request.split(b" ", 2)[:2]
    check_openapi(server.url, method.decode(), target.decode(), status, hdrs, body)
    return status, hdrs, body


# --------------------------------------------------------------------------
# Content-Encoding
# --------------------------------------------------------------------------

def test_gzip_and_deflate_json_bodies_are_decoded(server):
    e = uniq("enc")
    plain = server.create_run(spec(e, tags={"how": "plain"}))
    body = json.dumps(dict(plain["spec"], tags={"how": "coded"})).encode()
    codings = {
        "gzip": gzip.compress(body),
        "x-gzip": gzip.compress(body),
        "GZip": gzip.compress(body),
        "deflate": zlib.compress(body),
        " identity ": body,
        # gzip members may follow one another (RFC 1952 §2.2)
        "gzip ": gzip.compress(body[:10]) + gzip.compress(body[10:]),
    }
    for coding, data in codings.items():
        r = post_encoded(server, "/api/v1/runs", data, coding)
        assert r.status == 201, (coding, r)
        assert r.body["spec"] == dict(plain["spec"], tags={"how": "coded"}), coding
    r = post_encoded(server, "/api/v1/runs", gzip.compress(body), "gzip", chunked=True)
    assert r.status == 201, r
    assert len(server.runs_of(e)) == len(codings) + 2


def test_the_limit_bounds_the_decoded_size(server):
    e = uniq("enc")
    # Under the limit once decoded, though far over 64 KiB: taken.
    env = {"V%d" % i: "x" * 32000 for i in range(28)}  # ~900 KB of JSON
    data = json.dumps(spec(e, environment_variables=env)).encode()
    assert 64 * 1024 < len(data) < JSON_LIMIT
    r = post_encoded(server, "/api/v1/runs", gzip.compress(data), "gzip")
    assert r.status == 201, r
    # A small body that decodes past the limit (a "zip bomb"): 413, decoding stops there.
    bomb = gzip.compress(b'{"experiment": "' + b"x" * (64 * JSON_LIMIT) + b'"}')
    assert len(bomb) < 100 * 1024
    r = post_encoded(server, "/api/v1/runs", bomb, "gzip")
    assert_error(r, 413, "payload_too_large")
    assert "decoded" in r.body["error"]["message"]
    r = post_encoded(server, "/api/v1/runs", zlib.compress(b" " * (2 * JSON_LIMIT)), "deflate",
                     chunked=True)
    assert_error(r, 413, "payload_too_large")
    assert len(server.runs_of(e)) == 1


def test_bad_streams_are_400(server):
    e = uniq("enc")
    good = json.dumps(spec(e)).encode()
    bad = {
        "not gzip": ("gzip", good),
        "truncated gzip": ("gzip", gzip.compress(good)[:-9]),
        "bad gzip checksum": ("gzip", gzip.compress(good)[:-8] + b"\0\0\0\0" +
                              gzip.compress(good)[-4:]),
        "garbage after gzip": ("gzip", gzip.compress(good) + b"garbage"),
        "raw deflate without the zlib header": ("deflate", zlib.compress(good)[2:-4]),
        "data after the deflate stream": ("deflate", zlib.compress(good) + zlib.compress(good)),
        "gzip sent as deflate": ("deflate", gzip.compress(good)),
    }
    for what, (coding, data) in bad.items():
        r = post_encoded(server, "/api/v1/runs", data, coding)
        assert_error(r, 400, "invalid_argument")
        assert coding in r.body["error"]["message"] or "zlib" in r.body["error"]["message"], what
    # Decoded fine but not JSON: the usual 400 of the route.
    assert_error(post_encoded(server, "/api/v1/runs", gzip.compress(b"{"), "gzip"), 400,
                 "invalid_argument")
    assert server.runs_of(e) == []


def test_other_codings_are_415(server):
    e = uniq("enc")
    data = json.dumps(spec(e)).encode()
    for coding in ("br", "compress", "zstd", "gzip, br", "gzip, identity", "*"):
        r = post_encoded(server, "/api/v1/runs", data, coding)
        assert_error(r, 415, "unsupported_media_type")
        assert coding.strip() in r.body["error"]["message"], r.body
    assert server.runs_of(e) == []


def test_snapshot_and_agent_bodies_are_decoded_too(server):
    tgz = make_tgz([("train.py", "file", b"print('gz %s')\n" % uniq().encode())])
    r = post_encoded(server, "/api/v1/snapshots", gzip.compress(tgz), "gzip",
                     content_type="application/gzip")
    assert r.status == 201, r
    assert r.body["id"] == sha256_id(tgz)  # the snapshot is what was decoded


def test_decoded_bodies_are_counted(server_factory):
    srv = server_factory()
    data = json.dumps(spec(uniq("enc"))).encode()
    assert post_encoded(srv, "/api/v1/runs", gzip.compress(data), "gzip").status == 201
    assert post_encoded(srv, "/api/v1/runs", zlib.compress(data), "deflate").status == 201
    assert post_encoded(srv, "/api/v1/runs", b"x", "gzip").status == 400
    assert metric(srv, "trainyard_http_decoded_bodies_total", coding="gzip") == 1
    assert metric(srv, "trainyard_http_decoded_bodies_total", coding="deflate") == 1


# --------------------------------------------------------------------------
# Unknown routes and methods in /metrics; Host; 401
# --------------------------------------------------------------------------

def test_unknown_routes_and_methods_are_counted(server_factory):
    srv = server_factory()
    assert_error(srv.get("/no/such/path"), 404, "not_found")
    assert_error(srv.get("/api/v1/nope", token=None), 404, "not_found")
    assert_error(srv.req("PUT", "/api/v1/runs", json_body={}), 404, "not_found")
    status, _, body = raw_head(srv, b"BREW /coffee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404 and b"not_found" in body
    unmatched = "trainyard_http_requests_total"
    assert metric(srv, unmatched, method="GET", route="unmatched", status="404") == 2
    assert metric(srv, unmatched, method="PUT", route="unmatched", status="404") == 1
    assert metric(srv, unmatched, method="OTHER", route="unmatched", status="404") == 1
    assert metric(srv, "trainyard_http_request_duration_seconds_count", method="GET",
                  route="unmatched") == 2


def test_http11_without_host_is_400(server):
    status, hdrs, body = raw_head(server, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 400, body
    err = json.loads(body)["error"]
    assert err["code"] == "invalid_argument" and "Host" in err["message"]
    status, _, body = raw_head(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status == 200, body
    status, _, body = raw_head(server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status == 200, body


def test_401_carries_www_authenticate(server):
    r = server.get("/api/v1/runs", token=None)
    assert_error(r, 401, "unauthenticated")
    assert r.headers.get("www-authenticate") == "Bearer"


# --------------------------------------------------------------------------
# The CLI compresses large JSON bodies
# --------------------------------------------------------------------------

def test_cli_sends_large_specs_gzipped(server_factory, tmp_path):
    srv = server_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    common = ["--server", srv.url, "--token", srv.admin_token, "--json"]
    small = subprocess.run([BIN, "submit"] + common + ["--pool", "p", "--command", "--", "true"],
                           capture_output=True, env=env, timeout=60)
    assert small.returncode == 0, small
    assert metric(srv, "trainyard_http_decoded_bodies_total", coding="gzip") == 0
    big_env = []
    for i in range(8):
        big_env += ["--env", "V%d=%s" % (i, "y" * 10000)]
    big = subprocess.run([BIN, "submit"] + common + ["--pool", "p"] + big_env +
                         ["--command", "--", "true"], capture_output=True, env=env, timeout=60)
    assert big.returncode == 0, big
    run = json.loads(big.stdout)
    assert run["spec"]["environment_variables"]["V7"] == "y" * 10000
    assert metric(srv, "trainyard_http_decoded_bodies_total", coding="gzip") == 1
