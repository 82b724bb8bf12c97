"""The composite's per-backend policy through a real hub running the configuration of docs/authenticators.md
(read from the doc): two LDAP entries on a real slapd, two local accounts files, two OIDC entries on a real
oidc-provider-mock. Every per-backend option is set on an entry of every kind; a partner provider's self-made
``jupyter-admins`` group makes nobody an admin. Also, against the same slapd: ``memberOf`` groups outside
``group_search_base`` are ignored, the LDAP subject is the entry's entryUUID (a re-created account with the same DN
is refused; a binding to the DN moves to the entryUUID once), and an unknown name costs the same LDAP operations as
a wrong password (counted in slapd's log).
"""

from __future__ import annotations

import re

import pytest
from traitlets.config import Config

from hubfleet.authenticators.base import PER_BACKEND_POLICY
from hubfleet.authenticators.binding import BindingStore
from hubfleet.authenticators.ldap_util import normalize_dn
from hubfleet.db import Database
from hubfleet.authenticators.local import hash_password, write_users_file
from tests.procs import REPO, wait_for

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")

DOC = REPO / "docs" / "authenticators.md"
PARTNERS = f"ou=partners,{S.BASE_DN}"
PARTNER_GROUPS = f"ou=partner-groups,{S.BASE_DN}"
POLICY_OPTIONS = set(PER_BACKEND_POLICY) | {"trust_admin_groups"}
SECRETS = {"LDAP_BIND_PASSWORD": "x", "SSO_CLIENT_SECRET": "sso-secret", "PARTNER_CLIENT_SECRET": "partner-secret"}

LOCAL = {"lola": ["Staff", "random"], "lena": ["OPS"], "root": []}  # root: admin: true in the file
CONTRACTORS = {"carl": ["jupyter-users", "jupyter-admins"]}
OIDC_USERS = {"stan": ["Staff", "Hub-Admins", "misc"], "pat": ["jupyter-admins", "jupyter"], "pam": ["jupyter-users"],
             "adam": ["jupyter"]}  # the partners' adam, not the hub's admin adam

# (entry, user, how to log in, hub groups, admin); groups None: refused
CASES = [
    ("corp", "alice", "alice-pw", ["jupyter-users"], False),
    ("corp", "dave", "dave-pw", ["jupyter-admins", "platform-team"], True),
    ("corp", "mallory", "mallory-pw", None, None),  # blocked_users, hub-wide
    ("partner-ldap", "pia", "pia-pw", ["pl-jupyter-users"], False),
    ("partner-ldap", "piet", "piet-pw", ["pl-hub-admins", "pl-jupyter-users"], True),
    ("local", "lola", "lola-pw", ["jupyter-users"], False),
    ("local", "lena", "lena-pw", ["jupyter-admins"], True),
    ("local", "root", "root-pw", [], True),
    ("contractors", "carl", "carl-pw", ["ext-jupyter-admins", "ext-jupyter-users"], False),
    ("sso", "stan", "oidc", ["jupyter-admins", "jupyter-users"], True),
    ("partners", "pat", "oidc", ["partner-jupyter", "partner-jupyter-admins"], False),
    ("partners", "pam", "oidc", None, None),  # partner-jupyter-users: not the entry's allowed group
]


def doc_example(swaps: dict[str, str] | None = None) -> str:
    return S.doc_example(DOC, "composite", swaps or {})


def _partner_ldif() -> list[str]:
    def person(uid, ou):
        return (f"dn: uid={uid},{ou}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
                f"sn: {uid}\nuserPassword: {uid}-pw\n")

    def group(cn, ou, *members):
        return (f"dn: cn={cn},{ou}\nchangetype: add\nobjectClass: groupOfNames\ncn: {cn}\n"
                + "".join(f"member: {m}\n" for m in members))

    pia, piet = f"uid=pia,{PARTNERS}", f"uid=piet,{PARTNERS}"
    return [
        f"dn: {PARTNERS}\nchangetype: add\nobjectClass: organizationalUnit\nou: partners\n",
        f"dn: {PARTNER_GROUPS}\nchangetype: add\nobjectClass: organizationalUnit\nou: partner-groups\n",
        person("pia", PARTNERS), person("piet", PARTNERS), person("adam", S.PEOPLE),
        group("Staff", PARTNER_GROUPS, pia, piet),
        group("jupyter-admins", PARTNER_GROUPS, pia),  # the partner's own group with the hub's admin name
        group("Admins", PARTNER_GROUPS, piet),
        # somebody who may create groups under ou=projects makes one with the directory's admin group name
        group("hub-admins", S.PROJECTS, S.user_dn("grace")),
    ]


