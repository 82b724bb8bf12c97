"""Notifiers: tell a user something about their server by SMTP mail, a webhook or a hook callable. Shared by the
culler (warnings before a cull, :mod:`hubfleet.services.culler.notify`) and ProfileSpawner's queue (a queued request
admitted, :mod:`hubfleet.spawners.queue_notify`).

A notifier is enabled by configuring it (``SMTPNotifier.host``, ``WebhookNotifier.url``, ``HookNotifier.hook``).
Each gets a notice (a frozen dataclass with ``user``, a ``subject`` class attribute and ``text()``) and the user's
hub model; it raises :class:`NotifyError` when it cannot deliver, and its caller logs that: a failed notification
never stops what it tells about.

Addresses (SMTP): from the user's auth state when ``to_auth_state`` names keys (LDAP ``mail``, OIDC
``oidc_claims.email``), else from the ``to`` template (``{username}@example.org``). Passwords come from the
environment (``SMTPNotifier.password_env``), never from the command line, and are never logged. An address is one
plain ``local@domain`` (:func:`hubfleet.mail.address_problem`, the project's one address check; mail is handed over
by :class:`hubfleet.mail.SMTPServer` on a thread, bounded by ``timeout``): an auth state value with a line break, a
comma list, a display name or anything else is refused for that notice (:class:`NotifyError`), never sent to. The
claim an identity provider gives is the user's to shape, so it is untrusted input.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import asdict

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Any, Bool, Dict, Float, Int, List, Unicode
from traitlets.config import Configurable
from traitlets.utils.importstring import import_item

from .errors import HubfleetError
from .mail import MailError, SMTPServer, address_problem


class NotifyError(HubfleetError):
    """A notice could not be delivered (the message says by which notifier and why; no secrets)."""


def lookup(data, dotted: str):
    """``lookup({"oidc_claims": {"email": "x"}}, "oidc_claims.email") == "x"``; None when absent."""
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


class SMTPNotifier(Configurable):
    host = Unicode("", help="""SMTP server for notification mails (the culler's warnings; in the hub's config, the
        queue's admissions); empty: no mail. Mails go to the address from the user's auth state (`to_auth_state`) or
        from the `to` template.""").tag(config=True)
    port = Int(25, help="SMTP port (25, 587 with `starttls`, 465 with `ssl`).").tag(config=True)
    starttls = Bool(False, help="Upgrade the SMTP connection with STARTTLS (certificate verified).").tag(config=True)
    use_ssl = Bool(False, help="Connect with implicit TLS (SMTPS, port 465), certificate verified.").tag(config=True)
    username = Unicode("", help="SMTP login user; empty: no login.").tag(config=True)
    password_env = Unicode("SMTP_PASSWORD", help="""Environment variable holding the SMTP password (never on the
        command line, never logged).""").tag(config=True)
    sender = Unicode("jupyterhub@localhost", help="The mails' From address.").tag(config=True)
    to = Unicode("", help="""Address template used when the auth state has no address, e.g.
        `{username}@example.org`; empty: users without an address in their auth state get no mail (logged).""").tag(
        config=True)
    to_auth_state = List(Unicode(), [], help="""Auth state keys (dotted) to read the address from, first found
        wins, e.g. `mail` (hubfleet's LDAP backend) and `oidc_claims.email` (its OIDC backend). Needs
        `c.Authenticator.enable_auth_state` (and, for the culler, the `admin:auth_state` scope); empty: only the `to`
        template.""").tag(config=True)
    subject = Unicode("", help="""The mails' subject; empty: the notice's own ("Your JupyterHub server will be
        stopped soon" for the culler's warnings, "Your JupyterHub server is ready to start" or "... is starting" for
        the queue's admissions).""").tag(config=True)
    timeout = Float(20.0, help="Seconds before an SMTP exchange is given up.").tag(config=True)

    name = "smtp"

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def scopes(self) -> list[str]:
        return ["admin:auth_state"] if self.to_auth_state else []

    def address(self, notice, user: Mapping) -> str | None:
        """The one address to warn ``notice.user`` at; None: none known. Raises :class:`NotifyError` when the
        address found is not one plain address (a value from the auth state wins, good or bad: a bad one is not
        replaced by the template, which may be someone else's mailbox)."""
        state = user.get("auth_state") or {}
        for key in self.to_auth_state:
            value = lookup(state, key)
            if isinstance(value, list):
                value = value[0] if value else None
            if value is None or value == "":
                continue
            if problem := address_problem(value):
                raise NotifyError(f"smtp: {notice.user}'s auth state {key} is not one address: {problem}")
            return value
        if self.to:
            value = self.to.format(username=notice.user)
            if problem := address_problem(value):
                raise NotifyError(f"smtp: the `to` template gives no address for user {notice.user!r}: {problem}")
            return value
        return None

    async def notify(self, notice, user: Mapping) -> None:
        to = self.address(notice, user)
        if not to:
            raise NotifyError(f"smtp: no address for {notice.user} (auth state keys "
                              f"{', '.join(self.to_auth_state) or '(none)'}; no `to` template)")
        if problem := address_problem(self.sender):
            raise NotifyError(f"smtp: SMTPNotifier.sender (the culler's --smtp-from) is not one address: {problem}")
        server = SMTPServer(self.host, self.port, starttls=self.starttls, use_ssl=self.use_ssl,
                            username=self.username, password=os.environ.get(self.password_env, ""),
                            timeout=self.timeout)
        try:
            await asyncio.to_thread(server.send, self.sender, [to], self.subject or notice.subject, notice.text())
        except MailError as e:
            raise NotifyError(str(e)) from e  # "smtp HOST:PORT: <why>"


class WebhookNotifier(Configurable):
    url = Unicode("", help="""URL that notices are POSTed to as JSON; empty: no webhook. Any 2xx answer is success.
        The culler's warnings carry `user`, `server`, `profile`, `reason`, `cull_after`, `warn_before`, `server_url`;
        the queue's admissions `event` ("queue_admitted"), `user`, `server`, `profile`, `profile_name`, `start_by`
        (ISO 8601 UTC, "" when the server is started for the user), `url`.""").tag(config=True)
    headers = Dict(Unicode(), {}, help="Extra request headers (no secrets here: see `token_env`).").tag(config=True)
    token_env = Unicode("", help="""Environment variable holding a bearer token sent as `Authorization: Bearer
        ...`; empty: none.""").tag(config=True)
    timeout = Float(10.0, help="Seconds before a webhook request is given up.").tag(config=True)

    name = "webhook"

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def scopes(self) -> list[str]:
        return []

    async def notify(self, notice, user: Mapping) -> None:
        headers = {"Content-Type": "application/json", **self.headers}
        if self.token_env and os.environ.get(self.token_env):
            headers["Authorization"] = f"Bearer {os.environ[self.token_env]}"
        req = HTTPRequest(self.url, method="POST", headers=headers, body=json.dumps(asdict(notice)),
                          request_timeout=self.timeout, connect_timeout=min(self.timeout, 10))
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        if not 200 <= resp.code < 300:
            why = f"no answer ({resp.error})" if resp.code == 599 else f"answered {resp.code}"
            raise NotifyError(f"webhook {self.url}: {why}")


class HookNotifier(Configurable):
    hook = Any(None, allow_none=True, help="""A callable (or its import string, `package.module.function`) called as
        `hook(*, notice, user)` for every notice (a culler's warning, a queue's admission), sync or async; an
        exception counts as a failed delivery.""").tag(
        config=True)

    name = "hook"

    @property
    def enabled(self) -> bool:
        return self.hook is not None and self.hook != ""

    def scopes(self) -> list[str]:
        return []

    def _callable(self):
        hook = self.hook
        if isinstance(hook, str):
            hook = import_item(hook)
        if not callable(hook):
            raise NotifyError(f"hook: {self.hook!r} is not callable")
        return hook

    async def notify(self, notice, user: Mapping) -> None:
        try:
            result = self._callable()(notice=notice, user=user)
            if inspect.isawaitable(result):
                await result
        except NotifyError:
            raise
        except Exception as e:  # noqa: BLE001  (an operator's hook: whatever it raises is a failed delivery)
            raise NotifyError(f"hook: {type(e).__name__}: {e}") from e


NOTIFIER_CLASSES = (SMTPNotifier, WebhookNotifier, HookNotifier)


def check_hook(notifier: HookNotifier) -> None:
    """Start-up check: an import string that does not import is a configuration error, not a run-time one."""
    if notifier.enabled:
        try:
            notifier._callable()
        except (ImportError, AttributeError, ValueError) as e:
            raise NotifyError(f"HookNotifier.hook {notifier.hook!r}: cannot import it ({e})") from e


__all__ = ["NotifyError", "SMTPNotifier", "WebhookNotifier", "HookNotifier", "NOTIFIER_CLASSES",
           "check_hook", "lookup"]
