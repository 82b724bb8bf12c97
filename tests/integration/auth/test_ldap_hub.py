"""LDAP and local accounts through a real hub's login page and REST API (real slapd with StartTLS + self-signed CA,
memberOf overlay, nested groups; real configurable-http-proxy)."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import requests

from . import servers as S

pytestmark = pytest.mark.usefixtures("hub_log_on_failure")


def login_ok(hub, name, password):
    r = S.form_login(hub.url, name, password)
    assert r.ok, f"login {name!r} failed: {r.status} {r.location} error={r.error!r}\n{hub.log_tail(30)}"
    assert S.whoami(r.session, hub.url) == name
    return r


def login_refused(hub, name, password):
    r = S.form_login(hub.url, name, password)
    assert not r.ok, f"login {name!r} unexpectedly succeeded -> {r.location}"
    assert r.status in (403, 503), r.status
    assert S.whoami(r.session, hub.url) is None
    return r


def test_login_page_shows_form_and_one_button_per_oidc_backend(hub):
    html = requests.get(f"{hub.url}/hub/login", timeout=10).text
    assert 'name="username"' in html and 'name="password"' in html
    for label, name in [("Mock IdP", "mock"), ("Bad IdP", "badidp"), ("Down IdP", "down")]:
        assert f'href="/hub/oauth_login/{name}">Sign in with {label}</a>' in html  # no ?next= given


def test_ldap_user_groups_synced_and_auth_state(hub):
    login_ok(hub, "alice", "alice-pw")
    model = hub.user("alice")
    assert model["groups"] == ["jupyter-users"]
    assert model["admin"] is False
    assert model["auth_state"]["mail"] == "alice@example.org"
    assert model["auth_state"]["display_name"] == "Alice Liddell"
    assert model["auth_state"]["dn"] == S.user_dn("alice")


def test_nested_group_allows_login_ldapauthenticator_177(hub):
    """bob is only in data-science, which is a member of jupyter-users (ldapauthenticator #177)."""
    login_ok(hub, "bob", "bob-pw")
    assert sorted(hub.user("bob")["groups"]) == ["data-science", "jupyter-users"]


def test_nested_admin_group_makes_admin_ldapauthenticator_239(hub):
    """dave is in platform-team, nested in the admin group hub-admins (ldapauthenticator #239, admin groups)."""
    login_ok(hub, "dave", "dave-pw")
    model = hub.user("dave")
    assert model["admin"] is True
    assert "hub-admins" in model["groups"]


def test_member_of_outside_group_search_base_is_ignored(hub):
    """grace's only group (project-x) is outside group_search_base: her memberOf value for it counts for nothing."""
    login_refused(hub, "grace", "grace-pw")
    assert hub.user("grace") is None


def test_posix_group_mapped_and_unique_member_group(hub):
    login_ok(hub, "erin", "erin-pw")
    assert sorted(hub.user("erin")["groups"]) == ["posix"]  # group_mapping posix-users -> posix
    login_ok(hub, "frank", "frank-pw")
    assert sorted(hub.user("frank")["groups"]) == ["unique-users"]


def test_depth_limit_and_cycle(hub):
    # heidi is 4 levels below jupyter-users; the hub follows 3 levels: refused
    login_refused(hub, "heidi", "heidi-pw")
    assert hub.user("heidi") is None
    # ivan's groups form a cycle (cyc-a <-> cyc-b) that also leads to jupyter-users: terminates, allowed
    login_ok(hub, "ivan", "ivan-pw")
    assert sorted(hub.user("ivan")["groups"]) == ["cyc-a", "cyc-b", "jupyter-users"]


def test_not_in_allowed_groups_blocked_and_wrong_password(hub):
    login_refused(hub, "carol", "carol-pw")  # right password, no allowed group
    login_refused(hub, "mallory", "mallory-pw")  # in jupyter-users but in blocked_users
    login_refused(hub, "alice", "alice-pw-wrong")
    for name in ("carol", "mallory"):
        assert hub.user(name) is None


def test_case_variants_log_in_as_the_same_user(hub):
    """The directory stores uid 'Judy'; typed JUDY / judy / ' Judy ' all become hub user 'judy'."""
    for typed in ("JUDY", "judy", " Judy ", "jUdY"):
        r = S.form_login(hub.url, typed, "judy-pw")
        assert r.ok, (typed, r.status, r.error)
        assert S.whoami(r.session, hub.url) == "judy"
    assert sorted(hub.user("judy")["groups"]) == ["judy-team"]
    r = S.form_login(hub.url, "LISA", "lisa-local-pw")
    assert r.ok and S.whoami(r.session, hub.url) == "lisa"


def test_local_accounts_and_admin_flag(hub):
    login_ok(hub, "lisa", "lisa-local-pw")
    assert sorted(hub.user("lisa")["groups"]) == ["local-users"]
    login_ok(hub, "localadmin", "localadmin-pw")
    assert hub.user("localadmin")["admin"] is True
    login_refused(hub, "nogroup", "nogroup-pw")


def test_local_file_reread_when_it_changes(hub):
    import subprocess

    argv = [sys.executable, "-m", "hubfleet.authenticators.cli", "users", "add", "newbie", "--group", "local-users",
            "--file", str(hub.extra["users_file"]), "--password-stdin", "--rounds", "4"]
    subprocess.run(argv, input="newbie-pw\n", text=True, check=True, capture_output=True)
    login_ok(hub, "newbie", "newbie-pw")
    subprocess.run([sys.executable, "-m", "hubfleet.authenticators.cli", "users", "remove", "newbie", "--file",
                    str(hub.extra["users_file"])], check=True, capture_output=True)
    login_refused(hub, "newbie", "newbie-pw")


def test_group_removed_in_directory_is_lost_at_refresh(hub):
    slapd = hub.extra["slapd"]
    r = login_ok(hub, "alice2", "alice2-pw")
    assert sorted(hub.user("alice2")["groups"]) == ["jupyter-users"]
    alice2 = S.user_dn("alice2")
    try:
        # move alice2 from jupyter-users to unique-users (still allowed)
        slapd.ldapmodify(f"dn: cn=jupyter-users,{S.GROUPS}\nchangetype: modify\ndelete: member\nmember: {alice2}\n")
        slapd.ldapmodify(f"dn: cn=unique-users,{S.GROUPS}\nchangetype: modify\nadd: uniqueMember\n"
                         f"uniqueMember: {alice2}\n")
        time.sleep(2.2)  # auth_refresh_age = 2
        assert S.whoami(r.session, hub.url) == "alice2"  # this request refreshes
        assert sorted(hub.user("alice2")["groups"]) == ["unique-users"]
        # now out of every allowed group: the next refresh ends the session
        slapd.ldapmodify(f"dn: cn=unique-users,{S.GROUPS}\nchangetype: modify\ndelete: uniqueMember\n"
                         f"uniqueMember: {alice2}\n")
        time.sleep(2.2)
        assert S.whoami(r.session, hub.url) is None
        login_refused(hub, "alice2", "alice2-pw")
    finally:
        slapd.ldapmodify(f"dn: cn=jupyter-users,{S.GROUPS}\nchangetype: modify\nadd: member\nmember: {alice2}\n")


def _api_latencies(hub, stop: threading.Event, out: list):
    while not stop.is_set():
        t0 = time.monotonic()
        requests.get(f"{hub.url}/hub/api/", timeout=10)
        out.append(time.monotonic() - t0)
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["hang", "refuse"])
def test_ldap_down_or_hanging_shows_clear_error_and_hub_stays_responsive(hub, mode):
    proxy = hub.extra["ldap_proxy"]
    latencies: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=_api_latencies, args=(hub, stop, latencies), daemon=True)
    poller.start()
    result: dict = {}

    def ldap_login():
        result["r"] = S.form_login(hub.url, "bob", "bob-pw", timeout=60)

    proxy.set_mode(mode)
    try:
        t = threading.Thread(target=ldap_login)
        t.start()
        time.sleep(0.2)
        # other users are unaffected while the LDAP login waits
        local = S.form_login(hub.url, "lisa", "lisa-local-pw")
        assert local.ok and local.seconds < 2, (local.status, local.seconds)
        t.join(30)
        assert not t.is_alive(), "LDAP login did not finish within 30 s"
    finally:
        proxy.set_mode("forward")
        stop.set()
        poller.join(5)
    r = result["r"]
    assert not r.ok and r.status == 503
    assert r.error == "The login service (LDAP) is unavailable right now; try again in a minute."
    assert r.seconds < 10, f"the error took {r.seconds:.1f}s (connect/operation timeouts are 2 s)"
    assert latencies and max(latencies) < 1.0, f"/hub/api/ max latency {max(latencies):.3f}s during the outage"
    # back to normal: stale connections are replaced
    login_ok(hub, "bob", "bob-pw")
