# The README's "Python client" sweep example, as one script
# (tests/python/test_sdk_sweep.py runs it against a real server and agent).
# Run it next to a server, e.g. `trainyard server --dev` in this directory's
# parent, or with TRAINYARD_SERVER and TRAINYARD_TOKEN set.
import os
import tempfile

import trainyard
from trainyard import Client

here = os.path.dirname(os.path.abspath(__file__))
client = Client()

# Tune the example project's learning rate and epochs: each trial is an
# ordinary run of train.py with --lr and --epochs set by the sampler (TPE
# here), at most 2 at a time; median stopping ends the trials whose loss
# lags the others' from the 5th report on.
sweep = client.sweep(os.path.join(here, "project"), entry_script="train.py",
                     parameters={"--lr": trainyard.loguniform(-5, -1),
                                 "--epochs": trainyard.choice(10, 20, 40)},
                     primary_metric="loss", goal="minimize",
                     sampling="bayesian", max_total_runs=8, max_concurrent_runs=2, seed=1,
                     early_termination=trainyard.median_stopping(delay_evaluation=5),
                     experiment="linear-sweep")
sweep.wait(show_output=True)  # a line per trial change and the best so far; raises if it fails

for t in sweep.trials(sort="value")[:3]:  # the three lowest losses
    print(t.trial, t.status, "%.3g" % (t.value or 0), t.parameters)

best = sweep.best_run()  # a Run, as client.submit returns: metrics, artifacts ...
assert best is not None
print(best.parameters, best.metrics()["loss"].last)
print(best.download("model.json", to=tempfile.mkdtemp()))

# The trials are runs: listed, filtered and read like any other.
print(len(list(client.runs(sweep=sweep))), "trials")
