"""ProfileSpawner as a drop-in KubeSpawner, in-process against the devcluster.

Both classes are driven through the same calls, the way JupyterHub and hooks call a spawner: ``options_from_form``
(a dict back), ``run_options_from_form`` (awaited when awaitable, as JupyterHub does), ``apply_user_options``, ``start()`` (the scheduled future, which ``progress()`` follows to its end),
``poll``, ``get_state`` / ``load_state`` into a new instance (a hub restart), ``stop`` and ``poll`` again, for a user
object without ``groups``. What each call returned and what reached the cluster is recorded per class and compared;
the only differences allowed are the ones docs/spawner.md lists (``hubfleet.io/*`` keys, the ``hubfleet`` state key).
A second test spawns a hubfleet profile whose ``kubespawner_override`` and chosen option carry labels and
annotations: the real pod shows them next to the configured ones.
"""

from __future__ import annotations

import asyncio
import inspect
import types

import pytest
import requests
from traitlets.config import Config

from tests.conftest import start_devcluster
from tests.procs import wait_for

IMAGE = "python:3.12-slim"
CMD = ["python3", "-m", "http.server", "8888", "--bind", "0.0.0.0"]
PROFILE_LIST = [
    {"display_name": "Small", "slug": "small", "default": True,
     "kubespawner_override": {"extra_labels": {"profile-label": "small"}, "extra_annotations": {"profile-note": "small"}}},
    {"display_name": "Other", "slug": "other", "kubespawner_override": {"cpu_limit": 1}},
]
HUBFLEET = "hubfleet.io/"


class UserWithoutGroups:
    """The least a spawner needs from a user: no ``groups``, no ``admin``, no database."""

    def __init__(self, name):
        self.name, self.id = name, 4243
        self.url = self.base_url = f"/user/{name}/"
        self.escaped_name, self.settings = name, {}


class FakeHub:
    api_url = "http://127.0.0.1:8081/hub/api"
    base_url = "/hub/"
    public_host = ""
    url = "http://127.0.0.1:8081/hub/"


@pytest.fixture(scope="module")
def devcluster_module(tmp_path_factory):
    handle = start_devcluster(tmp_path_factory.mktemp("dropin") / "devcluster")
    yield handle
    handle.proc.stop()


@pytest.fixture
def cluster(devcluster_module, monkeypatch, request):
    import kubernetes_asyncio.config.kube_config as kube_config
    from kubespawner import KubeSpawner, clients

    # kubernetes_asyncio reads KUBECONFIG at import time; point its default at this cluster
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(devcluster_module.kubeconfig))
    clients.load_config.cache_clear()  # kubespawner loads the kubeconfig once per process (lru_cache)
    clients._client_cache.clear()
    KubeSpawner.reflectors.clear()
    yield devcluster_module
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n--- devcluster state ---\n" + devcluster_module.describe())
        print("--- devcluster log ---\n" + devcluster_module.proc.log_tail(40))


async def stop_reflectors():
    """The reflectors are class-level and bound to this test's event loop."""
    from kubespawner import KubeSpawner

    for reflector in list(KubeSpawner.reflectors.values()):
        await reflector.stop()
    KubeSpawner.reflectors.clear()


def new_spawner(cls, user, **config):
    c = Config()
    section = c[cls.__name__]
    section.namespace = "default"
    section.image = IMAGE
    section.cmd = CMD
    section.start_timeout = 60
    section.delete_grace_period = 1
    section.storage_pvc_ensure = True
    section.storage_capacity = "1Gi"
    section.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
    section.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    section.extra_labels = {"global-label": "g"}
    section.extra_annotations = {"global-note": "g"}
    for key, value in config.items():
        setattr(section, key, value)
    orm_spawner = types.SimpleNamespace(name="", server=None, display_name="", user_options=None)
    return cls(user=user, hub=FakeHub(), config=c, orm_spawner=orm_spawner, api_token="not-a-real-token")


def without_user(value, user: str):
    """``value`` with the user's name replaced, so that two users' objects compare."""
    if isinstance(value, str):
        return value.replace(user, "<user>")
    if isinstance(value, dict):
        return {without_user(k, user): without_user(v, user) for k, v in value.items()}
    if isinstance(value, list):
        return [without_user(v, user) for v in value]
    return value


def split_ours(mapping: dict) -> tuple[dict, list]:
    """(the keys that are not hubfleet's, the names of hubfleet's)."""
    return ({k: v for k, v in mapping.items() if not k.startswith(HUBFLEET)},
            sorted(k for k in mapping if k.startswith(HUBFLEET)))


