"""Identity and policy (issue 8, defects 2, 4, 5): the (backend, subject) binding, per-backend policy in a
composite, non-ASCII names, the allow_existing_users default, LDAP bind outcomes, and the CLI's bounds.
Local accounts only here (no sockets); the LDAP and restart cases run against slapd and real hubs in
tests/integration/auth/."""

from __future__ import annotations

import asyncio

import pytest
from tornado import web
from traitlets.config import Config

from hubfleet.authenticators import ConfigError, HubfleetAuthenticator, cli, policy
from hubfleet.authenticators.binding import BindingStore, BindingStoreError, read_json_store
from hubfleet.db import Database
from hubfleet.authenticators.ldap import bind_outcome
from hubfleet.authenticators.local import HubfleetLocalAuthenticator, hash_password, write_users_file
from tests.unit.test_auth_local import run_cli

H = hash_password("pw", rounds=4)


@pytest.mark.parametrize(
    "raw, kwargs, expected",
    [
        ("\u212aim", {}, None),  # KELVIN SIGN: "\u212aim".lower() == "kim"
        ("\u212aIM", {"lowercase": False, "pattern": None}, None),
        ("ﬁona", {}, None),  # the fi ligature
        ("Kim", {}, "kim"),
        ("Jürgen", {"username_map": {"Jürgen": "juergen"}}, "juergen"),  # a map names it as typed
        ("jürgen", {"pattern": None}, None),
        ("alice", {"username_map": {"alice": "ålice"}, "pattern": None}, "ålice"),  # a map may target it
    ],
)
def test_non_ascii_refused_before_case_folding(raw, kwargs, expected):
    assert policy.normalize_username(raw, **kwargs) == expected


B = policy.Binding


@pytest.mark.parametrize(
    "bound, backend, subject, refused",
    [
        (None, "ldap", "uid=a,ou=people", None),
        (None, "ldap", "", "no stable subject"),
        (B("ldap", "uid=a,ou=people"), "ldap", "uid=a,ou=people", None),
        (B("ldap", "uid=a,ou=people"), "ldap", "uid=a,ou=guests", "another 'ldap' account"),
        (B("ldap", "uid=a,ou=people"), "local", "a", "belongs to the 'ldap' sign-in, not 'local'"),
        (B("keycloak", "sub-1"), "keycloak", "sub-2", "another 'keycloak' account"),
        (B("keycloak", "sub-1"), "keycloak", "", "another 'keycloak' account"),
    ],
)
def test_binding_conflict(bound, backend, subject, refused):
    why = policy.binding_conflict(bound, backend, subject)
    assert (why is None) if refused is None else (refused in why)


def test_binding_store_persists_across_stores_and_reads_the_json_format(tmp_path):
    url = f"sqlite:///{tmp_path}/hub.sqlite"
    a, b = BindingStore(Database(url)), BindingStore(Database(url))  # two processes: the hub and `hubfleet users`
    assert a.get("ann") is None
    assert a.bind("ann", "local", "ann") == (None, "bound")
    assert b.get("ann") == B("local", "ann")
    assert b.unbind("ann") == B("local", "ann")
    assert a.get("ann") is None
    path = tmp_path / "subjects.json"
    path.write_text("{broken")
    with pytest.raises(BindingStoreError, match="not valid JSON"):
        read_json_store(path)


def _local(tmp_path, name="ann", groups=("staff",)):
    f = tmp_path / f"{name}-users.yaml"
    write_users_file(f, {"users": {name: {"password_hash": H, "groups": list(groups)}}})
    return str(f)


def login(a, name, pw="pw"):
    return asyncio.run(a.get_authenticated_user(None, {"username": name, "password": pw}))


