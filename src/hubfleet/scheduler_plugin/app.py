"""The extender's HTTP server (aiohttp): ``POST /filter``, ``POST /prioritize``, ``POST /preempt``, ``GET /healthz``,
``GET /metrics``, ``GET /cache``.

kube-scheduler POSTs ExtenderArgs to ``<urlPrefix>/<filterVerb>`` and ``<urlPrefix>/<prioritizeVerb>``, and
ExtenderPreemptionArgs to ``<urlPrefix>/<preemptVerb>`` (see ``deploy/scheduler-extender/``: urlPrefix
``http://127.0.0.1:8888``, verbs ``filter``, ``prioritize``, ``preempt``). Request bodies are bounded
(``max_body_bytes``, answered 413 beyond it); a malformed body is answered 400 with ``{"error": "<field>: <what is
wrong>", "field": "<field>"}``; nothing a client sends produces a 500. Large bodies (full NodeLists) are decoded and
scored on a worker thread so /healthz and small requests keep being answered.

With ``NodeNames`` (``nodeCacheCapable: true``) a ``pack`` pod is answered from a table of verdicts and scores kept
per request shape (``tables.py``), so a call costs a lookup per node name.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Awaitable, Callable

from aiohttp import web

from . import wire
from .activity import HubActivity
from .cache import ClusterCache
from .metrics import Metrics
from .preemption import narrow, victim_info
from .scoring import (PROFILE_LABEL, STRATEGY_LABEL, NodeInfo, PodInfo, Policy, ScoringError, View, filter_nodes,
                      node_info, pod_info, pod_requests, prioritize)
from .tables import Tables

log = logging.getLogger("hubfleet.scheduler_plugin")

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # a NodeList of 1,000 devcluster-sized nodes is ~1.1 MB; real nodes more
OFFLOAD_BYTES = 256 * 1024
VERBS = ("filter", "prioritize", "preempt")


class CacheNotSynced(Exception):
    pass


class Extender:
    """The verbs, on decoded bytes (usable without HTTP): `filter_body` / `prioritize_body` / `preempt_body` ->
    response bytes."""

    def __init__(self, policy: Policy, cache: ClusterCache, *, node_info_cache_size: int = 20_000,
                 clock: Callable[[], float] = time.time, hub_activity: HubActivity | None = None):
        self.policy = policy
        self.cache = cache
        self.clock = clock
        self.hub_activity = hub_activity  # the preempt verb's second activity source (--hub-api-url)
        self.tables = Tables(policy)
        self.metrics = Metrics(cache, hub_activity=hub_activity, clock=clock)
        self._node_infos: dict[tuple[str, str], NodeInfo] = {}
        self._pod_infos: dict[bytes, PodInfo] = {}
        self._node_info_cache_size = node_info_cache_size

    def _nodes_of(self, args: wire.ExtenderArgs) -> tuple[list[NodeInfo], dict[str, str]]:
        """NodeInfos of the candidates: parsed from Nodes (memoised by name+resourceVersion), or from the node cache
        for NodeNames. Returns (infos, {unknown node: reason})."""
        if args.nodes is not None:
            infos = []
            for i, node in enumerate(args.nodes):
                meta = node["metadata"]
                rv = meta.get("resourceVersion")
                key = (meta["name"], rv if isinstance(rv, str) else "")
                info = self._node_infos.get(key) if key[1] else None
                if info is None:
                    try:
                        info = node_info(node, where=f"Nodes.items[{i}]")
                    except ScoringError as e:
                        raise _wire_error(e) from e
                    if key[1]:
                        if len(self._node_infos) >= self._node_info_cache_size:
                            self._node_infos = {}  # rare (node churn); dropping all is simpler than an LRU
                        self._node_infos[key] = info
                infos.append(info)
            return infos, {}
        if not self.cache.nodes_synced:
            raise CacheNotSynced("the extender's node cache has not synced with the API server yet")
        infos, unknown = [], {}
        for name in args.node_names or []:
            info = self.cache.nodes.get(name)
            if info is None:
                unknown[name] = f"node {name} is not (yet) in the extender's node cache"
            else:
                infos.append(info)
        return infos, unknown

    def _pod(self, args) -> PodInfo:
        """The PodInfo of the Pod, memoised by what it is computed from (the labels and resources of its shape), so
        that pod after pod of one profile costs no quantity parsing."""
        key = _shape_key(args.pod)
        info = self._pod_infos.get(key) if key is not None else None
        if info is None:
            try:
                info = pod_info(args.pod, where="Pod")
            except ScoringError as e:
                raise _wire_error(e) from e
            if key is not None:
                if len(self._pod_infos) >= 1024:
                    self._pod_infos.clear()
                self._pod_infos[key] = info
        return info

    def _view(self, pod: PodInfo, names) -> View:
        now = self.clock()
        if pod.strategy == "spread":
            return View(now=now, zone_pods=self.cache.zone_pods(), expected_stay=self.cache.lifetimes.expected)
        drain = {}
        for name in names:
            d = self.cache.drain_at(name, now)
            if d is not None:
                drain[name] = d
        return View(now=now, drain_at=drain, expected_stay=self.cache.lifetimes.expected)

    def _table(self, args: wire.ExtenderArgs, pod: PodInfo):
        """The shape's table when the call can be answered from it (NodeNames, pack), else None."""
        if args.nodes is not None or pod.strategy != "pack" or not self.cache.nodes_synced:
            return None
        return self.tables.get(pod, self.cache, self.clock())

    def filter_bytes(self, args: wire.ExtenderArgs, body: bytes = b"") -> bytes:
        """The ExtenderFilterResult JSON: from the shape's table (NodeNames, pack) or computed (`filter`)."""
        if self.cache.pods_synced:
            pod = self._pod(args)
            table = self._table(args, pod)
            if table is not None:
                self.metrics.decide("filter", "table")
                names = args.node_names or []
                return table.respond("filter", names, _segment(body, names))
        return wire.dumps(self.filter(args).to_json())

    def filter(self, args: wire.ExtenderArgs) -> wire.ExtenderFilterResult:
        pod = self._pod(args)
        if not self.cache.pods_synced:
            self.metrics.decide("filter", "not_synced")
            return wire.ExtenderFilterResult(error="hubfleet scheduler extender: its pod cache has not synced with "
                                                   "the API server yet (see its log); retry shortly")
        try:
            infos, unknown = self._nodes_of(args)
        except CacheNotSynced as e:
            self.metrics.decide("filter", "not_synced")
            return wire.ExtenderFilterResult(error=f"hubfleet scheduler extender: {e}")
        outcome = filter_nodes(pod.requests, infos, self.cache.usage, self.policy)
        failed = {**unknown, **outcome.failed}
        self.metrics.decide("filter", "feasible" if outcome.feasible else "no_fit")
        if args.nodes is not None:
            keep = set(outcome.feasible)
            nodes = [n for n in args.nodes if n["metadata"]["name"] in keep]
            return wire.ExtenderFilterResult(nodes=nodes, failed_nodes=failed,
                                             failed_and_unresolvable_nodes=outcome.unresolvable)
        return wire.ExtenderFilterResult(node_names=outcome.feasible, failed_nodes=failed,
                                         failed_and_unresolvable_nodes=outcome.unresolvable)

    def prioritize_bytes(self, args: wire.ExtenderArgs, body: bytes = b"") -> bytes:
        pod = self._pod(args)
        if not self.cache.pods_synced:
            raise CacheNotSynced("the extender's pod cache has not synced with the API server yet")
        table = self._table(args, pod)
        self.metrics.decide("prioritize", "scored")
        if table is not None:
            names = args.node_names or []
            return table.respond("prioritize", names, _segment(body, names))
        infos, unknown = self._nodes_of(args)
        scores = prioritize(pod.requests, infos, self.cache.usage, self.policy, pod=pod,
                            view=self._view(pod, [i.name for i in infos]))
        return wire.dumps(wire.host_priority_list(scores + [(name, 0) for name in unknown]))

    def prioritize(self, args: wire.ExtenderArgs) -> list[tuple[str, int]]:
        return [(h["Host"], h["Score"]) for h in wire.loads(self.prioritize_bytes(args))]

    def preempt(self, args: wire.ExtenderPreemptionArgs) -> dict[str, list[str]]:
        """{node: [victim UIDs]}: the idlest user servers among the proposed victims, on at most one node."""
        try:
            requests = pod_requests(args.pod, where="Pod")
            proposed, pods = {}, {}
            for node, victims in args.victims.items():
                proposed[node] = victims.uids()
                if not args.meta:  # full Pods: read them rather than the cache
                    for i, p in enumerate(victims.pods):
                        info = victim_info(p, pod_requests(p, where=f"NodeNameToVictims.{node}.Pods[{i}]"))
                        pods[info.uid] = info
        except ScoringError as e:
            raise _wire_error(e) from e
        if args.meta:
            if not self.cache.pods_synced:
                self.metrics.decide("preempt", "not_synced")
                return {}
            pods = {uid: rec.victim for uid in {u for uids in proposed.values() for u in uids}
                    if (rec := self.cache.pods.get(uid)) is not None}
        now = self.clock()
        if self.hub_activity is not None:  # the annotation wins; else the hub's (if fresh); else unknown
            pods = {uid: self.hub_activity.resolve(v, now) for uid, v in pods.items()}
        decision = narrow(requests, proposed, nodes=self.cache.nodes, usage=self.cache.usage, pods=pods,
                          now=now, protect_active=self.policy.protect_active,
                          user_namespaces=self.policy.user_namespaces)
        meta = args.pod.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if decision.victims:
            [(node, uids)] = decision.victims.items()
            self.metrics.decide("preempt", "victims")
            self.metrics.victims.inc(len(uids))
            log.info("preempt pod:%s: on %s, victims %s (the idlest user servers proposed)", key, node,
                     ", ".join(pods[u].name for u in uids))
        else:
            self.metrics.decide("preempt", "refused")
            log.info("preempt pod:%s: no victims (%s)", key, "; ".join(f"{n}: {w}" for n, w in
                                                                        sorted(decision.refused.items())) or "none")
        return decision.victims

    def _seen_list(self, verb: str, body: bytes) -> bytes | None:
        """The answer from the shape's table when `body`'s NodeNames is the top-level array kube-scheduler puts last:
        the body is decoded without the ~60 KB array, which is first compared as bytes with the lists answered before
        (kube-scheduler sends the same list for pod after pod), else decoded on its own. Anything unusual (no such
        array, a name with a ``]``, a Pod that is not pack) returns None: the full path.
        """
        span = _names_span(body)
        if span is None or not self.cache.pods_synced or not self.cache.nodes_synced:
            return None
        start, end = span
        try:
            args = wire.ExtenderArgs.from_json(wire.loads(body[:start] + b"[]" + body[end:]))
        except wire.WireError:
            return None
        if args.node_names != [] or args.nodes is not None:  # the array cut was not the top-level NodeNames
            return None
        pod = self._pod(args)
        table = self._table(args, pod)
        if table is None:
            return None
        out = table.respond_segment(verb, body, start, end)
        if out is None:
            segment = body[start:end]
            try:
                names = wire.loads(segment)
                "".join(names)  # all strings (C speed)
            except (wire.WireError, TypeError):
                return None
            out = table.respond(verb, names, segment)
        self.metrics.decide(verb, "table")
        return out

    def filter_body(self, body: bytes) -> bytes:
        fast = self._seen_list("filter", body)
        return fast if fast is not None else self.filter_bytes(wire.ExtenderArgs.from_json(wire.loads(body)),
                                                               body)

    def prioritize_body(self, body: bytes) -> bytes:
        fast = self._seen_list("prioritize", body)
        if fast is not None:
            self.metrics.decide("prioritize", "scored")
            return fast
        return self.prioritize_bytes(wire.ExtenderArgs.from_json(wire.loads(body)), body)

    def preempt_body(self, body: bytes) -> bytes:
        return wire.dumps(wire.preemption_result(self.preempt(wire.ExtenderPreemptionArgs.from_json(
            wire.loads(body)))))


