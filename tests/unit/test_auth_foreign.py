"""Wrapped classes without sockets: JupyterHub's own SharedPasswordAuthenticator (entry point ``shared-password``)
becomes a password backend of the composite, under the composite's policy and identity bindings (a SQLite file of
the test's own); ldapauthenticator's groups are named as the ``ldap`` backend names them; a wrapped OAuthenticator's
token answer for another client (an error answer, an id_token whose aud/azp is another client) ends the sign-in.
The same through real hubs: tests/integration/auth/test_oauth_backends.py and test_wrapped_classes.py."""

from __future__ import annotations

import base64
import io
import json

import pytest
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from traitlets.config import Config

from hubfleet.authenticators.composite import HubfleetAuthenticator
from hubfleet.authenticators.foreign import GROUP_READERS


def _composite(tmp_path, **entry):
    c = Config()
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hubfleet.sqlite"
    c.HubfleetAuthenticator.subject_store_file = ""
    c.HubfleetAuthenticator.allowed_users = {"ann"}
    c.HubfleetAuthenticator.backends = [{"kind": "shared-password", "name": "shared",
                                         "user_password": "a-long-shared-password", **entry}]
    return HubfleetAuthenticator(config=c)


async def test_a_password_class_signs_in_through_the_policy_and_is_bound(tmp_path):
    a = _composite(tmp_path, username_prefix="sp-")
    assert a.password_backend and a.oidc_buttons() == []
    assert await a.get_authenticated_user(None, {"username": "Ann", "password": "wrong-password-123"}) is None
    model = await a.get_authenticated_user(None, {"username": "ann", "password": "a-long-shared-password"})
    assert model is None  # "sp-ann" is not in allowed_users: the composite's policy decides, not the class
    a.allowed_users = {"sp-ann"}
    model = await a.get_authenticated_user(None, {"username": "Ann", "password": "a-long-shared-password"})
    assert model["name"] == "sp-ann" and not model["admin"]
    assert model["auth_state"]["hubfleet_backend"] == "shared"
    assert (await a.bindings.lookup("sp-ann")).backend == "shared"


class _User:
    name = "gina"

    async def get_auth_state(self):
        return None


async def test_a_wrapped_oauth_class_without_auth_state_ends_the_session_at_refresh(tmp_path):
    """GitHubOAuthenticator's own refresh answers True when it keeps no tokens: the composite must not keep such a
    session unchecked (as hubfleet's OIDC backend, the user logs in again), unless refresh_groups is off."""
    c = Config()
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hubfleet.sqlite"
    c.HubfleetAuthenticator.subject_store_file = ""
    c.HubfleetAuthenticator.enable_auth_state = False
    c.HubfleetAuthenticator.backends = [{"kind": "github", "client_id": "a", "client_secret": "b",
                                         "oauth_callback_url": "https://hub.example/hub/oauth_callback/github"}]
    a = HubfleetAuthenticator(config=c)
    (gh,) = a._children
    assert gh.is_oauth and not gh.enable_auth_state
    assert await gh.inner.refresh_user(_User()) is True  # the class alone would keep the session
    assert await gh.refresh_user(_User()) is False
    gh.refresh_groups = False
    assert await gh.refresh_user(_User()) is True


def test_ldapauthenticator_groups_are_named_by_their_first_rdn():
    read = GROUP_READERS["LDAPAuthenticator"]
    state = {"ldap_groups": ["cn=jupyter-users,ou=groups,dc=example,dc=org", "CN=Hub\\2C Admins,ou=x,dc=y"],
             "user_attributes": {}}
    assert read(state) == ["Hub, Admins", "jupyter-users"]
    assert read({}) == [] and read({"ldap_groups": None}) == []


def _id_token(**claims) -> str:
    def part(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def _generic(tmp_path, answer):
    c = Config()
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hubfleet.sqlite"
    c.HubfleetAuthenticator.subject_store_file = ""
    c.HubfleetAuthenticator.backends = [{"kind": "generic-oauth", "name": "sso", "login_service": "SSO",
                                         "client_id": "hub", "client_secret": "s",
                                         "token_url": "https://sso.example/token",
                                         "oauth_callback_url": "https://hub.example/hub/oauth_callback/sso"}]
    (sso,) = HubfleetAuthenticator(config=c)._children

    async def provider_answer(handler, params):  # what the provider's token endpoint answered, as the class read it
        if isinstance(answer, Exception):
            raise answer
        return answer

    sso._class_token_info = provider_answer
    return sso


@pytest.mark.parametrize("answer, reason", [
    ({"access_token": "t", "id_token": _id_token(aud="other-client", sub="s")}, "audience mismatch"),
    ({"access_token": "t", "id_token": _id_token(aud=["hub", "other"], azp="other", sub="s")}, "azp"),
    ({"access_token": "t", "id_token": _id_token(aud="hub", azp="other", sub="s")}, "azp"),
    ({"access_token": "t", "id_token": "not-a-jwt"}, "not a readable JWT"),
    (web.HTTPError(403, "An access token was not returned: bad_verification_code"), "bad_verification_code"),
    (HTTPClientError(400, response=HTTPResponse(HTTPRequest("https://sso.example/token"), 400, buffer=io.BytesIO(
        b'{"error": "invalid_grant", "error_description": "code issued to another client"}'))),
     "HTTP 400 invalid_grant: code issued to another client"),
    (HTTPClientError(401), "HTTP 401"),
])
async def test_a_token_answer_for_another_client_ends_the_sign_in(tmp_path, caplog, answer, reason):
    sso = _generic(tmp_path, answer)
    with pytest.raises(web.HTTPError) as e:
        await sso.inner.get_token_info(None, {"grant_type": "authorization_code", "code": "c"})
    assert e.value.status_code == 403
    assert "Sign-in with SSO failed: SSO did not give this hub a token" in e.value.log_message
    assert "Start again from the login page" in e.value.log_message
    assert reason not in e.value.log_message  # the provider's words are for the admin's log
    assert any(reason in r.getMessage() and "no token for client 'hub'" in r.getMessage() for r in caplog.records)


async def test_a_token_answer_for_this_client_is_the_classs(tmp_path):
    good = {"access_token": "t", "token_type": "bearer", "id_token": _id_token(aud=["hub", "x"], azp="hub", sub="s")}
    assert await _generic(tmp_path, good).inner.get_token_info(None, {}) == good
    assert await _generic(tmp_path, {"access_token": "t"}).inner.get_token_info(None, {}) == {"access_token": "t"}
    with pytest.raises(web.HTTPError) as e:  # the provider down: still "unavailable" (5xx), not a refusal
        await _generic(tmp_path, web.HTTPError(500, "Bad response")).inner.get_token_info(None, {})
    assert e.value.status_code == 500
    with pytest.raises(HTTPClientError):
        await _generic(tmp_path, HTTPClientError(502)).inner.get_token_info(None, {})
