"""Fixtures for tests/python: the integration harness of
tests/integration/conftest.py (real server, real agents), loaded under the
module name ``trainyard_harness`` so that these tests can use its fixtures
and helpers (``from trainyard_harness import wait_for``)."""

import importlib.util
import os
import sys

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration",
                     "conftest.py")
_spec = importlib.util.spec_from_file_location("trainyard_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
sys.modules["trainyard_harness"] = harness
_spec.loader.exec_module(harness)

# Hooks and fixtures of the harness, for the tests of this directory.
pytest_configure = harness.pytest_configure
server_factory = harness.server_factory
agent_factory = harness.agent_factory
cluster = harness.cluster
_tmp_path_open_to_tasks = harness._tmp_path_open_to_tasks
