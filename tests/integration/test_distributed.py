"""Distributed backends across real hosts (SPEC §4 ps, pytorch, mpi, the gang
rule; §7 node loss), with the examples in examples/digits-{ps,ddp,mpi}.

Each test host is a network namespace the module creates (STYLE.md, "Test
hosts in network namespaces"): `ty<N><suffix>` with a veth whose inner end is
`eth0` (198.18.0.N/24, lo up) and whose outer end joins a bridge in the root
namespace (198.18.0.254/24). The server runs in the root namespace on the
bridge address; one agent runs inside each namespace (`ip netns exec`), so
every task, orted and MPI rank lives on its own host and talks to the others
over the bridge only. Names carry a per-run random suffix; every namespace,
veth and the bridge is deleted at teardown, also on failure (and at exit).

Needs root and `ip netns` (the module is skipped otherwise), Debian's
/usr/bin/python3 with torch, scikit-learn and mpi4py, and Open MPI's mpirun.
Tests run in file order on one shared 3-host cluster and leave it idle; the
node-loss test is last and restarts the agent it killed."""

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import textwrap
import time
import urllib.parse
from collections import namedtuple

import pytest

from conftest import (BIN, PYTHON, Agent, Server, agent_work_dir, make_tgz, pid_alive, uniq,
                      wait_for)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = os.path.join(REPO, "examples")
FINAL = ("completed", "failed", "canceled")
RUN_TIMEOUT_S = 60.0
HOSTS = 3
CPUS_PER_HOST = 2
NODE_TIMEOUT_S = 3
IFNAME = "eth0"  # the veth inside every namespace has this name
GLOO = {"GLOO_SOCKET_IFNAME": IFNAME}


