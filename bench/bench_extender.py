"""The scheduler extender over real HTTP vs the floor any extender pays: bare JSON decode+encode of the same payload.

Setup: a devcluster with 5,000 nodes (16 cpu / 64Gi; every 10th a 4-GPU node) and 200 pods bound across them, and
the real ``hubfleet scheduler-extender`` process watching it. A client on keep-alive posts what kube-scheduler posts
for one pod: ``filter`` then ``prioritize`` (the prioritize call carries the nodes the filter kept):

- ``NodeNames x 5,000`` (``nodeCacheCapable: true``),
- ``NodeList x 1,000`` (``nodeCacheCapable: false``: full Node objects as the devcluster serves them).

Anchor: decoding and re-encoding the same request bodies (both calls) with stdlib ``json`` and with ``orjson`` in
this process, i.e. the JSON work alone, with no HTTP, no policy. Also shown: the verbs run in-process (no HTTP) to
split the HTTP cost from the policy's. Results go to stdout and test-artifacts/bench_extender.json.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

from bench._common import save_results
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import Policy
from tests.conftest import start_devcluster
from tests.procs import VENV_BIN, Proc, free_port

N_NODES = 5000
N_PODS = 200  # usage is aggregated per node: the per-request cost does not depend on the pod count
ROUNDS = {"NodeNames x 5,000": 40, "NodeList x 1,000": 25}

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "jupyter-alice", "namespace": "jhub", "uid": "bench-pod",
                    "labels": {"component": "singleuser-server", "hub.jupyter.org/username": "alice"}},
       "spec": {"schedulerName": "hubfleet-scheduler",
                "containers": [{"name": "notebook", "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",
                                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                              "limits": {"cpu": "2", "memory": "4Gi"}}}]}}


def _nodes_file(path: Path) -> None:
    nodes = []
    for i in range(N_NODES):
        n = {"name": f"node-{i:04d}", "labels": {"hub.jupyter.org/node-purpose": "user",
                                                 "topology.kubernetes.io/zone": f"zone-{i % 3}"},
             "allocatable": {"cpu": "16", "memory": "64Gi", "pods": 110}}
        if i % 10 == 0:
            n["labels"]["nvidia.com/gpu.present"] = "true"
            n["allocatable"]["nvidia.com/gpu"] = 4
        nodes.append(n)
    path.write_text(yaml.safe_dump({"nodes": nodes}))


def _bound_pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bound-{i}"},
            "spec": {"nodeName": f"node-{(i * 7) % N_NODES:04d}", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "600"],
                                     "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}


def _anchor(bodies: list[bytes], rounds: int) -> dict[str, float]:
    """Median ms of decoding + re-encoding every body of one pod's calls, with each JSON library."""
    out = {}
    for name, loads, dumps in (("json", json.loads, lambda o: json.dumps(o).encode()),
                               ("orjson", orjson.loads, orjson.dumps)):
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for body in bodies:
                dumps(loads(body))
            times.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(times)
    return out


async def _http_rounds(url: str, filter_body: bytes, rounds: int, node_list: bool) -> tuple[list[float], list[float],
                                                                                                 list[float]]:
    filt, prio, both = [], [], []
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        for i in range(rounds + 3):  # 3 warm-up rounds
            t0 = time.perf_counter()
            async with s.post(f"{url}/filter", data=filter_body, headers=headers) as r:
                raw = await r.read()
                assert r.status == 200, raw[:300]
            t1 = time.perf_counter()
            result = orjson.loads(raw)
            args = orjson.loads(filter_body)
            if node_list:
                args["Nodes"] = result["Nodes"]
            else:
                args["NodeNames"] = result["NodeNames"]
            prio_body = orjson.dumps(args)
            t2 = time.perf_counter()
            async with s.post(f"{url}/prioritize", data=prio_body, headers=headers) as r:
                raw = await r.read()
                assert r.status == 200, raw[:300]
            t3 = time.perf_counter()
            if i >= 3:
                filt.append((t1 - t0) * 1000)
                prio.append((t3 - t2) * 1000)
                both.append((t1 - t0 + t3 - t2) * 1000)
    return filt, prio, both, prio_body


