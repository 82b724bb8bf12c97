"""Local accounts from a YAML file: bcrypt hashes, groups and an admin flag; re-read when the file changes.

File format (written by ``hubfleet users add/passwd/remove``, mode 0600, replaced atomically)::

    users:
      alice:
        password_hash: "$2b$12$..."
        groups: [jupyter-users]
        admin: false

Used on its own (``c.JupyterHub.authenticator_class = "hubfleet-local"``) or as the ``local`` backend of
``HubfleetAuthenticator``. ``make demo`` uses it.

Self-service accounts (sign-up, approval, password change, lockout, TOTP; all off by default) live in the hub's
database beside these: the options below, the rules in ``accounts.py``, the tables in ``accounts_db.py``, the
sign-in and sign-up steps in ``accounts_service.py`` and the pages in ``accounts_handlers.py``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml
from traitlets import Bool, Integer, List, Set, Unicode

from .accounts import MAX_PASSWORD_BYTES, password_too_long  # noqa: F401 (re-exported)
from .base import BackendResult, ConfigError, HubfleetBaseAuthenticator, LoginRefused, trust_admin_groups_trait
from ..errors import HubfleetError
from ..files import write_private

#: The bcrypt cost of new hashes (``bcrypt_rounds``' default and ``hubfleet users --rounds``' default).
DEFAULT_ROUNDS = 12
MIN_ROUNDS, MAX_ROUNDS = 4, 31


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

    # ---- self-service accounts (accounts_service.py); every one off by default ---------------------------------
    database_accounts = Bool(
        False,
        config=True,
        help="""Also sign in accounts kept in the hub's database (`db_url`): those created by sign-up and those
        imported from a NativeAuthenticator site's ``users_info`` table in the same database (their bcrypt
        hashes, approval, e-mail and 2FA secrets, unchanged). `users_file` then becomes optional; an account in
        the file wins over one of the same name in the database. Implied by `enable_signup`.""",
    )
    enable_signup = Bool(
        False,
        config=True,
        help="""A sign-up page (``/hub/signup``, linked from the login page) where people create an account.
        A new account waits for approval by an admin (the page ``/hub/authorize``; users with the
        ``admin:users`` scope), unless `open_signup` or `allowed_email_domains` approve it.""",
    )
    open_signup = Bool(
        False,
        config=True,
        help="""Approve every sign-up at once (no admin, no e-mail): anyone who reaches the hub gets an account.""",
    )
    ask_email_on_signup = Bool(
        False,
        config=True,
        help="""Ask for an e-mail address on the sign-up page (required then); it receives the approval mail.
        Implied by `allowed_email_domains`.""",
    )
    allowed_email_domains = Set(
        Unicode(),
        config=True,
        help="""E-mail domains (and their subdomains) whose sign-ups approve themselves: a confirmation link is
        mailed to the address (valid 24 hours) and opening it approves the account. Needs `smtp_host`.
        Sign-ups with other addresses wait for an admin.""",
    )
    minimum_password_length = Integer(
        1,
        config=True,
        help="""Shortest password (characters) a sign-up or a password change accepts.""",
    )
    check_common_password = Bool(
        False,
        config=True,
        help="""Refuse passwords on the common-password list (hubfleet's own short list, or
        `common_passwords_file`) at sign-up and password change.""",
    )
    common_passwords_file = Unicode(
        "",
        config=True,
        help="""A text file of common passwords, one a line (compared lowercased), used by
        `check_common_password` instead of hubfleet's list.""",
    )
    allowed_failed_logins = Integer(
        0,
        config=True,
        help="""Failed sign-ins (within `seconds_before_next_try` of each other) after which an account name
        is locked for `seconds_before_next_try` seconds; unknown names are counted and locked alike. 0: no
        lockout. Counted in the hub's database for every local account (file and database).""",
    )
    allowed_failed_logins_per_address = Integer(
        0,
        config=True,
        help="""Failed local sign-ins from one client address (JupyterHub's ``remote_ip``, which honours
        X-Forwarded-For from the proxy) after which that address is locked for `seconds_before_next_try`
        seconds, whatever names it tries. 0: no per-address lockout.""",
    )
    seconds_before_next_try = Integer(
        600,
        config=True,
        help="""How long (seconds) a locked account name or address stays locked; also how far apart failures
        may be and still count together. Used when `allowed_failed_logins` or
        `allowed_failed_logins_per_address` is set.""",
    )
    allow_2fa = Bool(
        False,
        config=True,
        help="""Let users set up a second factor (TOTP, RFC 6238: an authenticator app's 6-digit code) on the
        page ``/hub/totp``; the login form then has a code field. Accounts imported from NativeAuthenticator with
        2FA keep theirs either way.""",
    )
    totp_required_groups = Set(
        Unicode(),
        config=True,
        help="""Groups (of the local account, as in the accounts file or the database) whose members must use a
        second factor: until they set one up on ``/hub/totp`` (with their username and password) their sign-in is
        refused with a message saying so. Implies `allow_2fa`.""",
    )
    totp_issuer = Unicode(
        "JupyterHub",
        config=True,
        help="""The name authenticator apps show for this hub's codes.""",
    )
    smtp_host = Unicode(
        "",
        config=True,
        help="""SMTP server for the sign-up mails (to `smtp_admin_addresses` on each sign-up; to the user on
        approval and for `allowed_email_domains` confirmation). Empty: no mail. Needs `c.JupyterHub.public_url`:
        the links in the mails are built from it, never from a request's Host header.""",
    )
    smtp_port = Integer(25, config=True, help="""SMTP port (25, 587 with `smtp_starttls`, 465 with
        `smtp_use_ssl`).""")
    smtp_starttls = Bool(False, config=True, help="""Upgrade the SMTP connection with STARTTLS (certificate
        verified).""")
    smtp_use_ssl = Bool(False, config=True, help="""Connect with implicit TLS (port 465), certificate verified.""")
    smtp_username = Unicode("", config=True, help="""SMTP login user; empty: no login.""")
    smtp_password_env = Unicode("SMTP_PASSWORD", config=True, help="""Environment variable holding the SMTP
        password (never in the config, never logged).""")
    smtp_sender = Unicode("jupyterhub@localhost", config=True, help="""The From address of the sign-up mails.""")
    smtp_admin_addresses = List(
        Unicode(),
        config=True,
        help="""Addresses told of every sign-up that waits for approval (with a link to ``/hub/authorize``).""",
    )

    def __init__(self, **kwargs):
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._accounts: dict[str, LocalAccount] = {}
        super().__init__(**kwargs)
        from .accounts_service import SelfService

        self.self_service = SelfService(self)
        self._dummy_hash = bcrypt.hashpw(b"hubfleet-dummy-password", bcrypt.gensalt(rounds=self.bcrypt_rounds))

    def check_config(self):
        super().check_config()
        cls = type(self).__name__
        if not self.users_file and not (self.database_accounts or self.enable_signup):
            raise ConfigError(
                f"{cls}.users_file is not set; point it at the YAML accounts file (hubfleet users add ... --file F)."
            )
        if not MIN_ROUNDS <= self.bcrypt_rounds <= MAX_ROUNDS:
            raise ConfigError(f"{cls}.bcrypt_rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}, "
                              f"not {self.bcrypt_rounds}.")

        from .accounts_service import check_options

        check_options(self)

    def accounts(self) -> dict[str, LocalAccount]:
        """The current accounts, re-reading the file when it changed (blocking: call from the executor)."""
        with self._lock:
            if not self.users_file:
                return {}
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

    def _check(self, username: str, password: str, stored: LocalAccount | None = None) -> LocalAccount | None:
        """The account when ``password`` is its password (the file's, else ``stored`` from the database)."""
        acct = self.accounts().get(username) or stored
        pw_hash = acct.password_hash.encode("ascii") if acct else self._dummy_hash
        try:
            ok = bcrypt.checkpw(password.encode("utf-8"), pw_hash)
        except ValueError:  # a malformed hash in the file
            self.log.error("user:%s has a malformed password_hash (%s)", username,
                           "database" if acct is stored else self.users_file)
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
        return await self.self_service.login(username, password)

    async def lookup_user(self, username):
        accounts = await self.run_blocking(self.accounts)
        acct = accounts.get(username)
        if acct is None and self.self_service.uses_database:
            acct = await self.self_service.lookup(username)
        return self._result(acct) if acct else None

    # ---- pages ----------------------------------------------------------------------------------------------
    def login_page_parts(self, base_url: str) -> dict[str, str]:
        return self.self_service.login_page_parts(base_url)

    def composed_handlers(self):
        return self.self_service.handlers()

    def get_handlers(self, app):
        from .accounts_handlers import HubfleetLoginHandler

        return [("/login", HubfleetLoginHandler)] + self.composed_handlers()
