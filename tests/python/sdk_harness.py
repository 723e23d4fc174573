"""tests/integration/conftest.py (real server, real agents) loaded as the
module trainyard_harness for the tests here: a conftest.py in this directory
would be a second module named "conftest" and shadow it for the integration
tests' imports.  Its directory goes on sys.path for its own imports
(openapi_check), so that a file here also runs alone."""

import importlib.util
import os
import subprocess
import sys

INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")


def load():
    name = "trainyard_harness"
    if name not in sys.modules:
        if INTEGRATION not in sys.path:
            sys.path.insert(0, INTEGRATION)
        spec = importlib.util.spec_from_file_location(name,
                                                      os.path.join(INTEGRATION, "conftest.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_example(srv, name, cwd):
    """Runs examples/python-client/NAME against srv, as a user would (the
    package on PYTHONPATH, the server and token in the environment)."""
    harness = load()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(PYTHONPATH=os.path.join(harness.REPO, "agent", "python"),
               TRAINYARD_SERVER=srv.url, TRAINYARD_TOKEN=srv.admin_token)
    example = os.path.join(harness.REPO, "examples", "python-client", name)
    p = subprocess.run([harness.PYTHON, example], env=env, cwd=str(cwd),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout
