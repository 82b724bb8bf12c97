"""A :class:`Database`: hubfleet's own engine on the hub's database, every call bounded in time.

Blocking SQLAlchemy calls run on the database's own small thread pool (:meth:`Database.call`), never on the hub's
event loop; connecting, waiting for a lock and each statement are bounded by ``timeout`` (psycopg2
``connect_timeout``, PostgreSQL ``statement_timeout``/``lock_timeout`` set per transaction with ``SET LOCAL``,
SQLite's busy timeout), and the awaiting coroutine gives up after ``timeout`` too. Every SQLAlchemy error becomes
:class:`DatabaseUnavailable`, so a caller has one error to fail closed on.

On SQLite, a transaction opened with ``write=True`` starts with ``BEGIN IMMEDIATE`` (it takes the write lock
first, so a read-then-insert cannot interleave with another process's), other transactions with a plain
``BEGIN``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..errors import HubfleetError, explain

T = TypeVar("T")


class DatabaseUnavailable(HubfleetError):
    """The database could not be reached, did not answer in time, or refused a statement."""


def _engine(url: str, timeout: float, engine_kwargs: dict | None) -> Engine:
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise DatabaseUnavailable(f"{url!r} is not a database URL: {e}",
                                  fix="write it as JupyterHub.db_url takes it, e.g. "
                                      "postgresql+psycopg2://user@host:5432/jupyterhub") from e
    kwargs = dict(engine_kwargs or {})
    connect_args = dict(kwargs.pop("connect_args", None) or {})
    backend = u.get_backend_name()
    memory = backend == "sqlite" and u.database in (None, "", ":memory:")
    if backend == "sqlite":
        connect_args.setdefault("timeout", timeout)  # how long a statement waits for another writer's lock
        connect_args.setdefault("check_same_thread", False)  # connections move between the pool's threads
        if memory:
            kwargs.setdefault("poolclass", StaticPool)  # one in-memory database for the whole process
    elif backend == "postgresql":
        connect_args.setdefault("connect_timeout", max(2, math.ceil(timeout)))  # libpq's minimum is 2 s
    kwargs.setdefault("pool_pre_ping", True)
    if not memory:
        kwargs.setdefault("pool_timeout", timeout)
    engine = create_engine(u, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # the "begin" listener below starts every transaction

        @event.listens_for(engine, "begin")
        def _begin(conn):
            write = conn.get_execution_options().get("hubfleet_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
    elif backend == "postgresql":
        ms = int(timeout * 1000)

        @event.listens_for(engine, "begin")
        def _bounded(conn):  # SET LOCAL, not startup options: also works behind PgBouncer's transaction pooling
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}")
    return engine


class Database:
    """One engine on one database URL, its thread pool, and the components migrated in this process."""

    def __init__(self, url: str, *, timeout: float = 5.0, engine_kwargs: dict | None = None, threads: int = 4):
        if timeout <= 0:
            raise DatabaseUnavailable(f"the database timeout must be positive, not {timeout}")
        self.url = url
        self.timeout = timeout
        self.engine = _engine(url, timeout, engine_kwargs)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="hubfleet-db")
        self.migrated: set[str] = set()  # components brought up to date by this process (schema.migrate)
        self.lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs and messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def run(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        """``fn(connection, *args)`` in one transaction (committed when it returns); blocking."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(hubfleet_write=True)
                with conn.begin():
                    return fn(conn, *args)
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"database {self.display_url}: {explain(e).splitlines()[0]}") from e

    async def call(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        """:meth:`run` on the database's threads; :class:`DatabaseUnavailable` after ``timeout`` seconds."""
        return await self.call_blocking(functools.partial(self.run, fn, *args, write=write))

    async def call_blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Any blocking ``func(*args)`` that talks to this database (e.g. :func:`~.schema.migrate`), on the
        database's threads; :class:`DatabaseUnavailable` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, func, *args)
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError as e:
            raise DatabaseUnavailable(f"database {self.display_url}: no answer within {self.timeout}s") from e

    def dispose(self) -> None:
        self.executor.shutdown(wait=False)
        self.engine.dispose()


_shared: dict[tuple, Database] = {}
_shared_lock = threading.Lock()


def shared(url: str, *, timeout: float = 5.0, engine_kwargs: dict | None = None) -> Database:
    """The process's one :class:`Database` for ``url`` (and these options): created on first use, then reused by
    every part of the hub (authenticator, spawner, services)."""
    key = (url, timeout, repr(engine_kwargs or {}))
    with _shared_lock:
        db = _shared.get(key)
        if db is None:
            db = _shared[key] = Database(url, timeout=timeout, engine_kwargs=engine_kwargs)
        return db


__all__ = ["Connection", "Database", "DatabaseUnavailable", "shared"]
