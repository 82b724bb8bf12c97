"""Child processes for `hubfleet-demo`, the benches and the tests: each server runs in its own process group (so
stopping it stops everything it started), logs to a file, and dies with its parent (PR_SET_PDEATHSIG), so neither
Ctrl-C nor a killed parent leaves orphans behind."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


_ports_lock = threading.Lock()
_next_port: list[int] = []  # the next port this process tries (set at the first call, from a random place)


def _port_range() -> tuple[int, int]:
    """``HUBFLEET_PORT_RANGE=LO-HI`` when set (parallel test runs each get their own), else 10000 up to the kernel's
    ephemeral range (``ip_local_port_range``, where outgoing connections take their local ports)."""
    given = os.environ.get("HUBFLEET_PORT_RANGE", "")
    if given:
        lo, _, hi = given.partition("-")
        try:
            low, high = int(lo), int(hi)
        except ValueError:
            low = high = 0
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"HUBFLEET_PORT_RANGE={given!r}: expected LOW-HIGH within 1024-65535, e.g. 10000-21999")
        return low, high
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    return 10000, ephemeral - 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody holds now, for a server about to start. Taken below the kernel's ephemeral range, so an
    outgoing connection cannot take it before the server binds it (as it could a port from ``bind(0)``); handed out
    in turn from a random place in the range, so two calls in one process never give the same port."""
    lo, hi = _port_range()
    with _ports_lock:
        if not _next_port:
            _next_port.append(random.randint(lo, hi))
        for _ in range(hi - lo + 1):
            port = _next_port[0]
            _next_port[0] = lo if port >= hi else port + 1
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            return port
    raise OSError(f"no free port in {lo}-{hi} (HUBFLEET_PORT_RANGE)")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Proc:
    """A server process in its own process group, logging to `log_dir/name.log`."""

    def __init__(self, name: str, argv: list, log_dir: Path, env: dict | None = None, cwd: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env["PATH"] = f"{Path(sys.executable).parent}:{full_env.get('PATH', '')}"
        full_env.update(env or {})
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                      preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def _check_alive(self, what: str) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before {what}; its log "
                               f"({self.log_path}) ends with:\n{self.log_tail(30)}")

    def wait_for_port(self, host: str, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(f"listening on {host}:{port}")
            if port_open(host, port):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {host}:{port} within {timeout}s:\n{self.log_tail()}")

    def wait_for_file(self, path: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Path(path).exists():
                return
            self._check_alive(f"writing {path}")
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
