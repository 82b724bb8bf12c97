"""GenericOAuthenticator's own options through a real hub (issue 9, item 3).

A Keycloak-style ``c.GenericOAuthenticator`` configuration (explicit endpoints, callable ``username_claim``, roles
under ``realm_access.roles``, hooks) runs unchanged with ``authenticator_class = "hubfleet-oidc"`` plus the two
lines hubfleet needs (`issuer`, and the development switch for the provider's http URL), against
oidc-provider-mock."""

from __future__ import annotations

import textwrap
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")

LOGGED_OUT = "https://sso.example.org/realms/hub/logged-out"
KEYCLOAK_USERS = {  # sub -> claims; roles as Keycloak puts them
    "kc-kate": {"preferred_username": "kate-kc", "email": "kate@example.org",
                "realm_access": {"roles": ["jupyter-users"]}},
    "kc-karl": {"preferred_username": "karl-kc", "email": "karl@example.org", "realm_access": {"roles": ["hub-admins"]}},
    "kc-kurt": {"preferred_username": "kurt-kc", "email": "kurt@example.org", "realm_access": {"roles": ["outsiders"]}},
    "kc-rita": {"preferred_username": "rita-kc", "email": "rita@example.org",
                "realm_access": {"roles": ["jupyter-users"]}},
    "kc-paul": {"preferred_username": "paul-kc", "email": "paul@example.org",
                "realm_access": {"roles": ["jupyter-users"]}},
}


@pytest.fixture(scope="module")
def keycloak_style_hub(auth_tmp, oidc_mock):
    for sub, claims in KEYCLOAK_USERS.items():
        oidc_mock.set_user(sub, claims)
    doc = requests.get(f"{oidc_mock.issuer}/.well-known/openid-configuration", timeout=5).json()
    cfg = textwrap.dedent(f"""
        def add_role_from_hook(authenticator, auth_state):
            user = auth_state["oauth_user"]
            user.setdefault("realm_access", {{}}).setdefault("roles", []).append("from-hook")
            auth_state["hooked_by"] = type(authenticator).__name__
            return auth_state

        c.JupyterHub.authenticator_class = "hubfleet-oidc"
        c.GenericOAuthenticator.client_id = "jupyterhub"
        c.GenericOAuthenticator.client_secret = "kc-secret"
        c.GenericOAuthenticator.oauth_callback_url = c.JupyterHub.bind_url + "/hub/oauth_callback"
        c.GenericOAuthenticator.authorize_url = {doc["authorization_endpoint"]!r}
        c.GenericOAuthenticator.token_url = {doc["token_endpoint"]!r}
        c.GenericOAuthenticator.userdata_url = {doc["userinfo_endpoint"]!r}
        c.GenericOAuthenticator.login_service = "Keycloak"
        c.GenericOAuthenticator.username_claim = lambda info: info["email"].split("@")[0]
        c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
        c.GenericOAuthenticator.extra_authorize_params = {{"kc_idp_hint": "corp"}}
        c.GenericOAuthenticator.manage_groups = True
        c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.realm_access.roles"
        c.GenericOAuthenticator.modify_auth_state_hook = add_role_from_hook
        c.GenericOAuthenticator.refresh_user_hook = lambda a, user, state: False if user.name == "rita" else None
        c.GenericOAuthenticator.allowed_groups = {{"jupyter-users"}}
        c.GenericOAuthenticator.admin_groups = {{"hub-admins"}}
        c.GenericOAuthenticator.custom_403_message = "Ask the data team for access to this hub."
        c.GenericOAuthenticator.logout_redirect_url = {LOGGED_OUT!r}
        c.GenericOAuthenticator.enable_auth_state = True
        c.GenericOAuthenticator.auth_refresh_age = 2
        # what hubfleet adds: the issuer whose keys sign the id_tokens; the provider here is http://127.0.0.1
        c.HubfleetOIDCAuthenticator.issuer = {oidc_mock.issuer!r}
        c.HubfleetOIDCAuthenticator.allow_http_issuer = True
        """)
    h = S.start_hub(auth_tmp / "hub-keycloak-style", cfg, name="hub-keycloak-style")
    yield h
    h.stop()


def _login(hub, sub):
    return S.oidc_login(hub.url, "", sub=sub)  # the hub runs this one backend: /hub/oauth_login


