"""Self-service local accounts at work: sign-in (lockout, approval, TOTP), sign-up, confirmation, password
change and the mails — the I/O around the rules of ``accounts.py`` and the tables of ``accounts_db.py``.

One :class:`SelfService` per :class:`~.local.HubfleetLocalAuthenticator` (``authenticator.self_service``) reads its
options. The database is the hub's (the owner's bindings' engine). When it cannot answer, sign-in, sign-up and the
account pages are refused with "Sign-in is unavailable" (fail closed). The client address and the TOTP code of
a login come from the login request (:data:`LOGIN_REQUEST`, set by ``accounts_handlers.HubfleetLoginHandler``).
"""

from __future__ import annotations

import contextvars
import html
import os
import time
from dataclasses import dataclass

from jupyterhub.utils import url_path_join
from tornado import web

from . import accounts as rules
from . import accounts_db as adb
from .base import BackendResult, ConfigError, LoginRefused, hub_app, public_origin
from .binding import UNAVAILABLE
from ..db import DatabaseUnavailable
from ..mail import MailError, SMTPServer

#: How long an e-mailed confirmation link works.
CONFIRM_SECONDS = 24 * 3600


@dataclass(frozen=True)
class LoginRequest:
    address: str = ""
    otp: str = ""


LOGIN_REQUEST: contextvars.ContextVar[LoginRequest] = contextvars.ContextVar("hubfleet_login_request",
                                                                             default=LoginRequest())


class SignupRefused(Exception):
    """A sign-up or account change refused, with the sentence to show (nothing was stored)."""


def check_options(a) -> None:
    """Option combinations of the self-service accounts (``a``: the local authenticator); ConfigError names the
    option and the fix."""
    cls = type(a).__name__
    if a.minimum_password_length < 1:
        raise ConfigError(f"{cls}.minimum_password_length must be at least 1, not {a.minimum_password_length}.")
    for opt in ("allowed_failed_logins", "allowed_failed_logins_per_address"):
        if getattr(a, opt) < 0:
            raise ConfigError(f"{cls}.{opt} must be 0 (off) or more, not {getattr(a, opt)}.")
    if (a.allowed_failed_logins or a.allowed_failed_logins_per_address) and a.seconds_before_next_try < 1:
        raise ConfigError(f"{cls}.seconds_before_next_try must be at least 1, not {a.seconds_before_next_try}.")
    if a.allowed_email_domains and not a.smtp_host:
        raise ConfigError(f"{cls}.allowed_email_domains needs {cls}.smtp_host (the confirmation link is mailed).")
    app = hub_app(a)
    if a.smtp_host and (a.enable_signup or a.database_accounts) and app is not None and not public_origin(app):
        raise ConfigError(f"{cls}.smtp_host is set: set c.JupyterHub.public_url too (e.g. 'https://hub.example.org/'); "
                          f"the links in the mails are built from it, never from the request's Host header.")
    if a.allowed_email_domains and not a.enable_signup:
        raise ConfigError(f"{cls}.allowed_email_domains is set but {cls}.enable_signup is False.")
    if a.common_passwords_file:
        try:
            rules.common_passwords(a.common_passwords_file)
        except OSError as e:
            raise ConfigError(f"{cls}.common_passwords_file: {a.common_passwords_file}: {e.strerror or e}") from e


