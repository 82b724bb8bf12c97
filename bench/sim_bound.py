"""A lower bound on the node-hours of a day that no placement can beat, under bench/sim_churn.py's cluster-autoscaler
model (pure; used by bench/bench_sim.py and the tests).

What it assumes (and why each step only ever lowers the figure):

1. Pods of a pool only run on that pool's nodes (true when the GPU pool is tainted, or for a placement that keeps
   CPU pods off GPU nodes; the untainted cluster's built-in placements break it, so no bound is given there).
2. Pod *i* runs from its bind time ``b_i`` for exactly its lifetime (duration + culler timeout), as in the
   simulation. The placement-independent row takes ``b_i`` = its arrival (no wait at all). A placement that makes
   pods wait shifts their intervals later, which can (rarely) let rounding work in its favour, so the bound of a
   run with its own bind times (:func:`run_bound`) is also computed and checked to be below that run.
3. At time ``s`` the nodes hosting pods number at least ``need(s) = max_r ceil(demand_r(s) / capacity_r)`` over
   cpu, memory, GPUs and pod slots (the fluid relaxation: pods may be cut into pieces, so bin packing is free).
4. The autoscaler's delays, as placement-independent costs: a node that hosts a pod at ``s`` was added at the
   latest at ``s - 90`` (boot; or is an initial node) and is removed at the earliest 600 s after it emptied, so it
   is alive during all of ``[s - 90, s + 600]``. Hence at ``t`` at least
   ``max(min_nodes, max{need(s) : s in [t - 600, t + 90]})`` nodes are alive, integrated from 0 to the last end.
   Ignored (so the bound is lower still): the 30 s Pending before a scale-up, the 10 s scan period, nodes added for
   pods that found room elsewhere meanwhile, and the tail after the last pod ends.
"""

from __future__ import annotations

import heapq
import math
from decimal import Decimal

BOOT, TAIL = 90.0, 600.0
ONE = Decimal(1)


def _pieces(intervals, capacity: dict[str, Decimal]):
    """(start, end, need) pieces where `need` = max over resources of ceil(demand / capacity) is constant."""
    events: dict[float, dict[str, Decimal]] = {}
    for start, end, requests in intervals:
        if end <= start:
            continue
        for t, sign in ((start, 1), (end, -1)):
            bucket = events.setdefault(t, {})
            for res, q in requests.items():
                bucket[res] = bucket.get(res, Decimal(0)) + sign * q
    demand: dict[str, Decimal] = {}
    times = sorted(events)
    for t, t_next in zip(times, times[1:]):
        for res, q in events[t].items():
            demand[res] = demand.get(res, Decimal(0)) + q
        need = max((math.ceil(demand.get(res, Decimal(0)) / cap) for res, cap in capacity.items() if cap > 0),
                   default=0)
        if need > 0:
            yield t, t_next, need


def node_seconds_bound(intervals, capacity: dict[str, Decimal], min_nodes: int = 0, horizon: float | None = None
                       ) -> float:
    """Node-seconds of one pool that any placement needs for pods running over `intervals` ((start, end,
    requests) triples) on nodes of `capacity` (see the module docstring), from 0 to `horizon` (default: the last
    end)."""
    intervals = list(intervals)
    if horizon is None:
        horizon = max((end for _, end, _ in intervals), default=0.0)
    # need(s) on [a, b) forces that many nodes alive on [a - BOOT, b + TAIL]: the max of those dilated pieces
    dilated = sorted((max(0.0, a - BOOT), min(horizon, b + TAIL), n) for a, b, n in _pieces(intervals, capacity))
    total, t, i, heap = 0.0, 0.0, 0, []
    while t < horizon:
        while i < len(dilated) and dilated[i][0] <= t:
            heapq.heappush(heap, (-dilated[i][2], dilated[i][1]))
            i += 1
        while heap and heap[0][1] <= t:
            heapq.heappop(heap)
        level = max(min_nodes, -heap[0][0] if heap else 0)
        t_next = min([horizon] + ([dilated[i][0]] if i < len(dilated) else []) + ([heap[0][1]] if heap else []))
        total += level * (t_next - t)
        t = t_next
    return total


def trace_bound(trace, pools, profiles, lifetime_of, gpu: str) -> dict[str, float]:
    """Node-hours of the bound per pool with every pod bound on arrival (the placement-independent row)."""
    return _pools_bound([(a.time, a.time + lifetime_of(a), profiles[a.profile]) for a in trace], pools, gpu)


def _pools_bound(intervals, pools, gpu: str) -> dict[str, float]:
    horizon = max((end for _, end, _ in intervals), default=0.0)  # every run lasts until its last pod ends
    out = {}
    for pool, capacity in pools:
        wants = [(start, end, {**requests, "pods": ONE}) for start, end, requests in intervals
                 if (requests.get(gpu, Decimal(0)) > 0) == (capacity.get(gpu, Decimal(0)) > 0)]
        out[pool.name] = node_seconds_bound(wants, capacity, pool.min_nodes, horizon) / 3600
    return out


def run_bound(sim, pools, gpu: str) -> dict[str, float]:
    """Node-hours per pool of the bound for a finished simulation's own bind times (checked to be below that run)."""
    return _pools_bound([(p.bound_at, p.ended_at, p.requests) for p in sim.pods if p.ended_at is not None], pools, gpu)
