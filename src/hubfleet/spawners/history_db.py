"""How long each profile's spawns took, kept in the hub's database, for "usually starts in ..." on the spawn page.

Table ``hubfleet_spawn_durations`` (component ``spawn_history``): ``id``, ``profile``, ``seconds``, ``at`` (UTC).
Only successful spawns are recorded; the last :data:`KEEP` per profile are kept (older rows are deleted by the
insert that goes past it), so the table stays small and the percentiles follow the cluster as it is now.

Why the database and not the ``hubfleet_spawn_duration_seconds`` histogram: the histogram lives in one hub
process and starts empty at every restart, and its buckets only bound a percentile (``between 30 and 60 s``);
reading it back would make the hub depend on Prometheus. The database survives restarts (also with PostgreSQL and
no hub volume), is shared by every hub process, and holds the durations themselves.

:func:`record_duration` and :func:`read_durations` take a ``Connection`` (run them with
:meth:`hubfleet.db.Database.call`, never on the hub's event loop).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, Unicode, delete, select
from sqlalchemy.engine import Connection

from ..db import Component, table
from ..db.schema import utcnow

KEEP = 200

durations_table = table(
    "hubfleet_spawn_durations",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("profile", Unicode(255), nullable=False),
    Column("seconds", Float, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_hubfleet_spawn_durations_profile_id", "profile", "id"),
)


def _create(conn: Connection) -> None:
    durations_table.create(conn, checkfirst=True)


COMPONENT = Component("spawn_history", (_create,))


def record_duration(conn: Connection, profile: str, seconds: float, *, keep: int = KEEP) -> None:
    """One successful spawn of ``profile`` took ``seconds``; keep the profile's last ``keep`` rows."""
    conn.execute(durations_table.insert().values(profile=profile, seconds=float(seconds), at=utcnow()))
    cutoff = conn.execute(select(durations_table.c.id).where(durations_table.c.profile == profile)
                          .order_by(durations_table.c.id.desc()).offset(keep).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(delete(durations_table).where(durations_table.c.profile == profile,
                                                   durations_table.c.id <= cutoff))


def read_durations(conn: Connection, profile: str, *, limit: int = KEEP) -> list[float]:
    """The profile's last ``limit`` spawn durations (seconds), newest first."""
    rows = conn.execute(select(durations_table.c.seconds).where(durations_table.c.profile == profile)
                        .order_by(durations_table.c.id.desc()).limit(limit))
    return [r[0] for r in rows]
