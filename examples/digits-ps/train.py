#!/usr/bin/env python3
"""trainyard example: parameter-server training driven by TF_CONFIG, on scikit-learn's digits.

The roles and addresses come only from the TF_CONFIG environment variable
that trainyard sets for `distributed_backend: "ps"`:

    {"cluster": {"chief": [...], "ps": ["host:port", ...], "worker": [...]},
     "task": {"type": "worker", "index": 1}, "environment": "cloud"}

- ps: holds a share of the weights of a 64-64-10 MLP (parameter tensor i lives
  on ps i % len(ps)) and its Adam state, and serves them over plain TCP at the
  port of its TF_CONFIG address: `pull` returns the weights, `push` applies a
  gradient (asynchronous SGD, like TensorFlow's classic parameter servers).
  It serves until it is stopped (trainyard stops the parameter servers when
  the run completes).
- chief and workers ("trainers"): each takes its share of the training split,
  and for every minibatch pulls the weights, computes the gradient and pushes
  it. When a trainer is done it tells ps 0.
- the chief, or worker 0 without one (the "leader"), also reports loss /
  accuracy / val_loss per epoch, waits until every trainer is done, evaluates
  the final weights, writes model.pt and metrics.json to $TRAINYARD_OUTPUT_DIR
  and exits 1 if the validation accuracy is below 0.9.
- evaluator (optional, not in the cluster): evaluates the current weights every
  second and reports eval_accuracy until it is stopped.

Without TF_CONFIG it runs a whole cluster (one ps thread, one worker) in one process.

    python3 train.py --epochs 20 --lr 0.01 --batch-size 32
"""

import argparse
import json
import math
import os
import socket
import socketserver
import struct
import sys
import threading
import time

try:
    import trainyard
except ImportError:  # run outside trainyard: print the same ##metric lines ourselves
    trainyard = None

import numpy as np
import torch
from torch import nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
MIN_ACCURACY = 0.9
CONNECT_TIMEOUT_S = 60.0  # parameter servers may start after the workers
DONE_TIMEOUT_S = 120.0    # how long the leader waits for the other trainers


def log_metrics(metrics, step):
    if trainyard is not None:
        trainyard.log_many(metrics, step=step)
        return
    payload = dict(metrics)
    payload["step"] = step
    sys.stdout.write("##metric " + json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def output_dir():
    if trainyard is not None:
        return trainyard.output_dir()
    path = os.environ.get("TRAINYARD_OUTPUT_DIR") or "./outputs"
    os.makedirs(path, exist_ok=True)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20, help="per trainer, over its share")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32, help="per trainer")
    p.add_argument("--stop-ps", action="store_true",
                   help="the leader stops the parameter servers at the end (outside trainyard)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not (args.lr > 0 and math.isfinite(args.lr)):
        p.error("--epochs and --batch-size must be >= 1 and --lr > 0")
    return args


def load_data():
    digits = load_digits()
    x = digits.data.astype("float32") / 16.0  # pixel values are 0..16
    y = digits.target.astype("int64")
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr),
            torch.from_numpy(x_va), torch.from_numpy(y_va))


