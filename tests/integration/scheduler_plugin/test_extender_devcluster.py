"""The extender process placing pods on a real devcluster through kube-scheduler's extender protocol."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_devcluster

from .conftest import (GPU_TOLERATION, create_pod, deploy_extenders, failed_scheduling, pod_body,
                       start_extender, unique, wait_bound, wait_for)


def _place_one_by_one(stack, names, **pod_kw) -> list[str]:
    """Create pods one at a time, each after the previous is bound and the extender's cache has seen it."""
    placed = []
    for name in names:
        create_pod(stack.cluster, pod_body(name, **pod_kw))
        placed.append(wait_bound(stack.cluster, name))
        wait_for(f"the extender's cache to count {name}", lambda: stack.cache()["pods"] >= len(placed) + 1,
                 seen=stack.cache)  # +1: the seed pod
    return placed


def test_bin_packing_fills_one_node_where_the_default_scheduler_spreads(stack):
    # a seed pod on cpu-3 (default scheduler, pinned): the packing target is then cpu-3, not the alphabetically first
    # node a tie would pick, so this fails if the extender's scores are not what decides
    create_pod(stack.cluster, pod_body("seed", scheduler=None, node_selector={"kubernetes.io/hostname": "cpu-3"}))
    assert wait_bound(stack.cluster, "seed") == "cpu-3"
    wait_for("the extender's cache to see the seed pod", lambda: stack.cache()["pods"] == 1, seen=stack.cache)

    packed = _place_one_by_one(stack, [f"packed-{i}" for i in range(6)])
    assert packed == ["cpu-3"] * 6, packed

    # the same six pods without schedulerName: the devcluster's default (least-allocated) scheduler spreads them
    spread = []
    for i in range(6):
        create_pod(stack.cluster, pod_body(f"spread-{i}", scheduler=None))
        spread.append(wait_bound(stack.cluster, f"spread-{i}"))
    assert len(set(spread)) >= 2 and "gpu-1" not in spread, spread
    usage = stack.cache()["usage"]
    assert usage["cpu-3"]["pods"] == "7"  # the extender's cache agrees with the cluster


def test_gpu_pod_lands_on_the_gpu_node(stack):
    name = unique("gpu")
    create_pod(stack.cluster, pod_body(name, gpus=1, tolerations=[GPU_TOLERATION]))
    assert wait_bound(stack.cluster, name) == "gpu-1"
    wait_for("the extender's cache to count the GPU", lambda: stack.cache()["usage"].get("gpu-1", {}).get(
        "nvidia.com/gpu") == "1", seen=stack.cache)

    # GPUs used up (2 on gpu-1): a third GPU pod stays Pending, the message naming the GPU shortage
    create_pod(stack.cluster, pod_body("gpu-2nd", gpus=1, tolerations=[GPU_TOLERATION]))
    assert wait_bound(stack.cluster, "gpu-2nd") == "gpu-1"
    wait_for("the extender's cache to count both GPUs", lambda: stack.cache()["usage"].get("gpu-1", {}).get(
        "nvidia.com/gpu") == "2", seen=stack.cache)
    create_pod(stack.cluster, pod_body("gpu-3rd", gpus=1, tolerations=[GPU_TOLERATION]))
    messages = wait_for("FailedScheduling for gpu-3rd", lambda: failed_scheduling(stack.cluster, "gpu-3rd"))
    assert "nvidia.com/gpu" in messages[0], messages


