"""Drive `hubfleet-demo` like a person would, over HTTP: log in, pick a profile, land in JupyterLab.

Used by the demo e2e tests and by bench/bench_demo.py (login -> JupyterLab ready timings)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from hubfleet_devcluster.procs import free_port

REPO = Path(__file__).resolve().parents[2]


class Demo:
    def __init__(self, state: Path, port: int | None = None):
        self.state = state
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path = state.parent / f"{state.name}-demo.out"
        self.popen: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> "Demo":
        self.state.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.out_path, "wb")  # this run's output only
        self.popen = subprocess.Popen([sys.executable, "-m", "hubfleet_devcluster.demo", "--state", str(self.state),
                                       "--port", str(self.port)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                      start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "hubfleet-demo is running at" in self.output():
                return self
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"demo did not come up in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def logins(self) -> dict[str, str]:
        """The logins as the demo printed them."""
        return dict(re.findall(r"^\s{4}(\S+)\s+(\S+)", self.output().split("logins (username / password):")[-1],
                               re.M))

    def stop(self, timeout: float = 150) -> int:
        """Ctrl-C, as a person would (the demo stops hub, proxy, extender and devcluster one after the other,
        each given up to 20 s on a loaded machine)."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else 0
        self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise

    def log_tail(self, name: str, n: int = 40) -> str:
        p = self.state / "logs" / f"{name}.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else "(no log)"


def login(url: str, user: str, password: str) -> requests.Session:
    s = requests.Session()
    s.get(f"{url}/hub/login", timeout=30).raise_for_status()
    r = s.post(f"{url}/hub/login", data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
               allow_redirects=False, timeout=30)
    assert r.status_code == 302, f"login of {user} answered {r.status_code}: {r.text[:300]}"
    return s


def spawn_and_open_lab(s: requests.Session, url: str, user: str, profile: str, timeout: float = 240) -> float:
    """POST the spawn form with `profile`, then follow the spawn-pending page until JupyterLab's page loads.
    Returns the seconds from the form POST to JupyterLab's HTML."""
    t0 = time.monotonic()
    r = s.post(f"{url}/hub/spawn/{user}", data={"profile": profile, "_xsrf": s.cookies.get("_xsrf")}, timeout=60,
               allow_redirects=False)
    assert r.status_code in (200, 302, 303), f"spawn form answered {r.status_code}: {r.text[:500]}"
    deadline = t0 + timeout
    last = None
    while time.monotonic() < deadline:
        try:  # a server's first JupyterLab page can take long on a loaded machine: wait for it, within the deadline
            r = s.get(f"{url}/user/{user}/lab", timeout=max(5.0, deadline - time.monotonic()))
        except requests.RequestException as e:
            last = e
            continue
        last = r
        if r.status_code == 200 and "jupyter-config-data" in r.text and "/user/" in r.url:
            return time.monotonic() - t0
        time.sleep(0.1)
    seen = f"{last.status_code} {last.url}" if isinstance(last, requests.Response) else repr(last)
    raise AssertionError(f"JupyterLab for {user} not loaded in {timeout}s; last {seen}")


def progress_messages(s: requests.Session, url: str, user: str, timeout: float = 60) -> list[str]:
    """The spawn progress messages as the spawn-pending page's EventSource sees them."""
    msgs = []
    with s.get(f"{url}/hub/api/users/{user}/server/progress", stream=True, timeout=timeout,
               headers={"Accept": "text/event-stream", "Referer": f"{url}/hub/spawn-pending/{user}"}) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                ev = json.loads(line[5:])
                msgs.append(ev.get("message", ""))
                if ev.get("ready") or ev.get("failed"):
                    break
    return msgs