def build_model():
    torch.manual_seed(SEED)  # every task builds the same initial weights
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate(model, loss_fn, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = loss_fn(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def shard_of(params, ps_index, num_ps):
    """The parameter tensors ps `ps_index` holds (round-robin, like TF's placer)."""
    return [p for i, p in enumerate(params) if i % num_ps == ps_index]


# ---------------------------------------------------------------------------
# wire format: 4-byte big-endian header length, JSON header, then
# header["nbytes"] bytes of float32 payload (the shard's tensors, concatenated)

def send_msg(sock, header, payload=b""):
    header = dict(header, nbytes=len(payload))
    head = json.dumps(header).encode()
    sock.sendall(struct.pack(">I", len(head)) + head + payload)


def recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_msg(sock):
    (n,) = struct.unpack(">I", recv_exact(sock, 4))
    if n > 1 << 16:
        raise ConnectionError("header too large")
    header = json.loads(recv_exact(sock, n).decode())
    nbytes = int(header.get("nbytes", 0))
    if nbytes < 0 or nbytes > 1 << 28:
        raise ConnectionError("payload too large")
    return header, recv_exact(sock, nbytes) if nbytes else b""


def flatten(tensors):
    if not tensors:
        return b""
    return np.concatenate([t.detach().numpy().ravel() for t in tensors]).astype("<f4").tobytes()


def unflatten_into(tensors, payload):
    flat = np.frombuffer(payload, dtype="<f4")
    want = sum(t.numel() for t in tensors)
    if flat.size != want:
        raise ValueError("expected %d values, got %d" % (want, flat.size))
    offset = 0
    out = []
    for t in tensors:
        n = t.numel()
        out.append(torch.from_numpy(flat[offset:offset + n].copy()).view_as(t))
        offset += n
    return out


# ---------------------------------------------------------------------------
# parameter server

class ParameterStore:
    def __init__(self, ps_index, num_ps, lr):
        self.params = shard_of(list(build_model().parameters()), ps_index, num_ps)
        self.optimizer = torch.optim.Adam(self.params, lr=lr) if self.params else None
        self.lock = threading.Lock()
        self.version = 0
        self.done = set()
        self.stopping = threading.Event()

    def handle(self, header, payload):
        op = header.get("op")
        with self.lock:
            if op == "pull":
                return {"version": self.version}, flatten(self.params)
            if op == "push":
                grads = unflatten_into(self.params, payload)
                for p, g in zip(self.params, grads):
                    p.grad = g
                if self.optimizer is not None:
                    self.optimizer.step()
                self.version += 1
                return {"version": self.version}, b""
            if op == "done":
                self.done.add(str(header.get("who")))
                return {"done": sorted(self.done)}, b""
            if op == "status":
                return {"version": self.version, "done": sorted(self.done)}, b""
            if op == "stop":
                self.stopping.set()
                return {"stopping": True}, b""
        return {"error": "unknown op %r" % (op,)}, b""


def make_server(store, port, host=""):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    header, payload = recv_msg(self.request)
                except (ConnectionError, OSError, ValueError):
                    return
                try:
                    reply, data = store.handle(header, payload)
                except ValueError as exc:
                    reply, data = {"error": str(exc)}, b""
                send_msg(self.request, reply, data)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    return Server((host, port), Handler)


def run_ps(address, ps_index, num_ps, args):
    port = int(address.rsplit(":", 1)[1])
    store = ParameterStore(ps_index, num_ps, args.lr)
    server = make_server(store, port)
    print("ps %d: serving %d tensors on port %d (for %s)"
          % (ps_index, len(store.params), port, address), flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store.stopping.wait()  # until a leader started with --stop-ps says so, or a signal
    server.shutdown()
    print("ps %d: stopped after %d updates" % (ps_index, store.version), flush=True)
    return 0


# ---------------------------------------------------------------------------
# trainers

class PSClient:
    """One connection per parameter server; pull/push the whole model."""

    def __init__(self, ps_addresses, model):
        self.params = list(model.parameters())
        num_ps = len(ps_addresses)
        self.shards = [shard_of(self.params, i, num_ps) for i in range(num_ps)]
        self.socks = [self._connect(a) for a in ps_addresses]

    @staticmethod
    def _connect(address):
        host, port = address.rsplit(":", 1)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                sock = socket.create_connection((host, int(port)), timeout=30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ConnectionError("cannot reach parameter server %s: %s" % (address, exc))
                time.sleep(0.2)

    def call(self, i, header, payload=b""):
        send_msg(self.socks[i], header, payload)
        reply, data = recv_msg(self.socks[i])
        if "error" in reply:
            raise RuntimeError("ps %d: %s" % (i, reply["error"]))
        return reply, data

    def pull(self):
        with torch.no_grad():
            for i, shard in enumerate(self.shards):
                _, data = self.call(i, {"op": "pull"})
                for p, v in zip(shard, unflatten_into(shard, data)):
                    p.copy_(v)

    def push(self):
        for i, shard in enumerate(self.shards):
            self.call(i, {"op": "push"}, flatten([p.grad for p in shard]))

    def close(self):
        for s in self.socks:
            s.close()


def run_trainer(cluster, task_type, task_index, args):
    trainers = ["chief:%d" % i for i in range(len(cluster.get("chief", [])))]
    trainers += ["worker:%d" % i for i in range(len(cluster.get("worker", [])))]
    me = "%s:%d" % (task_type, task_index)
    rank = trainers.index(me)
    leader = rank == 0  # the chief, else worker 0
    x_tr, y_tr, x_va, y_va = load_data()
    x_mine, y_mine = x_tr[rank::len(trainers)], y_tr[rank::len(trainers)]
    model = build_model()
    loss_fn = nn.CrossEntropyLoss()
    client = PSClient(cluster["ps"], model)
    shuffle = torch.Generator().manual_seed(SEED + rank)
    n = x_mine.shape[0]
    print("%s: trainer %d of %d, %d samples, %d parameter servers%s"
          % (me, rank, len(trainers), n, len(cluster["ps"]), " (leader)" if leader else ""),
          flush=True)

    val_loss = accuracy = train_loss = float("nan")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        total = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i:i + args.batch_size]
            client.pull()
            model.zero_grad()
            loss = loss_fn(model(x_mine[idx]), y_mine[idx])
            loss.backward()
            client.push()
            total += loss.item() * idx.shape[0]
        train_loss = total / n
        if leader:
            client.pull()
            val_loss, accuracy = evaluate(model, loss_fn, x_va, y_va)
            if not all(math.isfinite(v) for v in (train_loss, val_loss)):
                print("epoch %d: loss diverged (try a smaller --lr)" % (epoch + 1), flush=True)
                break
            log_metrics({"loss": train_loss, "accuracy": accuracy, "val_loss": val_loss}, epoch)
            print("epoch %3d/%d  loss %.4f  val_loss %.4f  accuracy %.4f"
                  % (epoch + 1, args.epochs, train_loss, val_loss, accuracy), flush=True)

    client.call(0, {"op": "done", "who": me})
    if not leader:
        print("%s: done" % me, flush=True)
        client.close()
        return 0

    deadline = time.monotonic() + DONE_TIMEOUT_S
    while True:  # the final weights include every trainer's updates
        reply, _ = client.call(0, {"op": "status"})
        if len(reply["done"]) >= len(trainers):
            break
        if time.monotonic() > deadline:
            print("FAILED: trainers %s did not finish within %.0f s"
                  % (sorted(set(trainers) - set(reply["done"])), DONE_TIMEOUT_S), file=sys.stderr)
            return 1
        time.sleep(0.1)
    client.pull()
    val_loss, accuracy = evaluate(model, loss_fn, x_va, y_va)
    log_metrics({"accuracy": accuracy, "val_loss": val_loss}, args.epochs)
    out = output_dir()
    torch.save(model.state_dict(), os.path.join(out, "model.pt"))
    summary = {
        "accuracy": accuracy if math.isfinite(accuracy) else None,
        "val_loss": val_loss if math.isfinite(val_loss) else None,
        "loss": train_loss if math.isfinite(train_loss) else None,
        "trainers": len(trainers), "parameter_servers": len(cluster["ps"]),
        "updates": reply["version"], "epochs": args.epochs, "lr": args.lr,
        "batch_size": args.batch_size,
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print("final validation accuracy %.4f after %d updates; outputs in %s"
          % (accuracy, reply["version"], out), flush=True)
    if args.stop_ps:
        for i in range(len(cluster["ps"])):
            client.call(i, {"op": "stop"})
    client.close()
    if not accuracy >= MIN_ACCURACY:  # also catches NaN
        print("FAILED: accuracy %.4f is below %.2f" % (accuracy, MIN_ACCURACY), file=sys.stderr)
        return 1
    return 0


def run_evaluator(cluster, args):
    """Evaluates the current weights every second until stopped (or the ps go away)."""
    _, _, x_va, y_va = load_data()
    model = build_model()
    loss_fn = nn.CrossEntropyLoss()
    client = PSClient(cluster["ps"], model)
    step = 0
    while True:
        try:
            client.pull()
            version = client.call(0, {"op": "status"})[0]["version"]
        except (ConnectionError, OSError):
            print("evaluator: parameter servers gone; exiting", flush=True)
            return 0
        val_loss, accuracy = evaluate(model, loss_fn, x_va, y_va)
        log_metrics({"eval_accuracy": accuracy, "eval_loss": val_loss}, step)
        print("evaluator: %d updates  eval_accuracy %.4f" % (version, accuracy), flush=True)
        step += 1
        time.sleep(1.0)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    raw = os.environ.get("TF_CONFIG")
    if not raw:  # a whole cluster in this process: one ps thread, one worker
        store = ParameterStore(0, 1, args.lr)
        server = make_server(store, 0, "127.0.0.1")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        cluster = {"ps": ["127.0.0.1:%d" % server.server_address[1]], "worker": ["local"]}
        return run_trainer(cluster, "worker", 0, args)
    config = json.loads(raw)
    cluster, task = config["cluster"], config["task"]
    task_type, task_index = task["type"], int(task["index"])
    if task_type == "ps":
        return run_ps(cluster["ps"][task_index], task_index, len(cluster["ps"]), args)
    if task_type in ("chief", "worker"):
        return run_trainer(cluster, task_type, task_index, args)
    if task_type == "evaluator":
        return run_evaluator(cluster, args)
    print("unknown task type %r in TF_CONFIG" % task_type, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
