"""Wrapped classes through one real hub: jupyterhub-ldapauthenticator's own LDAPAuthenticator running the docs'
example (``<!-- example: wrapped-ldapauthenticator -->`` in docs/authenticators.md) against the session's real slapd
(StartTLS), and oauthenticator's own GenericOAuthenticator against bad_idp.py (a real OIDC token endpoint).

- The groups ldapauthenticator reports (its ``ldap_groups``) go through the entry's group_mapping / group_prefix /
  allowed_groups / admin_groups, so group-based access and admin work; a user in no listed group is refused and no
  user is created. The kind is the import path here (the doc names the entry point).
- A token answer whose id_token is meant for another client, or a token endpoint that refuses the code (HTTP 400
  ``invalid_grant``), ends the sign-in with hubfleet's message, logs the reason for the admin and creates no user;
  the same provider's answer for this client signs in.
"""

from __future__ import annotations

import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from tests.procs import REPO

from . import servers as S

DOC = REPO / "docs" / "authenticators.md"

# (user, hub groups, admin); None: refused. alice is in jupyter-users, dave in platform-team (-> hub-admins),
# bob only in data-science (a group ldapauthenticator is not asked about), carol in no group
CASES = [
    ("alice", ["ldap-jupyter-users"], False),
    ("dave", ["ldap-hub-admins"], True),
    ("bob", None, None),
    ("carol", None, None),
]


@pytest.fixture(scope="module")
def site(auth_tmp, slapd, bad_idp):
    swaps = {
        '"ldap.example.org"': '"localhost"',
        "dc=example,dc=org": S.BASE_DN,
        '"kind": "ldapauthenticator"': '"kind": "ldapauthenticator.LDAPAuthenticator"',
    }
    cfg = S.doc_example(DOC, "wrapped-ldapauthenticator", swaps) + "\n".join([
        "",
        "import ssl",
        f"c.LDAPAuthenticator.server_port = {slapd.port}",
        f"c.LDAPAuthenticator.tls_kwargs = {{'ca_certs_file': {str(slapd.ca_file)!r}, "
        f"'validate': ssl.CERT_REQUIRED}}",
        "c.JupyterHub.public_url = c.JupyterHub.bind_url",
        "c.HubfleetAuthenticator.backends = c.HubfleetAuthenticator.backends + [",
        f"    {{'kind': 'generic-oauth', 'name': 'partner', 'login_service': 'Partner SSO',",
        f"     'client_id': 'hub-client', 'client_secret': 'hub-secret', 'basic_auth': False,",
        f"     'scope': ['openid'], 'username_claim': 'preferred_username',",
        f"     'authorize_url': '{bad_idp.issuer}/authorize', 'token_url': '{bad_idp.issuer}/token',",
        f"     'userdata_url': '{bad_idp.issuer}/userinfo', 'allowed_groups': {{'jupyter-users'}}}}]",
        "",
    ])
    hub = S.start_hub(auth_tmp / "wrapped-ldapauthenticator", cfg, name="hub-wrapped-ldapauthenticator")
    yield hub
    hub.stop()


@pytest.mark.parametrize("name, groups, admin", CASES, ids=[c[0] for c in CASES])
def test_ldapauthenticator_groups_go_through_the_entrys_policy(site, name, groups, admin):
    r = S.form_login(site.url, name, S.LDAP_USERS[name][0])
    who = S.whoami(r.session, site.url)
    if groups is None:
        assert who is None and site.user(name) is None, f"{name} was let in: {site.user(name)}"
        assert f"user:{name} denied (directory)" in site.log_tail(100), site.log_tail(20)
        return
    assert who == name, f"{name} refused: {r.status} {r.error}\n{site.log_tail(20)}"
    model = site.user(name)
    assert (sorted(model["groups"]), model["admin"]) == (groups, admin), model
    assert model["auth_state"]["hubfleet_backend"] == "directory"


