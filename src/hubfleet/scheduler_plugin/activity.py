"""Pure part of the hub activity source of the ``preempt`` verb: which hub server a pod is, what the hub's user list
says of each ready server's last activity, and when that knowledge is too old to act on.

A pod is matched to its hub server (``preemption.server_key``) by the annotations KubeSpawner writes, unescaped:
``hub.jupyter.org/username`` (falling back to hubfleet's ``hubfleet.io/username``) and ``hub.jupyter.org/servername``
(absent for the default server, ""). The label ``hub.jupyter.org/username`` is not used: it is an escaped slug. A
server's activity is the later of its ``last_activity`` and ``started`` (a server started a minute ago is active,
whatever its database row remembers from before), the user's ``last_activity`` when the server has neither. Only servers the hub reports
``ready`` and not ``pending`` count: a server still starting (or stopping) is never a victim.

Fail closed: the pod annotation ``hubfleet.io/last-activity`` wins when present; otherwise a server the hub does not
list, or a list older than ``max_age`` (3x the poll interval), or no list at all, is "activity unknown" - never a
victim.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from .preemption import ServerKey, VictimInfo, parse_time

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"


def servers_activity(users: object) -> dict[ServerKey, float]:
    """{(user, server): epoch seconds} of the ready servers in a list of JupyterHub user models. Entries that are not
    what the REST API documents are skipped (their servers stay "unknown")."""
    out: dict[ServerKey, float] = {}
    for user in users if isinstance(users, list) else []:
        if not isinstance(user, Mapping) or not isinstance(user.get("name"), str):
            continue
        servers = user.get("servers")
        for name, server in (servers.items() if isinstance(servers, Mapping) else ()):
            if not isinstance(server, Mapping) or server.get("ready") is not True or server.get("pending"):
                continue
            times = [t for t in (parse_time(server.get("last_activity")), parse_time(server.get("started")))
                     if t is not None]
            when = max(times) if times else parse_time(user.get("last_activity"))
            if when is not None:
                out[(user["name"], str(name))] = when
    return out


def parse_page(body: object) -> tuple[list, int | None]:
    """(users, next offset or None) of one ``GET /users`` answer: the paginated form (``{"items": [...],
    "_pagination": {"next": {"offset": N}}}``) or a plain list (a hub that ignores the pagination media type).
    Raises ValueError for anything else."""
    if isinstance(body, list):
        return body, None
    if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
        raise ValueError("expected a JupyterHub user list ({items, _pagination} or a list)")
    nxt = (body.get("_pagination") or {}).get("next") if isinstance(body.get("_pagination"), Mapping) else None
    offset = nxt.get("offset") if isinstance(nxt, Mapping) else None
    return body["items"], offset if isinstance(offset, int) and not isinstance(offset, bool) else None


@dataclass
class HubActivity:
    """The last user list read from the hub, and when (epoch seconds; None before the first success)."""
    max_age: float
    servers: dict[ServerKey, float] = field(default_factory=dict)
    fetched_at: float | None = None

    def age(self, now: float) -> float | None:
        return None if self.fetched_at is None else max(0.0, now - self.fetched_at)

    def fresh(self, now: float) -> bool:
        age = self.age(now)
        return age is not None and age <= self.max_age

    def update(self, servers: dict[ServerKey, float], now: float) -> None:
        self.servers, self.fetched_at = servers, now

    def last_activity(self, key: ServerKey | None, now: float) -> float | None:
        if key is None or not self.fresh(now):
            return None
        return self.servers.get(key)

    def resolve(self, victim: VictimInfo, now: float) -> VictimInfo:
        """`victim` with its last activity from the hub, unless its pod annotation already gave one (it wins)."""
        if victim.last_activity is not None:
            return victim
        return dataclasses.replace(victim, last_activity=self.last_activity(victim.server, now))


__all__ = ["HubActivity", "PAGINATION_MEDIA_TYPE", "parse_page", "servers_activity"]
