"""GPU scarcity in the churn simulation: GPU profiles with quotas, and what happens to a spawn that finds the quota
full (pure; bench/bench_sim.py prints the table, tests/unit/test_sim_gpu.py checks it on small traces).

Three ways to handle a full quota, on the same trace and cluster (bench/sim_churn.py's, hubfleet's placement):

- ``retry`` (today): ProfileSpawner answers "Quota full ... Stop one or pick another profile"
  (``spawners.profiles.quota.quota_violation``, the very check); the user tries again every 2-5 minutes (uniform,
  seeded per request) until a try finds a free slot. A new arrival that finds a free slot takes it.
- ``fifo`` / ``fair_share``: the request joins the profile's queue (``spawners.queue_policy.join``: one request per
  user and profile) and is admitted ``ADMIT_LATENCY`` seconds after a slot frees, in the order of
  ``queue_policy.admission_order`` (fair share: usage per group over a 7-day window, weighted). A direct spawn does
  not overtake a non-empty queue.

A slot is held from admission to the server's end (its pod may still wait for a GPU node). GPU servers are culled
30 minutes idle and at ``MAX_AGE`` (4 h from the spawn, Pending included), so the wait shown at joining (``queue_policy.shown_wait``: "at the latest"
from the running servers' max_age deadlines, "expected" from ``scheduler_plugin.scoring.Lifetimes``, the profile's
learned session lengths) can be compared with the wait that followed.

Measured per run: time to a GPU (arrival to the pod bound on a node), GPU-slot-seconds free while someone of that
profile waited, GPU-hours per group while both groups waited (``contended``) against the groups' weights (Jain's
index over the weight-normalised shares), and the shown wait's error (actual minus shown).
"""

from __future__ import annotations

import random
from hubfleet.spawners.profiles.model import Quota, RunningServer
from hubfleet.spawners.profiles.quota import QuotaCounts, quota_violation
from hubfleet.spawners.queue_policy import FAIR_SHARE, Request, Use, admission_order, group_usage, join, shown_wait

from bench._common import pct
from bench.sim_churn import CULLER_TIMEOUT, GPU, PLACEMENTS, POOLS, Arrival, Simulation, SimPod

MAX_AGE = 4 * 3600.0
ADMIT_LATENCY = 2.0  # a stop to the next queued spawn's start (the admission bench's goal: p95 <= 2 s)
RETRY = (120.0, 300.0)  # seconds between a refused user's tries
WINDOW = 7 * 86400.0  # fair share's usage window (the budget window)
MODES = ("retry", "fifo", FAIR_SHARE)
# per trace: the GPU profiles' quotas (max servers at once) and the groups' weights (a group without one: 1)
SCARCITY = {
    "school-day": ({"gpu": 8, "gpu-2": 3}, {}),
    "research-day": ({"gpu": 32, "gpu-2": 6}, {}),
    "lab-day": ({"gpu": 20, "gpu-2": 4}, {}),
    "course-day": ({"gpu": 20, "gpu-2": 4}, {"course": 1.0, "research": 2.0}),
}


