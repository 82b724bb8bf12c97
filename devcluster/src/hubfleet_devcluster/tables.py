"""Server-side printing: the ``meta.k8s.io/v1`` Table kubectl asks for (``Accept: ...;as=Table``), with the columns
kube-apiserver's printers give each kind (pods: NAME READY STATUS RESTARTS AGE, and IP NODE ... in ``-o wide``).
Pure."""

from __future__ import annotations

import datetime
from typing import Any, Callable


def age(ts: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's short human duration: 45s, 5m12s, 3h4m, 2d5h, 400d."""
    if not ts:
        return "<unknown>"
    then = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    s = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h{m % 60}m" if h < 8 and m % 60 else f"{h}h"
    d = h // 24
    return f"{d}d{h % 24}h" if d < 8 and h % 24 else f"{d}d"


def _pod_status(pod: dict) -> str:
    meta, st = pod["metadata"], pod.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for cs in st.get("initContainerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("terminated") or {}).get("exitCode", 0) != 0:
            return "Init:" + (state["terminated"].get("reason") or "Error")
        if (state.get("waiting") or {}).get("reason") not in (None, "PodInitializing"):
            return "Init:" + state["waiting"]["reason"]
        if state.get("running") or state.get("waiting"):
            n = len((pod.get("spec") or {}).get("initContainers") or [])
            done = sum(1 for c in st.get("initContainerStatuses") or [] if (c.get("state") or {}).get("terminated"))
            return f"Init:{done}/{n}"
    for cs in reversed(st.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif state.get("terminated"):
            t = state["terminated"]
            reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode', 0)}"
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _restarts(pod: dict) -> Any:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    n = sum(int(c.get("restartCount", 0)) for c in statuses)
    last = [((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt") for c in statuses]
    last = [t for t in last if t]
    return f"{n} ({age(max(last))} ago)" if n and last else n


def _ready(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    ready = sum(1 for c in (pod.get("status") or {}).get("containerStatuses") or [] if c.get("ready"))
    return f"{ready}/{len(containers)}"


def _node_status(node: dict) -> str:
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    out = "Ready" if ready.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        out += ",SchedulingDisabled"
    return out


def _ports(svc: dict) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _address(node: dict, kind: str) -> str:
    return next((a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == kind),
                "<none>")


Column = tuple[str, str, int, Callable[[dict], Any]]  # name, type, priority, cell
_NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
_AGE: Column = ("Age", "string", 0, lambda o: age(o["metadata"].get("creationTimestamp")))
COLUMNS: dict[str, list[Column]] = {
    "pods": [_NAME, ("Ready", "string", 0, _ready), ("Status", "string", 0, _pod_status),
             ("Restarts", "string", 0, _restarts), _AGE,
             ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
             ("Node", "string", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
             ("Nominated Node", "string", 1, lambda o: (o.get("status") or {}).get("nominatedNodeName") or "<none>"),
             ("Readiness Gates", "string", 1, lambda o: "<none>")],
    "nodes": [_NAME, ("Status", "string", 0, _node_status),
              ("Roles", "string", 0, lambda o: "<none>"), _AGE,
              ("Version", "string", 0, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")),
              ("Internal-IP", "string", 1, lambda o: _address(o, "InternalIP")),
              ("External-IP", "string", 1, lambda o: _address(o, "ExternalIP")),
              ("OS-Image", "string", 1, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("osImage")),
              ("Kernel-Version", "string", 1,
               lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion")),
              ("Container-Runtime", "string", 1,
               lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion"))],
    "namespaces": [_NAME, ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase")), _AGE],
    "persistentvolumeclaims": [
        _NAME, ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase")),
        ("Volume", "string", 0, lambda o: (o.get("spec") or {}).get("volumeName") or ""),
        ("Capacity", "string", 0, lambda o: ((o.get("status") or {}).get("capacity") or {}).get("storage", "")),
        ("Access Modes", "string", 0, lambda o: ",".join(
            {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
            .get(m, m) for m in (o.get("status") or {}).get("accessModes") or [])),
        ("StorageClass", "string", 0, lambda o: (o.get("spec") or {}).get("storageClassName") or "<unset>"),
        ("VolumeAttributesClass", "string", 0, lambda o: "<unset>"), _AGE],
    "services": [_NAME, ("Type", "string", 0, lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
                 ("Cluster-IP", "string", 0, lambda o: (o.get("spec") or {}).get("clusterIP") or "<none>"),
                 ("External-IP", "string", 0, lambda o: "<none>"), ("Port(s)", "string", 0, _ports), _AGE,
                 ("Selector", "string", 1, lambda o: ",".join(
                     f"{k}={v}" for k, v in ((o.get("spec") or {}).get("selector") or {}).items()) or "<none>")],
    "secrets": [_NAME, ("Type", "string", 0, lambda o: o.get("type", "Opaque")),
                ("Data", "integer", 0, lambda o: len(o.get("data") or {})), _AGE],
    "configmaps": [_NAME, ("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
                   _AGE],
    "serviceaccounts": [_NAME, _AGE],
    "events": [("Last Seen", "string", 0, lambda o: age(o.get("lastTimestamp") or o["metadata"].get(
                    "creationTimestamp"))),
               ("Type", "string", 0, lambda o: o.get("type")), ("Reason", "string", 0, lambda o: o.get("reason")),
               ("Object", "string", 0, lambda o: f"{(o.get('involvedObject') or {}).get('kind', '').lower()}/"
                                                 f"{(o.get('involvedObject') or {}).get('name', '')}"),
               ("Message", "string", 0, lambda o: o.get("message"))],
    "deployments": [_NAME, ("Ready", "string", 0, lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                                                            f"{(o.get('spec') or {}).get('replicas', 1)}"),
                    ("Up-to-date", "integer", 0, lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
                    ("Available", "integer", 0, lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
                    _AGE],
}


def table(plural: str, objects: list[dict], resource_version: str, include_object: str = "PartialObjectMetadata",
          continue_token: str | None = None) -> dict:
    columns = COLUMNS.get(plural, [_NAME, _AGE])
    defs = [{"name": name, "type": type_, "format": "name" if name == "Name" else "", "description": name,
             "priority": priority} for name, type_, priority, _ in columns]
    rows = []
    for obj in objects:
        row: dict = {"cells": [cell(obj) for _, _, _, cell in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    meta = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs,
            "rows": rows}
