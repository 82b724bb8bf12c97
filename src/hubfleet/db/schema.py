"""hubfleet's tables and their migrations: one version per component in ``hubfleet_schema``.

A feature that keeps state in the hub's database defines its tables with :func:`table` (the name must start with
``hubfleet_``, so they never collide with JupyterHub's) and a :class:`Component`: a name and the ordered migration
steps, each a function of a SQLAlchemy ``Connection``. Version *n* of a component is "its first *n* steps have run".
A new release appends steps and never edits old ones; a step only adds (a table, a nullable column, an index), so
an older hubfleet still works on a newer schema (it logs a warning). Write steps that are safe to re-run
(``create(conn, checkfirst=True)``).

:func:`migrate` runs, per component, in one transaction that first takes an exclusive lock (a transaction-scoped
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so two hub processes starting at once apply each step
exactly once; the other waits, then sees the new version and does nothing.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import HubfleetError
from .engine import Database

log = logging.getLogger("hubfleet.db")

PREFIX = "hubfleet_"
metadata = MetaData()


def table(name: str, *columns, **kwargs) -> Table:
    """A hubfleet table (``name`` must start with ``hubfleet_``) in hubfleet's :data:`metadata`."""
    if not name.startswith(PREFIX):
        raise HubfleetError(f"table {name!r}: hubfleet's tables are named {PREFIX}*")
    return Table(name, metadata, *columns, **kwargs)


schema_versions = table(
    "hubfleet_schema",
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

_LOCK_KEY = zlib.crc32(b"hubfleet_schema")  # pg_advisory_xact_lock's key for migrations


@dataclass(frozen=True)
class Component:
    """A feature's tables: ``steps[i]`` brings the component from version ``i`` to ``i + 1``."""

    name: str
    steps: tuple[Callable[[Connection], None], ...]

    @property
    def version(self) -> int:
        return len(self.steps)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def insert_ignore(conn: Connection, tbl: Table, values: dict) -> bool:
    """Insert one row unless it conflicts with a unique key; True when this call inserted it. Atomic: of two
    concurrent inserts of the same key exactly one returns True."""
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return conn.execute(insert(tbl).values(**values).on_conflict_do_nothing()).rowcount == 1
    try:
        with conn.begin_nested():
            conn.execute(tbl.insert().values(**values))
        return True
    except IntegrityError:
        return False


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    # SQLite: Database.run(write=True) began with BEGIN IMMEDIATE, which holds the write lock already


def _migrate_one(conn: Connection, component: Component) -> tuple[int, int]:
    _lock(conn)
    schema_versions.create(conn, checkfirst=True)
    current = conn.execute(select(schema_versions.c.version)
                           .where(schema_versions.c.component == component.name)).scalar()
    current = current or 0
    if current > component.version:
        log.warning("database: hubfleet's %s tables are at version %d, newer than this hubfleet's %d; "
                    "using them as they are", component.name, current, component.version)
        return current, current
    for step in component.steps[current:]:
        step(conn)
    if current < component.version:
        values = {"version": component.version, "updated": utcnow()}
        if not conn.execute(schema_versions.update().where(schema_versions.c.component == component.name)
                            .values(**values)).rowcount:
            conn.execute(schema_versions.insert().values(component=component.name, **values))
    return current, component.version


def migrate(db: Database, *components: Component, logger=None) -> dict[str, tuple[int, int]]:
    """Bring each component's tables up to date (blocking); ``{name: (from, to)}`` for the components this call
    migrated. A component already migrated by this process is skipped."""
    logger = logger or log
    done = {}
    with db.lock:
        for component in components:
            if component.name in db.migrated:
                continue
            before, after = db.run(_migrate_one, component, write=True)
            if after != before:
                logger.info("database %s: hubfleet's %s tables migrated from version %d to %d", db.display_url,
                         component.name, before, after)
            db.migrated.add(component.name)
            done[component.name] = (before, after)
    return done
