#!/usr/bin/env python3
"""trainyard example: Horovod-style data-parallel SGD over MPI (mpi4py) on scikit-learn's digits.

Horovod's algorithm with plain mpi4py: rank 0's initial weights are broadcast
to every rank; each rank computes the gradients of its share of every
minibatch; one MPI Allreduce per step sums the gradients (one flat buffer),
every rank divides by the world size and applies the same Adam step, so the
replicas stay identical. trainyard's `distributed_backend: "mpi"` starts the
ranks with mpirun; this script only needs MPI.COMM_WORLD.

Rank 0 reports loss / accuracy / val_loss per epoch (every rank's stdout
reaches the launcher) and writes model.pt and metrics.json to
$TRAINYARD_OUTPUT_DIR. Exits 1 if the final validation accuracy is below 0.9.

    mpirun -np 2 python3 train.py --epochs 20 --lr 0.01 --batch-size 64
"""

import argparse
import json
import math
import os
import sys
import time

try:
    import trainyard
except ImportError:  # run outside trainyard: print the same ##metric lines ourselves
    trainyard = None

import numpy as np
import torch
from mpi4py import MPI
from torch import nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
MIN_ACCURACY = 0.9


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
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64, help="global, split over the ranks")
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
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate(model, loss_fn, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = loss_fn(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def broadcast_parameters(comm, model):
    """hvd.broadcast_parameters(model.state_dict(), root_rank=0)."""
    for p in model.parameters():
        buf = p.data.numpy()  # shares memory with the parameter
        comm.Bcast(buf, root=0)


def allreduce_gradients(comm, model, size):
    """hvd.DistributedOptimizer: one fused Allreduce of every gradient, then average."""
    params = list(model.parameters())
    flat = np.concatenate([p.grad.numpy().ravel() for p in params])
    comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    flat /= size
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(torch.from_numpy(flat[offset:offset + n]).view_as(p.grad))
        offset += n


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    torch.manual_seed(SEED + rank)  # different on purpose: the broadcast makes them equal

    x_tr, y_tr, x_va, y_va = load_data()
    model = build_model()
    broadcast_parameters(comm, model)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    shuffle = torch.Generator().manual_seed(SEED)  # the same order on every rank
    n = x_tr.shape[0]
    local_batch = max(1, args.batch_size // size)
    global_batch = local_batch * size
    steps = n // global_batch  # every rank takes the same number of steps
    if rank == 0:
        print("digits-mpi: %d ranks, %d train / %d validation samples, epochs=%d lr=%g "
              "batch_size=%d (%d per rank), %s"
              % (size, n, x_va.shape[0], args.epochs, args.lr, global_batch, local_batch,
                 MPI.Get_library_version().split(",")[0].strip("\0 \n")), flush=True)

    val_loss = accuracy = train_loss = float("nan")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        total = 0.0
        for s in range(steps):
            batch = order[s * global_batch:(s + 1) * global_batch]
            idx = batch[rank::size]  # this rank's share of the global batch
            optimizer.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            allreduce_gradients(comm, model, size)
            optimizer.step()
            total += loss.item()
        train_loss = comm.allreduce(total, op=MPI.SUM) / (steps * size)
        val_loss, accuracy = evaluate(model, loss_fn, x_va, y_va)
        if not all(math.isfinite(v) for v in (train_loss, val_loss)):
            if rank == 0:
                print("epoch %d: loss diverged (try a smaller --lr)" % (epoch + 1), flush=True)
            break
        if rank == 0:
            log_metrics({"loss": train_loss, "accuracy": accuracy, "val_loss": val_loss}, epoch)
            print("epoch %3d/%d  loss %.4f  val_loss %.4f  accuracy %.4f"
                  % (epoch + 1, args.epochs, train_loss, val_loss, accuracy), flush=True)

    elapsed = time.time() - started
    if rank == 0:
        out = output_dir()
        torch.save(model.state_dict(), os.path.join(out, "model.pt"))
        summary = {
            "accuracy": accuracy if math.isfinite(accuracy) else None,
            "val_loss": val_loss if math.isfinite(val_loss) else None,
            "loss": train_loss if math.isfinite(train_loss) else None,
            "ranks": size, "epochs": args.epochs, "lr": args.lr,
            "batch_size": global_batch, "seconds": round(elapsed, 3),
        }
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        print("final validation accuracy %.4f (%.1f s); outputs in %s"
              % (accuracy, elapsed, out), flush=True)
    comm.Barrier()

    if not accuracy >= MIN_ACCURACY:  # also catches NaN; the same on every rank
        print("FAILED: rank %d: accuracy %.4f is below %.2f" % (rank, accuracy, MIN_ACCURACY),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
