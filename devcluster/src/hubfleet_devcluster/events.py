"""Kubernetes Events as the devcluster's scheduler and kubelet record them (what spawn progress shows)."""

from __future__ import annotations

import time

from .store import Store
from .status import now_iso


def record_event(store: Store, pod: dict, type_: str, reason: str, message: str, component: str) -> dict | None:
    """Record an Event about `pod`; a repeat of the last same-reason event bumps its count instead."""
    meta = pod["metadata"]
    ns = meta.get("namespace", "default")
    if store.find("namespaces", None, ns) is None:
        return None
    for ev in store.list("events", ns, fields=[("involvedObject.uid", "=", meta["uid"]), ("reason", "=", reason)]):
        if ev.get("message") == message:
            return store.patch("events", ns, ev["metadata"]["name"],
                               {"count": int(ev.get("count", 1)) + 1, "lastTimestamp": now_iso()})
    ts = now_iso()
    return store.create("events", ns, {
        "metadata": {"name": _event_name(store, ns, meta["name"]), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": ns,
                           "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion", "")},
        "type": type_, "reason": reason, "message": message, "count": 1,
        "firstTimestamp": ts, "lastTimestamp": ts, "eventTime": None,
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": component,
    })


def _event_name(store: Store, ns: str, pod_name: str) -> str:
    """kube's event names, `<pod>.<hex nanoseconds>`: a list (in name order) shows a pod's events as they came."""
    stamp = time.time_ns()
    while store.find("events", ns, f"{pod_name}.{stamp:x}") is not None:
        stamp += 1
    return f"{pod_name}.{stamp:x}"


def forget_events(store: Store, pod: dict) -> None:
    """A pod is gone: its events expire an hour later (kube-apiserver's default event TTL), so the evidence of a
    failed spawn is still there to read."""
    meta = pod["metadata"]
    for ev in store.list("events", meta.get("namespace"), fields=[("involvedObject.uid", "=", meta["uid"])]):
        store.expire_later("events", ev["metadata"]["namespace"], ev["metadata"]["name"])
