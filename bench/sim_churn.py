"""A day of a hub's churn, replayed against three placements with a cluster-autoscaler model (pure; no I/O except
reading the trace file).

Trace: JSON lines ``{"time": <s since the start of the day>, "user": "<name>", "profile": "<slug>", "duration": <s
the user works>, "group": "<name>"}`` (``group`` optional); a malformed line is refused naming the line and the field (:class:`TraceError`). A server lives
``duration`` plus its profile's culler timeout (the culler stops it once that long idle), from the moment it is bound
to a node (the user waits while it is Pending).

Placements (the same cluster, the same trace):

- ``LeastAllocated``: kube-scheduler's default profile (NodeResourcesFit LeastAllocated, cpu:1 memory:1);
- ``MostAllocated``: z2jh's user-scheduler (NodeResourcesFit MostAllocated, cpu:1 memory:1);
- ``hubfleet``: kube-scheduler with hubfleet's profile and extender, i.e. ``scheduler_plugin.scoring``'s
  ``filter_nodes`` and ``prioritize`` (the very functions the webhook runs) weighted as in
  ``deploy/scheduler-extender/configmap.yaml`` (extender weight 5, MaxExtenderPriority 10 -> x50), plus the
  profile's built-in MostAllocated (cpu:1 memory:1 nvidia.com/gpu:3) that breaks ties;
- ``oracle``: an offline reference that knows when every session ends (:func:`place_oracle`); and, not a placement,
  :func:`lower_bound` (bench/sim_bound.py), which no placement can beat.

The GPU node pool carries no taint that CPU pods lack (one user node pool with a GPU pool beside it, as many z2jh
deployments run it): only a placement keeps CPU pods off GPU nodes.

Cluster autoscaler (its defaults): every 10 s, pods Pending for >= 30 s trigger a scale-up of as many nodes of the
pool that can run them as a first-fit of those pods needs (counting nodes still booting); a node is Ready 90 s after
it is added; a node empty for 10 minutes is removed (user pods are not evictable: z2jh sets
``safe-to-evict: false``), down to the pool's minimum.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from hubfleet.errors import HubfleetError
from hubfleet.resources import Resources, add_usage, insufficient, least_allocated, most_allocated, parse_resources
from hubfleet.scheduler_plugin.scoring import (Lifetimes, NodeInfo, PodInfo, Policy, View, filter_nodes, node_info,
                                               prioritize)

from bench.sim_bound import BOOT, TAIL, run_bound, trace_bound

GPU = "nvidia.com/gpu"
PROFILES: dict[str, Resources] = {
    "small": parse_resources({"cpu": "500m", "memory": "2Gi"}, "small"),
    "medium": parse_resources({"cpu": "2", "memory": "8Gi"}, "medium"),
    "gpu": parse_resources({"cpu": "4", "memory": "16Gi", GPU: "1"}, "gpu"),
    "gpu-2": parse_resources({"cpu": "8", "memory": "32Gi", GPU: "2"}, "gpu-2"),
}
CULLER_TIMEOUT = {"small": 3600, "medium": 7200, "gpu": 1800, "gpu-2": 1800}  # the culler's per-profile timeouts


@dataclass(frozen=True)
class Pool:
    name: str
    allocatable: dict
    labels: dict
    min_nodes: int
    max_nodes: int = 500
    taints: tuple = ()


POOLS = (
    Pool("cpu", {"cpu": "16", "memory": "64Gi", "pods": "110"}, {}, min_nodes=2),
    Pool("gpu", {"cpu": "32", "memory": "128Gi", "pods": "110", GPU: "4"}, {"nvidia.com/gpu.present": "true"},
         min_nodes=0, taints=({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},)),
)
UNTAINTED_POOLS = (POOLS[0], Pool(**{**POOLS[1].__dict__, "taints": ()}))
SCAN_INTERVAL, PENDING_BEFORE_SCALE_UP, BOOT_SECONDS, EMPTY_BEFORE_SCALE_DOWN = 10, 30, BOOT, TAIL
EXTENDER_WEIGHT = 5
MAX_EXTENDER_PRIORITY, MAX_NODE_SCORE = 10, 100
BUILTIN_MOST = (("cpu", 1.0), ("memory", 1.0), (GPU, 3.0))
DEFAULT_RESOURCES = (("cpu", 1.0), ("memory", 1.0))


class TraceError(HubfleetError, ValueError):
    """A trace line that cannot be replayed; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Arrival:
    time: float
    user: str
    profile: str
    duration: float
    group: str = ""  # the group the user's use is accounted to ("": the trace names none)


