"""Consolidation: which idle servers on nearly empty nodes to warn and stop so that the cluster autoscaler can remove
the node. Pure: a sweep's view of servers and nodes in, steps out.

A profile opts in with ``consolidate: {idle_after: 10m, node_requests_below: 25}`` in its cull policy. A node is
emptied only when stopping its servers lets it go:

- its requests are known and below the threshold of every server's policy (unknown: nothing is done, fail closed);
- every user server on it qualifies: idle for at least ``idle_after`` by the culler's own measure, no busy kernel
  when the policy spares busy kernels, its GPU not in use (unknown counts as in use); a server of a profile without
  ``consolidate``, or an active one, keeps the node, so nobody is stopped for nothing;
- no pod the autoscaler cannot move is on it (``pinned``), and its pool stays at or above its minimum size: of a
  pool with ``n`` live nodes and minimum ``m``, at most ``n - m`` nodes (the least requested first) are emptied.

Each server on such a node is warned (``warn``), stopped once ``warn_before`` has run out and it is still idle
(``stop``); activity after the warning, or the node no longer qualifying (a new pod landed there), withdraws it
(``cancel``; a later sweep may warn again). The churn simulation (``bench/sim_consolidate.py``) runs these functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .policies import CullConfigError, CullPolicy, format_td, parse_duration

CONSOLIDATE_KEYS = ("idle_after", "node_requests_below")


@dataclass(frozen=True)
class ConsolidatePolicy:
    """A profile's consolidation: servers idle ``idle_after`` seconds on nodes whose requests are below
    ``node_requests_below`` percent; ``warn_before`` and ``spare_busy_kernels`` come from its cull policy."""

    idle_after: float
    node_requests_below: float
    warn_before: float
    spare_busy_kernels: bool = True

    def __post_init__(self):
        if not (isinstance(self.node_requests_below, (int, float)) and not isinstance(self.node_requests_below, bool)
                and 0 < self.node_requests_below <= 100):
            raise CullConfigError(f"node_requests_below: expected a percentage in (0, 100], got "
                                  f"{self.node_requests_below!r}")
        for name in ("idle_after", "warn_before"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise CullConfigError(f"{name}: expected a duration > 0, got {value!r}")


def consolidate_policy_from_mapping(data, *, field: str, cull: CullPolicy) -> ConsolidatePolicy | None:
    """``{idle_after, node_requests_below}`` of a profile with cull policy `cull` (None/absent: no consolidation).
    Errors name ``<field>.<key>``: a percentage outside (0, 100] (``25`` or ``"25%"``), ``idle_after`` not a
    duration or not shorter than the profile's timeout, a profile without ``warn_before``."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise CullConfigError(f"{field}: expected a mapping {{idle_after, node_requests_below}}, got {data!r}")
    unknown = sorted(set(data) - set(CONSOLIDATE_KEYS))
    if unknown:
        raise CullConfigError(f"{field}.{unknown[0]}: unknown key; expected: {', '.join(CONSOLIDATE_KEYS)}")
    for key in CONSOLIDATE_KEYS:
        if key not in data:
            raise CullConfigError(f"{field}.{key}: missing")
    idle_after = parse_duration(data["idle_after"], field=f"{field}.idle_after")
    if not cull.never and idle_after >= cull.timeout:
        raise CullConfigError(f"{field}.idle_after: {format_td(idle_after)} is not shorter than the profile's timeout "
                              f"{format_td(cull.timeout)}; consolidation stops idle servers before the culler would")
    raw = data["node_requests_below"]
    percent = raw
    if isinstance(raw, str):
        try:
            percent = float(raw.strip().removesuffix("%"))
        except ValueError:
            percent = raw
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise CullConfigError(f"{field}.node_requests_below: expected a percentage in (0, 100] like 25 or '25%', "
                              f"got {raw!r}")
    if not cull.warn_before:
        raise CullConfigError(f"{field}: consolidation warns the user first; give the profile a warn_before")
    return ConsolidatePolicy(idle_after, float(percent), cull.warn_before, cull.spare_busy_kernels)


@dataclass(frozen=True)
class Server:
    """A user server as the sweep sees it: its pod's ``requests``; ``idle_for`` seconds by the culler's measure
    (None: unknown), ``busy_kernels`` (None: not asked), ``gpu_in_use`` (None for a server without GPUs; unknown
    counts as in use for one with: pass True), ``warned_at``: when a consolidation warning was given (None: not)."""

    key: str
    node: str
    profile: str
    idle_for: float | None
    requests: Mapping[str, Decimal] = field(default_factory=dict)
    busy_kernels: int | None = None
    gpu_in_use: bool | None = None
    warned_at: float | None = None


@dataclass(frozen=True)
class Node:
    """A node: what its pods request in all (``requested``; None: unknown) of its ``allocatable``, its ``pool``;
    ``pinned``: a pod the autoscaler cannot move (not a user server) runs on it."""

    name: str
    requested: Mapping[str, Decimal] | None
    allocatable: Mapping[str, Decimal]
    pool: str = ""
    pinned: bool = False


@dataclass(frozen=True)
class Pool:
    """A node pool: ``nodes`` live, ``min_nodes`` the autoscaler keeps (None: unknown, no limit applied)."""

    name: str
    nodes: int
    min_nodes: int | None = None


