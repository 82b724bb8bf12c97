"""id_token verification of HubfleetOIDCAuthenticator with joserfc, against an in-memory JWKS (no sockets)."""

from __future__ import annotations

import asyncio
import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from tornado import web

from hubfleet.authenticators.oidc import HubfleetOIDCAuthenticator

ISSUER = "https://idp.example.org"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.fixture
def oidc():
    a = HubfleetOIDCAuthenticator(issuer=ISSUER, client_id="hub", login_service="IdP")
    a.provider.seed({"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}, KeySet([KEY]))
    return a


def token(key=KEY, alg="RS256", kid="k1", **overrides):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "hub", "sub": "s1", "iat": now, "exp": now + 300, "nonce": "n1", **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": kid}, claims, key)


def verify(a, tok, nonce="n1"):
    return asyncio.run(a.verify_id_token(tok, nonce))


def test_valid_token(oidc):
    assert verify(oidc, token())["sub"] == "s1"
    assert verify(oidc, token(aud=["hub", "other"], azp="hub"))["sub"] == "s1"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: token(iss="https://evil.example.org"), "issued by 'https://evil.example.org'"),
        (lambda: token(aud="other"), "audience mismatch"),
        (lambda: token(aud=["other", "hub"], azp="other"), "azp is not this client"),
        (lambda: token(exp=int(time.time()) - 3600), "has expired"),
        (lambda: token(iat=int(time.time()) + 3600), "issued in the future"),
        (lambda: token(nonce="n2"), "nonce mismatch"),
        (lambda: token(nonce=None), "nonce mismatch"),
        (lambda: token(sub=None), "no subject"),
        (lambda: token(key=OTHER), "signature does not match"),
        (lambda: token(key=OctKey.generate_key(256), alg="HS256"), "cannot be verified"),
        (lambda: "not.a.jwt", "cannot be verified"),
        (lambda: "", "no id_token"),
    ],
)
def test_refused_tokens(oidc, make, message):
    with pytest.raises(web.HTTPError) as e:
        verify(oidc, make())
    assert e.value.status_code == 403
    assert message in e.value.log_message and "Sign-in with IdP refused" in e.value.log_message


def test_unknown_kid_refetches_keys_once(oidc, monkeypatch):
    fetched = []
    new_key = RSAKey.generate_key(2048, parameters={"kid": "k2"})

    async def fake_get_json_rotated(url, what):
        fetched.append(what)
        return KeySet([new_key]).as_dict(private=False)

    monkeypatch.setattr(oidc.provider, "fetch_json", fake_get_json_rotated)
    claims = verify(oidc, token(key=new_key, kid="k2"))
    assert claims["sub"] == "s1" and fetched == ["JWKS"]


