"""The devcluster scheduler loop: binds Pending pods to nodes.

Pods with ``schedulerName: default-scheduler`` (or none) are placed by the pure fit check in
``scheduling.py``. Pods whose ``schedulerName`` names a configured extender are placed as kube-scheduler would with
an extender configured: the built-in filters run first, then the extender's ``filter`` and ``prioritize`` verbs are
called over HTTP with kube-scheduler's wire types (k8s.io/kube-scheduler/extender/v1: Go field names ``Pod``,
``Nodes``, ``NodeNames``; response keys matched case-insensitively, as Go's decoder does). A pod that fits nowhere
stays Pending with a ``FailedScheduling`` event in kube-scheduler's words, and is retried periodically.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

import aiohttp

from .api import Store
from .events import record_event
from ..quantity import QuantityError
from .scheduling import add_usage, choose_node, failed_scheduling_message, fit_reasons, pod_requests
from ..errors import HubfleetError
from ..scheduler_plugin import wire

log = logging.getLogger("hubfleet.devcluster.scheduler")
DEFAULT_SCHEDULER = "default-scheduler"


@dataclass(frozen=True)
class ExtenderConfig:
    """One kube-scheduler extender (the fields of KubeSchedulerConfiguration's ``extenders[]``)."""
    url_prefix: str
    filter_verb: str = "filter"
    prioritize_verb: str = "prioritize"
    weight: int = 1
    node_cache_capable: bool = False
    ignorable: bool = False
    timeout: float = 5.0


class ExtenderError(HubfleetError):
    pass


class Scheduler:
    def __init__(self, store: Store, extenders: dict[str, ExtenderConfig] | None = None, retry_interval: float = 1.0):
        self.store = store
        self.extenders = dict(extenders or {})
        self.retry_interval = retry_interval
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        store.listeners.append(self._on_change)

    def _on_change(self, type_: str, plural: str, obj: dict) -> None:
        if plural in ("pods", "nodes") and type_ in ("ADDED", "DELETED", "MODIFIED"):
            self._wake.set()

    def _pending(self) -> list[dict]:
        out = []
        for pod in self.store.list("pods"):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase", "Pending") != "Pending":
                continue
            name = spec.get("schedulerName") or DEFAULT_SCHEDULER
            if name != DEFAULT_SCHEDULER and name not in self.extenders:
                continue  # another scheduler's pod: left Pending, as on a real cluster
            out.append(pod)
        out.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
        return out

    def usage_by_node(self) -> dict[str, dict[str, Decimal]]:
        used: dict[str, dict[str, Decimal]] = {}
        for pod in self.store.list("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            try:
                used[node] = add_usage(used.get(node, {}), pod_requests(pod))
            except QuantityError:
                continue
        return used

    async def run(self) -> None:
        if self.extenders:
            # the threaded resolver: aiodns' resolver can hang the session's close at shutdown
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver()))
        try:
            while True:
                self._wake.clear()
                for pod in self._pending():
                    try:
                        await self.schedule_one(pod)
                    except Exception:  # never let one pod stop the loop
                        log.exception("scheduling %s failed", pod["metadata"].get("name"))
                try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                    async with asyncio.timeout(self.retry_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            if self._session is not None:
                await self._session.close()

    async def schedule_one(self, pod: dict) -> str | None:
        meta = pod["metadata"]
        nodes = self.store.list("nodes")
        used = self.usage_by_node()
        try:
            node_name, reasons = choose_node(pod, nodes, used)
        except QuantityError as e:
            self._fail(pod, f"Pod has an invalid resource quantity: {e}")
            return None
        scheduler_name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        if scheduler_name in self.extenders:
            feasible = [n for n in nodes if n["metadata"]["name"] not in reasons]
            try:
                node_name, reasons = await self._extend(self.extenders[scheduler_name], pod, nodes, feasible, reasons,
                                                        used)
            except ExtenderError as e:
                if not self.extenders[scheduler_name].ignorable:
                    self._fail(pod, str(e))
                    return None
                log.warning("ignorable extender failed for %s: %s", meta["name"], e)
        if node_name is None:
            self._fail(pod, failed_scheduling_message(len(nodes), reasons))
            return None
        current = self.store.find("pods", meta.get("namespace"), meta["name"])
        if current is None or current["metadata"]["uid"] != meta["uid"] or current["spec"].get("nodeName"):
            return None
        bound = self.store.patch("pods", meta["namespace"], meta["name"], {"spec": {"nodeName": node_name}})
        conditions = [c for c in bound.get("status", {}).get("conditions", []) if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True"})
        self.store.patch("pods", meta["namespace"], meta["name"], {"status": {"conditions": conditions}}, "status")
        record_event(self.store, bound, "Normal", "Scheduled",
                     f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}", scheduler_name)
        log.info("bound %s/%s to %s", meta["namespace"], meta["name"], node_name)
        return node_name

    def _fail(self, pod: dict, message: str) -> None:
        meta = pod["metadata"]
        current = self.store.find("pods", meta.get("namespace"), meta["name"])
        if current is None:
            return
        conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]
        if (current.get("status") or {}).get("conditions") != conditions:
            self.store.patch("pods", meta["namespace"], meta["name"], {"status": {"conditions": conditions}},
                             "status")
        scheduler_name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        record_event(self.store, current, "Warning", "FailedScheduling", message, scheduler_name)

    async def _extend(self, ext: ExtenderConfig, pod: dict, nodes: list[dict], feasible: list[dict],
                      reasons: dict[str, list[str]], used: dict) -> tuple[str | None, dict[str, list[str]]]:
        reasons = dict(reasons)
        if not feasible:
            return None, reasons
        by_name = {n["metadata"]["name"]: n for n in feasible}
        args: dict = {"Pod": pod}
        if ext.node_cache_capable:
            args["NodeNames"] = list(by_name)
        else:
            args["Nodes"] = {"items": feasible}
        if ext.filter_verb:
            result = self._decode(ext, ext.filter_verb, wire.ExtenderFilterResult.from_json,
                                  await self._call(ext, ext.filter_verb, args))
            if result.error:
                raise ExtenderError(f"scheduler extender {ext.url_prefix} filter failed: {result.error}")
            names = result.node_names
            if names is None:
                names = [(n.get("metadata") or {}).get("name") for n in result.nodes or [] if isinstance(n, dict)]
            failed = {**result.failed_nodes, **result.failed_and_unresolvable_nodes}
            for name, why in failed.items():
                reasons[name] = [str(why)]
            for name in list(by_name):
                if name not in names:
                    by_name.pop(name)
                    reasons.setdefault(name, ["node(s) were filtered out by the scheduler extender"])
            if not by_name:
                return None, reasons
            if ext.node_cache_capable:
                args["NodeNames"] = list(by_name)
            else:
                args["Nodes"] = {"items": list(by_name.values())}
        scores = {name: 0.0 for name in by_name}
        if ext.prioritize_verb:
            result = await self._call(ext, ext.prioritize_verb, args)
            if not isinstance(result, list):
                raise ExtenderError(f"scheduler extender {ext.url_prefix} prioritize answered {result!r}, "
                                    "expected a HostPriorityList")
            for item in result:
                hp = self._decode(ext, ext.prioritize_verb, wire.HostPriority.from_json, item)
                if hp.host in scores:
                    scores[hp.host] += float(hp.score) * ext.weight
        # built-in feasibility is re-checked (the extender may not know about resources)
        best = max(sorted(scores), key=lambda n: scores[n])
        if fit_reasons(pod, by_name[best], used.get(best, {})):
            return None, reasons
        return best, reasons

    @staticmethod
    def _decode(ext: ExtenderConfig, verb: str, decode, data):
        try:
            return decode(data)
        except (wire.WireError, TypeError, ValueError, AttributeError) as e:
            raise ExtenderError(f"scheduler extender {ext.url_prefix}/{verb} answered a malformed reply: {e}") from e

    async def _call(self, ext: ExtenderConfig, verb: str, args: dict):
        assert self._session is not None
        url = f"{ext.url_prefix.rstrip('/')}/{verb}"
        try:
            async with self._session.post(url, json=args, timeout=aiohttp.ClientTimeout(total=ext.timeout)) as r:
                text = await r.text()
                if r.status != 200:
                    raise ExtenderError(f"scheduler extender {url} answered HTTP {r.status}: {text[:200]}")
                try:
                    return await r.json(content_type=None)
                except ValueError as e:
                    raise ExtenderError(f"scheduler extender {url} answered invalid JSON: {text[:200]!r}") from e
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ExtenderError(f"scheduler extender {url} is unreachable: {e or type(e).__name__}") from e
