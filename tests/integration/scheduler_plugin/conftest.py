"""A real devcluster whose `hubfleet-scheduler` pods are placed by calling a real `hubfleet scheduler-extender`
process over HTTP (the devcluster's scheduler is the extender client, speaking kube-scheduler's protocol)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import DevClusterHandle, start_devcluster
from tests.k8s_objects import pod
from tests.procs import VENV_BIN, Proc, free_port, wait_for

SCHEDULER = "hubfleet-scheduler"
CONFIGMAP = Path(__file__).resolve().parents[3] / "deploy" / "scheduler-extender" / "configmap.yaml"
# kube-scheduler's values for a field an extenders[] entry leaves out
ABSENT = {"filterVerb": "", "prioritizeVerb": "", "preemptVerb": "", "nodeCacheCapable": False, "ignorable": False}


def deploy_extenders(port: int) -> list[str]:
    """``--extender`` flags for the devcluster's scheduler: the ``extenders[]`` entries of
    deploy/scheduler-extender/configmap.yaml, in order, with the extender on `port`."""
    config = yaml.safe_load(yaml.safe_load(CONFIGMAP.read_text())["data"]["config.yaml"])
    flags = []
    for ext in config["extenders"]:
        values = {**ABSENT, **{k: ext[k] for k in (*ABSENT, "weight") if k in ext}}
        options = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()]
        flags += ["--extender", ",".join([f"{SCHEDULER}=http://127.0.0.1:{port}", *options])]
    return flags


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}


class Stack:
    def __init__(self, cluster: DevClusterHandle, extender: Proc, port: int):
        self.cluster, self.extender, self.port = cluster, extender, port
        self.url = f"http://127.0.0.1:{port}"

    def post(self, verb: str, data: bytes, **kw) -> requests.Response:
        return requests.post(f"{self.url}/{verb}", data=data, timeout=kw.pop("timeout", 10), **kw)

    def cache(self) -> dict:
        r = requests.get(self.url + "/cache", timeout=5)
        r.raise_for_status()
        return r.json()


def start_extender(log_dir, kubeconfig, port: int, *extra: str) -> Proc:
    proc = Proc("scheduler-extender", [VENV_BIN / "hubfleet", "scheduler-extender", "--port", port, "--kubeconfig",
                                       kubeconfig, *extra], log_dir)
    try:
        proc.wait_for_port("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 20
        while requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"extender cache did not sync in 20s:\n{proc.log_tail()}")
            time.sleep(0.1)
    except BaseException:
        proc.stop()
        raise
    return proc


def make_stack(tmp_path, *extender_args: str, devcluster_args: tuple = ()) -> Stack:
    """A devcluster whose `hubfleet-scheduler` pods go through a real extender process, registered as deploy/'s
    configmap registers it (NodeNames; filter and prioritize ignorable; preempt not)."""
    port = free_port()
    cluster = start_devcluster(tmp_path / "dc", *deploy_extenders(port), *devcluster_args)
    try:
        extender = start_extender(tmp_path / "ext", cluster.kubeconfig, port, *extender_args)
    except BaseException:
        cluster.proc.stop()
        raise
    return Stack(cluster, extender, port)


@pytest.fixture
def stack(tmp_path, request):
    handle = make_stack(tmp_path, *getattr(request, "param", ()))
    yield handle
    cluster, extender = handle.cluster, handle.extender  # (a test may have restarted either)
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        print("\n--- devcluster state ---\n" + cluster.describe())
        print("--- devcluster log ---\n" + cluster.proc.log_tail(30))
        print("--- extender log ---\n" + extender.log_tail(30))
    extender.stop()
    cluster.proc.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def pod_body(name: str, *, cpu: str = "500m", memory: str = "1Gi", gpus: int = 0, scheduler: str | None = SCHEDULER,
             tolerations: list | None = None, node_selector: dict | None = None, labels: dict | None = None,
             **kw) -> dict:
    """A sleeping pod with requests (and a GPU limit), placed by the extender unless `scheduler` is None."""
    return pod(name, command=["sleep", "300"], requests={"cpu": cpu, "memory": memory},
               limits={"nvidia.com/gpu": gpus} if gpus else None, scheduler_name=scheduler,
               tolerations=tolerations, node_selector=node_selector, labels=labels, grace=1, **kw)


def create_pod(cluster: DevClusterHandle, body: dict) -> None:
    r = cluster.request("POST", "/api/v1/namespaces/default/pods", json=body)
    assert r.status_code == 201, r.text


def wait_bound(cluster: DevClusterHandle, name: str, timeout: float = 20) -> str:
    def probe():
        r = cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}")
        return r.json()["spec"].get("nodeName") if r.status_code == 200 else None

    def seen():
        return [(e["reason"], e["message"]) for e in cluster.events(name)]

    return wait_for(f"pod {name} to be bound", probe, timeout, seen=seen)


def failed_scheduling(cluster: DevClusterHandle, name: str) -> list[str]:
    return [e["message"] for e in cluster.events(name) if e["reason"] == "FailedScheduling"]
