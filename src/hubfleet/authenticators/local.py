"""Local accounts from a YAML file: bcrypt hashes, groups and an admin flag; re-read when the file changes.

File format (written by ``hubfleet users add/passwd/remove``, mode 0600, replaced atomically)::

    users:
      alice:
        password_hash: "$2b$12$..."
        groups: [jupyter-users]
        admin: false

Used on its own (``c.JupyterHub.authenticator_class = "hubfleet-local"``) or as the ``local`` backend of
``HubfleetAuthenticator``. ``make demo`` uses it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml
from traitlets import Integer, Unicode

from .base import BackendResult, ConfigError, HubfleetBaseAuthenticator, LoginRefused, trust_admin_groups_trait
from ..errors import HubfleetError

#: bcrypt uses at most this many bytes of a password (bcrypt 5 raises on longer ones): longer ones are refused.
MAX_PASSWORD_BYTES = 72
#: The bcrypt cost of new hashes (``bcrypt_rounds``' default and ``hubfleet users --rounds``' default).
DEFAULT_ROUNDS = 12
MIN_ROUNDS, MAX_ROUNDS = 4, 31


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


def password_too_long(password: str) -> str | None:
    """Why ``password`` cannot be a local password (more than 72 UTF-8 bytes), or None."""
    n = len(password.encode("utf-8"))
    if n > MAX_PASSWORD_BYTES:
        return (f"passwords of local accounts are at most {MAX_PASSWORD_BYTES} bytes (UTF-8); this one is {n} "
                f"bytes: choose a shorter one")
    return None


def hash_cost(pw_hash: str) -> int | None:
    """The cost of a bcrypt hash (``$2b$12$...`` -> 12), None when it is not one."""
    parts = pw_hash.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


class UsersFileError(HubfleetError, ValueError):
    """The accounts file cannot be read or has the wrong shape; the message names the file and the entry."""


@dataclass(frozen=True)
class LocalAccount:
    name: str
    password_hash: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    extra: dict = field(default_factory=dict, compare=False)


def parse_users(doc: object, *, source: str = "users file") -> dict[str, LocalAccount]:
    """Validate a loaded YAML document and return the accounts by name (pure; raises :class:`UsersFileError`)."""
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("users", {}), dict):
        raise UsersFileError(
            f"{source}: expected a mapping with a 'users' mapping at the top, e.g. users: {{alice: {{...}}}}"
        )
    accounts: dict[str, LocalAccount] = {}
    for name, entry in (doc.get("users") or {}).items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise UsersFileError(f"{source}: entry {name!r} must be a mapping with password_hash, groups, admin")
        pw_hash = entry.get("password_hash")
        if not isinstance(pw_hash, str) or not pw_hash.startswith(("$2a$", "$2b$", "$2y$")):
            raise UsersFileError(
                f"{source}: user {name!r} has no bcrypt password_hash (set one with 'hubfleet users passwd')"
            )
        groups = entry.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise UsersFileError(f"{source}: user {name!r}: groups must be a list of strings, not {groups!r}")
        admin = entry.get("admin", False)
        if not isinstance(admin, bool):
            raise UsersFileError(f"{source}: user {name!r}: admin must be true or false, not {admin!r}")
        extra = {k: v for k, v in entry.items() if k not in {"password_hash", "groups", "admin"}}
        accounts[name] = LocalAccount(name, pw_hash, tuple(groups), admin, extra)
    return accounts


def load_users_file(path: str | os.PathLike) -> dict:
    """The YAML document in ``path`` (``{"users": {}}`` when the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return {"users": {}}
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsersFileError(f"{p}: not valid YAML: {e}") from e
    parse_users(doc, source=str(p))  # validate
    doc.setdefault("users", {})
    if doc["users"] is None:
        doc["users"] = {}
    return doc


def write_users_file(path: str | os.PathLike, doc: dict) -> None:
    """Write ``doc`` to ``path`` atomically (temp file in the same directory, fsync, rename) with mode 0600."""
    write_private(path, yaml.safe_dump(doc, sort_keys=True, default_flow_style=False))


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """A bcrypt hash of ``password`` at cost ``rounds`` (raises ValueError past 72 bytes or outside 4..31)."""
    why = password_too_long(password)
    if why:
        raise ValueError(why)
    if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise ValueError(f"bcrypt rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}, not {rounds}")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


class HubfleetLocalAuthenticator(HubfleetBaseAuthenticator):
    """Accounts from a YAML file with bcrypt password hashes, groups and an admin flag."""

    backend_label = "local accounts"

    trust_admin_groups = trust_admin_groups_trait(True)

    users_file = Unicode(
        config=True,
        help="""Path of the YAML accounts file (``users: {name: {password_hash, groups, admin}}``).

        Managed with ``hubfleet users add NAME [--group G] [--admin] --file F``, ``hubfleet users passwd`` and
        ``hubfleet users remove``. The file is re-read when its modification time or size changes, so
        accounts can be added without restarting the hub. Keep it mode 0600.
        """,
    )

    bcrypt_rounds = Integer(
        DEFAULT_ROUNDS,
        config=True,
        help="""bcrypt cost (4..31) of the accounts' hashes. A login with an unknown name is checked against a
        dummy hash of this cost, so that it costs as long as a wrong password (no username enumeration by
        timing); hashes of another cost in `users_file` are logged at load (re-hash them with
        ``hubfleet users passwd NAME --rounds N``). ``hubfleet users`` hashes at 12 unless given ``--rounds``.
        """,
    )

    def __init__(self, **kwargs):
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._accounts: dict[str, LocalAccount] = {}
        super().__init__(**kwargs)
        self._dummy_hash = bcrypt.hashpw(b"hubfleet-dummy-password", bcrypt.gensalt(rounds=self.bcrypt_rounds))

    def check_config(self):
        super().check_config()
        cls = type(self).__name__
        if not self.users_file:
            raise ConfigError(
                f"{cls}.users_file is not set; point it at the YAML accounts file (hubfleet users add ... --file F)."
            )
        if not MIN_ROUNDS <= self.bcrypt_rounds <= MAX_ROUNDS:
            raise ConfigError(f"{cls}.bcrypt_rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}, "
                              f"not {self.bcrypt_rounds}.")

    def accounts(self) -> dict[str, LocalAccount]:
        """The current accounts, re-reading the file when it changed (blocking: call from the executor)."""
        with self._lock:
            try:
                st = os.stat(self.users_file)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                if stamp is None:
                    self.log.warning("local accounts file %s does not exist: no local accounts", self.users_file)
                    accounts = {}
                else:
                    try:
                        doc = yaml.safe_load(Path(self.users_file).read_text())
                        accounts = parse_users(doc, source=self.users_file)
                    except (OSError, yaml.YAMLError, UsersFileError) as e:
                        # keep the last good copy: a half-edited file must not lock everybody out
                        self.log.error("local accounts file %s not reloaded: %s", self.users_file, e)
                        return self._accounts
                canon = {}
                for name, acct in accounts.items():
                    key = self.canonical_username(name)
                    if key is None:
                        self.log.warning("local accounts file %s: invalid username %r ignored", self.users_file, name)
                        continue
                    canon[key] = dataclasses.replace(acct, name=key)
                self._accounts = canon
                self._stamp = stamp
                self.log.info("local accounts: loaded %d from %s", len(canon), self.users_file)
                other = sorted(n for n, a in canon.items() if hash_cost(a.password_hash) != self.bcrypt_rounds)
                if other:
                    self.log.warning(
                        "local accounts file %s: %d hash(es) not at bcrypt_rounds=%d (%s): a login as one of them "
                        "does not cost the same as one with an unknown name; re-hash with "
                        "'hubfleet users passwd NAME --rounds %d'", self.users_file, len(other),
                        self.bcrypt_rounds, ", ".join(other[:5]), self.bcrypt_rounds)
            return self._accounts

    def _check(self, username: str, password: str) -> LocalAccount | None:
        acct = self.accounts().get(username)
        pw_hash = acct.password_hash.encode("ascii") if acct else self._dummy_hash
        try:
            ok = bcrypt.checkpw(password.encode("utf-8"), pw_hash)
        except ValueError:  # a malformed hash in the file
            self.log.error("user:%s has a malformed password_hash in %s", username, self.users_file)
            return None
        return acct if (acct and ok) else None

    def _result(self, acct: LocalAccount) -> BackendResult:
        attrs = {k: v for k, v in acct.extra.items() if k in {"mail", "display_name"}}
        return BackendResult(name=acct.name, groups=list(acct.groups), admin=acct.admin, attributes=attrs,
                             backend=self.backend_name, subject=acct.name)

    async def authenticate_password(self, username, password):
        why = password_too_long(password)
        if why:
            raise LoginRefused(f"Sign-in refused: {why}.")
        acct = await self.run_blocking(self._check, username, password)
        if acct is None:
            self.log.warning("user:%s local login failed", username)
            return None
        return self._result(acct)

    async def lookup_user(self, username):
        accounts = await self.run_blocking(self.accounts)
        acct = accounts.get(username)
        return self._result(acct) if acct else None