def _netns_unavailable():
    if os.geteuid() != 0:
        return "needs root: the test hosts are network namespaces made with `ip netns add`"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` for network namespaces"
    r = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        return "`ip netns` is unavailable: %s" % r.stderr.decode(errors="replace").strip()
    return None


def _python_lacks(*modules):
    code = ("import importlib.util, sys; "
            "sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1:]) else 1)")
    try:
        return subprocess.run([PYTHON, "-c", code] + list(modules)).returncode != 0
    except OSError:
        return True


_WHY_NOT = _netns_unavailable()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")
needs_torch = pytest.mark.skipif(_python_lacks("torch", "sklearn", "numpy"),
                                 reason="%s lacks torch, sklearn or numpy" % PYTHON)
needs_mpi = pytest.mark.skipif(_python_lacks("mpi4py") or shutil.which("mpirun") is None,
                               reason="needs Open MPI's mpirun and mpi4py for %s" % PYTHON)


# --------------------------------------------------------------------------
# hosts: network namespaces joined by a bridge
# --------------------------------------------------------------------------

def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args),
                                          r.stderr.decode(errors="replace").strip()))
    return r


Host = namedtuple("Host", "index netns veth ip")


def _bridge_nf_on():
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


class HostNet:
    """N namespaces with `eth0` = <prefix>.N/24, a bridge <prefix>.254/24."""

    def __init__(self, count):
        self.count = count
        self.suffix = secrets.token_hex(3)
        self.bridge = "tyb" + self.suffix
        self.prefix = self._free_prefix()
        self.gateway = self.prefix + ".254"
        self.hosts = []
        self._made = []  # ("netns"|"link", name), in creation order
        self._cleaned = False

    @staticmethod
    def _free_prefix():
        """198.18.0 unless an interface of this namespace already uses it
        (say, a leftover of a killed run), then another /24 of 198.18.0.0/15."""
        used = set(re.findall(r"inet (198\.1[89]\.\d+)\.\d+/",
                              ip("-4", "-o", "addr", "show").stdout.decode()))
        if "198.18.0" not in used:
            return "198.18.0"
        for _ in range(100):
            candidate = "198.%d.%d" % (18 + secrets.randbelow(2), secrets.randbelow(256))
            if candidate not in used:
                return candidate
        raise RuntimeError("no free /24 in 198.18.0.0/15")

    def create(self):
        atexit.register(self.cleanup)
        ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        ip("addr", "add", self.gateway + "/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        # With br_netfilter loaded (a running dockerd loads it, and sets the
        # FORWARD policy to DROP), frames between the bridge's ports go
        # through iptables' FORWARD chain: let ours pass.
        if _bridge_nf_on() and shutil.which("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            subprocess.run(["iptables", "-I"] + rule, check=True, capture_output=True)
            self._made.append(("iptables", rule))
        for n in range(1, self.count + 1):
            host = Host(n, "ty%d%s" % (n, self.suffix), "tyv%d%s" % (n, self.suffix),
                        "%s.%d" % (self.prefix, n))
            ip("netns", "add", host.netns)
            self._made.append(("netns", host.netns))
            ip("link", "add", host.veth, "type", "veth", "peer", "name", IFNAME,
               "netns", host.netns)
            self._made.append(("link", host.veth))
            ip("link", "set", host.veth, "master", self.bridge, "up")
            ip("-n", host.netns, "addr", "add", host.ip + "/24", "dev", IFNAME)
            ip("-n", host.netns, "link", "set", IFNAME, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
            self.hosts.append(host)
        return self

    def cleanup(self):
        """Kills what still runs in the namespaces, deletes them, their veths
        and the bridge. Idempotent; also registered with atexit."""
        if self._cleaned:
            return
        self._cleaned = True
        for kind, name in reversed(self._made):
            if kind == "netns":
                pids = ip("netns", "pids", name, check=False).stdout.decode().split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
        for kind, name in reversed(self._made):
            if kind == "link":
                ip("link", "del", name, check=False)
            elif kind == "iptables":
                subprocess.run(["iptables", "-D"] + name, capture_output=True)
            else:
                ip("netns", "del", name, check=False)

    def leftovers(self):
        """What of ours the kernel still has (for the teardown assertion)."""
        links = ip("-o", "link", "show").stdout.decode()
        nss = ip("netns", "list").stdout.decode()
        return ([n for k, n in self._made if k == "link" and re.search(r"\d+: %s[:@]" % n, links)]
                + [n for k, n in self._made if k == "netns" and re.search(r"^%s\b" % n, nss, re.M)])


def netns_inode(netns):
    return os.stat("/run/netns/" + netns).st_ino


class NetnsAgent(Agent):
    """An Agent run inside a namespace: `ip netns exec NS trainyard agent ...`,
    listening on the host's address. `ip netns exec` execs the agent, so
    proc.pid is the agent's pid."""

    def __init__(self, base_dir, host):
        super().__init__(base_dir)
        self.host = host
        self.name = "h%d" % host.index

    def start(self, server, name=None, extra_args=(), work=None, cpus=CPUS_PER_HOST, gpus=0,
              grace=2, wait=True):
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
        argv = ["ip", "netns", "exec", self.host.netns,
                BIN, "agent", "--server", server.url, "--token", self.token,
                "--name", self.name, "--listen", self.host.ip + ":0", "--work", self.work,
                "--cpus", str(cpus), "--gpus", str(gpus), "--grace", str(grace),
                "--python", PYTHON] + list(extra_args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         cwd=self.base_dir)
        self.url = None
        if wait:
            self.wait_ready()
        return self


Cluster = namedtuple("Cluster", "srv agents net")


@pytest.fixture(scope="module")
def net():
    n = HostNet(HOSTS)
    try:
        try:
            n.create()
        except RuntimeError as e:
            n.cleanup()
            pytest.skip("cannot make test hosts in network namespaces: %s" % e)
        yield n
    finally:
        n.cleanup()
    assert not n.leftovers(), "left behind: %r" % n.leftovers()


@pytest.fixture(scope="module")
def dc(net, tmp_path_factory):
    """The server on the bridge address (node timeout 3 s) and one agent per host."""
    base = tmp_path_factory.mktemp("distributed")
    srv = Server(base / "data", ["--listen", net.gateway + ":0",
                                 "--node-timeout", str(NODE_TIMEOUT_S)])
    agents = [NetnsAgent(base, h) for h in net.hosts]
    try:
        srv.start()
        assert urllib.parse.urlsplit(srv.url).hostname == net.gateway, srv.url
        for a in agents:
            a.start(srv, wait=False)  # start all, then wait: their start-ups overlap
        for a in agents:
            a.wait_ready()
            # `ip netns exec` exec'd the agent: its pid is the agent's, in its namespace.
            assert os.path.realpath("/proc/%d/exe" % a.pid) == os.path.realpath(BIN), a.pid
            assert os.stat("/proc/%d/ns/net" % a.pid).st_ino == netns_inode(a.host.netns)
        yield Cluster(srv, agents, net)
    finally:
        errors = []
        for owner in agents + [srv]:
            try:
                if owner.alive():
                    owner.stop()
            except AssertionError as e:
                errors.append(e)
            finally:
                owner.cleanup()
        if errors:
            raise errors[0]


@pytest.fixture
def leftovers():
    """Pids a test saw; whatever is still alive is SIGKILLed at teardown."""
    pids = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------

def snapshot_of(srv, files):
    """Uploads {relative path: str|bytes} as a snapshot; returns its id."""
    members = []
    for rel in sorted(files):
        data = files[rel]
        members.append((rel, "file", data.encode() if isinstance(data, str) else data))
    return srv.upload_snapshot(make_tgz(members))["id"]


def example_snapshot(srv, name):
    d = os.path.join(EXAMPLES, name)
    files = {}
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if os.path.isfile(p) and not f.endswith(".pyc"):
            with open(p, "rb") as fh:
                files[f] = fh.read()
    assert "train.py" in files and "README.md" in files, d
    return snapshot_of(srv, files)


def py(code):
    return textwrap.dedent(code).lstrip()


def submit(srv, **spec):
    spec.setdefault("experiment", uniq("dist"))
    return srv.create_run(spec)


def get_run(srv, run_id):
    r = srv.get("/api/v1/runs/" + run_id)
    assert r.status == 200, r
    return r.body


def run_logs(srv, run_id, query=""):
    r = srv.get("/api/v1/runs/%s/logs%s" % (run_id, query))
    assert r.status == 200, r
    return r.body.decode("utf-8", "replace") if isinstance(r.body, bytes) else str(r.body)


def describe(srv, run_id):
    run = get_run(srv, run_id)
    return "run %s: status=%s attempt=%s error=%r reason=%r tasks=%s\nlogs:\n%s" % (
        run_id, run["status"], run.get("attempt"), run.get("error"), run.get("reason"),
        [(t["name"], t["status"], t.get("node"), t.get("exit_code")) for t in run["tasks"]],
        run_logs(srv, run_id)[-4000:])


def wait_run(srv, run_id, statuses=FINAL, timeout=RUN_TIMEOUT_S):
    statuses = (statuses,) if isinstance(statuses, str) else statuses

    def done():
        run = get_run(srv, run_id)
        return run if run["status"] in statuses else None
    return wait_for(done, timeout, lambda: "status in %r; %s" % (statuses, describe(srv, run_id)))


def wait_completed(srv, run_id, timeout=RUN_TIMEOUT_S):
    run = wait_run(srv, run_id, timeout=timeout)
    assert run["status"] == "completed", describe(srv, run_id)
    return run


def artifacts(srv, run_id):
    r = srv.get("/api/v1/runs/%s/artifacts" % run_id)
    assert r.status == 200, r
    return r.body["items"]


def artifact_json(srv, run_id, path):
    r = srv.get("/api/v1/runs/%s/artifacts/%s" % (run_id, urllib.parse.quote(path)))
    assert r.status == 200, (path, r)
    if isinstance(r.body, (dict, list)):
        return r.body
    return json.loads(r.body.decode("utf-8"))


def wait_artifacts(srv, run_id, paths, timeout=20.0, parse=True):
    """Outputs of tasks stopped at completion arrive after the run ended.
    Returns {path: parsed JSON} (parse=True) or the artifact items."""
    want = set(paths)
    wait_for(lambda: want <= {i["path"] for i in artifacts(srv, run_id)}, timeout,
             lambda: "artifacts %r; have %r" % (sorted(want), sorted(
                 i["path"] for i in artifacts(srv, run_id))))
    if not parse:
        return [i for i in artifacts(srv, run_id) if i["path"] in want]
    return {p: artifact_json(srv, run_id, p) for p in paths}


def tasks_by_name(run):
    return {t["name"]: t for t in run["tasks"]}


def node_host(srv, node):
    r = srv.get("/api/v1/nodes/" + node)
    assert r.status == 200, r
    return urllib.parse.urlsplit(r.body["agent_url"]).hostname


def agent_of_netns(dc, inode):
    for a in dc.agents:
        if netns_inode(a.host.netns) == inode:
            return a
    raise AssertionError("netns inode %r is none of the test hosts" % inode)


def read_pids(path, count=None, timeout=RUN_TIMEOUT_S):
    """Waits for `path` to hold whitespace-separated pids (count of them if given)."""
    def ready():
        try:
            with open(path) as f:
                words = f.read().split()
        except FileNotFoundError:
            return None
        return [int(w) for w in words] if words and (count is None or len(words) == count) else None
    return wait_for(ready, timeout, "pids in %s" % path)


def wait_gone(pids, timeout=5.0):
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout,
             lambda: "pids %r to be gone (alive: %r)" % (
                 pids, [p for p in pids if pid_alive(p)]), interval=0.05)


def descendants(pids):
    """Live (non-zombie) processes below any of pids."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(d))
    out, pending = [], list(pids)
    while pending:
        for c in children.get(pending.pop(), []):
            out.append(c)
            pending.append(c)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


# A task's record of itself: environment, pid, network namespace.
RECORD = """
import json, os
def record(name, **extra):
    out = os.environ["TRAINYARD_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    data = dict(extra, env=dict(os.environ), pid=os.getpid(),
                netns=os.stat("/proc/self/ns/net").st_ino)
    with open(os.path.join(out, name + ".tmp"), "w") as f:
        json.dump(data, f)
    os.rename(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    piddir = os.environ.get("PIDDIR")
    if piddir:
        with open(os.path.join(piddir, name + ".pid.tmp"), "w") as f:
            f.write(str(os.getpid()))
        os.rename(os.path.join(piddir, name + ".pid.tmp"), os.path.join(piddir, name + ".pid"))
"""


# --------------------------------------------------------------------------
# 1. ps: TF_CONFIG (§4 ps)
# --------------------------------------------------------------------------

PS_TASK = RECORD + py("""
    import sys, time
    kind, index = os.environ["TRAINYARD_TASK_TYPE"], os.environ["TRAINYARD_TASK_INDEX"]
    record("env-%s-%s.json" % (kind, index))
    if kind in ("ps", "evaluator"):
        time.sleep(60)  # serve until trainyard stops us (the run completes first)
        sys.exit(9)
    # The run completes with the chief, else with the workers: they let every
    # task record first (else a ps may be stopped before it has started).
    if kind == os.environ["LEADER"]:
        deadline = time.time() + 30
        while (len([f for f in os.listdir(os.environ["PIDDIR"]) if f.endswith(".pid")])
               < int(os.environ["EXPECT"]) and time.time() < deadline):
            time.sleep(0.05)
""")


def check_tf_configs(dc, run, envs):
    """envs: task name -> its record. Asserts SPEC §4's TF_CONFIG rules."""
    srv = dc.srv
    tasks = tasks_by_name(run)
    tf = {name: json.loads(rec["env"]["TF_CONFIG"]) for name, rec in envs.items()}
    in_cluster = [n for n in tasks if tasks[n]["type"] != "evaluator"]
    cluster = tf[in_cluster[0]]["cluster"]
    for name in in_cluster:
        assert tf[name]["cluster"] == cluster, (name, tf[name]["cluster"], cluster)
    for name, conf in tf.items():
        assert conf["environment"] == "cloud", conf
        assert conf["task"] == {"type": tasks[name]["type"], "index": tasks[name]["index"]}, (
            name, conf["task"])
    pairs = [(c["task"]["type"], c["task"]["index"]) for c in tf.values()]
    assert len(set(pairs)) == len(pairs), pairs
    assert "evaluator" not in cluster, cluster
    expected = {}
    for t in sorted(tasks.values(), key=lambda t: t["index"]):
        if t["type"] != "evaluator":
            expected.setdefault(t["type"], []).append(t["address"])
    assert cluster == expected, (cluster, expected)  # addresses in index order
    per_host = {}
    for name, t in tasks.items():
        rec = envs[name]
        host, port = t["address"].rsplit(":", 1)
        assert host == node_host(srv, t["node"]), (name, t["address"], t["node"])
        assert 0 < int(port) < 65536
        assert port not in per_host.setdefault(host, set()), (name, t["address"])
        per_host[host].add(port)
        assert rec["env"]["TRAINYARD_NODE"] == t["node"], name
        assert rec["env"]["TRAINYARD_TASK_TYPE"] == t["type"], name
        assert agent_of_netns(dc, rec["netns"]).name == t["node"], (name, t["node"])
    assert len({t["node"] for t in tasks.values()}) == run["spec"]["node_count"]
    if "evaluator" in tasks:
        own = dict(tf["evaluator"]["cluster"])
        mine = own.pop("evaluator", None)
        assert own == cluster, (own, cluster)
        assert mine in (None, [tasks["evaluator"]["address"]]), mine


@pytest.mark.parametrize("shape", [
    dict(node_count=2, worker_count=2, parameter_server_count=1),
    dict(node_count=3, worker_count=2, parameter_server_count=2, chief=True, evaluator=True),
], ids=["2ps-workers", "3chief-evaluator"])
def test_ps_tf_config(dc, tmp_path, leftovers, shape):
    srv = dc.srv
    names = (["chief"] if shape.get("chief") else []) + [
        "ps-%d" % i for i in range(shape["parameter_server_count"])] + [
        "worker-%d" % i for i in range(shape["worker_count"])] + (
        ["evaluator"] if shape.get("evaluator") else [])
    sid = snapshot_of(srv, {"task.py": PS_TASK})
    run = submit(srv, source=sid, entry_script="task.py", distributed_backend="ps",
                 environment_variables={"PIDDIR": str(tmp_path), "EXPECT": str(len(names)),
                                        "LEADER": "chief" if shape.get("chief") else "worker"},
                 **shape)
    done = wait_completed(srv, run["id"])
    tasks = tasks_by_name(done)
    assert sorted(tasks) == sorted(names), sorted(tasks)
    files = {n: "env-%s-%d.json" % (tasks[n]["type"], tasks[n]["index"]) for n in names}
    envs = wait_artifacts(srv, run["id"], files.values())
    envs = {n: envs[files[n]] for n in names}
    leftovers += [r["pid"] for r in envs.values()]
    check_tf_configs(dc, done, envs)
    # Completion: the chief, else every worker, succeeded; the rest were stopped.
    for n, t in tasks.items():
        if t["type"] in ("chief", "worker"):
            assert t["status"] == "succeeded" and t["exit_code"] == 0, t
        else:
            assert t["status"] == "killed", t
    wait_gone([envs[n]["pid"] for n in names if tasks[n]["type"] in ("ps", "evaluator")], 5.0)


# --------------------------------------------------------------------------
# 2. pytorch: the torchrun variables and a real gloo all_reduce (§4 pytorch)
# --------------------------------------------------------------------------

PT_TASK = RECORD + py("""
    import datetime
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    record("env-rank-%s.json" % os.environ["RANK"], sum=t.item(),
           world=dist.get_world_size(), rank=dist.get_rank())
    dist.barrier()
    dist.destroy_process_group()
""")


@needs_torch
def test_pytorch_env_and_gloo_all_reduce(dc):
    srv = dc.srv
    ppn, nodes = 2, 2
    world = ppn * nodes
    sid = snapshot_of(srv, {"task.py": PT_TASK})
    run = submit(srv, source=sid, entry_script="task.py", distributed_backend="pytorch",
                 node_count=nodes, process_count_per_node=ppn, environment_variables=GLOO)
    done = wait_completed(srv, run["id"])
    tasks = tasks_by_name(done)
    assert sorted(tasks) == ["rank-%d" % r for r in range(world)]
    recs = wait_artifacts(srv, run["id"], ["env-rank-%d.json" % r for r in range(world)])
    master = node_host(srv, tasks["rank-0"]["node"])
    ports = set()
    for r in range(world):
        rec, t = recs["env-rank-%d.json" % r], tasks["rank-%d" % r]
        e = rec["env"]
        assert (e["RANK"], e["WORLD_SIZE"]) == (str(r), str(world)), e
        assert (e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) == (str(r % ppn), str(ppn)), e
        assert e["NODE_RANK"] == e["GROUP_RANK"] == str(r // ppn), e
        assert e["MASTER_ADDR"] == master, (e["MASTER_ADDR"], master)
        ports.add(e["MASTER_PORT"])
        assert e["TRAINYARD_NODE"] == t["node"] and e["TRAINYARD_TASK_TYPE"] == "rank"
        assert agent_of_netns(dc, rec["netns"]).name == t["node"], (r, t["node"])
        assert rec["sum"] == world * (world + 1) / 2 and rec["world"] == world, rec
        assert rec["rank"] == r
    assert len(ports) == 1 and 0 < int(ports.pop()) < 65536
    assert len({tasks["rank-%d" % r]["node"] for r in range(world)}) == nodes
    for n in range(nodes):  # ranks n*ppn .. n*ppn+ppn-1 share node n
        assert len({tasks["rank-%d" % r]["node"] for r in range(n * ppn, (n + 1) * ppn)}) == 1
    if tasks["rank-0"].get("address"):
        assert tasks["rank-0"]["address"] == "%s:%s" % (master, recs["env-rank-0.json"][
            "env"]["MASTER_PORT"])


# --------------------------------------------------------------------------
# 3. mpi: ranks, placement, and where they run (§4 mpi)
# --------------------------------------------------------------------------

MPI_TASK = py("""
    import json, os, socket
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    info = {"rank": comm.Get_rank(), "size": comm.Get_size(), "hostname": socket.gethostname(),
            "processor": MPI.Get_processor_name(),
            "netns": os.stat("/proc/self/ns/net").st_ino, "pid": os.getpid(),
            "sum": comm.allreduce(comm.Get_rank(), op=MPI.SUM)}
    info.update({k: os.environ.get(k) for k in (
        "TRAINYARD_NODE", "TRAINYARD_TASK_TYPE", "TRAINYARD_TASK_INDEX",
        "TRAINYARD_OUTPUT_DIR", "CUDA_VISIBLE_DEVICES")})
    info["cwd"] = os.getcwd()
    out = os.environ["TRAINYARD_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "rank-%d.txt" % comm.Get_rank()), "w") as f:
        f.write("from rank %d\\n" % comm.Get_rank())
    os.write(1, ("RANKINFO %s\\n" % json.dumps(info)).encode())  # one write: ranks share a pipe
    comm.Barrier()
""")


def mpi_ranks(srv, run_id):
    text = run_logs(srv, run_id, "?task=launcher")
    infos = [json.loads(ln.split("RANKINFO ", 1)[1]) for ln in text.splitlines()
             if "RANKINFO " in ln]
    return {i["rank"]: i for i in infos}, text


def mpi_run(dc, ppn, nodes=2):
    srv = dc.srv
    sid = snapshot_of(srv, {"ranks.py": MPI_TASK})
    run = submit(srv, source=sid, entry_script="ranks.py", distributed_backend="mpi",
                 node_count=nodes, process_count_per_node=ppn)
    done = wait_completed(srv, run["id"])
    ranks, text = mpi_ranks(srv, run["id"])
    assert sorted(ranks) == list(range(nodes * ppn)), text[-3000:]
    return done, ranks


@needs_mpi
def test_mpi_rank_count_and_placement(dc):
    ppn, nodes = 2, 2
    done, ranks = mpi_run(dc, ppn, nodes)
    tasks = tasks_by_name(done)
    assert sorted(tasks) == ["launcher"] + ["worker-%d" % i for i in range(nodes)]
    assert tasks["launcher"]["node"] == tasks["worker-0"]["node"]
    assert tasks["launcher"]["status"] == "succeeded", done["tasks"]
    # A worker only holds its node's slots: it is stopped once the launcher is
    # done, and ends succeeded, not killed (killed is for cancel, deadline and
    # the gang rule, SPEC §3; the cancel test below sees those killed).
    assert all(tasks["worker-%d" % i]["status"] == "succeeded" and tasks["worker-%d" % i][
        "ended_at"] for i in range(nodes)), [(t["name"], t["status"]) for t in done["tasks"]]
    per_node = {}
    for r, info in ranks.items():
        assert info["size"] == nodes * ppn and info["sum"] == sum(range(nodes * ppn)), info
        node = agent_of_netns(dc, info["netns"]).name  # where the rank really ran
        per_node.setdefault(node, []).append(r)
    assert sorted(per_node) == sorted(tasks["worker-%d" % i]["node"] for i in range(nodes))
    for i in range(nodes):  # the hostfile's order: node rank i holds ranks i*ppn..
        assert sorted(per_node[tasks["worker-%d" % i]["node"]]) == list(
            range(i * ppn, (i + 1) * ppn)), per_node
    # What every rank wrote under $TRAINYARD_OUTPUT_DIR reaches the run's artifacts.
    items = wait_artifacts(dc.srv, done["id"], ["rank-%d.txt" % r for r in range(nodes * ppn)],
                           parse=False)
    assert all(i["size"] == len("from rank 0\n") for i in items), items


@needs_mpi
def test_mpi_ranks_run_as_their_nodes_worker_task(dc):
    """SPEC §4 mpi: what runs for the run on a node runs as part of that node's
    worker task (its environment, its GPUs)."""
    ppn, nodes = 1, 2
    done, ranks = mpi_run(dc, ppn, nodes)
    tasks = tasks_by_name(done)
    problems = []
    for r, info in sorted(ranks.items()):
        node = agent_of_netns(dc, info["netns"]).name
        worker = tasks["worker-%d" % (r // ppn)]
        if worker["node"] != node:
            problems.append("rank %d ran on %s, worker-%d is on %s" % (
                r, node, r // ppn, worker["node"]))
        if info["TRAINYARD_NODE"] != node:
            problems.append("rank %d on %s has TRAINYARD_NODE=%s" % (
                r, node, info["TRAINYARD_NODE"]))
        got = (info["TRAINYARD_TASK_TYPE"], info["TRAINYARD_TASK_INDEX"])
        if got != ("worker", str(r // ppn)):
            problems.append("rank %d has TRAINYARD_TASK_TYPE/INDEX %s/%s" % ((r,) + got))
        out = info["TRAINYARD_OUTPUT_DIR"] or ""
        if "-worker-%d/" % (r // ppn) not in out:
            problems.append("rank %d has TRAINYARD_OUTPUT_DIR %s" % (r, out))
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# 4. the examples train for real (examples/digits-{ps,ddp,mpi})
# --------------------------------------------------------------------------

EXAMPLE_SPECS = {
    "digits-ps": dict(distributed_backend="ps", node_count=2, worker_count=2,
                      parameter_server_count=1),
    "digits-ddp": dict(distributed_backend="pytorch", node_count=2, process_count_per_node=1),
    "digits-mpi": dict(distributed_backend="mpi", node_count=2, process_count_per_node=1),
    "digits-mpi-2x2": dict(distributed_backend="mpi", node_count=2, process_count_per_node=2),
}


@needs_torch
@pytest.mark.parametrize("example", sorted(EXAMPLE_SPECS))
def test_example_trains_across_hosts(dc, example):
    directory = example.split("-2x2")[0]
    if directory == "digits-mpi" and (_python_lacks("mpi4py") or shutil.which("mpirun") is None):
        pytest.skip("needs Open MPI's mpirun and mpi4py")
    srv = dc.srv
    run = submit(srv, experiment=directory, source=example_snapshot(srv, directory),
                 entry_script="train.py", environment_variables=GLOO,
                 **EXAMPLE_SPECS[example])
    done = wait_completed(srv, run["id"], timeout=120)
    assert done["metrics"].get("accuracy", 0) >= 0.9, (done["metrics"], describe(srv, run["id"]))
    assert {"loss", "val_loss"} <= set(done["metrics"]), done["metrics"]
    assert len({t["node"] for t in done["tasks"]}) == 2
    items = artifacts(srv, run["id"])
    models = [i for i in items if i["path"] == "model.pt"]
    assert len(models) == 1 and models[0]["size"] > 0, items  # saved by one process only
    summary = artifact_json(srv, run["id"], "metrics.json")
    assert summary["accuracy"] >= 0.9, summary
    r = srv.get("/api/v1/runs/%s/metrics/accuracy" % run["id"])
    assert r.status == 200 and len(r.body["points"]) >= 2, r


# --------------------------------------------------------------------------
# 5. the gang rule: a failing rank stops every other (§4)
# --------------------------------------------------------------------------

# Each rank writes its pid and its child's pid to $PIDDIR/rank-<RANK>; rank
# $FAIL_RANK exits 3 a second later, the others sleep.
SLEEPING_RANK = py("""
    import os, subprocess, sys, time
    rank = os.environ.get("RANK") or os.environ.get("OMPI_COMM_WORLD_RANK")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    path = os.path.join(os.environ["PIDDIR"], "rank-%s" % rank)
    with open(path + ".tmp", "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    os.rename(path + ".tmp", path)
    if rank == os.environ.get("FAIL_RANK"):
        time.sleep(1)
        print("rank %s fails" % rank, flush=True)
        os._exit(3)
    print("rank %s sleeps" % rank, flush=True)
    time.sleep(60)
""")


def test_failing_rank_stops_every_other_within_5s(dc, tmp_path, leftovers):
    srv = dc.srv
    world = 4
    sid = snapshot_of(srv, {"task.py": SLEEPING_RANK})
    run = submit(srv, source=sid, entry_script="task.py", distributed_backend="pytorch",
                 node_count=2, process_count_per_node=2,
                 environment_variables={"PIDDIR": str(tmp_path), "FAIL_RANK": "3"})
    pids = {r: read_pids(str(tmp_path / ("rank-%d" % r)), 2) for r in range(world)}
    for p in pids.values():
        leftovers.extend(p)
    failing = pids[3][0]
    wait_for(lambda: not pid_alive(failing), 15, "rank 3 (pid %d) to exit" % failing,
             interval=0.02)
    failed_at = time.monotonic()
    others = [p for r in range(world) for p in pids[r] if p != failing]
    wait_for(lambda: not any(pid_alive(p) for p in others),
             max(0.1, failed_at + 5.0 - time.monotonic()),
             lambda: "every other process gone within 5 s of rank 3's exit (alive: %r)" % (
                 [(p, cmdline(p)) for p in others if pid_alive(p)],), interval=0.05)
    done = wait_run(srv, run["id"], timeout=15)
    assert done["status"] == "failed", describe(srv, run["id"])
    assert "rank-3" in done["error"] and re.search(r"\b3\b", done["error"].replace(
        "rank-3", "")), done["error"]
    tasks = tasks_by_name(done)
    assert tasks["rank-3"]["status"] == "failed" and tasks["rank-3"]["exit_code"] == 3, tasks
    for r in range(3):
        assert tasks["rank-%d" % r]["status"] == "killed", tasks


# --------------------------------------------------------------------------
# 6. cancel leaves nothing on any host (§3.2 cancel)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["pytorch", pytest.param("mpi", marks=needs_mpi)])
def test_cancel_leaves_no_process_on_any_host(dc, tmp_path, leftovers, backend):
    srv = dc.srv
    sid = snapshot_of(srv, {"task.py": SLEEPING_RANK})
    run = submit(srv, source=sid, entry_script="task.py", distributed_backend=backend,
                 node_count=2, process_count_per_node=1,
                 environment_variables={"PIDDIR": str(tmp_path)})
    pids = [p for r in range(2) for p in read_pids(str(tmp_path / ("rank-%d" % r)), 2)]
    leftovers.extend(pids)
    running = wait_run(srv, run["id"], "running")
    nodes = {t["node"] for t in running["tasks"]}
    assert len(nodes) == 2, running["tasks"]
    agent_pids = [a.pid for a in dc.agents if a.name in nodes]
    below = descendants(agent_pids)
    leftovers.extend(below)
    assert set(pids) <= set(below), (pids, below)  # the test sees the whole tree
    r = srv.post("/api/v1/runs/%s/cancel" % run["id"], {})
    assert r.status == 200 and r.body["status"] == "canceled", r
    wait_gone(below, 5.0)
    assert not descendants(agent_pids), [(p, cmdline(p)) for p in descendants(agent_pids)]
    done = get_run(srv, run["id"])
    assert done["status"] == "canceled"
    wait_for(lambda: all(t["status"] == "killed" for t in get_run(srv, run["id"])["tasks"]),
             10, lambda: describe(srv, run["id"]))


# --------------------------------------------------------------------------
# 7. a node lost mid-run: retried on the remaining nodes (§4 gang rule, §7)
# --------------------------------------------------------------------------

# Attempt 1 (no marker for this rank yet): record pids, make the marker, sleep.
# Attempt 2: a real gloo all_reduce across the two hosts it got.
RETRIED_RANK = RECORD + py("""
    import sys, time
    rank = os.environ["RANK"]
    marker = os.path.join(os.environ["PIDDIR"], "marker-%s" % rank)
    if not os.path.exists(marker):
        record("attempt1-rank-%s.json" % rank)
        open(marker, "w").close()
        time.sleep(60)
        sys.exit(0)
    import datetime
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    record("attempt2-rank-%s.json" % rank, sum=t.item())
    dist.barrier()
    dist.destroy_process_group()
""")


@needs_torch
def test_node_lost_mid_run_is_retried_on_the_remaining_nodes(dc, tmp_path, leftovers):
    srv = dc.srv
    sid = snapshot_of(srv, {"task.py": RETRIED_RANK})
    run = submit(srv, source=sid, entry_script="task.py", distributed_backend="pytorch",
                 node_count=2, process_count_per_node=1, max_retries=1,
                 environment_variables=dict(GLOO, PIDDIR=str(tmp_path)))
    pids = [read_pids(str(tmp_path / ("attempt1-rank-%d.json.pid" % r)), 1)[0] for r in range(2)]
    leftovers.extend(pids)
    first = wait_run(srv, run["id"], "running")
    assert first["attempt"] == 1
    t1 = tasks_by_name(first)
    doomed = next(a for a in dc.agents if a.name == t1["rank-1"]["node"])
    survivor = t1["rank-0"]["node"]
    try:
        doomed.kill()
        killed_at = time.monotonic()
        wait_for(lambda: srv.get("/api/v1/nodes/" + doomed.name).body["state"] == "down",
                 NODE_TIMEOUT_S + 10, "node %s down" % doomed.name)
        # The surviving rank is stopped within 5 s of its node being lost
        # (SIGTERM; it does not ignore it).
        wait_for(lambda: not pid_alive(pids[0]), max(
            0.1, killed_at + NODE_TIMEOUT_S + 2 + 5 - time.monotonic()),
            lambda: "rank 0 of attempt 1 (pid %d) stopped; %s" % (
                pids[0], describe(srv, run["id"])), interval=0.05)
        done = wait_completed(srv, run["id"], timeout=60)
        assert done["attempt"] == 2, done
        nodes2 = {t["node"] for t in done["tasks"]}
        assert len(nodes2) == 2 and doomed.name not in nodes2 and survivor in nodes2, done["tasks"]
        recs = wait_artifacts(srv, run["id"], ["attempt2-rank-%d.json" % r for r in range(2)])
        for r in range(2):
            assert recs["attempt2-rank-%d.json" % r]["sum"] == 3.0, recs
            assert agent_of_netns(dc, recs["attempt2-rank-%d.json" % r]["netns"]).name != \
                doomed.name
        r = srv.get("/api/v1/nodes/" + doomed.name)
        assert r.body["state"] == "down", r.body
    finally:
        # Put the cluster back: the restarted agent also kills what the old one left.
        if not doomed.alive():
            doomed.start(srv)
    wait_gone(pids, 10.0)
