"""The devcluster's Kubernetes API over HTTP, as kubernetes_asyncio (KubeSpawner's client) and plain HTTP see it:
object metadata, error codes, /status, optimistic concurrency, list+watch consistency, watch timeouts and 410 Gone,
selectors, fault injection and request stats."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from .conftest import ensure_namespace, pod_body, unique

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image

INERT = "nobody-scheduler"  # a schedulerName no scheduler serves: the pod stays Pending and runs nothing


def status_body(e: ApiException) -> dict:
    return json.loads(e.body)


# --- objects ----------------------------------------------------------------------------------------------------------

async def test_create_fills_metadata_and_pending_status(k8s):
    name = unique("meta")
    body = pod_body(name, scheduler_name=INERT)
    pod = await k8s.create_namespaced_pod("default", body)
    assert pod.metadata.namespace == "default"
    assert re.fullmatch(r"[0-9a-f-]{36}", pod.metadata.uid)
    assert pod.metadata.creation_timestamp is not None
    assert pod.metadata.resource_version.isdigit()
    assert pod.status.phase == "Pending"
    assert pod.kind == "Pod" and pod.api_version == "v1"
    again = await k8s.read_namespaced_pod(name, "default")
    assert again.metadata.uid == pod.metadata.uid

    with pytest.raises(ApiException) as e:
        await k8s.create_namespaced_pod("default", body)
    assert e.value.status == 409
    assert status_body(e.value)["reason"] == "AlreadyExists"
    assert name in status_body(e.value)["message"]


async def test_not_found_and_invalid(k8s):
    with pytest.raises(ApiException) as e:
        await k8s.read_namespaced_pod("no-such-pod", "default")
    assert e.value.status == 404
    assert status_body(e.value)["reason"] == "NotFound"
    assert status_body(e.value)["kind"] == "Status"

    with pytest.raises(ApiException) as e:
        await k8s.create_namespaced_pod("no-such-namespace", pod_body(unique("p"), scheduler_name=INERT))
    assert e.value.status == 404
    assert 'namespaces "no-such-namespace" not found' in status_body(e.value)["message"]

    with pytest.raises(ApiException) as e:
        await k8s.read_namespace("no-such-namespace")
    assert e.value.status == 404

    with pytest.raises(ApiException) as e:
        await k8s.create_namespaced_pod("default", pod_body("Bad_Name", scheduler_name=INERT))
    assert e.value.status == 422
    assert status_body(e.value)["reason"] == "Invalid"
    assert "metadata.name" in status_body(e.value)["message"] and "Bad_Name" in status_body(e.value)["message"]


async def test_status_subresource_changes_only_status(k8s):
    name = unique("status")
    await k8s.create_namespaced_pod("default", pod_body(name, scheduler_name=INERT, labels={"a": "1"}))
    patched = await k8s.patch_namespaced_pod_status(name, "default", {
        "status": {"phase": "Running", "message": "set through /status"},
        "metadata": {"labels": {"a": "2"}}, "spec": {"nodeName": "cpu-1"}})
    assert patched.status.phase == "Running" and patched.status.message == "set through /status"
    assert patched.metadata.labels == {"a": "1"}
    assert patched.spec.node_name is None

    # and the main resource does not change status
    patched = await k8s.patch_namespaced_pod(name, "default", {"metadata": {"labels": {"a": "3"}},
                                                               "status": {"phase": "Failed"}})
    assert patched.metadata.labels == {"a": "3"}
    assert patched.status.phase == "Running"


async def test_put_with_stale_resource_version_conflicts(k8s):
    name = unique("put")
    await k8s.create_namespaced_pod("default", pod_body(name, scheduler_name=INERT))
    stale = await k8s.read_namespaced_pod(name, "default")
    await k8s.patch_namespaced_pod(name, "default", {"metadata": {"labels": {"changed": "yes"}}})
    stale.metadata.labels = {"mine": "yes"}
    with pytest.raises(ApiException) as e:
        await k8s.replace_namespaced_pod(name, "default", stale)
    assert e.value.status == 409
    assert status_body(e.value)["reason"] == "Conflict"

    fresh = await k8s.read_namespaced_pod(name, "default")
    fresh.metadata.labels = {"mine": "yes"}
    replaced = await k8s.replace_namespaced_pod(name, "default", fresh)
    assert replaced.metadata.labels == {"mine": "yes"}
    assert int(replaced.metadata.resource_version) > int(fresh.metadata.resource_version)


# --- list + watch -----------------------------------------------------------------------------------------------------

async def test_watch_from_list_resource_version_has_no_gap_and_no_duplicate(k8s):
    ns = unique("watch")
    await k8s.create_namespace({"metadata": {"name": ns}})
    await k8s.create_namespaced_config_map(ns, {"metadata": {"name": "before"}})
    listed = await k8s.list_namespaced_config_map(ns)
    assert [c.metadata.name for c in listed.items] == ["before"]
    rv = listed.metadata.resource_version

    # some changes after the list, before the watch is opened (replayed from the event log) ...
    await k8s.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    await k8s.create_namespaced_config_map(ns, {"metadata": {"name": "b"}})
    await k8s.patch_namespaced_config_map("a", ns, {"data": {"k": "v"}})

    seen: list[tuple[str, str, int]] = []

    async def consume():
        async with watch.Watch() as w:
            async for ev in w.stream(k8s.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=2):
                seen.append((ev["type"], ev["raw_object"]["metadata"]["name"],
                             int(ev["raw_object"]["metadata"]["resourceVersion"])))

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.3)
    # ... and some while it is open (streamed live)
    await k8s.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    await k8s.delete_namespaced_config_map("b", ns)
    await asyncio.wait_for(task, 10)

    assert [(t, n) for t, n, _ in seen] == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("ADDED", "c"),
                                            ("DELETED", "b")]
    rvs = [r for _, _, r in seen]
    assert rvs == sorted(set(rvs)) and rvs[0] > int(rv)


async def test_watch_timeout_and_label_selector(k8s):
    ns = unique("sel")
    await k8s.create_namespace({"metadata": {"name": ns}})
    seen = []

    async def consume():
        async with watch.Watch() as w:
            async for ev in w.stream(k8s.list_namespaced_pod, ns, label_selector="component=singleuser-server",
                                     timeout_seconds=1):
                seen.append((ev["type"], ev["raw_object"]["metadata"]["name"]))

    started = time.monotonic()
    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    await k8s.create_namespaced_pod(ns, pod_body("user", scheduler_name=INERT,
                                                 labels={"component": "singleuser-server"}))
    await k8s.create_namespaced_pod(ns, pod_body("hub", scheduler_name=INERT, labels={"component": "hub"}))
    await asyncio.wait_for(task, 10)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3, f"a watch with timeoutSeconds=1 ended after {elapsed:.2f}s"
    assert seen == [("ADDED", "user")]

    listed = await k8s.list_namespaced_pod(ns, label_selector="component=singleuser-server")
    assert [p.metadata.name for p in listed.items] == ["user"]
    listed = await k8s.list_namespaced_pod(ns, label_selector="component in (hub,proxy)")
    assert [p.metadata.name for p in listed.items] == ["hub"]


async def test_field_selector_on_events(k8s):
    ns = unique("ev")
    await k8s.create_namespace({"metadata": {"name": ns}})
    for name, kind in (("about-pod", "Pod"), ("about-node", "Node")):
        await k8s.create_namespaced_event(ns, {
            "metadata": {"name": name}, "involvedObject": {"kind": kind, "name": "x", "namespace": ns},
            "reason": "Test", "message": name, "type": "Normal"})
    events = await k8s.list_namespaced_event(ns, field_selector="involvedObject.kind=Pod")
    assert [e.metadata.name for e in events.items] == ["about-pod"]
    events = await k8s.list_namespaced_event(ns, field_selector="involvedObject.kind!=Pod")
    assert [e.metadata.name for e in events.items] == ["about-node"]
    with pytest.raises(ApiException) as e:
        await k8s.list_namespaced_event(ns, field_selector="involvedObject.kind in (Pod)")
    assert e.value.status == 400


async def test_watch_from_compacted_resource_version_is_410_gone(k8s, cluster):
    ns = unique("gone")
    await k8s.create_namespace({"metadata": {"name": ns}})
    old_rv = (await k8s.list_namespaced_config_map(ns)).metadata.resource_version
    await k8s.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    r = cluster.request("POST", "/devcluster/compact")
    assert r.status_code == 200, r.text
    new_rv = r.json()["compactedTo"]

    # what the wire says ...
    r = cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps",
                        params={"watch": "true", "resourceVersion": old_rv, "timeoutSeconds": "5"})
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410 and lines[0]["object"]["reason"] == "Expired"
    assert r.elapsed.total_seconds() < 2  # answered at once, not after the timeout

    # ... and what a client sees: an ApiException 410, on which it re-lists
    with pytest.raises(ApiException) as e:
        async with watch.Watch() as w:
            async for _ in w.stream(k8s.list_namespaced_config_map, ns, resource_version=old_rv,
                                    timeout_seconds=5):
                pass
    assert e.value.status == 410

    # a watch from the compaction point itself is fine
    seen = []

    async def consume():
        async with watch.Watch() as w:
            async for ev in w.stream(k8s.list_namespaced_config_map, ns, resource_version=new_rv,
                                     timeout_seconds=1):
                seen.append((ev["type"], ev["raw_object"]["metadata"]["name"]))

    task = asyncio.ensure_future(consume())
    await k8s.create_namespaced_config_map(ns, {"metadata": {"name": "b"}})
    await asyncio.wait_for(task, 10)
    assert seen == [("ADDED", "b")]


# --- fault knobs and stats --------------------------------------------------------------------------------------------

def test_fault_injection(cluster):
    path = "/api/v1/namespaces/default/configmaps"
    try:
        assert cluster.set_faults(error_rate=1.0, error_codes=[429])["error_rate"] == 1.0
        for _ in range(3):
            r = cluster.request("GET", path)
            assert r.status_code == 429
            assert r.headers.get("Retry-After") == "1"
            body = r.json()
            assert body["kind"] == "Status" and body["code"] == 429 and body["reason"] == "TooManyRequests"
        r = cluster.request("POST", path, json={"metadata": {"name": unique("faulted")}})
        assert r.status_code == 429
        # the control endpoints are never faulted, so a test can always switch faults off
        assert cluster.request("GET", "/devcluster/faults").status_code == 200
    finally:
        cluster.set_faults(error_rate=0.0)
    assert cluster.request("GET", path).status_code == 200


@pytest.mark.parametrize("body, expected", [
    ({"error_rate": 2}, "error_rate"),
    ({"error_rate": "lots"}, "'lots' is not a number"),
    ({"error_codes": [418]}, "must be among 429, 500, 503, 504"),
    ({"error_codes": "429"}, "error_codes"),
    ({"eror_rate": 1}, "unknown field"),
    ([1, 2], "expected a JSON object"),
    ("not json", "not JSON"),
])
def test_fault_bad_values_are_400(cluster, body, expected):
    before = cluster.get("/devcluster/faults")
    if body == "not json":
        r = cluster.request("POST", "/devcluster/faults", data="{error_rate: 1",
                            headers={"Content-Type": "application/json"})
    else:
        r = cluster.request("POST", "/devcluster/faults", json=body)
    assert r.status_code == 400, r.text
    assert expected in r.json()["message"]
    assert cluster.get("/devcluster/faults") == before


def test_stats_count_requests_by_verb_and_resource(cluster):
    ns = unique("stats")
    ensure_namespace(cluster, ns)
    path = f"/api/v1/namespaces/{ns}/configmaps"
    cluster.reset_stats()
    assert cluster.stats() == {}
    for name in ("a", "b"):
        assert cluster.request("POST", path, json={"metadata": {"name": name}}).status_code == 201
    cluster.get(path)
    cluster.get(f"{path}/a")
    cluster.request("PATCH", f"{path}/a", json={"data": {"k": "v"}},
                    headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    cluster.request("DELETE", f"{path}/b").raise_for_status()
    cluster.request("GET", path, params={"watch": "1", "timeoutSeconds": "0.1"}).raise_for_status()
    assert cluster.request("GET", f"{path}/missing").status_code == 404
    assert cluster.stats() == {"create configmaps": 2, "list configmaps": 1, "get configmaps": 2,
                               "patch configmaps": 1, "delete configmaps": 1, "watch configmaps": 1}


@pytest.mark.parametrize("spec, code, text", [
    ("x", 400, 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal spec: expected object'),
    ({}, 422, 'is invalid: spec.containers: Required value'),
    ({"containers": [{"name": "c"}]}, 422, "is invalid: spec.containers[0].image: Required value"),
    ({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "lots"}}}]}, 422,
     "is invalid: spec.containers[0].resources.requests.cpu: Invalid value"),
    ({"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "-1Gi"}}}]}, 422,
     "is invalid: spec.containers[0].resources.limits.memory: Invalid value"),
])
def test_malformed_pods_are_refused_naming_the_field(cluster, spec, code, text):
    name = unique("bad")
    r = cluster.request("POST", "/api/v1/namespaces/default/pods", json={"metadata": {"name": name}, "spec": spec})
    assert r.status_code == code, r.text
    assert text in r.json()["message"]
    assert r.json()["reason"] == ("BadRequest" if code == 400 else "Invalid")
    assert cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}").status_code == 404