def group_of(arrival: Arrival) -> str:
    """The trace's group; for a trace without groups, two of equal demand by the parity of the user's number."""
    if arrival.group:
        return arrival.group
    digits = "".join(c for c in arrival.user if c.isdigit())
    return "odd" if digits and int(digits) % 2 else "even"


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one has everything."""
    if not values or not any(values):
        return float("nan")
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


class GpuSimulation(Simulation):
    def __init__(self, trace: list[Arrival], *, quotas: dict[str, int], mode: str, weights: dict[str, float],
                 groups=None, seed: int = 0, place=PLACEMENTS["hubfleet"], pools=POOLS):
        super().__init__(trace, place, pools)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.weights, self.seed = mode, weights, seed
        self.quotas = [Quota(max_servers=n, profile=p) for p, n in quotas.items()]
        self.limit = dict(quotas)
        self.group_of = groups or group_of
        self.holding: dict[int, RunningServer] = {}  # pod id -> its slot (admitted, not ended)
        self.queue: dict[str, tuple[Request, ...]] = {p: () for p in quotas}
        self.request_pod: dict[Request, SimPod] = {}
        self.retrying: dict[str, set[int]] = {p: set() for p in quotas}
        self.waiting_key: set[tuple[str, str]] = set()  # (user, profile) with a request waiting
        self.uses: dict[int, Use] = {}
        self.admitted_at: dict[int, float] = {}
        self.shown: dict[int, object] = {}
        self.merged = 0
        self.idle_slot_seconds = 0.0
        self._last = 0.0
        self._seq = 0

    # --- the gate in front of the placement ---
    def lifetime_of(self, pod: SimPod) -> float:
        """The culler's max_age counts from the spawn (the admission), including the time the pod was Pending."""
        if pod.arrival.profile not in self.limit:
            return pod.lifetime
        return min(pod.lifetime, self.admitted_at[pod.id] + MAX_AGE - self.now)

    def _waiting(self, profile: str) -> int:
        return len(self.queue[profile]) + len(self.retrying[profile])

    def _counts(self) -> QuotaCounts:
        return QuotaCounts(self.holding.values())

    def _fits(self, pod: SimPod) -> bool:
        a = pod.arrival
        return quota_violation(self.quotas, self._counts(), profile=a.profile, groups=frozenset([self.group_of(a)]),
                               user=a.user) is None

    def _admit(self, pod: SimPod) -> None:
        a = pod.arrival
        self.holding[pod.id] = RunningServer(str(pod.id), a.profile, frozenset([self.group_of(a)]), a.user)
        self.admitted_at[pod.id] = self.now
        self.uses[pod.id] = Use(a.user, self.group_of(a), self.now, None, float(pod.requests[GPU]))
        super().arrive(pod)

    def arrive(self, pod: SimPod) -> None:
        a = pod.arrival
        if a.profile not in self.limit:
            return super().arrive(pod)
        key = (a.user, a.profile)
        if key in self.waiting_key:  # the user already waits for this profile: the same place
            self.merged += 1
            pod.ended_at = pod.bound_at = self.now
            pod.node = "(merged)"
            return
        if self.mode == "retry":
            if self._fits(pod):
                return self._admit(pod)
            self.retrying[a.profile].add(pod.id)
            self.waiting_key.add(key)
            self._push(self.now + self._retry_after(pod), "retry", pod.id)
            return
        if not self.queue[a.profile] and self._fits(pod):
            return self._admit(pod)
        self._seq += 1
        request = Request(a.user, a.profile, self.group_of(a), self.now, self._seq)
        self.queue[a.profile], _ = join(queue=self.queue[a.profile], request=request)
        self.request_pod[request] = pod
        self.waiting_key.add(key)
        self.shown[pod.id] = self._shown(request)

    def _retry_after(self, pod: SimPod) -> float:
        rng = random.Random(self.seed * 1_000_003 + pod.id * 7919 + int(self.now))
        return rng.uniform(*RETRY)

    def _usage(self) -> dict[str, float]:
        return group_usage(uses=list(self.uses.values()), now=self.now, window=WINDOW)

    def _order(self, profile: str, charge: float = 0.0) -> list[Request]:
        order = "fifo" if self.mode == "fifo" else FAIR_SHARE
        return admission_order(queue=self.queue[profile], usage=self._usage(), weights=self.weights, order=order,
                               charge=charge)

    def _shown(self, request: Request):
        profile = request.profile
        mean = self.lifetimes.expected(profile)
        ordered = self._order(profile, charge=mean * float(self.request_pod[request].requests[GPU]))
        position = ordered.index(request) + 1
        mine = [self.pods[i] for i, s in self.holding.items() if s.profile == profile]
        starts = [(p.bound_at if p.bound_at is not None else self.now) for p in mine]
        return shown_wait(now=self.now, position=position, waiting=len(ordered),
                          deadlines=[self.admitted_at[p.id] + MAX_AGE for p in mine], max_age=MAX_AGE,
                          expected_ends=[self.lifetimes.expected_end(profile, s, self.now) for s in starts],
                          expected_session=mean)

    def handle(self, kind: str, payload) -> None:
        if kind == "retry":
            pod = self.pods[payload]
            if self._fits(pod):
                self.retrying[pod.arrival.profile].discard(pod.id)
                self.waiting_key.discard((pod.arrival.user, pod.arrival.profile))
                self._admit(pod)
            else:
                self._push(self.now + self._retry_after(pod), "retry", pod.id)
        elif kind == "admit":
            profile = payload
            while self.queue[profile]:
                request = self._order(profile)[0]
                pod = self.request_pod[request]
                if not self._fits(pod):
                    break
                self.queue[profile] = tuple(q for q in self.queue[profile] if q is not request)
                self.waiting_key.discard((request.user, profile))
                self._admit(pod)
        else:
            super().handle(kind, payload)

    def end(self, pod: SimPod) -> None:
        super().end(pod)
        if self.holding.pop(pod.id, None) is not None:
            use = self.uses[pod.id]
            self.uses[pod.id] = Use(use.user, use.group, use.start, self.now, use.amount)
            if self.mode != "retry" and self.queue[pod.arrival.profile]:
                self._push(self.now + ADMIT_LATENCY, "admit", pod.arrival.profile)

    def done(self) -> bool:
        return super().done() and not any(self.queue.values()) and not any(self.retrying.values())

    # --- integrals over time ---
    def advance(self, t: float) -> None:
        dt = t - self._last
        if dt <= 0:
            return
        self._last = t
        holding = self._counts()
        for profile, limit in self.limit.items():
            free = limit - holding.by_profile[profile]
            self.idle_slot_seconds += dt * max(0, min(free, self._waiting(profile)))

    def fair_shares(self, gpu_pods: list[SimPod]) -> tuple[dict, float, float]:
        """GPU-hours per group within the day (to the last GPU arrival) as shares of the total; Jain's index over the
        shares divided by the groups' weight shares; and Jain's index over each group's GPU-hours divided by its
        entitlement: the total shared by weight, except that a group asking
        for less than its weighted share (its sessions' GPU-hours within the day, had each started on arrival) is
        entitled to what it asked for and the rest is shared among the others (weighted max-min fairness)."""
        horizon = max((p.arrival.time for p in gpu_pods), default=0.0)
        got: dict[str, float] = {}
        asked: dict[str, float] = {}
        for p in gpu_pods:
            g, gpus = self.group_of(p.arrival), float(p.requests[GPU])
            a = p.arrival.time
            asked[g] = asked.get(g, 0.0) + gpus * max(0.0, min(horizon, a + min(p.lifetime, MAX_AGE)) - a)
            if p.id in self.admitted_at:
                start, end = self.admitted_at[p.id], p.ended_at if p.ended_at is not None else self.now
                got[g] = got.get(g, 0.0) + gpus * max(0.0, min(horizon, end) - min(horizon, start))
        total = sum(got.values())
        shares = {g: got.get(g, 0.0) / total for g in sorted(asked)} if total else {}
        if len(asked) < 2 or not total:
            return shares, float("nan"), float("nan")
        weight = sum(self.weights.get(g, 1.0) for g in asked)
        by_weight = jain([shares[g] / (self.weights.get(g, 1.0) / weight) for g in asked])
        entitled, left, open_groups = {}, total, set(asked)
        while open_groups:
            weight = sum(self.weights.get(g, 1.0) for g in open_groups)
            capped = {g for g in open_groups if asked[g] <= left * self.weights.get(g, 1.0) / weight}
            if not capped:
                for g in open_groups:
                    entitled[g] = left * self.weights.get(g, 1.0) / weight
                break
            for g in capped:
                entitled[g] = asked[g]
                left -= asked[g]
            open_groups -= capped
        return shares, by_weight, jain([got.get(g, 0.0) / entitled[g] for g in asked if entitled[g] > 0])

    def gpu_results(self) -> dict:
        gpu_pods = [p for p in self.pods if p.arrival.profile in self.limit and p.node != "(merged)"]
        waits = [((p.bound_at if p.bound_at is not None else self.now) - p.arrival.time) / 60 for p in gpu_pods]
        errors, late = [], []
        for p in gpu_pods:
            shown = self.shown.get(p.id)
            if shown is None:
                continue
            actual = self.admitted_at[p.id] - p.arrival.time
            if shown.expected is not None:
                errors.append((actual - (shown.expected - p.arrival.time)) / 60)
            if shown.at_latest is not None:
                late.append(max(0.0, self.admitted_at[p.id] - shown.at_latest) / 60)
        shares, by_weight, by_entitlement = self.fair_shares(gpu_pods)
        return {"gpu_sessions": len(gpu_pods), "merged": self.merged,
                "wait_p50_min": pct(waits, 0.5), "wait_p95_min": pct(waits, 0.95), "wait_max_min": max(waits, default=0),
                "idle_slot_hours": self.idle_slot_seconds / 3600,
                "mean_wait_min": sum(waits) / len(waits) if waits else 0.0,
                "group_shares": shares, "jain": by_weight, "jain_entitled": by_entitlement,
                "shown": len(errors), "error_p5_min": pct(errors, 0.05), "error_p50_min": pct(errors, 0.5),
                "error_p95_min": pct(errors, 0.95), "abs_error_p50_min": pct([abs(e) for e in errors], 0.5),
                "past_at_latest": sum(1 for x in late if x > 0), "with_at_latest": len(late),
                "past_at_latest_max_min": max(late, default=0.0)}


def simulate_gpu(trace: list[Arrival], *, quotas: dict[str, int], mode: str, weights: dict[str, float],
                 groups=None, seed: int = 0) -> dict:
    sim = GpuSimulation(trace, quotas=quotas, mode=mode, weights=weights, groups=groups, seed=seed)
    r = sim.run()
    return {**r, **sim.gpu_results()}


assert set(CULLER_TIMEOUT) >= {"gpu", "gpu-2"}
