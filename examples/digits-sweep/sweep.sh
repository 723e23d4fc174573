#!/bin/sh
# Starts the digits sweep of README.md on the dev cluster of `make run`
# (server URL and token from ./var) and follows it.
set -eu
cd "$(dirname "$0")/../.."
BIN=${TRAINYARD_BIN:-bin/trainyard}
exec "$BIN" sweep examples/digits --entry train.py --param --min-accuracy=0 \
    --search 'lr=loguniform(-9,-2)' --search 'hidden=choice(16,32,64,128)' \
    --search 'epochs=choice(10,20,40)' \
    --sampling bayesian --metric accuracy --goal max --runs 24 --concurrent 2 \
    --policy 'bandit(slack=0.1,interval=1,delay=5)' --experiment digits-sweep --follow "$@"
