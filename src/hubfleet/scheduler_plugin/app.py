"""The extender's HTTP server (aiohttp): ``POST /filter``, ``POST /prioritize``, ``POST /preempt``, ``GET /healthz``,
``GET /metrics``, ``GET /cache``.

kube-scheduler POSTs ExtenderArgs to ``<urlPrefix>/<filterVerb>`` and ``<urlPrefix>/<prioritizeVerb>``, and
ExtenderPreemptionArgs to ``<urlPrefix>/<preemptVerb>`` (see ``deploy/scheduler-extender/``: urlPrefix
``http://127.0.0.1:8888``, verbs ``filter``, ``prioritize``, ``preempt``). Request bodies are bounded
(``max_body_bytes``, answered 413 beyond it); a malformed body is answered 400 with ``{"error": "<field>: <what is
wrong>", "field": "<field>"}``; nothing a client sends produces a 500.

A call's path: ``decode`` (``wire.split_node_names`` or ``wire.loads`` + ``ExtenderArgs.from_json``, NodeInfos of a
NodeList) -> ``decide`` (pod shape -> the shape's table or ``filter_nodes``/``prioritize``/``narrow`` over the watch
cache -> ``wire.encode_*``) -> one decision counted. ``decode`` reads nothing the event loop changes, so large bodies
(full NodeLists) are decoded on a worker thread and /healthz keeps being answered; everything that reads the cache
runs on the event loop, between watch events, never beside them.

With ``NodeNames`` (``nodeCacheCapable: true``) a ``pack`` pod is answered from a table of verdicts and scores kept
per request shape (``tables.py``), so a call costs a lookup per node name.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from . import wire
from .activity import HubActivity
from .cache import ClusterCache
from .metrics import Metrics
from .preemption import narrow, victim_info
from .scoring import (PROFILE_LABEL, STRATEGY_LABEL, NodeInfo, PodInfo, Policy, ScoringError, View, filter_nodes,
                      node_info, not_cached, pod_info, pod_requests, prioritize)
from .tables import Tables

log = logging.getLogger("hubfleet.scheduler_plugin")

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # a NodeList of 1,000 devcluster-sized nodes is ~1.1 MB; real nodes more
OFFLOAD_BYTES = 256 * 1024
VERBS = ("filter", "prioritize", "preempt")


class CacheNotSynced(Exception):
    pass


@dataclass
class Request:
    """A decoded extender call: `args` (ExtenderArgs or ExtenderPreemptionArgs); for a NodeNames body split by
    ``wire.split_node_names``, the `body` and the names' `span` in it (the names decoded only when needed); for a
    Nodes body, the candidates' NodeInfos and those parsed anew (`parsed`, for the memo)."""
    verb: str
    args: Any
    body: bytes = b""
    span: tuple[int, int] | None = None
    infos: list[NodeInfo] | None = None
    parsed: dict[tuple[str, str], NodeInfo] = field(default_factory=dict)

    @property
    def segment(self) -> bytes | None:
        return self.body[self.span[0]:self.span[1]] if self.span else None

    def names(self) -> list[str]:
        if self.span is None:
            return self.args.node_names or []
        return wire.decode_node_names(self.segment)


