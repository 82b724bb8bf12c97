"""The extender's HTTP server (aiohttp): ``POST /filter``, ``POST /prioritize``, ``GET /healthz``, ``GET /metrics``,
``GET /cache``.

kube-scheduler POSTs ExtenderArgs to ``<urlPrefix>/<filterVerb>`` and ``<urlPrefix>/<prioritizeVerb>`` (see
``deploy/scheduler-extender/``: urlPrefix ``http://127.0.0.1:8888``, verbs ``filter`` and ``prioritize``). Request
bodies are bounded (``max_body_bytes``, answered 413 beyond it); a malformed body is answered 400 with
``{"error": "<field>: <what is wrong>", "field": "<field>"}``; nothing a client sends produces a 500. Large bodies
(full NodeLists) are decoded and scored on a worker thread so /healthz and small requests keep being answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections import defaultdict
from typing import Awaitable, Callable

from aiohttp import web

from . import wire
from .cache import ClusterCache
from .scoring import NodeInfo, Policy, ScoringError, filter_nodes, node_info, pod_requests, prioritize

log = logging.getLogger("hubfleet.scheduler_plugin")

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # a NodeList of 1,000 devcluster-sized nodes is ~1.1 MB; real nodes more
OFFLOAD_BYTES = 256 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VERBS = ("filter", "prioritize")


class CacheNotSynced(Exception):
    pass


class Metrics:
    """Request counts by (verb, HTTP code) and a latency histogram by verb, in Prometheus' text format."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, verb: str, code: int, seconds: float) -> None:
        self.counts[(verb, code)] += 1
        self.buckets[verb][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sums[verb] += seconds

    def render(self, cache: ClusterCache) -> str:
        out = ["# HELP hubfleet_extender_requests_total Extender requests by verb and HTTP status code.",
               "# TYPE hubfleet_extender_requests_total counter"]
        for (verb, code), n in sorted(self.counts.items()):
            out.append(f'hubfleet_extender_requests_total{{verb="{verb}",code="{code}"}} {n}')
        out += ["# HELP hubfleet_extender_request_duration_seconds Time to answer an extender request.",
                "# TYPE hubfleet_extender_request_duration_seconds histogram"]
        for verb in sorted(self.buckets):
            cumulative = 0
            for le, n in zip((*LATENCY_BUCKETS, "+Inf"), self.buckets[verb]):
                cumulative += n
                out.append(f'hubfleet_extender_request_duration_seconds_bucket{{verb="{verb}",le="{le}"}} '
                           f'{cumulative}')
            out.append(f'hubfleet_extender_request_duration_seconds_sum{{verb="{verb}"}} {self.sums[verb]:.6f}')
            out.append(f'hubfleet_extender_request_duration_seconds_count{{verb="{verb}"}} {cumulative}')
        out += ["# TYPE hubfleet_extender_cache_synced gauge", f"hubfleet_extender_cache_synced {int(cache.synced)}",
                "# TYPE hubfleet_extender_cache_pods gauge", f"hubfleet_extender_cache_pods {len(cache.pods)}",
                "# TYPE hubfleet_extender_cache_nodes gauge", f"hubfleet_extender_cache_nodes {len(cache.nodes)}",
                "# TYPE hubfleet_extender_cache_relists_total counter",
                f"hubfleet_extender_cache_relists_total {cache.relists}"]
        return "\n".join(out) + "\n"


class Extender:
    """The verbs, on decoded bytes (usable without HTTP): `filter_body` / `prioritize_body` -> response bytes."""

    def __init__(self, policy: Policy, cache: ClusterCache, *, node_info_cache_size: int = 20_000):
        self.policy = policy
        self.cache = cache
        self._node_infos: dict[tuple[str, str], NodeInfo] = {}
        self._node_info_cache_size = node_info_cache_size

    def _nodes_of(self, args: wire.ExtenderArgs) -> tuple[list[NodeInfo], dict[str, str]]:
        """NodeInfos of the candidates: parsed from Nodes (memoised by name+resourceVersion), or from the node cache
        for NodeNames. Returns (infos, {unknown node: reason})."""
        if args.nodes is not None:
            infos = []
            for i, node in enumerate(args.nodes):
                meta = node["metadata"]
                key = (meta["name"], meta.get("resourceVersion") or "")
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

    def _requests(self, args: wire.ExtenderArgs):
        try:
            return pod_requests(args.pod, where="Pod")
        except ScoringError as e:
            raise _wire_error(e) from e

    def filter(self, args: wire.ExtenderArgs) -> wire.ExtenderFilterResult:
        requests = self._requests(args)
        if not self.cache.pods_synced:
            return wire.ExtenderFilterResult(error="hubfleet scheduler extender: its pod cache has not synced with "
                                                   "the API server yet (see its log); retry shortly")
        try:
            infos, unknown = self._nodes_of(args)
        except CacheNotSynced as e:
            return wire.ExtenderFilterResult(error=f"hubfleet scheduler extender: {e}")
        outcome = filter_nodes(requests, infos, self.cache.usage, self.policy)
        failed = {**unknown, **outcome.failed}
        if args.nodes is not None:
            keep = set(outcome.feasible)
            nodes = [n for n in args.nodes if n["metadata"]["name"] in keep]
            result = wire.ExtenderFilterResult(nodes=nodes, failed_nodes=failed,
                                               failed_and_unresolvable_nodes=outcome.unresolvable)
        else:
            result = wire.ExtenderFilterResult(node_names=outcome.feasible, failed_nodes=failed,
                                               failed_and_unresolvable_nodes=outcome.unresolvable)
        log.debug("filter pod:%s: %d feasible, %d failed", args.pod_key, len(outcome.feasible),
                  len(failed) + len(outcome.unresolvable))
        return result

    def prioritize(self, args: wire.ExtenderArgs) -> list[tuple[str, int]]:
        requests = self._requests(args)
        if not self.cache.pods_synced:
            raise CacheNotSynced("the extender's pod cache has not synced with the API server yet")
        infos, unknown = self._nodes_of(args)
        scores = prioritize(requests, infos, self.cache.usage, self.policy)
        return scores + [(name, 0) for name in unknown]

    def filter_body(self, body: bytes) -> bytes:
        return wire.dumps(self.filter(wire.ExtenderArgs.from_json(wire.loads(body))).to_json())

    def prioritize_body(self, body: bytes) -> bytes:
        return wire.dumps(wire.host_priority_list(self.prioritize(wire.ExtenderArgs.from_json(wire.loads(body)))))


EXTENDER_KEY: web.AppKey["Extender"] = web.AppKey("extender")
METRICS_KEY: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


def _wire_error(e: ScoringError) -> wire.WireError:
    field, _, message = str(e).partition(": ")
    return wire.WireError(field, message)


def _json_response(status: int, payload: object) -> web.Response:
    return web.Response(status=status, body=wire.dumps(payload), content_type="application/json")


def build_app(extender: Extender, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              offload_bytes: int = OFFLOAD_BYTES) -> web.Application:
    metrics = Metrics()

    @web.middleware
    async def json_errors(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            hint = {404: f"no such endpoint {request.path}; the extender serves POST /filter, POST /prioritize, "
                         "GET /healthz, GET /metrics, GET /cache",
                    405: f"{request.method} is not allowed on {request.path}"}.get(e.status, e.reason)
            return _json_response(e.status, {"error": hint, "field": ""})

    def verb_handler(verb: str, compute: Callable[[bytes], bytes]) -> Callable[[web.Request], Awaitable]:
        async def handle(request: web.Request) -> web.Response:
            start = time.perf_counter()
            status = 200
            try:
                if request.content_length is not None and request.content_length > max_body_bytes:
                    raise web.HTTPRequestEntityTooLarge(max_size=max_body_bytes, actual_size=request.content_length)
                body = await request.read()
                if not body:
                    raise wire.WireError("", "empty request body: expected ExtenderArgs JSON {Pod, Nodes | NodeNames}")
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

    async def healthz(request: web.Request) -> web.Response:
        cache = extender.cache
        body = {"ok": cache.synced, "cache_synced": cache.synced, "pods": len(cache.pods),
                "nodes": len(cache.nodes), "last_error": cache.last_error, "json": wire.JSON_BACKEND}
        return _json_response(200 if cache.synced else 503, body)

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(extender.cache), content_type="text/plain")

    async def cache_handler(request: web.Request) -> web.Response:
        return _json_response(200, extender.cache.snapshot())

    app = web.Application(client_max_size=max_body_bytes, middlewares=[json_errors])
    app[EXTENDER_KEY] = extender
    app[METRICS_KEY] = metrics
    app.router.add_post("/filter", verb_handler("filter", extender.filter_body))
    app.router.add_post("/prioritize", verb_handler("prioritize", extender.prioritize_body))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/cache", cache_handler)
    return app


async def serve(extender: Extender, *, host: str, port: int, kubeconfig: str | None,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, stop: asyncio.Event | None = None) -> None:
    """Run the cache watch and the HTTP server until `stop` is set (or SIGTERM/SIGINT)."""
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
    runner = web.AppRunner(build_app(extender, max_body_bytes=max_body_bytes), access_log=None)
    await runner.setup()
    watch_task = None
    try:
        await web.TCPSite(runner, host, port).start()  # bind first: a busy port fails before any watch starts
        watch_task = asyncio.create_task(CacheWatcher(extender.cache, api_client).run(), name="cache-watch")
        log.info("scheduler extender listening on http://%s:%s (gpu resource %s, gpu-node label %r, weights %s)",
                 host, port, extender.policy.gpu_resource, extender.policy.gpu_node_label, extender.policy.weights)
        await stop.wait()
        log.info("scheduler extender stopping")
    finally:
        if watch_task is not None:
            watch_task.cancel()
            await asyncio.gather(watch_task, return_exceptions=True)
        await runner.cleanup()
        await api_client.close()


__all__ = ["DEFAULT_MAX_BODY_BYTES", "Extender", "Metrics", "build_app", "serve"]
