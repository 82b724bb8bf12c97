"""Helpers for the devcluster's own tests: one shared devcluster per module (started once: ~2 s each), pod builders,
bounded waits that say what they saw, and a kubernetes_asyncio client on the devcluster's kubeconfig."""

from __future__ import annotations

import uuid
from typing import Callable

import pytest
import yaml

from tests.conftest import DevClusterHandle, start_devcluster
from tests.k8s_objects import pod
from tests.procs import wait_for

# An image mapping with neither command nor args: a container that sets no command has nothing to run.
IMAGES = [{"pattern": "bare/*"}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> DevClusterHandle:
    """A devcluster (default 4 nodes, plus the IMAGES mappings) shared by the tests of a module: every test uses its
    own pod names or namespace."""
    state = tmp_path_factory.mktemp("devcluster")
    images = state.parent / f"{state.name}-images.yaml"
    images.write_text(yaml.safe_dump(IMAGES))
    handle = start_devcluster(state, "--images", str(images))
    yield handle
    handle.proc.stop()



@pytest.fixture
async def k8s(cluster):
    """A kubernetes_asyncio CoreV1Api configured from the devcluster's kubeconfig (not from $KUBECONFIG)."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    async with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def pod_body(name: str, restart: str = "Never", **kw) -> dict:
    """A Pod for these tests: `tests.k8s_objects.pod` with a 1 s termination grace period and, unless asked
    otherwise, restartPolicy Never (so an exit is a final phase)."""
    body = pod(name, grace=1, **kw)
    body["spec"]["restartPolicy"] = restart
    return body


def create_pod(cluster: DevClusterHandle, body: dict, namespace: str = "default") -> dict:
    r = cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def get_pod(cluster: DevClusterHandle, name: str, namespace: str = "default") -> dict | None:
    r = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()


def wait_pod(cluster: DevClusterHandle, name: str, condition: Callable[[dict], bool], what: str,
             timeout: float = 20, namespace: str = "default") -> dict:
    def probe():
        pod = get_pod(cluster, name, namespace)
        return pod if pod is not None and condition(pod) else None

    def seen():
        pod = get_pod(cluster, name, namespace)
        events = [(e["reason"], e["message"]) for e in cluster.events(name, namespace)]
        return {"status": pod and pod.get("status"), "nodeName": pod and pod["spec"].get("nodeName"),
                "events": events}

    return wait_for(f"pod {namespace}/{name}: {what}", probe, timeout, seen=seen)


def phase_is(*phases: str) -> Callable[[dict], bool]:
    return lambda pod: pod.get("status", {}).get("phase") in phases


def reasons_of(cluster: DevClusterHandle, name: str, namespace: str = "default") -> list[str]:
    """The reasons of a pod's events in the order they were recorded (a list is in creation order)."""
    return [e["reason"] for e in cluster.events(name, namespace)]


def ensure_namespace(cluster: DevClusterHandle, name: str) -> None:
    r = cluster.request("POST", "/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
