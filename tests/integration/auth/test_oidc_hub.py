"""OIDC through a real hub: oidc-provider-mock (discovery, PKCE, nonce required, JWKS, refresh tokens) and a
purpose-built provider that returns broken id_tokens on demand."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")


def test_oidc_discovery_pkce_nonce_and_groups_oauthenticator_822(hub, oidc_mock):
    """Only `issuer` is configured: endpoints come from discovery (oauthenticator PR #822); the mock runs with
    --require-nonce, the authorize URL carries a PKCE S256 challenge, and groups come from the claim."""
    r = S.oidc_login(hub.url, "mock", sub="olivia")
    assert r.ok, (r.status, r.location, r.text[:800])
    q = parse_qs(urlparse(r.authorize_url).query)
    assert r.authorize_url.startswith(f"{oidc_mock.issuer}/oauth2/authorize")  # discovered endpoint
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) >= 43
    assert len(q["nonce"][0]) >= 16
    assert q["redirect_uri"] == [f"{hub.url}/hub/oauth_callback/mock"]
    assert S.whoami(r.session, hub.url) == "olivia"
    model = hub.user("olivia")
    assert sorted(model["groups"]) == ["jupyter-users", "oidc-team"]
    assert model["admin"] is False
    assert model["auth_state"]["hubfleet_backend"] == "mock"
    assert model["auth_state"]["access_token"]


def test_oidc_admin_group_and_not_allowed(hub):
    r = S.oidc_login(hub.url, "mock", sub="oscar")
    assert r.ok, r.text[:800]
    assert hub.user("oscar")["admin"] is True
    r = S.oidc_login(hub.url, "mock", sub="otto")  # groups: outsiders
    assert not r.ok and r.status == 403
    assert hub.user("otto") is None


def test_oidc_groups_and_tokens_refreshed_via_refresh_user(hub, oidc_mock):
    r = S.oidc_login(hub.url, "mock", sub="olivia")
    assert r.ok
    before = hub.user("olivia")["auth_state"]["access_token"]
    oidc_mock.set_user("olivia", {"preferred_username": "olivia", "email": "olivia@example.org",
                                  "groups": ["jupyter-users", "new-team"]})
    # auth_refresh_age = 2: a request after that refreshes the user
    S.wait_refreshed("olivia's refresh to bring new-team", hub, r.session,
                     lambda who: who == "olivia" and "new-team" in hub.user("olivia")["groups"])
    assert sorted(hub.user("olivia")["groups"]) == ["jupyter-users", "new-team"]
    # revoke every token at the provider: the next refresh cannot renew them and the session ends
    requests.post(f"{oidc_mock.issuer}/users/olivia/revoke-tokens", timeout=5).raise_for_status()
    S.wait_refreshed("olivia's session to end at the next refresh", hub, r.session, lambda who: who is None)
    assert before  # (the access token was stored in auth_state)


@pytest.mark.parametrize(
    "mode, message",
    [
        ("wrong_issuer", "was issued by 'http://evil.example.org', not the configured issuer"),
        ("wrong_audience", "meant for another client (audience mismatch)"),
        ("expired", "the id_token has expired"),
        ("bad_signature", "signature does not match the provider's published keys"),
        ("wrong_nonce", "nonce mismatch"),
        ("unverified_email", "is not verified at Bad IdP"),
    ],
)
def test_bad_id_tokens_refused_with_clear_message(hub, bad_idp, mode, message):
    bad_idp.set_mode(mode)
    try:
        r = S.oidc_login(hub.url, "badidp")
    finally:
        bad_idp.set_mode("good")
    assert not r.ok and r.status == 403, (r.status, r.location)
    assert "Sign-in with Bad IdP refused" in r.text and message in r.text, r.text[:1500]
    assert S.whoami(r.session, hub.url) is None
    assert hub.user("eve") is None


def test_good_token_from_bad_idp_logs_in(hub, bad_idp):
    r = S.oidc_login(hub.url, "badidp")
    assert r.ok, r.text[:1500]
    assert S.whoami(r.session, hub.url) == "eve"


def test_expired_access_token_renewed_with_refresh_token(hub, bad_idp):
    r = S.oidc_login(hub.url, "badidp")
    assert r.ok, r.text[:1500]
    before = hub.user("eve")["auth_state"]
    requests.post(f"{bad_idp.issuer}/_expire_access_tokens", timeout=5).raise_for_status()
    # refresh_user (after auth_refresh_age = 2): userinfo 401 -> refresh_token grant -> userinfo
    S.wait_refreshed("eve's refresh to renew her access token", hub, r.session,
                     lambda who: who == "eve" and hub.user("eve")["auth_state"]["access_token"]
                     != before["access_token"])
    after = hub.user("eve")["auth_state"]
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]


def test_state_mismatch_refused(hub):
    r = S.oidc_login(hub.url, "mock", sub="olivia", tamper_state=True)
    assert r.status == 400
    assert "OAuth state mismatch" in r.text and "start again from the login page" in r.text


def test_provider_hanging_shows_clear_error_within_timeout(hub):
    t0 = time.monotonic()
    r = S.oidc_login(hub.url, "down")
    elapsed = time.monotonic() - t0
    assert r.status == 503
    assert "The login service (OIDC: Down IdP) is unavailable right now; try again in a minute." in r.text
    assert elapsed < 6, f"took {elapsed:.1f}s (http_timeout is 2 s)"
    t0 = time.monotonic()
    assert requests.get(f"{hub.url}/hub/api/", timeout=5).status_code == 200
    assert time.monotonic() - t0 < 1.0


def test_logout_redirects_to_provider_end_session(hub, oidc_mock):
    r = S.oidc_login(hub.url, "mock", sub="olivia")
    assert r.ok
    out = r.session.get(f"{hub.url}/hub/logout", allow_redirects=False, timeout=10)
    assert out.status_code == 302
    assert out.headers["Location"].startswith(f"{oidc_mock.issuer}/oauth2/end_session?client_id=hub-client")
    assert "post_logout_redirect_uri=" in out.headers["Location"]
    assert S.whoami(r.session, hub.url) is None