def test_login_with_callable_username_groups_key_hook_and_token_storage(keycloak_style_hub):
    hub = keycloak_style_hub
    page = requests.get(f"{hub.url}/hub/login", timeout=10).text
    assert "Sign in with Keycloak" in page
    r = _login(hub, "kc-kate")
    assert r.ok, (r.status, r.location, r.text[:800])
    q = parse_qs(urlparse(r.authorize_url).query)
    assert q["kc_idp_hint"] == ["corp"] and q["redirect_uri"] == [f"{hub.url}/hub/oauth_callback"]
    assert S.whoami(r.session, hub.url) == "kate"  # username_claim callable: from the email, not preferred_username
    model = hub.user("kate")
    assert sorted(model["groups"]) == ["from-hook", "jupyter-users"]  # auth_state_groups_key after the hook
    assert model["admin"] is False
    state = model["auth_state"]
    assert state["hooked_by"] == "HubfleetOIDCAuthenticator"
    assert state["access_token"] and state["refresh_token"] and state["id_token"]
    assert state["token_response"]["access_token"] == state["access_token"]
    assert state["oauth_user"]["email"] == "kate@example.org" and state["oidc_claims"]["sub"] == "kc-kate"


def test_admin_groups_and_custom_403_message(keycloak_style_hub):
    hub = keycloak_style_hub
    assert _login(hub, "kc-karl").ok
    assert hub.user("karl")["admin"] is True  # admin_groups, and admins may log in without allowed_groups
    r = _login(hub, "kc-kurt")
    assert r.status == 403 and "Ask the data team for access to this hub." in r.text, (r.status, r.text[:800])
    assert hub.user("kurt") is None


def test_refresh_runs_the_same_hooks_and_refresh_user_hook(keycloak_style_hub, oidc_mock):
    hub = keycloak_style_hub
    kate = _login(hub, "kc-kate")
    rita = _login(hub, "kc-rita")
    assert kate.ok and rita.ok
    oidc_mock.set_user("kc-kate", {**KEYCLOAK_USERS["kc-kate"],
                                   "realm_access": {"roles": ["jupyter-users", "ml-team"]}})
    # auth_refresh_age = 2: a request after that refreshes
    S.wait_refreshed("kate's refresh to bring ml-team", hub, kate.session,
                     lambda who: who == "kate" and "ml-team" in hub.user("kate")["groups"])
    assert sorted(hub.user("kate")["groups"]) == ["from-hook", "jupyter-users", "ml-team"]
    # refresh_user_hook returns False for rita
    S.wait_refreshed("rita's session to end at her refresh", hub, rita.session, lambda who: who is None)


def test_logout_redirect_url(keycloak_style_hub):
    hub = keycloak_style_hub
    r = _login(hub, "kc-kate")
    assert r.ok
    out = r.session.get(f"{hub.url}/hub/logout", allow_redirects=False, timeout=10)
    assert out.status_code == 302 and out.headers["Location"] == LOGGED_OUT
    assert S.whoami(r.session, hub.url) is None


def test_refresh_pre_spawn_asks_the_provider_before_a_server_starts(keycloak_style_hub, oidc_mock):
    """refresh_pre_spawn (True with enable_auth_state, as in GenericOAuthenticator): tokens revoked at the provider
    stop a spawn at once, inside auth_refresh_age, before any server is started."""
    hub = keycloak_style_hub
    r = _login(hub, "kc-paul")
    assert r.ok, r.text[:800]
    requests.post(f"{oidc_mock.issuer}/users/kc-paul/revoke-tokens", timeout=5).raise_for_status()
    spawn = r.session.get(f"{hub.url}/hub/spawn", allow_redirects=False, timeout=20)
    assert spawn.status_code == 403 and "auth has expired for paul" in spawn.text, (spawn.status_code,
                                                                                    spawn.text[:800])
    assert hub.user("paul")["servers"] == {}


def test_userdata_params_sent_on_userinfo_requests(hub, bad_idp):
    """The shared hub's ``badidp`` backend sets ``userdata_params = {"claims": "groups"}``."""
    bad_idp.set_mode("good", sub="uma", preferred_username="uma")  # not "eve": test_oidc_hub.py expects no eve yet
    try:
        r = S.oidc_login(hub.url, "badidp")
    finally:
        bad_idp.set_mode("good")
    assert r.ok, r.text[:800]
    seen = requests.get(f"{bad_idp.issuer}/_requests", timeout=5).json()
    assert seen and seen[-1] == "/userinfo?claims=groups", seen
