"""The OIDC backend's provider side: discovery, the JWKS and id_token verification (joserfc).

:class:`Provider` fetches ``<issuer>/.well-known/openid-configuration`` and the JWKS lazily (a provider that is
down at hub start does not stop the hub), caches both for `discovery_ttl` seconds, re-fetches the JWKS once on an
unknown ``kid``, and refuses a document whose ``issuer`` differs from the configured one or whose endpoints are
plain ``http://`` (unless the development switch `allow_http_issuer` is on).

:func:`verify_id_token` checks an id_token's signature against that JWKS and its ``iss``, ``aud`` (and ``azp``),
``exp``, ``iat``, ``sub`` and ``nonce``; a refusal is an :class:`IdTokenRefused` whose message says which check
failed, in words a user can act on.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable

from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from .base import ConfigError, HubfleetAuthError

#: discovery keys holding URLs the hub (or the browser) is sent to
ENDPOINT_KEYS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint")


class IdTokenRefused(HubfleetAuthError):
    """An id_token (or the provider's answer around it) is refused; the message is shown to the user."""


def insecure_url(url: str) -> bool:
    """True for a plain-http URL (the only scheme besides https an OIDC client can be configured with)."""
    return url.lower().startswith("http://")


def check_provider_urls(cls: str, *, issuer: str, urls: dict[str, str], allow_http: bool) -> None:
    """Start-up checks of `issuer` and the configured endpoints (``urls``: option name -> value)."""
    if not issuer:
        hint = ""
        authorize = urls.get("authorize_url", "")
        if "/protocol/openid-connect/" in authorize:  # Keycloak: <issuer>/protocol/openid-connect/auth
            hint = f" (for this Keycloak realm: {authorize.split('/protocol/openid-connect/')[0]!r})"
        raise ConfigError(
            f"{cls}.issuer is not set; set it to the provider's issuer URL{hint}. hubfleet verifies every "
            f"id_token against the issuer's published keys, found through its discovery document."
        )
    if not issuer.lower().startswith(("https://", "http://")):
        raise ConfigError(f"{cls}.issuer {issuer!r} must be an http(s) URL: https://, or http:// only "
                          f"with allow_http_issuer for a development provider.")
    if allow_http:
        return
    for trait, url in {"issuer": issuer, **urls}.items():
        if insecure_url(url):
            raise ConfigError(
                f"{cls}.{trait} {url!r} is plain http: codes, tokens and the client secret would travel "
                f"unencrypted. Use https://, or for a development provider set {cls}.allow_http_issuer = True."
            )


class Provider:
    """Discovery document and JWKS of one issuer, fetched through ``fetch_json(url, what)`` and cached."""

    def __init__(self, *, owner: str, issuer: str, fetch_json: Callable[[str, str], Awaitable[object]],
                 ttl: float, allow_http: bool):
        self.owner = owner  # the class name, for messages ("HubfleetOIDCAuthenticator.issuer ...")
        self.issuer = issuer
        self.fetch_json = fetch_json
        self.ttl = ttl
        self.allow_http = allow_http
        self._discovery: dict | None = None
        self._discovered_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    def seed(self, discovery: dict, keys: KeySet) -> None:
        """Use ``discovery`` and ``keys`` as if just fetched (tests, or a site that pins them)."""
        self._discovery, self._discovered_at = discovery, time.monotonic()
        self._jwks, self._jwks_at = keys, time.monotonic()

    async def discover(self) -> dict:
        if self._discovery is not None and time.monotonic() - self._discovered_at < self.ttl:
            return self._discovery
        doc = await self.fetch_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery")
        if not isinstance(doc, dict) or str(doc.get("issuer", "")).rstrip("/") != self.issuer.rstrip("/"):
            said = doc.get("issuer") if isinstance(doc, dict) else None
            raise ConfigError(
                f"{self.owner}.issuer is {self.issuer!r} but the provider's discovery document says issuer "
                f"{said!r}; set issuer to the provider's value."
            )
        if not self.allow_http:
            plain = sorted(k for k in ENDPOINT_KEYS if insecure_url(str(doc.get(k) or "")))
            if plain:
                raise ConfigError(
                    f"the discovery document of {self.issuer} lists plain-http endpoints {plain}; tokens and codes "
                    f"would travel unencrypted. Fix the provider's public URL (https), or for a development "
                    f"provider set {self.owner}.allow_http_issuer = True."
                )
        self._discovery, self._discovered_at = doc, time.monotonic()
        return doc

    async def keyset(self, refresh: bool = False) -> KeySet:
        if refresh or self._jwks is None or time.monotonic() - self._jwks_at > self.ttl:
            doc = await self.discover()
            if not doc.get("jwks_uri"):
                raise ConfigError(f"the discovery document of {self.issuer} has no jwks_uri; cannot verify id_tokens.")
            try:
                self._jwks = KeySet.import_key_set(await self.fetch_json(doc["jwks_uri"], "JWKS"))
            except (ValueError, TypeError, KeyError, jose_errors.JoseError) as e:
                raise IdTokenRefused(f"the provider's published keys (JWKS) cannot be read ({type(e).__name__}).") from e
            self._jwks_at = time.monotonic()
        return self._jwks


_CLAIM_MESSAGES = {
    "aud": "the id_token is meant for another client (audience mismatch).",
    "nonce": "the id_token does not answer this sign-in (nonce mismatch); start again from the login page.",
    "exp": "the id_token has no valid expiry.",
    "sub": "the id_token has no subject.",
    "iat": "the id_token was issued in the future; check the clocks.",
}


def audience_problem(claims: dict, client_id: str) -> str:
    """Why an id_token with ``claims`` is not meant for ``client_id`` ("" when it is): its ``aud`` must name the
    client, and its ``azp``, when it has one (it must with several audiences), must be the client."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    if client_id not in audiences:
        return _CLAIM_MESSAGES["aud"]
    azp = claims.get("azp")
    if len(audiences) > 1 and azp != client_id:
        return "the id_token has several audiences and its azp is not this client."
    if azp is not None and azp != client_id:
        return "the id_token was issued to another client (its azp is not this client)."
    return ""


def unverified_claims(id_token: object) -> dict | None:
    """The claims of a compact JWS ``id_token`` read without checking its signature, or None when it is not one.
    Only for a token received straight from the provider's token endpoint over TLS, which OIDC Core 3.1.3.7
    accepts in place of the signature; what is read is checked (:func:`audience_problem`), never trusted."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


async def verify_id_token(provider: Provider, id_token: object, *, client_id: str, algorithms: list[str],
                          leeway: int, nonce: str | None) -> dict:
    """Verify ``id_token`` against ``provider``'s JWKS and return its claims; raise :class:`IdTokenRefused`.

    ``nonce`` is the value sent with this sign-in (required at login); None for a token from a refresh-token grant,
    which carries no nonce of its own (OIDC Core 12.2)."""
    if not isinstance(id_token, str) or not id_token:
        raise IdTokenRefused("the provider returned no id_token.")
    try:
        try:
            token = jwt.decode(id_token, await provider.keyset(), algorithms=list(algorithms))
        except jose_errors.InvalidKeyIdError:
            token = jwt.decode(id_token, await provider.keyset(refresh=True), algorithms=list(algorithms))
    except jose_errors.BadSignatureError as e:
        raise IdTokenRefused("the id_token signature does not match the provider's published keys.") from e
    except (jose_errors.JoseError, ValueError) as e:
        raise IdTokenRefused(f"the id_token cannot be verified ({type(e).__name__}).") from e
    claims = token.claims
    options = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": client_id},
        "exp": {"essential": True},
        "sub": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    try:
        jwt.JWTClaimsRegistry(leeway=leeway, **options).validate(claims)
    except jose_errors.ExpiredTokenError as e:
        raise IdTokenRefused("the id_token has expired; check the clocks and sign in again.") from e
    except jose_errors.ClaimError as e:
        if e.claim == "iss":
            why = f"the id_token was issued by {claims.get('iss')!r}, not the configured issuer {provider.issuer!r}."
        else:
            why = _CLAIM_MESSAGES.get(e.claim, f"the id_token claim {e.claim!r} is invalid.")
        raise IdTokenRefused(why) from e
    why = audience_problem(claims, client_id)
    if why:
        raise IdTokenRefused(why)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IdTokenRefused("the id_token has no subject.")
    return dict(claims)