async def drive(cls, user_name: str, cluster) -> tuple[dict, dict]:
    """Drive one spawner class through JupyterHub's calls; (what every call gave, hubfleet's additions)."""
    seen, extra = {}, {}
    user = UserWithoutGroups(user_name)
    spawner = new_spawner(cls, user, profile_list=PROFILE_LIST)

    form = {"profile": ["small"]}
    options = spawner.options_from_form(form)
    seen["options_from_form returns"] = "awaitable" if inspect.isawaitable(options) else options
    options = spawner.run_options_from_form(form)  # what JupyterHub calls, and awaits when it may
    seen["run_options_from_form gives the hub"] = await options if inspect.isawaitable(options) else options
    options = seen["run_options_from_form gives the hub"]
    spawner.user_options = options
    await spawner._run_apply_user_options(options)  # what User.spawn runs before start()

    future = spawner.start()
    seen["start() returns a scheduled future"] = asyncio.isfuture(future)
    seen["_start_future is that future"] = spawner._start_future is future
    events = []

    async def follow():
        async for event in spawner.progress():
            events.append(event)

    progress = asyncio.ensure_future(follow())
    url = await asyncio.wait_for(future, 90)
    try:  # KubeSpawner's progress() ends within a second of the start future; never, when it has none to follow
        await asyncio.wait_for(progress, 15)
        seen["progress() ends with the start"] = True
    except TimeoutError:
        seen["progress() ends with the start"] = False
    seen["progress() events carry a message"] = bool(events) and all("message" in e for e in events)

    url = url if isinstance(url, str) else f"http://{url[0]}:{url[1]}"
    seen["poll() after start"] = await spawner.poll()
    r = await asyncio.to_thread(requests.get, url, timeout=10)
    seen["server answers"] = r.status_code

    pod = cluster.get(f"/api/v1/namespaces/default/pods/{spawner.pod_name}")
    meta = without_user(pod["metadata"], user_name)
    seen["pod labels"], extra["pod labels"] = split_ours(meta["labels"])
    seen["pod annotations"], extra["pod annotations"] = split_ours(meta.get("annotations") or {})
    seen["pod env names"] = sorted(e["name"] for e in pod["spec"]["containers"][0].get("env") or [])
    pvc = cluster.get(f"/api/v1/namespaces/default/persistentvolumeclaims/{spawner.pvc_name}")
    pvc_meta = without_user(pvc["metadata"], user_name)
    seen["PVC labels"], extra["PVC labels"] = split_ours(pvc_meta["labels"])
    seen["PVC annotations"], extra["PVC annotations"] = split_ours(pvc_meta.get("annotations") or {})

    state = spawner.get_state()
    seen["state"], extra["state"] = (without_user({k: v for k, v in state.items() if k != "hubfleet"}, user_name),
                                     sorted(k for k in state if k == "hubfleet"))
    restarted = new_spawner(cls, user, profile_list=PROFILE_LIST)  # the hub restarted: a new spawner, same state
    restarted.load_state(state)
    seen["load_state keeps the pod name"] = restarted.pod_name == spawner.pod_name
    seen["poll() after load_state"] = await restarted.poll()

    await restarted.stop()
    seen["poll() after stop is an exit status"] = await restarted.poll() is not None
    seen["pod gone after stop"] = spawner.pod_name not in {p["metadata"]["name"] for p in cluster.pods()}
    return seen, extra


async def test_profile_spawner_answers_jupyterhubs_calls_as_kubespawner_does(cluster):
    from kubespawner import KubeSpawner

    from hubfleet.spawners import ProfileSpawner

    try:
        stock, stock_extra = await drive(KubeSpawner, "dropin-stock", cluster)
        ours, ours_extra = await drive(ProfileSpawner, "dropin-ours", cluster)
    finally:
        await stop_reflectors()

    assert stock["start() returns a scheduled future"] and stock["progress() ends with the start"], stock
    assert stock["pod annotations"]["profile-note"] == "small" and stock["pod labels"]["profile-label"] == "small"
    assert ours == stock
    # what ProfileSpawner adds, all in hubfleet.io/ (docs/spawner.md, "Beside KubeSpawner")
    assert stock_extra == {"pod labels": [], "pod annotations": [], "PVC labels": [], "PVC annotations": [],
                           "state": []}
    assert ours_extra == {
        "pod labels": ["hubfleet.io/profile", "hubfleet.io/user"],
        "pod annotations": ["hubfleet.io/groups", "hubfleet.io/username"],
        "PVC labels": ["hubfleet.io/created-by", "hubfleet.io/server", "hubfleet.io/user"],
        "PVC annotations": ["hubfleet.io/servername", "hubfleet.io/username"],
        "state": ["hubfleet"],
    }


