"""The scheduler extender over real HTTP vs the floor any extender pays: bare JSON decode+encode of the same payload.

Setup: a devcluster with 5,000 nodes (16 cpu / 64Gi; every 10th a 4-GPU node) and 200 pods bound across them, and
the real ``hubfleet scheduler-extender`` process watching it (with uvloop installed, a second one on uvloop; with
``BENCH_EXTENDER_BASELINE=<src dir of another checkout>``, that code too, for a before/after in one run).
A client on keep-alive posts what kube-scheduler posts for one pod: ``filter`` then ``prioritize`` (the prioritize
call carries the nodes the filter kept). The client is as lean as kube-scheduler's Go client (one write per
request, the answer read by its Content-Length; http.client is shown for contrast), runs with Python's GC off while
timing, and the variants take turns in blocks of 50 rounds so that each sees the same machine load:

- ``NodeNames x 5,000`` (``nodeCacheCapable: true``, the deployed setting, percentageOfNodesToScore 100): latency
  p50/p99 of filter+prioritize, the extender's CPU time per pod (noise-proof), and pods/s (filter+prioritize pairs
  per second) with 1 and 4 clients; also with client and extender pinned to different cores;
- ``NodeNames 500, new``: kube-scheduler's default percentageOfNodesToScore at 5,000 nodes (10 %): 500 names from a
  moving start, a list not seen before for every pod;
- ``NodeList x 1,000`` (``nodeCacheCapable: false``: full Node objects as the devcluster serves them), for contrast.

Floor: decoding and re-encoding the same request bodies (both calls) with ``orjson`` (and stdlib ``json``) in this
process, measured in the same run. Also shown: the verbs run in-process (no HTTP), the load average before/after,
the devcluster's CPU share and the extender's GC pauses during the timed loop. Then the extender's memory with
5,000 nodes and 50,000 pods (a child process builds the cache from list bodies as the watch does, plus score
tables for three profiles; VmHWM = peak RSS). Results go to stdout and test-artifacts/bench_extender.json.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
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
ROUNDS = {"NodeNames x 5,000": 1000, "NodeNames 500, new": 500, "NodeList x 1,000": 40}
ROTATIONS = 50  # distinct candidate lists of the "new list per pod" case
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
    """One keep-alive HTTP/1.1 connection, as lean as kube-scheduler's Go client: the request is one write (headers
    and body), TCP_NODELAY as Go's net/http, and the answer is read by its Content-Length (http.client's header parsing
    alone costs more than the extender's work for a pod, and would be measured as the extender's)."""

    def __init__(self, port: int):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rest = b""

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self.sock.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(), len(body), body))
        buf = self.rest
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        head = buf[:end].lower()
        i = head.find(b"\r\ncontent-length:")
        assert i > 0, head  # the extender always answers with a Content-Length
        j = head.find(b"\r\n", i + 2)
        size = int(head[i + 17:j if j > 0 else len(head)])
        parts, have = [buf[end + 4:]], len(buf) - end - 4
        while have < size:
            parts.append(self._recv())
            have += len(parts[-1])
        data = b"".join(parts)
        self.rest = data[size:]
        return int(head[9:12]), data[:size]

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the extender closed the connection")
        return data

    def post(self, verb: str, body: bytes) -> bytes:
        status, data = self.request("POST", f"/{verb}", body)
        assert status == 200, data[:300]
        return data


class HttpClient:
    """http.client (Python's stdlib client), for contrast: the same calls with its per-response header parsing."""

    def __init__(self, port: int):
        import socket
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, verb: str, body: bytes) -> bytes:
        self.conn.request("POST", f"/{verb}", body=body, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        assert r.status == 200, data[:300]
        return data


def _cpu_seconds(pid: int) -> float:
    """User+system CPU time of process `pid` so far (noise-proof: what the extender spent, not what it waited)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gc_pauses(port: int) -> dict[str, float]:
    """{generation: [count, seconds]} of the extender's GC pauses so far (its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = Client(port).request("GET", "/metrics")
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "hubfleet_extender_gc_pause_seconds":
            for sample in family.samples:
                if sample.name.endswith(("_count", "_sum")):
                    out.setdefault(sample.labels["generation"], [0, 0.0])[sample.name.endswith("_sum")] = \
                        sample.value
    return out


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _prioritize_body(filter_body: bytes, filter_answer: bytes, node_list: bool) -> bytes:
    args, result = orjson.loads(filter_body), orjson.loads(filter_answer)
    if node_list:
        args["Nodes"] = result["Nodes"]
    else:
        args["NodeNames"] = result["NodeNames"]
    return orjson.dumps(args)


def _http_floor(port: int, rounds: int) -> list[float]:
    """Round trips of two tiny requests (GET /healthz twice) on the same server: what HTTP and process switching
    cost on this machine at this moment, with no payload."""
    c = Client(port)
    out = []
    gc.disable()
    try:
        for i in range(rounds + 20):
            t0 = time.perf_counter_ns()
            for _ in range(2):
                c.request("GET", "/healthz")
            if i >= 20:
                out.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        gc.enable()
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


def _in_process(cache_snapshot: ClusterCache, pairs: list[tuple[bytes, bytes]], rounds: int) -> float:
    ext = Extender(Policy(), cache_snapshot)
    times = []
    for i in range(rounds + 20):
        filter_body, prio_body = pairs[i % len(pairs)]
        t = time.perf_counter_ns()
        ext.filter_body(filter_body)
        ext.prioritize_body(prio_body)
        if i >= 20:
            times.append((time.perf_counter_ns() - t) / 1e6)
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


def _start_extender(tmp: Path, cluster, name: str, extra: list[str], env: dict | None = None) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(f"scheduler-extender-{name}", [VENV_BIN / "hubfleet", "scheduler-extender", "--port", port,
                                               "--kubeconfig", cluster.kubeconfig, "--log-level", "WARNING",
                                               *extra], tmp, env=env)
    return proc, port


def _wait_synced(proc: Proc, port: int) -> dict:
    proc.wait_for_port("127.0.0.1", port, timeout=60)
    deadline = time.monotonic() + 90
    while True:
        status, body = Client(port).request("GET", "/healthz")
        h = json.loads(body)
        if h["ok"] and h["nodes"] == N_NODES and h["pods"] >= N_PODS:
            return h
        if time.monotonic() > deadline:
            raise RuntimeError(f"extender cache not synced: {h}\n{proc.log_tail()}")
        time.sleep(0.2)


class Pinned(Client):
    """The lean client with this process on CPU 0 and the extender on CPU 1 while its block runs."""

    def __init__(self, port: int, pid: int):
        super().__init__(port)
        self.pid = pid

    def begin(self) -> None:
        os.sched_setaffinity(0, {0})
        os.sched_setaffinity(self.pid, {1})

    def end(self) -> None:
        cpus = set(range(os.cpu_count() or 1))
        os.sched_setaffinity(0, cpus)
        os.sched_setaffinity(self.pid, cpus)


def _latency_kinds(kinds: dict, pairs: list[tuple[bytes, bytes]], rounds: int) -> dict[str, list[float]]:
    """Milliseconds of filter then prioritize for one pod (the (filter, prioritize) bodies of `pairs` in turn), per
    kind ({name: client}): the kinds take turns in blocks of 50 rounds, so that each sees the same machine load.
    Python's GC is off in this (the client's) process while timing."""
    out: dict[str, list[float]] = {name: [] for name in kinds}
    for c in kinds.values():  # warm-up
        for i in range(20):
            filter_body, prio_body = pairs[i % len(pairs)]
            c.post("filter", filter_body)
            c.post("prioritize", prio_body)
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(0, rounds, 50):
            for name, c in kinds.items():
                times = out[name]
                getattr(c, "begin", lambda: None)()
                try:
                    for _ in range(50):
                        filter_body, prio_body = pairs[len(times) % len(pairs)]
                        t0 = clock()
                        c.post("filter", filter_body)
                        c.post("prioritize", prio_body)
                        times.append((clock() - t0) / 1e6)
                finally:
                    getattr(c, "end", lambda: None)()
    finally:
        gc.enable()
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-extender-"))
    nodes_file = tmp / "nodes.yaml"
    _nodes_file(nodes_file)
    t_setup = time.perf_counter()
    cluster = start_devcluster(tmp / "dc", "--nodes", str(nodes_file), name="devcluster")
    procs: dict[str, tuple[Proc, int]] = {}
    try:
        # pods already bound (nodeName set, so the devcluster's scheduler leaves them alone): real usage to look up
        for i in range(N_PODS):  # through the handle: it sends the API's bearer token and trusts its CA
            r = cluster.request("POST", "/api/v1/namespaces/default/pods", json=_bound_pod(i), timeout=30)
            r.raise_for_status()
        nodes = cluster.get("/api/v1/nodes", timeout=60)["items"]
        # this tree's extender (its default event loop, asyncio's); with uvloop installed also on uvloop; and with
        # BENCH_EXTENDER_BASELINE=<another checkout's src> that code too, for a before/after in one run
        procs["this"] = _start_extender(tmp, cluster, "this", [])
        try:
            import uvloop  # noqa: F401
            procs["this, uvloop loop"] = _start_extender(tmp, cluster, "uvloop", ["--event-loop", "uvloop"])
        except ImportError:
            pass
        baseline = os.environ.get("BENCH_EXTENDER_BASELINE")
        if baseline:
            procs["baseline"] = _start_extender(tmp, cluster, "baseline", [], env={"PYTHONPATH": baseline})
        health = {name: _wait_synced(proc, port) for name, (proc, port) in procs.items()}
        ext_proc, port = procs["this"]
        loops = ", ".join(f"{n} ({h.get('event_loop', 'asyncio')} loop)" for n, h in health.items())
        print(f"setup: {N_NODES} nodes, {N_PODS} pods created, extender cache {health['this']['pods']} bound pods, "
              f"extenders: {loops} ({time.perf_counter() - t_setup:.1f}s)")

        # an in-process cache identical to the server's, for the no-HTTP column
        local = ClusterCache()
        local.replace_nodes(nodes)
        local.replace_pods(cluster.get("/api/v1/pods", timeout=60)["items"])

        names = [n["metadata"]["name"] for n in nodes]
        # kube-scheduler's default percentageOfNodesToScore at 5,000 nodes is 10 %: it sends the first 500 feasible
        # nodes from a start that moves on every cycle, so each pod comes with a list not seen before
        rotating = [{"Pod": POD, "Nodes": None, "NodeNames": (names + names)[k * 97:k * 97 + 500]}
                    for k in range(ROTATIONS)]
        cases = {
            "NodeNames x 5,000": ([{"Pod": POD, "Nodes": None, "NodeNames": names}], False),
            "NodeNames 500, new": (rotating, False),
            "NodeList x 1,000": ([{"Pod": POD, "Nodes": {"metadata": {}, "items": nodes[:1000]}, "NodeNames": None}],
                                 True),
        }
        rows, variants = [], {}
        for label, (args_list, node_list) in cases.items():
            rounds = ROUNDS[label]
            pairs = []
            for args in args_list:
                body = orjson.dumps(args)
                pairs.append((body, _prioritize_body(body, Client(port).post("filter", body), node_list)))
            body, prio_body = pairs[0]
            # kind -> (client, the extender it calls)
            if node_list:
                kinds = {"this": (Client(port), "this")}
            else:
                kinds = {name: (Client(p), name) for name, (_, p) in procs.items()}
                if len(os.sched_getaffinity(0)) >= 2 and len(pairs) == 1:
                    kinds["this, pinned (client cpu 0, extender cpu 1)"] = (Pinned(port, ext_proc.pid), "this")
                if len(pairs) == 1:
                    kinds["this, http.client client"] = (HttpClient(port), "this")
            gc_before, load_before = _gc_pauses(port), _load()
            cpu_before = {name: _cpu_seconds(proc.pid) for name, (proc, _) in procs.items()}
            dc_cpu, t0 = _cpu_seconds(cluster.proc.pid), time.perf_counter()
            times = _latency_kinds({k: c for k, (c, _) in kinds.items()}, pairs, rounds)
            wall = time.perf_counter() - t0
            dc_share = (_cpu_seconds(cluster.proc.pid) - dc_cpu) / wall
            cpu_ms = {}
            for name, (proc, _) in procs.items():
                served = sum(len(t) for k, t in times.items() if kinds[k][1] == name)
                if served:
                    cpu_ms[name] = (_cpu_seconds(proc.pid) - cpu_before[name]) * 1000 / served
            gc_after = _gc_pauses(port)
            gc_during = {g: (gc_after[g][0] - gc_before.get(g, [0, 0])[0],
                             1000 * (gc_after[g][1] - gc_before.get(g, [0, 0])[1])) for g in gc_after}
            both = times["this"]
            floor = _floor([body, prio_body], min(rounds, 200))
            row = {"payload": label, "request_kb": len(body) // 1024, "rounds": rounds,
                   "both_p50_ms": statistics.median(both), "both_p99_ms": pct(both, 0.99), "both_max_ms": max(both),
                   "extender_cpu_ms_per_pod": cpu_ms.get("this"),
                   "in_process_ms": _in_process(local, pairs, min(rounds, 200)),
                   "floor_orjson_ms": floor["orjson"], "floor_json_ms": floor["json"],
                   "load_before": load_before, "load_after": _load(), "devcluster_cpu_share": dc_share,
                   "gc_pauses_during": gc_during}
            if not node_list:
                variants[label] = {k: {"p50_ms": statistics.median(t), "p99_ms": pct(t, 0.99), "max_ms": max(t),
                                       "extender_cpu_ms_per_pod": cpu_ms.get(k)} for k, t in times.items()}
            if not node_list and len(pairs) == 1:
                tiny = _http_floor(port, rounds)
                row["http_floor_p50_ms"], row["http_floor_p99_ms"] = statistics.median(tiny), pct(tiny, 0.99)
                row["pods_per_s_1_client"] = _throughput(port, body, prio_body, 1)
                row["pods_per_s_4_clients"] = _throughput(port, body, prio_body, 4)
            rows.append(row)

        print("\nfilter + prioritize for one pod over HTTP (floor = orjson decode+encode of both request bodies; "
              "CPU = the extender's CPU time per pod)")
        head = (f"{'payload':<19}{'body':>8}{'p50':>9}{'p99':>9}{'max':>9}{'CPU':>9}"
                f"{'no-HTTP':>9}{'floor':>8}{'json':>8}{'pods/s 1c':>11}{'pods/s 4c':>11}{'load':>11}")
        print(head)
        print("-" * len(head))
        for r in rows:
            print(f"{r['payload']:<19}{r['request_kb']:>6}KB{r['both_p50_ms']:>7.2f}ms{r['both_p99_ms']:>7.2f}ms"
                  f"{r['both_max_ms']:>7.2f}ms{r['extender_cpu_ms_per_pod'] or float('nan'):>7.2f}ms"
                  f"{r['in_process_ms']:>7.2f}ms{r['floor_orjson_ms']:>6.2f}ms{r['floor_json_ms']:>6.2f}ms"
                  f"{r.get('pods_per_s_1_client', float('nan')):>11.0f}"
                  f"{r.get('pods_per_s_4_clients', float('nan')):>11.0f}"
                  f"{r['load_before'] + '-' + r['load_after']:>11}")
        r = rows[0]
        print(f"(HTTP alone, two tiny GETs on the same server: p50 {r['http_floor_p50_ms']:.2f} ms, p99 "
              f"{r['http_floor_p99_ms']:.2f} ms; {os.cpu_count()} cores; devcluster CPU during the timed loop "
              f"{100 * r['devcluster_cpu_share']:.0f} % of a core; extender GC pauses during it: "
              + (", ".join(f"gen{g} {n:.0f} ({ms:.1f} ms)" for g, (n, ms) in sorted(r["gc_pauses_during"].items()))
                 or "none") + ")")
        for label, kinds_seen in variants.items():
            print(f"\n{label}, the same {ROUNDS[label]} rounds per variant, taking turns in blocks of 50:")
            for k, v in kinds_seen.items():
                cpu = v["extender_cpu_ms_per_pod"]
                print(f"  {k:<46} p50 {v['p50_ms']:5.2f} ms  p99 {v['p99_ms']:5.2f} ms  max {v['max_ms']:6.2f} ms"
                      + (f"  CPU {cpu:.2f} ms/pod" if cpu is not None else ""))
        memory = _memory()
        print(f"\nmemory at {memory['nodes']:,} nodes / {memory['pods']:,} pods (+{memory['tables']} score tables): "
              f"RSS {memory['rss_mb']:.0f} MiB, peak {memory['peak_mb']:.0f} MiB (python alone "
              f"{memory['python_baseline_mb']:.0f} MiB; the list bodies were {memory['list_bodies_mb']:.0f} MiB)")
        save_results("bench_extender", {"nodes": N_NODES, "pods": N_PODS, "rows": rows, "variants": variants,
                                        "memory": memory})
    finally:
        for proc, _ in procs.values():
            proc.stop()
        cluster.proc.stop()


if __name__ == "__main__":
    main()
