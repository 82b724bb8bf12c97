"""Crafted usernames and passwords against the real hub (login page) and the real slapd (escaping).

Every crafted username is tried with alice's *correct* password (and the local user lisa's), so a filter or DN
injection that matched alice would log in as alice: each case must be refused, or log in as exactly the user the
name canonically denotes (case and surrounding-space variants), and never as anyone else.
"""

from __future__ import annotations

import re

import pytest

from hubfleet.authenticators.ldap import HubfleetLDAPAuthenticator, render_dn

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")

REFUSED = None
# (id, typed username, expected hub user or REFUSED)
BAD_USERNAMES = [
    ("star", "*", REFUSED),
    ("prefix-star", "a*", REFUSED),
    ("suffix-star", "alice*", REFUSED),
    ("inner-star", "al*ce", REFUSED),
    ("filter-close-or", "*)(uid=*", REFUSED),
    ("filter-or-injection", "alice)(|(uid=*", REFUSED),
    ("filter-objectclass", "*)(|(objectClass=*)", REFUSED),
    ("filter-parens", "(uid=alice)", REFUSED),
    ("backslash", "alice\\", REFUSED),
    ("escaped-star", "al\\2aice", REFUSED),
    ("escaped-nul", "alice\\00", REFUSED),
    # tornado turns control characters in form fields into spaces and the hub strips the username: this is
    # alice's own name and password, so it logs in as alice (the raw NUL is covered by the escaping test below)
    ("nul-suffix", "alice\x00", "alice"),
    ("nul-middle", "alice\x00bob", REFUSED),
    ("dn-comma", "alice,ou=people", REFUSED),
    ("full-dn", f"uid=alice,{S.PEOPLE}", REFUSED),
    ("dn-plus", "alice+cn=x", REFUSED),
    ("dn-quote", '"alice"', REFUSED),
    ("dn-escaped-comma", "alice\\,", REFUSED),
    ("dn-angle", "<alice>", REFUSED),
    ("dn-semicolon", "alice;", REFUSED),
    ("dn-equals", "alice=", REFUSED),
    ("dn-hash", "#alice", REFUSED),
    ("cyrillic-a", "\u0430lice", REFUSED),  # Cyrillic а
    ("fullwidth", "\uff41\uff4c\uff49\uff43\uff45", REFUSED),  # ａｌｉｃｅ
    ("zero-width", "ali\u200bce", REFUSED),
    ("turkish-dotted-I", "AL\u0130CE", REFUSED),
    ("dotless-i", "al\u0131ce", REFUSED),
    ("combining-accent", "alice\u0301", REFUSED),
    ("rtl-override", "\u202ealice", REFUSED),
    ("very-long", "a" * 300, REFUSED),
    ("long-alice-prefix", "alice" + "x" * 5000, REFUSED),
    ("inner-spaces", "alice     x", REFUSED),
    ("tab", "ali\tce", REFUSED),
    ("newline", "alice\nbob", REFUSED),
    ("percent-nul", "alice%00", REFUSED),
    ("path", "alice/../bob", REFUSED),
    ("neighbour", "alice2", REFUSED),  # a real user, but not with alice's password
    ("other-user", "bob", REFUSED),
    ("empty", "", REFUSED),
    ("spaces-only", "   ", REFUSED),
    ("upper", "ALICE", "alice"),
    ("mixed-case", "aLiCe", "alice"),
    ("surrounding-spaces", "  alice  ", "alice"),
]


@pytest.mark.parametrize("typed, expected", [c[1:] for c in BAD_USERNAMES], ids=[c[0] for c in BAD_USERNAMES])
def test_crafted_username_never_logs_in_as_someone_else(hub, typed, expected):
    for password in ("alice-pw", "lisa-local-pw"):
        r = S.form_login(hub.url, typed, password)
        who = S.whoami(r.session, hub.url) if r.ok else None
        want = expected if (expected and password == "alice-pw") else None
        assert who == want, f"{typed!r} with {password!r}: logged in as {who!r}, expected {want!r}"
        if want is None:
            assert r.status in (403,), (r.status, r.error)


