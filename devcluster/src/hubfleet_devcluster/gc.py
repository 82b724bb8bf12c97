"""Garbage collection by ``ownerReferences``, as kube-controller-manager's garbage collector does it in the background:
an object whose owners (by uid) are all gone is deleted, so the Service and Secret KubeSpawner creates for a pod go
with the pod. An owner still terminating (``deletionTimestamp`` set) still exists: its dependents wait for it.

``orphans`` is pure; ``GarbageCollector`` wakes when an object is deleted or one with owners is written, and sweeps
once every ``interval`` seconds anyway (a dependent may be created after its owner is gone)."""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from .status import APIError
from .store import Store

log = logging.getLogger("hubfleet_devcluster.gc")


def orphans(objects: Iterable[tuple[str, str | None, str, dict]]) -> list[tuple[str, str | None, str]]:
    """(plural, namespace, name) of every object that has ownerReferences none of whose uids is among `objects`
    (and is not already being deleted)."""
    objects = list(objects)
    alive = {o["metadata"].get("uid") for *_, o in objects}
    return [(plural, ns, name) for plural, ns, name, o in objects
            if (refs := o["metadata"].get("ownerReferences")) and not o["metadata"].get("deletionTimestamp")
            and not any(ref.get("uid") in alive for ref in refs if isinstance(ref, dict))]


class GarbageCollector:
    def __init__(self, store: Store, interval: float = 5.0):
        self.store = store
        self.interval = interval
        self._wake = asyncio.Event()
        store.listeners.append(self._on_change)

    def _on_change(self, type_: str, plural: str, obj: dict) -> None:
        if type_ == "DELETED" or obj["metadata"].get("ownerReferences"):
            self._wake.set()

    def collect(self) -> int:
        """Delete the objects whose owners are all gone; returns how many."""
        due = orphans((p, ns, name, o) for (p, ns, name), o in list(self.store.objects.items()))
        for plural, ns, name in due:
            try:
                self.store.delete(plural, ns, name)
                log.info("garbage-collected %s %s/%s: its owners are gone", plural, ns, name)
            except APIError:  # gone meanwhile
                pass
        return len(due)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                self.collect()
            except Exception:
                log.exception("garbage collection sweep failed")
