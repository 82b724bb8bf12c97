"""HubfleetOIDCAuthenticator without sockets: id_token verification (joserfc, in-memory JWKS), start-up checks,
and the oauthenticator hooks it overrides."""

from __future__ import annotations

import asyncio
import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from tornado import web

from hubfleet.authenticators import oidc as oidc_module
from hubfleet.authenticators.base import ConfigError
from hubfleet.authenticators.composite import HubfleetAuthenticator
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
        (lambda: token(azp="other"), "issued to another client"),
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




# ---- start-up checks (issue 8 defect 6, issue 9 item 3) ---------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"issuer": "http://idp.example.org"}, "issuer 'http://idp.example.org' is plain http"),
        ({"token_url": "http://idp.example.org/token"}, "token_url 'http://idp.example.org/token' is plain http"),
        ({"issuer": "", "authorize_url": "https://kc.example.org/realms/hub/protocol/openid-connect/auth"},
         "(for this Keycloak realm: 'https://kc.example.org/realms/hub')"),
        ({"groups_claim": "realm_access.roles", "auth_state_groups_key": "oauth_user.groups"}, "set only one"),
        ({"groups_claim": "roles", "claim_groups_key": "groups_list"}, "set only one"),
    ],
)
def test_config_refused_with_the_option_named(kwargs, message):
    with pytest.raises(ConfigError) as e:
        HubfleetOIDCAuthenticator(**{"issuer": ISSUER, "client_id": "hub", **kwargs})
    assert message in str(e.value)


def test_http_issuer_accepted_with_the_development_switch():
    a = HubfleetOIDCAuthenticator(issuer="http://127.0.0.1:9400", client_id="hub", allow_http_issuer=True)
    assert a.provider.allow_http


def test_groups_claim_is_generic_oauthenticators_auth_state_groups_key():
    assert HubfleetOIDCAuthenticator(issuer=ISSUER, client_id="hub").auth_state_groups_key == "oauth_user.groups"
    a = HubfleetOIDCAuthenticator(issuer=ISSUER, client_id="hub", groups_claim="realm_access.roles")
    assert a.auth_state_groups_key == "oauth_user.realm_access.roles"


def test_allowed_scopes_refused_inside_the_composite():
    with pytest.raises(ConfigError, match="allowed_scopes is honoured by hubfleet-oidc on its own"):
        HubfleetAuthenticator(backends=[{"kind": "oidc", "issuer": ISSUER, "client_id": "hub",
                                         "allowed_scopes": ["openid"]}])


def test_discovery_with_plain_http_endpoints_refused(oidc, monkeypatch):
    async def doc(url, what):
        return {"issuer": ISSUER, "token_endpoint": "http://idp.example.org/token", "jwks_uri": f"{ISSUER}/jwks"}

    oidc.provider._discovery = None
    monkeypatch.setattr(oidc.provider, "fetch_json", doc)
    with pytest.raises(ConfigError, match=r"lists plain-http endpoints \['token_endpoint'\]"):
        asyncio.run(oidc.provider.discover())


# ---- the hooks ---------------------------------------------------------------------------------------------
def _in_flow(coro_or_fn, **flow):
    """Run a hook as authenticate/refresh_user would: inside a flow."""
    async def run():
        token = oidc_module._FLOW.set(oidc_module._Flow(**flow))
        try:
            result = coro_or_fn()
            return await result if asyncio.iscoroutine(result) else result
        finally:
            oidc_module._FLOW.reset(token)
    return asyncio.run(run())


def test_groups_from_a_path_or_a_callable_then_mapped_by_the_policy(oidc):
    oidc.group_mapping = {"kc-users": "jupyter-users"}
    oidc.group_prefix = "sso-"
    state = {"oauth_user": {"groups": ["kc-users", "x"], "role": "solo"}}
    assert _in_flow(lambda: oidc.get_user_groups(state)) == {"kc-users", "x"}  # as sent: the policy maps them
    oidc.auth_state_groups_key = "oauth_user.role"  # a single string is one group, not its letters
    assert _in_flow(lambda: oidc.get_user_groups(state)) == {"solo"}
    oidc.auth_state_groups_key = lambda s: ["from-callable"]
    assert _in_flow(lambda: oidc.get_user_groups(state)) == {"from-callable"}
    oidc.allowed_groups = {"sso-jupyter-users"}
    model = {"name": "ann", "admin": None, "auth_state": {"oauth_user": {"sub": "s"}, "oidc_claims": {"sub": "s"}}}
    final = _in_flow(lambda: oidc._finish(model), raw_groups=["kc-users", "x"])
    assert final["groups"] == ["sso-jupyter-users", "sso-x"]


def test_backend_result_carries_backend_and_subject(oidc, monkeypatch):
    seen = []
    real = oidc.auth_model
    monkeypatch.setattr(oidc, "auth_model",
                        lambda result, state=None, **kw: seen.append(result) or real(result, state, **kw))
    oidc.allowed_groups = {"g"}
    model = {"name": "ann", "admin": True,  # oauthenticator's admin flag is not the policy's
             "auth_state": {"oauth_user": {"sub": "s-ann", "email": "ann@x"}, "oidc_claims": {"sub": "s-ann"}}}
    final = _in_flow(lambda: oidc._finish(model), raw_groups=["g"])
    assert (seen[0].backend, seen[0].subject, seen[0].name) == ("oidc", "s-ann", "ann")
    assert final["name"] == "ann" and final["auth_state"]["hubfleet_backend"] == "oidc"
    assert final["admin"] is None


def test_email_verification(oidc):
    oidc.require_email_verified = True
    model = {"name": "ann", "admin": None, "auth_state": {"oauth_user": {"email": "a@x", "email_verified": False}}}
    with pytest.raises(web.HTTPError, match="not verified"):
        _in_flow(lambda: oidc._finish(model))


def test_username_claim_missing_is_a_clear_refusal(oidc):
    with pytest.raises(web.HTTPError, match="the provider sent no 'preferred_username' claim"):
        _in_flow(lambda: oidc.user_info_to_username({"sub": "s"}))


def test_hooks_outside_a_flow_refuse(oidc):
    with pytest.raises(web.HTTPError, match="no verified id_token"):
        asyncio.run(oidc.token_to_user({"access_token": "t"}))


def test_allowed_scopes_let_in_on_its_own(oidc):
    oidc.allowed_scopes = ["openid", "profile"]
    claims = {"oauth_user": {"sub": "s"}, "oidc_claims": {"sub": "s"}}
    granted = {"name": "ann", "admin": None, "auth_state": {**claims, "scope": ["openid", "profile", "email"]}}
    short = {**granted, "auth_state": {**claims, "scope": ["openid"]}}
    assert _in_flow(lambda: oidc._finish(granted))["name"] == "ann"
    assert _in_flow(lambda: oidc._finish(short)) is None
