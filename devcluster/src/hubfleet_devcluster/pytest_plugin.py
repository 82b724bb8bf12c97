"""The devcluster as a pytest plugin (entry point ``pytest11``): installing ``hubfleet-devcluster`` gives every test
session the ``devcluster`` fixture, a real devcluster process on a free port with its own state folder, stopped by
process group when the test ends. When a test using it fails, the pods, their events and the devcluster's log tail
are printed with the failure.

Tests that need another scope or extra flags call :func:`start_devcluster` from their own fixture::

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        handle = start_devcluster(tmp_path_factory.mktemp("dc"), "--nodes", "nodes.yaml")
        yield handle
        handle.proc.stop()
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .procs import Proc

__all__ = ["DevClusterHandle", "devcluster_token", "start_devcluster"]


def devcluster_token(kubeconfig: Path) -> str:
    """The bearer token the devcluster's API requires (the one its kubeconfig carries)."""
    import yaml

    return yaml.safe_load(Path(kubeconfig).read_text())["users"][0]["user"]["token"]


class DevClusterHandle:
    """A running devcluster: its process, state folder, kubeconfig, API URL and CA, and an authenticated session."""

    def __init__(self, proc: Proc, state_dir: Path):
        import requests

        self.proc = proc
        self.state_dir = state_dir
        self.kubeconfig = state_dir / "kubeconfig"
        info = json.loads((state_dir / "devcluster.json").read_text())
        self.url, self.ca = info["url"], info["ca"]
        self.token = devcluster_token(self.kubeconfig)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.http.verify = self.ca  # the API serves HTTPS with its own CA (kubectl sends no token over http)

    def request(self, method: str, path: str, **kw):
        kw.setdefault("verify", self.ca)  # explicit: REQUESTS_CA_BUNDLE would override a session's `verify`
        return self.http.request(method, self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def get(self, path: str, **kw) -> dict:
        r = self.request("GET", path, **kw)
        r.raise_for_status()
        return r.json()

    def set_faults(self, **faults) -> dict:
        r = self.request("POST", "/devcluster/faults", json=faults)
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict[str, int]:
        return self.get("/devcluster/stats")["requests"]

    def reset_stats(self) -> None:
        self.request("DELETE", "/devcluster/stats").raise_for_status()

    def pods(self, namespace: str = "default", selector: str = "") -> list[dict]:
        params = {"labelSelector": selector} if selector else {}
        return self.get(f"/api/v1/namespaces/{namespace}/pods", params=params)["items"]

    def events(self, pod_name: str, namespace: str = "default") -> list[dict]:
        return self.get(f"/api/v1/namespaces/{namespace}/events",
                        params={"fieldSelector": f"involvedObject.name={pod_name}"})["items"]

    def scheduling_failures(self, pod_name: str, namespace: str = "default") -> int:
        """How many scheduling passes found no node for ``pod_name`` (the counts of its FailedScheduling events): a
        test that asserts a pod is still not bound awaits this count, never a sleep."""
        return sum(int(e.get("count", 1)) for e in self.events(pod_name, namespace)
                   if e["reason"] == "FailedScheduling")

    def pvcs(self, namespace: str = "default") -> list[dict]:
        return self.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims")["items"]

    def describe(self) -> str:
        """Pods, phases and events: printed with a failing test."""
        lines = []
        try:
            for pod in self.pods():
                m, st = pod["metadata"], pod.get("status", {})
                lines.append(f"pod {m['name']}: phase={st.get('phase')} node={pod['spec'].get('nodeName')} "
                             f"ip={st.get('podIP')} deleting={bool(m.get('deletionTimestamp'))}")
                for ev in self.events(m["name"]):
                    lines.append(f"    {ev['type']} {ev['reason']}: {ev['message']}")
        except Exception as e:  # the cluster may be the thing that broke
            lines.append(f"(devcluster not answering: {e})")
        return "\n".join(lines)

    def report(self, label: str = "devcluster", lines: int = 40) -> str:
        """What a failing test prints: :meth:`describe` and the tail of the devcluster's log."""
        return f"\n--- {label} state ---\n{self.describe()}\n--- {label} log ---\n{self.proc.log_tail(lines)}"


def start_devcluster(state_dir: Path, *extra_args: str, name: str = "devcluster",
                     timeout: float = 30) -> DevClusterHandle:
    """Start ``hubfleet-devcluster --state STATE_DIR EXTRA_ARGS...`` and return once it has written its kubeconfig;
    the caller stops it with ``handle.proc.stop()``."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "devcluster.json").unlink(missing_ok=True)
    proc = Proc(name, [sys.executable, "-m", "hubfleet_devcluster.cli", "--state", state_dir, *extra_args], state_dir)
    try:
        proc.wait_for_file(state_dir / "devcluster.json", timeout=timeout)
        return DevClusterHandle(proc, state_dir)
    except BaseException:
        proc.stop()
        raise


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the state and log tail of every devcluster it was given, whichever fixture
    (and scope) made it, taken before any teardown."""
    rep = yield
    if rep.when == "call":
        item.stash[_CALL_REPORT] = rep
        if rep.failed:
            for name, value in getattr(item, "funcargs", {}).items():
                if isinstance(value, DevClusterHandle):
                    rep.sections.append((f"{name}: devcluster", value.report(f"{name}: devcluster")))
    return rep


_CALL_REPORT = pytest.StashKey()


@pytest.fixture
def devcluster(tmp_path, request) -> DevClusterHandle:
    """A devcluster of its own for one test (default nodes and images)."""
    handle = start_devcluster(tmp_path / "devcluster")
    yield handle
    if request.node.stash.get(_CALL_REPORT, None) is None:  # failed before its call (a failed call reports itself)
        print(handle.report())
    handle.proc.stop()
