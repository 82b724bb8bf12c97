"""Pure placement logic of the devcluster scheduler: does a pod fit a node, why not, and which node is best.

Pod requests and the resource fit are ``hubfleet.resources`` (shared with the scheduler extender); this module adds the
other built-in filters (NodeUnschedulable, TaintToleration, NodeAffinity) and kube-scheduler's messages.
Messages follow kube-scheduler's wording so that what a user sees in spawn progress on the devcluster is what they
would see on a real cluster ("0/4 nodes are available: 3 Insufficient nvidia.com/gpu, ...").
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from hubfleet.quantity import QuantityError
from hubfleet.resources import (Resources, add_usage, insufficient, least_allocated, most_allocated, node_allocatable,
                         pod_requests)

STRATEGIES = {"LeastAllocated": least_allocated, "MostAllocated": most_allocated}  # NodeResourcesFit scoringStrategy


def _match_expression(expr: Mapping, labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            a, b = int(labels[key]), int(values[0])
        except (KeyError, IndexError, ValueError):
            return False
        return a > b if op == "Gt" else a < b
    return False


def _match_term(term: Mapping, node: Mapping) -> bool:
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    exprs = term.get("matchExpressions") or []
    field_exprs = term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False  # an empty term matches no objects
    return all(_match_expression(e, labels) for e in exprs) and all(_match_expression(e, fields) for e in field_exprs)


def matches_node_selector(pod: Mapping, node: Mapping) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms:
        return any(_match_term(t, node) for t in terms)
    return True


def _tolerates(toleration: Mapping, taint: Mapping) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    op = toleration.get("operator", "Equal")
    key = toleration.get("key")
    if not key:
        return op == "Exists"
    if key != taint.get("key"):
        return False
    return op == "Exists" or toleration.get("value", "") == taint.get("value", "")


def untolerated_taint(pod: Mapping, node: Mapping) -> Mapping | None:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in tolerations):
            return taint
    return None


def allocatable(node: Mapping) -> Resources:
    return node_allocatable(node)


def fit_reasons(pod: Mapping, node: Mapping, used: Resources, requests: Resources | None = None) -> list[str]:
    """Why `pod` cannot go on `node` given resources already `used` there (empty list: it fits).

    As kube-scheduler's filter plugins in their default order (NodeUnschedulable, TaintToleration, NodeAffinity,
    NodeResourcesFit), a node reports only the reasons of the first filter it fails."""
    if (node.get("spec") or {}).get("unschedulable"):
        return ["node(s) were unschedulable"]
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"]
    if not matches_node_selector(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    return insufficient(pod_requests(pod) if requests is None else requests, used, allocatable(node))


def failed_scheduling_message(total_nodes: int, reasons_by_node: Mapping[str, list[str]]) -> str:
    counts = Counter(r for reasons in reasons_by_node.values() for r in reasons)
    detail = ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))  # kube-scheduler: sort.Strings
    msg = f"0/{total_nodes} nodes are available"
    if detail:
        msg += f": {detail}"
    return msg + "."


def preferred_affinity_score(pod: Mapping, node: Mapping) -> int:
    prefs = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
             .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    return sum(int(p.get("weight", 0)) for p in prefs if _match_term(p.get("preference") or {}, node))


def choose_node(pod: Mapping, nodes: Iterable[Mapping], used_by_node: Mapping[str, Resources],
                strategy: str = "LeastAllocated") -> tuple[str | None, dict[str, list[str]]]:
    """Pick a node for `pod`: the feasible node with the best score (preferred affinity first, then the
    NodeResourcesFit `strategy`, LeastAllocated as kube-scheduler's default profile or MostAllocated, then name).
    Returns (node name or None, reasons by infeasible node)."""
    score = STRATEGIES[strategy]
    requests = pod_requests(pod)
    reasons: dict[str, list[str]] = {}
    best: tuple | None = None
    for node in nodes:
        name = node["metadata"]["name"]
        used = used_by_node.get(name, {})
        why = fit_reasons(pod, node, used, requests)
        if why:
            reasons[name] = why
            continue
        key = (preferred_affinity_score(pod, node), score(requests, used, allocatable(node)),
               [-ord(ch) for ch in name])
        if best is None or key > best[0]:
            best = (key, name)
    return (best[1] if best else None), reasons


# --- preemption (kube-scheduler's DefaultPreemption PostFilter) ---------------------------------------------------------

def pod_priority(pod: Mapping, classes: Mapping[str, int]) -> int:
    """``spec.priority`` (what admission sets from ``priorityClassName``), else the named PriorityClass's value."""
    spec = pod.get("spec") or {}
    if isinstance(spec.get("priority"), int):
        return spec["priority"]
    return int(classes.get(spec.get("priorityClassName") or "", 0))


def _start(pod: Mapping) -> str:
    return (pod.get("status") or {}).get("startTime") or pod["metadata"].get("creationTimestamp") or ""


def select_victims(pod: Mapping, node: Mapping, node_pods: list[Mapping], used: Resources,
                   classes: Mapping[str, int]) -> list[dict] | None:
    """kube-scheduler's selectVictimsOnNode: remove every lower-priority pod; if the pod then fits, put back
    ("reprieve") as many as possible, most important first (higher priority, then earlier start). Returns the
    victims, or None when even removing all of them would not make room."""
    mine = pod_priority(pod, classes)
    lower = [p for p in node_pods if pod_priority(p, classes) < mine]
    if not lower:
        return None
    requests = pod_requests(pod)
    free = used
    for p in lower:
        free = add_usage(free, pod_requests(p), sign=-1)
    if fit_reasons(pod, node, free, requests):
        return None
    victims = []
    for p in sorted(lower, key=lambda p: (-pod_priority(p, classes), _start(p))):
        kept = add_usage(free, pod_requests(p))
        if fit_reasons(pod, node, kept, requests):
            victims.append(p)
        else:
            free = kept
    return victims


def pick_preemption_node(candidates: Mapping[str, list[Mapping]], classes: Mapping[str, int]) -> str | None:
    """kube-scheduler's pickOneNodeForPreemption (no PDBs here): the lowest highest-victim priority, then the lowest
    sum of priorities, then the fewest victims, then the latest start among the highest-priority victims, then name."""
    def key(item):
        name, victims = item
        prios = [pod_priority(v, classes) for v in victims]
        top = max(prios)
        latest = max(_start(v) for v in victims if pod_priority(v, classes) == top)
        return (top, sum(prios), len(victims), [-ord(c) for c in latest], name)
    items = [(n, v) for n, v in candidates.items() if v]
    return min(items, key=key)[0] if items else None


__all__ = ["STRATEGIES", "QuantityError", "Resources", "add_usage", "choose_node", "failed_scheduling_message",
           "fit_reasons", "matches_node_selector", "pick_preemption_node", "pod_priority", "pod_requests",
           "select_victims", "untolerated_taint"]
