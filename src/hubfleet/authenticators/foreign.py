"""Any JupyterHub Authenticator as a backend of the composite: ``{"kind": "github", ...}`` in ``backends[]``.

``kind`` names a ``jupyterhub.authenticators`` entry point (``github``, ``google``, ``azuread``, ``generic-oauth``,
``ldapauthenticator``, ...) or an import path (``package.module:Class``). :class:`ForeignBackend` holds one
instance of that class (``inner``, configured by the entry's options and its own config section,
``c.GitHubOAuthenticator...``) and puts its logins through the composite's one login path:

- an OAuthenticator keeps its own protocol, handlers, ``refresh_user`` (and ``refresh_user_hook``),
  ``pre_spawn_start`` and auth state; it gets a "Sign in with <login_service>" button,
  ``/hub/oauth_login/<name>`` and its own callback (``oauth_callback_url``, default
  ``<public_url>/hub/oauth_callback/<name>``);
- any other Authenticator is a password backend: its ``authenticate`` gets the login form's username and password;
- the provider's model becomes a :class:`~.base.BackendResult`: the name normalised by the hub
  (``canonical_username``, after the entry's `username_prefix`), the provider's group names (GitHub: its teams as
  ``org:team`` and their organisations, and the `allowed_organizations` the user is a member of; Google: its
  groups; ldapauthenticator: the groups of its ``ldap_groups``, by their first RDN's value; others: their
  ``get_user_groups``), the subject at `subject_claim` (GitHub: the numeric user ``id``,
  which survives a rename; OIDC-style providers: ``sub``); the composite's policy (``auth_model``) decides, never
  the class's own admin or allow checks (``check_allowed`` / ``is_admin`` are not asked); a class's
  ``check_blocked_users`` (Google's ``hosted_domain``) can still refuse;
- an OAuthenticator's token answers (login and refresh) are checked before the class uses them: a token endpoint
  that gives no token (an error answer) or an id_token meant for another client (``aud`` / ``azp``) ends the
  sign-in with a message that says so; the provider's reason is logged for the admin.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import time
from importlib.metadata import entry_points
from urllib.parse import urlparse

from jupyterhub.auth import Authenticator
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Any, Bool, Unicode, default

from . import policy
from .ldap_util import rdn_value
from .oidc_tokens import audience_problem, unverified_claims
from .binding import UNAVAILABLE, BindingStoreError
from .base import (BackendResult, BackendUnavailable, ConfigError, HubfleetBaseAuthenticator, hub_app, public_origin,
                   trust_admin_groups_trait)

ENTRY_POINT_GROUP = "jupyterhub.authenticators"

#: Where each provider puts its immutable account id in the user info (matched on the class's MRO names).
SUBJECT_CLAIMS = {
    "GitHubOAuthenticator": "id", "GitLabOAuthenticator": "id", "BitbucketOAuthenticator": "uuid",
    "AzureAdOAuthenticator": "oid", "OpenShiftOAuthenticator": "metadata.uid", "OAuthenticator": "sub",
}

#: Options of the entry that are the composite's (the rest are the class's own).
WRAPPER_OPTIONS = {"trust_admin_groups", "username_prefix", "subject_claim", "run_in_thread"}

#: Password classes known to make blocking calls from ``authenticate`` (matched on the class's MRO names).
BLOCKING_CLASSES = {"LDAPAuthenticator"}  # ldapauthenticator 2.0: synchronous ldap3 binds and searches

_HTTP_FAILURES = (OSError, TimeoutError, asyncio.TimeoutError, ValueError, KeyError, TypeError)


def installed_kinds() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def resolve(kind: str, where: str) -> type:
    """The Authenticator class an entry's ``kind`` names: an entry point, else ``module:Class`` /
    ``module.Class``. A start-up error lists the installed entry points."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    cls = None
    error = ""
    try:
        if found:
            cls = found[0].load()
        elif "." in kind or ":" in kind:
            module, _, attr = kind.partition(":") if ":" in kind else kind.rpartition(".")
            cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        error = f" ({e})"
    if cls is None:
        raise ConfigError(
            f"{where}: kind {kind!r} names no installed authenticator{error}. Use an entry point of "
            f"{ENTRY_POINT_GROUP!r} ({', '.join(installed_kinds())}) or an import path 'package.module:Class'."
        )
    if not (isinstance(cls, type) and issubclass(cls, Authenticator)):
        raise ConfigError(f"{where}: kind {kind!r} is {cls!r}, not a JupyterHub Authenticator class.")
    return cls


