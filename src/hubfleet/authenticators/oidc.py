"""OpenID Connect backend, built on oauthenticator's GenericOAuthenticator.

What it adds to GenericOAuthenticator (closing oauthenticator PR #822's gap, discovery):

- endpoints discovered from `issuer` (``/.well-known/openid-configuration``; the document's ``issuer`` must match),
  fetched lazily and cached, so a provider that is down at hub start does not stop the hub;
- PKCE (S256, oauthenticator's `enable_pkce`) and a ``nonce`` bound to the signed state cookie;
- the id_token verified with joserfc against the provider's JWKS (cached; re-fetched once on an unknown ``kid``):
  signature, ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat``, ``nonce``;
- groups from a configurable claim path (`groups_claim`, e.g. ``realm_access.roles``), optional
  `require_email_verified`, the hubfleet policy (allowed/admin groups, mapping, prefix);
- `refresh_user` re-reads userinfo with the stored access token (using the refresh token when it has expired), so
  group changes reach the hub; a revoked session requires a new login;
- logout redirects to `logout_redirect_url` or the provider's ``end_session_endpoint``.

Inside :class:`~hubfleet.authenticators.base.HubfleetAuthenticator` each OIDC backend has its own
``/hub/oauth_login/<name>`` and ``/hub/oauth_callback/<name>`` and a "Sign in with <login_service>" button.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet
from jupyterhub.utils import url_path_join
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, _deserialize_state, _serialize_state
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Float, Integer, List, Unicode, default

from . import policy
from .base import BackendResult, ConfigError, HubfleetBaseAuthenticator, HubfleetLogoutHandler


class OIDCLoginHandler(OAuthLoginHandler):
    """Start the authorization-code flow: discovery, state + PKCE verifier + nonce in the signed state cookie."""

    hubfleet_backend = None  # set on per-backend subclasses inside a composite

    @property
    def backend(self) -> HubfleetOIDCAuthenticator:
        return self.hubfleet_backend or self.authenticator

    async def get(self):
        backend = self.backend
        await backend.discover_or_503()
        state = {"state_id": self._generate_state_id(), "next_url": self._get_next_url()}
        params = dict(backend.extra_authorize_params)
        if backend.enable_pkce:
            verifier, challenge = self._generate_pkce_params()
            state["code_verifier"] = verifier
            params.update(code_challenge=challenge, code_challenge_method="S256")
        nonce = secrets.token_urlsafe(24)
        state["nonce"] = nonce
        self.set_state_cookie(_serialize_state(state))
        params.update(
            response_type="code",
            client_id=backend.client_id,
            redirect_uri=backend.get_callback_url(self),
            scope=" ".join(backend.scope),
            state=_serialize_state({"state_id": state["state_id"]}),
            nonce=nonce,
        )
        sep = "&" if "?" in backend.authorize_url else "?"
        self.redirect(f"{backend.authorize_url}{sep}{urlencode(params)}")


class OIDCCallbackHandler(OAuthCallbackHandler):
    """Finish the flow; errors carry a message that says what went wrong and what to do."""

    hubfleet_backend = None

    def check_state(self):
        cookie_state = self.get_state_cookie()
        url_state = self.get_state_url()
        cookie_id = _deserialize_state(cookie_state).get("state_id") if cookie_state else None
        url_id = _deserialize_state(url_state).get("state_id") if url_state else None
        if not cookie_id or cookie_id != url_id:
            self.log.warning("OIDC callback refused: state mismatch")
            raise web.HTTPError(
                400,
                "Sign-in refused: the login state does not match (OAuth state mismatch). The sign-in was started in "
                "another browser or has expired; start again from the login page.",
            )

    def check_error(self):
        error = self.get_argument("error", False)
        if error:
            message = self.get_argument("error_description", error)
            raise web.HTTPError(403, f"The identity provider refused the sign-in: {message}")

    async def get(self):
        self.check_arguments()
        user = await self.login_user()
        if user is None:
            backend = self.hubfleet_backend or self.authenticator
            raise web.HTTPError(403, backend.custom_403_message)
        self.redirect(self.get_next_url(user))


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
        help="""The provider's issuer URL, e.g. ``https://keycloak.example.org/realms/hub``.

        ``<issuer>/.well-known/openid-configuration`` gives the authorization, token, userinfo, JWKS and
        end-session endpoints (explicitly set `authorize_url`, `token_url`, `userdata_url` win). The
        document's ``issuer`` must equal this value, and so must every id_token's ``iss``.
        """,
    )

    groups_claim = Unicode(
        "groups",
        config=True,
        help="""Dotted path of the claim holding the user's groups in the id_token / userinfo, e.g. ``groups``
        or ``realm_access.roles``. A missing claim means no groups.
        """,
    )

    require_email_verified = Bool(
        False,
        config=True,
        help="""Refuse users whose ``email_verified`` claim is not true.""",
    )

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
        userinfo). A provider that does not answer in time makes the login page say it is unavailable.
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

    def __init__(self, **kwargs):
        self._discovery: dict | None = None
        self._discovered_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0
        super().__init__(**kwargs)

    @property
    def composed(self) -> bool:
        return self.policy_owner is not None and self.policy_owner is not self

    @property
    def label(self) -> str:
        return f"OIDC: {self.login_service}"

    def check_config(self):
        super().check_config()
        cls = type(self).__name__
        if not self.issuer and not (self.authorize_url and self.token_url):
            raise ConfigError(f"{cls}.issuer is not set; set it to the provider's issuer URL (discovery).")
        if self.issuer and not self.issuer.startswith(("https://", "http://")):
            raise ConfigError(f"{cls}.issuer {self.issuer!r} must be an http(s) URL.")
        if not self.client_id:
            raise ConfigError(f"{cls}.client_id is not set (the client registered with the provider).")
        if "openid" not in self.scope:
            raise ConfigError(f"{cls}.scope {self.scope!r} must include 'openid' (else there is no id_token).")
        bad = {a for a in self.id_token_algorithms if a.lower() == "none" or a.upper().startswith("HS")}
        if bad:
            raise ConfigError(f"{cls}.id_token_algorithms must not contain {sorted(bad)}; use asymmetric algorithms.")

    # ---- discovery and keys ----------------------------------------------------------------------------------
    async def _get_json(self, url: str, what: str):
        return await self.httpfetch(url, label=f"fetching {what}", method="GET",
                                    headers={"Accept": "application/json"}, validate_cert=self.validate_server_cert)

    async def discover(self) -> dict:
        if self._discovery is not None and time.monotonic() - self._discovered_at < self.discovery_ttl:
            return self._discovery
        if not self.issuer:
            doc = {}
        else:
            doc = await self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery")
            if not isinstance(doc, dict) or doc.get("issuer", "").rstrip("/") != self.issuer.rstrip("/"):
                raise ConfigError(
                    f"{type(self).__name__}.issuer is {self.issuer!r} but the provider's discovery document says "
                    f"issuer {doc.get('issuer') if isinstance(doc, dict) else None!r}; "
                    f"set issuer to the provider's value."
                )
        # explicit configuration wins over discovery
        if not self.authorize_url:
            self.authorize_url = doc.get("authorization_endpoint", "")
        if not self.token_url:
            self.token_url = doc.get("token_endpoint", "")
        if not self.userdata_url and doc.get("userinfo_endpoint"):
            self.userdata_url = doc["userinfo_endpoint"]
        self._discovery = doc
        self._discovered_at = time.monotonic()
        return doc

    async def discover_or_503(self) -> dict:
        try:
            return await self.discover()
        except ConfigError as e:
            self.log.error("%s discovery refused: %s", self.label, e)
            raise web.HTTPError(500, f"The login service ({self.label}) is misconfigured: {e}") from e
        except (HTTPClientError, OSError, TimeoutError, ValueError) as e:
            self.log.error("%s discovery failed: %s", self.label, e)
            raise web.HTTPError(503, self.unavailable_message.format(label=self.label)) from e

    async def _keyset(self, refresh: bool = False) -> KeySet:
        if (refresh or self._jwks is None or time.monotonic() - self._jwks_at > self.discovery_ttl):
            doc = await self.discover()
            if not doc.get("jwks_uri"):
                raise web.HTTPError(
                    500, f"{self.label}: the discovery document has no jwks_uri; cannot verify id_tokens."
                )
            self._jwks = KeySet.import_key_set(await self._get_json(doc["jwks_uri"], "JWKS"))
            self._jwks_at = time.monotonic()
        return self._jwks

    def _refuse(self, why: str) -> web.HTTPError:
        self.log.warning("%s sign-in refused: %s", self.label, why)
        return web.HTTPError(403, f"Sign-in with {self.login_service} refused: {why}")

    async def verify_id_token(self, id_token: str, nonce: str | None) -> dict:
        """Verify ``id_token`` (signature against the JWKS, iss, aud/azp, exp, iat, nonce) and return its claims."""
        if not isinstance(id_token, str) or not id_token:
            raise self._refuse("the provider returned no id_token.")
        try:
            try:
                token = jwt.decode(id_token, await self._keyset(), algorithms=list(self.id_token_algorithms))
            except jose_errors.InvalidKeyIdError:
                keys = await self._keyset(refresh=True)
                token = jwt.decode(id_token, keys, algorithms=list(self.id_token_algorithms))
        except jose_errors.BadSignatureError as e:
            raise self._refuse("the id_token signature does not match the provider's published keys.") from e
        except (jose_errors.InvalidKeyIdError, jose_errors.UnsupportedAlgorithmError, jose_errors.JoseError,
                ValueError) as e:
            raise self._refuse(f"the id_token cannot be verified ({type(e).__name__}).") from e
        claims = token.claims
        options = {
            "iss": {"essential": True, "value": self.issuer or claims.get("iss")},
            "aud": {"essential": True, "value": self.client_id},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(leeway=self.clock_skew, **options)
        try:
            registry.validate(claims)
        except jose_errors.ExpiredTokenError as e:
            raise self._refuse("the id_token has expired; check the clocks and sign in again.") from e
        except jose_errors.ClaimError as e:
            what = {
                "iss": f"the id_token was issued by {claims.get('iss')!r}, not the configured issuer {self.issuer!r}.",
                "aud": "the id_token is meant for another client (audience mismatch).",
                "nonce": "the id_token does not answer this sign-in (nonce mismatch); start again from the login page.",
                "exp": "the id_token has no valid expiry.",
                "sub": "the id_token has no subject.",
                "iat": "the id_token was issued in the future; check the clocks.",
            }.get(e.claim, f"the id_token claim {e.claim!r} is invalid.")
            raise self._refuse(what) from e
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise self._refuse("the id_token has several audiences and its azp is not this client.")
        return claims

    async def _userinfo(self, access_token: str, token_type: str = "Bearer") -> dict:
        if not self.userdata_url:
            return {}
        return await self.httpfetch(self.userdata_url, label="fetching userinfo", method="GET",
                                    headers=self.build_userdata_request_headers(access_token, token_type),
                                    validate_cert=self.validate_server_cert)

    # ---- results -------------------------------------------------------------------------------------------------
    def _result(self, claims: dict) -> BackendResult:
        if self.require_email_verified and claims.get("email_verified") is not True:
            raise self._refuse(
                f"your email address {claims.get('email', '')!s} is not verified at {self.login_service}; "
                "verify it there and sign in again."
            )
        try:
            name = self.user_info_to_username(claims)
        except ValueError as e:
            raise self._refuse(f"the provider sent no {self.username_claim!r} claim.") from e
        groups = policy.claim_at_path(claims, self.groups_claim) if self.groups_claim else None
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list):
            groups = []
        attrs = {k: claims[k] for k in ("email", "name") if isinstance(claims.get(k), str)}
        return BackendResult(name=str(name), groups=[str(g) for g in groups], attributes=attrs,
                             backend=self.backend_name)

    def _unavailable(self, e: Exception) -> web.HTTPError:
        self.log.error("%s unavailable: %s", self.label, e)
        return web.HTTPError(503, self.unavailable_message.format(label=self.label))

    async def authenticate(self, handler, data=None):
        await self.discover_or_503()
        cookie_state = handler.get_state_cookie() if hasattr(handler, "get_state_cookie") else ""
        nonce = _deserialize_state(cookie_state).get("nonce") if cookie_state else None
        if not nonce:
            raise self._refuse("the sign-in state has no nonce; start again from the login page.")
        params = self.build_access_tokens_request_params(handler, data)
        try:
            token_info = await self.get_token_info(handler, params)
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:
                raise self._unavailable(e) from e
            raise self._refuse("the provider did not accept the authorization code; sign in again.") from e
        except (OSError, TimeoutError) as e:
            raise self._unavailable(e) from e
        claims = await self.verify_id_token(token_info.get("id_token"), nonce)
        try:
            info = await self._userinfo(token_info["access_token"], token_info.get("token_type", "Bearer"))
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:
                raise self._unavailable(e) from e
            info = {}
        if info and info.get("sub") != claims.get("sub"):
            raise self._refuse("the userinfo subject differs from the id_token subject.")
        merged = {**claims, **(info or {})}
        result = self._result(merged)
        auth_state = self.build_auth_state_dict(token_info, merged)
        auth_state["oidc_claims"] = claims
        model = self.owner.auth_model(result, auth_state)
        self._origin[model["name"]] = self.backend_name
        return model

    async def refresh_user(self, user, handler=None):
        self._prepare_handler_for_refresh(handler)
        if not self.refresh_groups or not self.enable_auth_state:
            return True
        state = await user.get_auth_state()
        if not state or not state.get("access_token"):
            return True
        try:
            await self.discover()
            info = await self._userinfo(state["access_token"])
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:
                self.log.warning("user:%s refresh skipped: %s unavailable", user.name, self.label)
                return True
            info = None
        except (OSError, TimeoutError):
            return True
        token_info = state.get("token_response") or {}
        if info is None:  # the access token was refused: try the refresh token
            refresh_token = state.get("refresh_token")
            if not refresh_token:
                return False
            try:
                token_info = await self.get_token_info(handler, self.build_refresh_token_request_params(refresh_token))
                token_info.setdefault("refresh_token", refresh_token)
                info = await self._userinfo(token_info["access_token"], token_info.get("token_type", "Bearer"))
            except (HTTPClientError, web.HTTPError, OSError) as e:
                self.log.info("user:%s refresh token refused by %s (%s): login required", user.name, self.label, e)
                return False
            if token_info.get("id_token"):
                try:
                    state["oidc_claims"] = await self.verify_id_token(token_info["id_token"], None)
                except web.HTTPError:
                    return False
        old = state.get("oidc_claims") or {}
        if old.get("sub") and info.get("sub") != old.get("sub"):
            return False
        merged = {**old, **info}
        try:
            result = self._result(merged)
        except web.HTTPError:
            return False
        new_state = self.build_auth_state_dict(token_info, merged)
        new_state["oidc_claims"] = old
        model = self.owner.auth_model(result, new_state)
        owner = self.owner
        if not owner.check_blocked_users(model["name"], model) or not owner.check_allowed(model["name"], model):
            return False
        return model

    async def provider_logout_url(self, handler) -> str | None:
        if self.logout_redirect_url:
            return self.logout_redirect_url
        if not self.use_end_session_endpoint:
            return None
        try:
            doc = await self.discover()
        except Exception:
            return None
        end = doc.get("end_session_endpoint")
        if not end:
            return None
        back = f"{handler.request.protocol}://{handler.request.host}{url_path_join(handler.hub.base_url, 'login')}"
        query = urlencode({"client_id": self.client_id, "post_logout_redirect_uri": back})
        return f"{end}{'&' if '?' in end else '?'}{query}"

    # ---- URLs and handlers -------------------------------------------------------------------------------------
    def get_callback_url(self, handler=None):
        if self.oauth_callback_url:
            return self.oauth_callback_url
        if handler is None:
            raise ValueError("oauth_callback_url is not set and there is no request to guess it from")
        path = url_path_join(handler.hub.server.base_url, "oauth_callback")
        if self.composed:
            path = url_path_join(path, self.backend_name)
        return f"{handler.request.protocol}://{handler.request.host}{path}"

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

