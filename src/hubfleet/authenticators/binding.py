"""The subject store: which (backend, subject) each hub user is bound to, persisted across hub restarts.

One small JSON file (mode 0600, replaced atomically) owned by the authenticator, in the hub's data directory by
default (``hubfleet-subjects.json`` next to ``jupyterhub.sqlite``; in z2jh that is ``/srv/jupyterhub`` on the hub's
volume). It is the same with and without ``enable_auth_state`` (auth_state is lost when an admin deletes a user and
is not readable before the user object exists), and ``hubfleet users unbind NAME --store F`` edits it while the hub
runs: the hub re-reads the file when its modification time or size changes.

Format::

    {"version": 1, "users": {"alice": {"backend": "ldap", "subject": "uid=alice,ou=people,dc=example,dc=org"}}}

Every read and write is blocking file I/O: call them from the authenticator's executor.
:class:`IdentityBinding` is the part of the authenticator base (``base.py``) that checks and records bindings.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

from tornado import web
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from . import policy
from .policy import Binding
from ..errors import HubfleetError


class SubjectStoreError(HubfleetError, ValueError):
    """The subject store file cannot be read or has the wrong shape."""


def read_store(path: str | os.PathLike) -> dict[str, dict]:
    """The ``users`` mapping of the store at ``path`` ({} when the file does not exist)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return {}
    try:
        doc = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise SubjectStoreError(f"{p}: not valid JSON (line {e.lineno}): {e.msg}",
                                fix="restore it from a backup or remove the broken entry") from e
    users = doc.get("users", {}) if isinstance(doc, dict) else None
    if not isinstance(users, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("backend"), str) and isinstance(v.get("subject"), str)
        for v in users.values()
    ):
        raise SubjectStoreError(f"{p}: expected {{\"users\": {{NAME: {{\"backend\": ..., \"subject\": ...}}}}}}")
    return users


def write_private(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory, fsync, rename) with mode 0600."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_store(path: str | os.PathLike, users: dict[str, dict]) -> None:
    """Write the store atomically, mode 0600."""
    write_private(path, json.dumps({"version": 1, "users": users}, indent=1, sort_keys=True))


class SubjectStore:
    """Thread-safe access to the store file, re-read when it changes on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._users: dict[str, dict] = {}

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = read_store(self.path) if stamp else {}
            self._stamp = stamp

    def get(self, name: str) -> Binding | None:
        with self._lock:
            self._reload()
            entry = self._users.get(name)
        return Binding(entry["backend"], entry["subject"]) if entry else None

    def bind(self, name: str, binding: Binding) -> None:
        with self._lock:
            self._reload()
            users = dict(self._users)
            users[name] = {"backend": binding.backend, "subject": binding.subject, "since": int(time.time())}
            write_store(self.path, users)
            self._users, self._stamp = users, None

    def unbind(self, name: str) -> Binding | None:
        with self._lock:
            self._reload()
            users = dict(self._users)
            entry = users.pop(name, None)
            if entry is not None:
                write_store(self.path, users)
            self._users, self._stamp = users, None
        return Binding(entry["backend"], entry["subject"]) if entry else None


class IdentityBinding(LoggingConfigurable):
    """Mixed into the authenticator base: binds each hub user to (backend, subject) and refuses other accounts.

    Expects the authenticator's ``owner`` (the composite when composed), ``policy_owner``, ``backend_name``,
    ``run_blocking`` and ``misconfigured_message`` (base.py).
    """

    subject_store_file = Unicode(
        "hubfleet-subjects.json",
        config=True,
        help="""The file binding each hub user to the backend and subject (LDAP DN, OIDC ``sub``, local account
        name) of their first login; a later login with another backend or subject is refused.

        Relative paths are in the hub's working (data) directory — in z2jh ``/srv/jupyterhub``, on the hub's
        volume next to ``jupyterhub.sqlite``: with ``hub.db.type`` other than ``sqlite-pvc`` point it at a
        persistent path. Used with and without `enable_auth_state`. Re-link a user who legitimately changed
        account with ``hubfleet users unbind NAME --store FILE`` (the next login binds again).
        """,
    )

    _store = None

    async def get_authenticated_user(self, handler, data):
        model = await super().get_authenticated_user(handler, data)
        if model and self.policy_owner is None:  # the hub's own authenticator: every login path comes here
            state = model.get("auth_state") or {}
            await self.bind_subject(model["name"], state.get("hubfleet_backend") or self.backend_name,
                                    state.get("hubfleet_subject") or "", login=True)
        return model

    # ---- identity binding --------------------------------------------------------------------------------
    @property
    def subject_store(self) -> SubjectStore:
        owner = self.owner
        if owner._store is None:
            owner._store = SubjectStore(os.path.abspath(owner.subject_store_file))
        return owner._store

    async def bind_subject(self, name: str, backend: str, subject: str, *, login: bool = True) -> bool:
        """Check ``name`` against its binding and bind it when it has none. At login a conflict raises
        HTTPError 403 with the reason (shown on the login page); at refresh (``login=False``) it returns False."""
        owner = self.owner
        if owner is not self:
            return await owner.bind_subject(name, backend, subject, login=login)
        try:
            bound = await self.run_blocking(self.subject_store.get, name)
            why = policy.binding_conflict(bound, backend, subject)
            if why is None and bound is None:
                await self.run_blocking(self.subject_store.bind, name, Binding(backend, subject))
                self.log.info("user:%s bound to backend %s subject %s", name, backend, subject)
        except (SubjectStoreError, OSError) as e:
            self.log.error("subject store %s unusable: %s", self.subject_store.path, e)
            if not login:
                return False
            raise web.HTTPError(503, self.misconfigured_message.format(label="subject store")) from e
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

    async def binding_of(self, name: str) -> policy.Binding | None:
        return await self.owner.run_blocking(self.subject_store.get, name)

