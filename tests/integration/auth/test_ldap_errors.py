"""Misreported LDAP failures (issue 8, defect 5), against real slapd: a wrong service-account password is a
configuration error (logged once, the server is not marked down, the login page says so), and result 53
(unwillingToPerform, what 389-DS/FreeIPA answer for an inactivated account) on a user bind is a refusal, not an
outage."""

from __future__ import annotations

import asyncio
import time
import logging

import pytest
from tornado import web

from hubfleet.authenticators import BackendMisconfigured
from hubfleet.authenticators.ldap import HubfleetLDAPAuthenticator

from . import servers as S

INACTIVE = "dc=inactive,dc=test"


@pytest.fixture(scope="module")
def restricted_slapd(auth_tmp):
    """A slapd with a second database where every bind is answered 53 (``restrict bind``)."""
    tmp = auth_tmp / "slapd-restricted"
    (tmp / "db2").mkdir(parents=True, exist_ok=True)
    s = S.start_slapd(tmp, extra_conf=f"""
        database mdb
        suffix "{INACTIVE}"
        directory {tmp}/db2
        restrict bind
        """)
    yield s
    s.stop()


def make(slapd, tmp_path, **kw):
    opts = dict(server_urls=[slapd.url], tls_ca_file=str(slapd.ca_file), user_search_base=S.PEOPLE,
                search_bind_dn=S.SVC_DN, search_bind_password=S.SVC_PW, group_search_base=S.GROUPS,
                connect_timeout=2, operation_timeout=2, allowed_groups={"jupyter-users"},
                db_url=f"sqlite:///{tmp_path}/hub.sqlite")
    opts.update(kw)
    return HubfleetLDAPAuthenticator(**opts)


def login_page(a, name, pw):
    return asyncio.run(a.get_authenticated_user(None, {"username": name, "password": pw}))


def test_wrong_service_password_is_a_configuration_error_logged_once(slapd, tmp_path, caplog):
    a = make(slapd, tmp_path, search_bind_password="not-the-password")
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            with pytest.raises(web.HTTPError) as e:
                login_page(a, "alice", "alice-pw")
            assert e.value.status_code == 503
            assert e.value.log_message == ("The login service (LDAP) is not configured correctly; "
                                           "the hub's administrators must fix it.")
            assert isinstance(e.value.__cause__, BackendMisconfigured)
    errors = [r.getMessage() for r in caplog.records if "LDAP configuration error" in r.getMessage()]
    assert len(errors) == 1, errors
    assert "service account bind as" in errors[0] and "search_bind_password" in errors[0]
    assert "not-the-password" not in caplog.text  # no secret in the log
    assert a._down_until == {}, "a reachable directory must not be marked down"


def test_result_53_on_a_user_bind_is_a_refusal(restricted_slapd, tmp_path, caplog):
    a = make(restricted_slapd, tmp_path, bind_dn_templates=[f"uid={{username}},{INACTIVE}"], user_search_base="",
             search_bind_dn="", search_bind_password="")
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(a.authenticate_password("alice", "alice-pw")) is None  # not BackendUnavailable
    assert "result 53" in caplog.text
    assert a._down_until == {}
    # the same backend still logs in a user from the unrestricted tree (the server was not marked down)
    b = make(restricted_slapd, tmp_path, bind_dn_templates=[f"uid={{username}},{INACTIVE}",
                                                            f"uid={{username}},{S.PEOPLE}"],
             user_search_base="", search_bind_dn="", search_bind_password="")
    result = asyncio.run(b.authenticate_password("alice", "alice-pw"))
    assert result.attributes["dn"] == S.user_dn("alice") and result.subject  # the entry's entryUUID


def test_a_server_back_from_an_outage_answers_before_its_skip_runs_out(slapd, tmp_path):
    """Two servers, the first dead: after the second's outage ends, the next login reaches it, even though the
    dead one's skip has run out first and the recovered one is still inside its ``server_retry_interval``."""
    proxy = S.TcpProxy("127.0.0.1", slapd.port)
    dead = f"ldap://localhost:{S.free_port()}"
    interval = 4.0
    a = make(slapd, tmp_path, server_urls=[dead, f"ldap://localhost:{proxy.port}"],
             server_retry_interval=interval, connect_timeout=1, operation_timeout=1)
    try:
        t0 = time.monotonic()
        assert login_page(a, "alice", "alice-pw")["name"] == "alice"  # the dead one fails over, and is skipped now
        time.sleep(interval / 2)
        proxy.set_mode("refuse")  # the outage: both servers fail, the proxied one is skipped from now on
        with pytest.raises(web.HTTPError) as e:
            login_page(a, "alice", "alice-pw")
        assert e.value.status_code == 503
        proxy.set_mode("forward")  # the directory is back
        time.sleep(max(0.0, t0 + interval + 0.3 - time.monotonic()))  # the dead one's skip has run out, not the other's
        assert time.monotonic() < t0 + interval * 1.5, "the machine was too slow to reach the state under test"
        assert login_page(a, "alice", "alice-pw")["name"] == "alice"
    finally:
        proxy.stop()