BAD_PASSWORDS = [
    ("empty", ""),
    ("space", " "),
    ("whitespace", " \t\n "),
    ("star", "*"),
    ("nul-truncation", "alice-pw\x00junk"),
    ("trailing-space", "alice-pw "),
    ("leading-space", " alice-pw"),
    ("case", "ALICE-PW"),
    ("very-long", "x" * 20000),
    ("filter-chars", "*)(userPassword=*"),
]


@pytest.mark.parametrize("password", [c[1] for c in BAD_PASSWORDS], ids=[c[0] for c in BAD_PASSWORDS])
def test_crafted_password_refused(hub, password):
    for name in ("alice", "lisa"):
        r = S.form_login(hub.url, name, password)
        assert not r.ok and r.status == 403, (name, password[:20], r.status, r.location)
        assert S.whoami(r.session, hub.url) is None


def _binds_as(slapd, name: str) -> int:
    return len(re.findall(rf'BIND dn="uid={name},', slapd.log_text(), re.I))


def test_blank_password_refused_before_any_bind(hub, slapd):
    """An LDAP simple bind with an empty password is an unauthenticated bind that 'succeeds': never send one."""
    assert "BIND dn=" in slapd.log_text(), "slapd runs with -d stats; its log must show operations"
    S.form_login(hub.url, "carol", "carol-pw")  # a real bind as carol, to see that binds are logged
    assert _binds_as(slapd, "carol") >= 1
    before = _binds_as(slapd, "alice")
    for password in ("", " ", "\t", " \n "):
        r = S.form_login(hub.url, "alice", password)
        assert not r.ok and r.error == "Invalid username or password"
    assert _binds_as(slapd, "alice") == before, "a blank password reached slapd as a bind"


@pytest.fixture(scope="module")
def raw_backends(slapd):
    common = dict(server_urls=[slapd.url], tls_ca_file=str(slapd.ca_file), group_search_base=S.GROUPS,
                  username_pattern="", connect_timeout=2, operation_timeout=3)
    search = HubfleetLDAPAuthenticator(user_search_base=S.PEOPLE, search_bind_dn=S.SVC_DN,
                                       search_bind_password=S.SVC_PW, **common)
    template = HubfleetLDAPAuthenticator(bind_dn_templates=[f"uid={{username}},{S.PEOPLE}"], **common)
    yield search, template
    search.executor.shutdown(wait=False)
    template.executor.shutdown(wait=False)


ESCAPE_CASES = [c for c in BAD_USERNAMES if c[1].strip() and c[1].strip().lower() != "alice"]


@pytest.mark.parametrize("typed", [c[1] for c in ESCAPE_CASES], ids=[c[0] for c in ESCAPE_CASES])
def test_ldap_backend_without_pattern_logs_in_nobody(raw_backends, typed):
    """With the username pattern disabled, the LDAP backend alone (escaping + the check that the entry's uid equals
    the typed name) still refuses every crafted name with alice's password, in search and in DN-template mode."""
    search, template = raw_backends
    assert search._login(typed, "alice-pw") is None
    assert template._login(typed, "alice-pw") is None


ASCII_META = [c for c in ESCAPE_CASES if c[1].isascii()]


@pytest.mark.parametrize("typed", [c[1] for c in ASCII_META], ids=[c[0] for c in ASCII_META])
def test_ldap_escaping_matches_nobody(raw_backends, typed):
    """Filter and DN metacharacters are escaped: the search finds no entry (or exactly the named one) and the
    escaped DN does not bind with alice's password."""
    search, template = raw_backends
    found = search._find_user(typed)
    assert found is None or found.dn == S.user_dn(typed), f"{typed!r} matched {found.dn}"
    dn = render_dn(template.bind_dn_templates[0], typed)
    assert not template._bind(dn, "alice-pw"), f"{typed!r} -> {dn!r} bound with alice's password"


def test_directory_folds_unicode_so_the_uid_check_matters(raw_backends):
    """slapd's caseIgnoreMatch folds fullwidth ａｌｉｃｅ onto alice: a plain search finds alice's entry. This is why
    the backend compares the entry's uid with the typed name, and why the default pattern is ASCII."""
    search, _template = raw_backends
    typed = "\uff41\uff4c\uff49\uff43\uff45"
    found = search._find_user(typed)
    assert found is not None and found.dn == S.user_dn("alice")
    assert search._matches(found, typed) is None
    assert search._login(typed, "alice-pw") is None
