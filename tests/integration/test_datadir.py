"""The data directory (issue 11 items 13, 14, 16): artifact names that are
not clean relative file paths, or that clash with an earlier artifact as
file against directory, are refused with no partial state; start-up empties
tmp/; the database and every secret file are 0600 whatever the directory's
mode and the umask."""

import os
import stat
import pytest

from conftest import Server, assert_error, project_tgz, uniq


def new_task(server):
    """A queued run (no node: it never starts) and its one task's id."""
    run = server.create_run({"experiment": uniq("art"), "command": ["true"]})
    return run["id"], run["tasks"][0]["id"]


def put_artifact(server, task, path, data=b"x"):
    return server.req("PUT", "/api/v1/agent/tasks/%s/artifacts/%s" % (task, path), body=data,
                      content_type="application/octet-stream")


def artifact_tree(server, run_id):
    """Every file and directory stored for run_id, relative to its folder."""
    root = os.path.join(server.data_dir, "artifacts", run_id)
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, n), root))
    return found


def listed(server, run_id):
    r = server.get("/api/v1/runs/%s/artifacts" % run_id)
    assert r.status == 200, r
    return sorted(a["path"] for a in r.body["items"])


@pytest.mark.parametrize("path", ["a/", "a%00b", "..%2Fx", "../x", "a//b", "a/./b", "a%0Ab",
                                  "%2E%2E/x"])
def test_bad_artifact_names_are_refused(server, path):
    run_id, task = new_task(server)
    before = artifact_tree(server, run_id)
    assert_error(put_artifact(server, task, path), 400, "invalid_argument", "path")
    assert artifact_tree(server, run_id) == before
    assert listed(server, run_id) == []


@pytest.mark.parametrize("first,second", [("a", "a/b"), ("a/b", "a"), ("d/a", "d/a/b/c")])
def test_file_and_directory_clash_is_refused(server, first, second):
    run_id, task = new_task(server)
    r = put_artifact(server, task, first, b"first")
    assert r.status == 201, r
    before = artifact_tree(server, run_id)
    r = put_artifact(server, task, second, b"second")
    assert_error(r, 400, "invalid_argument", "path")
    assert first in r.body["error"]["message"] or second in r.body["error"]["message"]
    # nothing new on disk (no empty directory), nothing new listed, the first intact
    assert artifact_tree(server, run_id) == before
    assert listed(server, run_id) == [first]
    r = server.get("/api/v1/runs/%s/artifacts/%s" % (run_id, first))
    assert r.status == 200 and r.body == b"first"
    # the same path again is a retry, and a sibling is fine
    assert put_artifact(server, task, first, b"again").status == 201
    assert put_artifact(server, task, first + "-sibling").status == 201
    assert listed(server, run_id) == sorted([first, first + "-sibling"])


def test_start_empties_tmp(server_factory, tmp_path):
    data = tmp_path / "data"
    srv = server_factory(data_dir=data)
    srv.stop()
    tmp = data / "tmp"
    (tmp / "upload-left").write_bytes(b"x" * 4096)
    (tmp / "nested" / "deeper").mkdir(parents=True)
    (tmp / "nested" / "deeper" / "f").write_bytes(b"y")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"z")
    os.symlink(str(outside), str(tmp / "link"))
    srv.start()
    assert os.listdir(str(tmp)) == []
    assert (outside / "keep").read_bytes() == b"z"  # a link is removed, not followed
    # and it still takes uploads, spooled there
    assert srv.upload_snapshot(project_tgz(b"# after")).get("id")


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


SECRET_FILES = ("trainyard.db", "trainyard.db-wal", "trainyard.db-shm", "admin.token")


def test_secret_files_are_private_with_open_dir_and_umask_000(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(str(data), 0o777)
    old = os.umask(0)
    try:
        srv = Server(data)
        srv.start()
    finally:
        os.umask(old)
    try:
        token = srv.create_token("user")["secret"]
        srv.create_run({"experiment": uniq("m"), "command": ["true"]}, token=token)
        for name in SECRET_FILES:
            p = os.path.join(str(data), name)
            assert os.path.exists(p), name
            assert mode(p) == 0o600, "%s is %o" % (name, mode(p))
        # what else the server made under the data directory is its own too
        for dirpath, dirnames, filenames in os.walk(str(data)):
            for n in filenames:
                p = os.path.join(dirpath, n)
                if n.startswith(("stderr.", "stdout.")):
                    continue  # the test's own capture of the server's output
                assert mode(p) & 0o077 == 0, "%s is %o" % (p, mode(p))
            for n in dirnames:
                p = os.path.join(dirpath, n)
                assert mode(p) & 0o077 == 0, "%s is %o" % (p, mode(p))
        srv.stop()
    finally:
        srv.cleanup()


def test_older_loose_files_are_tightened(server_factory, tmp_path):
    data = tmp_path / "data"
    srv = server_factory(data_dir=data)
    srv.stop()
    for name in ("trainyard.db", "admin.token"):
        os.chmod(os.path.join(str(data), name), 0o644)
    srv.start()
    for name in SECRET_FILES:
        assert mode(os.path.join(str(data), name)) == 0o600, name
    assert srv.get("/api/v1/tokens").status == 200
