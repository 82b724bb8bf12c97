"""``refresh_outage_grace`` and ``login_timeout`` through a real hub whose LDAP directory (the real slapd) sits behind
a TCP forwarder the test cuts: during an outage a session checked less than the grace ago is kept (and says so in
the log), and a login whose directory does not answer is given up after ``login_timeout``, not after the LDAP
client's own, longer timeouts."""

from __future__ import annotations

import pytest

from .test_restart import ldap_options

from . import servers as S

GRACE = 600
LOGIN_TIMEOUT = 1.5  # below the LDAP client's own timeouts (5 s each): the one that fires is login_timeout


@pytest.fixture(scope="module")
def cut_ldap(slapd):
    with S.TcpProxy("127.0.0.1", slapd.port) as proxy:  # cut by these tests: not the session's ldap_proxy
        yield proxy


@pytest.fixture(scope="module")
def hub(auth_tmp, slapd, cut_ldap):
    options = {**ldap_options(slapd), "server_urls": [f"ldap://localhost:{cut_ldap.port}"], "connect_timeout": 5,
               "operation_timeout": 5}
    lines = "\n".join(f"c.HubfleetLDAPAuthenticator.{k} = {v!r}" for k, v in options.items())
    cfg = f"""c.JupyterHub.authenticator_class = "hubfleet-ldap"
{lines}
c.HubfleetLDAPAuthenticator.allowed_groups = {{"jupyter-users"}}
c.HubfleetLDAPAuthenticator.auth_refresh_age = 1
c.HubfleetLDAPAuthenticator.refresh_outage_grace = {GRACE}
c.HubfleetLDAPAuthenticator.login_timeout = {LOGIN_TIMEOUT}
"""
    h = S.start_hub(auth_tmp / "hub-outage", cfg, name="hub-outage")
    yield h
    h.stop()


@pytest.fixture
def outage(cut_ldap):
    def start(mode: str):
        cut_ldap.set_mode(mode)

    yield start
    cut_ldap.set_mode("forward")


def test_a_session_is_kept_through_an_outage_within_refresh_outage_grace(hub, outage):
    r = S.form_login(hub.url, "alice", "alice-pw")
    assert r.ok, (r.status, r.error)
    outage("refuse")
    kept = f"session kept (refresh_outage_grace={float(GRACE)}s)"
    S.wait_refreshed("a refresh during the outage to keep alice's session", hub, r.session,
                     lambda who: who == "alice" and any("user:alice refresh: " in line and kept in line
                                                        for line in hub.log_tail(200).splitlines()))
    # a new login cannot be checked, so it is refused (the grace is for sessions already checked)
    fresh = S.form_login(hub.url, "bob", "bob-pw")
    assert not fresh.ok and "unavailable right now" in fresh.error, (fresh.status, fresh.error)


def test_a_login_the_directory_does_not_answer_ends_at_login_timeout(hub, outage):
    outage("hang")  # connections are accepted, nothing is ever answered
    r = S.form_login(hub.url, "bob", "bob-pw")
    assert not r.ok and "unavailable right now" in r.error, (r.status, r.error)
    # login_timeout gave up, not the LDAP client's own timeouts
    assert f"no answer within login_timeout={LOGIN_TIMEOUT}s" in hub.log_tail(200), hub.log_tail(40)
