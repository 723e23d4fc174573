"""A full disk (issue 11, item 12): the server answers 507
insufficient_storage naming its data directory, keeps nothing of the
failed write, stays up, and works again once there is room; an agent
whose disk fills under a task fails that task, saying why, instead of
dropping its output silently.

The data directory (or the agent's work directory) is a real tmpfs of a
few MiB that the test mounts (as root, which CI is).
"""

import errno
import os
import subprocess

import pytest

from conftest import PYTHON, assert_error, make_tgz, uniq, wait_for

TMPFS_MB = 8


@pytest.fixture
def small_disk(tmp_path):
    """A TMPFS_MB tmpfs mounted for the test; unmounted after the servers
    that use it have stopped (this fixture is set up before them)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0711" % TMPFS_MB,
                        "tmpfs", str(mnt)], capture_output=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % p.stderr.decode().strip())
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def fill(directory):
    """Writes a file until the disk is full; returns its path."""
    path = os.path.join(directory, "filler")
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        # Whatever fits of a last, smaller write.
        for size in (4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return path


def assert_no_space(resp, data_dir):
    assert_error(resp, 507, "insufficient_storage")
    assert str(data_dir) in resp.body["error"]["message"], resp.body


def test_full_disk_is_507_and_recovers(small_disk, server_factory):
    srv = server_factory(data_dir=small_disk / "data")
    data_dir = small_disk / "data"
    exp = uniq("disk")
    assert srv.post("/api/v1/runs", {"experiment": exp, "command": ["true"]}).status == 201
    filler = fill(str(small_disk))

    # An upload is spooled to the data directory: refused, nothing left.
    archive = make_tgz([("big.bin", "file", os.urandom(512 * 1024))])
    r = srv.req("POST", "/api/v1/snapshots", body=archive, content_type="application/gzip")
    assert_no_space(r, data_dir)
    # (the spooled part is removed once the request is done, just after
    # the answer)
    wait_for(lambda: os.listdir(data_dir / "tmp") == [], 10, "the upload's spool to go")
    assert os.listdir(data_dir / "snapshots") == []

    # Submissions go on until the database cannot grow: then 507, and
    # every run acknowledged before is there and no other.
    accepted = 1
    for _ in range(5000):
        r = srv.post("/api/v1/runs", {"experiment": exp, "command": ["true"]})
        if r.status != 201:
            break
        accepted += 1
    assert_no_space(r, data_dir)
    assert srv.get("/healthz").status == 200
    runs = srv.list_all("/api/v1/runs?experiment=" + exp)
    assert len(runs) == accepted, (len(runs), accepted)

    # Room again: the same requests succeed.
    os.unlink(filler)
    r = srv.post("/api/v1/runs", {"experiment": exp, "command": ["true"]})
    assert r.status == 201, r
    r = srv.req("POST", "/api/v1/snapshots", body=archive, content_type="application/gzip")
    assert r.status == 201, r
    assert len(srv.list_all("/api/v1/runs?experiment=" + exp)) == accepted + 1


def test_agent_out_of_disk_fails_the_task_and_says_why(small_disk, server_factory,
                                                        agent_factory):
    srv = server_factory()
    work = small_disk / "agent"
    agent_factory(srv, work=work)
    # 16 MiB of output on an 8 MiB disk, then a clean exit: the end of the
    # output (here the last line) cannot reach the server.
    code = ("import sys\n"
            "for i in range(160000):\n"
            "    sys.stdout.write('line %06d %s\\n' % (i, 'x' * 90))\n"
            "print('the last line')\n")
    run = srv.create_run({"experiment": uniq("disk"), "command": [PYTHON, "-c", code]})

    def ended():
        r = srv.get("/api/v1/runs/" + run["id"])
        return r.body if r.body["status"] in ("completed", "failed", "canceled") else None
    done = wait_for(ended, 60, "the run to end")
    assert done["status"] == "failed", done
    error = done["error"] or ""
    assert "the agent cannot write the task's log" in error, error
    assert str(work) in error and "No space left on device" in error, error
    logs = srv.get("/api/v1/runs/%s/logs" % run["id"]).body.decode()
    assert "line 000000" in logs and "the last line" not in logs
