#!/usr/bin/python3
"""sweep_optuna.py (bench) - the peer's half of S2 in-process (issue 12):
Optuna's TPESampler, default settings, seeded, on the functions and spaces
of bench/sweep.c (Branin, Hartmann-6, a 10-dimensional Rosenbrock with 3
choice dimensions), 50 trials, median over 10 seeds of the best value.

Usage: /usr/bin/python3 bench/sweep_optuna.py [--multivariate] [--random] [--seeds N]
(--multivariate: TPESampler(multivariate=True); --random: RandomSampler).
"""
import math
import statistics
import sys
import warnings

import optuna

TRIALS = 50
SEEDS = 10
CHOICES = [-2, -1, -0.5, 0, 0.5, 1, 1.5, 2]


def branin(trial):
    x1 = trial.suggest_float("x1", -5, 10)
    x2 = trial.suggest_float("x2", 0, 15)
    b = 5.1 / (4 * math.pi**2)
    c = 5 / math.pi
    t = 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
     [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
     [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
     [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]


def hartmann6(trial):
    x = [trial.suggest_float("x%d" % (j + 1), 0, 1) for j in range(6)]
    y = 0.0
    for i in range(4):
        s = sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))
        y -= ALPHA[i] * math.exp(-s)
    return y


def rosenbrock10(trial):
    x = []
    for j in range(10):
        if j in (2, 5, 8):
            x.append(trial.suggest_categorical("x%d" % j, CHOICES))
        else:
            x.append(trial.suggest_float("x%d" % j, -2, 2))
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(9))


FUNCTIONS = [("branin", branin, 0.397887), ("hartmann6", hartmann6, -3.32237),
             ("rosenbrock10", rosenbrock10, 0)]


def medians(seeds=SEEDS, multivariate=False, random=False):
    """{function name: median best value} of Optuna on each function."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    out = {}
    for name, f, _ in FUNCTIONS:
        bests = []
        for seed in range(seeds):
            if random:
                sampler = optuna.samplers.RandomSampler(seed=seed)
            else:
                sampler = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
            study = optuna.create_study(sampler=sampler)
            study.optimize(f, n_trials=TRIALS)
            bests.append(study.best_value)
        out[name] = statistics.median(bests)
    return out


def main():
    multivariate = "--multivariate" in sys.argv
    random = "--random" in sys.argv
    seeds = SEEDS
    if "--seeds" in sys.argv:
        seeds = int(sys.argv[sys.argv.index("--seeds") + 1])
    label = "random" if random else "tpe-multivariate" if multivariate else "tpe"
    med = medians(seeds, multivariate, random)
    for name, _, optimum in FUNCTIONS:
        print("S2 in-process %s: optuna %s %.4f (median best of %d seeds x %d trials; "
              "optimum %g)" % (name, label, med[name], seeds, TRIALS, optimum))


if __name__ == "__main__":
    main()
