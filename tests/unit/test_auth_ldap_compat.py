"""ldapauthenticator 2.0's options read by hubfleet-ldap (issue 9 item 2): the alias table covers every option of
the installed ldapauthenticator, translations and refusals name the option. Logins with these configurations
through a real hub and slapd: tests/integration/auth/test_ldapauthenticator_compat.py."""

from __future__ import annotations

import logging

import pytest
from traitlets.config import Config

from hubfleet.authenticators import ConfigError
from hubfleet.authenticators.ldap import HubfleetLDAPAuthenticator
from hubfleet.authenticators.ldap_compat import OPTIONS, LdapCompatError, common_parent, option_table, translate


def test_every_ldapauthenticator_option_is_mapped_or_refused():
    from jupyterhub.auth import Authenticator
    from ldapauthenticator import LDAPAuthenticator

    own = set(LDAPAuthenticator.class_trait_names(config=True)) - set(Authenticator.class_trait_names(config=True))
    assert own - set(OPTIONS) == set(), "add these ldapauthenticator options to ldap_compat.OPTIONS"


def test_the_docs_table_is_the_alias_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "authenticators.md").read_text()
    assert option_table() in doc, "paste ldap_compat.option_table() into docs/authenticators.md"


def test_bind_dn_template_with_starttls():
    tr = translate({"server_address": "ldap.example.org", "bind_dn_template": "uid={username},ou=people,dc=x",
                    "tls_kwargs": {"ca_certs_file": "/ca.pem"}, "allow_all": True},
                   passthrough={"allow_all"})
    assert tr.settings == {"server_urls": ["ldap://ldap.example.org:389"], "tls_ca_file": "/ca.pem",
                           "bind_dn_templates": ["uid={username},ou=people,dc=x"], "allow_all": True}
    assert "ldapauthenticator's bind_dn_template is read as bind_dn_templates" in tr.notes
    assert any(n.startswith("ldapauthenticator's server_address/server_port is read as server_urls") for n in tr.notes)


def test_lookup_dn_with_search_user_and_allowed_group_dns_over_ldaps():
    tr = translate({"server_address": "ldap.example.org", "tls_strategy": "on_connect", "lookup_dn": True,
                    "user_search_base": "ou=people,dc=x", "user_attribute": "uid",
                    "lookup_dn_search_filter": "({login_attr}={login})", "lookup_dn_search_user": "cn=svc,dc=x",
                    "lookup_dn_search_password": "pw", "lookup_dn_user_dn_attribute": "cn",
                    "allowed_groups": ["cn=researchers,ou=groups,dc=x", "cn=staff,ou=projects,dc=x"],
                    "auth_state_attributes": ["mail"]})
    s = tr.settings
    assert s["server_urls"] == ["ldaps://ldap.example.org:636"] and s["tls_strategy"] == "ldaps"
    assert s["user_search_filter"] == "({username_attribute}={username})"
    assert (s["search_bind_dn"], s["search_bind_password"], s["username_attribute"]) == ("cn=svc,dc=x", "pw", "uid")
    assert s["allowed_groups"] == {"researchers", "staff"} and s["group_search_base"] == "dc=x"
    # only the listed DNs count: a "cn=staff" made anywhere else under dc=x does not
    assert s["group_dns"] == ["cn=researchers,ou=groups,dc=x", "cn=staff,ou=projects,dc=x"]
    assert s["auth_state_attributes"] == ["mail"]


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"tls_kwargs": {"validate": 0}}, "validate other than ssl.CERT_REQUIRED is refused"),
        ({"tls_kwargs": {"local_certificate_file": "c.pem"}}, "['local_certificate_file'] have no hubfleet"),
        ({"lookup_dn": True}, "lookup_dn needs user_search_base"),
        ({"search_filter": "(objectClass=person)", "bind_dn_template": "uid={username}"},
         "search_filter without lookup_dn"),
        ({"group_attributes": ["member"]}, "group_attributes ['member']"),
        ({"allowed_groups": ["cn=a,ou=g,dc=x", "cn=A,ou=h,dc=x"]}, "two groups with the same name"),
        ({"allowed_groups": ["cn=a,dc=x", "ou=b,dc=x"]}, "different attributes"),
        ({"use_lookup_dn_username": True, "lookup_dn_user_dn_attribute": "cn", "user_attribute": "uid"},
         "use_lookup_dn_username = True"),
        ({"tls_strategy": "sometimes"}, "tls_strategy 'sometimes' is not one of"),
        ({"server_adress": "typo"}, "c.LDAPAuthenticator.server_adress is not an ldapauthenticator 2.0 option"),
    ],
)
def test_refusals_name_the_option(opts, message):
    with pytest.raises(LdapCompatError) as e:
        translate(opts)
    assert message in str(e.value)