EXTENDER_KEY: web.AppKey["Extender"] = web.AppKey("extender")


EXPECTED = {"filter": "ExtenderArgs {Pod, Nodes | NodeNames}", "prioritize": "ExtenderArgs {Pod, Nodes | NodeNames}",
            "preempt": "ExtenderPreemptionArgs {Pod, NodeNameToVictims | NodeNameToMetaVictims}"}


def _names_span(body: bytes) -> tuple[int, int] | None:
    """Where the top-level NodeNames array is in `body` when it is the object's last member, as kube-scheduler
    encodes ExtenderArgs (``{"Pod":...,"Nodes":null,"NodeNames":[...]}``): only then is the span surely the
    top-level array (one closing brace follows it). The first such key is looked for (from the front: the Pod is a
    few KB, the names tens of KB); if it is not that array, None."""
    start = body.find(b'"NodeNames":[')
    if start < 0:
        return None
    start += len(b'"NodeNames":')
    end = body.find(b"]", start) + 1
    if end <= 0 or body[end:].strip() != b"}":
        return None
    return start, end


def _segment(body: bytes, names: list[str]) -> bytes | None:
    """The bytes of `body`'s NodeNames array, kept with an answer so that ``Extender._seen_list`` recognises the
    same list later; None unless they decode to exactly `names`."""
    span = _names_span(body) if body else None
    if span is None:
        return None
    segment = body[span[0]:span[1]]
    try:
        return segment if wire.loads(segment) == names else None
    except wire.WireError:
        return None


