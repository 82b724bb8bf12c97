"""The pages of the self-service local accounts, on the hub (JupyterHub's BaseHandler and page templates):

- ``/hub/signup`` (and ``/hub/signup/confirm?token=...``, the e-mailed link, whose button approves): create an
  account;
- ``/hub/authorize``: accounts waiting for approval, approve or reject, reset a password — for users with the
  ``admin:users`` scope (JupyterHub admins have it);
- ``/hub/change-password``: the signed-in user changes their password;
- ``/hub/totp``: set up a second factor (signed in, or with username and password for a user whose group requires
  one before they can sign in).

Every page is rendered from ``templates/accounts/`` through the hub's own Jinja environment (so they extend
``page.html``). The logic is in ``accounts_service.py``.
"""

from __future__ import annotations

import secrets
import time

from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import url_path_join
from tornado import web

from . import accounts as rules
from . import accounts_db as adb
from .accounts_service import LOGIN_REQUEST, LoginRequest, SignupRefused
from .base import LoginRefused

_TEMPLATES = str(__import__("pathlib").Path(__file__).with_name("templates") / "accounts")
_SETUP_COOKIE = "hubfleet-totp-setup"  # signed: the user whose password the TOTP page checked (10 minutes)


class HubfleetLoginHandler(LoginHandler):
    """JupyterHub's login handler; it hands the client address and the authentication code to the local
    backend (:data:`~.accounts_service.LOGIN_REQUEST`) for lockout and TOTP."""

    async def post(self):
        LOGIN_REQUEST.set(LoginRequest(self.request.remote_ip or "", self.get_body_argument("otp", "")))
        return await super().post()


class AccountPage(BaseHandler):
    def initialize(self, service):
        self.service = service
        self.a = service.a

    def hub_url(self) -> str:
        """The hub's URL for the links in mails, ending in ``/hub/``: from ``JupyterHub.public_url``, never from the
        request's Host header (the client chooses it: a confirmation link would carry its token to any host).
        Empty without ``public_url`` (start-up requires it when mails are sent)."""
        public = self.settings.get("public_url")
        return f"{public.scheme}://{public.netloc}{self.hub.base_url}" if public else ""

    async def page(self, name: str, status: int = 200, **ns) -> None:
        env = self.settings.get("hubfleet_jinja2_env")
        if env is None:
            hub_env = self.settings["jinja2_env"]
            env = self.settings["hubfleet_jinja2_env"] = hub_env.overlay(
                loader=ChoiceLoader([FileSystemLoader(_TEMPLATES), hub_env.loader]))
        context = dict(self.template_namespace)
        context.update(xsrf_token=self.xsrf_token.decode("ascii"), message="", error="")
        context.update(ns)
        self.set_status(status)
        self.finish(await env.get_template(name).render_async(**context))


class SignupHandler(AccountPage):
    async def get(self):
        await self.page("signup.html", ask_email=self._ask_email(), username="", email="")

    def _ask_email(self) -> bool:
        return bool(self.a.ask_email_on_signup or self.a.allowed_email_domains or self.a.smtp_admin_addresses)

    async def post(self):
        arg = self.get_body_argument
        username, email = arg("username", "", strip=True), arg("email", "", strip=True)
        try:
            message = await self.service.signup(username, arg("password", "", strip=False),
                                                arg("password2", "", strip=False), email, self.hub_url())
        except SignupRefused as e:
            await self.page("signup.html", 400, ask_email=self._ask_email(), username=username, email=email,
                            error=str(e))
            return
        await self.page("signup.html", ask_email=self._ask_email(), username="", email="", message=message,
                        done=True)


class ConfirmHandler(AccountPage):
    """The e-mailed link shows a button; only its POST approves (a mail scanner that opens every link must not)."""

    _INVALID = "This confirmation link is not valid (or has expired, or was used)."

    async def get(self):
        token = self.get_query_argument("token", "")
        name = await self.service.call(adb.confirming, token)
        if name is None:
            await self.page("message.html", 400, title="Confirmation", error=self._INVALID)
            return
        await self.page("confirm.html", account=name, token=token)

    async def post(self):
        acct = await self.service.call(adb.confirm, self.get_argument("token", ""), write=True)
        if acct is None:
            await self.page("message.html", 400, title="Confirmation", error=self._INVALID)
            return
        self.log.info("user:%s confirmed their e-mail address; account approved", acct.name)
        await self.page("message.html", title="Confirmation",
                        message=f"Your account {acct.name} is confirmed: you can sign in now.")


