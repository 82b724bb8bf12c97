"""What is bound where: per-node usage from a pods list+watch, and node allocatable from a nodes list+watch.

kube-scheduler sends the extender the Pod and the candidate nodes, never what already runs on them, so the extender
keeps its own view, as kube-scheduler's informers do: list (in pages of LIST_PAGE, each folded into a fresh view and
dropped, so a list of 50,000 pods never sits in memory as one body), then watch from the list's resourceVersion; on
any error (connection lost, 410 Gone, an ERROR event, a non-200 answer) re-list with exponential backoff. A pod
counts on its node while it has ``spec.nodeName`` and is neither Succeeded nor Failed. The view is only a cache: a
restarted extender lists again and carries on (it keeps no state of its own).

Objects are read as raw JSON (``_preload_content=False``; kubernetes_asyncio's model classes would cost ~10x more
per pod) and only the fields the policy needs are kept: node, requests (one shared dict per distinct requests),
profile, creation time, and for the preempt verb the namespace, whether it is a user server (label
``component=singleuser-server``), the user label, the ``hubfleet.io/last-activity`` annotation and the hub server
(``hub.jupyter.org/username`` and ``/servername`` annotations).
Pods that end teach ``Lifetimes`` how long pods of their profile stay.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from . import wire
from .preemption import VictimInfo, parse_time, victim_info
from .scoring import PROFILE_LABEL, Lifetimes, NodeInfo, Resources, ScoringError, add_usage, node_info, pod_requests
from ..errors import HubfleetError

log = logging.getLogger("hubfleet.scheduler_plugin")

WATCH_TIMEOUT_SECONDS = 300
LIST_PAGE = 500
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
YIELD_EVERY = 20  # list items or watch events handled between two turns of the event loop


class WatchError(HubfleetError):
    """A list or watch that must be restarted (the message says why)."""


@dataclass(slots=True)
class PodRecord:
    """What the cache keeps of a bound pod: its node and requests (shared between pods asking the same), and for the
    lifetime and preemption terms its profile, creation time, name, user and last activity."""
    node: str
    requests: Resources
    profile: str
    created: float
    uid: str
    name: str
    user: str | None
    last_activity: float | None
    server: tuple[str, str] | None = None
    namespace: str = ""
    user_server: bool = False

    @property
    def victim(self) -> VictimInfo:
        return VictimInfo(self.uid, self.name, self.requests, self.user, self.last_activity, self.server,
                          self.namespace, self.user_server)


_SHARED: dict[tuple, Resources] = {}


def _shared(requests: Resources) -> Resources:
    """One dict per distinct requests (pods of a profile ask the same): 50,000 pods hold a few dicts, not 50,000."""
    key = tuple(sorted(requests.items()))
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) > 10_000:
            _SHARED.clear()
        found = _SHARED[key] = requests
    return found


MAX_CHANGES = 100_000


class ClusterCache:
    """Per-node usage and node allocatable. Mutated only by `apply_*`/`replace_*` (from the watch loops or tests).

    `changes` lists the nodes whose usage or object changed, in order, and `epoch` counts re-lists: score tables
    kept per request shape (``tables.py``) recompute just those nodes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.pods: dict[str, PodRecord] = {}  # pod uid (or ns/name) -> record
        self.usage: dict[str, Resources] = {}
        self.node_pods: dict[str, set[str]] = {}
        self.nodes: dict[str, NodeInfo] = {}
        self.lifetimes = Lifetimes()
        self.clock = clock
        self.pods_synced = False
        self.nodes_synced = False
        self.last_error: str = ""
        self.relists = 0
        self.changes: list[str] = []
        self.epoch = 0
        self.last_event = {"pods": 0.0, "nodes": 0.0}  # time.monotonic() of the last list or watch event

    def _changed(self, node: str) -> None:
        self.changes.append(node)
        if len(self.changes) > MAX_CHANGES:
            self.changes = []
            self.epoch += 1

    def drain_at(self, node: str, now: float) -> float | None:
        """When the last pod on `node` is expected to end (epoch seconds), None for an empty node."""
        keys = self.node_pods.get(node)
        if not keys:
            return None
        return max(self.lifetimes.expected_end(r.profile, r.created, now) for r in (self.pods[k] for k in keys))

    def zone_pods(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for node, keys in self.node_pods.items():
            info = self.nodes.get(node)
            if info is None or not info.zone:
                continue
            for k in keys:
                key = (info.zone, self.pods[k].profile)
                out[key] = out.get(key, 0) + 1
        return out

    @property
    def synced(self) -> bool:
        return self.pods_synced and self.nodes_synced

    # --- pods ---
    @staticmethod
    def _pod_key(pod: Mapping) -> str:
        meta = pod.get("metadata") or {}
        return meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"

    @staticmethod
    def _placement(pod: Mapping) -> PodRecord | None:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        try:
            requests = pod_requests(pod)
        except ScoringError as e:  # the API server would not have accepted it; count the pod slot only
            meta = pod.get("metadata") or {}
            log.warning("pod:%s/%s has a bad quantity, counted as requesting nothing: %s",
                        meta.get("namespace"), meta.get("name"), e)
            requests = {}
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        created = parse_time(meta.get("creationTimestamp"))
        requests = _shared(requests)
        v = victim_info(pod, requests)
        return PodRecord(node=node, requests=requests, profile=str(labels.get(PROFILE_LABEL) or ""),
                         created=created if created is not None else time.time(), uid=v.uid, name=v.name,
                         user=v.user, last_activity=v.last_activity, server=v.server, namespace=v.namespace,
                         user_server=v.user_server)

    def _forget_pod(self, key: str, *, ended: bool = False) -> PodRecord | None:
        old = self.pods.pop(key, None)
        if old is not None:
            node = old.node
            left = add_usage(self.usage.get(node, {}), old.requests, sign=-1)
            if left.get("pods", Decimal(0)) <= 0:
                self.usage.pop(node, None)
            else:
                self.usage[node] = left
            keys = self.node_pods.get(node)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.node_pods[node]
            if ended:
                self.lifetimes.observe(old.profile, self.clock() - old.created)
            self._changed(node)
        return old

    def apply_pod(self, event_type: str, pod: Mapping) -> None:
        self.last_event["pods"] = time.monotonic()
        key = self._pod_key(pod)
        placed = None if event_type == "DELETED" else self._placement(pod)
        old = self.pods.get(key)
        if placed is not None and old is not None and (old.node, old.requests, old.profile, old.created) == (
                placed.node, placed.requests, placed.profile, placed.created):
            self.pods[key] = placed  # a status or annotation update: usage and scores unchanged
            return
        self._forget_pod(key, ended=placed is None)
        if placed is not None:
            self.pods[key] = placed
            self.usage[placed.node] = add_usage(self.usage.get(placed.node, {}), placed.requests)
            self.node_pods.setdefault(placed.node, set()).add(key)
            self._changed(placed.node)

    def replace_pods(self, pods: list[Mapping]) -> None:
        """A re-list: build the new view aside and swap it in, so a request scored on a worker thread meanwhile
        sees the old view or the new one, never half of one."""
        fresh = ClusterCache()
        for pod in pods:
            fresh.apply_pod("ADDED", pod)
        self.adopt_pods(fresh)

    def adopt_pods(self, fresh: "ClusterCache") -> None:
        self.pods, self.usage, self.node_pods = fresh.pods, fresh.usage, fresh.node_pods
        self.changes, self.epoch = [], self.epoch + 1
        self.pods_synced = True
        self.last_event["pods"] = time.monotonic()

    # --- nodes ---
    def apply_node(self, event_type: str, node: Mapping) -> None:
        name = (node.get("metadata") or {}).get("name")
        self._changed(name)
        if event_type == "DELETED":
            self.nodes.pop(name, None)
            return
        try:
            self.nodes[name] = node_info(node)
        except ScoringError as e:
            log.warning("node:%s ignored: %s", name, e)

    def replace_nodes(self, nodes: list[Mapping]) -> None:
        fresh = ClusterCache()
        for node in nodes:
            fresh.apply_node("ADDED", node)
        self.adopt_nodes(fresh)

    def adopt_nodes(self, fresh: "ClusterCache") -> None:
        self.nodes = fresh.nodes
        self.changes, self.epoch = [], self.epoch + 1
        self.nodes_synced = True
        self.last_event["nodes"] = time.monotonic()

    def snapshot(self) -> dict:
        """The cache as JSON (``GET /cache``): for operators and tests."""
        return {"synced": self.synced, "pods": len(self.pods), "relists": self.relists, "last_error": self.last_error,
                "usage": {n: {k: str(v) for k, v in sorted(u.items())} for n, u in sorted(self.usage.items())},
                "nodes": sorted(self.nodes)}


class CacheWatcher:
    """Runs the pods and nodes list+watch loops against the API a kubernetes_asyncio ApiClient points at."""

    def __init__(self, cache: ClusterCache, api_client: Any, *, sleep: Callable = asyncio.sleep):
        from kubernetes_asyncio import client

        self.cache = cache
        self.core = client.CoreV1Api(api_client)
        self._sleep = sleep

    async def run(self) -> None:
        await asyncio.gather(
            self._reflect("pods", self.core.list_pod_for_all_namespaces, "apply_pod", self.cache.adopt_pods,
                          self.cache.apply_pod),
            self._reflect("nodes", self.core.list_node, "apply_node", self.cache.adopt_nodes, self.cache.apply_node),
        )

    async def _list(self, what: str, list_fn, add: str) -> tuple["ClusterCache", str, int]:
        """List in pages of LIST_PAGE (as kube-scheduler's informers do), each page folded into a fresh cache and
        dropped: a list of 50,000 pods never sits in memory as one decoded body."""
        fresh = ClusterCache()
        token, count, rv = None, 0, "0"
        while True:
            kw = {"limit": LIST_PAGE}
            if token:
                kw["_continue"] = token
            resp = await list_fn(_preload_content=False, _request_timeout=60, **kw)
            try:
                body = await resp.read()
                if resp.status != 200:
                    raise WatchError(f"listing {what} answered HTTP {resp.status}: {body[:200]!r}")
            finally:
                resp.release()
            data = wire.loads(body)
            del body
            for item in data.get("items") or []:
                getattr(fresh, add)("ADDED", item)
                count += 1
                if count % YIELD_EVERY == 0:  # a page of 500 is ~20 ms of work: requests are answered in between
                    await asyncio.sleep(0)
            meta = data.get("metadata") or {}
            rv = meta.get("resourceVersion") or rv
            token = meta.get("continue")
            if not token:
                return fresh, rv, count

    async def _reflect(self, what: str, list_fn, add: str, adopt, apply) -> None:
        backoff = BACKOFF_INITIAL
        first = True
        while True:
            try:
                fresh, rv, count = await self._list(what, list_fn, add)
                adopt(fresh)
                del fresh
                # the cache's objects move out of the collector's sight: a full collection over 50,000 pods'
                # records would otherwise pause a request now and then. A full collection first only at start
                # (imports' garbage); after a re-list, while serving, the young generations only (a few ms)
                gc.collect() if first else gc.collect(1)
                gc.freeze()
                first = False
                log.info("cache: listed %d %s at resourceVersion %s", count, what, rv)
                backoff = BACKOFF_INITIAL
                while True:
                    rv = await self._watch(what, list_fn, rv, apply)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure: re-list after a backoff, never die
                self.cache.last_error = f"{time.strftime('%H:%M:%S')} {what}: {e or type(e).__name__}"
                self.cache.relists += 1
                log.warning("cache: %s list/watch failed (%s); re-listing in %.1fs", what, e or type(e).__name__,
                            backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _watch(self, what: str, list_fn, rv: str, apply) -> str:
        """One watch request from `rv`; returns the resourceVersion to resume from when the server ends it."""
        resp = await list_fn(watch=True, resource_version=rv, timeout_seconds=WATCH_TIMEOUT_SECONDS,
                             allow_watch_bookmarks=True, _preload_content=False,
                             _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 30))
        try:
            if resp.status != 200:
                body = await resp.read()
                raise WatchError(f"watching {what} answered HTTP {resp.status}: {body[:200]!r}")
            buf = b""
            started, events = time.monotonic(), 0
            async for chunk in resp.content.iter_any():
                *lines, buf = (buf + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        rv = self._event(what, line, rv, apply)
                        events += 1
                        if events % YIELD_EVERY == 0:  # a burst of events: let waiting requests in between
                            await asyncio.sleep(0)
            if not events and time.monotonic() - started < 1:  # a server ending watches at once: back off, re-list
                raise WatchError(f"watch of {what} ended at once without events")
            return rv
        finally:
            resp.release()

    @staticmethod
    def _event(what: str, line: bytes, rv: str, apply) -> str:
        event = wire.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise WatchError(f"watch of {what} ended with {obj.get('code')} {obj.get('reason')}: "
                             f"{obj.get('message')}")
        new_rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            apply(kind, obj)
        return new_rv


async def make_api_client(kubeconfig: str | None):
    """A kubernetes_asyncio ApiClient: from `kubeconfig` if given, else in-cluster when running in a pod, else the
    default kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    import os

    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        await config.load_kube_config(client_configuration=cfg)
    return client.ApiClient(cfg)


__all__ = ["CacheWatcher", "ClusterCache", "WatchError", "make_api_client"]
