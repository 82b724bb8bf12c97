"""Saved failures of spawns: a failed pod's last events and its containers' last log lines, kept in the hub's
database after the pod is deleted, for the user and the admins to read (the admin page shows them).

Table ``hubfleet_spawn_failures`` (component ``spawn_failures``): ``id``, ``user``, ``server`` (``""`` for the
default server), ``profile``, ``pod``, ``at`` (UTC), ``reason`` (one sentence), ``events`` (JSON: a list of
``{"type", "reason", "message", "count", "last"}``), ``logs`` (JSON: ``{container: [line, ...]}``).

- :func:`bound_failure` (pure) caps what is kept: at most ``max_events`` events and ``max_lines`` lines per
  container, each line cut to ``max_line_chars``, text that is not UTF-8 decoded with replacement characters;
- :func:`record_failure` (a ``Connection`` writer, for :meth:`hubfleet.db.Database.call`) inserts one row;
- :func:`read_failures` lists rows, newest first, for one user (and server) or all;
- :func:`save_failure` / :func:`load_failures`: the same, awaited on the database's own threads (never on the
  hub's event loop).

ProfileSpawner records one in ``stop()``, before the failed pod is deleted
(:meth:`.progress.SpawnProgress.keep_failure`); another spawner may call::

    db = hubfleet.db.shared(hub_db_url)
    await save_failure(db, user=..., server=..., profile=..., pod=..., reason=..., events=..., logs=...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Column, DateTime, Index, Integer, Text, Unicode, select
from sqlalchemy.engine import Connection

from ..db import Component, Database, migrate, table
from ..db.schema import utcnow

MAX_EVENTS = 50
MAX_LINES = 200
MAX_LINE_CHARS = 2000

failures_table = table(
    "hubfleet_spawn_failures",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", Unicode(255), nullable=False),
    Column("server", Unicode(255), nullable=False, default=""),
    Column("profile", Unicode(255), nullable=False, default=""),
    Column("pod", Unicode(255), nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("events", Text, nullable=False, default="[]"),
    Column("logs", Text, nullable=False, default="{}"),
    Index("ix_hubfleet_spawn_failures_user_at", "user", "at"),
)


def _create(conn: Connection) -> None:
    failures_table.create(conn, checkfirst=True)


COMPONENT = Component("spawn_failures", (_create,))


@dataclass(frozen=True)
class Failure:
    user: str
    server: str
    profile: str
    pod: str
    at: datetime
    reason: str
    events: list = field(default_factory=list)
    logs: dict = field(default_factory=dict)


def _text(value, limit: int) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def bound_failure(events, logs, *, max_events: int = MAX_EVENTS, max_lines: int = MAX_LINES,
                  max_line_chars: int = MAX_LINE_CHARS) -> tuple[list[dict], dict[str, list[str]]]:
    """``(events, logs)`` cut to size: the last ``max_events`` events, each container's last ``max_lines`` lines.
    ``logs`` maps a container to its log as text, bytes or a list of lines."""
    kept_events = []
    for ev in list(events or [])[-max_events:] if max_events > 0 else []:
        ev = ev if isinstance(ev, dict) else {"message": ev}
        kept_events.append({k: _text(ev.get(k), max_line_chars) for k in ("type", "reason", "message", "last")}
                           | {"count": int(ev.get("count") or 1)})
    kept_logs: dict[str, list[str]] = {}
    for container, text in (logs or {}).items():
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        lines = text.splitlines() if isinstance(text, str) else [_text(x, max_line_chars) for x in text]
        kept_logs[_text(container, 253)] = [_text(line, max_line_chars) for line in lines[-max_lines:]] \
            if max_lines > 0 else []
    return kept_events, kept_logs


def record_failure(conn: Connection, *, user: str, server: str = "", profile: str = "", pod: str = "",
                   reason: str = "", events=(), logs=None, at: datetime | None = None, **bounds) -> None:
    """Insert one saved failure (bounded by :func:`bound_failure`); run it with ``Database.call(..., write=True)``
    after :func:`migrate_failures`."""
    events, logs = bound_failure(events, logs, **bounds)
    conn.execute(failures_table.insert().values(
        user=user, server=server or "", profile=profile or "", pod=pod or "", at=at or utcnow(),
        reason=_text(reason, MAX_LINE_CHARS), events=json.dumps(events), logs=json.dumps(logs)))


def read_failures(conn: Connection, *, user: str | None = None, server: str | None = None,
                  limit: int = 20) -> list[Failure]:
    """Saved failures, newest first; ``user=None``: everyone's."""
    q = select(failures_table).order_by(failures_table.c.at.desc(), failures_table.c.id.desc()).limit(limit)
    if user is not None:
        q = q.where(failures_table.c.user == user)
    if server is not None:
        q = q.where(failures_table.c.server == server)
    out = []
    for row in conn.execute(q).mappings():
        try:
            events, logs = json.loads(row["events"] or "[]"), json.loads(row["logs"] or "{}")
        except ValueError:
            events, logs = [], {}
        out.append(Failure(row["user"], row["server"], row["profile"], row["pod"], row["at"], row["reason"],
                           events, logs))
    return out


async def migrate_failures(db: Database) -> None:
    await db.call_blocking(migrate, db, COMPONENT)


async def save_failure(db: Database, **kwargs) -> None:
    """Migrate (once per process) and :func:`record_failure`, on the database's threads."""
    await migrate_failures(db)
    await db.call(lambda conn: record_failure(conn, **kwargs), write=True)


async def load_failures(db: Database, **kwargs) -> list[Failure]:
    await migrate_failures(db)
    return await db.call(lambda conn: read_failures(conn, **kwargs))


__all__ = ["COMPONENT", "Failure", "bound_failure", "failures_table", "load_failures", "migrate_failures",
           "read_failures", "record_failure", "save_failure"]
