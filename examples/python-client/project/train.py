"""A tiny training script for the Python client example: fits y = 3x + 1 by
gradient descent, reports the loss as a metric and saves the model."""

import argparse
import json
import os

import trainyard

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

data = [(x / 10.0, 3 * x / 10.0 + 1) for x in range(10)]
w, b = 0.0, 0.0
for epoch in range(args.epochs):
    gw = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
    gb = sum(2 * (w * x + b - y) for x, y in data) / len(data)
    w, b = w - args.lr * gw, b - args.lr * gb
    loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
    trainyard.log("loss", loss, step=epoch)
print("trained: w=%.3f b=%.3f" % (w, b))

with open(os.path.join(trainyard.output_dir(), "model.json"), "w") as f:
    json.dump({"w": w, "b": b}, f)