async def test_a_profiles_labels_and_annotations_reach_the_pod_with_the_configured_ones(cluster):
    from hubfleet.spawners import ProfileSpawner

    profiles = [{
        "slug": "tagged", "display_name": "Tagged", "image": IMAGE,
        "kubespawner_override": {"extra_labels": {"team": "physics"}, "extra_annotations": {"cost-centre": "42"}},
        "profile_options": {"size": {"display_name": "Size", "choices": {
            "s": {"display_name": "S", "default": True,
                  "kubespawner_override": {"extra_annotations": {"size-note": "small"}}},
        }}},
    }]
    spawner = new_spawner(ProfileSpawner, UserWithoutGroups("tagged"), profiles=profiles)
    spawner.user_options = {"profile": "tagged"}  # as from the REST API
    try:
        await asyncio.wait_for(spawner.start(), 90)
        metadata = cluster.get(f"/api/v1/namespaces/default/pods/{spawner.pod_name}")["metadata"]
        await spawner.stop()
    finally:
        await stop_reflectors()
    labels, annotations = metadata["labels"], metadata["annotations"]
    assert {k: labels.get(k) for k in ("global-label", "team", "hubfleet.io/profile", "hubfleet.io/user")} == {
        "global-label": "g", "team": "physics", "hubfleet.io/profile": "tagged", "hubfleet.io/user": "tagged"}
    assert {k: annotations.get(k) for k in ("global-note", "cost-centre", "size-note", "hubfleet.io/username")} == {
        "global-note": "g", "cost-centre": "42", "size-note": "small", "hubfleet.io/username": "tagged"}


async def test_kubespawner_with_internal_ssl_starts_and_its_secret_and_service_go_with_the_pod(cluster, tmp_path):
    """KubeSpawner with internal_ssl creates the pod first, then the Secret its certificate volume names and a
    Service, both owned by the pod: the pod waits for the Secret (as a kubelet retries a mount), its container reads
    the certificates, and after stop() the Secret and the Service go with the pod (garbage collection by owner)."""
    from kubespawner import KubeSpawner

    cert_paths = {}
    for key, text in (("keyfile", "THE-KEY"), ("certfile", "THE-CERT"), ("cafile", "THE-CA"), ("hub-ca", "HUB-CA")):
        (tmp_path / key).write_text(text)
        cert_paths[key] = str(tmp_path / key)
    hub_ca = cert_paths.pop("hub-ca")
    spawner = new_spawner(KubeSpawner, UserWithoutGroups("tls"), profile_list=[],
                          cmd=["sh", "-c", "for f in /etc/jupyterhub/ssl/*; do cat $f; echo; done; exec sleep 600"])
    spawner.internal_ssl = True
    spawner.cert_paths = cert_paths
    spawner.internal_trust_bundles = {"hub-ca": hub_ca}
    try:
        await asyncio.wait_for(spawner.start(), 90)
        pod = cluster.get(f"/api/v1/namespaces/default/pods/{spawner.pod_name}")
        assert pod["status"]["phase"] == "Running"
        owned = {"kind": "Pod", "name": spawner.pod_name, "uid": pod["metadata"]["uid"]}
        for path in (f"secrets/{spawner.secret_name}", f"services/{spawner.pod_name}"):
            refs = cluster.get(f"/api/v1/namespaces/default/{path}")["metadata"]["ownerReferences"]
            assert [{k: r[k] for k in owned} for r in refs] == [owned], path
        printed = {"THE-KEY", "THE-CERT", "THE-CA", "HUB-CA"}
        await asyncio.to_thread(wait_for, "the container to print the certificates", lambda: (
            (r := cluster.request("GET", f"/api/v1/namespaces/default/pods/{spawner.pod_name}/log")).ok
            and printed <= set(r.text.split())), timeout=30)
        await spawner.stop()
    finally:
        await stop_reflectors()

    def gone(path):
        return cluster.request("GET", f"/api/v1/namespaces/default/{path}").status_code == 404

    await asyncio.to_thread(wait_for, "the pod's Secret and Service to be collected", lambda: (
        gone(f"secrets/{spawner.secret_name}") and gone(f"services/{spawner.pod_name}")), timeout=30)
