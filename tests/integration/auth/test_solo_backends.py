"""Each backend is also an Authenticator on its own: a hub with ``hubfleet-ldap`` (DN-template mode, LDAPS) and a
hub with ``hubfleet-oidc`` (its own /hub/oauth_login and /hub/oauth_callback)."""

from __future__ import annotations

import re
import textwrap

import pytest
import requests

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")


@pytest.fixture(scope="module")
def ldap_hub(auth_tmp, slapd):
    cfg = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet-ldap"
        c.HubfleetLDAPAuthenticator.server_urls = ["ldaps://localhost:{slapd.ldaps_port}"]
        c.HubfleetLDAPAuthenticator.tls_strategy = "ldaps"
        c.HubfleetLDAPAuthenticator.tls_ca_file = {str(slapd.ca_file)!r}
        c.HubfleetLDAPAuthenticator.bind_dn_templates = ["uid={{username}},{S.PEOPLE}"]
        c.HubfleetLDAPAuthenticator.group_search_base = {S.GROUPS!r}
        c.HubfleetLDAPAuthenticator.nested_groups = True
        c.HubfleetLDAPAuthenticator.group_prefix = "ldap-"
        c.HubfleetLDAPAuthenticator.allowed_groups = {{"ldap-jupyter-users"}}  # policy names the hub groups
        c.HubfleetLDAPAuthenticator.admin_groups = {{"ldap-hub-admins"}}
        """)
    h = S.start_hub(auth_tmp / "hub-ldap-solo", cfg, name="hub-ldap-solo")
    yield h
    h.stop()


@pytest.fixture(scope="module")
def oidc_hub(auth_tmp, oidc_mock):
    cfg = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet-oidc"
        c.HubfleetOIDCAuthenticator.issuer = {oidc_mock.issuer!r}
        c.HubfleetOIDCAuthenticator.client_id = "solo-client"
        c.HubfleetOIDCAuthenticator.client_secret = "solo-secret"
        c.HubfleetOIDCAuthenticator.login_service = "Mock IdP"
        c.HubfleetOIDCAuthenticator.allowed_groups = {{"jupyter-users"}}
        c.HubfleetOIDCAuthenticator.allow_http_issuer = True  # the mock provider runs on http://127.0.0.1
        c.JupyterHub.public_url = c.JupyterHub.bind_url
        """)
    h = S.start_hub(auth_tmp / "hub-oidc-solo", cfg, name="hub-oidc-solo")
    yield h
    h.stop()


def test_ldap_on_its_own_with_dn_templates_ldaps_and_prefix(ldap_hub):
    r = S.form_login(ldap_hub.url, "dave", "dave-pw")
    assert r.ok, (r.status, r.error)
    model = ldap_hub.user("dave")
    assert model["admin"] is True
    assert sorted(model["groups"]) == ["ldap-hub-admins", "ldap-platform-team"]
    r = S.form_login(ldap_hub.url, "bob", "bob-pw")
    assert r.ok and sorted(ldap_hub.user("bob")["groups"]) == ["ldap-data-science", "ldap-jupyter-users"]
    assert not S.form_login(ldap_hub.url, "carol", "carol-pw").ok
    assert not S.form_login(ldap_hub.url, "bob", "").ok
    html = requests.get(f"{ldap_hub.url}/hub/login", timeout=10).text
    assert 'name="password"' in html and "Sign in with" not in html


def test_oidc_on_its_own(oidc_hub):
    html = requests.get(f"{oidc_hub.url}/hub/login", timeout=10).text
    assert 'name="password"' not in html
    assert re.search(r'href="/hub/oauth_login">Sign in with Mock IdP</a>', html)
    s = requests.Session()
    r = s.get(f"{oidc_hub.url}/hub/oauth_login", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    r = s.post(r.headers["Location"], data={"sub": "olivia"}, allow_redirects=False, timeout=10)
    callback = r.headers["Location"]
    assert callback.startswith(f"{oidc_hub.url}/hub/oauth_callback?")
    r = s.get(callback, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/hub/login" not in r.headers["Location"]
    assert S.whoami(s, oidc_hub.url) == "olivia"
    assert "jupyter-users" in oidc_hub.user("olivia")["groups"]
