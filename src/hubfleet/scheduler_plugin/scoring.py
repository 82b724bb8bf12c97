"""Pure placement policy of the scheduler extender (and of bench/sim_churn.py, which replays a day of a hub through
these same functions): which nodes a pod may use, how good each one is, and which pods to preempt.

No I/O and no aiohttp/kubernetes imports: the HTTP layer (``app.py``) turns wire payloads into the dataclasses here,
and the cluster cache (``cache.py``) provides per-node usage. Pod requests and fit come from ``hubfleet.resources``,
the one resource model of the project.

- **filter**: a node passes when the pod's requests fit (``resources.insufficient``); a pod that requests no GPU is
  refused on nodes carrying the GPU-node label (``nvidia.com/gpu.present=true`` by default), so GPU nodes stay free
  for GPU pods even when a pod tolerates their taint; nodes the cluster autoscaler is deleting (taint
  ``ToBeDeletedByClusterAutoscaler``) are refused.
- **prioritize** (0..10, kube-scheduler's ``MaxExtenderPriority``), by the pod's strategy (label
  ``hubfleet.io/strategy``, written by ProfileSpawner from the profile's ``scheduling_strategy``):

  - ``pack`` (default): the weighted share of cpu and memory allocated after placing the pod (NodeResourcesFit's
    *MostAllocated*), plus a **lifetime** term: a node whose pods are expected to stay at least as long as the new
    pod scores 1, one that would drain sooner scores ``drain_in / stay``, an empty node 0. Pods that will leave
    together share nodes, so nodes empty out and the autoscaler can remove them. A GPU pod is scored by its GPUs
    alone (``gpu_fit_score``): keep nodes able to take the largest GPU request (``Policy.gpu_block``), then best
    fit, so that no GPU pod waits while enough GPUs are free in total but scattered.
  - ``spread``: the free share (LeastAllocated) plus a zone-balance term over ``topology.kubernetes.io/zone`` (the
    fewer pods of the same profile in the node's zone, the higher); a GPU pod adds a best-fit term
    ``1 / (1 + GPUs left free after placing it)``.

  A pod requesting no GPU scores 0 on a GPU node; a node marked ``DeletionCandidateOfClusterAutoscaler`` scores 0.
- **preempt**: of the victims kube-scheduler proposes, keep per node the idlest user servers (annotation
  ``hubfleet.io/last-activity``) that make room, never one active within ``protect_active`` seconds, and answer the
  node whose most recently active victim is the idlest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterable, Mapping

from ..errors import HubfleetError
from ..labels import LAST_ACTIVITY_ANNOTATION, PROFILE_LABEL, STRATEGY_LABEL, USER_LABEL  # noqa: F401 (re-exported)
from ..quantity import QuantityError
from ..quantity import parse_quantity as _parse_quantity
from ..resources import (ResourceError, Resources, ZERO, add_usage, insufficient, least_allocated, most_allocated,
                         node_allocatable)
from ..resources import pod_requests as _pod_requests

MAX_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority
MIN_PRIORITY = 0
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_LABEL = "nvidia.com/gpu.present=true"
ZONE_LABEL = "topology.kubernetes.io/zone"
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
DELETION_CANDIDATE_TAINT = "DeletionCandidateOfClusterAutoscaler"
STRATEGIES = ("pack", "spread")
_ZERO = ZERO


class ScoringError(ResourceError, HubfleetError, ValueError):
    """A pod or node the policy cannot evaluate; the message names the field and the value."""


def parse_quantity(value: object, *, field: str = "quantity") -> Decimal:
    """A Kubernetes resource quantity ("500m", "2", "1.5Gi") as an exact number; `field` names it in errors."""
    try:
        return _parse_quantity(value, field=field)
    except QuantityError as e:
        raise ScoringError(str(e)) from None


def pod_requests(pod: Mapping, *, where: str = "Pod") -> Resources:
    """Effective requests of a pod (``hubfleet.resources.pod_requests``), errors as ScoringError naming the field."""
    try:
        return _pod_requests(pod, where=where)
    except QuantityError as e:
        raise ScoringError(str(e)) from None


# --- the policy -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Weights:
    """Weights of the score terms (non-negative; at least one of cpu, memory, gpu positive)."""
    cpu: float = 1.0
    memory: float = 1.0
    gpu: float = 3.0
    lifetime: float = 2.0
    zone: float = 2.0

    def __post_init__(self):
        for name in ("cpu", "memory", "gpu", "lifetime", "zone"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ScoringError(f"weight of {name} must be a non-negative number, not {v!r}")
        if self.cpu + self.memory + self.gpu <= 0:
            raise ScoringError("at least one of the cpu, memory, gpu weights must be positive")


@dataclass(frozen=True)
class Policy:
    """What the extender enforces. `gpu_node_label` is ``key=value`` (or ``key`` for "label present"); nodes carrying
    it are kept for pods requesting `gpu_resource`; empty disables that rule. `protect_active`: seconds during which
    a server that was active is never preempted; `user_namespaces`: the namespaces of user servers, the only pods
    the preempt verb may choose (none: no preemption). `gpu_block`: the largest GPU request of a profile; GPU pods are
    placed so that as many nodes as possible keep room for one (``gpu_fit_score``; 0: plain best fit, fewer
    GPU-node-hours but GPU pods may wait while enough GPUs are free on several nodes)."""
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    gpu_node_label: str = DEFAULT_GPU_NODE_LABEL
    weights: Weights = field(default_factory=Weights)
    protect_active: float = 900.0
    gpu_block: int = 2
    user_namespaces: tuple[str, ...] = ()

    def __post_init__(self):
        key, sep, value = self.gpu_node_label.partition("=")
        object.__setattr__(self, "_label", (key, value if sep else None))
        if isinstance(self.gpu_block, bool) or not isinstance(self.gpu_block, int) or self.gpu_block < 0:
            raise ScoringError(f"gpu_block must be a number of GPUs (0: plain best fit), not {self.gpu_block!r}")
        if not isinstance(self.protect_active, (int, float)) or self.protect_active < 0:
            raise ScoringError(f"protect_active must be a non-negative number of seconds, not {self.protect_active!r}")
        if isinstance(self.user_namespaces, str) or not all(isinstance(n, str) and n for n in self.user_namespaces):
            raise ScoringError(f"user_namespaces must be a list of namespace names, not {self.user_namespaces!r}")
        object.__setattr__(self, "user_namespaces", tuple(self.user_namespaces))

    def is_gpu_only(self, node: "NodeInfo") -> bool:
        key, value = self._label
        if not key:
            return False
        have = node.labels.get(key)
        return have is not None and (value is None or have == value)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    allocatable: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    to_be_deleted: bool = False  # the cluster autoscaler is removing it
    deletion_candidate: bool = False  # the cluster autoscaler may remove it soon

    def __post_init__(self):
        # nodes of one node pool share their allocatable: filter/prioritize evaluate each shape once per request
        object.__setattr__(self, "shape", tuple(sorted(self.allocatable.items())))
        zone = self.labels.get(ZONE_LABEL)
        object.__setattr__(self, "zone", zone if isinstance(zone, str) else "")


def node_info(node: Mapping, *, where: str = "node") -> NodeInfo:
    """A NodeInfo from a Node object (as the API or ExtenderArgs.Nodes carry it)."""
    meta = node.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ScoringError(f"{where}.metadata.name: expected the node's name (a string), got {name!r}")
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ScoringError(f"{where}.metadata.labels: expected a mapping, got {labels!r}")
    try:
        alloc = node_allocatable(node, where=where)
    except QuantityError as e:
        raise ScoringError(str(e)) from None
    spec = node.get("spec") or {}
    taints = (spec.get("taints") if isinstance(spec, Mapping) else None) or []
    keys = {t.get("key") for t in taints if isinstance(t, Mapping)} if isinstance(taints, list) else set()
    return NodeInfo(name=name, allocatable=alloc, labels=dict(labels), to_be_deleted=TO_BE_DELETED_TAINT in keys,
                    deletion_candidate=DELETION_CANDIDATE_TAINT in keys)


@dataclass(frozen=True)
class PodInfo:
    """What the policy reads from the pod being placed."""
    requests: Resources
    strategy: str = "pack"
    profile: str = ""

    @property
    def shape(self) -> tuple:
        """Pods of one profile share a shape: their scores can be computed once per node and kept up to date."""
        return (tuple(sorted(self.requests.items())), self.strategy, self.profile)


def pod_info(pod: Mapping, *, where: str = "Pod") -> PodInfo:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {} if isinstance(meta, Mapping) else {}
    if not isinstance(labels, Mapping):
        raise ScoringError(f"{where}.metadata.labels: expected a mapping, got {labels!r}")
    strategy = labels.get(STRATEGY_LABEL) or "pack"
    if strategy not in STRATEGIES:
        raise ScoringError(f"{where}.metadata.labels.{STRATEGY_LABEL}: {strategy!r} is not a scheduling strategy; "
                           f"choose one of: {', '.join(STRATEGIES)}")
    return PodInfo(requests=pod_requests(pod, where=where), strategy=strategy,
                   profile=str(labels.get(PROFILE_LABEL) or ""))


@dataclass
class View:
    """What the cache knows beyond per-node usage, for the lifetime and zone terms: `drain_at` (node -> the time its
    last pod is expected to end), `expected_stay(profile)` (seconds a new pod of that profile is expected to stay),
    `zone_pods` ((zone, profile) -> pods), `now` (seconds, the clock of `drain_at`)."""
    now: float = 0.0
    drain_at: Mapping[str, float] = field(default_factory=dict)
    expected_stay: Callable[[str], float] = lambda profile: 3600.0
    zone_pods: Mapping[tuple[str, str], int] = field(default_factory=dict)


EMPTY_VIEW = View()


class Lifetimes:
    """How long pods of each profile stay, learned from the pods that ended (as the extender's watch sees them):
    an exponentially weighted mean per profile, `prior` seconds until one has been seen. A running pod of age `a` is
    expected to end at ``created + max(mean, 2 a)`` (the longer a session has lasted, the longer it will last)."""

    def __init__(self, prior: float = 3600.0, alpha: float = 0.05):
        self.prior, self.alpha = prior, alpha
        self.means: dict[str, float] = {}

    def observe(self, profile: str, seconds: float) -> None:
        if seconds < 0:
            return
        old = self.means.get(profile)
        self.means[profile] = seconds if old is None else old + self.alpha * (seconds - old)

    def expected(self, profile: str) -> float:
        return self.means.get(profile, self.prior)

    def expected_end(self, profile: str, created: float, now: float) -> float:
        return created + max(self.expected(profile), 2 * (now - created))


@dataclass(frozen=True)
class FilterOutcome:
    feasible: list[str]
    failed: dict[str, str]  # a preemption could make room: FailedNodes
    unresolvable: dict[str, str]  # nothing on the node can change it: FailedAndUnresolvableNodes


def node_failure(requests: Mapping[str, Decimal], node: NodeInfo, used: Mapping[str, Decimal], policy: Policy
                 ) -> tuple[str, bool] | None:
    """Why a pod with `requests` cannot go on `node` (reason, unresolvable?), or None when it fits."""
    wants_gpu = requests.get(policy.gpu_resource, _ZERO) > 0
    if not wants_gpu and policy.is_gpu_only(node):
        return (f"node(s) reserved for pods requesting {policy.gpu_resource} (label {policy.gpu_node_label})", True)
    if node.to_be_deleted:
        return ("node(s) being removed by the cluster autoscaler", True)
    missing = insufficient(requests, used, node.allocatable)
    if missing:
        # a resource the node does not have at all cannot be freed by preempting pods
        unresolvable = all(m != "Too many pods" and node.allocatable.get(m.removeprefix("Insufficient "), _ZERO) <= 0
                           for m in missing)
        return ", ".join(missing), unresolvable
    return None


_MISSING = object()


def not_cached(name: str) -> str:
    """The failure reason of a candidate node the extender's node cache does not (yet) hold."""
    return f"node {name} is not (yet) in the extender's node cache"


def empty_node_key(node: NodeInfo, policy: Policy) -> tuple:
    """What a verdict or score of a node with nothing bound depends on: the nodes of one pool share it."""
    return (node.shape, policy.is_gpu_only(node), node.to_be_deleted, node.deletion_candidate, node.zone)


def evaluate_node(pod: "PodInfo", node: NodeInfo, used: Mapping[str, Decimal] | None, policy: Policy,
                  view: "View | None", memo: dict) -> tuple[tuple[str, bool] | None, int]:
    """(``node_failure``, ``score_node``) of placing `pod` on `node`; for a node with nothing bound (`used` empty)
    kept in `memo` under ``empty_node_key``, so the nodes of one pool are evaluated once."""
    if used:
        return (node_failure(pod.requests, node, used, policy),
                score_node(pod.requests, node, used, policy, pod=pod, view=view or EMPTY_VIEW))
    key = empty_node_key(node, policy)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = (node_failure(pod.requests, node, {}, policy),
                           score_node(pod.requests, node, {}, policy, pod=pod, view=view or EMPTY_VIEW))
    return hit


def _evaluate(nodes: Iterable[NodeInfo], usage: Mapping[str, Mapping[str, Decimal]], policy: Policy, fn):
    """Yield (node, fn(node, used)); nodes with nothing bound share one evaluation per ``empty_node_key``."""
    memo: dict = {}
    empty: Resources = {}
    for node in nodes:
        used = usage.get(node.name)
        if used:
            yield node, fn(node, used)
            continue
        key = empty_node_key(node, policy)
        value = memo.get(key, _MISSING)
        if value is _MISSING:
            value = memo[key] = fn(node, empty)
        yield node, value


def filter_nodes(requests: Mapping[str, Decimal], nodes: Iterable[NodeInfo],
                 usage: Mapping[str, Mapping[str, Decimal]], policy: Policy) -> FilterOutcome:
    feasible: list[str] = []
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for node, why in _evaluate(nodes, usage, policy, lambda n, used: node_failure(requests, n, used, policy)):
        if why is None:
            feasible.append(node.name)
        elif why[1]:
            unresolvable[node.name] = why[0]
        else:
            failed[node.name] = why[0]
    return FilterOutcome(feasible, failed, unresolvable)


def gpu_fit_score(request: Decimal, free: Decimal, block: int) -> int:
    """Score 0..10 of taking `request` GPUs from a node with `free` GPUs: first keep every node that can take a GPU
    *block* (the largest GPU request, ``Policy.gpu_block``) able to take one (placing must not turn a node with
    >= block free into one with < block free: -6), then best fit (-1 per GPU left free, at most -4). A 1-GPU pod
    thus fills a node with 1 free, then 3 free, then 4, and splits a free pair last; a 2-GPU pod takes half of an
    empty node before an exact pair, so free pairs stay for the next 2-GPU pod instead of being spent while lone
    free GPUs pile up (a GPU pod Pending while enough GPUs are free in total)."""
    after = free - request
    if after < 0:
        return MIN_PRIORITY
    lost = free >= block > after
    return MAX_PRIORITY - 6 * lost - min(4, int(after))


def score_node(requests: Mapping[str, Decimal], node: NodeInfo, used: Mapping[str, Decimal], policy: Policy, *,
               pod: PodInfo | None = None, view: View = EMPTY_VIEW) -> int:
    """Score 0..10 of placing a pod with `requests` on `node` (see the module docstring)."""
    gpu = policy.gpu_resource
    wants_gpu = requests.get(gpu, _ZERO) > 0
    node_gpus = node.allocatable.get(gpu, _ZERO)
    if (not wants_gpu and (node_gpus > 0 or policy.is_gpu_only(node))) or node.deletion_candidate:
        return MIN_PRIORITY
    w = policy.weights
    strategy = pod.strategy if pod is not None else "pack"
    if wants_gpu and w.gpu > 0 and strategy == "pack":
        return gpu_fit_score(requests[gpu], node_gpus - used.get(gpu, _ZERO), policy.gpu_block)
    resources = (("cpu", w.cpu), ("memory", w.memory))
    weight = sum(wt for res, wt in resources if wt > 0 and node.allocatable.get(res, _ZERO) > 0)
    if strategy == "spread":
        total = least_allocated(requests, used, node.allocatable, resources) / 100 * weight
    else:
        total = most_allocated(requests, used, node.allocatable, resources) / 100 * weight
    if wants_gpu and w.gpu > 0:  # spread: a best-fit term beside the free share and the zones
        free_after = node_gpus - used.get(gpu, _ZERO) - requests[gpu]
        if free_after < 0:
            return MIN_PRIORITY
        total += w.gpu / (1.0 + float(free_after))
        weight += w.gpu
    if pod is not None and strategy == "pack" and w.lifetime > 0 and not wants_gpu:
        drain = view.drain_at.get(node.name)
        if drain is not None and used.get("pods", _ZERO) > 0:
            stay = max(1.0, view.expected_stay(pod.profile))
            total += w.lifetime * min(1.0, max(0.0, (drain - view.now) / stay))
        weight += w.lifetime
    if pod is not None and strategy == "spread" and w.zone > 0 and node.zone:
        counts = [n for (zone, profile), n in view.zone_pods.items() if profile == pod.profile]
        most = max(counts, default=0)
        mine = view.zone_pods.get((node.zone, pod.profile), 0)
        total += w.zone * (1.0 - mine / most if most else 1.0)
        weight += w.zone
    if weight <= 0:
        return MIN_PRIORITY
    value = MAX_PRIORITY * total / weight
    return max(MIN_PRIORITY, min(MAX_PRIORITY, int(value + 0.5)))  # round half up, as integer scores go on the wire


def prioritize(requests: Mapping[str, Decimal], nodes: Iterable[NodeInfo],
               usage: Mapping[str, Mapping[str, Decimal]], policy: Policy, *, pod: PodInfo | None = None,
               view: View = EMPTY_VIEW) -> list[tuple[str, int]]:
    if pod is not None and (pod.strategy == "spread" or (view.drain_at and policy.weights.lifetime > 0)):
        # per-node terms (zone, drain time): no sharing between nodes of a shape
        return [(n.name, score_node(requests, n, usage.get(n.name, {}), policy, pod=pod, view=view)) for n in nodes]
    return [(node.name, score) for node, score in
            _evaluate(nodes, usage, policy, lambda n, used: score_node(requests, n, used, policy, pod=pod, view=view))]


def parse_weights(text: str) -> Weights:
    """``cpu=1,memory=1,gpu=3,lifetime=2,zone=2`` (any subset; the GPU resource name also works as key) -> Weights."""
    names = ("cpu", "memory", "gpu", "lifetime", "zone")
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if key.endswith("/gpu"):
            key = "gpu"
        if not sep or key not in names:
            raise ScoringError(f"weights: {part!r} is not NAME=NUMBER with NAME one of {', '.join(names)} "
                               "(e.g. cpu=1,memory=1,gpu=3)")
        try:
            values[key] = float(raw)
        except ValueError:
            raise ScoringError(f"weights: weight of {key} must be a non-negative number, not {raw!r}") from None
    return Weights(**values)


__all__ = ["MAX_PRIORITY", "MIN_PRIORITY", "FilterOutcome", "NodeInfo", "PodInfo", "Policy", "Lifetimes", "ScoringError",
           "View", "Weights", "add_usage", "empty_node_key", "evaluate_node", "filter_nodes", "gpu_fit_score",
           "node_failure", "node_info", "not_cached", "parse_quantity", "parse_weights", "pod_info", "pod_requests",
           "prioritize", "score_node"]