def test_non_gpu_pod_never_lands_on_the_gpu_node_even_tolerating_its_taint(stack):
    # cpu nodes nearly full (3.5 of 4 cpu each) by pinned default-scheduler pods: gpu-1 (8 cpu, empty) is the only node
    # with room for a 1-cpu pod, and the pod tolerates gpu-1's taint; the extender must still refuse it
    for n in ("cpu-1", "cpu-2", "cpu-3"):
        create_pod(stack.cluster, pod_body(f"fill-{n}", cpu="3500m", scheduler=None,
                                           node_selector={"kubernetes.io/hostname": n}))
        assert wait_bound(stack.cluster, f"fill-{n}") == n
    wait_for("the extender's cache to see the fillers", lambda: stack.cache()["pods"] == 3, seen=stack.cache)

    name = unique("cpu-only")
    create_pod(stack.cluster, pod_body(name, cpu="1", tolerations=[GPU_TOLERATION]))
    messages = wait_for(f"FailedScheduling for {name}", lambda: failed_scheduling(stack.cluster, name))
    assert "node(s) reserved for pods requesting nvidia.com/gpu" in messages[0], messages
    assert "3 Insufficient cpu" in messages[0], messages
    time.sleep(1.5)  # more than the devcluster's retry interval: still not bound
    r = stack.cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}")
    assert not r.json()["spec"].get("nodeName")

    # control: the same pod on the default scheduler does go to gpu-1, so the refusal above is the extender's
    control = unique("control")
    create_pod(stack.cluster, pod_body(control, cpu="1", scheduler=None, tolerations=[GPU_TOLERATION]))
    assert wait_bound(stack.cluster, control) == "gpu-1"


MALFORMED_OVER_HTTP = [
    (b"not json at all", "request body is not valid JSON"),
    (b"[]", "expected an ExtenderArgs object"),
    (b'{"Nodes": {"items": []}}', "Pod: missing"),
    (b'{"Pod": 42, "NodeNames": []}', "Pod: expected a Pod object, got a number 42"),
    (b'{"Pod": {}, "Nodes": {"items": [1]}}', "Nodes.items[0]: expected a Node object"),
    (b'{"Pod": {}, "NodeNames": {"a": 1}}', "NodeNames: expected an array of node names"),
    (b'{"Pod": {"spec": {"containers": [{"resources": {"requests": {"cpu": "x"}}}]}}, "NodeNames": []}',
     "Pod.spec.containers[0].resources.requests.cpu: 'x' is not a resource quantity"),
    (b"", "empty request body"),
]


MALFORMED_PREEMPT = [
    (b"not json at all", "request body is not valid JSON"),
    (b"[]", "expected an ExtenderPreemptionArgs object"),
    (b'{"Pod": {}}', "NodeNameToMetaVictims: neither NodeNameToMetaVictims nor NodeNameToVictims given"),
    (b'{"Pod": {}, "NodeNameToMetaVictims": {"cpu-1": {"Pods": [{"UID": 3}]}}}',
     "NodeNameToMetaVictims.cpu-1.Pods[0].UID: expected the victim pod's UID"),
    (b'{"Pod": {}, "NodeNameToVictims": {"cpu-1": {"Pods": [7]}}}', "NodeNameToVictims.cpu-1.Pods[0]: expected a Pod"),
    (b"", "empty request body"),
]


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.parametrize("verb", ["filter", "prioritize", "preempt"])
def test_malformed_posts_get_400_and_the_server_keeps_serving(stack, verb):
    malformed = MALFORMED_PREEMPT if verb == "preempt" else MALFORMED_OVER_HTTP
    for body, message in malformed:
        r = stack.post(verb, body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        assert message in r.json()["error"], (body, r.json())
    # bigger than --max-body-bytes (64 MiB): refused from Content-Length, before reading it
    r = stack.post(verb, b"x" * (65 * 1024 * 1024))
    assert r.status_code == 413 and "larger than the extender's limit" in r.json()["error"], r.text
    r = requests.get(f"{stack.url}/{verb}", timeout=5)
    assert r.status_code == 405 and "GET is not allowed" in r.json()["error"]

    # still serving: a valid request works, health is fine, and the metrics counted the 400s
    valid = ({"Pod": pod_body("p"), "NodeNameToMetaVictims": {}} if verb == "preempt" else
             {"Pod": pod_body("p"), "NodeNames": ["cpu-1", "gpu-1"]})
    ok = stack.post(verb, json.dumps(valid).encode())
    assert ok.status_code == 200, ok.text
    assert requests.get(stack.url + "/healthz", timeout=5).json()["ok"] is True
    r = requests.get(stack.url + "/metrics", timeout=5)
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    samples = _samples(r.text)
    for code, n in (("400", len(malformed)), ("413", 1), ("200", 1)):
        assert samples[("hubfleet_extender_requests_total", (("code", code), ("verb", verb)))] == n, code
    assert samples[("hubfleet_extender_request_duration_seconds_count", (("verb", verb),))] == len(malformed) + 2
    assert stack.extender.popen.poll() is None
    assert "Traceback" not in stack.extender.log_tail(200)


def _placements(cluster) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in cluster.get("/api/v1/pods")["items"]}


