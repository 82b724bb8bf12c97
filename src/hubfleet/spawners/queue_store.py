"""The spawn queue and the server usage records, in the hub's database (component ``queue``).

Tables:

- ``hubfleet_queue``: one row per waiting (or admitted, not yet started) spawn request: ``username``,
  ``server_name``, ``profile``, ``grp`` (the group its use is accounted to), ``user_options`` (JSON, the options it
  was queued with), ``joined_at``, ``state`` (``waiting`` or ``admitted``), ``admitted_at``. At most one row per
  user and profile (a unique key): joining twice keeps the first row and its place.
- ``hubfleet_usage``: one row per server start: ``username``, ``server_name``, ``profile``, ``groups`` (JSON),
  ``gpus``, ``cpu`` (cores requested), ``memory`` (bytes requested), ``started``, ``stopped`` (None: running).

Times are epoch seconds (floats), the same on SQLite and PostgreSQL. Every function here takes a SQLAlchemy
``Connection`` and runs inside the caller's transaction (``Database.run`` / ``await Database.call``); none of them
decides anything: the order of admission is :mod:`.queue_policy`'s.

:func:`usage` reports usage per key (``hubfleet usage``); :func:`records` lists the records of a window (the admin
page's usage charts and CSV).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, Text, Unicode, UniqueConstraint, delete, select,
                        update)
from sqlalchemy.engine import Connection

from ..db import Component, insert_ignore, table
from . import queue_policy

WAITING, ADMITTED = "waiting", "admitted"

queue_table = table(
    "hubfleet_queue",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", Unicode(255), nullable=False),
    Column("server_name", Unicode(255), nullable=False, default=""),
    Column("profile", Unicode(255), nullable=False),
    Column("grp", Unicode(255), nullable=False, default=""),
    Column("user_options", Text, nullable=False, default="{}"),
    Column("joined_at", Float, nullable=False),
    Column("state", Unicode(16), nullable=False, default=WAITING),
    Column("admitted_at", Float, nullable=True),
    UniqueConstraint("username", "profile", name="uq_hubfleet_queue_user_profile"),
)

usage_table = table(
    "hubfleet_usage",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", Unicode(255), nullable=False),
    Column("server_name", Unicode(255), nullable=False, default=""),
    Column("profile", Unicode(255), nullable=False, default=""),
    Column("groups", Text, nullable=False, default="[]"),
    Column("gpus", Float, nullable=False, default=0.0),
    Column("cpu", Float, nullable=False, default=0.0),
    Column("memory", BigInteger, nullable=False, default=0),
    Column("started", Float, nullable=False),
    Column("stopped", Float, nullable=True),
    Index("ix_hubfleet_usage_open", "username", "server_name", "stopped"),
    Index("ix_hubfleet_usage_started", "started"),
)


def _create_tables(conn: Connection) -> None:
    queue_table.create(conn, checkfirst=True)
    usage_table.create(conn, checkfirst=True)


QUEUE = Component("queue", (_create_tables,))


@dataclass(frozen=True)
class Entry:
    """One row of ``hubfleet_queue``."""

    id: int
    user: str
    server_name: str
    profile: str
    group: str
    user_options: dict
    joined_at: float
    state: str
    admitted_at: float | None

    def request(self) -> queue_policy.Request:
        return queue_policy.Request(self.user, self.profile, self.group, self.joined_at, self.id)


def _entry(row) -> Entry:
    try:
        options = json.loads(row.user_options or "{}")
    except ValueError:
        options = {}
    return Entry(row.id, row.username, row.server_name, row.profile, row.grp, options, row.joined_at, row.state,
                 row.admitted_at)


# ---- the queue ------------------------------------------------------------------------------------------------------
def join(conn: Connection, *, user: str, server_name: str, profile: str, group: str, user_options: dict,
         now: float) -> tuple[Entry, bool]:
    """Queue ``user``'s spawn of ``profile``; (the row holding the place, True when this call added it). Joining
    twice keeps the first row (and its options and place)."""
    added = insert_ignore(conn, queue_table, {
        "username": user, "server_name": server_name, "profile": profile, "grp": group,
        "user_options": json.dumps(user_options, sort_keys=True), "joined_at": now, "state": WAITING})
    row = conn.execute(select(queue_table).where(queue_table.c.username == user,
                                                 queue_table.c.profile == profile)).first()
    return _entry(row), added


def entries(conn: Connection, *, profile: str | None = None, user: str | None = None) -> list[Entry]:
    """Queue rows (of ``profile`` / of ``user``), oldest first."""
    q = select(queue_table).order_by(queue_table.c.joined_at, queue_table.c.id)
    if profile is not None:
        q = q.where(queue_table.c.profile == profile)
    if user is not None:
        q = q.where(queue_table.c.username == user)
    return [_entry(r) for r in conn.execute(q)]


def leave(conn: Connection, *, user: str, profile: str) -> bool:
    """Remove ``user``'s request for ``profile`` (waiting or admitted); True when there was one."""
    return conn.execute(delete(queue_table).where(queue_table.c.username == user,
                                                  queue_table.c.profile == profile)).rowcount > 0