@pytest.fixture(scope="module")
def site(auth_tmp, oidc_mock):
    tmp = auth_tmp / "composite-policy"
    slapd = S.start_slapd(tmp / "slapd", log_level="stats")
    for ldif in _partner_ldif():
        slapd.ldapmodify(ldif)
    files = {}
    for name, users in (("users", LOCAL), ("contractors", CONTRACTORS)):
        files[name] = tmp / f"{name}.yaml"
        write_users_file(files[name], {"users": {
            u: {"password_hash": hash_password(f"{u}-pw", rounds=4), "groups": g, "admin": u == "root"}
            for u, g in users.items()}})
    for sub, groups in OIDC_USERS.items():
        oidc_mock.set_user(sub, {"preferred_username": sub, "groups": groups})
    swaps = {
        '"ldap://ldap.example.org"': repr(slapd.url),
        "dc=example,dc=org": S.BASE_DN,
        "/srv/jupyterhub/users.yaml": str(files["users"]),
        "/srv/jupyterhub/contractors.yaml": str(files["contractors"]),
        "https://sso.example.org/realms/staff": oidc_mock.issuer,
        "https://login.partner.example.com": oidc_mock.issuer,
    }
    example = doc_example(swaps)
    cfg = example + "\n".join([
        "",
        f"c.HubfleetLDAPAuthenticator.tls_ca_file = {str(slapd.ca_file)!r}",
        "c.HubfleetLocalAuthenticator.bcrypt_rounds = 4",
        "c.HubfleetOIDCAuthenticator.allow_http_issuer = True",
        "c.JupyterHub.public_url = c.JupyterHub.bind_url",
        "",
    ])
    env = {**SECRETS, "LDAP_BIND_PASSWORD": S.SVC_PW}
    hub = S.start_hub(tmp / "hub", cfg, name="hub-composite-policy", extra_env=env)
    hub.extra.update(slapd=slapd)
    yield hub
    hub.stop()
    slapd.stop()


def test_every_per_backend_option_is_set_on_an_entry_of_every_kind(monkeypatch):
    for var in SECRETS:
        monkeypatch.setenv(var, "x")
    c = Config()
    exec(doc_example(), {"c": c})
    backends = c.HubfleetAuthenticator.backends
    for kind in ("ldap", "local", "oidc"):
        used = set().union(*(set(e) for e in backends if e["kind"] == kind)) & POLICY_OPTIONS
        assert used == POLICY_OPTIONS, f"{kind} entries of the doc's example never set {sorted(POLICY_OPTIONS - used)}"