class AuthorizeHandler(AccountPage):
    @web.authenticated
    @needs_scope("admin:users")
    async def get(self):
        await self._show()

    async def _show(self, status: int = 200, **ns):
        accounts = await self.service.call(adb.list_accounts)
        await self.page("authorize.html", status, pending=[x for x in accounts if not x.approved],
                        approved=[x for x in accounts if x.approved], **ns)

    @web.authenticated
    @needs_scope("admin:users")
    async def post(self):
        name, action = self.get_body_argument("username", ""), self.get_body_argument("action", "")
        by = self.current_user.name
        if action in ("approve", "reject"):
            acct = await self.service.call(adb.decide, name, action == "approve", by, write=True)
            if acct is None:
                return await self._show(404, error=f"No account {name!r}.")
            self.log.warning("user:%s %sd by %s", name, action, by)
            if action == "approve":
                await self.service.approved_mail(acct, self.hub_url())
            return await self._show(message=f"{name}: {action}d.")
        if action == "reset":
            password = secrets.token_urlsafe(12)
            pw_hash = await self.service.hash(password)
            if not await self.service.call(adb.set_password, name, pw_hash, write=True):
                return await self._show(404, error=f"No account {name!r}.")
            await self.service.call(adb.clear_failures, [f"user:{name}"], write=True)
            self.log.warning("user:%s password reset by %s", name, by)
            return await self._show(message=f"{name}: the new password is {password} — give it to them; they "
                                            f"should change it at once.", reset_password=password)
        raise web.HTTPError(400, f"unknown action {action!r}")


class ChangePasswordHandler(AccountPage):
    @web.authenticated
    async def get(self):
        await self.page("change-password.html")

    @web.authenticated
    async def post(self):
        name = self.current_user.name
        arg = self.get_body_argument
        old, new, repeat = arg("old_password", "", strip=False), arg("password", "", strip=False), \
            arg("password2", "", strip=False)
        stored = await self.service.call(adb.get_account, name)
        if stored is None:
            return await self.page("change-password.html", 400, error="Your password is not kept in the hub's "
                                   "database (it is in the accounts file or another sign-in): ask an administrator.")
        try:
            acct = await self.service.check_password(name, old, self.request.remote_ip or "")
        except LoginRefused as e:
            return await self.page("change-password.html", 403, error=e.message)
        why = ("The current password is wrong." if acct is None or acct.password_hash != stored.password_hash
               else "The two new passwords differ." if new != repeat else self.service.password_problem(name, new))
        if why:
            return await self.page("change-password.html", 400, error=why)
        await self.service.call(adb.set_password, name, await self.service.hash(new), write=True)
        self.log.info("user:%s changed their password", name)
        await self.page("change-password.html", message="Your password was changed.")


class TotpHandler(AccountPage):
    """Step 1: who (the signed-in user, or username + password); a new secret is stored, not enabled yet.
    Step 2: a code from the app enables it."""

    def _setup_user(self) -> str | None:
        user = self.current_user
        if user is not None:
            return user.name
        raw = self.get_secure_cookie(_SETUP_COOKIE, max_age_days=10 / (24 * 60))
        return raw.decode("utf-8") if raw else None

    async def get(self):
        name = self._setup_user()
        if name is None:
            return await self.page("totp.html", step="who")
        await self._secret(name)

    async def _secret(self, name: str, status: int = 200, **ns):
        current = await self.service.call(adb.get_totp, name)
        if current is not None and current.enabled:
            return await self.page("totp.html", status, step="done", username=name,
                                   message=ns.get("message") or "A second factor is set up for your account.")
        secret = current.secret if current is not None else rules.new_totp_secret()
        if current is None:
            await self.service.call(adb.start_totp, name, secret, write=True)
        await self.page("totp.html", status, step="code", username=name, secret=secret,
                        uri=rules.otpauth_uri(secret, name, self.a.totp_issuer), **ns)

    async def post(self):
        if self.get_body_argument("step", "") == "who":
            name = self.a.canonical_username(self.get_body_argument("username", "", strip=True)) or ""
            try:
                acct = await self.service.check_password(name, self.get_body_argument("password", "", strip=False),
                                                         self.request.remote_ip or "")
            except LoginRefused as e:
                return await self.page("totp.html", 403, step="who", error=e.message)
            if acct is None:
                return await self.page("totp.html", 403, step="who", error="Invalid username or password.")
            self.set_secure_cookie(_SETUP_COOKIE, acct.name, expires_days=10 / (24 * 60),
                                   path=self.hub.base_url, httponly=True)
            return await self._secret(acct.name)
        name = self._setup_user()
        if name is None:
            return await self.page("totp.html", 403, step="who", error="Sign in, or give your username and "
                                                                        "password, first.")
        ok = await self.service.call(_enable, name, self.get_body_argument("code", ""), time.time(), write=True)
        if not ok:
            return await self._secret(name, 400, error="That code is not right: check the phone's clock and "
                                                       "type the code the app shows now.")
        self.clear_cookie(_SETUP_COOKIE, path=self.hub.base_url)
        self.log.info("user:%s set up a second factor (TOTP)", name)
        await self.page("totp.html", step="done", username=name, login_url=url_path_join(self.hub.base_url, "login"),
                        message="The second factor is set up: from now on, sign in with the code from the app.")


def _enable(conn, name, code, now):
    return adb.use_totp(conn, name, code, now, enable=True)