@dataclass(frozen=True)
class Step:
    """``warn``, ``stop`` or ``cancel`` (withdraw a warning) for server ``key`` on ``node``, and why."""

    action: str
    key: str
    node: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """A sweep's ``steps`` and the nodes being emptied (``draining``: mark them so new pods go elsewhere)."""

    steps: tuple
    draining: frozenset


RESOURCES = ("cpu", "memory", "nvidia.com/gpu")


def requested_percent(*, requested: Mapping[str, Decimal], allocatable: Mapping[str, Decimal],
                      resources: Iterable[str] = RESOURCES) -> float:
    """The largest share (percent) of the node's allocatable `resources` that `requested` takes."""
    shares = [float(requested.get(r, Decimal(0)) / allocatable[r]) * 100 for r in resources
              if allocatable.get(r, Decimal(0)) > 0]
    return max(shares, default=0.0)


def _why_not(server: Server, policy: ConsolidatePolicy | None) -> str | None:
    """Why `server` may not be stopped for consolidation whatever its node (None: it may)."""
    if policy is None:
        return f"profile {server.profile} does not consolidate"
    if server.idle_for is None or server.idle_for < policy.idle_after:
        return f"active (idle {format_td(server.idle_for)} < {format_td(policy.idle_after)})"
    if policy.spare_busy_kernels and server.busy_kernels:
        return f"{server.busy_kernels} busy kernel(s)"
    if server.gpu_in_use:
        return "its GPU is in use"
    return None


def _remaining(node: Node, going: list[Server]) -> float:
    left = dict(node.requested)
    for s in going:
        for r, q in s.requests.items():
            left[r] = left.get(r, Decimal(0)) - q
    return requested_percent(requested=left, allocatable=node.allocatable)


def _candidates(node: Node, here: list[Server], policies: Mapping[str, ConsolidatePolicy]) -> tuple[list, float]:
    """The servers of `node` to stop and the node's requests (percent) once they are gone: each may be stopped
    (:func:`_why_not`) and what stays is below its policy's threshold (dropping one raises what stays: repeated
    until it holds for all)."""
    going = [s for s in here if _why_not(s, policies.get(s.profile)) is None]
    while going:
        left = _remaining(node, going)
        keep = [s for s in going if left >= policies[s.profile].node_requests_below]
        if not keep:
            return going, left
        going = [s for s in going if s not in keep]
    return [], requested_percent(requested=node.requested, allocatable=node.allocatable)


def consolidation_plan(*, now: float, servers: Iterable[Server], nodes: Iterable[Node], pools: Iterable[Pool] = (),
                       policies: Mapping[str, ConsolidatePolicy]) -> Plan:
    """The steps of one sweep: on each node, the idle servers that may be stopped (see :func:`_candidates`) when
    what stays (the active servers) requests less than their policy's threshold; the nodes are emptied least
    loaded first, within each pool's allowance above its minimum; unknown or pinned nodes are left alone.

    For each such server ``warn``, or ``stop`` once ``warn_before`` has run out (activity since the warning: warned
    again); ``cancel`` for a warned server that no longer qualifies (active again, or a new pod raised its node's
    requests). ``draining``: the nodes with such servers.
    """
    by_node: dict[str, list[Server]] = {}
    for s in servers:
        by_node.setdefault(s.node, []).append(s)
    node_of = {n.name: n for n in nodes}
    allowance = {p.name: (p.nodes - p.min_nodes if p.min_nodes is not None else math.inf) for p in pools}
    plans = []
    for name, here in by_node.items():
        node = node_of.get(name)
        if node is None or node.requested is None or node.pinned:
            continue
        going, left = _candidates(node, here, policies)
        if going:
            plans.append((left, name, going))
    chosen: dict[str, tuple[float, list[Server]]] = {}
    for left, name, going in sorted(plans, key=lambda p: (p[0], p[1])):
        pool = node_of[name].pool
        if allowance.get(pool, math.inf) >= 1:
            allowance[pool] = allowance.get(pool, math.inf) - 1
            chosen[name] = (left, going)
    steps: list[Step] = []
    for name, here in sorted(by_node.items()):
        left, going = chosen.get(name, (None, []))
        keys = {s.key for s in going}
        for s in sorted(here, key=lambda s: s.key):
            if s.key not in keys:
                if s.warned_at is not None:
                    node = node_of.get(name)
                    why = ("node usage unknown" if node is None or node.requested is None else
                           _why_not(s, policies.get(s.profile)) or
                           "the node's other servers request too much, or its pool is at its minimum size")
                    steps.append(Step("cancel", s.key, name, f"no longer stopped to empty the node: {why}"))
                continue
            reason = (f"idle {format_td(s.idle_for)} on node {name}, {left:.0f} % of which stays requested, to let "
                      f"an almost empty node shut down")
            wb = policies[s.profile].warn_before
            if s.warned_at is None or s.idle_for < now - s.warned_at:
                steps.append(Step("warn", s.key, name, f"{reason}; stopped in {format_td(wb)} unless active; "
                                                       f"files are kept"))
            elif now - s.warned_at >= wb:
                steps.append(Step("stop", s.key, name, f"{reason}; warned {format_td(now - s.warned_at)} ago"))
    return Plan(tuple(steps), frozenset(chosen))


__all__ = ["ConsolidatePolicy", "Server", "Node", "Pool", "Step", "Plan", "CONSOLIDATE_KEYS", "consolidation_plan",
           "consolidate_policy_from_mapping", "requested_percent"]