@pytest.mark.parametrize("entry, name, secret, groups, admin", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_per_backend_policy_through_a_real_hub(site, entry, name, secret, groups, admin):
    if secret == "oidc":
        r = S.oidc_login(site.url, entry, sub=name)
        logged_in = S.whoami(r.session, site.url)
    else:
        r = S.form_login(site.url, name, secret)
        logged_in = S.whoami(r.session, site.url)
    if groups is None:
        assert logged_in is None and site.user(name) is None, f"{name} ({entry}) was let in"
        return
    assert logged_in == name, f"{name} ({entry}) refused: {r.status} {getattr(r, 'error', '')}"
    model = site.user(name)
    assert (sorted(model["groups"]), model["admin"]) == (groups, admin), model
    assert model["auth_state"]["hubfleet_backend"] == entry


def test_an_admin_users_name_is_admin_only_through_a_backend_trusted_for_admin(site):
    """``admin_users`` names hub usernames; the partners' IdP (not trusted for admin) has its own adam: logging in
    first, it neither becomes an admin nor claims the name; the directory's adam then logs in as the admin."""
    r = S.oidc_login(site.url, "partners", sub="adam")
    assert S.whoami(r.session, site.url) is None, "the partners' adam was let in"
    assert "user:adam denied (partners): named in admin_users, which this backend is not trusted" in site.log_tail(200)
    assert BindingStore(Database(site.db_url)).get("adam") is None
    r = S.form_login(site.url, "adam", "adam-pw")
    assert S.whoami(r.session, site.url) == "adam", (r.status, r.error)
    model = site.user("adam")
    assert (model["admin"], model["auth_state"]["hubfleet_backend"]) == (True, "corp"), model


def test_a_group_made_outside_group_search_base_counts_for_nothing(site):
    """grace is in cn=project-x and cn=hub-admins under ou=projects (memberOf says so); corp reads groups under
    ou=groups only: she is in no group there, so she is neither an admin nor let in."""
    r = S.form_login(site.url, "grace", "grace-pw")
    assert S.whoami(r.session, site.url) is None and site.user("grace") is None, site.user("grace")
    assert "user:grace denied (corp): not in allowed_users or allowed_groups" in site.log_tail(200)


# ---- the LDAP subject --------------------------------------------------------------------------------------
def _subject(hub, name: str) -> str:
    return BindingStore(Database(hub.db_url)).get(name).subject


def _entry_uuid(slapd, dn: str) -> str:
    import subprocess

    out = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", f"ldap://127.0.0.1:{slapd.port}", "-D", S.ROOT_DN,
                          "-w", S.ROOT_PW, "-b", dn, "-s", "base", "entryUUID"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    return re.search(r"^entryUUID: (\S+)", out, re.M).group(1)


def test_ldap_subject_is_the_entry_uuid_and_a_recreated_account_is_refused(site):
    slapd = site.extra["slapd"]
    dn = f"uid=rex,{S.PEOPLE}"
    add = (f"dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: rex\ncn: rex\nsn: rex\n"
           f"userPassword: rex-pw\n")
    member = f"dn: cn=jupyter-users,{S.GROUPS}\nchangetype: modify\nadd: member\nmember: {dn}\n"
    slapd.ldapmodify(add)
    slapd.ldapmodify(member)
    assert S.whoami(S.form_login(site.url, "rex", "rex-pw").session, site.url) == "rex"
    first = _entry_uuid(slapd, dn)
    assert _subject(site, "rex") == first
    # the account is deleted and someone else gets the same DN: a new entryUUID
    slapd.ldapmodify(f"dn: cn=jupyter-users,{S.GROUPS}\nchangetype: modify\ndelete: member\nmember: {dn}\n")
    slapd.ldapmodify(f"dn: {dn}\nchangetype: delete\n")
    slapd.ldapmodify(add.replace("rex-pw", "new-owner-pw"))
    slapd.ldapmodify(member)
    assert _entry_uuid(slapd, dn) != first
    r = S.form_login(site.url, "rex", "new-owner-pw")
    assert r.status == 403 and S.whoami(r.session, site.url) is None
    assert "belongs to another 'corp' account" in r.error


def test_a_binding_to_the_dn_moves_to_the_entry_uuid_once(site):
    """Bindings made when the DN was the default subject keep working, and are upgraded at the next login."""
    slapd = site.extra["slapd"]
    BindingStore(Database(site.db_url)).bind("bob", "corp", normalize_dn(S.user_dn("bob")))
    r = S.form_login(site.url, "bob", "bob-pw")
    assert S.whoami(r.session, site.url) == "bob", (r.status, r.error)
    assert _subject(site, "bob") == _entry_uuid(slapd, S.user_dn("bob"))
    assert "user:bob binding moved from backend corp subject uid=bob,ou=people" in site.log_tail(200)


# ---- an unknown name costs what a wrong password costs --------------------------------------------------------
_OP = re.compile(r'conn=(\d+) op=(\d+) (?:SRCH base="[^"]*" scope=\d+ deref=\d+ filter="([^"]*)"'
                 r'|BIND dn="([^"]*)" method=)')
_RESULT = re.compile(r"conn=(\d+) op=(\d+) (?:SEARCH )?RESULT ")


def _ops_of_login(site, name, password) -> list[str]:
    """The LDAP operations of one login in slapd's log: user searches and user binds (not the service account's
    own binds, nor group searches)."""
    slapd = site.extra["slapd"]
    since = len(slapd.log_text())
    r = S.form_login(site.url, name, password)
    assert not r.ok

    def done():  # every operation of the login has its RESULT line
        text = slapd.log_text()[since:]
        ops = [m.groups() for m in _OP.finditer(text)]
        answered = {m.groups() for m in _RESULT.finditer(text)}
        return ops if all((conn, op) in answered for conn, op, _f, _d in ops) else None

    ops = wait_for(f"slapd's log to show the results of {name}'s login", done)
    return [("SRCH user" if flt is not None else "BIND user") for _c, _o, flt, dn in ops
            if (flt or "").startswith("(uid=") or (dn is not None and dn != S.SVC_DN)]


def test_unknown_name_costs_the_ldap_operations_of_a_wrong_password(site):
    unknown = _ops_of_login(site, "nobody-here", "some-guess")
    wrong = _ops_of_login(site, "alice", "some-guess")
    # two LDAP entries: each searches for the name and binds (the unknown name against a DN that does not exist)
    assert unknown == wrong == ["SRCH user", "BIND user"] * 2, (unknown, wrong)
