"""Configuration checks of the hubfleet authenticators: one start-up check, errors naming option and value.

Constructing the authenticators opens no connection (LDAP connects on first login, OIDC discovers on first login).
"""

from __future__ import annotations

import pytest
from traitlets.config import Config

from hubfleet.authenticators import ConfigError, HubfleetAuthenticator
from hubfleet.authenticators.ldap import HubfleetLDAPAuthenticator, normalize_dn, rdn_value, render_dn, render_filter
from hubfleet.authenticators.local import HubfleetLocalAuthenticator
from hubfleet.authenticators.oidc import HubfleetOIDCAuthenticator

LDAP_OK = dict(server_urls=["ldap://ldap.example.org"], bind_dn_templates=["uid={username},ou=people,dc=x"])
OIDC_OK = dict(issuer="https://idp.example.org", client_id="hub")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"server_urls": []}, "server_urls is empty"),
        ({"server_urls": ["http://ldap"]}, "must start with ldap:// or ldaps://"),
        ({"server_urls": ["ldaps://ldap"]}, "is ldaps:// but tls_strategy is 'starttls'"),
        ({"tls_strategy": "ldaps"}, "must be ldaps:// when tls_strategy is 'ldaps'"),
        ({"tls_strategy": "insecure", "tls_ca_file": "/ca.pem"}, "tls_ca_file is set but tls_strategy is 'insecure'"),
        ({"bind_dn_templates": []}, "set bind_dn_templates (bind by DN) or user_search_base"),
        ({"bind_dn_templates": ["uid=x,dc=x"]}, "has no {username} placeholder"),
        ({"search_bind_dn": "cn=svc"}, "search_bind_password is empty for search_bind_dn 'cn=svc'"),
        ({"nested_groups": True}, "nested_groups needs group_search_base"),
        ({"ad_in_chain": True}, "ad_in_chain needs group_search_base"),
        ({"nested_groups_max_depth": -1, "group_search_base": "ou=g"}, "must be >= 0, not -1"),
        ({"operation_timeout": 0}, "operation_timeout must be positive, not 0"),
        ({"username_pattern": "([a-z"}, "username_pattern: '([a-z' is not a valid regular expression"),
        ({"executor_threads": 0}, "executor_threads must be at least 1, not 0"),
        ({"manage_groups": False, "allowed_groups": {"g"}}, "need HubfleetLDAPAuthenticator.manage_groups = True"),
    ],
)
def test_ldap_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as e:
        HubfleetLDAPAuthenticator(**{**LDAP_OK, **kwargs})
    assert message in str(e.value)
    assert "HubfleetLDAPAuthenticator" in str(e.value)


def test_ldap_defaults_are_secure():
    a = HubfleetLDAPAuthenticator(**LDAP_OK)
    assert a.tls_strategy == "starttls"
    assert a.manage_groups is True
    server = a._servers[0]
    import ssl

    assert server.tls.validate == ssl.CERT_REQUIRED
    assert not server.ssl  # StartTLS upgrades a plain connection


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"issuer": ""}, "issuer is not set"),
        ({"issuer": "idp.example.org"}, "must be an http(s) URL"),
        ({"client_id": ""}, "client_id is not set"),
        ({"scope": ["profile"]}, "must include 'openid'"),
        ({"id_token_algorithms": ["RS256", "HS256"]}, "must not contain ['HS256']"),
        ({"id_token_algorithms": ["none"]}, "must not contain ['none']"),
    ],
)
def test_oidc_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as e:
        HubfleetOIDCAuthenticator(**{**OIDC_OK, **kwargs})
    assert message in str(e.value)


def test_oidc_defaults():
    a = HubfleetOIDCAuthenticator(**OIDC_OK)
    assert a.enable_pkce is True
    assert a.scope == ["openid", "profile", "email"]
    assert a.username_claim == "preferred_username"
    assert a.login_service == "OpenID Connect"
    assert a.http_request_kwargs["request_timeout"] == a.http_timeout


def test_local_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="users_file is not set"):
        HubfleetLocalAuthenticator()
    with pytest.raises(ConfigError, match="bcrypt_rounds must be between 4 and 31, not 3"):
        HubfleetLocalAuthenticator(users_file=str(tmp_path / "u.yaml"), bcrypt_rounds=3)