def parse_trace(text: str, *, name: str = "trace") -> list[Arrival]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise TraceError(f"{where}: not a JSON object ({e})") from None
        if not isinstance(rec, dict):
            raise TraceError(f"{where}: expected an object {{time, user, profile, duration}}, got {line.strip()[:60]}")
        for key in ("time", "duration"):
            v = rec.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise TraceError(f"{where}: field {key!r}: expected a non-negative number of seconds, got {v!r}")
        if not isinstance(rec.get("user"), str) or not rec["user"]:
            raise TraceError(f"{where}: field 'user': expected a user name (string), got {rec.get('user')!r}")
        if rec.get("profile") not in PROFILES:
            raise TraceError(f"{where}: field 'profile': {rec.get('profile')!r} is not a profile of the simulation; "
                             f"choose one of: {', '.join(PROFILES)}")
        group = rec.get("group", "")
        if not isinstance(group, str):
            raise TraceError(f"{where}: field 'group': expected a group name (string), got {group!r}")
        out.append(Arrival(float(rec["time"]), rec["user"], rec["profile"], float(rec["duration"]), group))
    out.sort(key=lambda a: a.time)
    return out


def load_trace(path: Path) -> list[Arrival]:
    return parse_trace(Path(path).read_text(), name=str(path))


@dataclass
class SimPod:
    id: int
    arrival: Arrival
    requests: Resources
    info: PodInfo
    node: str | None = None
    bound_at: float | None = None
    ended_at: float | None = None
    end_at: float | None = None  # the pending end event's time (a later one supersedes it)
    fragmented: bool = False

    @property
    def lifetime(self) -> float:
        """Seconds from binding to the end: the user works `duration`, then the culler stops the idle server."""
        return self.arrival.duration + CULLER_TIMEOUT[self.arrival.profile]

    @property
    def wants_gpu(self) -> bool:
        return self.requests.get(GPU, Decimal(0)) > 0


@dataclass
class SimNode:
    name: str
    pool: Pool
    info: NodeInfo
    added_at: float
    ready_at: float
    removed_at: float | None = None
    pods: set = field(default_factory=set)
    empty_since: float | None = None


# --- placements: (pod, ready nodes, usage, simulation) -> node name or None ------------------------------------------

def _best(scored):
    best = None
    for key, name in scored:
        if best is None or key > best[0]:
            best = (key, name)
    return best[1] if best else None


def tolerated(pod: SimPod, node: SimNode) -> bool:
    """TaintToleration: GPU pods tolerate the GPU pool's taint (as GKE's and EKS's GPU pools taint their nodes and
    ExtendedResourceToleration adds the toleration to pods requesting GPUs); CPU pods tolerate nothing."""
    return not node.pool.taints or pod.wants_gpu


def builtin_feasible(pod: SimPod, node: SimNode, usage) -> bool:
    return tolerated(pod, node) and not insufficient(pod.requests, usage.get(node.name, {}), node.info.allocatable)


def place_builtin(strategy):
    score = {"LeastAllocated": least_allocated, "MostAllocated": most_allocated}[strategy]

    def place(pod: SimPod, nodes: list[SimNode], usage, sim) -> str | None:
        return _best(((score(pod.requests, usage.get(n.name, {}), n.info.allocatable, DEFAULT_RESOURCES),
                       [-ord(c) for c in n.name]), n.name)
                     for n in nodes if builtin_feasible(pod, n, usage))
    return place


