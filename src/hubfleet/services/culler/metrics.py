"""The culler's Prometheus metrics (``prometheus_client``) and the small HTTP server that serves them.

Served at ``/metrics`` and, behind the hub, at ``/services/<name>/metrics`` (the hub's proxy forwards the prefix;
``JUPYTERHUB_SERVICE_URL`` says where to listen, and the service entry needs a ``url``, which
:func:`hubfleet.config.culler.culler_service` sets with ``metrics_port``). Labels are profiles and fixed reason
words, never user names, so the series stay few.

The same server answers ``/state`` (and ``/services/<name>/state``): the warnings the culler has given and its last
culls, per server (:mod:`.state`), as JSON for the admin page. It names users, so it answers only a request whose
token the hub says holds ``access:services!service=<the culler's name>`` (admins, and the admin page's role with
``admin_page_service(culler_url=...)``); everyone else gets 403.
"""

from __future__ import annotations

import json
import logging
import re

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from tornado.web import Application, HTTPError, RequestHandler

log = logging.getLogger("hubfleet.culler")


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


def service_access(api_url: str, api_token: str, name: str):
    """An async ``token -> bool``: whether the hub says the token holds ``access:services!service=<name>``
    (JupyterHub's HubAuth, made at the first request; its answers are cached for a minute)."""
    made = []

    async def authorize(token: str) -> bool:
        if not made:
            from jupyterhub.services.auth import HubAuth  # noqa: PLC0415  (slow to import: not before it is needed)

            made.append(HubAuth(api_url=api_url, api_token=api_token, cache_max_age=60,
                                access_scopes={f"access:services!service={name}"}))
        auth = made[0]
        model = await auth.user_for_token(token, sync=False)
        return bool(model) and bool(auth.check_scopes(auth.access_scopes, model))

    return authorize


def metrics_app(metrics: Metrics, prefix: str = "/", *, state=None, authorize=None) -> Application:
    """``/metrics``; with ``state`` (a callable returning the JSON-able state) and ``authorize`` (an async callable:
    a token -> whether it may read the state) also ``/state``."""
    class MetricsHandler(RequestHandler):
        def get(self):
            self.set_header("Content-Type", CONTENT_TYPE_LATEST)
            self.write(metrics.exposition())

    class StateHandler(RequestHandler):
        async def get(self):
            m = re.fullmatch(r"(?:token|bearer)\s+(\S+)", self.request.headers.get("Authorization", ""), re.I)
            try:
                allowed = bool(m) and await authorize(m.group(1))
            except Exception as e:  # noqa: BLE001  (the hub cannot tell: refuse)
                log.warning("state: the token could not be checked with the hub: %s", e)
                raise HTTPError(503, "the hub could not check the token") from e
            if not allowed:
                raise HTTPError(403)
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.write(json.dumps(state()))

    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    handlers = [("metrics", MetricsHandler)] + ([("state", StateHandler)] if state is not None else [])
    routes = [(rf"/{name}", h) for name, h in handlers]
    if prefix != "/":
        routes += [(rf"{prefix}{name}", h) for name, h in handlers]
    return Application(routes)


__all__ = ["Metrics", "metrics_app", "service_access"]
