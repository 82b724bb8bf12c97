"""Usage: server-hours and GPU-hours per user, group or profile over a window.

A :class:`UsageSource` gives the intervals a server ran (``start``, ``end`` or None while it runs, its user, groups,
profile and GPUs). The page asks its source for the window and aggregates with :func:`aggregate` (pure).

The page's source is the usage records ProfileSpawner keeps in the hub's database (table ``hubfleet_usage``, the
records ``hubfleet usage`` and the budgets read too): :func:`from_records` turns them into intervals, stopped servers
included. Only when the page has no database does it fall back to :class:`LiveUsageSource`, which knows the servers
running now (from the hub's server models and their pods), so a window counts the part of each running server's
life inside it and stopped servers are not counted (the page says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Protocol

BY = ("user", "group", "profile")


@dataclass(frozen=True)
class UsageInterval:
    user: str
    server: str
    profile: str
    groups: tuple[str, ...]
    gpus: float
    start: datetime
    end: datetime | None  # None: still running


class UsageSource(Protocol):
    durable: bool  # False: only what runs now is known (the page says so)

    async def intervals(self, start: datetime, end: datetime, *, user: str | None = None) -> list[UsageInterval]:
        """Every interval that overlaps ``[start, end)`` (of ``user`` only, when given)."""


class LiveUsageSource:
    """Intervals of the servers running now: ``servers(user)`` returns their :class:`UsageInterval` objects (of
    every user when ``user`` is None)."""

    durable = False

    def __init__(self, servers):
        self._servers = servers

    async def intervals(self, start: datetime, end: datetime, *, user: str | None = None) -> list[UsageInterval]:
        return [i for i in await self._servers(user) if i.start < end and (i.end is None or i.end > start)]


def from_records(records) -> list[UsageInterval]:
    """Intervals from the spawner's usage records (:class:`hubfleet.spawners.queue_store.UsageRecord`: epoch
    seconds, ``stopped`` None while running)."""
    def at(t: float) -> datetime:
        return datetime.fromtimestamp(t, timezone.utc)

    return [UsageInterval(r.user, r.server_name, r.profile, tuple(r.groups), r.gpus, at(r.started),
                          None if r.stopped is None else at(r.stopped)) for r in records]


@dataclass
class Totals:
    server_hours: float = 0.0
    gpu_hours: float = 0.0


def overlap_hours(interval: UsageInterval, start: datetime, end: datetime, now: datetime) -> float:
    a = max(interval.start, start)
    b = min(interval.end or now, end, now)
    return max(0.0, (b - a).total_seconds() / 3600)


def aggregate(intervals: Iterable[UsageInterval], *, start: datetime, end: datetime, now: datetime,
              by: str) -> dict[str, Totals]:
    """``{key: Totals}`` sorted by server-hours (largest first). ``by="group"`` counts a server once in each of its
    user's groups (a user in no group counts under ``(no group)``)."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}, not {by!r}")
    totals: dict[str, Totals] = {}
    for i in intervals:
        hours = overlap_hours(i, start, end, now)
        if hours <= 0:
            continue
        keys = {"user": (i.user,), "profile": (i.profile or "(none)",),
                "group": i.groups or ("(no group)",)}[by]
        for key in keys:
            t = totals.setdefault(key, Totals())
            t.server_hours += hours
            t.gpu_hours += hours * i.gpus
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1].server_hours, kv[0])))
