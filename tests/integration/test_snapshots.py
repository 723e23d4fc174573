"""SPEC §3.1 snapshots: upload, dedup, download, rejection of malformed and
malicious archives, size limit."""

import gzip
import io
import os
import tarfile
import uuid

import pytest

from conftest import assert_error, make_tgz, project_tgz, sha256_id, uniq, wait_for


def upload(server, data, ctype="application/gzip", **kw):
    return server.req("POST", "/api/v1/snapshots", body=data, content_type=ctype, **kw)


def assert_not_stored(server, data):
    assert_error(server.get("/api/v1/snapshots/" + sha256_id(data)), 404, "not_found")


def test_upload_download_roundtrip(server):
    data = project_tgz(uuid.uuid4().hex.encode())
    r = upload(server, data)
    assert r.status == 201, r
    assert r.body == {"id": sha256_id(data), "size": len(data)} or (
        r.body["id"] == sha256_id(data) and r.body["size"] == len(data)), r
    g = server.get("/api/v1/snapshots/" + r.body["id"])
    assert g.status == 200, g
    assert g.body == data


def test_same_bytes_same_id(server):
    data = project_tgz(uuid.uuid4().hex.encode())
    a = upload(server, data)
    b = upload(server, data)
    assert a.status == 201 and b.status in (200, 201), (a, b)
    assert a.body["id"] == b.body["id"] == sha256_id(data)
    assert b.body["size"] == len(data)
    assert server.get("/api/v1/snapshots/" + a.body["id"]).body == data


def test_safe_relative_symlink_accepted(server):
    data = make_tgz([("sub", "dir", None), ("sub/f.txt", "file", uuid.uuid4().hex),
                     ("link", "symlink", "sub/f.txt")])
    r = upload(server, data)
    assert r.status == 201, r


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", None])
def test_wrong_content_type_415(server, ctype):
    data = project_tgz(uuid.uuid4().hex.encode())
    assert_error(upload(server, data, ctype), 415, "unsupported_media_type")
    assert_not_stored(server, data)


