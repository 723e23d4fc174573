#!/usr/bin/env python3
"""trainyard example: PyTorch DistributedDataParallel (gloo) on scikit-learn's digits.

Every rank trains the same 64-64-10 MLP on its DistributedSampler share of the
training split; DistributedDataParallel averages the gradients over gloo after
each backward pass, so the replicas stay identical. The process group comes
from the torchrun variables trainyard sets for `distributed_backend: "pytorch"`
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK). Rank 0 reports
loss / accuracy / val_loss per epoch and writes model.pt and metrics.json to
$TRAINYARD_OUTPUT_DIR.

Exits 1 if the final validation accuracy is below 0.9 (every rank sees the
same model, so every rank decides the same).

    python3 train.py --epochs 20 --lr 0.01 --batch-size 32
"""

import argparse
import datetime
import json
import math
import os
import sys
import time

try:
    import trainyard
except ImportError:  # run outside trainyard: print the same ##metric lines ourselves
    trainyard = None

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler
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
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
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


def init_process_group():
    """The torchrun variables; alone (no WORLD_SIZE) it is a world of one."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    return rank, world


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)  # same initial weights everywhere (DDP also broadcasts rank 0's)

    rank, world = init_process_group()
    x_tr, y_tr, x_va, y_va = load_data()
    train_set = TensorDataset(x_tr, y_tr)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=SEED)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    model = DistributedDataParallel(build_model())
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if rank == 0:
        print("digits-ddp: world %d, %d train / %d validation samples (%d per rank), "
              "epochs=%d lr=%g batch_size=%d per rank"
              % (world, len(train_set), x_va.shape[0], len(sampler), args.epochs, args.lr,
                 args.batch_size), flush=True)

    val_loss = accuracy = train_loss = float("nan")
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        sums = torch.zeros(2, dtype=torch.float64)  # loss * samples, samples
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()  # DDP all-reduces (averages) the gradients here
            optimizer.step()
            sums += torch.tensor([loss.item() * xb.shape[0], xb.shape[0]], dtype=torch.float64)
        dist.all_reduce(sums)  # the epoch's training loss over every rank
        train_loss = (sums[0] / sums[1]).item()
        val_loss, accuracy = evaluate(model.module, loss_fn, x_va, y_va)
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
        torch.save(model.module.state_dict(), os.path.join(out, "model.pt"))
        summary = {
            "accuracy": accuracy if math.isfinite(accuracy) else None,
            "val_loss": val_loss if math.isfinite(val_loss) else None,
            "loss": train_loss if math.isfinite(train_loss) else None,
            "world_size": world, "epochs": args.epochs, "lr": args.lr,
            "batch_size": args.batch_size, "seconds": round(elapsed, 3),
        }
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        print("final validation accuracy %.4f (%.1f s); outputs in %s"
              % (accuracy, elapsed, out), flush=True)
    dist.barrier()  # rank 0 has saved before anyone leaves the group
    dist.destroy_process_group()

    if not accuracy >= MIN_ACCURACY:  # also catches NaN
        print("FAILED: rank %d: accuracy %.4f is below %.2f" % (rank, accuracy, MIN_ACCURACY),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