def drop(conn: Connection, entry_id: int) -> bool:
    return conn.execute(delete(queue_table).where(queue_table.c.id == entry_id)).rowcount > 0


def claim(conn: Connection, entry_id: int, *, now: float) -> bool:
    """Admit a waiting request: True for exactly one caller (the row goes from ``waiting`` to ``admitted``)."""
    return conn.execute(update(queue_table).where(queue_table.c.id == entry_id, queue_table.c.state == WAITING)
                        .values(state=ADMITTED, admitted_at=now)).rowcount == 1


def unclaim(conn: Connection, entry_id: int) -> bool:
    """Put an admitted request back to waiting, in its place (its start could not be requested)."""
    return conn.execute(update(queue_table).where(queue_table.c.id == entry_id, queue_table.c.state == ADMITTED)
                        .values(state=WAITING, admitted_at=None)).rowcount == 1


# ---- usage records --------------------------------------------------------------------------------------------------
def record_start(conn: Connection, *, user: str, server_name: str, profile: str, groups, gpus: float, cpu: float,
                 memory: int, now: float) -> None:
    """A server of ``user`` started now (any open record of the same server is closed first)."""
    record_stop(conn, user=user, server_name=server_name, now=now)
    conn.execute(usage_table.insert().values(
        username=user, server_name=server_name, profile=profile, groups=json.dumps(sorted(groups)),
        gpus=float(gpus or 0), cpu=float(cpu or 0), memory=int(memory or 0), started=now, stopped=None))


def record_stop(conn: Connection, *, user: str, server_name: str, now: float) -> int:
    """Close the open records of ``user``'s server; how many were open."""
    return conn.execute(update(usage_table).where(usage_table.c.username == user,
                                                  usage_table.c.server_name == server_name,
                                                  usage_table.c.stopped.is_(None))
                        .values(stopped=now)).rowcount


def uses(conn: Connection, *, since: float, amount: str = "gpus", weights=None) -> list[queue_policy.Use]:
    """The records overlapping ``[since, now]`` as :class:`~.queue_policy.Use` (``amount``: ``gpus`` or ``cpu``;
    the group is :func:`~.queue_policy.accounting_group` of the record's groups)."""
    rows = conn.execute(select(usage_table).where((usage_table.c.stopped.is_(None))
                                                  | (usage_table.c.stopped >= since)))
    out = []
    for r in rows:
        groups = json.loads(r.groups or "[]")
        out.append(queue_policy.Use(r.username, queue_policy.accounting_group(groups=groups, weights=weights or {}),
                                    r.started, r.stopped, float(getattr(r, amount))))
    return out


@dataclass(frozen=True)
class UsageRecord:
    """One row of ``hubfleet_usage`` (times in epoch seconds; ``stopped`` None: running)."""

    user: str
    server_name: str
    profile: str
    groups: tuple[str, ...]
    gpus: float
    cpu: float
    started: float
    stopped: float | None