def test_extender_killed_pods_still_schedule_and_a_restart_resyncs(stack, tmp_path):
    """`ignorable: true`: with the extender killed, kube-scheduler's own plugins (the profile's MostAllocated) place
    the pods; restarted, the extender lists the cluster again (its cache is only a cache) and places with the
    pods placed meanwhile counted; no pod is lost on the way."""
    for name in ("before-0", "before-1"):
        create_pod(stack.cluster, pod_body(name))
        wait_bound(stack.cluster, name)
    wait_for("the extender's cache to count 2 pods", lambda: stack.cache()["pods"] == 2, seen=stack.cache)

    os.killpg(stack.extender.pid, signal.SIGKILL)  # no goodbye: as an OOM kill or a lost node would do
    stack.extender.popen.wait(10)
    during = [unique("during") for _ in range(3)]
    for name in during:
        create_pod(stack.cluster, pod_body(name))
    for name in during:
        node = wait_bound(stack.cluster, name)
        assert node.startswith("cpu-"), node  # the GPU node's taint still keeps CPU pods off
        assert not failed_scheduling(stack.cluster, name)
    assert "ignorable extender failed" in stack.cluster.proc.log_tail(200)

    stack.extender.stop()
    stack.extender = start_extender(tmp_path / "ext2", stack.cluster.kubeconfig, stack.port)
    placed = _placements(stack.cluster)
    assert len(placed) == 5 and all(placed.values()), placed
    snapshot = wait_for("the restarted extender's cache to hold all 5 pods",
                        lambda: (lambda c: c if c["pods"] == 5 else None)(stack.cache()), seen=stack.cache)
    expected = {}
    for node in placed.values():
        expected[node] = expected.get(node, 0) + 1
    assert {n: int(u["pods"]) for n, u in snapshot["usage"].items()} == expected

    # placing again through the extender: packed onto the fullest node, which it knows only from the re-list
    fullest = max(sorted(expected), key=expected.get)
    create_pod(stack.cluster, pod_body("after"))
    assert wait_bound(stack.cluster, "after") == fullest
    after = _placements(stack.cluster)
    assert len(after) == 6 and {k: v for k, v in after.items() if k != "after"} == placed  # no pod lost or moved


def test_cache_relists_after_the_api_server_restarts(stack):
    """The API server goes away under the extender's open watches and comes back empty (devcluster pods are not
    persisted): the extender re-lists with backoff, converges on the new state and keeps placing pods."""
    create_pod(stack.cluster, pod_body("before"))
    wait_bound(stack.cluster, "before")
    wait_for("the extender's cache to count the pod", lambda: stack.cache()["pods"] == 1, seen=stack.cache)

    port = stack.cluster.url.rsplit(":", 1)[1]
    stack.cluster.proc.stop()
    time.sleep(1)  # the extender sees the watch end and fails at least one re-list while the API is down
    assert requests.get(stack.url + "/healthz", timeout=5).status_code == 200  # still serving its last view
    stack.cluster = start_devcluster(stack.cluster.state_dir, "--port", port, *deploy_extenders(stack.port))
    snapshot = wait_for("the extender to re-list (0 pods after the restart)",
                        lambda: (lambda c: c if c["pods"] == 0 and c["relists"] >= 1 else None)(stack.cache()),
                        timeout=40, seen=stack.cache)
    assert "pods" in snapshot["last_error"] or "nodes" in snapshot["last_error"]

    create_pod(stack.cluster, pod_body("after"))
    assert wait_bound(stack.cluster, "after").startswith("cpu-")
    wait_for("the extender's cache to count the new pod", lambda: stack.cache()["pods"] == 1, seen=stack.cache)
