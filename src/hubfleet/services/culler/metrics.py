"""The culler's Prometheus metrics (``prometheus_client``) and the small HTTP server that serves them.

Served at ``/metrics`` and, behind the hub, at ``/services/<name>/metrics`` (the hub's proxy forwards the prefix;
``JUPYTERHUB_SERVICE_URL`` says where to listen, and the service entry needs a ``url``, which
:func:`hubfleet.config.culler.culler_service` sets with ``metrics_port``). Labels are profiles and fixed reason
words, never user names, so the series stay few.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from tornado.web import Application, RequestHandler


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.culls = Counter("hubfleet_culler_culls", "Servers culled, by profile and reason (idle, gpu_idle, "
                             "max_age, budget, consolidate).", ["profile", "reason"], registry=r)
        self.warnings = Counter("hubfleet_culler_warnings", "Warnings given before a cull, by profile and reason.",
                                ["profile", "reason"], registry=r)
        self.warnings_cancelled = Counter("hubfleet_culler_warnings_cancelled",
                                          "Warnings cancelled by activity after them, by profile.", ["profile"],
                                          registry=r)
        self.notify_failures = Counter("hubfleet_culler_notify_failures",
                                       "Warnings a notifier could not deliver, by notifier.", ["notifier"],
                                       registry=r)
        self.spared = Counter("hubfleet_culler_spared_busy", "Idle servers kept because a kernel was busy, by "
                              "profile (counted once per sweep).", ["profile"], registry=r)
        self.users_deleted = Counter("hubfleet_culler_users_deleted", "Users deleted (cull_users).", registry=r)
        self.hub_api_errors = Counter("hubfleet_culler_hub_api_errors", "Hub API requests that failed for good, "
                                      "by what was asked (list, stop, delete, user).", ["request"], registry=r)
        self.source_errors = Counter("hubfleet_culler_activity_source_errors", "Activity source requests that "
                                     "failed (kernels, prometheus).", ["source"], registry=r)
        self.record_errors = Counter("hubfleet_culler_skipped_records", "User records skipped because the culler "
                                     "could not handle them.", registry=r)
        self.sweep_seconds = Histogram("hubfleet_culler_sweep_duration_seconds", "Wall time of one sweep.",
                                       buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=r)
        self.sweep_failures = Counter("hubfleet_culler_sweep_failures", "Sweeps that failed as a whole.", registry=r)
        self.concurrency = Gauge("hubfleet_culler_concurrency_limit", "Stops allowed in flight now (adapted to the "
                                 "hub's answer times).", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: Metrics, prefix: str = "/") -> Application:
    class MetricsHandler(RequestHandler):
        def get(self):
            self.set_header("Content-Type", CONTENT_TYPE_LATEST)
            self.write(metrics.exposition())

    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    routes = [(r"/metrics", MetricsHandler)]
    if prefix != "/":
        routes.append((rf"{prefix}metrics", MetricsHandler))
    return Application(routes)


__all__ = ["Metrics", "metrics_app"]
