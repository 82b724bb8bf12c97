"""Node usage for consolidation, and the sweep's consolidation step (the decision is :mod:`.consolidate`).

:class:`NodeUsage` reads the scheduler extender's ``GET /nodes`` (its consolidation listener): the extender already
watches every node and pod (its own ServiceAccount lists and watches them), so the culler needs no Kubernetes credentials. Per node it gives
the allocatable, what its pods request, its labels, whether a pod the cluster autoscaler would not move runs there,
and its user servers (``[user, server]`` from KubeSpawner's annotations). Pools: the node label ``pool_label``;
their minimum sizes: the culler's ``pool_min_nodes`` table (the autoscaler's own configuration is not readable from
the cluster); a pool missing from the table has no minimum applied.

:class:`Consolidator` runs after the per-user decisions of a sweep: it asks for node usage (unknown: no
consolidation warning or stop this sweep, logged), asks busy kernels of the idle candidates, plans
(:func:`.consolidate.consolidation_plan`) and gives the warnings, stops and cancellations through the sweeper.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ...quantity import QuantityError, parse_quantity
from .activity import SourceError
from .consolidate import Node, Pool, Server, consolidation_plan

log = logging.getLogger("hubfleet.culler")

GPU = "nvidia.com/gpu"
MAX_ANSWER = 64 << 20


@dataclass(frozen=True)
class NodeView:
    nodes: tuple
    pools: tuple
    where: Mapping  # (user, server name) -> (node, requests)


def _resources(data, field: str) -> dict[str, Decimal]:
    if not isinstance(data, Mapping):
        raise SourceError(f"{field}: expected a mapping of quantities, got {type(data).__name__}")
    try:
        return {str(k): parse_quantity(v, field=f"{field}.{k}") for k, v in data.items()}
    except QuantityError as e:
        raise SourceError(str(e)) from e


def node_view(doc, *, pool_label: str, pool_min_nodes: Mapping[str, int]) -> NodeView:
    """A :class:`NodeView` from the extender's ``GET /nodes`` answer; SourceError when it cannot be read whole."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("nodes"), Mapping) or doc.get("synced") is not True:
        raise SourceError("GET /nodes: not the extender's synced node usage")
    nodes, where, sizes = [], {}, {}
    for name, n in doc["nodes"].items():
        if not isinstance(n, Mapping):
            raise SourceError(f"nodes.{name}: expected a mapping")
        labels = n.get("labels") if isinstance(n.get("labels"), Mapping) else {}
        pool = str(labels.get(pool_label, "")) if pool_label else ""
        sizes[pool] = sizes.get(pool, 0) + 1
        nodes.append(Node(name=str(name), requested=_resources(n.get("requested"), f"nodes.{name}.requested"),
                          allocatable=_resources(n.get("allocatable"), f"nodes.{name}.allocatable"), pool=pool,
                          pinned=n.get("pinned") is not False))
        for s in n.get("servers") or []:
            if isinstance(s, Mapping) and isinstance(s.get("user"), str) and isinstance(s.get("server"), str):
                where[s["user"], s["server"]] = (str(name), _resources(s.get("requests") or {},
                                                                      f"nodes.{name}.servers.requests"))
    pools = tuple(Pool(p, count, pool_min_nodes.get(p)) for p, count in sorted(sizes.items()))
    return NodeView(tuple(nodes), pools, where)


