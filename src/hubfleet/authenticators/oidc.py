"""OpenID Connect backend: oauthenticator's GenericOAuthenticator with discovery, PKCE, nonce and verified id_tokens.

The protocol is oauthenticator's: ``authenticate`` and ``refresh_user`` run its steps (``get_token_info``,
``token_to_user``, ``user_info_to_username``, ``build_auth_state_dict``, ``modify_auth_state_hook``,
``update_auth_model``, ``get_user_groups``, ``refresh_user_hook``), so GenericOAuthenticator's options
(``username_claim`` incl. a callable, ``auth_state_groups_key`` / ``claim_groups_key``, ``modify_auth_state_hook``,
``userdata_params``, ``allowed_scopes``, ``token_params``, ...) keep their meaning. What hubfleet plugs into those
hooks:

- ``get_token_info``: endpoints discovered from `issuer` (:mod:`.oidc_tokens`), then the id_token of every token
  response verified against the provider's JWKS (signature, ``iss``, ``aud``/``azp``, ``exp``, ``iat``, ``sub``,
  and at login the ``nonce`` bound to the signed state cookie);
- ``token_to_user``: the verified claims, merged with userinfo (whose ``sub`` must be the id_token's); at refresh
  the subject must not change;
- ``get_user_groups``: the provider's group names from ``auth_state_groups_key`` (default
  ``oauth_user.<groups_claim>``), as sent;
- after the model is built, the hubfleet policy (``auth_model``, one call) maps those names with this backend's
  `group_mapping` / `group_prefix` and decides access and admin (``BackendResult`` with ``backend`` and ``subject``
  = the id_token's ``sub``); oauthenticator's own admin flag (``admin_groups`` against the unmapped names) is not
  used. A login whose ``sub`` differs from the one stored for that hub user is refused.

URLs the provider sends the browser back to (``redirect_uri``, ``post_logout_redirect_uri``) come from
`oauth_callback_url` or ``c.JupyterHub.public_url``, never from the request's Host header.

Inside :class:`~hubfleet.authenticators.composite.HubfleetAuthenticator` each OIDC backend has its own
``/hub/oauth_login/<name>`` and ``/hub/oauth_callback/<name>`` and a "Sign in with <login_service>" button.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

from jupyterhub.utils import url_path_join
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import _deserialize_state
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Float, Integer, List, Unicode, default

from . import policy
from .base import (BackendResult, BackendUnavailable, ConfigError, HubfleetBaseAuthenticator, HubfleetLogoutHandler,
                   hub_app, public_origin, trust_admin_groups_trait)
from .oidc_handlers import OIDCCallbackHandler, OIDCLoginHandler
from .oidc_tokens import IdTokenRefused, Provider, check_provider_urls, verify_id_token


@dataclass
class _Flow:
    """What one login or refresh has learnt so far, shared by the hooks oauthenticator calls in turn."""

    previous: dict | None = None  # the stored auth_state (refresh only)
    id_claims: dict | None = None  # claims of an id_token verified in this flow
    claims: dict | None = None  # the identity claims this flow uses (fresh, or at refresh the stored ones)
    raw_groups: list[str] | None = None


_FLOW: contextvars.ContextVar[_Flow | None] = contextvars.ContextVar("hubfleet_oidc_flow", default=None)

_HTTP_ERRORS = (HTTPClientError, OSError, TimeoutError)


def _unavailable_error(e: Exception) -> bool:
    """A transport failure or a 5xx (the provider is at fault), as opposed to a refusal (4xx)."""
    return not isinstance(e, HTTPClientError) or e.code == 599 or e.code >= 500


class HubfleetOIDCAuthenticator(HubfleetBaseAuthenticator, GenericOAuthenticator):
    """OpenID Connect with discovery, PKCE, nonce and JWKS-verified id_tokens, under the hubfleet policy."""

    backend_label = "OIDC"
    password_backend = False
    login_handler = OIDCLoginHandler
    callback_handler = OIDCCallbackHandler
    logout_handler = HubfleetLogoutHandler

    issuer = Unicode(
        "",
        config=True,
        help="""The provider's issuer URL, e.g. ``https://keycloak.example.org/realms/hub``. Required.

        ``<issuer>/.well-known/openid-configuration`` gives the authorization, token, userinfo, JWKS and
        end-session endpoints (explicitly set `authorize_url`, `token_url`, `userdata_url` win). The
        document's ``issuer`` must equal this value, and so must every id_token's ``iss``. Must be ``https://``
        unless `allow_http_issuer` is on.
        """,
    )

    allow_http_issuer = Bool(
        False,
        config=True,
        help="""Development only: accept a plain ``http://`` issuer and endpoints.

        Off (the default), an ``http://`` `issuer`, `authorize_url`, `token_url` or `userdata_url`, or an
        ``http://`` endpoint in the discovery document, is refused: authorization codes, tokens and the client
        secret would cross the network unencrypted. Turn it on for a provider on localhost in tests or a demo.
        """,
    )

    groups_claim = Unicode(
        "groups",
        config=True,
        help="""Dotted path of the claim holding the user's groups in the id_token / userinfo, e.g. ``groups``
        or ``realm_access.roles``. A missing claim means no groups.

        Shorthand for GenericOAuthenticator's ``auth_state_groups_key = "oauth_user.<groups_claim>"``; set
        one of the two (or ``claim_groups_key``), not several.
        """,
    )

    require_email_verified = Bool(
        False,
        config=True,
        help="""Refuse users whose ``email_verified`` claim is not true.""",
    )

    trust_admin_groups = trust_admin_groups_trait(False)

    id_token_algorithms = List(
        Unicode(),
        default_value=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"],
        config=True,
        help="""Signature algorithms accepted for id_tokens (``none`` and HMAC are never accepted).""",
    )

    clock_skew = Integer(
        60,
        config=True,
        help="""Seconds of clock difference tolerated when checking an id_token's ``exp`` and ``iat``.""",
    )

    http_timeout = Float(
        10.0,
        config=True,
        help="""Connect and request timeout (seconds) for every call to the provider (discovery, JWKS, token,
        userinfo), unless `http_request_kwargs` sets ``connect_timeout`` / ``request_timeout``. A provider that
        does not answer in time makes the login page say it is unavailable.
        """,
    )

    discovery_ttl = Float(
        3600.0,
        config=True,
        help="""Seconds the discovery document and JWKS are cached (an unknown ``kid`` re-fetches the JWKS at once).""",
    )

    use_end_session_endpoint = Bool(
        True,
        config=True,
        help="""On logout, send users who signed in with this provider to its ``end_session_endpoint``
        (RP-initiated logout) when `logout_redirect_url` is not set.""",
    )

    @default("login_service")
    def _default_login_service(self):
        name = self.backend_name
        return "OpenID Connect" if name in ("", "oidc") else name.replace("-", " ").replace("_", " ").title()

    @default("username_claim")
    def _default_username_claim(self):
        return "preferred_username"

    @default("scope")
    def _default_scope(self):
        return ["openid", "profile", "email"]

    @default("http_request_kwargs")
    def _default_http_request_kwargs(self):
        return {"connect_timeout": self.http_timeout, "request_timeout": self.http_timeout}

    @default("userdata_from_id_token")
    def _default_userdata_from_id_token(self):
        return False

    @default("auth_state_groups_key")
    def _default_auth_state_groups_key(self):
        if callable(self.claim_groups_key):  # as GenericOAuthenticator: the callable gets the user info
            return lambda auth_state: self.claim_groups_key(auth_state[self.user_auth_state_key])
        key = self.groups_claim if self.claim_groups_key == "groups" else self.claim_groups_key
        return f"{self.user_auth_state_key}.{key}"

    def __init__(self, **kwargs):
        self._provider: Provider | None = None
        super().__init__(**kwargs)

    @property
    def composed(self) -> bool:
        return self.policy_owner is not None and self.policy_owner is not self

    @property
    def label(self) -> str:
        return f"OIDC: {self.login_service}"

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = Provider(owner=type(self).__name__, issuer=self.issuer, fetch_json=self._get_json,
                                      ttl=self.discovery_ttl, allow_http=self.allow_http_issuer)
        return self._provider

    # ---- start-up checks -------------------------------------------------------------------------------------
    def check_config(self):
        super().check_config()
        cls = type(self).__name__
        check_provider_urls(cls, issuer=self.issuer, allow_http=self.allow_http_issuer,
                            urls={t: getattr(self, t) for t in ("authorize_url", "token_url", "userdata_url")})
        if not self.client_id:
            raise ConfigError(f"{cls}.client_id is not set (the client registered with the provider).")
        if "openid" not in self.scope:
            raise ConfigError(f"{cls}.scope {self.scope!r} must include 'openid' (else there is no id_token).")
        bad = {a for a in self.id_token_algorithms if a.lower() == "none" or a.upper().startswith("HS")}
        if bad:
            raise ConfigError(f"{cls}.id_token_algorithms must not contain {sorted(bad)}; use asymmetric algorithms.")
        key = self.auth_state_groups_key
        if self.groups_claim != "groups" and key != f"{self.user_auth_state_key}.{self.groups_claim}":
            raise ConfigError(
                f"{cls}.groups_claim = {self.groups_claim!r} and auth_state_groups_key/claim_groups_key = {key!r} "
                f"both say where the groups are; set only one (groups_claim X is auth_state_groups_key "
                f"'{self.user_auth_state_key}.X')."
            )
        if self.composed and self.allowed_scopes:
            raise ConfigError(
                f"{cls}.allowed_scopes is honoured by hubfleet-oidc on its own, not inside hubfleet (the composite "
                f"decides access from groups and users only); use allowed_groups there."
            )
        self._warn_if_tokenless(self.label)
        if not self.oauth_callback_url:
            app = hub_app(self)
            if app is not None and not app.public_url:
                raise ConfigError(
                    f"{cls}: set c.JupyterHub.public_url (e.g. 'https://hub.example.org/') or "
                    f"{cls}.oauth_callback_url; the OAuth callback and post-logout URLs are built from them, "
                    f"never from the request's Host header."
                )

    # ---- URLs from configuration ---------------------------------------------------------------------------
    def _public_origin(self) -> tuple[str, str]:
        """(``scheme://host[:port]``, the hub's path prefix) from configuration; ("", "") when unknown."""
        app = hub_app(self)
        prefix = app.hub_prefix if app is not None else "/hub/"
        if public_origin(app):
            return public_origin(app), prefix
        if self.oauth_callback_url:
            u = urlparse(self.oauth_callback_url)
            return f"{u.scheme}://{u.netloc}", prefix
        return "", prefix

    def get_callback_url(self, handler=None):
        if self.oauth_callback_url:
            return self.oauth_callback_url
        origin, prefix = self._public_origin()
        if not origin:
            raise web.HTTPError(500, f"{self.label}: set c.JupyterHub.public_url or oauth_callback_url "
                                     f"(the callback URL is not guessed from the request).")
        path = url_path_join(prefix, "oauth_callback")
        if self.composed:
            path = url_path_join(path, self.backend_name)
        return origin + path

    async def provider_logout_url(self, handler) -> str | None:
        if self.logout_redirect_url:
            return self.logout_redirect_url
        if not self.use_end_session_endpoint:
            return None
        try:
            doc = await self.provider.discover()
        except Exception as e:  # logout must work while the provider is down
            self.log.warning("%s: no provider logout (%s)", self.label, e)
            return None
        end = doc.get("end_session_endpoint")
        origin, prefix = self._public_origin()
        if not end or not origin:
            return None
        back = origin + url_path_join(prefix, "login")
        query = urlencode({"client_id": self.client_id, "post_logout_redirect_uri": back})
        return f"{end}{'&' if '?' in end else '?'}{query}"

    # ---- provider I/O -----------------------------------------------------------------------------------------
    async def httpfetch(self, url, label="fetching", parse_json=True, raise_error=True, **kwargs):
        for key in ("connect_timeout", "request_timeout"):  # every call bounded, unless configured otherwise
            if key not in self.http_request_kwargs:
                kwargs.setdefault(key, self.http_timeout)
        return await super().httpfetch(url, label=label, parse_json=parse_json, raise_error=raise_error, **kwargs)

    async def _get_json(self, url: str, what: str):
        return await self.httpfetch(url, label=f"fetching {what}", method="GET",
                                    headers={"Accept": "application/json"}, validate_cert=self.validate_server_cert)

    async def discover(self) -> dict:
        doc = await self.provider.discover()
        # explicit configuration wins over discovery
        if not self.authorize_url:
            self.authorize_url = doc.get("authorization_endpoint", "")
        if not self.token_url:
            self.token_url = doc.get("token_endpoint", "")
        if not self.userdata_url and doc.get("userinfo_endpoint") and not self.userdata_from_id_token:
            self.userdata_url = doc["userinfo_endpoint"]
        return doc

    async def discover_or_503(self) -> dict:
        try:
            return await self.discover()
        except ConfigError as e:
            self.log.error("%s discovery refused: %s", self.label, e)
            raise web.HTTPError(500, f"The login service ({self.label}) is misconfigured: {e}") from e
        except (*_HTTP_ERRORS, ValueError) as e:
            raise self._unavailable(e) from e

    def _refuse(self, why: str) -> web.HTTPError:
        self.log.warning("%s sign-in refused: %s", self.label, why)
        return web.HTTPError(403, f"Sign-in with {self.login_service} refused: {why}")

    def _unavailable(self, e: Exception) -> web.HTTPError:
        self.log.error("%s unavailable: %s", self.label, e)
        return web.HTTPError(503, self.unavailable_message.format(label=self.label))

    async def verify_id_token(self, id_token: str, nonce: str | None) -> dict:
        """Verify ``id_token`` (signature against the JWKS, iss, aud/azp, exp, iat, sub, nonce); its claims."""
        try:
            return await verify_id_token(self.provider, id_token, client_id=self.client_id,
                                         algorithms=list(self.id_token_algorithms), leeway=self.clock_skew,
                                         nonce=nonce)
        except IdTokenRefused as e:
            raise self._refuse(str(e)) from e
        except ConfigError as e:
            raise web.HTTPError(500, f"The login service ({self.label}) is misconfigured: {e}") from e

    # ---- oauthenticator's hooks ----------------------------------------------------------------------------
    def _flow(self) -> _Flow:
        flow = _FLOW.get()
        if flow is None:  # a hook called outside authenticate/refresh_user: nothing was verified
            raise self._refuse("no verified id_token for this request.")
        return flow

    async def get_token_info(self, handler, params):
        """oauthenticator's token request, then the id_token of the answer verified (nonce-bound at login)."""
        refresh = params.get("grant_type") == "refresh_token"
        try:
            token_info = await super().get_token_info(handler, params)
        except HTTPClientError as e:
            if refresh or _unavailable_error(e):
                raise
            raise self._refuse("the provider did not accept the authorization code; sign in again.") from e
        token_info.setdefault("token_type", "Bearer")
        flow = self._flow()
        if not refresh:
            cookie = handler.get_state_cookie() if hasattr(handler, "get_state_cookie") else ""
            nonce = _deserialize_state(cookie).get("nonce") if cookie else None
            if not nonce:
                raise self._refuse("the sign-in state has no nonce; start again from the login page.")
            flow.id_claims = await self.verify_id_token(token_info.get("id_token"), nonce)
        elif token_info.get("id_token"):  # a refresh may return a new id_token (OIDC Core 12.2)
            flow.id_claims = await self.verify_id_token(token_info["id_token"], None)
        return token_info

    async def token_to_user(self, token_info):
        """The verified id_token claims (at refresh without a new id_token: the stored ones) merged with userinfo."""
        flow = self._flow()
        stored = (flow.previous or {}).get("oidc_claims") or None
        claims = flow.id_claims or stored
        if not claims:
            raise self._refuse("no verified id_token for this sign-in.")
        if stored and claims.get("sub") != stored.get("sub"):
            raise self._refuse("the provider now names another account (subject) for this session.")
        info: dict = {}
        if self.userdata_url and not self.userdata_from_id_token:
            info = await super().token_to_user(token_info)  # userdata_url, userdata_params, userdata_token_method
            if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
                raise self._refuse("the userinfo subject differs from the id_token subject.")
        flow.claims = claims
        return {**claims, **info}

    def user_info_to_username(self, user_info):
        try:
            name = super().user_info_to_username(user_info)  # username_claim: a claim name or a callable
        except ValueError as e:
            what = "the username_claim callable found no name" if callable(self.username_claim) else (
                f"the provider sent no {self.username_claim!r} claim")
            raise self._refuse(f"{what}.") from e
        return name

    def build_auth_state_dict(self, token_info, user_info):
        state = super().build_auth_state_dict(token_info, user_info)
        flow = self._flow()
        previous = flow.previous or {}
        state["oidc_claims"] = flow.claims
        if not state.get("id_token") and previous.get("id_token"):  # refresh answers often carry none
            state["id_token"] = previous["id_token"]
        return state

    async def get_user_groups(self, auth_state: dict):
        """The provider's group names at ``auth_state_groups_key`` (a dotted path or a callable), as sent; the
        hubfleet policy maps them (``auth_model``)."""
        key = self.auth_state_groups_key
        if callable(key):
            raw = await super().get_user_groups(auth_state)
        else:
            value = policy.claim_at_path(auth_state, key) if key else None
            raw = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple, set)) else []
        raw = sorted({str(g) for g in raw})
        flow = _FLOW.get()
        if flow is not None:
            flow.raw_groups = raw
        return set(raw)

    # ---- the hubfleet policy on oauthenticator's model ---------------------------------------------------------
    def _finish(self, model: dict) -> dict | None:
        """oauthenticator's auth model -> the hubfleet model through the policy's one call (``auth_model``), or
        None when the policy refuses the user. The name is the one oauthenticator normalised (``normalize_username``,
        once); oauthenticator's admin flag is not used: admin comes from the policy only."""
        flow = self._flow()
        if not model.get("name"):
            raise self._refuse("the account name is not a valid hub username.")
        state = model.get("auth_state") or {}
        user_info = state.get(self.user_auth_state_key) or {}
        if self.require_email_verified and user_info.get("email_verified") is not True:
            raise self._refuse(
                f"your email address {user_info.get('email', '')!s} is not verified at {self.login_service}; "
                "verify it there and sign in again."
            )
        claims = state.get("oidc_claims") or flow.claims or {}
        attrs = {k: user_info[k] for k in ("email", "name") if isinstance(user_info.get(k), str)}
        result = BackendResult(name=model["name"], groups=list(flow.raw_groups or []), attributes=attrs,
                               backend=self.backend_name, subject=str(claims.get("sub", "")))
        allows = ""
        if self.allowed_scopes and not self.composed and set(self.allowed_scopes) <= set(state.get("scope") or []):
            allows = f"granted scopes {sorted(self.allowed_scopes)}"
        return self.owner.auth_model(result, state, backend_allows=allows)

    async def authenticate(self, handler, data=None, **kwargs):
        """oauthenticator's authenticate (code -> tokens -> user model) under discovery, checks and policy."""
        await self.discover_or_503()
        token = _FLOW.set(_Flow())
        try:
            model = await GenericOAuthenticator.authenticate(self, handler, data)
            model = self._finish(model)  # the (backend, sub) binding is checked by the hub's authenticator
        except _HTTP_ERRORS as e:
            if _unavailable_error(e):
                raise self._unavailable(e) from e
            raise self._refuse("the provider refused the new access token at its userinfo endpoint.") from e
        finally:
            _FLOW.reset(token)
        if not model:
            return None
        self._origin[model["name"]] = self.backend_name
        return model

    async def refresh_user(self, user, handler=None, **kwargs):
        """oauthenticator's refresh: userinfo with the stored access token, else the refresh token. Without a
        userinfo endpoint, the refresh token (and the id_token it brings) alone. A session the provider cannot be
        asked about (no tokens kept without `enable_auth_state`; neither userinfo nor a refresh token) must log in
        again, and so must one the provider refuses; so does a provider that is down, unless
        ``refresh_outage_grace`` covers it (fail closed, as the other backends); the (backend, subject) binding is
        checked as at login."""
        self._prepare_handler_for_refresh(handler)
        if not self.enable_auth_state:
            return self._tokenless_refresh(user.name, self.label)
        auth_state = await user.get_auth_state()
        if self.refresh_user_hook is not None:
            refreshed = await self._call_refresh_user_hook(user, auth_state)
            if refreshed is not None:
                return refreshed
        if not self.refresh_groups:
            return True
        if not auth_state or not auth_state.get("token_response") or not auth_state.get("oidc_claims"):
            self.log.info("user:%s has no stored %s tokens; login required", user.name, self.label)
            return False
        token = _FLOW.set(_Flow(previous=auth_state))
        try:
            await self.discover()
            model = await self._refreshed_model(user, handler, auth_state)
            if model is None:
                return False
            model = self._finish(model)
        except web.HTTPError as e:
            if e.status_code >= 500:  # the provider is down: fail closed, as every backend does at refresh
                return self.owner._outage(user.name, BackendUnavailable(self.label, str(e.log_message)))
            self.log.info("user:%s refresh refused by %s: %s", user.name, self.label, e.log_message)
            return False
        except (*_HTTP_ERRORS, ConfigError) as e:
            return self.owner._outage(user.name, BackendUnavailable(self.label, f"unavailable ({e})"))
        finally:
            _FLOW.reset(token)
        if not model:
            return False
        subject = (model.get("auth_state") or {}).get("hubfleet_subject", "")
        if not await self.owner.bindings.check(model["name"], self.backend_name, subject, login=False):
            return False
        self.owner._verified[model["name"]] = time.monotonic()
        self._origin[model["name"]] = self.backend_name
        return model

    async def _refreshed_model(self, user, handler, auth_state: dict) -> dict | None:
        stored = auth_state["token_response"]
        if self.userdata_url and not self.userdata_from_id_token:
            try:
                return await self._token_to_auth_model(stored)
            except HTTPClientError as e:
                if _unavailable_error(e):
                    raise
                self.log.info("user:%s access token refused by %s (%s); trying the refresh token",
                              user.name, self.label, e.code)
        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:  # nothing the provider would answer for this session: it cannot be re-validated
            self.log.info("user:%s: %s has %s and no refresh token; login required", user.name, self.label,
                          "refused the access token" if self.userdata_url and not self.userdata_from_id_token
                          else "no userinfo endpoint")
            return None
        try:
            token_info = await self.get_token_info(handler, self.build_refresh_token_request_params(refresh_token))
        except HTTPClientError as e:
            if _unavailable_error(e):
                raise
            self.log.info("user:%s refresh token refused by %s (%s); login required", user.name, self.label, e.code)
            return None
        token_info.setdefault("refresh_token", refresh_token)
        return await self._token_to_auth_model(token_info)

    # ---- handlers ------------------------------------------------------------------------------------------
    def oidc_buttons(self):
        path = f"oauth_login/{self.backend_name}" if self.composed else "oauth_login"
        return [(self.login_service, path)]

    def get_custom_html(self, base_url):
        return HubfleetBaseAuthenticator.get_custom_html(self, base_url)

    def get_handlers(self, app):
        return [
            (r"/oauth_login", self.login_handler),
            (r"/oauth_callback", self.callback_handler),
            (r"/logout", self.logout_handler),
        ]

    def composed_handlers(self):
        backend = self
        login = type(f"OIDCLoginHandler_{self.backend_name}", (self.login_handler,), {"hubfleet_backend": backend})
        callback = type(f"OIDCCallbackHandler_{self.backend_name}", (self.callback_handler,),
                        {"hubfleet_backend": backend})
        return [(f"/oauth_login/{self.backend_name}", login), (f"/oauth_callback/{self.backend_name}", callback)]

    async def lookup_user(self, username):
        return None