def _not_archives():
    m = uuid.uuid4().hex.encode()
    full = project_tgz(m)
    return {
        "empty": b"",
        "plain-text": b"hello world " + m,
        "gzip-of-text": gzip.compress(b"just some text, not a tar archive\n" * 50 + m, mtime=0),
        "truncated-gzip": full[: len(full) // 2],
        "zip-magic": b"PK\x03\x04" + m * 20,
    }


@pytest.mark.parametrize("kind", sorted(_not_archives()))
def test_not_a_tar_gz_400(server, kind):
    data = _not_archives()[kind]
    assert_error(upload(server, data), 400, "invalid_argument")
    assert_not_stored(server, data)


MARK = "evil-" + uuid.uuid4().hex[:12]
MALICIOUS = {
    "absolute-path": [("ok.txt", "file", b"x"), ("/tmp/" + MARK, "file", b"x")],
    "dotdot": [("ok.txt", "file", b"x"), ("../" + MARK, "file", b"x")],
    "nested-dotdot": [("a", "dir", None), ("a/../../" + MARK, "file", b"x")],
    "symlink-to-etc": [("etc", "symlink", "/etc")],
    "symlink-parent": [("up", "symlink", "..")],
    "symlink-nested-escape": [("a", "dir", None), ("a/l", "symlink", "../../etc")],
    # d/up -> .. is the root itself (fine alone), but e -> d/up/.. resolves above the root
    "symlink-chain-escape": [("d", "dir", None), ("d/up", "symlink", ".."),
                             ("e", "symlink", "d/up/..")],
    "symlink-then-write-through": [("d", "symlink", "/tmp"), ("d/" + MARK, "file", b"x")],
    "hardlink-absolute": [("h", "hardlink", "/etc/passwd")],
    "hardlink-escape": [("h", "hardlink", "../../etc/passwd")],
    "char-device": [("null", "chr", (1, 3))],
    "block-device": [("sda", "blk", (8, 0))],
}


@pytest.mark.parametrize("kind", sorted(MALICIOUS))
def test_malicious_archive_400(server, kind):
    data = make_tgz(MALICIOUS[kind] + [("nonce", "file", uuid.uuid4().hex)])
    assert_error(upload(server, data), 400, "invalid_argument")
    assert_not_stored(server, data)
    assert not os.path.lexists("/tmp/" + MARK)
    root = os.path.dirname(server.data_dir)
    for dirpath, dirnames, filenames in os.walk(root):
        assert MARK not in dirnames + filenames, dirpath


def test_unknown_snapshot_404(server):
    assert_error(server.get("/api/v1/snapshots/sha256:" + "0" * 64), 404, "not_found")
    assert server.get("/api/v1/snapshots/nope").status in (400, 404)


def test_snapshot_roles(server, viewer_token, user_token, snapshot):
    data = project_tgz(uuid.uuid4().hex.encode())
    assert_error(upload(server, data, token=None), 401, "unauthenticated")
    assert_error(upload(server, data, token=viewer_token), 403, "permission_denied")
    assert_not_stored(server, data)
    r = upload(server, data, token=user_token)
    assert r.status == 201, r
    assert_error(server.get("/api/v1/snapshots/" + snapshot[0], token=None), 401,
                 "unauthenticated")
    g = server.get("/api/v1/snapshots/" + snapshot[0], token=viewer_token)
    assert g.status == 200 and g.body == snapshot[1]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_max_snapshot_mb(server_factory, chunked):
    srv = server_factory(["--max-snapshot-mb", "1"])
    big = make_tgz([("weights.bin", "file", os.urandom(2 * 1024 * 1024))])
    assert len(big) > 2 * 1024 * 1024
    r = srv.req("POST", "/api/v1/snapshots", body=big, content_type="application/gzip",
                raw=True, chunked=chunked)
    assert_error(r, 413, "payload_too_large")
    assert_not_stored(srv, big)
    small = make_tgz([("weights.bin", "file", os.urandom(512 * 1024)),
                      ("n", "file", uniq("n"))])
    r = srv.req("POST", "/api/v1/snapshots", body=small, content_type="application/gzip",
                raw=True, chunked=chunked)
    assert r.status == 201, r
    assert srv.get("/api/v1/snapshots/" + r.body["id"]).body == small


def gzip_bomb(mib):
    """A tar holding one file of `mib` MiB of zeros, gzip-compressed: about
    1000 times smaller than what it unpacks to."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("zeros.bin")
        info.size = mib << 20
        t.addfile(info, io.BytesIO(bytes(info.size)))
    return buf.getvalue()


def _stored_files(srv):
    d = os.path.join(srv.data_dir, "snapshots")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.mark.parametrize("args, limit", [
    ([], "--max-snapshot-ratio"),
    (["--max-snapshot-ratio", "0", "--max-snapshot-unpacked-mb", "16"],
     "--max-snapshot-unpacked-mb"),
], ids=["ratio", "unpacked-mb"])
def test_gzip_bomb_413(server_factory, args, limit):
    srv = server_factory(args)
    bomb = gzip_bomb(64)
    assert len(bomb) < (64 << 20) // 100
    before = _stored_files(srv)
    r = upload(srv, bomb)
    assert_error(r, 413, "payload_too_large")
    assert limit in r.body["error"]["message"], r
    # Nothing stored: no row, no file, no spooled upload left behind.
    assert_not_stored(srv, bomb)
    assert _stored_files(srv) == before
    assert os.listdir(os.path.join(srv.data_dir, "tmp")) == []
    # The server still answers, and takes a normal snapshot.
    assert srv.get("/healthz").status == 200
    ok = project_tgz(uuid.uuid4().hex.encode())
    assert upload(srv, ok).status == 201


def test_agent_stops_unpacking_at_its_limit(server_factory, agent_factory):
    # The server takes a 32 MiB file of zeros; the agent allows only 8 MiB.
    srv = server_factory(["--max-snapshot-ratio", "0"])
    agent = agent_factory(srv, uniq("small"), extra_args=["--max-snapshot-unpacked-mb", "8"])
    r = upload(srv, gzip_bomb(32))
    assert r.status == 201, r
    run = srv.create_run({"experiment": uniq("bomb"), "source": r.body["id"],
                          "command": ["/bin/true"]})

    def final():
        body = srv.get("/api/v1/runs/" + run["id"]).body
        return body if body["status"] in ("completed", "failed", "canceled") else None
    body = wait_for(final, 30, "the run to end")
    assert body["status"] == "failed", body
    assert "--max-snapshot-unpacked-mb" in (body.get("error") or ""), body
    # It stopped writing at the limit (what it wrote may since be removed).
    for root, _, files in os.walk(agent.work):
        for f in files:
            if f == "zeros.bin":
                assert os.path.getsize(os.path.join(root, f)) <= 8 << 20


def test_dev_agent_gets_the_servers_unpacked_limit(server_factory):
    # What the server accepts, its --dev agent must be willing to unpack.
    srv = server_factory(["--dev", "--max-snapshot-unpacked-mb", "8192"])

    def agent_cmdline():
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % pid) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid != srv.proc.pid:
                    continue
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
                # Until its exec, the forked child shows the server's argv.
                return argv if argv[1:2] == [b"agent"] else None
            except (OSError, ValueError, IndexError):
                continue
        return None
    argv = wait_for(agent_cmdline, 30, "the --dev agent")
    assert argv[argv.index(b"--max-snapshot-unpacked-mb") + 1] == b"8192", argv
