"""jupyterhub-ldapauthenticator's own LDAPAuthenticator as a backend of the composite, through a real hub running the
docs' example (``<!-- example: wrapped-ldapauthenticator -->`` in docs/authenticators.md) against the session's real
slapd (StartTLS): the groups ldapauthenticator reports (its ``ldap_groups``) go through the entry's
group_mapping / group_prefix / allowed_groups / admin_groups, so group-based access and admin work; a user in no
listed group is refused and no user is created. The kind is the import path here (the doc names the entry point).
"""

from __future__ import annotations

import pytest
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
def site(auth_tmp, slapd):
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