def _in_process(cache_snapshot: ClusterCache, filter_body: bytes, prio_body: bytes, rounds: int) -> float:
    ext = Extender(Policy(), cache_snapshot)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        ext.filter_body(filter_body)
        ext.prioritize_body(prio_body)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-extender-"))
    nodes_file = tmp / "nodes.yaml"
    _nodes_file(nodes_file)
    port = free_port()
    t_setup = time.perf_counter()
    cluster = start_devcluster(tmp / "dc", "--nodes", str(nodes_file), name="devcluster")
    ext_proc = None
    try:
        # pods already bound (nodeName set, so the devcluster's scheduler leaves them alone): real usage to look up
        import requests

        for i in range(N_PODS):  # through the handle: it sends the API's bearer token and trusts its CA
            r = cluster.request("POST", "/api/v1/namespaces/default/pods", json=_bound_pod(i), timeout=30)
            r.raise_for_status()
        nodes = cluster.get("/api/v1/nodes", timeout=60)["items"]
        ext_proc = Proc("scheduler-extender", [VENV_BIN / "hubfleet", "scheduler-extender", "--port", port,
                                               "--kubeconfig", cluster.kubeconfig, "--log-level", "WARNING"], tmp)
        ext_proc.wait_for_port("127.0.0.1", port, timeout=30)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            h = requests.get(url + "/healthz", timeout=10).json()
            if h["ok"] and h["nodes"] == N_NODES:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"extender cache not synced: {h}\n{ext_proc.log_tail()}")
            time.sleep(0.2)
        cached_pods = h["pods"]
        print(f"setup: {N_NODES} nodes, {N_PODS} pods created, extender cache {cached_pods} bound pods "
              f"({time.perf_counter() - t_setup:.1f}s)")

        # an in-process cache identical to the server's, for the no-HTTP column
        local = ClusterCache()
        local.replace_nodes(nodes)
        local.replace_pods(cluster.get("/api/v1/pods", timeout=60)["items"])

        cases = {
            "NodeNames x 5,000": ({"Pod": POD, "Nodes": None, "NodeNames": [n["metadata"]["name"] for n in nodes]},
                                  False),
            "NodeList x 1,000": ({"Pod": POD, "Nodes": {"metadata": {}, "items": nodes[:1000]}, "NodeNames": None},
                                 True),
        }
        rows = []
        for label, (args, node_list) in cases.items():
            rounds = ROUNDS[label]
            body = orjson.dumps(args)
            filt, prio, both, prio_body = asyncio.run(_http_rounds(url, body, rounds, node_list))
            anchor = _anchor([body, prio_body], rounds)
            local_ms = _in_process(local, body, prio_body, rounds)
            rows.append({"payload": label, "request_kb": len(body) // 1024,
                         "filter_ms": statistics.median(filt), "prioritize_ms": statistics.median(prio),
                         "both_ms": statistics.median(both), "both_p95_ms": sorted(both)[int(0.95 * len(both)) - 1],
                         "in_process_ms": local_ms, "anchor_orjson_ms": anchor["orjson"],
                         "anchor_json_ms": anchor["json"]})

        print("\nfilter + prioritize for one pod (median of rounds; anchor = decode+encode of both request bodies)")
        head = (f"{'payload':<19}{'body':>8}{'filter':>9}{'prio':>8}{'both':>8}{'p95':>8}{'no-HTTP':>9}"
                f"{'orjson':>9}{'json':>8}{'x orjson':>10}{'x json':>8}")
        print(head)
        print("-" * len(head))
        for r in rows:
            print(f"{r['payload']:<19}{r['request_kb']:>6}KB{r['filter_ms']:>7.2f}ms{r['prioritize_ms']:>6.2f}ms"
                  f"{r['both_ms']:>6.2f}ms{r['both_p95_ms']:>6.2f}ms{r['in_process_ms']:>7.2f}ms"
                  f"{r['anchor_orjson_ms']:>7.2f}ms{r['anchor_json_ms']:>6.2f}ms"
                  f"{r['both_ms'] / r['anchor_orjson_ms']:>9.1f}x{r['both_ms'] / r['anchor_json_ms']:>7.1f}x")
        print("(x orjson / x json: HTTP filter+prioritize time over the bare decode+encode floor; "
              "no-HTTP: the same verbs called in-process)")
        save_results("bench_extender", {"nodes": N_NODES, "pods": N_PODS, "rows": rows})
    finally:
        if ext_proc is not None:
            ext_proc.stop()
        cluster.proc.stop()


if __name__ == "__main__":
    main()
