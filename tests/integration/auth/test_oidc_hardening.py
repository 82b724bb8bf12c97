"""OIDC hardening through real hubs (issue 8, defects 4 and 6): http issuers, URLs not taken from the Host header,
a re-registered provider account, a less-trusted provider's admin groups, refresh without a userinfo endpoint."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.procs import wait_for

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")


def solo_config(issuer: str, *, allow_http: bool = True, public_url: bool = True, extra: str = "") -> str:
    """jupyterhub_config lines for ``hubfleet-oidc`` on its own against ``issuer``."""
    lines = [
        'c.JupyterHub.authenticator_class = "hubfleet-oidc"',
        f"c.HubfleetOIDCAuthenticator.issuer = {issuer!r}",
        'c.HubfleetOIDCAuthenticator.client_id = "hub-client"',
        'c.HubfleetOIDCAuthenticator.client_secret = "hub-secret"',
        'c.HubfleetOIDCAuthenticator.allowed_groups = {"jupyter-users"}',
    ]
    if allow_http:
        lines.append("c.HubfleetOIDCAuthenticator.allow_http_issuer = True")
    if public_url:
        lines.append("c.JupyterHub.public_url = c.JupyterHub.bind_url")
    return "\n".join(lines) + "\n" + textwrap.dedent(extra)




def test_redirect_uri_ignores_a_forged_host_header(hub):
    r = requests.get(f"{hub.url}/hub/oauth_login/mock", headers={"Host": "evil.example.org"},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302, (r.status_code, r.text[:500])
    q = parse_qs(urlparse(r.headers["Location"]).query)
    assert q["redirect_uri"] == [f"{hub.url}/hub/oauth_callback/mock"]


def test_post_logout_url_ignores_a_forged_host_header(hub, oidc_mock):
    r = S.oidc_login(hub.url, "mock", sub="olivia")
    assert r.ok, r.text[:800]
    # requests matches cookies against a Host header it is given: send the session's cookies by hand
    cookies = "; ".join(f"{c.name}={c.value}" for c in r.session.cookies)
    out = requests.get(f"{hub.url}/hub/logout", headers={"Host": "evil.example.org", "Cookie": cookies},
                       allow_redirects=False, timeout=10)
    assert out.status_code == 302
    q = parse_qs(urlparse(out.headers["Location"]).query)
    assert q["post_logout_redirect_uri"] == [f"{hub.url}/hub/login"]


def test_another_subject_under_the_same_username_is_refused_at_login(hub, bad_idp):
    """A provider account re-created (new ``sub``) with the old username does not take over the hub user."""
    bad_idp.set_mode("good", sub="ivy-1", preferred_username="ivy", email="ivy@example.org")
    try:
        first = S.oidc_login(hub.url, "badidp")
        assert first.ok, first.text[:800]
        bad_idp.set_mode("good", sub="ivy-2", preferred_username="ivy", email="ivy@example.org")
        second = S.oidc_login(hub.url, "badidp")
        assert second.status == 403, (second.status, second.location)
        assert "Sign-in refused: this hub user belongs to another 'badidp' account" in second.text, second.text[:1500]
        assert "hubfleet users unbind" in second.text
        assert S.whoami(second.session, hub.url) is None
        assert hub.user("ivy")["auth_state"]["oidc_claims"]["sub"] == "ivy-1"
        # the documented re-link (one procedure for every backend): an admin unbinds, the next login binds again
        out = subprocess.run([sys.executable, "-m", "hubfleet.authenticators.cli", "users", "unbind", "ivy",
                              "--db-url", hub.db_url], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "unbound ivy (was badidp: ivy-1)" in out.stdout, out.stdout + out.stderr
        third = S.oidc_login(hub.url, "badidp")
    finally:
        bad_idp.set_mode("good")
    assert third.ok, third.text[:800]
    assert hub.user("ivy")["auth_state"]["oidc_claims"]["sub"] == "ivy-2"


def test_untrusted_provider_groups_do_not_satisfy_the_composite_admin_groups(hub, bad_idp):
    """``badidp`` has no trust_admin_groups: its "hub-admins" group neither makes admins nor lets users in."""
    bad_idp.set_mode("good", sub="ulla", preferred_username="ulla", groups=["hub-admins", "jupyter-users"])
    try:
        member = S.oidc_login(hub.url, "badidp")
        bad_idp.set_mode("good", sub="uwe", preferred_username="uwe", groups=["hub-admins"])
        only_admin_group = S.oidc_login(hub.url, "badidp")
    finally:
        bad_idp.set_mode("good")
    assert member.ok, member.text[:800]
    model = hub.user("ulla")
    assert model["admin"] is False and "hub-admins" in model["groups"]
    assert not only_admin_group.ok and only_admin_group.status == 403
    assert hub.user("uwe") is None


def test_http_issuer_refused_at_hub_start_without_the_development_switch(auth_tmp, oidc_mock):
    with pytest.raises(RuntimeError) as e:
        S.start_hub(auth_tmp / "hub-http-issuer", solo_config(oidc_mock.issuer, allow_http=False),
                    name="hub-http-issuer")
    assert f"HubfleetOIDCAuthenticator.issuer '{oidc_mock.issuer}' is plain http" in str(e.value)
    assert "allow_http_issuer = True" in str(e.value)


def test_callback_url_not_configured_refused_at_hub_start(auth_tmp, oidc_mock):
    with pytest.raises(RuntimeError) as e:
        S.start_hub(auth_tmp / "hub-no-public-url", solo_config(oidc_mock.issuer, public_url=False),
                    name="hub-no-public-url")
    assert "set c.JupyterHub.public_url" in str(e.value) and "never from the request's Host header" in str(e.value)


# ---- a provider without a userinfo endpoint ------------------------------------------------------------------
@pytest.fixture(scope="module")
def idp_without_userinfo(auth_tmp):
    b = S.start_bad_idp(auth_tmp / "bad-idp-no-userinfo", "--no-userinfo")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def id_token_hub(auth_tmp, idp_without_userinfo):
    cfg = solo_config(idp_without_userinfo.issuer, extra="c.HubfleetOIDCAuthenticator.auth_refresh_age = 2")
    h = S.start_hub(auth_tmp / "hub-id-token", cfg, name="hub-id-token")
    yield h
    h.stop()


def test_refresh_without_userinfo_uses_the_refresh_token_and_its_id_token(id_token_hub, idp_without_userinfo):
    idp = idp_without_userinfo
    r = S.oidc_login(id_token_hub.url, "")
    assert r.ok, r.text[:800]
    assert id_token_hub.user("eve")["groups"] == ["jupyter-users"]
    idp.set_mode("good", refresh_claims={"groups": ["jupyter-users", "new-team"]})
    # before: everyone was logged out at the first refresh
    S.wait_refreshed("eve's refresh to bring new-team", id_token_hub, r.session,
                     lambda who: who == "eve" and "new-team" in id_token_hub.user("eve")["groups"])
    assert sorted(id_token_hub.user("eve")["groups"]) == ["jupyter-users", "new-team"], id_token_hub.log_tail(60)
    # the provider ends the session (refresh tokens revoked): the next refresh requires a new login
    requests.post(f"{idp.issuer}/_revoke_refresh_tokens", timeout=5).raise_for_status()
    S.wait_refreshed("eve's session to end at the next refresh", id_token_hub, r.session, lambda who: who is None)
    assert requests.get(f"{idp.issuer}/_requests", timeout=5).json() == []  # no userinfo was ever asked for


# ---- sessions the provider cannot be asked about end at the next refresh ---------------------------------------
@pytest.fixture(scope="module")
def idp_id_token_only(auth_tmp):
    b = S.start_bad_idp(auth_tmp / "bad-idp-id-token-only", "--no-userinfo", "--no-refresh-token")
    yield b
    b.stop()


@pytest.mark.parametrize("case", ["no_auth_state", "no_userinfo_no_refresh_token"])
def test_a_session_that_cannot_be_revalidated_must_log_in_again(auth_tmp, oidc_mock, idp_id_token_only, case):
    """Without auth_state no token is kept; without userinfo and a refresh token the provider cannot be asked:
    either way the next refresh requires a new login (the stored claims are not reused)."""
    if case == "no_auth_state":
        issuer, sub, name = oidc_mock.issuer, "olivia", "olivia"
        extra = "c.Authenticator.enable_auth_state = False\nc.HubfleetOIDCAuthenticator.auth_refresh_age = 1\n"
    else:
        issuer, sub, name = idp_id_token_only.issuer, None, "eve"
        extra = "c.HubfleetOIDCAuthenticator.auth_refresh_age = 1\n"
    hub = S.start_hub(auth_tmp / f"hub-revalidate-{case}", solo_config(issuer, extra=extra),
                      name=f"hub-revalidate-{case}")
    try:
        r = S.oidc_login(hub.url, "", sub=sub)
        assert r.ok and S.whoami(r.session, hub.url) == name, r.text[:800]
        # each request past auth_refresh_age refreshes; the first one must end the session
        wait_for(f"{name}'s session to end at a refresh", lambda: S.whoami(r.session, hub.url) is None,
                 timeout=60, interval=0.25, seen=lambda: hub.log_tail(20))
        assert "login required" in hub.log_tail(80)
    finally:
        hub.stop()
