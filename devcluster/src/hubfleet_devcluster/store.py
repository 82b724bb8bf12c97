"""The devcluster's object store: objects by (plural, namespace, name), one global resourceVersion and a bounded
event log, so a watch resumes exactly where its list left off (410 Gone when the log no longer reaches back that
far, as etcd's compaction makes a real API server answer).

Every method is synchronous, so each one is atomic on the event loop (no lock needed): a list and the registration
of a watcher see the same resourceVersion. The scheduler loop and the process kubelet (the "control plane") write
here directly, so their writes produce the same watch events a client sees; requests from clients go through the
HTTP layer (`api.py`), which validates them first (`validation.py`).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .patching import merge_patch
from .resources import RESOURCES
from .selectors import matches
from .status import APIError, not_found, now_iso

EVENT_LOG_SIZE = 5000  # enough to resume a watch after a list; older versions answer 410 Gone, as etcd does
EVENT_TTL = 3600.0  # kube-apiserver's default --event-ttl: events outlive their pod by an hour


@dataclass(eq=False)
class Watcher:
    plural: str
    namespace: str | None
    labels: list
    fields: list
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def wants(self, plural: str, obj: dict) -> bool:
        if plural != self.plural:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return matches(obj, self.labels, self.fields)


class Store:
    """Objects by (plural, namespace, name), a global resourceVersion and a bounded event log."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.rv = 1
        self.log: collections.deque[tuple[int, str, dict]] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[str, str, dict], None]] = []  # in-process controllers
        self.expiring: dict[tuple[str, str | None, str], float] = {}  # key -> monotonic deadline (event TTL)
        self.closed = False

    def close(self) -> None:
        """End every watch stream (server shutdown)."""
        self.closed = True
        for w in self.watchers:
            w.queue.put_nowait(None)

    def _emit(self, type_: str, plural: str, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        event = {"type": type_, "object": obj}
        self.log.append((self.rv, plural, event))
        for w in list(self.watchers):
            if w.wants(plural, obj):
                w.queue.put_nowait(copy.deepcopy(event))
        for listener in self.listeners:
            listener(type_, plural, obj)

    # --- reads
    def get(self, plural: str, namespace: str | None, name: str) -> dict:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            raise not_found(plural, name)
        return obj

    def find(self, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.objects.get((plural, namespace, name))

    def list(self, plural: str, namespace: str | None = None, labels: list = (), fields: list = ()) -> list[dict]:
        """Matching objects, oldest first (etcd would give key order; creation order keeps a pod's events in the
        order they happened whatever their names)."""
        return [o for (p, ns, _), o in self.objects.items()
                if p == plural and (namespace is None or ns == namespace) and matches(o, labels, fields)]

    def restore(self, plural: str, obj: dict) -> None:
        """Put back an object saved by a previous run (uid and timestamps kept; a new resourceVersion)."""
        meta = obj["metadata"]
        key = (plural, meta.get("namespace") if RESOURCES[plural].namespaced else None, meta["name"])
        if key not in self.objects:
            self.objects[key] = obj
            self._emit("ADDED", plural, obj)

    # --- writes
    def create(self, plural: str, namespace: str | None, obj: dict, *, dry_run: bool = False) -> dict:
        r = RESOURCES[plural]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if r.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if ("namespaces", None, namespace) not in self.objects:
                raise not_found("namespaces", namespace)
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        key = (plural, namespace, name)
        if key in self.objects:
            what = f"{plural}.{r.group}" if r.group else plural
            raise APIError(409, "AlreadyExists", f'{what} "{name}" already exists', {"name": name, "kind": plural})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta.pop("deletionTimestamp", None)
        if r.group in ("apps",):
            meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = r.group_version, r.kind
        if plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj)}
        elif plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Bound", "accessModes": (obj.get("spec") or {}).get("accessModes") or [],
                             "capacity": ((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}}
        elif plural == "namespaces":
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        elif plural == "secrets":
            obj.setdefault("type", "Opaque")
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        self.objects[key] = obj
        self._emit("ADDED", plural, obj)
        return obj

    def patch(self, plural: str, namespace: str | None, name: str, patch: dict, subresource: str | None = None
              ) -> dict:
        """A JSON merge patch by the control plane (the scheduler binding a pod, the kubelet posting status)."""
        obj = self.get(plural, namespace, name)
        if subresource == "status":
            patch = {"status": patch.get("status")} if "status" in patch else {}
        elif subresource is None and plural == "pods":
            patch = {k: v for k, v in patch.items() if k != "status"}  # status only through /status
        return self.put(plural, namespace, name, merge_patch(obj, patch))

    def put(self, plural: str, namespace: str | None, name: str, new: dict, *, dry_run: bool = False) -> dict:
        """Store `new` in place of the current object, keeping what the server owns (uid, name, timestamps)."""
        obj = self.get(plural, namespace, name)
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "name", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in obj["metadata"]:
                meta[k] = obj["metadata"][k]
            else:
                meta.pop(k, None)
        if namespace is None:
            meta.pop("namespace", None)
        else:
            meta["namespace"] = namespace
        new["apiVersion"], new["kind"] = obj["apiVersion"], obj["kind"]
        if "generation" in obj["metadata"]:
            changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
                      {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            meta["generation"] = obj["metadata"]["generation"] + (1 if changed else 0)
        if dry_run:
            meta["resourceVersion"] = obj["metadata"]["resourceVersion"]
            return new
        self.objects[(plural, namespace, name)] = new
        self._emit("MODIFIED", plural, new)
        return new

    def delete(self, plural: str, namespace: str | None, name: str, grace: int | None = None, *,
               dry_run: bool = False) -> dict:
        """Delete an object. A pod running on a node is only marked (deletionTimestamp); the kubelet stops its
        process and then calls `remove`, as on a real cluster."""
        obj = self.get(plural, namespace, name)
        if dry_run:
            return copy.deepcopy(obj)
        if plural == "pods" and obj.get("spec", {}).get("nodeName") and grace != 0:
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            self.objects[(plural, namespace, name)] = new
            self._emit("MODIFIED", plural, new)
            return new
        if plural == "namespaces":
            for key in [k for k in self.objects if k[1] == name]:
                self.remove(key[0], key[1], key[2])
        return self.remove(plural, namespace, name)

    def remove(self, plural: str, namespace: str | None, name: str) -> dict:
        obj = self.objects.pop((plural, namespace, name), None)
        if obj is None:
            raise not_found(plural, name)
        self.expiring.pop((plural, namespace, name), None)
        obj = copy.deepcopy(obj)
        self._emit("DELETED", plural, obj)
        return obj

    def expire_later(self, plural: str, namespace: str | None, name: str, ttl: float = EVENT_TTL) -> None:
        self.expiring[(plural, namespace, name)] = time.monotonic() + ttl

    def sweep_expired(self) -> int:
        """Remove the objects whose TTL ran out (events of pods gone for an hour); returns how many."""
        now = time.monotonic()
        due = [k for k, deadline in self.expiring.items() if deadline <= now]
        for plural, ns, name in due:
            if (plural, ns, name) in self.objects:
                self.remove(plural, ns, name)
            self.expiring.pop((plural, ns, name), None)
        return len(due)


def qos_class(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return "BestEffort"
    if not any((c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
               for c in containers):
        return "BestEffort"
    guaranteed = all(
        ((c.get("resources") or {}).get("limits") or {}).get(r) is not None
        and ((c.get("resources") or {}).get("requests") or {}).get(r, c["resources"]["limits"][r])
        == c["resources"]["limits"][r]
        for c in containers for r in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"
