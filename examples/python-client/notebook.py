# The README's "Python client" example, as one script (tests/python/test_sdk.py
# runs it against a real server and agent). Run it next to a server, e.g.
# `trainyard server --dev` in this directory's parent, or with TRAINYARD_SERVER
# and TRAINYARD_TOKEN set.
import json
import os
import tempfile

from trainyard import Client, TrainyardError

here = os.path.dirname(os.path.abspath(__file__))
client = Client()  # finds the server and token as the trainyard CLI does

# Submit: the directory is packed (minus .git/, __pycache__/ and what
# .trainyardignore excludes) and uploaded; the arguments are the estimator's.
run = client.submit(os.path.join(here, "project"), entry_script="train.py",
                    script_params={"--lr": 0.1, "--epochs": 30},
                    experiment="linear", tags={"owner": "notebook"})
run.wait(show_output=True)  # streams the log; raises if the run fails

print(run.status)                                # completed
print(run.metrics()["loss"].last)                # the last reported loss
print(run.series("loss", max_points=10).values)  # at most 10 points, same shape
print([a.path for a in run.artifacts()])         # ['model.json']
out = tempfile.mkdtemp()
with open(run.download("model.json", to=out)[0]) as f:
    print(json.load(f))

# The same run with another learning rate; the other parameters stay.
again = run.rerun(script_params={"--lr": 0.05}).wait(show_output=False)
print(again.spec["script_params"], again.metrics()["loss"].last)

# Runs of the experiment, newest first, fetched page by page.
for r in client.runs(experiment="linear", status="completed"):
    print(r.id, r.data["status"], r.tags.get("trainyard/rerun_of"))

# A bad spec raises one exception type with the API's code and field.
try:
    client.submit(os.path.join(here, "project"), entry_script="train.py", node_count=0)
except TrainyardError as e:
    print(e.status, e.code, e.field)  # 400 invalid_argument node_count