class NodeUsage:
    """The extender's consolidation listener at `url`: ``GET /nodes`` per sweep (raises SourceError when it cannot
    tell) and ``PUT /draining`` with the nodes being emptied."""

    def __init__(self, url: str, *, pool_label: str = "", pool_min_nodes: Mapping[str, int] | None = None,
                 timeout: float = 10.0):
        self.url, self.pool_label, self.timeout = url.rstrip("/"), pool_label, timeout
        self.pool_min_nodes = dict(pool_min_nodes or {})
        self.client = AsyncHTTPClient(force_instance=True, defaults={"max_body_size": MAX_ANSWER})

    async def view(self) -> NodeView:
        doc = await self._call("GET", "/nodes")
        return node_view(doc, pool_label=self.pool_label, pool_min_nodes=self.pool_min_nodes)

    async def mark(self, nodes) -> None:
        """Tell every extender replica the nodes being emptied (the whole set): each replica keeps its own cache
        and marks, and the leader, whichever it is, must have them. The replicas are the addresses the URL's host
        resolves to (a headless Service); SourceError when one of them does not take it."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise SourceError(f"{parts.hostname}: cannot be resolved ({e})") from e
        addresses = sorted({info[4][0] for info in infos})
        body = {"nodes": sorted(nodes)}
        results = await asyncio.gather(*(self._call("PUT", "/draining", body, address=a) for a in addresses),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise SourceError(f"{len(failed)} of {len(addresses)} extender(s): {failed[0]}")

    async def _call(self, method: str, path: str, body=None, *, address: str | None = None):
        url = self.url + path
        if address is not None and address != urlsplit(self.url).hostname:
            parts = urlsplit(self.url)
            host = f"[{address}]" if ":" in address else address
            url = urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path + path, "",
                              ""))
        req = HTTPRequest(url, method=method, body=None if body is None else json.dumps(body),
                          headers={"Content-Type": "application/json"}, request_timeout=self.timeout,
                          connect_timeout=self.timeout,
                          follow_redirects=False)
        try:
            resp = await self.client.fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise SourceError(f"{method} {url}: no answer ({type(e).__name__}: {str(e)[:200]})") from e
        if resp.code != 200:
            raise SourceError(f"{method} {url}: answered {resp.code}")
        try:
            return json.loads(resp.body)
        except (ValueError, RecursionError) as e:
            raise SourceError(f"{method} {url}: not JSON") from e


@dataclass
class Candidate:
    """A ready server of a consolidating profile, as the sweep saw it."""

    user: dict
    server: dict
    policy: object  # CullPolicy with .consolidate
    label: str
    profile: str
    idle_for: float | None
    gpu_idle_for: float | None


class Consolidator:
    """What lasts between sweeps for consolidation: the warnings given (``(user, server) -> (started, at)``) and
    the nodes being emptied (``draining``)."""

    def __init__(self, source: NodeUsage | None):
        self.source = source
        self.warned: dict[tuple[str, str], tuple] = {}  # -> (started, at, the sweep's WarnState)
        self.draining: frozenset = frozenset()

    async def run(self, sweeper, candidates: list[Candidate], now, result) -> None:
        keys = {(c.user["name"], c.server["name"]) for c in candidates}
        for key in [k for k in self.warned if k not in keys]:
            del self.warned[key]
        if self.source is None:
            return
        if not candidates:
            await self._mark(sweeper, frozenset())
            return
        try:
            view = await self.source.view()
        except SourceError as e:
            sweeper.metrics.source_errors.labels("nodes").inc()
            log.warning("node usage unknown (%s): no consolidation warning or stop this sweep", e)
            return
        ts = now.timestamp()
        servers, policies, by_key = [], {}, {}
        for c in candidates:
            name, sname = c.user["name"], c.server["name"]
            placed = view.where.get((name, sname))
            if placed is None:
                continue  # not (yet) in the extender's cache: nothing known about its node
            node, requests = placed
            cp = c.policy.consolidate
            busy = None
            if cp.spare_busy_kernels and c.idle_for is not None and c.idle_for >= cp.idle_after:
                busy = await sweeper.busy_kernels_or_unknown(c.user, c.server)
            gpu_in_use = None
            if requests.get(GPU, Decimal(0)) > 0:
                gpu_in_use = c.gpu_idle_for is None or c.gpu_idle_for < cp.idle_after
            warned = self.warned.get((name, sname))
            at = warned[1] if warned is not None and warned[0] == c.server.get("started") else None
            key = f"{name}/{sname}"
            servers.append(Server(key=key, node=node, profile=c.label, idle_for=c.idle_for, requests=requests,
                                  busy_kernels=busy, gpu_in_use=gpu_in_use, warned_at=at))
            policies[c.label] = cp
            by_key[key] = c
        plan = consolidation_plan(now=ts, servers=servers, nodes=view.nodes, pools=view.pools, policies=policies)
        if plan.draining != self.draining:
            log.info("consolidation: emptying node(s) %s", ", ".join(sorted(plan.draining)) or "(none)")
        await self._mark(sweeper, plan.draining)
        stepped = set()
        for step in plan.steps:
            c = by_key[step.key]
            key = (c.user["name"], c.server["name"])
            stepped.add(key)
            if step.action == "warn":
                self.warned[key] = (c.server.get("started"), ts,
                                    await sweeper.consolidation_warn(c, step.reason, now, result))
            elif step.action == "stop":
                self.warned.pop(key, None)
                await sweeper.consolidation_stop(c, step.reason, result)
            elif step.action == "cancel":
                self.warned.pop(key, None)
                sweeper.metrics.warnings_cancelled.labels(c.profile).inc()
                log.info("consolidation warning for %s cancelled: %s", step.key, step.reason)
        for c in candidates:  # warned, waiting: a notifier that failed is tried again
            key = (c.user["name"], c.server["name"])
            if key in self.warned and key not in stepped and self.warned[key][2] is not None:
                await sweeper.consolidation_redeliver(c, self.warned[key][2])


    async def _mark(self, sweeper, nodes: frozenset) -> None:
        """Tell the extender (each sweep: it may have restarted); a failure is logged, the stops go on (new pods
        may then land on the node, which the next sweep sees)."""
        if sweeper.dry_run:
            self.draining = nodes
            return
        try:
            await self.source.mark(nodes)
        except SourceError as e:
            sweeper.metrics.source_errors.labels("nodes").inc()
            log.warning("could not mark the nodes being emptied (%s): new pods may land there", e)
        else:
            self.draining = nodes


__all__ = ["NodeUsage", "NodeView", "node_view", "Candidate", "Consolidator"]