def _oauth_base():
    from oauthenticator.oauth2 import OAuthenticator

    return OAuthenticator


def _mro_names(cls) -> list[str]:
    return [k.__name__ for k in cls.mro()]


def _github_groups(auth_state: dict) -> list[str]:
    """GitHub's teams (``populate_teams_in_auth_state``) as ``org:team``, and their organisations."""
    groups = set()
    for team in auth_state.get("teams") or []:
        org = ((team or {}).get("organization") or {}).get("login")
        if org and team.get("slug"):
            groups |= {org, f"{org}:{team['slug']}"}
    return sorted(groups)


def _google_groups(auth_state: dict) -> list[str]:
    return list((auth_state.get("google_user") or {}).get("google_groups") or [])


def _ldapauthenticator_groups(auth_state: dict) -> list[str]:
    """ldapauthenticator's ``ldap_groups`` (the DNs of its own `allowed_groups` the user is a member of), named by
    their first RDN's value (``cn=jupyter-users,ou=groups,...`` -> ``jupyter-users``), as the ``ldap`` backend
    names groups."""
    return sorted({rdn_value(dn) for dn in auth_state.get("ldap_groups") or [] if isinstance(dn, str)} - {""})


#: Where each provider puts its group names in its auth state (matched on the class's MRO names). An
#: OAuthenticator gets its reader as ``auth_state_groups_key`` (its model's ``groups``); any other class's
#: model without ``groups`` is read with it.
GROUP_READERS = {
    "GitHubOAuthenticator": _github_groups, "GoogleOAuthenticator": _google_groups,
    "LDAPAuthenticator": _ldapauthenticator_groups,
}


def _error_answer(e: HTTPClientError) -> str:
    """A token endpoint's 4xx answer in a few words: its ``error`` and ``error_description`` when it has them."""
    try:
        body = json.loads(e.response.body) if e.response is not None else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict) or not body.get("error"):
        return f"HTTP {e.code}"
    return f"HTTP {e.code} {body['error']}: {str(body.get('error_description') or '')[:200]}".rstrip(": ")


class _ForeignLoginMixin:
    """Runs the class's own login handler with ``self.authenticator`` = the inner authenticator during ``get``
    only (its redirect reads client_id, scope, callback URL there); the hub's authenticator everywhere else."""

    hubfleet_backend = None

    @property
    def authenticator(self):
        if getattr(self, "_hubfleet_inner", False):
            return self.hubfleet_backend.inner
        return self.settings.get("authenticator")

    async def get(self, *args, **kwargs):
        self._hubfleet_inner = True
        try:
            result = super().get(*args, **kwargs)
            if inspect.isawaitable(result):
                await result
        finally:
            self._hubfleet_inner = False


