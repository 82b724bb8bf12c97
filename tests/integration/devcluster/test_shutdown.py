"""Stopping the devcluster stops its pods: no pod process outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import start_devcluster

from .conftest import create_pod, pod_body, wait_pod

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image


def _pgrep(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def test_sigterm_stops_running_pods(tmp_path):
    marker = f"devcluster-shutdown-marker-{uuid.uuid4().hex[:8]}"
    (tmp_path / marker).mkdir()
    cluster = start_devcluster(tmp_path / "state")
    try:
        commands = {
            "web": ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0", "--directory", str(tmp_path / marker)],
            "sleeper": ["sh", "-c", f"sleep 300; echo {marker}"],
            "stubborn": ["sh", "-c", f"trap '' TERM; sleep 300; echo {marker}"],  # needs the SIGKILL
        }
        for name, command in commands.items():
            create_pod(cluster, pod_body(name, command=command, port=8000 if name == "web" else None))
        for name in commands:
            wait_pod(cluster, name, lambda p: p["status"].get("phase") == "Running", "Running")
        assert len(_pgrep(marker)) >= 3

        started = time.monotonic()
        os.kill(cluster.proc.pid, signal.SIGTERM)  # the devcluster alone, not its process group
        code = cluster.proc.popen.wait(timeout=15)
        elapsed = time.monotonic() - started
        assert code == 0, cluster.proc.log_tail()
        # 5 s of grace for the process that ignores SIGTERM, then SIGKILL and the interpreter exit
        assert elapsed < 7.5, f"devcluster took {elapsed:.1f}s to stop:\n{cluster.proc.log_tail()}"
        assert _pgrep(marker) == [], "pod processes outlived the devcluster"
        assert not (tmp_path / "state" / "devcluster.json").exists()
    finally:
        cluster.proc.stop()
        for pid in _pgrep(marker):  # never leave strays for the next test
            os.kill(int(pid), signal.SIGKILL)
