"""The LDAP backend on its own against the real slapd: TLS strategies, certificate validation, failover,
DN-template mode, and the event loop staying free while logins wait on a slow directory."""

from __future__ import annotations

import asyncio
import time

import pytest

from hubfleet.authenticators import BackendUnavailable
from hubfleet.authenticators.ldap import HubfleetLDAPAuthenticator

from . import servers as S


def make(slapd, **kw):
    opts = dict(server_urls=[slapd.url], tls_ca_file=str(slapd.ca_file), user_search_base=S.PEOPLE,
                search_bind_dn=S.SVC_DN, search_bind_password=S.SVC_PW, group_search_base=S.GROUPS,
                connect_timeout=2, operation_timeout=2)
    opts.update(kw)
    return HubfleetLDAPAuthenticator(**opts)


def login(a, name, pw):
    return asyncio.run(a.authenticate_password(name, pw))


@pytest.mark.parametrize("strategy", ["starttls", "ldaps", "insecure"])
def test_tls_strategies(slapd, strategy):
    url = {"starttls": slapd.url, "ldaps": f"ldaps://localhost:{slapd.ldaps_port}",
           "insecure": f"ldap://127.0.0.1:{slapd.port}"}[strategy]
    kw = {"tls_ca_file": ""} if strategy == "insecure" else {}
    a = make(slapd, server_urls=[url], tls_strategy=strategy, **kw)
    r = login(a, "alice", "alice-pw")
    assert r is not None and r.groups == ["jupyter-users"]


def test_certificate_is_validated(slapd):
    """Without the self-signed CA the StartTLS handshake fails: the login reports the directory unavailable."""
    a = make(slapd, tls_ca_file="")
    with pytest.raises(BackendUnavailable, match="(?i)certificate|ssl|tls"):
        login(a, "alice", "alice-pw")


def test_host_name_is_checked(slapd, auth_tmp):
    """The certificate names localhost/127.0.0.1; another name for the same address is refused."""
    a = make(slapd, server_urls=[f"ldap://127.0.0.2:{slapd.port}"])
    with pytest.raises(BackendUnavailable):
        login(a, "alice", "alice-pw")


def test_failover_to_the_next_server(slapd):
    dead = f"ldap://localhost:{S.free_port()}"
    a = make(slapd, server_urls=[dead, slapd.url])
    t0 = time.monotonic()
    assert login(a, "alice", "alice-pw").name == "alice"
    assert time.monotonic() - t0 < 2
    only_dead = make(slapd, server_urls=[dead])
    with pytest.raises(BackendUnavailable, match="Connection refused|socket"):
        login(only_dead, "alice", "alice-pw")


def test_dn_template_mode_with_groups_read_as_the_user(slapd):
    a = make(slapd, user_search_base="", search_bind_dn="", search_bind_password="",
             bind_dn_templates=[f"uid={{username}},ou=nobody,{S.BASE_DN}", f"uid={{username}},{S.PEOPLE}"],
             nested_groups=True, use_member_of=True)
    r = login(a, "bob", "bob-pw")
    assert r.groups == ["data-science", "jupyter-users"]
    assert r.attributes["mail"] == "bob@example.org"
    assert login(a, "bob", "wrong") is None
    # refresh (no password): looked up through the templates
    assert asyncio.run(a.lookup_user("bob")).groups == ["data-science", "jupyter-users"]


def test_lookup_without_password_for_refresh(slapd):
    a = make(slapd, use_member_of=True, nested_groups=True)
    assert asyncio.run(a.lookup_user("dave")).groups == ["hub-admins", "platform-team"]
    assert asyncio.run(a.lookup_user("nobody")) is None


def test_event_loop_stays_free_while_logins_wait_on_a_slow_directory(slapd):
    """20 logins at once through a proxy adding 100 ms to every reply: the loop's tick never stalls, the logins
    overlap (bounded pool of 8 threads) and reuse their connections."""
    proxy = S.TcpProxy("127.0.0.1", slapd.port, delay=0.1)
    try:
        a = make(slapd, server_urls=[f"ldap://localhost:{proxy.port}"], executor_threads=8)

        async def scenario():
            lags: list[float] = []
            done = asyncio.Event()

            async def ticker():
                while not done.is_set():
                    t0 = time.monotonic()
                    await asyncio.sleep(0.01)
                    lags.append(time.monotonic() - t0 - 0.01)

            tick = asyncio.create_task(ticker())
            t0 = time.monotonic()
            names = [f"bench{i:02d}" for i in range(20)]
            results = await asyncio.gather(*(a.authenticate_password(n, f"{n}-pw") for n in names))
            wall = time.monotonic() - t0
            done.set()
            await tick
            return results, wall, lags

        results, wall, lags = asyncio.run(scenario())
        assert [r.name for r in results] == [f"bench{i:02d}" for i in range(20)]
        assert max(lags) < 0.3, f"event loop stalled {max(lags):.3f}s"
        # serialised, 20 logins x ~8 round trips x 100 ms would take ~16 s
        assert wall < 8, f"20 logins took {wall:.1f}s"
    finally:
        proxy.stop()


def test_ad_in_chain_sends_one_matching_rule_search(slapd):
    """slapd has no LDAP_MATCHING_RULE_IN_CHAIN (it logs the filter as "(?=undefined)" and returns nothing); what
    is checked is that in-chain mode asks once, with an extensible-match filter, instead of walking the groups.
    The exact filter text is checked in tests/unit/test_auth_config.py::test_ad_in_chain_filter."""
    a = make(slapd, ad_in_chain=True, nested_groups=True)

    def group_searches():
        return [line for line in slapd.log_text().splitlines() if f'SRCH base="{S.GROUPS}"' in line]

    before = len(group_searches())
    r = login(a, "bob", "bob-pw")
    assert r is not None and r.name == "bob" and r.groups == []
    new = group_searches()[before:]
    assert len(new) == 1 and 'filter="(?=undefined)"' in new[0], new
