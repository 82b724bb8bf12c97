"""The extender's Prometheus metrics (prometheus_client, one registry per server so that tests can run several)."""

from __future__ import annotations

import gc
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """``hubfleet_extender_requests_total{verb,code}``, ``hubfleet_extender_request_duration_seconds{verb}``,
    ``hubfleet_extender_decisions_total{verb,outcome}``, ``hubfleet_extender_preemption_victims_total``,
    ``hubfleet_extender_cache_age_seconds{kind}`` (since the last list or watch event), cache gauges, with a hub
    activity source ``hubfleet_extender_hub_activity_age_seconds`` (since the last successful poll; NaN before), and
    once `track_gc` is called ``hubfleet_extender_gc_pause_seconds{generation}`` (Python's cyclic collector: a pause
    of the server, requests included)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, cache, *, hub_activity=None, clock=time.time) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("hubfleet_extender_requests", "Extender requests by verb and HTTP status code.",
                                ["verb", "code"], registry=r)
        self.latency = Histogram("hubfleet_extender_request_duration_seconds", "Time to answer an extender request.",
                                 ["verb"], buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("hubfleet_extender_decisions", "Extender decisions by verb and outcome.",
                                 ["verb", "outcome"], registry=r)
        self.victims = Counter("hubfleet_extender_preemption_victims",
                               "Pods the preempt verb answered as victims.", registry=r)
        age = Gauge("hubfleet_extender_cache_age_seconds", "Seconds since the cache's last list or watch event.",
                    ["kind"], registry=r)
        for kind in ("pods", "nodes"):
            age.labels(kind).set_function(lambda kind=kind: (time.monotonic() - cache.last_event[kind])
                                          if cache.last_event[kind] else float("nan"))
        Gauge("hubfleet_extender_cache_synced", "1 once pods and nodes are listed.",
              registry=r).set_function(lambda: float(cache.synced))
        Gauge("hubfleet_extender_cache_pods", "Bound pods in the cache.", registry=r).set_function(
            lambda: len(cache.pods))
        Gauge("hubfleet_extender_cache_nodes", "Nodes in the cache.", registry=r).set_function(
            lambda: len(cache.nodes))
        Gauge("hubfleet_extender_cache_relists", "Re-lists after a failed list or watch (a counter).",
              registry=r).set_function(lambda: cache.relists)
        if hub_activity is not None:
            Gauge("hubfleet_extender_hub_activity_age_seconds",
                  "Seconds since the hub's server activity was last read (NaN: never); older than 3x the poll "
                  "interval means activity unknown, no victims.", registry=r).set_function(
                lambda: a if (a := hub_activity.age(clock())) is not None else float("nan"))
        self.gc_pause = Histogram("hubfleet_extender_gc_pause_seconds",
                                  "Pauses of Python's cyclic garbage collector, by generation.", ["generation"],
                                  buckets=GC_BUCKETS, registry=r)
        self._children: dict = {}

    def track_gc(self):
        """Time every collection into ``hubfleet_extender_gc_pause_seconds`` (process-wide: the server calls it once);
        returns the function that stops it."""
        children = [self.gc_pause.labels(str(g)) for g in range(3)]
        started = [0]

        def callback(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter_ns()
            else:
                children[info["generation"]].observe((time.perf_counter_ns() - started[0]) / 1e9)

        gc.callbacks.append(callback)
        return lambda: gc.callbacks.remove(callback)

    def observe(self, verb: str, code: int, seconds: float) -> None:
        key = (verb, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(verb, str(code)), self.latency.labels(verb))
        children[0].inc()
        children[1].observe(seconds)

    def decide(self, verb: str, outcome: str) -> None:
        self.decisions.labels(verb, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["LATENCY_BUCKETS", "Metrics"]
