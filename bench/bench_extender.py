"""The scheduler extender over real HTTP vs the floor any extender pays: bare JSON decode+encode of the same payload.

Setup: a devcluster with 5,000 nodes (16 cpu / 64Gi; every 10th a 4-GPU node) and 200 pods bound across them, and
the real ``hubfleet scheduler-extender`` process watching it. A client on keep-alive (http.client, as light as
kube-scheduler's Go client is) posts what kube-scheduler posts for one pod: ``filter`` then ``prioritize`` (the
prioritize call carries the nodes the filter kept):

- ``NodeNames x 5,000`` (``nodeCacheCapable: true``, the deployed setting): latency p50/p99 of filter+prioritize,
  and pods/s (filter+prioritize pairs per second) with 1 and 4 clients;
- ``NodeList x 1,000`` (``nodeCacheCapable: false``: full Node objects as the devcluster serves them), for contrast.

Floor: decoding and re-encoding the same request bodies (both calls) with ``orjson`` (and stdlib ``json``) in this
process, measured in the same run. Also shown: the verbs run in-process (no HTTP). Then the extender's memory with
5,000 nodes and 50,000 pods (a child process builds the cache from list bodies as the watch does, plus score
tables for three profiles; VmHWM = peak RSS). Results go to stdout and test-artifacts/bench_extender.json.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import yaml

from bench._common import pct, save_results
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import Policy
from tests.conftest import start_devcluster
from tests.procs import VENV_BIN, Proc, free_port

N_NODES = 5000
N_PODS = 200  # usage is aggregated per node: the per-request cost does not depend on the pod count
ROUNDS = {"NodeNames x 5,000": 1000, "NodeList x 1,000": 40}
THROUGHPUT_SECONDS = 4

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "jupyter-alice", "namespace": "jhub", "uid": "bench-pod",
                    "labels": {"component": "singleuser-server", "hub.jupyter.org/username": "alice",
                               "hubfleet.io/profile": "small", "hubfleet.io/user": "alice"}},
       "spec": {"schedulerName": "hubfleet-scheduler",
                "containers": [{"name": "notebook", "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",
                                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                              "limits": {"cpu": "2", "memory": "4Gi"}}}]}}


def _node(i: int) -> dict:
    n = {"name": f"node-{i:04d}", "labels": {"hub.jupyter.org/node-purpose": "user",
                                             "topology.kubernetes.io/zone": f"zone-{i % 3}"},
         "allocatable": {"cpu": "16", "memory": "64Gi", "pods": 110}}
    if i % 10 == 0:
        n["labels"]["nvidia.com/gpu.present"] = "true"
        n["allocatable"]["nvidia.com/gpu"] = 4
    return n


def _nodes_file(path: Path) -> None:
    path.write_text(yaml.safe_dump({"nodes": [_node(i) for i in range(N_NODES)]}))


def _bound_pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bound-{i}"},
            "spec": {"nodeName": f"node-{(i * 7) % N_NODES:04d}", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "600"],
                                     "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}


def _floor(bodies: list[bytes], rounds: int) -> dict[str, float]:
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


class Client:
    """One keep-alive HTTP/1.1 connection (http.client: little client-side cost), TCP_NODELAY as Go's."""

    def __init__(self, port: int):
        import socket
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        # as Go's net/http (kube-scheduler) does: http.client sends headers and body in two writes, and Nagle would
        # hold the body's last segment for the server's delayed ACK
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, verb: str, body: bytes) -> bytes:
        self.conn.request("POST", f"/{verb}", body=body, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        assert r.status == 200, data[:300]
        return data


def _prioritize_body(filter_body: bytes, filter_answer: bytes, node_list: bool) -> bytes:
    args, result = orjson.loads(filter_body), orjson.loads(filter_answer)
    if node_list:
        args["Nodes"] = result["Nodes"]
    else:
        args["NodeNames"] = result["NodeNames"]
    return orjson.dumps(args)


def _latency(port: int, filter_body: bytes, prio_body: bytes, rounds: int) -> tuple[list[float], list[float]]:
    c = Client(port)
    filt, both = [], []
    for i in range(rounds + 20):  # 20 warm-up rounds
        t0 = time.perf_counter()
        c.post("filter", filter_body)
        t1 = time.perf_counter()
        c.post("prioritize", prio_body)
        t2 = time.perf_counter()
        if i >= 20:
            filt.append((t1 - t0) * 1000)
            both.append((t2 - t0) * 1000)
    return filt, both


def _http_floor(port: int, rounds: int) -> list[float]:
    """Round trips of two tiny requests (GET /healthz twice) on the same server: what HTTP and process switching
    cost on this machine at this moment, with no payload."""
    c = Client(port)
    out = []
    for i in range(rounds + 20):
        t0 = time.perf_counter()
        for _ in range(2):
            c.conn.request("GET", "/healthz")
            r = c.conn.getresponse()
            r.read()
        if i >= 20:
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _throughput(port: int, filter_body: bytes, prio_body: bytes, clients: int) -> float:
    """filter+prioritize pairs per second with `clients` connections for THROUGHPUT_SECONDS."""
    done = [0] * clients
    stop = time.monotonic() + THROUGHPUT_SECONDS

    def run(k: int) -> None:
        c = Client(port)
        while time.monotonic() < stop:
            c.post("filter", filter_body)
            c.post("prioritize", prio_body)
            done[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.perf_counter() - t)


def _in_process(cache_snapshot: ClusterCache, filter_body: bytes, prio_body: bytes, rounds: int) -> float:
    ext = Extender(Policy(), cache_snapshot)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        ext.filter_body(filter_body)
        ext.prioritize_body(prio_body)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


MEMORY_PROBE = r"""
import gc, json, sys, time
from hubfleet.scheduler_plugin import wire
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import Policy, pod_info
def rss():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out
n_nodes, n_pods = int(sys.argv[1]), int(sys.argv[2])
base = rss()["VmRSS"]
nodes = {"kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": [
    {"metadata": {"name": f"node-{i:05d}", "uid": f"n-{i}", "resourceVersion": "1",
                  "labels": {"kubernetes.io/hostname": f"node-{i:05d}", "topology.kubernetes.io/zone": f"z{i % 3}",
                             "hub.jupyter.org/node-purpose": "user", "node.kubernetes.io/instance-type": "n2-standard-16",
                             **({"nvidia.com/gpu.present": "true"} if i % 10 == 0 else {})}},
     "spec": {"taints": []}, "status": {"allocatable": {"cpu": "15890m", "memory": "60Gi", "pods": "110",
                                                       "ephemeral-storage": "95Gi",
                                                       **({"nvidia.com/gpu": "4"} if i % 10 == 0 else {})}}}
    for i in range(n_nodes)]}
profiles = ("small", "medium", "gpu")
def user_pod(i):
    p = profiles[i % 3]
    req = {"small": {"cpu": "500m", "memory": "2Gi"}, "medium": {"cpu": "2", "memory": "8Gi"},
           "gpu": {"cpu": "4", "memory": "16Gi"}}[p]
    lim = {"nvidia.com/gpu": "1"} if p == "gpu" else {}
    return {"metadata": {"name": f"jupyter-user{i}", "namespace": "jhub", "uid": f"00000000-0000-0000-0000-{i:012d}",
                         "resourceVersion": str(i), "creationTimestamp": "2026-12-01T09:00:00Z",
                         "labels": {"app": "jupyterhub", "component": "singleuser-server", "hubfleet.io/profile": p,
                                    "hubfleet.io/user": f"user{i}", "hubfleet.io/strategy": "pack",
                                    "hub.jupyter.org/username": f"user{i}"},
                         "annotations": {"hubfleet.io/last-activity": "2026-12-01T10:00:00Z",
                                         "hub.jupyter.org/username": f"user{i}"}},
            "spec": {"nodeName": f"node-{(i * 7) % n_nodes:05d}", "schedulerName": "hubfleet-scheduler",
                     "containers": [{"name": "notebook", "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",
                                     "resources": {"requests": req, "limits": {**req, **lim}}}]},
            "status": {"phase": "Running"}}
node_body = wire.dumps(nodes)
del nodes
cache = ClusterCache()
cache.replace_nodes(wire.loads(node_body)["items"])
body_mb = len(node_body) / 2**20
del node_body
fresh = ClusterCache()
for start in range(0, n_pods, 500):  # what the watch does: list pages of 500, each folded in and dropped
    page = wire.dumps({"kind": "PodList", "metadata": {"resourceVersion": "2"},
                       "items": [user_pod(i) for i in range(start, min(n_pods, start + 500))]})
    body_mb += len(page) / 2**20
    for item in wire.loads(page)["items"]:
        fresh.apply_pod("ADDED", item)
cache.adopt_pods(fresh)
del fresh, page
gc.collect()
ext = Extender(Policy(), cache)
names = sorted(cache.nodes)
for p in profiles:
    pod = user_pod(0)
    pod["metadata"]["labels"]["hubfleet.io/profile"] = p
    ext.filter_body(wire.dumps({"Pod": pod, "NodeNames": names}))
gc.collect()
r = rss()
print(json.dumps({"python_baseline_mb": base, "rss_mb": r["VmRSS"], "peak_mb": r["VmHWM"], "list_bodies_mb": body_mb,
                  "pods": len(cache.pods), "nodes": len(cache.nodes), "tables": len(ext.tables.tables)}))
"""


def _memory(n_nodes: int = 5000, n_pods: int = 50_000) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n_nodes), str(n_pods)], capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


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
            if h["ok"] and h["nodes"] == N_NODES and h["pods"] >= N_PODS:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"extender cache not synced: {h}\n{ext_proc.log_tail()}")
            time.sleep(0.2)
        print(f"setup: {N_NODES} nodes, {N_PODS} pods created, extender cache {h['pods']} bound pods "
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
            prio_body = _prioritize_body(body, Client(port).post("filter", body), node_list)
            filt, both = _latency(port, body, prio_body, rounds)
            floor = _floor([body, prio_body], min(rounds, 200))
            row = {"payload": label, "request_kb": len(body) // 1024, "rounds": rounds,
                   "filter_p50_ms": statistics.median(filt), "both_p50_ms": statistics.median(both),
                   "both_p99_ms": pct(both, 0.99), "both_max_ms": max(both),
                   "in_process_ms": _in_process(local, body, prio_body, min(rounds, 200)),
                   "floor_orjson_ms": floor["orjson"], "floor_json_ms": floor["json"]}
            if not node_list:
                tiny = _http_floor(port, rounds)
                row["http_floor_p50_ms"], row["http_floor_p99_ms"] = statistics.median(tiny), pct(tiny, 0.99)
                row["pods_per_s_1_client"] = _throughput(port, body, prio_body, 1)
                row["pods_per_s_4_clients"] = _throughput(port, body, prio_body, 4)
            rows.append(row)

        print("\nfilter + prioritize for one pod over HTTP (floor = orjson decode+encode of both request bodies)")
        head = (f"{'payload':<19}{'body':>8}{'filter p50':>12}{'both p50':>10}{'both p99':>10}{'max':>9}"
                f"{'no-HTTP':>9}{'floor':>8}{'json':>8}{'pods/s 1c':>11}{'pods/s 4c':>11}")
        print(head)
        print("-" * len(head))
        for r in rows:
            print(f"{r['payload']:<19}{r['request_kb']:>6}KB{r['filter_p50_ms']:>10.2f}ms{r['both_p50_ms']:>8.2f}ms"
                  f"{r['both_p99_ms']:>8.2f}ms{r['both_max_ms']:>7.2f}ms{r['in_process_ms']:>7.2f}ms"
                  f"{r['floor_orjson_ms']:>6.2f}ms{r['floor_json_ms']:>6.2f}ms"
                  f"{r.get('pods_per_s_1_client', float('nan')):>11.0f}{r.get('pods_per_s_4_clients', float('nan')):>11.0f}")
        r = rows[0]
        print(f"(HTTP alone, two tiny GETs on the same server: p50 {r['http_floor_p50_ms']:.2f} ms, p99 "
              f"{r['http_floor_p99_ms']:.2f} ms; load average {open('/proc/loadavg').read().split()[0]} on "
              f"{__import__('os').cpu_count()} cores)")
        memory = _memory()
        print(f"\nmemory at {memory['nodes']:,} nodes / {memory['pods']:,} pods (+{memory['tables']} score tables): "
              f"RSS {memory['rss_mb']:.0f} MiB, peak {memory['peak_mb']:.0f} MiB (python alone "
              f"{memory['python_baseline_mb']:.0f} MiB; the list bodies were {memory['list_bodies_mb']:.0f} MiB)")
        save_results("bench_extender", {"nodes": N_NODES, "pods": N_PODS, "rows": rows, "memory": memory})
    finally:
        if ext_proc is not None:
            ext_proc.stop()
        cluster.proc.stop()


if __name__ == "__main__":
    main()