def test_a_wrong_password_is_refused(site):
    r = S.form_login(site.url, "alice", "not-alices-password")
    assert S.whoami(r.session, site.url) is None


def test_an_id_token_for_another_client_ends_a_wrapped_oauth_sign_in(site, bad_idp):
    bad_idp.set_mode("wrong_audience")
    try:
        r = S.oidc_login(site.url, "partner")
    finally:
        bad_idp.set_mode("good")
    assert r.status == 403 and S.whoami(r.session, site.url) is None, (r.status, r.text[:800])
    assert ("Sign-in with Partner SSO failed: Partner SSO did not give this hub a token for your sign-in" in r.text
            and "Start again from the login page" in r.text), r.text[:800]
    assert site.user("eve") is None
    assert ("partner (Partner SSO): no token for client 'hub-client': the id_token is meant for another client "
            "(audience mismatch)." in site.log_tail(100)), site.log_tail(20)
    r = S.oidc_login(site.url, "partner")  # the provider's answer for this client: signed in
    assert S.whoami(r.session, site.url) == "eve", (r.status, r.text[:800])
    assert site.user("eve")["groups"] == ["jupyter-users"]


def test_a_code_the_token_endpoint_refuses_ends_a_wrapped_oauth_sign_in(site):
    """A code the provider does not know (forged into the callback with the hub's own state): the token endpoint
    answers HTTP 400 ``invalid_grant`` (RFC 6749 5.2); the user gets the same message, the admin the reason."""
    s = S.requests.Session()
    r = s.get(f"{site.url}/hub/oauth_login/partner", allow_redirects=False, timeout=10)
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=10)  # bad_idp signs in at once
    assert r.status_code == 302 and "code=" in r.headers["Location"], (r.status_code, r.headers)
    callback = re.sub(r"code=[^&]+", "code=not-a-code-of-this-client", r.headers["Location"])
    r = s.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 403, (r.status_code, r.text[:800])
    assert "Sign-in with Partner SSO failed: Partner SSO did not give this hub a token" in r.text, r.text[:800]
    assert S.whoami(s, site.url) is None
    assert ("partner (Partner SSO): no token for client 'hub-client': HTTP 400 invalid_grant."
            in site.log_tail(100)), site.log_tail(20)


class SilentDirectory:
    """A TCP listener that accepts LDAP connections and never answers (a directory that hangs); ``release()``
    closes them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def release(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_hanging_directory_does_not_stall_the_hub(auth_tmp):
    """ldapauthenticator 2.0 binds synchronously (ldap3, no receive timeout): while its directory hangs, the hub
    still answers, and the login ends with the unavailable message once the directory goes away."""
    directory = SilentDirectory()
    cfg = "\n".join([
        "c.JupyterHub.authenticator_class = 'hubfleet'",
        "c.LDAPAuthenticator.server_address = '127.0.0.1'",
        f"c.LDAPAuthenticator.server_port = {directory.port}",
        "c.LDAPAuthenticator.tls_strategy = 'insecure'",
        "c.LDAPAuthenticator.bind_dn_template = ['uid={username},ou=people,dc=example,dc=org']",
        "c.HubfleetAuthenticator.backends = [{'kind': 'ldapauthenticator', 'name': 'directory'}]",
    ])
    hub = S.start_hub(auth_tmp / "hanging-directory", cfg, name="hub-hanging-directory")
    login = None
    try:
        with ThreadPoolExecutor(1) as pool:
            login = pool.submit(S.form_login, hub.url, "alice", "a-password", 60)
            assert directory.accepted.wait(30), "the login never reached the directory"
            r = requests.get(f"{hub.url}/hub/api/", timeout=5)  # stalled hub: ReadTimeout
            assert r.status_code == 200 and "version" in r.json()
            directory.release()
            result = login.result(timeout=60)
        assert result.status != 302 and "unavailable right now" in result.body, (result.status, result.body[:500])
    finally:
        directory.release()
        hub.stop()