def _shape_key(pod: dict) -> bytes | None:
    """Everything ``scoring.pod_info`` reads of a Pod (the strategy and profile labels; the resources of containers
    and init containers; spec.overhead) as bytes, or None when the Pod is unusual (then pod_info says what is
    wrong)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec")
    labels = meta.get("labels") or {} if isinstance(meta, dict) else None
    if not isinstance(labels, dict) or not isinstance(spec, dict):
        return None
    parts = [labels.get(STRATEGY_LABEL), labels.get(PROFILE_LABEL), spec.get("overhead")]
    for field in ("containers", "initContainers"):
        items = spec.get(field) or []
        if not isinstance(items, list) or not all(isinstance(c, dict) for c in items):
            return None
        parts.append([c.get("resources") for c in items])
    try:
        return wire.dumps(parts)
    except TypeError:
        return None


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]  # "asyncio" or "uvloop"


def _wire_error(e: ScoringError) -> wire.WireError:
    field, _, message = str(e).partition(": ")
    return wire.WireError(field, message)


def _json_response(status: int, payload: object) -> web.Response:
    return web.Response(status=status, body=wire.dumps(payload), content_type="application/json")


def _route_error(status: int, request: web.BaseRequest, reason: str = "") -> web.Response:
    hint = {404: f"no such endpoint {request.path}; the extender serves POST /filter, POST /prioritize, "
                 "POST /preempt, GET /healthz, GET /metrics, GET /cache",
            405: f"{request.method} is not allowed on {request.path}"}.get(status, reason)
    return _json_response(status, {"error": hint, "field": ""})


def build_app(extender: Extender, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              offload_bytes: int = OFFLOAD_BYTES) -> web.Application:
    """The endpoints as an aiohttp Application (to mount them elsewhere; `serve` runs `build_server`'s leaner
    low-level server with the same handlers)."""

    @web.middleware
    async def json_errors(request: web.Request, handler):  # the Application's 404s and 405s
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return _route_error(e.status, request, e.reason)

    app = web.Application(client_max_size=max_body_bytes, middlewares=[json_errors])
    app[EXTENDER_KEY] = extender
    for (method, path), handler in _routes(extender, max_body_bytes, offload_bytes).items():
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD
        else:
            app.router.add_route(method, path, handler)
    return app


def build_server(extender: Extender, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 offload_bytes: int = OFFLOAD_BYTES) -> web.Server:
    """The endpoints on aiohttp's low-level server (call it in the running loop): a dict lookup per request
    instead of the Application's router, match info and middleware chain (~15 % of the extender's CPU per pod)."""
    routes = _routes(extender, max_body_bytes, offload_bytes)
    loop = asyncio.get_running_loop()

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        handler = routes.get((request.method, request.path))
        if handler is None and request.method == "HEAD":
            handler = routes.get(("GET", request.path))
        if handler is None:
            allowed = sorted(m for m, path in routes if path == request.path)
            if allowed:
                response = _route_error(405, request)
                response.headers["Allow"] = ",".join(allowed)
                return response
            return _route_error(404, request)
        return await handler(request)

    def make_request(message, payload, protocol, writer, task) -> web.BaseRequest:
        return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=max_body_bytes)

    return web.Server(dispatch, request_factory=make_request)


def _routes(extender: Extender, max_body_bytes: int, offload_bytes: int) -> dict[tuple[str, str], Callable]:
    """{(method, path): handler} of the extender's endpoints."""
    metrics = extender.metrics

    def verb_handler(verb: str, compute: Callable[[bytes], bytes]) -> Callable[[web.BaseRequest], Awaitable]:
        async def handle(request: web.BaseRequest) -> web.Response:
            start = time.perf_counter()
            status = 200
            try:
                if request.content_length is not None and request.content_length > max_body_bytes:
                    raise web.HTTPRequestEntityTooLarge(max_size=max_body_bytes, actual_size=request.content_length)
                body = await request.read()
                if not body:
                    raise wire.WireError("", f"empty request body: expected {EXPECTED[verb]} JSON")
                if len(body) > offload_bytes:
                    out = await asyncio.to_thread(compute, body)
                else:
                    out = compute(body)
                return web.Response(body=out, content_type="application/json")
            except web.HTTPRequestEntityTooLarge:
                status = 413
                log.warning("%s: request body larger than %d bytes refused", verb, max_body_bytes)
                return _json_response(413, {"error": f"request body is larger than the extender's limit of "
                                                     f"{max_body_bytes} bytes (--max-body-bytes)", "field": ""})
            except wire.WireError as e:
                status = 400
                log.warning("%s: bad request from %s: %s", verb, request.remote, e)
                return _json_response(400, e.to_json())
            except CacheNotSynced as e:
                status = 503
                return _json_response(503, {"error": f"hubfleet scheduler extender: {e}", "field": ""})
            except Exception as e:  # a bug: say so, keep serving
                status = 500
                log.exception("%s: internal error", verb)
                return _json_response(500, {"error": f"internal error in the extender: {type(e).__name__}: {e}",
                                            "field": ""})
            finally:
                metrics.observe(verb, status, time.perf_counter() - start)
        return handle

    async def healthz(request: web.BaseRequest) -> web.Response:
        cache = extender.cache
        body = {"ok": cache.synced, "cache_synced": cache.synced, "pods": len(cache.pods),
                "nodes": len(cache.nodes), "last_error": cache.last_error, "json": wire.JSON_BACKEND,
                "event_loop": _loop_name()}
        return _json_response(200 if cache.synced else 503, body)

    async def metrics_handler(request: web.BaseRequest) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    async def cache_handler(request: web.BaseRequest) -> web.Response:
        return _json_response(200, extender.cache.snapshot())

    return {("POST", "/filter"): verb_handler("filter", extender.filter_body),
            ("POST", "/prioritize"): verb_handler("prioritize", extender.prioritize_body),
            ("POST", "/preempt"): verb_handler("preempt", extender.preempt_body),
            ("GET", "/healthz"): healthz, ("GET", "/metrics"): metrics_handler, ("GET", "/cache"): cache_handler}


