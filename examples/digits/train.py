#!/usr/bin/env python3
"""trainyard demo experiment: a small PyTorch MLP on scikit-learn's 8x8 digits.

Trains a 64-64-10 multilayer perceptron on the digits data bundled with
scikit-learn (no download), reports loss / accuracy / val_loss for every epoch
as trainyard metrics, and writes model.pt, metrics.json and (if the export
works) model.onnx to $TRAINYARD_OUTPUT_DIR (./outputs outside trainyard).

Exits 1 if the final validation accuracy is below 0.9.

    python3 train.py --epochs 30 --lr 0.01 --batch-size 32 --hidden 64

A sweep over it (examples/digits-sweep) passes --min-accuracy 0: a trial
with a poor learning rate is a result, not a failure.
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

import torch
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
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64, help="units of the hidden layer")
    p.add_argument("--min-accuracy", type=float, default=MIN_ACCURACY,
                   help="exit 1 below this final validation accuracy (0: never)")
    args = p.parse_args(argv)
    if (args.epochs < 1 or args.batch_size < 1 or args.hidden < 1
            or not (args.lr > 0 and math.isfinite(args.lr))):
        p.error("--epochs, --batch-size and --hidden must be >= 1 and --lr > 0")
    return args


def load_data():
    digits = load_digits()
    x = digits.data.astype("float32") / 16.0  # pixel values are 0..16
    y = digits.target.astype("int64")
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    return (
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_va),
        torch.from_numpy(y_va),
    )


def build_model(hidden):
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def evaluate(model, loss_fn, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = loss_fn(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def export_onnx(model, path):
    try:
        import torch.onnx

        model.eval()
        torch.onnx.export(
            model,
            torch.zeros(1, 64),
            path,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        )
        print("exported ONNX model to %s" % path, flush=True)
        return True
    except Exception as exc:  # optional: never fail the run for it
        try:
            os.remove(path)
        except OSError:
            pass
        print("note: ONNX export skipped (%s: %s)" % (type(exc).__name__, exc), flush=True)
        return False


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)

    x_tr, y_tr, x_va, y_va = load_data()
    model = build_model(args.hidden)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    shuffle = torch.Generator().manual_seed(SEED)
    n = x_tr.shape[0]
    print(
        "digits: %d train / %d validation samples, epochs=%d lr=%g batch_size=%d hidden=%d"
        % (n, x_va.shape[0], args.epochs, args.lr, args.batch_size, args.hidden),
        flush=True,
    )

    val_loss = accuracy = train_loss = float("nan")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        total = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i : i + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * idx.shape[0]
        train_loss = total / n
        val_loss, accuracy = evaluate(model, loss_fn, x_va, y_va)
        if not all(math.isfinite(v) for v in (train_loss, val_loss)):
            print("epoch %d: loss diverged (try a smaller --lr)" % (epoch + 1), flush=True)
            break
        log_metrics({"loss": train_loss, "accuracy": accuracy, "val_loss": val_loss}, epoch)
        print(
            "epoch %3d/%d  loss %.4f  val_loss %.4f  accuracy %.4f"
            % (epoch + 1, args.epochs, train_loss, val_loss, accuracy),
            flush=True,
        )

    out = output_dir()
    torch.save(model.state_dict(), os.path.join(out, "model.pt"))
    onnx_ok = export_onnx(model, os.path.join(out, "model.onnx"))
    elapsed = time.time() - started
    summary = {
        "accuracy": accuracy if math.isfinite(accuracy) else None,
        "val_loss": val_loss if math.isfinite(val_loss) else None,
        "loss": train_loss if math.isfinite(train_loss) else None,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "onnx": onnx_ok,
        "seconds": round(elapsed, 3),
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print("final validation accuracy %.4f (%.1f s); outputs in %s" % (accuracy, elapsed, out), flush=True)

    if args.min_accuracy > 0 and not accuracy >= args.min_accuracy:  # also catches NaN
        print("FAILED: accuracy %.4f is below %.2f" % (accuracy, args.min_accuracy),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