@pytest.mark.parametrize(
    "backends, message",
    [
        ([], "backends is empty"),
        (["kerberos"], "backends[0] (kerberos 'kerberos'): kind 'kerberos' names no installed authenticator"),
        (["githbu"], "Use an entry point of 'jupyterhub.authenticators' (auth0, azuread, bitbucket"),
        ([{"kind": "oauthenticator.nowhere:Nothing", "name": "x"}], "kind 'oauthenticator.nowhere:Nothing' names no"),
        ([{"kind": "github", "client_id": "a", "allowed_user": ["x"]}],
         "backends[0] (github 'github'): unknown option(s) ['allowed_user']; GitHubOAuthenticator has no such"),
        ([{"kind": "github", "client_id": "a", "admin_users": {"x"}}], "['admin_users'] apply to the whole hub"),
        ([{"kind": "github", "name": "gh", "client_id": "a", "oauth_callback_url": "https://h/hub/oauth_callback"},
          {"kind": "oauthenticator.gitlab:GitLabOAuthenticator", "name": "gl", "client_id": "b",
           "oauth_callback_url": "https://h/hub/oauth_callback"}],
         "'gh' and 'gl' both use /hub/oauth_callback; give each OAuth backend its own oauth_callback_url"),
        ([{"kind": "local", "name": "Bad Name", "users_file": "/x"}], "name 'Bad Name' must be lowercase"),
        ([{"kind": "oidc", "name": "a", **OIDC_OK}, {"kind": "oidc", "name": "a", **OIDC_OK}], "'a' is used twice"),
        ([{"kind": "local", "users_file": "/x", "no_such_option": 1}], "backends[0] (local 'local')"),
        ([{"kind": "ldap", **LDAP_OK, "server_urls": []}], "server_urls is empty"),
    ],
)
def test_composite_config_errors(backends, message):
    with pytest.raises(ConfigError) as e:
        HubfleetAuthenticator(backends=backends)
    assert message in str(e.value)


def test_composite_builds_ordered_backends_with_class_config(tmp_path):
    c = Config()
    c.HubfleetLDAPAuthenticator.server_urls = ["ldap://ldap.example.org"]
    c.HubfleetLDAPAuthenticator.user_search_base = "ou=people,dc=x"
    c.HubfleetAuthenticator.backends = [
        "ldap",
        {"kind": "local", "users_file": str(tmp_path / "u.yaml")},
        {"kind": "oidc", "name": "keycloak", **OIDC_OK},
        {"kind": "oidc", "name": "partner-sso", "login_service": "Partner SSO", **OIDC_OK},
        {"kind": "github", "client_id": "gh-client", "login_service": "GitHub", "group_prefix": "gh-"},
    ]
    a = HubfleetAuthenticator(config=c)
    assert [b.backend_name for b in a._children] == ["ldap", "local", "keycloak", "partner-sso", "github"]
    assert a._children[4].inner.client_id == "gh-client" and a._children[4]._policy_overrides == {"group_prefix"}
    assert a._children[0].server_urls == ["ldap://ldap.example.org"]
    assert a.password_backend is True
    assert a.oidc_buttons() == [("Keycloak", "oauth_login/keycloak"), ("Partner SSO", "oauth_login/partner-sso"),
                                ("GitHub", "oauth_login/github")]
    routes = [r for r, _h in a.get_handlers(None)]
    assert routes == ["/login", "/logout", "/oauth_login/keycloak", "/oauth_callback/keycloak",
                      "/oauth_login/partner-sso", "/oauth_callback/partner-sso",
                      "/oauth_login/github", "/oauth_callback/github"]
    from jinja2 import Template

    page = Template(a.get_custom_html("/hub/"))
    html = page.render(next="", xsrf="t", authenticator_login_url="/hub/login")
    assert 'name="password"' in html and 'href="/hub/oauth_login/keycloak">Sign in with Keycloak</a>' in html
    html = page.render(next="%2Fhub%2Fhome", xsrf="t", authenticator_login_url="/hub/login")
    assert 'href="/hub/oauth_login/keycloak?next=%2Fhub%2Fhome">Sign in with Keycloak</a>' in html


def test_login_html_escapes_labels_and_user_input():
    from jinja2 import Template

    a = HubfleetAuthenticator(backends=[{"kind": "oidc", "login_service": "<b>{{ 7*7 }}</b>", **OIDC_OK}])
    rendered = Template(a.get_custom_html("/hub/")).render(
        username='"><script>x</script>', login_error="<img src=x>", xsrf="t", authenticator_login_url="/hub/login"
    )
    assert "<script>" not in rendered and "<img" not in rendered and "49" not in rendered
    assert 'name="password"' not in rendered  # no password backend: no form


