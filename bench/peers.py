"""bench/peers.py - the latency halves of `make bench-peers` (bench/peers.sh).

  peers.py p2 trainyard URL TOKEN_FILE TS_DIR N
  peers.py p2 slurm REST_URL JWT TS_DIR N
  peers.py p3 trainyard BIN URL TOKEN_FILE N
  peers.py p3 slurm N

P2 submits N jobs over REST one after another; each job's command writes
the time it started (bash's $EPOCHREALTIME, no fork) into TS_DIR, and the
figure is that time minus the client's clock just before the POST. The next
job is submitted once the last has finished. For trainyard, B2's figure (the
run's created_at to its task's started_at, the server's clock) goes to
stderr. P3 does the same through each
system's command line: `trainyard submit --command --follow` against
`srun`, the command printing $EPOCHREALTIME; it also gives the time until
the command line returns. Prints one line of milliseconds: p50 p99 and, for
P3, the round trip's p50 p99.
"""
import datetime
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

SCRIPT = 'echo $EPOCHREALTIME > {path}.tmp && mv {path}.tmp {path}'


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def wait_until(check, seconds=30.0, pause=0.001):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(pause)
    raise SystemExit("peers.py: timed out")


def read_ts(path):
    try:
        with open(path) as f:
            return float(f.read())
    except (FileNotFoundError, ValueError):
        return None


class Client:
    def __init__(self, url, headers):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port)
        self.headers = headers

    def call(self, method, path, body=None):
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300 and r.status != 404:
            raise SystemExit("peers.py: %s %s: %d %s" % (method, path, r.status, data[:300]))
        return r.status, json.loads(data) if data else None


def iso(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def p2(kind, url, secret, ts_dir, n):
    out = []
    b2 = []
    if kind == "trainyard":
        with open(secret) as f:
            c = Client(url, {"Authorization": "Bearer " + f.read().strip()})
    else:
        c = Client(url, {"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": secret})
    for i in range(n):
        path = os.path.join(ts_dir, "%s-p2-%d" % (kind, i))
        script = SCRIPT.format(path=path)
        t0 = time.time()
        if kind == "trainyard":
            _, run = c.call("POST", "/api/v1/runs",
                            {"experiment": "peers-p2", "command": ["bash", "-c", script]})
            done = lambda: c.call("GET", "/api/v1/runs/" + run["id"])[1]["status"] == "completed"
        else:
            _, job = c.call("POST", "/slurm/v0.0.38/job/submit", {
                "job": {"name": "peers-p2", "partition": "run", "current_working_directory": ts_dir,
                        "environment": {"PATH": "/bin:/usr/bin"}, "standard_output": "/dev/null"},
                "script": "#!/bin/bash\n" + script + "\n"})

            def done(job_id=job["job_id"]):
                status, d = c.call("GET", "/slurm/v0.0.38/job/%d" % job_id)
                return status == 404 or d["jobs"][0]["job_state"] not in (
                    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING")
        out.append((wait_until(lambda: read_ts(path)) - t0) * 1000)
        wait_until(done, pause=0.005)
        if kind == "trainyard":
            d = c.call("GET", "/api/v1/runs/" + run["id"])[1]
            b2.append((iso(d["tasks"][0]["started_at"]) - iso(d["created_at"])).total_seconds() * 1000)
    print("%.1f %.1f" % (pct(out, 0.5), pct(out, 0.99)))
    if b2:
        print("%.1f %.1f" % (pct(b2, 0.5), pct(b2, 0.99)), file=sys.stderr)


def p3(kind, argv, n):
    start = []
    total = []
    for _ in range(n):
        t0 = time.time()
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t1 = time.time()
        if p.returncode != 0:
            raise SystemExit("peers.py: %s exited %d: %s" % (argv[0], p.returncode, p.stderr[-300:]))
        stamps = [float(w) for w in p.stdout.split() if w.replace(".", "", 1).isdigit() and "." in w]
        if not stamps:
            raise SystemExit("peers.py: no start time in %s's output: %r" % (kind, p.stdout[-300:]))
        start.append((stamps[-1] - t0) * 1000)
        total.append((t1 - t0) * 1000)
    print("%.1f %.1f %.1f %.1f" % (pct(start, 0.5), pct(start, 0.99), pct(total, 0.5), pct(total, 0.99)))


def main():
    a = sys.argv[1:]
    if a[:2] == ["p2", "trainyard"] or a[:2] == ["p2", "slurm"]:
        p2(a[1], a[2], a[3], a[4], int(a[5]))
    elif a[:2] == ["p3", "trainyard"]:
        b, url, token_file, n = a[2], a[3], a[4], int(a[5])
        p3("trainyard", [b, "submit", "--command", "--follow", "--experiment", "peers-p3",
                         "--server", url, "--token-file", token_file, "--", "bash", "-c",
                         "echo $EPOCHREALTIME"], n)
    elif a[:2] == ["p3", "slurm"]:
        p3("slurm", ["srun", "--partition", "run", "bash", "-c", "echo $EPOCHREALTIME"], int(a[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
