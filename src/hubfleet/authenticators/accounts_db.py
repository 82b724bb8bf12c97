"""Self-service local accounts in the hub's database: accounts, TOTP secrets and lockout counters.

Tables (component ``local_accounts``, on hubfleet's own engine, ``hubfleet.db``, beside the identity bindings):

- ``hubfleet_local_accounts``: ``username`` (primary key), ``password_hash`` (bcrypt), ``email``, ``status``
  (``pending``: waits for an admin; ``confirming``: waits for the e-mailed confirmation link; ``approved``),
  ``groups`` (a JSON list), ``admin``, when and by whom it was decided, the SHA-256 of the confirmation token and
  its expiry, and where the account came from (``signup``, ``cli``, ``nativeauthenticator``);
- ``hubfleet_local_totp``: ``username``, the base32 ``secret``, ``enabled`` (False while being set up) and the
  last time step used (a code is good for one sign-in);
- ``hubfleet_login_failures``: ``key`` (``user:<name>`` or ``addr:<client address>``), the failures counted, the
  last one and the end of the lock (epoch seconds).

A NativeAuthenticator site's ``users_info`` table in the same database is imported when the tables are created
(its bcrypt hashes, approval, e-mail and 2FA secrets as they are; names already present are kept), so its users
sign in unchanged. The functions below take a SQLAlchemy ``Connection`` and run in one transaction each
(:meth:`AccountStore.run` / :meth:`AccountStore.call`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, Integer, Text, Unicode, inspect, select, text
from sqlalchemy.engine import Connection

from . import accounts as rules
from ..db import Component, Database, DatabaseUnavailable, insert_ignore, migrate, table
from ..db.schema import utcnow

log = logging.getLogger("hubfleet.authenticators")

PENDING, CONFIRMING, APPROVED = "pending", "confirming", "approved"

accounts_table = table(
    "hubfleet_local_accounts",
    Column("username", Unicode(255), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("email", Unicode(254), nullable=True),
    Column("status", Unicode(16), nullable=False),
    Column("groups", Text, nullable=False, default="[]"),
    Column("admin", Boolean, nullable=False, default=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("decided", DateTime(timezone=True), nullable=True),
    Column("decided_by", Unicode(255), nullable=True),
    Column("confirm_digest", Unicode(64), nullable=True),
    Column("confirm_expires", DateTime(timezone=True), nullable=True),
    Column("source", Unicode(32), nullable=False),
)

totp_table = table(
    "hubfleet_local_totp",
    Column("username", Unicode(255), primary_key=True),
    Column("secret", Unicode(128), nullable=False),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("last_step", BigInteger, nullable=False, default=-1),
)

failures_table = table(
    "hubfleet_login_failures",
    Column("key", Unicode(320), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last", Float, nullable=False),
    Column("until", Float, nullable=False),
)


def _create_tables(conn: Connection) -> None:
    for t in (accounts_table, totp_table, failures_table):
        t.create(conn, checkfirst=True)


def _import_nativeauthenticator(conn: Connection) -> None:
    """NativeAuthenticator's ``users_info`` (if this database has one) into hubfleet's tables."""
    if not inspect(conn).has_table("users_info"):
        return
    rows = conn.execute(text("SELECT username, password, is_authorized, email, has_2fa, otp_secret "
                             "FROM users_info")).fetchall()
    imported = 0
    for r in rows:
        pw = bytes(r.password).decode("ascii", "replace") if not isinstance(r.password, str) else r.password
        if not r.username or not pw.startswith(("$2a$", "$2b$", "$2y$")):
            log.warning("nativeauthenticator import: users_info row %r has no bcrypt hash; skipped", r.username)
            continue
        values = {"username": r.username, "password_hash": pw, "email": r.email or None,
                  "status": APPROVED if r.is_authorized else PENDING, "groups": "[]", "admin": False,
                  "created": utcnow(), "decided": utcnow() if r.is_authorized else None,
                  "decided_by": "nativeauthenticator" if r.is_authorized else None, "source": "nativeauthenticator"}
        if insert_ignore(conn, accounts_table, values):
            imported += 1
            if r.has_2fa and r.otp_secret:
                insert_ignore(conn, totp_table, {"username": r.username, "secret": r.otp_secret, "enabled": True,
                                                 "last_step": -1})
    log.warning("nativeauthenticator import: %d of %d accounts from users_info (the table is left as it is)",
                imported, len(rows))


LOCAL_ACCOUNTS = Component("local_accounts", (_create_tables, _import_nativeauthenticator))


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    email: str | None = None
    status: str = PENDING
    groups: tuple[str, ...] = ()
    admin: bool = False
    created: datetime | None = None
    source: str = ""
    totp: bool = False  # a second factor is set up
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def approved(self) -> bool:
        return self.status == APPROVED


def _account(row, totp: bool) -> Account:
    return Account(row.username, row.password_hash, row.email, row.status, tuple(json.loads(row.groups or "[]")),
                   bool(row.admin), row.created, row.source, totp)


# ---- accounts (each a function of one transaction) ------------------------------------------------------------------
def get_account(conn: Connection, name: str) -> Account | None:
    row = conn.execute(select(accounts_table).where(accounts_table.c.username == name)).first()
    if row is None:
        return None
    t = totp_table.c
    enabled = conn.execute(select(t.enabled).where(t.username == name)).scalar()
    return _account(row, bool(enabled))


def list_accounts(conn: Connection, status: str | None = None) -> list[Account]:
    q = select(accounts_table).order_by(accounts_table.c.created, accounts_table.c.username)
    if status:
        q = q.where(accounts_table.c.status == status)
    t = totp_table.c
    with_totp = {r.username for r in conn.execute(select(t.username).where(t.enabled.is_(True)))}
    return [_account(r, r.username in with_totp) for r in conn.execute(q)]


def create_account(conn: Connection, name: str, password_hash: str, *, email: str | None, status: str,
                   source: str, groups=(), admin: bool = False, confirm_token: str = "",
                   confirm_seconds: float = 0) -> bool:
    """Insert a new account; False (nothing stored) when the name is taken."""
    values = {"username": name, "password_hash": password_hash, "email": email, "status": status,
              "groups": json.dumps(sorted(set(groups))), "admin": admin, "created": utcnow(), "source": source}
    if status == APPROVED:
        values.update(decided=utcnow(), decided_by=source)
    if confirm_token:
        values.update(confirm_digest=_digest(confirm_token),
                      confirm_expires=utcnow() + timedelta(seconds=confirm_seconds))
    return insert_ignore(conn, accounts_table, values)


def decide(conn: Connection, name: str, approve: bool, by: str) -> Account | None:
    """Approve a waiting account, or reject it (the row is deleted); the account before, or None."""
    acct = get_account(conn, name)
    if acct is None:
        return None
    if approve:
        conn.execute(accounts_table.update().where(accounts_table.c.username == name)
                     .values(status=APPROVED, decided=utcnow(), decided_by=by, confirm_digest=None,
                             confirm_expires=None))
    else:
        delete_account(conn, name)
    return acct


def delete_account(conn: Connection, name: str) -> bool:
    conn.execute(totp_table.delete().where(totp_table.c.username == name))
    return conn.execute(accounts_table.delete().where(accounts_table.c.username == name)).rowcount == 1


def set_password(conn: Connection, name: str, password_hash: str) -> bool:
    return conn.execute(accounts_table.update().where(accounts_table.c.username == name)
                        .values(password_hash=password_hash)).rowcount == 1


def set_groups(conn: Connection, name: str, groups, admin: bool) -> bool:
    return conn.execute(accounts_table.update().where(accounts_table.c.username == name)
                        .values(groups=json.dumps(sorted(set(groups))), admin=admin)).rowcount == 1


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def confirming(conn: Connection, token: str) -> str | None:
    """The name of the account waiting for this confirmation token, if it has not expired; else None."""
    a = accounts_table.c
    row = conn.execute(select(a.username, a.confirm_expires).where(a.confirm_digest == _digest(token),
                                                                   a.status == CONFIRMING)).first()
    if row is None or row.confirm_expires is None:
        return None
    expires = row.confirm_expires if row.confirm_expires.tzinfo else row.confirm_expires.replace(
        tzinfo=utcnow().tzinfo)  # SQLite gives naive datetimes back
    return row.username if expires >= utcnow() else None


def confirm(conn: Connection, token: str) -> Account | None:
    """Approve the account waiting for this confirmation token (if it has not expired); the account, or None."""
    name = confirming(conn, token)
    return decide(conn, name, True, "e-mail confirmation") if name else None


# ---- TOTP ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Totp:
    secret: str
    enabled: bool
    last_step: int


def get_totp(conn: Connection, name: str) -> Totp | None:
    t = totp_table.c
    row = conn.execute(select(t.secret, t.enabled, t.last_step).where(t.username == name)).first()
    return Totp(row.secret, bool(row.enabled), int(row.last_step)) if row else None


def start_totp(conn: Connection, name: str, secret: str) -> None:
    """Store a new secret, not enabled yet (set-up replaces a pending one; an enabled one stays until confirmed)."""
    current = get_totp(conn, name)
    if current is not None and current.enabled:
        return
    conn.execute(totp_table.delete().where(totp_table.c.username == name))
    conn.execute(totp_table.insert().values(username=name, secret=secret, enabled=False, last_step=-1))


def use_totp(conn: Connection, name: str, code: str, now: float, *, enable: bool = False) -> bool:
    """Check ``code`` against ``name``'s secret (the pending one when ``enable``) and record its step, so the same
    code does not work twice; with ``enable`` a good code turns the second factor on."""
    current = get_totp(conn, name)
    if current is None or current.enabled == enable:
        return False
    step = rules.totp_step(current.secret, code, now, after=current.last_step)
    if step is None:
        return False
    t = totp_table.c
    done = conn.execute(totp_table.update().where(t.username == name, t.last_step == current.last_step)
                        .values(last_step=step, enabled=True)).rowcount
    return done == 1  # 0: another sign-in used a code at the same moment


def remove_totp(conn: Connection, name: str) -> bool:
    return conn.execute(totp_table.delete().where(totp_table.c.username == name)).rowcount == 1


# ---- lockout -------------------------------------------------------------------------------------------------------
def _failures(conn: Connection, key: str) -> rules.Failures | None:
    f = failures_table.c
    row = conn.execute(select(f.count, f.last, f.until).where(f.key == key)).first()
    return rules.Failures(row.count, row.last, row.until) if row else None


def locked_for(conn: Connection, keys, now: float) -> float:
    """The longest lock left on any of ``keys`` (seconds; 0 when none is locked)."""
    return max((rules.locked_for(_failures(conn, k), now) for k in keys), default=0.0)


def record_failure(conn: Connection, limits: dict[str, int], now: float, seconds: float) -> float:
    """Count one failed sign-in for each key (``{key: allowed failures}``); the longest lock it caused."""
    locked = 0.0
    f = failures_table.c
    conn.execute(failures_table.delete().where(f.last < now - seconds, f.until < now))  # forgotten
    for key, allowed in limits.items():
        before = _failures(conn, key)
        after = rules.after_failure(before, now, allowed=allowed, seconds=seconds)
        values = {"count": after.count, "last": after.last, "until": after.until}
        if before is None:
            if not insert_ignore(conn, failures_table, {"key": key, **values}):
                conn.execute(failures_table.update().where(f.key == key).values(**values))
        else:
            conn.execute(failures_table.update().where(f.key == key).values(**values))
        locked = max(locked, rules.locked_for(after, now))
    return locked


def clear_failures(conn: Connection, keys) -> None:
    conn.execute(failures_table.delete().where(failures_table.c.key.in_(list(keys))))


# ---- the store -------------------------------------------------------------------------------------------------------
class AccountStore:
    """The functions above on one :class:`~hubfleet.db.Database`: :meth:`run` (blocking, for the CLI) and
    :meth:`call` (on the database's threads, bounded by its timeout, for the hub). Both create or migrate the
    tables first (once per process) and raise :class:`~hubfleet.db.DatabaseUnavailable` when the database
    cannot answer."""

    def __init__(self, db: Database, logger=None):
        self.db = db
        self.log = logger or log
        self._prepared = False
        self._lock = threading.Lock()

    def prepare(self) -> None:
        if self._prepared:
            return
        with self._lock:
            if not self._prepared:
                migrate(self.db, LOCAL_ACCOUNTS, logger=self.log)
                self._prepared = True

    def run(self, fn, *args, write: bool = False):
        self.prepare()
        return self.db.run(fn, *args, write=write)

    async def call(self, fn, *args, write: bool = False):
        if not self._prepared:
            await self.db.call_blocking(self.prepare)
        return await self.db.call(fn, *args, write=write)


__all__ = ["APPROVED", "CONFIRMING", "PENDING", "Account", "AccountStore", "DatabaseUnavailable", "LOCAL_ACCOUNTS",
           "Totp"]