def test_every_option_has_help():
    for cls in (HubfleetAuthenticator, HubfleetLDAPAuthenticator, HubfleetLocalAuthenticator,
                HubfleetOIDCAuthenticator):
        own = {n for n, t in cls.class_traits(config=True).items() if t.this_class.__module__.startswith("hubfleet")}
        missing = [n for n in own if not (cls.class_traits()[n].help or "").strip()]
        assert not missing, f"{cls.__name__}: options without help: {missing}"


@pytest.mark.parametrize(
    "template, values, expected",
    [
        ("(uid={username})", {"username": "alice"}, "(uid=alice)"),
        ("(uid={username})", {"username": "*)(uid=*"}, "(uid=\\2a\\29\\28uid=\\2a)"),
        ("(member={dn})", {"dn": "cn=a\\,b,dc=x"}, "(member=cn=a\\5c,b,dc=x)"),
        ("(uid={username})", {"username": "a\x00b"}, "(uid=a\\00b)"),
    ],
)
def test_render_filter_escapes(template, values, expected):
    assert render_filter(template, **values) == expected


@pytest.mark.parametrize(
    "username, expected",
    [
        ("alice", "uid=alice,ou=p"),
        ("a,b", "uid=a\\,b,ou=p"),
        ("a+b", "uid=a\\+b,ou=p"),
        ('"a"', 'uid=\\"a\\",ou=p'),
        ("<a>;=", "uid=\\<a\\>\\;\\=,ou=p"),
        ("#a", "uid=\\#a,ou=p"),
        (" a ", "uid=\\ a\\ ,ou=p"),
        ("a\\b", "uid=a\\\\b,ou=p"),
    ],
)
def test_render_dn_escapes(username, expected):
    assert render_dn("uid={username},ou=p", username) == expected


@pytest.mark.parametrize(
    "dn, key, value",
    [
        ("CN=Data Science,OU=Groups,DC=x", "cn=data science,ou=groups,dc=x", "Data Science"),
        ("cn=data science, ou=groups, dc=x", "cn=data science,ou=groups,dc=x", "data science"),
        ("cn=a\\,b,dc=x", "cn=a\\,b,dc=x", "a,b"),
    ],
)
def test_dn_helpers(dn, key, value):
    assert normalize_dn(dn) == key
    assert rdn_value(dn) == value


def test_config_reference_is_generated_from_help_text():
    from hubfleet.config import docgen

    text = docgen.render()
    for cls in (HubfleetAuthenticator, HubfleetLDAPAuthenticator, HubfleetLocalAuthenticator,
                HubfleetOIDCAuthenticator):
        assert f"## `{cls.__module__}.{cls.__name__}`" in text
    assert "### `c.HubfleetLDAPAuthenticator.tls_strategy`" in text
    assert "### `c.HubfleetBaseAuthenticator.admin_groups`" in text
    assert "LDAP_MATCHING_RULE_IN_CHAIN" in text  # help text, verbatim


def test_ad_in_chain_filter():
    a = HubfleetLDAPAuthenticator(**LDAP_OK, ad_in_chain=True, group_search_base="dc=x")
    assert render_filter(a.ad_in_chain_filter, dn="CN=Smith\\, J (x),OU=Staff,DC=corp") == (
        "(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c, J \\28x\\29,OU=Staff,DC=corp)"
    )


def test_config_reference_is_up_to_date():
    """docs/config-reference.md is generated from the help= texts; regenerate it with `make docs`."""
    from pathlib import Path

    from hubfleet.config import docgen

    committed = (Path(__file__).parents[2] / "docs" / "config-reference.md").read_text()
    assert committed == docgen.render(), "docs/config-reference.md is out of date: run `make docs`"


def test_mails_with_links_need_the_hubs_public_url(tmp_path):
    """The links in sign-up mails are built from JupyterHub.public_url, never from a request's Host header."""
    from traitlets import Unicode
    from traitlets.config import Configurable

    class App(Configurable):  # what the authenticators look up their hub application by
        public_url = Unicode("")
        hub_prefix = Unicode("/hub/")

    opts = dict(users_file=str(tmp_path / "u.yaml"), enable_signup=True, smtp_host="smtp.example.org",
                db_url=f"sqlite:///{tmp_path}/hub.sqlite", subject_store_file="")
    with pytest.raises(ConfigError, match=r"smtp_host is set: set c.JupyterHub.public_url too"):
        HubfleetLocalAuthenticator(parent=App(), **opts)
    HubfleetLocalAuthenticator(parent=App(public_url="https://hub.example.org/"), **opts)
    HubfleetLocalAuthenticator(parent=App(), **{**opts, "smtp_host": ""})  # no mail, no links
