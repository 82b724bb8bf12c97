"""Identity bindings: the (backend, subject) each hub user is bound to, kept in the hub's database.

The authenticator the hub runs owns one :class:`BindingStore` (``self.bindings``, base.py) on hubfleet's own engine
(``hubfleet.db``) for the hub's ``db_url``, so the bindings live as long as the hub's users do — also with
PostgreSQL, where the hub's working directory is empty at every start. Tables (component ``bindings``):

- ``hubfleet_bindings``: ``username`` (primary key), ``backend``, ``subject``, ``bound_at``;
- ``hubfleet_binding_imports``: which ``hubfleet-subjects.json`` contents (by SHA-256) were imported.

Binding is insert-or-fail on the primary key: of two first logins for one name at once (two backends, two hub
processes), exactly one binds and the other is checked against it. A JSON subject store from an earlier hubfleet is
imported once, at first use (names already bound in the database keep their binding; the file is left in place).
When the database cannot be reached, :class:`BindingStoreError` is raised and the login is refused (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from sqlalchemy import Column, DateTime, Index, Integer, Text, Unicode, select
from sqlalchemy.engine import Connection
from tornado import web

from . import policy
from .policy import Binding
from ..db import Component, Database, DatabaseUnavailable, insert_ignore, migrate, shared, table
from ..db.schema import utcnow
from ..db.url import HUB_DEFAULT_URL
from ..errors import HubfleetError

#: Shown on the login page when the database cannot be reached (nobody signs in without the binding check).
UNAVAILABLE = "Sign-in is unavailable right now: the hub's database cannot be reached. Try again in a minute."

bindings_table = table(
    "hubfleet_bindings",
    Column("username", Unicode(255), primary_key=True),
    Column("backend", Unicode(255), nullable=False),
    Column("subject", Text, nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False),
    Index("ix_hubfleet_bindings_backend_subject", "backend", "subject"),
)

imports_table = table(
    "hubfleet_binding_imports",
    Column("digest", Unicode(64), primary_key=True),
    Column("source", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)


def _create_tables(conn: Connection) -> None:
    bindings_table.create(conn, checkfirst=True)
    imports_table.create(conn, checkfirst=True)


BINDINGS = Component("bindings", (_create_tables,))


class BindingStoreError(HubfleetError):
    """The bindings cannot be read or written (database unreachable, or a broken file to import)."""


# ---- SQL, one transaction each (blocking; run through Database.run / .call) -----------------------------------------
def _get(conn: Connection, name: str) -> Binding | None:
    row = conn.execute(select(bindings_table.c.backend, bindings_table.c.subject)
                       .where(bindings_table.c.username == name)).first()
    return Binding(row.backend, row.subject) if row else None


def _name_of(conn: Connection, backend: str, subject: str) -> str | None:
    t = bindings_table.c
    row = conn.execute(select(t.username).where(t.backend == backend, t.subject == subject)
                       .order_by(t.bound_at).limit(1)).first()
    return row.username if row else None


def _bind(conn: Connection, name: str, backend: str, subject: str, previous: str) -> tuple[Binding | None, str]:
    """Bind ``name`` when it is unbound, or move its binding from ``previous`` to ``subject`` (same backend).
    Returns (the binding before this call, what was done: "bound", "upgraded" or "")."""
    bound = _get(conn, name)
    if bound is None and subject:
        if insert_ignore(conn, bindings_table, {"username": name, "backend": backend, "subject": subject,
                                                "bound_at": utcnow()}):
            return None, "bound"
        bound = _get(conn, name)  # another login bound it first: check against theirs
    if bound is not None and previous and subject and bound == Binding(backend, previous):
        t = bindings_table.c
        moved = conn.execute(bindings_table.update()
                             .where(t.username == name, t.backend == backend, t.subject == previous)
                             .values(subject=subject, bound_at=utcnow())).rowcount
        if moved == 1:
            return bound, "upgraded"
        bound = _get(conn, name)
    return bound, ""


def _unbind(conn: Connection, name: str) -> Binding | None:
    bound = _get(conn, name)
    if bound is not None:
        conn.execute(bindings_table.delete().where(bindings_table.c.username == name))
    return bound


def _all(conn: Connection) -> dict[str, Binding]:
    t = bindings_table.c
    rows = conn.execute(select(t.username, t.backend, t.subject).order_by(t.username))
    return {r.username: Binding(r.backend, r.subject) for r in rows}


def read_json_store(path: Path) -> dict[str, Binding]:
    """The bindings in a ``hubfleet-subjects.json`` written by an earlier hubfleet."""
    try:
        doc = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as e:
        raise BindingStoreError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}",
                                fix="restore it from a backup, or remove it if its bindings are not needed") from e
    users = doc.get("users", {}) if isinstance(doc, dict) else None
    if not isinstance(users, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("backend"), str) and isinstance(v.get("subject"), str)
        for v in users.values()
    ):
        raise BindingStoreError(f"{path}: expected {{\"users\": {{NAME: {{\"backend\": ..., \"subject\": ...}}}}}}")
    return {name: Binding(v["backend"], v["subject"]) for name, v in users.items()}


def _import(conn: Connection, source: str, digest: str, found: dict[str, Binding]) -> dict | None:
    if conn.execute(select(imports_table.c.digest).where(imports_table.c.digest == digest)).first():
        return None
    imported, kept = [], []
    for name, b in sorted(found.items()):
        row = {"username": name, "backend": b.backend, "subject": b.subject, "bound_at": utcnow()}
        (imported if b.subject and insert_ignore(conn, bindings_table, row) else kept).append(name)
    conn.execute(imports_table.insert().values(digest=digest, source=source, count=len(imported),
                                               imported_at=utcnow()))
    return {"imported": imported, "kept": kept}


# ---- the store ----------------------------------------------------------------------------------------------------
class BindingStore:
    """Checks and records bindings. Blocking methods (``get``, ``unbind``, ``all``, ``bind``) for the CLI; the
    hub awaits :meth:`check` and :meth:`lookup`, which run on the database's threads with its timeout."""

    def __init__(self, db: Database, *, import_file: str | os.PathLike | None = None,
                 log: logging.Logger | logging.LoggerAdapter | None = None):
        self.db = db
        self.import_file = Path(import_file) if import_file else None
        self.log = log or logging.getLogger("hubfleet.authenticators")
        self._prepared = False
        self._prepare_lock = threading.Lock()

    @classmethod
    def of(cls, authenticator) -> BindingStore:
        """The store of the authenticator the hub runs: its `db_url`, else the hub's own database (``db_url`` and
        ``db_kwargs`` of the JupyterHub application, the authenticator's parent). Opens no connection yet."""
        app = authenticator.parent
        url = authenticator.db_url or getattr(app, "db_url", "") or HUB_DEFAULT_URL
        kwargs = None if authenticator.db_url else getattr(app, "db_kwargs", None)
        try:
            db = shared(url, timeout=authenticator.db_timeout, engine_kwargs=kwargs)
        except HubfleetError as e:
            raise BindingStoreError(f"{type(authenticator).__name__}.db_url: {e}") from e
        path = authenticator.subject_store_file
        return cls(db, import_file=os.path.abspath(path) if path else None, log=authenticator.log)

    # -- blocking ----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create or migrate the tables and import the JSON store, once per process (blocking)."""
        if self._prepared:
            return
        with self._prepare_lock:
            if self._prepared:
                return
            migrate(self.db, BINDINGS, logger=self.log)
            if self.import_file is not None:
                self._import_json(self.import_file)
            self._prepared = True

    def _import_json(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            raise BindingStoreError(f"{path}: cannot be read: {e.strerror or e}") from e
        found = read_json_store(path)
        done = self.db.run(_import, str(path), hashlib.sha256(raw).hexdigest(), found, write=True)
        if done is None:
            self.log.debug("bindings: %s was imported before; not again", path)
            return
        for name in done["imported"]:
            self.log.info("bindings: imported user:%s -> %s %s from %s", name, found[name].backend,
                          found[name].subject, path)
        self.log.warning("bindings: imported %d of %d bindings from %s into the database %s (%d already bound "
                         "there were kept: %s); the file is left as it is and not imported again",
                         len(done["imported"]), len(found), path, self.db.display_url, len(done["kept"]),
                         ", ".join(done["kept"]) or "-")

    def _run(self, fn, *args, write: bool = False):
        try:
            self.prepare()
            return self.db.run(fn, *args, write=write)
        except DatabaseUnavailable as e:
            raise BindingStoreError(str(e)) from e

    def get(self, name: str) -> Binding | None:
        return self._run(_get, name)

    def bind(self, name: str, backend: str, subject: str, previous_subject: str = "") -> tuple[Binding | None, str]:
        """Bind atomically (see :func:`_bind`): ``(binding before, "bound" | "upgraded" | "")``."""
        return self._run(_bind, name, backend, subject, previous_subject, write=True)

    def unbind(self, name: str) -> Binding | None:
        return self._run(_unbind, name, write=True)

    def all(self) -> dict[str, Binding]:
        return self._run(_all)

    # -- for the hub's event loop ----------------------------------------------------------------------------------
    async def _call(self, func, *args):
        try:
            return await self.db.call_blocking(func, *args)
        except DatabaseUnavailable as e:
            raise BindingStoreError(str(e)) from e

    async def lookup(self, name: str) -> Binding | None:
        """``name``'s binding, or None. Raises :class:`BindingStoreError` when the database cannot tell."""
        return await self._call(self.get, name)

    async def name_of(self, backend: str, subject: str) -> str | None:
        """The hub user bound to ``(backend, subject)``, or None. Raises :class:`BindingStoreError` when the
        database cannot tell."""
        return await self._call(lambda: self._run(_name_of, backend, subject))

    async def check(self, name: str, backend: str, subject: str, *, login: bool = True,
                    previous_subject: str = "") -> bool:
        """Check ``name`` against its binding, and bind it when it has none — the one call per login.

        ``previous_subject``: the subject this backend gave the same account before (e.g. the LDAP DN, now that it
        gives ``entryUUID``); a binding to it is moved to ``subject``. At login a conflict raises HTTPError 403
        with the reason and an unreachable database HTTPError 503 (:data:`UNAVAILABLE`); at refresh
        (``login=False``) both return False (log the user out).
        """
        try:
            bound = await self._call(self.get, name)
            action = ""
            if bound is None or (previous_subject and bound == Binding(backend, previous_subject)):
                bound, action = await self._call(self.bind, name, backend, subject, previous_subject)
        except BindingStoreError as e:
            self.log.error("user:%s %s refused: bindings unusable: %s", name, "login" if login else "refresh", e)
            if not login:
                return False
            raise web.HTTPError(503, UNAVAILABLE) from e
        if action == "bound":
            self.log.info("user:%s bound to backend %s subject %s", name, backend, subject)
            return True
        if action == "upgraded":
            self.log.info("user:%s binding moved from backend %s subject %s to subject %s", name, backend,
                          previous_subject, subject)
            return True
        why = policy.binding_conflict(bound, backend, subject)
        if why is None:
            return True
        self.log.warning("user:%s %s refused: %s (bound: %s %s, offered: %s %s)", name,
                         "login" if login else "refresh", why, bound and bound.backend, bound and bound.subject,
                         backend, subject)
        if not login:
            return False
        raise web.HTTPError(
            403, f"Sign-in refused: {why}. If the account changed, ask a hub administrator to re-link "
                 f"'{name}' (hubfleet users unbind).")