class ForeignBackend(HubfleetBaseAuthenticator):
    """One ``backends[]`` entry of any Authenticator class, under the composite's policy and bindings."""

    backend_label = "sign-in"
    owns_refresh = True

    inner_class = Any(help="The Authenticator class of this entry.")
    inner = Any(help="The instance of `inner_class` doing the protocol.")

    trust_admin_groups = trust_admin_groups_trait(False)

    username_prefix = Unicode(
        "",
        config=True,
        help="""Put this in front of every username this backend returns (e.g. ``"gh-"``), before the hub's
        normalisation. Empty (default): the provider's username as it is.""",
    )

    subject_claim = Unicode(
        "",
        config=True,
        help="""Dotted path, in the provider's user info (``auth_state[user_auth_state_key]``), of the account's
        immutable id the hub user is bound to. Empty (default): ``id`` for GitHub and GitLab (numeric; a login
        can be renamed), ``uuid`` for Bitbucket, ``oid`` for Azure AD, ``metadata.uid`` for OpenShift, ``sub``
        for other OAuthenticators; for other Authenticators the username. A login without it is refused.""",
    )

    run_in_thread = Bool(
        config=True,
        help="""Run a password class's ``authenticate`` on this backend's thread pool (`executor_threads`), in an
        event loop of its own, bounded by `login_timeout`, so that a class making blocking calls never stalls the
        hub. Default: on for ldapauthenticator's ``LDAPAuthenticator`` (it queries the directory synchronously),
        off for other classes: a class that uses the hub's database session or clients bound to the hub's event
        loop must run on the hub's loop. OAuthenticators always run on the hub's loop (their calls do not
        block).""",
    )

    @default("run_in_thread")
    def _default_run_in_thread(self):
        return bool(BLOCKING_CLASSES & set(_mro_names(self.inner_class)))

    def __init__(self, *, inner_options: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        cls = self.inner_class
        self.is_oauth = issubclass(cls, _oauth_base())
        self.password_backend = not self.is_oauth
        options = dict(inner_options or {})
        options.setdefault("enable_auth_state", self.enable_auth_state)
        options["manage_groups"] = True
        section = self.config.get(cls.__name__, {})
        self.group_reader = next((GROUP_READERS[n] for n in _mro_names(cls) if n in GROUP_READERS), None)
        if (self.is_oauth and self.group_reader and "auth_state_groups_key" not in options
                and "auth_state_groups_key" not in section):
            options["auth_state_groups_key"] = self.group_reader
        try:
            self.inner = cls(parent=self, **options)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"{self.where}: {cls.__name__} refused its options: {e}") from e
        self.login_service = getattr(self.inner, "login_service", "") or self.backend_name
        self.backend_label = self.login_service or self.backend_name
        if self.group_reader is _ldapauthenticator_groups and not self.inner.allowed_groups:
            self.log.warning("%s: ldapauthenticator looks up only the groups of its own allowed_groups (group DNs, "
                             "c.LDAPAuthenticator.allowed_groups), which is empty: its users are in no group, so "
                             "no allowed_groups or admin_groups can match them.", self.where)
        if self.is_oauth:
            self._warn_if_tokenless(self.login_service)
            self._class_token_info = self.inner.get_token_info
            self.inner.get_token_info = self._checked_token_info
        if self.is_oauth and not self.inner.oauth_callback_url:
            app = hub_app(self)
            if app is not None:
                if not app.public_url:
                    raise ConfigError(
                        f"{self.where}: set c.JupyterHub.public_url or this entry's oauth_callback_url (the URL "
                        f"registered with {self.login_service}); callback URLs are never guessed from requests.")
                self.inner.oauth_callback_url = public_origin(app) + url_path_join(app.hub_prefix, "oauth_callback",
                                                                       self.backend_name)

    @property
    def where(self) -> str:
        return f"HubfleetAuthenticator.backends ({self.inner_class.__name__} {self.backend_name!r})"

    # ---- the login page and handlers ------------------------------------------------------------------------
    def oidc_buttons(self):
        return [(self.login_service, f"oauth_login/{self.backend_name}")] if self.is_oauth else []

    def callback_path(self) -> str:
        """The hub-relative path of this backend's callback handler, from its ``oauth_callback_url``."""
        url = self.inner.oauth_callback_url
        if not url:
            return f"/oauth_callback/{self.backend_name}"
        app = hub_app(self)
        prefix = app.hub_prefix if app is not None else "/hub/"
        path = urlparse(url).path
        if not path.startswith(prefix):
            raise ConfigError(f"{self.where}: oauth_callback_url {url!r} must be under the hub's {prefix!r}.")
        return "/" + path[len(prefix):].strip("/")

    def composed_handlers(self):
        if not self.is_oauth:
            return []
        name = self.backend_name
        login = type(f"ForeignLoginHandler_{name}", (_ForeignLoginMixin, self.inner.login_handler),
                     {"hubfleet_backend": self})
        callback = type(f"ForeignCallbackHandler_{name}", (self.inner.callback_handler,), {"hubfleet_backend": self})
        return [(f"/oauth_login/{name}", login), (self.callback_path(), callback)]

    async def provider_logout_url(self, handler) -> str | None:
        return getattr(self.inner, "logout_redirect_url", "") or None

    # ---- login ------------------------------------------------------------------------------------------------
    def _unavailable(self, e: Exception) -> web.HTTPError:
        self.log.error("%s (%s) unavailable: %r", self.backend_name, self.login_service, e)
        return web.HTTPError(503, self.unavailable_message.format(label=self.login_service))

    async def _inner_call(self, coro):
        """A call into the inner authenticator, bounded by `login_timeout`; a provider that fails (5xx, not
        JSON, a missing field, no answer) is "unavailable", a 4xx a refusal."""
        try:
            return await asyncio.wait_for(coro, self.login_timeout)
        except web.HTTPError as e:
            if e.status_code >= 500:
                raise self._unavailable(e) from e
            raise
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:
                raise self._unavailable(e) from e
            self.log.warning("%s refused the sign-in: %s", self.login_service, e)
            raise web.HTTPError(403, f"Sign-in with {self.login_service} refused; start again from the login "
                                     f"page.") from e
        except _HTTP_FAILURES as e:
            raise self._unavailable(e) from e

    async def _checked_token_info(self, handler, params):
        """The class's own token request (code or refresh grant), its answer checked before the class uses it: a
        refusal (the class's 4xx: the provider answered an error instead of a token — the code or the client is
        not this hub's) or an id_token meant for another client ends the sign-in (fail closed)."""
        refresh = params.get("grant_type") == "refresh_token"
        try:
            info = await self._class_token_info(handler, params)
        except web.HTTPError as e:  # oauthenticator: an error answer with HTTP 200 (GitHub's way)
            if e.status_code >= 500:
                raise
            raise self._no_token(e.log_message or str(e), refresh=refresh) from e
        except HTTPClientError as e:  # an error answer with HTTP 4xx (RFC 6749 5.2)
            if e.code == 599 or e.code >= 500:
                raise
            raise self._no_token(_error_answer(e), refresh=refresh) from e
        if info.get("id_token"):
            claims = unverified_claims(info["id_token"])
            why = "the id_token is not a readable JWT." if claims is None else audience_problem(
                claims, self.inner.client_id)
            if why:
                raise self._no_token(why, refresh=refresh)
        return info

    def _no_token(self, why: str, *, refresh: bool) -> web.HTTPError:
        if refresh:
            self.log.warning("%s (%s): the token endpoint gave no token at refresh: %s", self.backend_name,
                             self.login_service, why)
        else:
            self.log.error("%s (%s): no token for client %r: %s. Check this entry's client_id and client_secret "
                           "and that the provider's app (client) is the one this hub is registered as.",
                           self.backend_name, self.login_service, self.inner.client_id, why)
        return web.HTTPError(403, f"Sign-in with {self.login_service} failed: {self.login_service} did not give "
                                  f"this hub a token for your sign-in (its answer was meant for another application, or "
                                  f"it refused this hub's). Start again from the login page; if it fails again, "
                                  f"tell the hub's administrators.")

    async def authenticate(self, handler, data=None):
        if not self.is_oauth:
            return await super().authenticate(handler, data)
        model = await self._inner_call(self.inner.authenticate(handler, data))
        if not model:
            return None
        result, allows = await self._inner_call(self._result(model))
        await self._follow_rename(result)
        model = self.owner.auth_model(result, model.get("auth_state"), backend_allows=allows)
        if model:
            self._origin[model["name"]] = self.backend_name
        return model

    async def authenticate_password(self, username, password):
        data = {"username": username, "password": password}
        try:
            if self.run_in_thread:
                model = await self._inner_call(self.run_blocking(_in_own_loop, self.inner.authenticate, None, data))
            else:
                model = await self._inner_call(self.inner.authenticate(None, data))
        except web.HTTPError as e:
            raise BackendUnavailable(self.login_service, str(e.log_message)) from e
        except BackendUnavailable:
            raise
        except Exception as e:  # the class itself failed (e.g. its directory dropped the connection): fail closed
            self.log.error("%s (%s): the login failed in the class: %r", self.backend_name, self.login_service, e)
            raise BackendUnavailable(self.login_service, repr(e)) from e
        if not model:
            return None
        result, _ = await self._result(model if isinstance(model, dict) else {"name": model})
        return result

    async def _result(self, model: dict) -> tuple[BackendResult, str]:
        """The inner model as a :class:`BackendResult` (name, provider groups, subject) and the reason the
        class's own allow-list allows the user ("" if none)."""
        state = model.get("auth_state") or {}
        raw = self.username_prefix + str(model.get("name") or "")
        name = self.owner.canonical_username(raw)
        if not name:
            raise web.HTTPError(403, f"Sign-in with {self.login_service} refused: {raw!r} is not a valid hub "
                                     f"username.")
        allowed = self.inner.check_blocked_users(name, model)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise web.HTTPError(403, f"Sign-in with {self.login_service} refused for {name}.")
        key = getattr(self.inner, "user_auth_state_key", "")
        user_info = state.get(key) or {} if key else {}
        path = self.subject_claim or next((SUBJECT_CLAIMS[n] for n in _mro_names(self.inner_class)
                                           if n in SUBJECT_CLAIMS), "")
        if path:
            subject = policy.claim_at_path(user_info if self.is_oauth else state, path)
            if subject in (None, ""):
                raise web.HTTPError(403, f"Sign-in with {self.login_service} refused: the provider sent no "
                                         f"account id ({path!r}).")
        else:
            subject = name
        groups = set(model["groups"] or []) if "groups" in model else set(
            self.group_reader(state) if self.group_reader else ())
        allows = ""
        orgs = getattr(self.inner, "allowed_organizations", None)
        if orgs and "login" in user_info:
            token = state.get("token_response") or {}
            for org in sorted(orgs):
                if await self.inner._check_membership_allowed_organizations(
                        org, user_info["login"], token.get("access_token"), token.get("token_type", "bearer")):
                    groups.add(org)
                    allows = allows or f"member of allowed_organizations {org!r}"
        attrs = {k: user_info[k] for k in ("email", "name", "login") if isinstance(user_info.get(k), str)}
        return BackendResult(name=name, groups=sorted(groups), attributes=attrs, backend=self.backend_name,
                             subject=str(subject)), allows

    async def _follow_rename(self, result: BackendResult) -> None:
        """An account renamed at the provider stays the hub user its subject is bound to."""
        try:
            bound = await self.owner.bindings.name_of(self.backend_name, result.subject)
        except BindingStoreError as e:
            self.log.error("user:%s login refused: bindings unusable: %s", result.name, e)
            raise web.HTTPError(503, UNAVAILABLE) from e
        if bound and bound != result.name:
            self.log.info("user:%s is %s account %s, bound to hub user %s: signing in as %s", result.name,
                          self.login_service, result.subject, bound, bound)
            result.name = bound

    # ---- refresh and spawn ------------------------------------------------------------------------------------
    async def refresh_user(self, user, handler=None):
        """The class's own refresh (tokens, ``refresh_user_hook``), then the policy and the binding again."""
        self._prepare_handler_for_refresh(handler)
        if self.is_oauth and not self.enable_auth_state:  # the class would answer True: nothing was checked
            return self._tokenless_refresh(user.name, self.login_service)
        if not self.refresh_groups:
            return True
        try:
            refreshed = await self._inner_call(self.inner.refresh_user(user, handler))
            if not isinstance(refreshed, dict):
                return bool(refreshed)
            result, allows = await self._inner_call(self._result(refreshed))
            await self._follow_rename(result)
        except web.HTTPError as e:
            if e.status_code >= 500:
                return self.owner._outage(user.name, BackendUnavailable(self.login_service, str(e.log_message)))
            self.log.info("user:%s refresh refused by %s: %s", user.name, self.login_service, e.log_message)
            return False
        if result.name != user.name or not await self.owner.bindings.check(user.name, self.backend_name,
                                                                           result.subject, login=False):
            return False
        model = self.owner.auth_model(result, refreshed.get("auth_state"), backend_allows=allows)
        if not model:
            return False
        self.owner._verified[user.name] = time.monotonic()  # a successful check: refresh_outage_grace counts from it
        if not self.enable_auth_state:
            model.pop("auth_state", None)
        return model

    async def pre_spawn_start(self, user, spawner):
        result = self.inner.pre_spawn_start(user, spawner)
        if inspect.isawaitable(result):
            await result

    async def lookup_user(self, username):
        return None


def _in_own_loop(func, *args):
    """``func(*args)`` awaited, when it returns an awaitable, in an event loop of this (worker) thread's own."""
    result = func(*args)
    if not inspect.isawaitable(result):
        return result

    async def wait():
        return await result

    return asyncio.run(wait())
