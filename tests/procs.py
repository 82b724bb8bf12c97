"""Process helpers shared by every test that starts a real server (the package's own, plus test paths).

Every helper server runs in its own process group and is stopped by group in a finaliser, so a failing test never
leaves a stray slapd, hub or devcluster behind (../shared/RECIPES.md, "Test hygiene").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hubfleet_devcluster.procs import Proc, free_port, port_open

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHP_BIN = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
# screenshots, logs and figures; `make test` gives each stack its own folder (the two run side by side)
ARTIFACTS = Path(os.environ.get("HUBFLEET_ARTIFACTS") or REPO / "test-artifacts")
ARTIFACTS.mkdir(parents=True, exist_ok=True)

__all__ = ["Proc", "free_port", "port_open", "wait_for", "REPO", "VENV_BIN", "CHP_BIN", "ARTIFACTS"]


def wait_for(what: str, probe, timeout: float = 20, interval: float = 0.1, seen=None):
    """Poll `probe` until it returns something truthy and return that; on timeout fail saying what was awaited, what
    the probe last returned and, if given, what `seen()` describes (pod state, a log tail)."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{seen()}" if seen else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}{extra}")
