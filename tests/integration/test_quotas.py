"""Per-run quotas (issue 11, item 11): a run that floods its log or its
metrics keeps what the server's limits allow, says where it was cut, and
neither fails nor holds up other runs.

A real server with small limits (--max-log-mb 1, --max-metric-points 100)
and a real agent running real processes.
"""

import subprocess
import textwrap

from conftest import BIN, PYTHON, uniq, wait_for

FINAL = ("completed", "failed", "canceled")
MARKER = "[trainyard] the run's log reached its limit of 1048576 bytes"


def py(code):
    return [PYTHON, "-c", textwrap.dedent(code)]


def wait_final(srv, run_id, timeout=60):
    def final():
        r = srv.get("/api/v1/runs/" + run_id)
        assert r.status == 200, r
        return r.body if r.body["status"] in FINAL else None
    return wait_for(final, timeout, "run %s to end" % run_id)


def logs(srv, run_id):
    r = srv.get("/api/v1/runs/%s/logs" % run_id)
    assert r.status == 200, r
    return r.body.decode("utf-8", "replace")


# 300 metric points, then 3 MiB of numbered log lines, then a last line.
FLOOD = py("""
    import sys
    for i in range(300):
        print('##metric {"loss": %d, "step": %d}' % (i, i))
    line = "x" * 90
    for i in range(32 * 1024):
        sys.stdout.write("line %06d %s\\n" % (i, line))
    print("the end")
""")


def test_log_and_metric_quotas_cut_and_mark(server_factory, agent_factory):
    srv = server_factory(extra_args=["--max-log-mb", "1", "--max-metric-points", "100"])
    agent_factory(srv)
    flood = srv.create_run({"experiment": uniq("quota"), "command": FLOOD})
    assert flood["log_truncated"] is False and flood["metrics_truncated"] is False
    small = srv.create_run({"experiment": uniq("quota"),
                            "command": py("print('small run ok')")})

    done = wait_final(srv, flood["id"])
    assert done["status"] == "completed", done
    assert done["log_truncated"] is True, done
    assert done["metrics_truncated"] is True, done

    # Metrics: exactly the first 100 points are kept.
    r = srv.get("/api/v1/runs/%s/metrics" % flood["id"])
    assert r.status == 200, r
    (loss,) = [m for m in r.body["items"] if m["name"] == "loss"]
    assert loss["count"] == 100, loss
    assert loss["max"] == 99 and loss["last"] == 99, loss
    series = srv.get("/api/v1/runs/%s/metrics/loss" % flood["id"]).body["points"]
    assert [p[0] for p in series] == list(range(100))

    # Log: what came before the limit, one marker line, nothing after.
    text = logs(srv, flood["id"])
    assert MARKER in text, text[-500:]
    assert text.count(MARKER) == 1
    assert "line 000000 " in text
    assert "the end" not in text
    before = text[:text.index(MARKER)]
    assert 1000 * 1024 < len(before.encode()) <= 1024 * 1024 + 4096, len(before)

    # Another run on the same server has its own quota and is whole.
    other = wait_final(srv, small["id"])
    assert other["status"] == "completed" and other["log_truncated"] is False, other
    assert "small run ok" in logs(srv, small["id"])


def test_quota_options_are_checked(tmp_path):
    for bad in (["--max-log-mb", "0"], ["--max-metric-points", "-1"],
                ["--max-log-mb", "lots"]):
        p = subprocess.run([BIN, "server", "--data", str(tmp_path / "data")] + bad,
                           capture_output=True, timeout=10)
        assert p.returncode == 2, (bad, p)
        assert bad[0].encode() in p.stderr, p.stderr
