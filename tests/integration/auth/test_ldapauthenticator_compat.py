"""ldapauthenticator 2.0's documented configurations, unchanged, through a real hub against slapd (issue 9 item 2).

Each configuration runs twice: with the stock ``ldapauthenticator.LDAPAuthenticator`` (so it is a configuration
ldapauthenticator itself accepts) and with ``authenticator_class = "hubfleet-ldap"`` and nothing else changed. The
same users get in and the same users are refused; the hub log has one line per translated option.
"""

from __future__ import annotations

import textwrap

import pytest

from . import servers as S

JUPYTER_USERS = f"cn=jupyter-users,{S.GROUPS}"
PROJECT_X = f"cn=project-x,{S.PROJECTS}"


def bind_template_starttls(slapd) -> str:
    """README: bind_dn_template (list), StartTLS (``before_bind``, the default), allowed groups as DNs."""
    return textwrap.dedent(f"""
        import ssl
        c.LDAPAuthenticator.server_address = "localhost"
        c.LDAPAuthenticator.server_port = {slapd.port}
        c.LDAPAuthenticator.tls_strategy = "before_bind"
        c.LDAPAuthenticator.tls_kwargs = {{"ca_certs_file": {str(slapd.ca_file)!r}, "validate": ssl.CERT_REQUIRED}}
        c.LDAPAuthenticator.bind_dn_template = ["uid={{username}},{S.PEOPLE}"]
        c.LDAPAuthenticator.allowed_groups = [{JUPYTER_USERS!r}]
        """)


def lookup_dn_ldaps(slapd) -> str:
    """Docs of user_search_base: lookup_dn with a search user; LDAPS (``on_connect``); two allowed group DNs."""
    return textwrap.dedent(f"""
        c.LDAPAuthenticator.server_address = "localhost"
        c.LDAPAuthenticator.server_port = {slapd.ldaps_port}
        c.LDAPAuthenticator.tls_strategy = "on_connect"
        c.LDAPAuthenticator.tls_kwargs = {{"ca_certs_file": {str(slapd.ca_file)!r}}}
        c.LDAPAuthenticator.lookup_dn = True
        c.LDAPAuthenticator.lookup_dn_search_filter = "({{login_attr}}={{login}})"
        c.LDAPAuthenticator.lookup_dn_search_user = {S.SVC_DN!r}
        c.LDAPAuthenticator.lookup_dn_search_password = {S.SVC_PW!r}
        c.LDAPAuthenticator.user_search_base = {S.PEOPLE!r}
        c.LDAPAuthenticator.user_attribute = "uid"
        c.LDAPAuthenticator.lookup_dn_user_dn_attribute = "cn"
        c.LDAPAuthenticator.allowed_groups = [{JUPYTER_USERS!r}, {PROJECT_X!r}]
        c.LDAPAuthenticator.auth_state_attributes = ["mail"]
        """)


CONFIGS = {"bind_template_starttls": bind_template_starttls, "lookup_dn_ldaps": lookup_dn_ldaps}
# who gets in: alice is in jupyter-users; grace only in project-x; bob only through a nested group (neither
# ldapauthenticator nor this configuration resolves nesting); carol in no group
EXPECTED = {
    "bind_template_starttls": {"alice": True, "grace": False, "bob": False, "carol": False},
    "lookup_dn_ldaps": {"alice": True, "grace": True, "bob": False, "carol": False},
}
CLASSES = {"ldapauthenticator": "ldapauthenticator.LDAPAuthenticator", "hubfleet-ldap": "hubfleet-ldap"}


@pytest.fixture(scope="module", params=[(c, k) for c in CONFIGS for k in CLASSES], ids=lambda p: f"{p[0]}-{p[1]}")
def compat_hub(request, auth_tmp, slapd):
    config, klass = request.param
    cfg = f'c.JupyterHub.authenticator_class = "{CLASSES[klass]}"\n' + CONFIGS[config](slapd)
    h = S.start_hub(auth_tmp / f"hub-compat-{config}-{klass}", cfg, name=f"hub-compat-{config}-{klass}")
    h.extra.update(config=config, klass=klass)
    yield h
    h.stop()


def test_documented_configuration_logs_in_the_same_users(compat_hub):
    hub = compat_hub
    seen = {}
    for name, ok in EXPECTED[hub.extra["config"]].items():
        r = S.form_login(hub.url, name, S.LDAP_USERS[name][0])
        seen[name] = r.ok and S.whoami(r.session, hub.url) == name
    assert seen == EXPECTED[hub.extra["config"]], f"{hub.extra}\n{hub.log_tail(40)}"
    assert not S.form_login(hub.url, "alice", "wrong-pw").ok
    if hub.extra["klass"] == "hubfleet-ldap":
        log = hub.proc.log_path.read_text(errors="replace")
        assert "ldapauthenticator's allowed_groups is read as allowed_groups" in log
        assert "ldapauthenticator's tls_strategy is read as tls_strategy" in log
        if hub.extra["config"] == "lookup_dn_ldaps":
            assert "ldapauthenticator's lookup_dn_search_user is read as search_bind_dn" in log
            assert hub.user("alice")["auth_state"]["user_attributes"] == {"mail": ["alice@example.org"]}
