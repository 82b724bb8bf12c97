"""Consolidation in the churn simulation: the culler's sweep stops idle servers on nearly empty nodes (after a warning)
so that the autoscaler can remove the node (pure; bench/bench_sim.py prints the table, tests/unit/test_sim_gpu.py
checks it on small traces).

Model (on bench/sim_churn.py's cluster and autoscaler):

- a user works ``duration`` after the server is bound, then leaves it idle; the culler stops it ``timeout`` later
  (per profile, as in sim_churn). A GPU server's GPU is in use while its user works.
- every ``sweep`` seconds the culler runs ``services.culler.consolidate.consolidation_plan`` (the very function) on
  the live servers (idle time since the user's last activity) and nodes (requests in percent of allocatable,
  ``requested_percent``; the pools' sizes and minimums): it warns, stops after ``warn_before`` and withdraws
  warnings as the plan says. The nodes being emptied are marked (a PreferNoSchedule mark: every placement tries the
  other nodes first).
- a warned user comes back within the warning with probability ``come_back`` (seeded per server and warning; at a
  uniform moment of the warning): the warning lapses, the server is idle again from then, and the normal timeout
  restarts.

Costs counted: stops per day, the idle minutes each stopped server lost (its normal cull time minus the stop), warned
users who came back.
"""

from __future__ import annotations

import random

from hubfleet.services.culler.consolidate import (ConsolidatePolicy, Node, Pool as PlanPool, Server,
                                                  consolidation_plan)

from bench._common import pct
from bench.sim_churn import CULLER_TIMEOUT, POOLS, Arrival, Simulation, SimPod

SWEEP = 300.0  # the culler's default period with warn_before 10 min: half the shortest warning period
WARN_BEFORE = 600.0
COME_BACK = 0.2


def policies(idle_after: float = 600.0, below: float = 25.0, warn_before: float = WARN_BEFORE) -> dict:
    """The same consolidation for every profile of the simulation."""
    return {p: ConsolidatePolicy(idle_after=idle_after, node_requests_below=below, warn_before=warn_before)
            for p in CULLER_TIMEOUT}


class ConsolidationSimulation(Simulation):
    def __init__(self, trace: list[Arrival], place, *, policies: dict[str, ConsolidatePolicy], sweep: float = SWEEP,
                 come_back: float = COME_BACK, seed: int = 0, pools=POOLS):
        super().__init__(trace, place, pools)
        self.policies, self.sweep, self.come_back, self.seed = policies, sweep, come_back, seed
        self.last_active: dict[int, float] = {}
        self.warned_at: dict[int, float] = {}
        self.warnings = 0
        self.came_back = 0
        self.stopped: list[float] = []  # idle seconds lost per consolidation stop
        self.idle_sweeps = self.idle_reached = 0  # servers idle >= idle_after per sweep; of them on nodes emptied
        end = max((a.time for a in trace), default=0.0) + 86400
        t = 0.0
        while t <= end:
            self._push(t, "sweep", None)
            t += sweep

    def _try(self, pod: SimPod) -> bool:
        bound = super()._try(pod)
        if bound:
            self.last_active[pod.id] = self.now + pod.arrival.duration
        return bound

    def handle(self, kind: str, payload) -> None:
        if kind == "sweep":
            if not self.done():
                self._sweep()
        elif kind == "active":
            pod = self.pods[payload]
            if pod.ended_at is None:
                self.last_active[pod.id] = self.now
                self.schedule_end(pod, self.now + CULLER_TIMEOUT[pod.arrival.profile])
        else:
            super().handle(kind, payload)

    def _sweep(self) -> None:
        servers, counts = [], {}
        for node in self.ready_nodes():
            counts[node.pool.name] = counts.get(node.pool.name, 0) + 1
            for i in node.pods:
                pod = self.pods[i]
                idle = max(0.0, self.now - self.last_active[i])
                servers.append(Server(str(i), node.name, pod.arrival.profile, idle, pod.requests,
                                      gpu_in_use=(idle == 0) if pod.wants_gpu else None,
                                      warned_at=self.warned_at.get(i)))
        nodes = [Node(n.name, self.usage.get(n.name, {}), n.info.allocatable, n.pool.name) for n in self.ready_nodes()]
        pools = [PlanPool(p.name, self._live(p), p.min_nodes) for p in self.pools]
        plan = consolidation_plan(now=self.now, servers=servers, nodes=nodes, pools=pools, policies=self.policies)
        self.draining = set(plan.draining)
        for server in servers:
            policy = self.policies.get(server.profile)
            if policy is not None and server.idle_for >= policy.idle_after:
                self.idle_sweeps += 1
                self.idle_reached += server.node in plan.draining
        for step in plan.steps:
            i = int(step.key)
            pod = self.pods[i]
            if step.action == "cancel":
                self.warned_at.pop(i, None)
            elif step.action == "warn":
                self.warned_at[i] = self.now
                self.warnings += 1
                rng = random.Random(self.seed * 1_000_003 + i * 7919 + self.warnings)
                if rng.random() < self.come_back:
                    self.came_back += 1
                    self._push(self.now + rng.uniform(0, self.policies[pod.arrival.profile].warn_before), "active", i)
            elif step.action == "stop":
                self.warned_at.pop(i, None)
                self.stopped.append(self.last_active[i] + CULLER_TIMEOUT[pod.arrival.profile] - self.now)
                self.end(pod)

    def consolidation_results(self) -> dict:
        days = max(1.0, self.now / 86400)
        return {"stops_per_day": len(self.stopped) / days, "warnings": self.warnings, "came_back": self.came_back,
                "lost_idle_p50_min": pct(self.stopped, 0.5) / 60 if self.stopped else 0.0,
                "lost_idle_p95_min": pct(self.stopped, 0.95) / 60 if self.stopped else 0.0,
                "lost_idle_hours": sum(self.stopped) / 3600,
                "idle_reached": self.idle_reached / self.idle_sweeps if self.idle_sweeps else 0.0}


class ShortTimeoutSimulation(Simulation):
    """Reference, not a policy: every server stopped `idle_after` after its user's last activity, on any node, without
    a warning (what consolidation could reach at most with that ``idle_after``)."""

    def __init__(self, trace: list[Arrival], place, *, idle_after: float, pools=POOLS):
        super().__init__(trace, place, pools)
        self.idle_after = idle_after

    def lifetime_of(self, pod: SimPod) -> float:
        return pod.arrival.duration + min(self.idle_after, CULLER_TIMEOUT[pod.arrival.profile])


def simulate_consolidation(trace: list[Arrival], place, **kw) -> dict:
    sim = ConsolidationSimulation(trace, place, **kw)
    r = sim.run()
    return {**r, **sim.consolidation_results()}