def test_a_clash_with_hubfleets_own_option_is_refused():
    with pytest.raises(LdapCompatError, match="c.LDAPAuthenticator.bind_dn_template and "
                                              "c.HubfleetLDAPAuthenticator.bind_dn_templates are both set"):
        translate({"bind_dn_template": "uid={username}"}, own={"bind_dn_templates"})


def test_lookup_dn_with_a_bind_template_binds_as_the_dn_found():
    """The shape of ldapauthenticator's Active Directory example (and of bench/bench_ldap.py's configuration)."""
    tr = translate({"lookup_dn": True, "user_search_base": "ou=people,dc=x", "user_attribute": "sAMAccountName",
                    "lookup_dn_user_dn_attribute": "cn", "bind_dn_template": "{username}", "escape_userdn": False})
    assert "bind_dn_templates" not in tr.settings and tr.settings["username_attribute"] == "sAMAccountName"
    assert any("bind_dn_template is accepted: with lookup_dn it is not used" in n for n in tr.notes)


def test_search_filter_is_anded_into_the_user_search():
    tr = translate({"lookup_dn": True, "user_search_base": "dc=x", "user_attribute": "uid",
                    "search_filter": "(&(objectClass=person)({userattr}={username}))"})
    assert tr.settings["user_search_filter"] == \
        "(&({username_attribute}={username})(&(objectClass=person)({username_attribute}={username})))"


def test_common_parent():
    assert common_parent(["cn=a,ou=g,dc=x,dc=org", "cn=b,ou=G,DC=x,dc=org"]) == "ou=g,dc=x,dc=org"
    assert common_parent(["cn=a\\,b,ou=g,dc=x"]) == "ou=g,dc=x"


def test_the_authenticator_reads_c_ldapauthenticator_and_logs_each_translation(caplog):
    c = Config()
    c.LDAPAuthenticator.server_address = "ldap.example.org"
    c.LDAPAuthenticator.server_port = 3890
    c.LDAPAuthenticator.bind_dn_template = ["uid={username},ou=people,dc=x", ""]
    c.LDAPAuthenticator.tls_strategy = "before_bind"
    c.LDAPAuthenticator.admin_users = {"ann"}
    c.LDAPAuthenticator.auth_state_attributes = ["mail", "uidNumber"]
    c.HubfleetLDAPAuthenticator.subject_attribute = "entryUUID"
    with caplog.at_level(logging.INFO):
        a = HubfleetLDAPAuthenticator(config=c)
    assert a.server_urls == ["ldap://ldap.example.org:3890"] and a.tls_strategy == "starttls"
    assert a.bind_dn_templates == ["uid={username},ou=people,dc=x"] and a.admin_users == {"ann"}
    assert a.auth_state_attributes == {"mail": "mail", "uidNumber": "uidNumber"}
    logged = caplog.text
    for line in ("ldapauthenticator's bind_dn_template is read as bind_dn_templates",
                 "ldapauthenticator's admin_users is read as admin_users",
                 "ldapauthenticator's tls_strategy is read as tls_strategy ('starttls')"):
        assert line in logged


def test_same_named_options_take_ldapauthenticators_values_on_the_hubfleet_class_too():
    a = HubfleetLDAPAuthenticator(server_urls=["ldaps://ldap.example.org"], tls_strategy="on_connect",
                                  bind_dn_templates=["uid={username},dc=x"], auth_state_attributes=["mail"])
    assert a.tls_strategy == "ldaps" and a.auth_state_attributes == {"mail": "mail"}


def test_a_bad_ldapauthenticator_option_stops_the_hub_with_a_config_error():
    c = Config()
    c.LDAPAuthenticator.server_address = "ldap.example.org"
    c.LDAPAuthenticator.bind_dn_template = "uid={username},dc=x"
    c.LDAPAuthenticator.tls_kwargs = {"validate": 0}
    with pytest.raises(ConfigError, match="always validates certificates"):
        HubfleetLDAPAuthenticator(config=c)
