"""Kubernetes Events as the devcluster's scheduler and kubelet record them (what spawn progress shows)."""

from __future__ import annotations

import uuid

from .api import Store, now_iso


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
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": ns,
                           "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion", "")},
        "type": type_, "reason": reason, "message": message, "count": 1,
        "firstTimestamp": ts, "lastTimestamp": ts, "eventTime": None,
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": component,
    })


def forget_events(store: Store, pod: dict) -> None:
    """Drop the events of a pod that is gone (a real cluster lets them expire after an hour; dropping them at once
    keeps a re-created pod of the same name from showing its predecessor's history)."""
    meta = pod["metadata"]
    for ev in store.list("events", meta.get("namespace"), fields=[("involvedObject.uid", "=", meta["uid"])]):
        store.remove("events", ev["metadata"]["namespace"], ev["metadata"]["name"])
