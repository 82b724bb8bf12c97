"""The devcluster scheduler loop: binds Pending pods to nodes.

Pods with ``schedulerName: default-scheduler`` (or none) are placed by the pure fit check in ``scheduling.py``
(kube-scheduler's default profile: LeastAllocated). Pods whose ``schedulerName`` names a configured extender are
placed as kube-scheduler would with hubfleet's profile (MostAllocated) and that scheduler's extenders (the
``extenders[]`` entries of a KubeSchedulerConfiguration, called in order): the built-in filters run first, then each
extender's ``filter``, then every ``prioritize``, over HTTP with kube-scheduler's wire types
(k8s.io/kube-scheduler/extender/v1, decoded with ``scheduler_plugin.wire``); the final score is the built-in score
plus ``extender score x weight x 10``. As in kube-scheduler, a failing filter of an ``ignorable`` extender is
skipped (else the pod fails this cycle) and a failing prioritize is always skipped. A pod that fits nowhere gets
kube-scheduler's preemption (DefaultPreemption: lower-priority victims on one node, narrowed by each extender with a
``preempt`` verb; an ``ignorable`` one that fails is skipped, any other failure means no preemption this cycle),
else stays Pending with a ``FailedScheduling`` event in kube-scheduler's words, and is retried periodically.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

import aiohttp

from .api import Store
from .events import record_event
from .faults import Faults
from hubfleet.quantity import QuantityError
from .scheduling import (add_usage, choose_node, failed_scheduling_message, fit_reasons, pick_preemption_node,
                         pod_priority, pod_requests, select_victims)
from hubfleet.resources import most_allocated, node_allocatable
from hubfleet.errors import HubfleetError
from hubfleet.scheduler_plugin import wire

log = logging.getLogger("hubfleet_devcluster.scheduler")
DEFAULT_SCHEDULER = "default-scheduler"


@dataclass(frozen=True)
class ExtenderConfig:
    """One kube-scheduler extender (the fields of KubeSchedulerConfiguration's ``extenders[]``), with the values
    of deploy/scheduler-extender/configmap.yaml as defaults."""
    url_prefix: str
    filter_verb: str = "filter"
    prioritize_verb: str = "prioritize"
    preempt_verb: str = "preempt"
    weight: int = 5
    node_cache_capable: bool = True
    ignorable: bool = True
    timeout: float = 2.0

    OPTIONS = {"filterVerb": ("filter_verb", str), "prioritizeVerb": ("prioritize_verb", str),
               "preemptVerb": ("preempt_verb", str), "weight": ("weight", int),
               "nodeCacheCapable": ("node_cache_capable", bool), "ignorable": ("ignorable", bool),
               "httpTimeout": ("timeout", float)}

    @classmethod
    def parse(cls, text: str) -> tuple[str, "ExtenderConfig"]:
        """``SCHEDULER_NAME=URL_PREFIX[,option=value...]`` with the options of KubeSchedulerConfiguration's
        extenders (``ignorable=false``, ``nodeCacheCapable=false``, ``weight=5``, ``preemptVerb=`` to turn it off,
        ``httpTimeout=2``...). Raises ValueError naming what is wrong."""
        head, *options = text.split(",")
        name, sep, url = head.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"{text!r}: expected SCHEDULER_NAME=http://host:port/prefix[,option=value...]")
        kw: dict = {}
        for opt in options:
            key, sep, value = opt.partition("=")
            if not sep or key not in cls.OPTIONS:
                raise ValueError(f"{text!r}: {opt!r} is not OPTION=VALUE with OPTION one of {', '.join(cls.OPTIONS)}")
            attr, kind = cls.OPTIONS[key]
            if kind is bool:
                if value not in ("true", "false"):
                    raise ValueError(f"{text!r}: {key} must be true or false, not {value!r}")
                kw[attr] = value == "true"
            else:
                try:
                    kw[attr] = kind(value)
                except ValueError:
                    raise ValueError(f"{text!r}: {key} must be a {kind.__name__}, not {value!r}") from None
        return name, cls(url_prefix=url, **kw)


class ExtenderError(HubfleetError):
    pass


class Scheduler:
    def __init__(self, store: Store, extenders: dict[str, list[ExtenderConfig]] | None = None,
                 retry_interval: float = 1.0, faults: Faults | None = None):
        self.store = store
        self.faults = faults
        self.extenders = {name: list(exts) for name, exts in (extenders or {}).items()}
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
        scheduler_name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        exts = self.extenders.get(scheduler_name)
        try:
            node_name, reasons = choose_node(pod, nodes, used, "MostAllocated" if exts else "LeastAllocated")
        except QuantityError as e:
            self._fail(pod, f"Pod has an invalid resource quantity: {e}")
            return None
        unresolvable: set[str] = set()
        if exts:
            feasible = [n for n in nodes if n["metadata"]["name"] not in reasons]
            try:
                node_name, reasons, unresolvable = await self._extend(exts, pod, feasible, reasons, used)
            except ExtenderError as e:
                self._fail(pod, str(e))
                return None
        if node_name is None:
            message = failed_scheduling_message(len(nodes), reasons)
            preempted = await self._preempt(pod, nodes, used, unresolvable, exts or [])
            if preempted:
                message += f" Preempting pods on {preempted} to make room."
            self._fail(pod, message)
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

    # --- preemption ---
    def _priority_classes(self) -> dict[str, int]:
        return {pc["metadata"]["name"]: int(pc.get("value", 0)) for pc in self.store.list("priorityclasses")}

    async def _preempt(self, pod: dict, nodes: list[dict], used: dict, unresolvable: set[str],
                       exts: list[ExtenderConfig]) -> str | None:
        """kube-scheduler's DefaultPreemption: victims of lower priority on one node, narrowed by the extenders'
        preempt verbs; the victims get a ``Preempted`` event and a DisruptionTarget condition and are deleted
        (gracefully: their volumes stay). Returns the node, or None when nothing was preempted."""
        spec = pod.get("spec") or {}
        if spec.get("preemptionPolicy") == "Never":
            return None
        classes = self._priority_classes()
        if pod_priority(pod, classes) <= 0:
            return None
        by_node: dict[str, list[dict]] = {}
        terminating: set[str] = set()
        for p in self.store.list("pods"):
            node = (p.get("spec") or {}).get("nodeName")
            if not node or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if p["metadata"].get("deletionTimestamp"):
                terminating.add(node)
                continue
            by_node.setdefault(node, []).append(p)
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated and nominated in terminating:
            return None  # victims are still leaving the nominated node: wait for them, as kube-scheduler does
        candidates: dict[str, list[dict]] = {}
        for node in nodes:
            name = node["metadata"]["name"]
            if name in unresolvable or fit_reasons(pod, node, {}):  # the node could never take the pod
                continue
            victims = select_victims(pod, node, by_node.get(name, []), used.get(name, {}), classes)
            if victims:
                candidates[name] = victims
        for ext in exts:  # kube-scheduler's callExtenders
            if not candidates:
                break
            if not ext.preempt_verb:
                continue
            try:
                narrowed = await self._extend_preemption(ext, pod, candidates)
            except ExtenderError as e:
                if not ext.ignorable:
                    log.warning("preemption for %s aborted: %s", pod["metadata"]["name"], e)
                    return None
                log.warning("ignorable extender failed on preempt for %s, skipped: %s", pod["metadata"]["name"], e)
                continue
            empty = [n for n, victims in narrowed.items() if not victims]
            if empty and not ext.ignorable:
                log.warning("preemption for %s aborted: expected at least one victim pod on node %s",
                            pod["metadata"]["name"], empty[0])
                return None
            candidates = {n: victims for n, victims in narrowed.items() if victims}
        node_name = pick_preemption_node(candidates, classes)
        if node_name is None:
            return None
        meta = pod["metadata"]
        scheduler_name = spec.get("schedulerName") or DEFAULT_SCHEDULER
        for victim in candidates[node_name]:
            vm = victim["metadata"]
            conditions = [c for c in (victim.get("status") or {}).get("conditions", [])
                          if c.get("type") != "DisruptionTarget"]
            conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                               "message": f"{scheduler_name}: preempting to accommodate a higher priority pod"})
            self.store.patch("pods", vm["namespace"], vm["name"], {"status": {"conditions": conditions}}, "status")
            record_event(self.store, victim, "Normal", "Preempted",
                         f"Preempted by pod {meta['namespace']}/{meta['name']} on node {node_name}", scheduler_name)
            self.store.delete("pods", vm["namespace"], vm["name"])
            log.info("preempted %s/%s on %s for %s/%s", vm["namespace"], vm["name"], node_name, meta["namespace"],
                     meta["name"])
        self.store.patch("pods", meta["namespace"], meta["name"], {"status": {"nominatedNodeName": node_name}},
                         "status")
        return node_name

    async def _extend_preemption(self, ext: ExtenderConfig, pod: dict, candidates: dict[str, list[dict]]
                                 ) -> dict[str, list[dict]]:
        if ext.node_cache_capable:
            args = {"Pod": pod, "NodeNameToMetaVictims": {
                n: {"Pods": [{"UID": v["metadata"]["uid"]} for v in vs], "NumPDBViolations": 0}
                for n, vs in candidates.items()}}
        else:
            args = {"Pod": pod, "NodeNameToVictims": {n: {"Pods": vs, "NumPDBViolations": 0}
                                                      for n, vs in candidates.items()}}
        result = self._decode(ext, ext.preempt_verb, wire.decode_preemption_result,
                              await self._call(ext, ext.preempt_verb, args))
        out: dict[str, list[dict]] = {}
        for node, uids in result.items():
            proposed = {v["metadata"]["uid"]: v for v in candidates.get(node, [])}
            if node not in candidates or any(u not in proposed for u in uids):
                raise ExtenderError(f"scheduler extender {ext.url_prefix}/{ext.preempt_verb} answered victims that "
                                    f"were not proposed on node {node}: {uids}")
            out[node] = [proposed[u] for u in uids]
        return out

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
        mode = self.faults.autoscaler if self.faults is not None else ""
        if mode == "scale-up":  # cluster-autoscaler's wording (processors/status/eventing_scale_up_processor.go)
            record_event(self.store, current, "Normal", "TriggeredScaleUp",
                         "pod triggered scale-up: [{devcluster-pool 0->1 (max: 3)}]", "cluster-autoscaler")
        elif mode == "no-scale-up":
            record_event(self.store, current, "Normal", "NotTriggerScaleUp",
                         "pod didn't trigger scale-up: 1 max node group size reached", "cluster-autoscaler")

    async def _extend(self, exts: list[ExtenderConfig], pod: dict, feasible: list[dict],
                      reasons: dict[str, list[str]], used: dict) -> tuple[str | None, dict[str, list[str]], set[str]]:
        """The extenders' filters (in order) after the built-in filters, then their prioritize; returns (node or
        None, reasons, nodes an extender called unresolvable). Raises ExtenderError when a filter that is not
        ignorable fails."""
        reasons = dict(reasons)
        unresolvable: set[str] = set()
        by_name = {n["metadata"]["name"]: n for n in feasible}
        for ext in exts:
            if not by_name:
                return None, reasons, unresolvable
            if not ext.filter_verb:
                continue
            try:
                result = self._decode(ext, ext.filter_verb, wire.ExtenderFilterResult.from_json,
                                      await self._call(ext, ext.filter_verb, self._args(ext, pod, by_name)))
                if result.error:
                    raise ExtenderError(f"scheduler extender {ext.url_prefix} filter failed: {result.error}")
            except ExtenderError as e:
                if not ext.ignorable:
                    raise
                log.warning("ignorable extender failed (filter) for %s, skipped: %s", pod["metadata"]["name"], e)
                continue
            names = result.node_names
            if names is None:
                names = [(n.get("metadata") or {}).get("name") for n in result.nodes or [] if isinstance(n, dict)]
            unresolvable |= set(result.failed_and_unresolvable_nodes)
            for name, why in {**result.failed_nodes, **result.failed_and_unresolvable_nodes}.items():
                reasons[name] = [str(why)]
            for name in list(by_name):
                if name not in names:
                    by_name.pop(name)
                    reasons.setdefault(name, ["node(s) were filtered out by the scheduler extender"])
        if not by_name:
            return None, reasons, unresolvable
        requests = pod_requests(pod)
        scores = {name: most_allocated(requests, used.get(name, {}), node_allocatable(node))
                  for name, node in by_name.items()}  # the profile's NodeResourcesFit MostAllocated, 0..100
        for ext in exts:
            if not ext.prioritize_verb:
                continue
            try:  # kube-scheduler skips a failing prioritize, ignorable or not
                result = await self._call(ext, ext.prioritize_verb, self._args(ext, pod, by_name))
                if not isinstance(result, list):
                    raise ExtenderError(f"scheduler extender {ext.url_prefix} prioritize answered {result!r}, "
                                        "expected a HostPriorityList")
                priorities = [self._decode(ext, ext.prioritize_verb, wire.HostPriority.from_json, item)
                              for item in result]
            except ExtenderError as e:
                log.warning("extender prioritize failed for %s, no score from it: %s", pod["metadata"]["name"], e)
                continue
            for hp in priorities:
                if hp.host in scores:  # kube-scheduler: score x weight x (MaxNodeScore / MaxExtenderPriority)
                    scores[hp.host] += float(hp.score) * ext.weight * 10
        best = max(sorted(scores), key=lambda n: scores[n])
        if fit_reasons(pod, by_name[best], used.get(best, {})):  # built-in feasibility re-checked
            return None, reasons, unresolvable
        return best, reasons, unresolvable

    @staticmethod
    def _args(ext: ExtenderConfig, pod: dict, by_name: dict[str, dict]) -> dict:
        if ext.node_cache_capable:
            return {"Pod": pod, "NodeNames": list(by_name)}
        return {"Pod": pod, "Nodes": {"items": list(by_name.values())}}

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