async def _refresh(extender: Extender, interval: float = 0.05, batch: int = 8) -> None:
    """Keep the tables up to date between requests, in slices of `batch` nodes per table (each well under a request's
    time): changed nodes first, every millisecond while a burst of watch events is being caught up with (so that a
    request finds little left to do), else the lifetime scores of the longest-unrefreshed nodes every `interval`."""
    behind = False
    while True:
        await asyncio.sleep(0.001 if behind else interval)
        try:
            behind = extender.tables.refresh_some(extender.cache, extender.clock(), batch)
        except Exception:  # noqa: BLE001 - a bug here must not stop the server; the next sync rebuilds
            behind = False
            log.exception("refreshing score tables failed")


GC_THRESHOLD0 = 20_000  # allocations between young collections (CPython's default 700): fewer pauses per request


async def serve(extender: Extender, *, host: str, port: int, kubeconfig: str | None,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, stop: asyncio.Event | None = None,
                hub_poller=None) -> None:
    """Run the cache watch (and `hub_poller`, a ``hubpoll.HubPoller``) and the HTTP server until `stop` is set (or
    SIGTERM/SIGINT)."""
    import signal

    from .cache import CacheWatcher, make_api_client

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    api_client = await make_api_client(kubeconfig)
    runner = web.ServerRunner(build_server(extender, max_body_bytes=max_body_bytes), access_log=None)
    await runner.setup()
    watch_task = refresh_task = hub_task = None
    untrack_gc = extender.metrics.track_gc()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, *thresholds[1:])
    try:
        await web.TCPSite(runner, host, port).start()  # bind first: a busy port fails before any watch starts
        watch_task = asyncio.create_task(CacheWatcher(extender.cache, api_client).run(), name="cache-watch")
        refresh_task = asyncio.create_task(_refresh(extender), name="score-refresh")
        hub_task = asyncio.create_task(hub_poller.run(), name="hub-activity") if hub_poller else None
        log.info("scheduler extender listening on http://%s:%s (gpu resource %s, gpu-node label %r, weights %s, "
                 "event loop %s)", host, port, extender.policy.gpu_resource, extender.policy.gpu_node_label,
                 extender.policy.weights, _loop_name())
        await stop.wait()
        log.info("scheduler extender stopping")
    finally:
        if watch_task is not None:
            watch_task.cancel()
            refresh_task.cancel()
            if hub_task is not None:
                hub_task.cancel()
            await asyncio.gather(watch_task, refresh_task, *([hub_task] if hub_task else []), return_exceptions=True)
        await runner.cleanup()
        await api_client.close()
        untrack_gc()
        gc.set_threshold(*thresholds)


__all__ = ["DEFAULT_MAX_BODY_BYTES", "VERBS", "Extender", "build_app", "build_server", "serve"]