def test_a_second_backend_offering_the_same_name_is_refused_until_relinked(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/hub.sqlite"
    one = HubfleetAuthenticator(backends=[{"kind": "local", "name": "first", "users_file": _local(tmp_path)}],
                                allowed_groups={"staff"}, db_url=store)
    assert login(one, "ann")["name"] == "ann"
    assert one.bindings.get("ann") == B("first", "ann")
    # the site adds another backend listed first, which also has an "ann"
    other = tmp_path / "other"
    other.mkdir()
    two = HubfleetAuthenticator(backends=[{"kind": "local", "name": "second", "users_file": _local(other)},
                                          {"kind": "local", "name": "first", "users_file": _local(tmp_path)}],
                                allowed_groups={"staff"}, db_url=store)
    with pytest.raises(web.HTTPError) as e:
        login(two, "ann")
    assert e.value.status_code == 403
    assert "belongs to the 'first' sign-in, not 'second'" in e.value.log_message
    assert "hubfleet users unbind" in e.value.log_message
    # the documented re-link: unbind, the next login binds again
    assert cli.main(["users", "unbind", "ann", "--db-url", store]) == 0
    assert "unbound ann (was first: ann)" in capsys.readouterr().out
    assert login(two, "ann")["auth_state"]["hubfleet_backend"] == "second"


def test_per_backend_policy_applies_to_that_backends_users(tmp_path):
    c = Config()
    c.HubfleetAuthenticator.backends = [
        {"kind": "local", "name": "idp", "users_file": _local(tmp_path, "eve", ["hub-admins", "staff"]),
         "group_prefix": "idp-", "allowed_groups": {"idp-staff"}},
        {"kind": "local", "name": "dir", "users_file": _local(tmp_path, "dan", ["hub-admins"])},
    ]
    c.HubfleetAuthenticator.allowed_groups = {"hub-admins"}
    c.HubfleetAuthenticator.admin_groups = {"hub-admins"}
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hub.sqlite"
    a = HubfleetAuthenticator(config=c)
    eve = login(a, "eve")  # the idp's "hub-admins" becomes idp-hub-admins: not the directory's admin group
    assert eve["groups"] == ["idp-hub-admins", "idp-staff"] and eve["admin"] is not True
    dan = login(a, "dan")
    assert dan["groups"] == ["hub-admins"] and dan["admin"] is True


@pytest.mark.parametrize("option, value", [("admin_users", {"eve"}), ("allowed_users", {"eve"}),
                                           ("allow_all", True), ("username_map", {"a": "b"})])
def test_hub_wide_policy_in_a_backend_entry_is_refused(tmp_path, option, value):
    with pytest.raises(ConfigError) as e:
        HubfleetAuthenticator(backends=[{"kind": "local", "users_file": _local(tmp_path), option: value}])
    assert f"['{option}'] apply to the whole hub, not one backend; set them on HubfleetAuthenticator" in str(e.value)


def test_allow_existing_users_defaults_to_false(tmp_path):
    """JupyterHub's default (True when allowed_users is set) adds every user who logs in to allowed_users."""
    a = HubfleetLocalAuthenticator(users_file=_local(tmp_path), allowed_users={"x"}, allowed_groups={"staff"})
    assert a.allow_existing_users is False
    a.add_user(type("U", (), {"name": "ann"})())
    assert "ann" not in a.allowed_users


@pytest.mark.parametrize("ok, code, outcome", [(True, 0, "ok"), (False, 49, "refused"), (False, 53, "refused"),
                                               (False, 80, "refused"), (False, 51, "unavailable"),
                                               (False, 52, "unavailable"), (False, None, "refused")])
def test_ldap_bind_outcome(ok, code, outcome):
    assert bind_outcome(ok, code) == outcome


@pytest.mark.parametrize("raw, attribute, subject", [
    ({"objectGUID": [bytes(range(16))]}, "", "03020100-0504-0706-0809-0a0b0c0d0e0f"),  # AD, little-endian fields
    ({"entryUUID": [b"2f1c0e5a-8d2b-103f-9b7c-5d1e3b6a7c10"]}, "", "2f1c0e5a-8d2b-103f-9b7c-5d1e3b6a7c10"),
    ({"entryuuid": [b"u-1"], "objectGUID": [bytes(16)]}, "", "u-1"),  # entryUUID first, names case-insensitive
    ({}, "", "uid=ann,ou=people,dc=x"),  # neither: the normalised DN
    ({"nsUniqueId": [b"a-b"]}, "nsUniqueId", "a-b"),
    ({"nsUniqueId": [b"a", b"b"]}, "nsUniqueId", ""),  # several values: no subject (the login is refused)
    ({"entryUUID": [b"u-1"]}, "nsUniqueId", ""),
])
def test_ldap_subject(raw, attribute, subject):
    from hubfleet.authenticators.ldap_util import entry_subject, previous_subject

    assert entry_subject("UID=Ann, ou=People,dc=x", raw, attribute) == subject
    # a binding made under the DN default is the previous subject of an account with an identifier
    assert previous_subject("UID=Ann, ou=People,dc=x", subject) == (
        "uid=ann,ou=people,dc=x" if subject not in ("", "uid=ann,ou=people,dc=x") else "")


@pytest.mark.parametrize("rounds", ["3", "32", "x"])
def test_cli_rounds_bounded(tmp_path, capsys, rounds):
    with pytest.raises(SystemExit) as e:
        run_cli(["users", "add", "ann", "--file", str(tmp_path / "u.yaml"), "--password-stdin", "--rounds", rounds],
                "pw\n")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--rounds" in err and "Traceback" not in err


def test_cli_refuses_passwords_over_72_bytes(tmp_path, capsys):
    f = str(tmp_path / "u.yaml")
    assert run_cli(["users", "add", "ann", "--file", f, "--password-stdin", "--rounds", "4"], "é" * 37 + "\n") == 2
    err = capsys.readouterr().err
    assert "at most 72 bytes (UTF-8); this one is 74 bytes" in err and "Traceback" not in err
    assert run_cli(["users", "add", "ann", "--file", f, "--password-stdin", "--rounds", "4"], "é" * 36 + "\n") == 0


def test_long_password_login_is_refused_clearly(tmp_path):
    a = HubfleetLocalAuthenticator(users_file=_local(tmp_path), allowed_groups={"staff"},
                                   db_url=f"sqlite:///{tmp_path}/hub.sqlite")
    with pytest.raises(web.HTTPError) as e:
        login(a, "ann", "x" * 73)
    assert e.value.status_code == 403 and "at most 72 bytes" in e.value.log_message


def test_dummy_hash_uses_bcrypt_rounds(tmp_path):
    a = HubfleetLocalAuthenticator(users_file=_local(tmp_path), bcrypt_rounds=5)
    assert a._dummy_hash.startswith(b"$2b$05$")


@pytest.mark.parametrize("broken", ["json", "database"])
def test_unusable_bindings_fail_closed(tmp_path, broken):
    """A JSON store that cannot be imported, or a database that cannot be opened: no login, no refresh."""
    store = tmp_path / "s.json"
    if broken == "json":
        store.write_text("{not json")
        url = f"sqlite:///{tmp_path}/hub.sqlite"
    else:
        url = f"sqlite:///{tmp_path}/no-such-dir/hub.sqlite"
    a = HubfleetLocalAuthenticator(users_file=_local(tmp_path), allowed_groups={"staff"},
                                   subject_store_file=str(store), db_url=url)
    with pytest.raises(web.HTTPError) as e:
        login(a, "ann")
    assert e.value.status_code == 503 and "Sign-in is unavailable" in e.value.log_message
    user = type("U", (), {"name": "ann"})()
    assert asyncio.run(a.refresh_user(user)) is False


OIDC_OK = {"issuer": "https://idp.example.org", "client_id": "hub", "client_secret": "s"}


def test_an_untrusted_providers_groups_never_meet_the_hub_admin_groups(tmp_path):
    """c.Authenticator.admin_groups (as the README sets it) also lands on every backend: for an OIDC entry without
    trust_admin_groups it must not count, and its group_prefix / allowed_groups must apply."""
    c = Config()
    c.Authenticator.admin_groups = {"jupyter-admins"}
    c.Authenticator.allowed_groups = {"jupyter-users"}
    c.HubfleetAuthenticator.backends = [
        {"kind": "local", "users_file": _local(tmp_path, "dan", ["jupyter-admins"])},
        {"kind": "oidc", "name": "partners", **OIDC_OK, "group_prefix": "partner-",
         "allowed_groups": {"partner-jupyter"}},
        {"kind": "oidc", "name": "sso", **OIDC_OK, "trust_admin_groups": True},
    ]
    c.HubfleetAuthenticator.db_url = f"sqlite:///{tmp_path}/hub.sqlite"
    a = HubfleetAuthenticator(config=c)
    assert a.backend_by_name("partners").admin_groups == {"jupyter-admins"}  # what oauthenticator would have used
    partners = a.rules_for("partners")
    assert (partners.admin_groups, partners.allowed_groups, partners.group_prefix) == (
        frozenset(), frozenset({"partner-jupyter"}), "partner-")
    groups, d = policy.evaluate(partners, username="pat", backend_groups=["jupyter-admins", "jupyter"])
    assert groups == ["partner-jupyter", "partner-jupyter-admins"] and d.allowed and not d.admin
    assert a.rules_for("sso").admin_groups == {"jupyter-admins"}
    assert a.rules_for("local").admin_groups == {"jupyter-admins"}  # trust_admin_groups: on for local
    assert login(a, "dan")["admin"] is True
    assert a.rules_for("no-such-backend").admin_groups == frozenset()


def test_one_normalisation_and_one_decision_per_login(tmp_path, monkeypatch):
    calls = {"normalize": 0, "decide": 0}
    real_normalize, real_decide = policy.normalize_username, policy.decide

    def normalize(*a, **k):
        calls["normalize"] += 1
        return real_normalize(*a, **k)

    def decide(*a, **k):
        calls["decide"] += 1
        return real_decide(*a, **k)

    a = HubfleetAuthenticator(backends=[{"kind": "local", "name": "one", "users_file": _local(tmp_path)},
                                        {"kind": "local", "name": "two", "users_file": _local(tmp_path)}],
                              allowed_groups={"staff"}, db_url=f"sqlite:///{tmp_path}/hub.sqlite")
    a.backend_by_name("one").accounts()  # loading the file normalises its names once: not part of a login
    a.backend_by_name("two").accounts()
    monkeypatch.setattr(policy, "normalize_username", normalize)
    monkeypatch.setattr(policy, "decide", decide)
    assert login(a, " Ann ")["name"] == "ann"
    assert calls == {"normalize": 1, "decide": 1}


def test_base_does_not_import_the_composite():
    import hubfleet.authenticators.base as base

    assert not hasattr(base, "HubfleetAuthenticator")