def place_hubfleet(policy: Policy = Policy()):
    def place(pod: SimPod, nodes: list[SimNode], usage, sim) -> str | None:
        infos = [n.info for n in nodes if builtin_feasible(pod, n, usage)]  # kube-scheduler's filters run first
        feasible = filter_nodes(pod.requests, infos, usage, policy).feasible  # the extender's filter
        if not feasible:
            return None
        by_name = {n.name: n for n in nodes}
        view = View(now=sim.now, drain_at=sim.drain_at(), expected_stay=sim.lifetimes.expected)
        scores = prioritize(pod.requests, [by_name[f].info for f in feasible], usage, policy, pod=pod.info, view=view)
        factor = EXTENDER_WEIGHT * MAX_NODE_SCORE / MAX_EXTENDER_PRIORITY
        return _best(((s * factor + most_allocated(pod.requests, usage.get(name, {}), by_name[name].info.allocatable,
                                                   BUILTIN_MOST), [-ord(c) for c in name]), name)
                     for name, s in scores)
    return place


def place_oracle(quantum: float = 1800.0):
    """Offline reference, not a placement a scheduler can run: it knows when every session ends (the trace's
    duration plus the culler's timeout). A CPU pod goes where it extends the node's drain time (the end of its last
    pod) least, counted in `quantum`-second steps; among nodes it does not extend, the one that drains soonest after
    it (again in steps); then MostAllocated; an empty node last. GPU pods are placed as hubfleet places them (its GPU
    rule, which keeps them from fragmenting). The gap between hubfleet and this row is what knowing the future would
    be worth; the gap between this row and the bound is what a smarter offline packer might still find."""
    hubfleet = place_hubfleet()

    def place(pod: SimPod, nodes: list[SimNode], usage, sim) -> str | None:
        if pod.wants_gpu:
            return hubfleet(pod, nodes, usage, sim)
        end = sim.now + pod.lifetime

        def key(n: SimNode):
            most = most_allocated(pod.requests, usage.get(n.name, {}), n.info.allocatable, DEFAULT_RESOURCES)
            if not n.pods:
                return (-1, 0.0, 0.0, most)
            drain = max(sim.pods[i].bound_at + sim.pods[i].lifetime for i in n.pods)
            extend = max(0.0, end - drain)
            return (0, -(extend // quantum), -((drain - end) // quantum) if not extend else 0.0, most)
        return _best(((key(n), [-ord(c) for c in n.name]), n.name)
                     for n in nodes if builtin_feasible(pod, n, usage) and not n.pool.taints and not
                     n.info.allocatable.get(GPU, Decimal(0)))
    return place


PLACEMENTS = {"LeastAllocated": place_builtin("LeastAllocated"), "MostAllocated": place_builtin("MostAllocated"),
              "hubfleet": place_hubfleet(), "oracle": place_oracle()}


class Simulation:
    def __init__(self, trace: list[Arrival], place, pools: tuple[Pool, ...] = POOLS):
        self.trace, self.place, self.pools = trace, place, pools
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self.usage: dict[str, Resources] = {}
        self.pods: list[SimPod] = []
        self.pending: list[SimPod] = []
        self.lifetimes = Lifetimes(prior=3600.0)
        self._events: list = []
        self._seq = 0
        self._counter = {p.name: 0 for p in pools}
        self.peak_nodes = 0
        self.draining: set[str] = set()  # nodes marked by consolidation: new pods go elsewhere when they fit
        for pool in pools:
            for _ in range(pool.min_nodes):
                self._add_node(pool, ready=True)

    # --- nodes ---
    def _add_node(self, pool: Pool, ready: bool = False) -> SimNode:
        self._counter[pool.name] += 1
        name = f"{pool.name}-{self._counter[pool.name]:04d}"
        info = node_info({"metadata": {"name": name, "labels": {**pool.labels, "kubernetes.io/hostname": name}},
                          "status": {"allocatable": pool.allocatable}})
        ready_at = self.now if ready else self.now + BOOT_SECONDS
        node = SimNode(name, pool, info, added_at=self.now, ready_at=ready_at, empty_since=ready_at)
        self.nodes[name] = node
        if not ready:
            self._push(ready_at, "ready", name)
        self.peak_nodes = max(self.peak_nodes, sum(1 for n in self.nodes.values() if n.removed_at is None))
        return node

    def _live(self, pool: Pool) -> int:
        return sum(1 for n in self.nodes.values() if n.pool is pool and n.removed_at is None)

    def ready_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.removed_at is None and n.ready_at <= self.now]

    def drain_at(self) -> dict[str, float]:
        out = {}
        for n in self.nodes.values():
            if n.removed_at is None and n.pods:
                out[n.name] = max(self.lifetimes.expected_end(p.arrival.profile, p.bound_at, self.now)
                                  for p in (self.pods[i] for i in n.pods))
        return out

    # --- events ---
    def _push(self, t: float, kind: str, payload) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, payload))

    def lifetime_of(self, pod: SimPod) -> float:
        return pod.lifetime

    def _try(self, pod: SimPod) -> bool:
        ready = self.ready_nodes()
        name = None
        if self.draining:  # a PreferNoSchedule mark: every placement tries the other nodes first
            name = self.place(pod, [n for n in ready if n.name not in self.draining], self.usage, self)
        if name is None:
            name = self.place(pod, ready, self.usage, self)
        if name is None:
            if pod.wants_gpu and not pod.fragmented:
                free = sum(n.info.allocatable.get(GPU, Decimal(0)) - self.usage.get(n.name, {}).get(GPU, Decimal(0))
                           for n in self.ready_nodes())
                pod.fragmented = free >= pod.requests[GPU]
            return False
        node = self.nodes[name]
        node.pods.add(pod.id)
        node.empty_since = None
        self.usage[name] = add_usage(self.usage.get(name, {}), pod.requests)
        pod.node, pod.bound_at = name, self.now
        self.schedule_end(pod, self.now + self.lifetime_of(pod))
        return True

    def schedule_end(self, pod: SimPod, at: float) -> None:
        pod.end_at = at
        self._push(at, "end", pod.id)

    def arrive(self, pod: SimPod) -> None:
        if not self._try(pod):
            self.pending.append(pod)

    def end(self, pod: SimPod) -> None:
        node = self.nodes[pod.node]
        node.pods.discard(pod.id)
        self.usage[pod.node] = add_usage(self.usage[pod.node], pod.requests, sign=-1)
        pod.ended_at = self.now
        self.lifetimes.observe(pod.arrival.profile, self.now - pod.bound_at)
        if not node.pods:
            node.empty_since = self.now
        self._retry_pending()

    def advance(self, t: float) -> None:
        """Called with the next event's time before the clock moves there (for integrals over time)."""

    def handle(self, kind: str, payload) -> None:
        raise ValueError(f"unknown event {kind!r}")

    def done(self) -> bool:
        return not self.pending and all(p.ended_at is not None for p in self.pods)

    def _retry_pending(self) -> None:
        still = []
        for pod in self.pending:
            if not self._try(pod):
                still.append(pod)
        self.pending = still

    def _autoscale(self) -> None:
        waiting = [p for p in self.pending if self.now - p.arrival.time >= PENDING_BEFORE_SCALE_UP]
        for pool in self.pools:
            want = [p for p in waiting if (pool.name == "gpu") == p.wants_gpu]
            if not want:
                continue
            alloc = parse_resources(pool.allocatable, pool.name)
            bins = [{} for n in self.nodes.values() if n.pool is pool and n.removed_at is None and n.ready_at > self.now]
            booting = len(bins)
            for pod in want:
                for i, used in enumerate(bins):
                    if not insufficient(pod.requests, used, alloc):
                        bins[i] = add_usage(used, pod.requests)
                        break
                else:
                    bins.append(add_usage({}, pod.requests))
            live = self._live(pool)
            for _ in range(min(len(bins) - booting, pool.max_nodes - live)):
                self._add_node(pool)
        for node in list(self.nodes.values()):
            if node.removed_at is not None or node.pods or node.ready_at > self.now:
                continue
            if self.now - node.empty_since >= EMPTY_BEFORE_SCALE_DOWN and self._live(node.pool) > node.pool.min_nodes:
                node.removed_at = self.now

    def run(self) -> dict:
        for i, a in enumerate(self.trace):
            pod = SimPod(i, a, PROFILES[a.profile], PodInfo(PROFILES[a.profile], "pack", a.profile))
            self.pods.append(pod)
            self._push(a.time, "arrive", i)
        end_of_trace = max((a.time for a in self.trace), default=0)
        t = 0.0
        while t <= end_of_trace + 86400:
            self._push(t, "scan", None)
            t += SCAN_INTERVAL
        while self._events:
            t, _, kind, payload = heapq.heappop(self._events)
            self.advance(t)
            self.now = t
            if kind == "arrive":
                self.arrive(self.pods[payload])
            elif kind == "end":
                pod = self.pods[payload]
                if pod.ended_at is None and pod.end_at == self.now:
                    self.end(pod)
            elif kind == "ready":
                self.nodes[payload].empty_since = self.now
                self._retry_pending()
            elif kind == "scan":
                self._autoscale()
                if self.done() and all(self._live(pool) <= pool.min_nodes for pool in self.pools):
                    break
            else:
                self.handle(kind, payload)
        return self.results()

    def results(self) -> dict:
        end = self.now
        pool_seconds = {pool.name: sum((n.removed_at if n.removed_at is not None else end) - n.added_at
                                       for n in self.nodes.values() if n.pool is pool) for pool in self.pools}
        node_seconds = sum(pool_seconds.values())
        own = run_bound(self, pool_capacities(self.pools), GPU) if separate(self.pools) else None
        gpu_nodes = {n.name for n in self.nodes.values() if n.info.allocatable.get(GPU, Decimal(0)) > 0}
        cpu_on_gpu = sum((p.ended_at or end) - p.bound_at for p in self.pods
                         if p.node in gpu_nodes and not p.wants_gpu)
        waits = sorted((p.bound_at if p.bound_at is not None else end) - p.arrival.time for p in self.pods)
        return {"pods": len(self.pods), "node_hours": node_seconds / 3600, "peak_nodes": self.peak_nodes,
                "gpu_node_hours_on_cpu_pods": cpu_on_gpu / 3600,
                "cpu_pods_on_gpu_nodes": sum(1 for p in self.pods if p.node in gpu_nodes and not p.wants_gpu),
                "fragmentation_pendings": sum(1 for p in self.pods if p.fragmented),
                "pending_p95_s": waits[int(0.95 * (len(waits) - 1))] if waits else 0.0,
                "pending_max_s": waits[-1] if waits else 0.0, "never_bound": sum(1 for p in self.pods if p.node is None),
                "preemptions": 0,
                "pool_node_hours": {name: seconds / 3600 for name, seconds in pool_seconds.items()},
                "bound_own_node_hours": sum(own.values()) if own is not None else None}


