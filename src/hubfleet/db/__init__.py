"""hubfleet's own tables in the hub's database, with their own SQLAlchemy engine (not JupyterHub's session).

- :class:`Database` (``engine.py``): an engine built from the hub's ``db_url`` with bounded connect, lock and
  statement timeouts and ``pool_pre_ping``; ``run(fn, write=...)`` runs ``fn(connection)`` in one transaction,
  ``await call(fn, ...)`` does the same on the database's own threads, bounded by its timeout, so the hub's event
  loop never waits on the database. :func:`shared` gives every part of one process the same :class:`Database`.
- :class:`Component` and :func:`migrate` (``schema.py``): each feature owns a component (a name and an ordered
  list of migration steps); ``hubfleet_schema`` records each component's version; migrating is idempotent and
  serialised between processes (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite).
- :func:`z2jh_db_url` (``url.py``): the database URL a z2jh hub uses, from the chart's values (for the CLI).

Supported: SQLite (also the hub's own ``jupyterhub.sqlite``) and PostgreSQL (psycopg2).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    "Component": ".schema",
    "Database": ".engine",
    "DatabaseUnavailable": ".engine",
    "insert_ignore": ".schema",
    "metadata": ".schema",
    "migrate": ".schema",
    "shared": ".engine",
    "table": ".schema",
    "z2jh_db_url": ".url",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
