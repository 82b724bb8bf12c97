"""Stock KubeSpawner and hubfleet's ProfileSpawner: start / poll / stop, in-process, against the devcluster.

The same test runs against a real cluster when opted in (`make realcluster-test`: HUBFLEET_REAL_CLUSTER=1 and
KUBECONFIG pointing at it; namespace from HUBFLEET_TEST_NAMESPACE, default "default")."""

import asyncio
import os
import types

import pytest
import requests
from traitlets.config import Config

from tests.procs import wait_for_async

REAL = os.environ.get("HUBFLEET_REAL_CLUSTER") == "1"
IMAGE = "python:3.12-slim"
CMD = ["python3", "-m", "http.server", "8888", "--bind", "0.0.0.0"]


class FakeUser:
    def __init__(self, name):
        self.name, self.id, self.admin = name, 4242, False
        self.url = self.base_url = f"/user/{name}/"
        self.groups, self.escaped_name, self.settings = [], name, {}


class FakeHub:
    api_url = "http://127.0.0.1:8081/hub/api"
    base_url = "/hub/"
    public_host = ""
    url = "http://127.0.0.1:8081/hub/"


@pytest.fixture
def cluster(tmp_path, monkeypatch, request):
    import kubernetes_asyncio.config.kube_config as kube_config
    from kubespawner import KubeSpawner, clients

    if REAL:
        kubeconfig, namespace, handle = os.environ["KUBECONFIG"], os.environ.get("HUBFLEET_TEST_NAMESPACE",
                                                                                 "default"), None
    else:
        from tests.conftest import start_devcluster

        handle = start_devcluster(tmp_path / "devcluster")
        kubeconfig, namespace = str(handle.kubeconfig), "default"
    # kubernetes_asyncio reads KUBECONFIG at import time; point its default at this cluster
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", kubeconfig)
    clients.load_config.cache_clear()  # kubespawner loads the kubeconfig once per process (lru_cache)
    clients._client_cache.clear()
    KubeSpawner.reflectors.clear()
    yield types.SimpleNamespace(namespace=namespace, devcluster=handle)
    KubeSpawner.reflectors.clear()
    if handle is not None:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(handle.describe())
        handle.proc.stop()


@pytest.mark.realcluster
@pytest.mark.parametrize("class_name", ["KubeSpawner", "ProfileSpawner"])
async def test_start_poll_stop(cluster, class_name):
    from kubespawner import KubeSpawner

    from hubfleet.spawners import ProfileSpawner

    cls = {"KubeSpawner": KubeSpawner, "ProfileSpawner": ProfileSpawner}[class_name]
    c = Config()
    section = c[class_name]
    section.namespace = cluster.namespace
    section.image = IMAGE
    section.cmd = CMD
    section.start_timeout = 60
    section.delete_grace_period = 1
    user = FakeUser(f"life-{class_name.lower()}")
    orm_spawner = types.SimpleNamespace(name="", server=None, display_name="", user_options=None)
    spawner = cls(user=user, hub=FakeHub(), config=c, orm_spawner=orm_spawner, api_token="not-a-real-token")

    try:
        await _lifecycle(spawner, cluster, class_name)
    finally:  # the reflectors are class-level and bound to this test's event loop
        for reflector in list(KubeSpawner.reflectors.values()):
            await reflector.stop()


def _get(url):
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None


async def _lifecycle(spawner, cluster, class_name):
    url = await spawner.start()
    url = url if isinstance(url, str) else f"http://{url[0]}:{url[1]}"
    assert await spawner.poll() is None, "running after start"
    if not REAL:  # pods are reachable from here only on the devcluster
        # a pod without a readiness probe is Running once its process starts, before that process listens: like
        # the hub (Spawner.http_timeout), wait for the server to answer
        r = await wait_for_async("the pod's server to answer", lambda: asyncio.to_thread(_get, url), timeout=60,
                                 interval=0.2)
        assert r.status_code == 200
        pod = cluster.devcluster.get(f"/api/v1/namespaces/default/pods/{spawner.pod_name}")
        assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"]
        if class_name == "ProfileSpawner":
            sc = pod["spec"]["containers"][0]["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]

    await spawner.stop()
    status = await spawner.poll()
    assert status is not None, "stopped after stop"
    if not REAL:
        names = [p["metadata"]["name"] for p in cluster.devcluster.pods()]
        assert spawner.pod_name not in names