class Extender:
    """The verbs, usable without HTTP. One path per call: ``decode`` (pure: bytes -> Request; reads no state that
    the event loop changes, so the server runs it on a worker thread for large bodies) then ``decide`` (on the
    event loop: the cache, the score tables, the memos, the metrics; encodes the answer with ``wire``).
    `filter_body` / `prioritize_body` / `preempt_body` do both."""

    def __init__(self, policy: Policy, cache: ClusterCache, *, node_info_cache_size: int = 20_000,
                 clock: Callable[[], float] = time.time, hub_activity: HubActivity | None = None):
        self.policy = policy
        self.cache = cache
        self.clock = clock
        self.hub_activity = hub_activity  # the preempt verb's second activity source (--hub-api-url)
        self.tables = Tables(policy)
        self.metrics = Metrics(cache, hub_activity=hub_activity, clock=clock)
        self._node_infos: dict[tuple[str, str], NodeInfo] = {}  # replaced, never changed in place: decode reads it
        self._pod_infos: dict[bytes, PodInfo] = {}
        self._node_info_cache_size = node_info_cache_size

    # --- decode: pure, any thread ---
    def decode(self, verb: str, body: bytes) -> Request:
        if verb == "preempt":
            return Request(verb, wire.ExtenderPreemptionArgs.from_json(wire.loads(body)))
        split = wire.split_node_names(body)
        if split is not None:
            args, start, end = split
            return Request(verb, args, body, (start, end))
        args = wire.ExtenderArgs.from_json(wire.loads(body))
        if args.nodes is None:
            return Request(verb, args)
        known, infos, parsed = self._node_infos, [], {}
        for i, node in enumerate(args.nodes):  # parsed from Nodes, memoised by name+resourceVersion
            meta = node["metadata"]
            rv = meta.get("resourceVersion")
            key = (meta["name"], rv if isinstance(rv, str) else "")
            info = known.get(key) if key[1] else None
            if info is None:
                try:
                    info = node_info(node, where=f"Nodes.items[{i}]")
                except ScoringError as e:
                    raise _wire_error(e) from e
                if key[1]:
                    parsed[key] = info
            infos.append(info)
        return Request(verb, args, infos=infos, parsed=parsed)

    # --- decide: on the event loop ---
    def decide(self, request: Request) -> bytes:
        """The answer's bytes; counts the decision once (``hubfleet_extender_decisions_total{verb,outcome}``)."""
        if request.verb == "preempt":
            victims = self._preempt(request.args)
            outcome = "not_synced" if victims is None else "victims" if victims else "refused"
            out = wire.encode_preemption(victims or {})
        else:
            outcome, out = self._place(request)
        self.metrics.decide(request.verb, outcome)
        return out

    def answer(self, verb: str, body: bytes) -> bytes:
        return self.decide(self.decode(verb, body))

    def filter_body(self, body: bytes) -> bytes:
        return self.answer("filter", body)

    def prioritize_body(self, body: bytes) -> bytes:
        return self.answer("prioritize", body)

    def preempt_body(self, body: bytes) -> bytes:
        return self.answer("preempt", body)

    def _place(self, request: Request) -> tuple[str, bytes]:
        """(outcome, answer) of filter or prioritize: from the shape's table (NodeNames, pack), else computed."""
        verb, args = request.verb, request.args
        pod = self._pod(args)
        synced = self.cache.pods_synced and (args.nodes is not None or self.cache.nodes_synced)
        if not synced:
            what = "pod" if not self.cache.pods_synced else "node"
            message = f"the extender's {what} cache has not synced with the API server yet"
            if verb == "prioritize":
                raise CacheNotSynced(message)
            return "not_synced", wire.encode_filter(error=f"hubfleet scheduler extender: {message} (see its log); "
                                                           "retry shortly")
        if request.parsed:
            if len(self._node_infos) + len(request.parsed) > self._node_info_cache_size:
                self._node_infos = {}  # rare (node churn); dropping all is simpler than an LRU
            self._node_infos = {**self._node_infos, **request.parsed}
        if args.nodes is None and pod.strategy == "pack":
            table = self.tables.get(pod, self.cache, self.clock())
            out = None
            if request.span is not None:
                out = table.respond_segment(verb, request.body, *request.span)
            if out is None:
                out = table.respond(verb, request.names(), request.segment)
            return "table", out
        if request.infos is not None:
            infos, unknown = request.infos, []
        else:
            infos, unknown = [], []
            for name in request.names():
                info = self.cache.nodes.get(name)
                if info is None:
                    unknown.append(name)
                else:
                    infos.append(info)
        if verb == "filter":
            outcome = filter_nodes(pod.requests, infos, self.cache.usage, self.policy)
            frags = [wire.filter_fragments(n, (not_cached(n), False)) for n in unknown]
            frags += [wire.filter_fragments(n, None) for n in outcome.feasible]
            frags += [wire.filter_fragments(n, (why, False)) for n, why in outcome.failed.items()]
            frags += [wire.filter_fragments(n, (why, True)) for n, why in outcome.unresolvable.items()]
            ok, failed, unresolvable = (b"".join(part) for part in zip(*frags)) if frags else (b"", b"", b"")
            nodes = None
            if args.nodes is not None:
                keep = set(outcome.feasible)
                nodes, ok = [n for n in args.nodes if n["metadata"]["name"] in keep], b""
            return ("feasible" if outcome.feasible else "no_fit"), wire.encode_filter(ok, failed, unresolvable,
                                                                                       nodes=nodes)
        scores = prioritize(pod.requests, infos, self.cache.usage, self.policy, pod=pod,
                            view=self._view(pod, [i.name for i in infos]))
        joined = b"".join(wire.priority_fragment(n, s) for n, s in [*scores, *((n, 0) for n in unknown)])
        return "scored", wire.encode_priorities(joined)

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

    def _preempt(self, args: wire.ExtenderPreemptionArgs) -> dict[str, list[str]] | None:
        """{node: [victim UIDs]}: the idlest user servers among the proposed victims, on at most one node; None when
        the pod cache has not synced (no victims either)."""
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
                return None
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
            self.metrics.victims.inc(len(uids))
            log.info("preempt pod:%s: on %s, victims %s (the idlest user servers proposed)", key, node,
                     ", ".join(pods[u].name for u in uids))
        else:
            log.info("preempt pod:%s: no victims (%s)", key, "; ".join(f"{n}: {w}" for n, w in
                                                                        sorted(decision.refused.items())) or "none")
        return decision.victims


EXTENDER_KEY: web.AppKey["Extender"] = web.AppKey("extender")


EXPECTED = {"filter": "ExtenderArgs {Pod, Nodes | NodeNames}", "prioritize": "ExtenderArgs {Pod, Nodes | NodeNames}",
            "preempt": "ExtenderPreemptionArgs {Pod, NodeNameToVictims | NodeNameToMetaVictims}"}


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

    def verb_handler(verb: str) -> Callable[[web.BaseRequest], Awaitable]:
        async def handle(request: web.BaseRequest) -> web.Response:
            start = time.perf_counter()
            status = 200
            try:
                if request.content_length is not None and request.content_length > max_body_bytes:
                    raise web.HTTPRequestEntityTooLarge(max_size=max_body_bytes, actual_size=request.content_length)
                body = await request.read()
                if not body:
                    raise wire.WireError("", f"empty request body: expected {EXPECTED[verb]} JSON")
                if len(body) > offload_bytes:  # decoding a NodeList takes tens of ms: /healthz is answered meanwhile
                    decoded = await asyncio.to_thread(extender.decode, verb, body)
                else:
                    decoded = extender.decode(verb, body)
                out = extender.decide(decoded)
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

    return {("POST", "/filter"): verb_handler("filter"), ("POST", "/prioritize"): verb_handler("prioritize"),
            ("POST", "/preempt"): verb_handler("preempt"),
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
