"""ProfileSpawner's metrics, registered in the hub's own ``prometheus_client`` registry (so they appear on the
hub's ``/hub/metrics`` next to JupyterHub's).

- ``hubfleet_spawn_duration_seconds{profile, outcome}``: time from start to ready (``success``) or failure
  (``failure``, ``refused``);
- ``hubfleet_spawn_refusals_total{reason, profile}``: refused spawns, ``reason`` one of ``disallowed``, ``quota``,
  ``invalid``, ``config``;
- ``hubfleet_running_servers{profile}``: live hubfleet pods (not finished) by profile, from the pod reflector;
- ``jupyterhub_user_group_info{username, usergroup}``: 1 per group membership, as the stock
  jupyterhub/grafana-dashboards group dashboard expects (read from the hub's database at scrape time); only with
  ``ProfileSpawner.export_user_group_info`` (it names every user and every admin-group member).
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ..labels import PROFILE_LABEL

SPAWN_DURATION = Histogram(
    "hubfleet_spawn_duration_seconds", "Time for a ProfileSpawner start, by profile and outcome",
    ["profile", "outcome"], buckets=[0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, float("inf")],
)
REFUSALS = Counter(
    "hubfleet_spawn_refusals", "Spawns ProfileSpawner refused, by reason and requested profile",
    ["reason", "profile"],
)


class _LiveCollector:
    """Computed at scrape time from state the hub already holds (no extra API calls, no blocking I/O)."""

    def __init__(self):
        self.spawner_class = None
        self.db = None
        self.user_groups = False

    def collect(self):
        running = GaugeMetricFamily("hubfleet_running_servers", "Live ProfileSpawner pods by profile",
                                    labels=["profile"])
        counts: dict[str, int] = {}
        for (kind, _ns), reflector in list(getattr(self.spawner_class, "reflectors", {}).items()):
            if kind != "pods":
                continue
            for pod in list(reflector.pods.values()):
                profile = ((pod.get("metadata") or {}).get("labels") or {}).get(PROFILE_LABEL)
                if profile and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    counts[profile] = counts.get(profile, 0) + 1
        for profile, n in sorted(counts.items()):
            running.add_metric([profile], n)
        yield running
        if not self.user_groups:
            return

        groups = GaugeMetricFamily("jupyterhub_user_group_info", "JupyterHub users and their groups",
                                   labels=["username", "usergroup"])
        for user, group in self._memberships():
            groups.add_metric([user, group], 1)
        yield groups

    def _memberships(self):
        if self.db is None:
            return []
        try:
            from jupyterhub import orm  # noqa: PLC0415

            return sorted((u.name, g.name) for g in self.db.query(orm.Group).all() for u in g.users)
        except Exception:  # a scrape must never fail the hub
            logging.getLogger("hubfleet.spawners").warning("metrics: cannot read group memberships", exc_info=True)
            return []


_COLLECTOR = _LiveCollector()
_registered = threading.Lock()
_done = False


def install(spawner_class, db=None, *, user_groups: bool = False) -> None:
    """Register the live collector once per process (idempotent); remember the hub's database session and whether
    to publish group memberships."""
    global _done
    with _registered:
        _COLLECTOR.spawner_class = spawner_class
        _COLLECTOR.user_groups = user_groups
        if db is not None:
            _COLLECTOR.db = db
        if not _done:
            REGISTRY.register(_COLLECTOR)
            _done = True
