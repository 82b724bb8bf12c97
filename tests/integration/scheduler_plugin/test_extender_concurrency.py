"""The extender over real HTTP (its low-level aiohttp server, in the test's event loop) while its watch cache churns:
large bodies (full NodeLists, as kube-scheduler sends them with ``nodeCacheCapable: false``) are answered 200 every
time, never a 500 from a cache read half-changed; and ``/metrics`` (parsed with prometheus_client) counts each
request's decision once."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hubfleet.scheduler_plugin import wire
from hubfleet.scheduler_plugin.app import Extender, build_server
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import Policy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
N_NODES, PODS_PER_NODE = 600, 2  # a NodeList of ~330 KB
BUSY, PODS_PER_BUSY = 4, 3000  # nodes with many pods (long to read), which the watch keeps changing


def node(name: str) -> dict:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "node.kubernetes.io/instance-type": "n2-standard-64", "topology.kubernetes.io/region": "europe-west1",
              "topology.kubernetes.io/zone": "europe-west1-b", "cloud.google.com/gke-nodepool": "user-pool",
              "hub.jupyter.org/node-purpose": "user"}
    return {"metadata": {"name": name, "labels": labels, "resourceVersion": "1"},
            "spec": {}, "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"}}}


def pod(name: str, node_name: str | None = None, created_minutes_ago: int = 30) -> dict:
    p = {"metadata": {"name": name, "namespace": "jhub", "uid": name, "labels": {"hubfleet.io/profile": "small"},
                      "creationTimestamp": (NOW - timedelta(minutes=created_minutes_ago)).isoformat()},
         "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}]},
         "status": {"phase": "Running" if node_name else "Pending"}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    return p


@pytest.fixture
async def served(request):
    """(extender, its URL, its nodes): `request.param` = (nodes, pods on each of the first BUSY)."""
    count, busy_pods = request.param
    nodes = [node(f"n{i:04d}") for i in range(count)]
    cache = ClusterCache(clock=NOW.timestamp)
    cache.replace_nodes(nodes)
    cache.replace_pods([pod(f"p{i}-{k}", f"n{i:04d}", k % 50 + 1) for i in range(count)
                        for k in range(busy_pods if i < BUSY else PODS_PER_NODE)])
    ext = Extender(Policy(), cache, clock=NOW.timestamp)
    runner = web.ServerRunner(build_server(ext))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    yield ext, url, nodes
    await runner.cleanup()


async def _churn(cache: ClusterCache, stop: asyncio.Event) -> int:
    """What the watch does on a busy cluster, from the event loop: pods bound and deleted on the nodes being scored,
    a yield to the loop between events (as CacheWatcher yields every few events)."""
    events, round_ = 0, 0
    while not stop.is_set():
        round_ += 1
        for i in range(BUSY):
            extra = pod(f"churn-{round_}-{i}", f"n{i:04d}")
            cache.apply_pod("ADDED", extra)
            await asyncio.sleep(0)
            cache.apply_pod("DELETED", extra)
            events += 2
    return events


@pytest.mark.parametrize("served", [(N_NODES, PODS_PER_BUSY)], indirect=True)
async def test_large_bodies_while_the_watch_churns_are_never_a_5xx(served):
    ext, url, nodes = served
    body = wire.dumps({"Pod": pod("new"), "Nodes": {"metadata": {}, "items": nodes}})
    assert len(body) > 256 * 1024  # a body the extender would once score on a worker thread
    statuses: dict[int, int] = {}
    errors: list[str] = []
    stop = asyncio.Event()
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible: any read off the loop meets a change
    try:
        churn = asyncio.create_task(_churn(ext.cache, stop))
        async with aiohttp.ClientSession() as s:
            for i in range(40):
                verb = ("prioritize", "prioritize", "prioritize", "filter")[i % 4]
                async with s.post(f"{url}/{verb}", data=body) as r:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status != 200:
                        errors.append(f"{verb}: {r.status} {(await r.text())[:200]}")
        stop.set()
        events = await churn
    finally:
        sys.setswitchinterval(old_interval)
    assert statuses == {200: 40}, errors[:5]
    assert events > 40  # the cache did change while the requests were answered


@pytest.mark.parametrize("served", [(50, PODS_PER_NODE)], indirect=True)
async def test_metrics_count_each_request_once(served):
    ext, url, nodes = served
    names = [n["metadata"]["name"] for n in nodes]
    bodies = {"filter": wire.dumps({"Pod": pod("new"), "Nodes": None, "NodeNames": names}),
              "prioritize": wire.dumps({"Pod": pod("new"), "Nodes": None, "NodeNames": names}),
              "preempt": wire.dumps({"Pod": pod("vip"), "NodeNameToMetaVictims": {
                  "n0000": {"Pods": [{"UID": "p0-0"}], "NumPDBViolations": 0}}})}
    sent = {"filter": 0, "prioritize": 0, "preempt": 0}
    async with aiohttp.ClientSession() as s:
        for _ in range(3):  # the same list again and again, as kube-scheduler sends it: the kept answers
            for verb, body in bodies.items():
                async with s.post(f"{url}/{verb}", data=body) as r:
                    assert r.status == 200, await r.text()
                sent[verb] += 1
        async with s.get(f"{url}/metrics") as r:
            text = await r.text()
    decisions: dict[str, float] = {}
    requests: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hubfleet_extender_decisions_total":
                verb = sample.labels["verb"]
                decisions[verb] = decisions.get(verb, 0) + sample.value
            elif sample.name == "hubfleet_extender_requests_total" and sample.labels["code"] == "200":
                requests[sample.labels["verb"]] = sample.value
    assert requests == sent
    assert decisions == sent, text