class SelfService:
    def __init__(self, authenticator):
        self.a = authenticator
        self._store: adb.AccountStore | None = None

    # ---- what is on -----------------------------------------------------------------------------------------------
    @property
    def uses_database(self) -> bool:
        return self.a.database_accounts or self.a.enable_signup

    @property
    def totp_setup(self) -> bool:
        """Users may set up a second factor (the page /hub/totp)."""
        return self.a.allow_2fa or bool(self.a.totp_required_groups)

    @property
    def totp_enabled(self) -> bool:
        """Second factors are checked at sign-in (also those imported from NativeAuthenticator)."""
        return self.totp_setup or self.uses_database

    @property
    def lockout(self) -> bool:
        return bool(self.a.allowed_failed_logins or self.a.allowed_failed_logins_per_address)

    @property
    def store(self) -> adb.AccountStore:
        if self._store is None:
            self._store = adb.AccountStore(self.a.owner.bindings.db, self.a.log)
        return self._store

    async def call(self, fn, *args, write: bool = False):
        """A database call; an unreachable database refuses the request ("Sign-in is unavailable")."""
        try:
            return await self.store.call(fn, *args, write=write)
        except DatabaseUnavailable as e:
            self.a.log.error("local accounts: database unusable: %s", e)
            raise web.HTTPError(503, UNAVAILABLE) from e

    # ---- sign-in ----------------------------------------------------------------------------------------------------
    def _keys(self, name: str, address: str) -> dict[str, int]:
        keys = {}
        if self.a.allowed_failed_logins:
            keys[f"user:{name}"] = self.a.allowed_failed_logins
        if self.a.allowed_failed_logins_per_address and address:
            keys[f"addr:{address}"] = self.a.allowed_failed_logins_per_address
        return keys

    @staticmethod
    def _local(acct: adb.Account):
        from .local import LocalAccount

        return LocalAccount(acct.name, acct.password_hash, acct.groups, acct.admin,
                            {"mail": acct.email} if acct.email else {})

    async def login(self, name: str, password: str) -> BackendResult | None:
        """The password check of the local backend, with lockout, approval and the second factor."""
        req = LOGIN_REQUEST.get()
        keys = self._keys(name, req.address)
        if keys:
            left = await self.call(adb.locked_for, list(keys), time.time())
            if left:
                self.a.log.warning("user:%s login refused: locked (%d s left; address %s)", name, left, req.address)
                raise LoginRefused(rules.lockout_message(left))
        stored = await self.call(adb.get_account, name) if self.uses_database else None
        acct = await self.a.run_blocking(self.a._check, name, password, self._local(stored) if stored else None)
        ok = acct is not None
        if ok and stored is not None and acct.password_hash == stored.password_hash and not stored.approved:
            raise LoginRefused("Your account is waiting for approval"
                               + (": open the link in the e-mail we sent you." if stored.status == adb.CONFIRMING
                                  else " by an administrator."))
        if ok and self.totp_enabled:
            second = await self.call(adb.get_totp, name)
            if second is not None and second.enabled:
                ok = await self.call(adb.use_totp, name, req.otp, time.time(), write=True)
                if not ok:
                    self.a.log.warning("user:%s local login failed: wrong or reused authentication code", name)
            elif set(acct.groups) & self.a.totp_required_groups:
                raise LoginRefused("Your group requires a second factor: set one up on the page "
                                   "'Two-factor sign-in' (/hub/totp) first, then sign in with its code.")
        if not ok:
            self.a.log.warning("user:%s local login failed", name)
            if keys:
                left = await self.call(adb.record_failure, keys, time.time(), self.a.seconds_before_next_try,
                                       write=True)
                if left:
                    self.a.log.warning("user:%s locked after failed logins (address %s) for %d s", name,
                                       req.address, left)
                    raise LoginRefused(rules.lockout_message(left))
            return None
        if keys.get(f"user:{name}"):
            await self.call(adb.clear_failures, [f"user:{name}"], write=True)
        return self.a._result(acct)

    async def lookup(self, name: str):
        stored = await self.call(adb.get_account, name)
        return self._local(stored) if stored is not None and stored.approved else None

    async def check_password(self, name: str, password: str, address: str = ""):
        """The account (file or database) whose password this is, without the second factor; None. The pages
        that ask for a password (``/hub/totp``, ``/hub/change-password``) go through the same lockout as the login
        form (:class:`~.base.LoginRefused` while locked), so they are no way round it."""
        keys = self._keys(name, address)
        if keys:
            left = await self.call(adb.locked_for, list(keys), time.time())
            if left:
                raise LoginRefused(rules.lockout_message(left))
        acct = None
        if not rules.password_too_long(password):
            stored = await self.call(adb.get_account, name) if self.uses_database else None
            acct = await self.a.run_blocking(self.a._check, name, password, self._local(stored) if stored else None)
        if acct is None and keys:
            left = await self.call(adb.record_failure, keys, time.time(), self.a.seconds_before_next_try, write=True)
            if left:
                raise LoginRefused(rules.lockout_message(left))
        return acct

    # ---- rules for new passwords ------------------------------------------------------------------------------------
    def password_problem(self, name: str, password: str) -> str | None:
        common = rules.common_passwords(self.a.common_passwords_file) if self.a.check_common_password else frozenset()
        return rules.password_problem(password, username=name, minimum_length=self.a.minimum_password_length,
                                      common=common)

    async def hash(self, password: str) -> str:
        from .local import hash_password

        return await self.a.run_blocking(hash_password, password, self.a.bcrypt_rounds)

    # ---- sign-up ---------------------------------------------------------------------------------------------------
    async def signup(self, raw_name: str, password: str, repeat: str, email: str, hub_url: str) -> str:
        """Create an account from the sign-up form; the sentence to show. Raises :class:`SignupRefused`."""
        a = self.a
        name = a.canonical_username(raw_name)
        if not name:
            raise SignupRefused(f"{raw_name[:64]!r} is not a valid username here (allowed: lowercase letters, "
                                f"digits and . _ @ -, at most {a.owner.username_max_length} characters).")
        if password != repeat:
            raise SignupRefused("The two passwords differ.")
        why = self.password_problem(name, password)
        if why:
            raise SignupRefused(why)
        email = (email or "").strip()
        if a.ask_email_on_signup or a.allowed_email_domains or email:
            why = rules.email_problem(email)
            if why:
                raise SignupRefused(why)
        accounts = await a.run_blocking(a.accounts)
        if name in accounts or name in a.owner.blocked_users:
            raise SignupRefused(f"The username {name!r} is taken: choose another.")
        by_domain = bool(email) and rules.email_domain_allowed(email, a.allowed_email_domains)
        status = adb.APPROVED if a.open_signup else adb.CONFIRMING if by_domain else adb.PENDING
        token = adb.new_token() if status == adb.CONFIRMING else ""
        pw_hash = await self.hash(password)
        created = await self.call(_create, name, pw_hash, email or None, status, token, write=True)
        if not created:
            raise SignupRefused(f"The username {name!r} is taken: choose another.")
        a.log.info("user:%s signed up (%s)", name, status)
        if status == adb.APPROVED:
            return "Your account is ready: sign in."
        if status == adb.CONFIRMING:
            link = f"{hub_url}signup/confirm?token={token}"
            sent = await self.mail([email], "Confirm your JupyterHub account",
                                   f"Someone (we hope you) signed up as {name} on {hub_url}.\n\n"
                                   f"Open this link within 24 hours to confirm the account:\n{link}\n")
            return ("We sent a confirmation link to your e-mail address: open it to finish." if sent else
                    "Your account waits for confirmation, but the e-mail could not be sent: ask an administrator.")
        await self.mail(list(a.smtp_admin_addresses), f"JupyterHub sign-up waiting: {name}",
                        f"{name} ({email or 'no e-mail'}) signed up on {hub_url} and waits for approval:\n"
                        f"{hub_url}authorize\n")
        return "Your account was created and waits for an administrator's approval."

    async def mail(self, to: list[str], subject: str, body: str) -> bool:
        """Send one mail (on a thread); False (logged) when SMTP is not configured or fails."""
        a = self.a
        if not a.smtp_host or not to:
            return False
        server = SMTPServer(a.smtp_host, a.smtp_port, a.smtp_starttls, a.smtp_use_ssl, a.smtp_username,
                            os.environ.get(a.smtp_password_env, ""))
        try:
            await a.run_blocking(server.send, a.smtp_sender, to, subject, body)
        except MailError as e:
            a.log.error("local accounts: mail %r to %s not sent: %s", subject, ", ".join(to), e)
            return False
        return True

    async def approved_mail(self, acct: adb.Account, hub_url: str) -> None:
        if acct.email:
            await self.mail([acct.email], "Your JupyterHub account is approved",
                            f"Your account {acct.name} on {hub_url} is approved: sign in at {hub_url}login\n")

    # ---- login page --------------------------------------------------------------------------------------------------
    def login_page_parts(self, base_url: str) -> dict[str, str]:
        parts = {}
        if self.totp_enabled:
            parts["fields"] = (
                '<label for="otp_input">Authentication code (if you set one up):</label>\n'
                '<input id="otp_input" type="text" inputmode="numeric" autocomplete="one-time-code" '
                'class="form-control" name="otp" />')
        if self.a.enable_signup:
            href = html.escape(url_path_join(base_url, "signup")).replace("{", "&#123;")
            parts["links"] = f'<p class="mt-3"><a id="signup_link" href="{href}">No account? Sign up</a></p>'
        return parts

    def handlers(self) -> list[tuple]:
        from . import accounts_handlers as h

        out = []
        opts = {"service": self}
        if self.a.enable_signup:
            out += [("/signup", h.SignupHandler, opts), ("/signup/confirm", h.ConfirmHandler, opts)]
        if self.uses_database:
            out += [("/authorize", h.AuthorizeHandler, opts), ("/change-password", h.ChangePasswordHandler, opts)]
        if self.totp_setup:
            out += [("/totp", h.TotpHandler, opts)]
        return out


def _create(conn, name, pw_hash, email, status, token):
    return adb.create_account(conn, name, pw_hash, email=email, status=status, source="signup",
                              confirm_token=token, confirm_seconds=CONFIRM_SECONDS)