def records(conn: Connection, *, since: float, until: float, user: str | None = None) -> list[UsageRecord]:
    """The records overlapping ``[since, until]`` (of ``user`` only, when given), oldest first."""
    q = select(usage_table).where(usage_table.c.started <= until,
                                  (usage_table.c.stopped.is_(None)) | (usage_table.c.stopped >= since))
    if user is not None:
        q = q.where(usage_table.c.username == user)
    out = []
    for r in conn.execute(q.order_by(usage_table.c.started, usage_table.c.id)):
        try:
            groups = tuple(json.loads(r.groups or "[]"))
        except ValueError:
            groups = ()
        out.append(UsageRecord(r.username, r.server_name, r.profile, groups, float(r.gpus), float(r.cpu),
                               r.started, r.stopped))
    return out


BY = ("user", "group", "profile")


def usage(conn: Connection, *, since: float, by: str, now: float) -> list[dict]:
    """Usage within ``[since, now]`` per ``by`` (``user``, ``group`` — each of a record's groups, or ``(none)`` —
    or ``profile``): ``{"key", "servers", "hours", "gpu_hours", "cpu_hours"}``, largest GPU use first. A running
    server counts up to ``now``."""
    if by not in BY:
        raise ValueError(f"by: expected one of {', '.join(BY)}, got {by!r}")
    rows = conn.execute(select(usage_table).where(usage_table.c.started <= now,
                                                  (usage_table.c.stopped.is_(None)) | (usage_table.c.stopped >= since)))
    totals: dict[str, dict] = {}
    for r in rows:
        seconds = max(0.0, min(r.stopped if r.stopped is not None else now, now) - max(r.started, since))
        keys = {"user": [r.username], "profile": [r.profile]}.get(by) or (json.loads(r.groups or "[]") or ["(none)"])
        for key in keys:
            t = totals.setdefault(key, {"key": key, "servers": 0, "hours": 0.0, "gpu_hours": 0.0, "cpu_hours": 0.0})
            t["servers"] += 1
            t["hours"] += seconds / 3600
            t["gpu_hours"] += seconds * r.gpus / 3600
            t["cpu_hours"] += seconds * r.cpu / 3600
    return sorted(totals.values(), key=lambda t: (-t["gpu_hours"], -t["hours"], t["key"]))


def session_lengths(conn: Connection, *, profile: str, limit: int = 50) -> list[float]:
    """The lengths (seconds) of ``profile``'s last ``limit`` finished sessions."""
    rows = conn.execute(select(usage_table.c.started, usage_table.c.stopped)
                        .where(usage_table.c.profile == profile, usage_table.c.stopped.is_not(None))
                        .order_by(usage_table.c.stopped.desc()).limit(limit))
    return [r.stopped - r.started for r in rows]


def running(conn: Connection, *, profile: str) -> list[tuple[str, str, float]]:
    """(user, server name, started) of ``profile``'s open records."""
    rows = conn.execute(select(usage_table.c.username, usage_table.c.server_name, usage_table.c.started)
                        .where(usage_table.c.profile == profile, usage_table.c.stopped.is_(None)))
    return [(r.username, r.server_name, r.started) for r in rows]


def uses_of(conn: Connection, *, since: float, amount: str = "gpus", user: str | None = None,
            group: str | None = None, profile: str | None = None) -> list[queue_policy.Use]:
    """The records overlapping ``[since, now]`` of ``user`` / of members of ``group`` / of ``profile`` (when given),
    as :class:`~.queue_policy.Use` of ``amount`` (``gpus`` or ``cpu``)."""
    q = select(usage_table).where((usage_table.c.stopped.is_(None)) | (usage_table.c.stopped >= since))
    if user is not None:
        q = q.where(usage_table.c.username == user)
    if profile is not None:
        q = q.where(usage_table.c.profile == profile)
    out = []
    for r in conn.execute(q):
        groups = json.loads(r.groups or "[]")
        if group is not None and group not in groups:
            continue
        out.append(queue_policy.Use(r.username, group or "", r.started, r.stopped, float(getattr(r, amount))))
    return out
