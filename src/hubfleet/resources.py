"""Pod requests and node fit, as kube-scheduler computes them: the one resource model of the devcluster's scheduler,
the scheduler extender and the scheduling simulation (pure: no I/O).

- **requests** of a pod (``pod_requests``): the containers summed (a limit without a request counts as the request),
  max'ed with each init container (init containers run one at a time), plus ``spec.overhead`` (the RuntimeClass's
  per-pod cost), i.e. kube-scheduler's ``computePodResourceRequest``;
- **fit** (``insufficient``): the pod slot against ``pods`` and every requested resource against the node's
  allocatable minus what the pods bound there already request (NodeResourcesFit's filter, its wording);
- **scores** 0..100 of NodeResourcesFit's strategies (``least_allocated``: kube-scheduler's default;
  ``most_allocated``: z2jh's user-scheduler), over weighted resources.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Mapping

from .quantity import QuantityError, parse_quantity

Resources = dict[str, Decimal]
ZERO = Decimal(0)
DEFAULT_MAX_PODS = Decimal(110)
MAX_NODE_SCORE = 100  # kube-scheduler's framework.MaxNodeScore


class ResourceError(QuantityError):
    """A pod or node whose resources cannot be read; the message starts with the field path at fault."""


def _field(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def parse_resources(mapping: object, where: str) -> Resources:
    """``{cpu: "500m", memory: 1Gi}`` -> exact numbers; `where` names the mapping in errors."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ResourceError(f"{where}: expected a mapping of resource names to quantities, got {mapping!r}")
    out: Resources = {}
    for k, v in mapping.items():
        try:
            out[str(k)] = parse_quantity(v, field=f"{where}.{k}")
        except QuantityError as e:
            raise ResourceError(str(e)) from None
    return out


def _object(value: object, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ResourceError(f"{where}: expected an object, got {value!r}")
    return value


def container_requests(container: object, where: str) -> Resources:
    if not isinstance(container, Mapping):
        raise ResourceError(f"{where}: expected a container object, got {container!r}")
    res = _object(container.get("resources"), f"{where}.resources")
    req = parse_resources(res.get("limits"), f"{where}.resources.limits")
    req.update(parse_resources(res.get("requests"), f"{where}.resources.requests"))
    return req


def pod_requests(pod: Mapping, *, where: str = "") -> Resources:
    """Effective requests of a pod (see the module docstring). Raises ResourceError naming the field, prefixed by
    `where` (e.g. ``Pod`` for an extender request)."""
    spec = _object(pod.get("spec"), _field(where, "spec"))
    total: Resources = {}
    for key, combine in (("containers", "sum"), ("initContainers", "max")):
        items = spec.get(key) or []
        if not isinstance(items, list):
            raise ResourceError(f"{_field(where, 'spec')}.{key}: expected a list, got {items!r}")
        for i, c in enumerate(items):
            for k, v in container_requests(c, f"{_field(where, 'spec')}.{key}[{i}]").items():
                total[k] = total.get(k, ZERO) + v if combine == "sum" else max(total.get(k, ZERO), v)
    for k, v in parse_resources(spec.get("overhead"), f"{_field(where, 'spec')}.overhead").items():
        total[k] = total.get(k, ZERO) + v
    return total


def node_allocatable(node: Mapping, *, where: str = "node") -> Resources:
    """A Node object's ``status.allocatable`` (``pods`` defaults to 110, the kubelet's default)."""
    status = _object(node.get("status"), f"{where}.status")
    alloc = parse_resources(status.get("allocatable"), f"{where}.status.allocatable")
    alloc.setdefault("pods", DEFAULT_MAX_PODS)
    return alloc


def add_usage(used: Mapping[str, Decimal], requests: Mapping[str, Decimal], sign: int = 1) -> Resources:
    """`used` plus (or minus, sign=-1) one pod's `requests`, counting the pod slot under ``pods``."""
    out = dict(used)
    for k, v in requests.items():
        out[k] = out.get(k, ZERO) + sign * v
    out["pods"] = out.get("pods", ZERO) + sign
    return out


def usage_of(requests_list: Iterable[Mapping[str, Decimal]]) -> Resources:
    out: Resources = {}
    for r in requests_list:
        out = add_usage(out, r)
    return out


def insufficient(requests: Mapping[str, Decimal], used: Mapping[str, Decimal], alloc: Mapping[str, Decimal]
                 ) -> list[str]:
    """NodeResourcesFit's filter: ``["Too many pods", "Insufficient cpu", ...]``, empty when the pod fits."""
    reasons = []
    if used.get("pods", ZERO) + 1 > alloc.get("pods", DEFAULT_MAX_PODS):
        reasons.append("Too many pods")
    for res in sorted(requests):
        if res == "pods" or requests[res] <= 0:
            continue
        if used.get(res, ZERO) + requests[res] > alloc.get(res, ZERO):
            reasons.append(f"Insufficient {res}")
    return reasons


def fits(requests: Mapping[str, Decimal], used: Mapping[str, Decimal], alloc: Mapping[str, Decimal]) -> bool:
    return not insufficient(requests, used, alloc)


DEFAULT_SCORE_RESOURCES = (("cpu", 1.0), ("memory", 1.0))


def _allocated_score(requests, used, alloc, resources, most: bool) -> float:
    total = weight = 0.0
    for res, wt in resources:
        cap = alloc.get(res, ZERO)
        if cap <= 0 or wt <= 0:
            continue
        after = min(cap, used.get(res, ZERO) + requests.get(res, ZERO))
        share = float(after / cap)
        total += wt * (share if most else 1.0 - share)
        weight += wt
    return MAX_NODE_SCORE * total / weight if weight else 0.0


def least_allocated(requests: Mapping[str, Decimal], used: Mapping[str, Decimal], alloc: Mapping[str, Decimal],
                    resources: Iterable[tuple[str, float]] = DEFAULT_SCORE_RESOURCES) -> float:
    """NodeResourcesFit LeastAllocated (kube-scheduler's default), 0..100: the free share after placing the pod."""
    return _allocated_score(requests, used, alloc, resources, most=False)


def most_allocated(requests: Mapping[str, Decimal], used: Mapping[str, Decimal], alloc: Mapping[str, Decimal],
                   resources: Iterable[tuple[str, float]] = DEFAULT_SCORE_RESOURCES) -> float:
    """NodeResourcesFit MostAllocated (z2jh's user-scheduler, cpu:1 memory:1), 0..100: the allocated share after
    placing the pod."""
    return _allocated_score(requests, used, alloc, resources, most=True)


__all__ = ["MAX_NODE_SCORE", "ResourceError", "Resources", "add_usage", "container_requests", "fits",
           "insufficient", "least_allocated", "most_allocated", "node_allocatable", "parse_resources",
           "pod_requests", "usage_of"]
