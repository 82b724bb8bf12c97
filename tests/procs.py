"""Process helpers shared by every test that starts a real server.

Every helper server runs in its own process group and is stopped by group in a finaliser, so a failing test never
leaves a stray slapd, hub or devcluster behind (../shared/RECIPES.md, "Test hygiene").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHP_BIN = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
ARTIFACTS = REPO / "test-artifacts"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind port 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Proc:
    """A server process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None, cwd: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env["PATH"] = f"{VENV_BIN}:{CHP_BIN.parent}:{full_env.get('PATH', '')}"
        full_env.update(env or {})
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def wait_for_port(self, host: str, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode} before listening on {host}:{port}:\n"
                    f"{self.log_tail()}"
                )
            if port_open(host, port):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {host}:{port} within {timeout}s:\n{self.log_tail()}")

    def wait_for_file(self, path: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Path(path).exists():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not write {path} within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the whole process group, SIGKILL it after `timeout`."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # anything left in the group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