def separate(pools: tuple[Pool, ...]) -> bool:
    """CPU pods cannot use GPU nodes (the bound's first assumption holds for every placement)."""
    return all(p.taints for p in pools if GPU in p.allocatable)


def pool_capacities(pools: tuple[Pool, ...]) -> list:
    return [(pool, parse_resources(pool.allocatable, pool.name)) for pool in pools]


def lower_bound(trace: list[Arrival], pools: tuple[Pool, ...] = POOLS) -> float | None:
    """Node-hours no placement can beat on `trace` (bench/sim_bound.py: pods bound on arrival, fluid packing,
    the autoscaler's boot and empty-node tail), or None when CPU pods may use GPU nodes."""
    by_pool = lower_bound_by_pool(trace, pools)
    return None if by_pool is None else sum(by_pool.values())


def lower_bound_by_pool(trace: list[Arrival], pools: tuple[Pool, ...] = POOLS) -> dict[str, float] | None:
    if not separate(pools):
        return None
    return trace_bound(trace, pool_capacities(pools), PROFILES, lambda a: a.duration + CULLER_TIMEOUT[a.profile],
                       GPU)


def simulate(trace: list[Arrival], placement: str, pools: tuple[Pool, ...] = POOLS) -> dict:
    return Simulation(trace, PLACEMENTS[placement], pools).run()
