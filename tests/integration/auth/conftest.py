"""Fixtures for the authenticator integration tests: real slapd, real OIDC providers, a real JupyterHub + CHP.

One hub (session scope) runs ``HubfleetAuthenticator`` with, in order: the local accounts backend, the LDAP backend
(failover list: a dead port first, then a controllable TCP proxy in front of slapd with StartTLS), and three OIDC
backends — ``mock`` (oidc-provider-mock), ``badidp`` (tests/integration/auth/bad_idp.py, broken tokens on
demand) and ``down`` (a port that accepts connections and never answers).
"""

from __future__ import annotations

import shutil
import textwrap

import pytest

from hubfleet.authenticators.local import hash_password, write_users_file
from tests.procs import ARTIFACTS, CHP_BIN

from . import servers as S

LOCAL_USERS = {  # name -> (password, groups, admin)
    "lisa": ("lisa-local-pw", ["local-users"], False),
    "localadmin": ("localadmin-pw", [], True),
    "nogroup": ("nogroup-pw", [], False),
}


def _require(path, what: str):
    if not S.Path(path).exists():
        pytest.fail(f"{what} is missing ({path}); run `make install` (make test installs it)", pytrace=False)


@pytest.fixture(scope="session")
def auth_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="session")
def slapd(auth_tmp):
    _require(S.Path("/usr/sbin/slapd"), "slapd")
    s = S.start_slapd(auth_tmp / "slapd", log_level="stats")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def ldap_proxy(slapd):
    with S.TcpProxy("127.0.0.1", slapd.port) as p:
        yield p


@pytest.fixture(scope="session")
def oidc_mock(auth_tmp):
    m = S.start_oidc_mock(auth_tmp / "oidc-mock")
    m.set_user("olivia", {"preferred_username": "olivia", "email": "olivia@example.org", "email_verified": True,
                          "groups": ["jupyter-users", "oidc-team"]})
    m.set_user("oscar", {"preferred_username": "oscar", "email": "oscar@example.org", "groups": ["hub-admins"]})
    m.set_user("otto", {"preferred_username": "otto", "groups": ["outsiders"]})
    yield m
    m.stop()


@pytest.fixture(scope="session")
def bad_idp(auth_tmp):
    b = S.start_bad_idp(auth_tmp / "bad-idp")
    yield b
    b.stop()


@pytest.fixture(scope="session")
def hanging_port():
    port, sock = S.hanging_listener()
    yield port
    sock.close()


@pytest.fixture(scope="session")
def users_file(auth_tmp):
    path = auth_tmp / "users.yaml"
    users = {name: {"password_hash": hash_password(pw, rounds=4), "groups": groups, "admin": admin}
             for name, (pw, groups, admin) in LOCAL_USERS.items()}
    write_users_file(path, {"users": users})
    return path


def hub_config(*, slapd, ldap_proxy, dead_port, oidc_mock, bad_idp, hanging_port, users_file) -> str:
    return textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet"
        c.HubfleetAuthenticator.backends = [
            {{"kind": "local", "users_file": {str(users_file)!r}, "bcrypt_rounds": 4}},
            {{"kind": "ldap",
              "server_urls": ["ldap://localhost:{dead_port}", "ldap://localhost:{ldap_proxy.port}"],
              "tls_ca_file": {str(slapd.ca_file)!r},
              "connect_timeout": 2, "operation_timeout": 2,
              "user_search_base": {S.PEOPLE!r},
              "search_bind_dn": {S.SVC_DN!r}, "search_bind_password": {S.SVC_PW!r},
              "group_search_base": {S.GROUPS!r}, "use_member_of": True,
              "nested_groups": True, "nested_groups_max_depth": 3}},
            {{"kind": "oidc", "name": "mock", "login_service": "Mock IdP", "issuer": {oidc_mock.issuer!r},
              "client_id": "hub-client", "client_secret": "hub-secret",
              "allow_http_issuer": True, "trust_admin_groups": True}},
            {{"kind": "oidc", "name": "badidp", "login_service": "Bad IdP", "issuer": {bad_idp.issuer!r},
              "client_id": "hub-client", "client_secret": "hub-secret", "require_email_verified": True,
              "allow_http_issuer": True, "userdata_params": {{"claims": "groups"}}}},
            {{"kind": "oidc", "name": "down", "login_service": "Down IdP",
              "issuer": "http://127.0.0.1:{hanging_port}", "client_id": "hub-client", "http_timeout": 2,
              "allow_http_issuer": True}},
        ]
        c.HubfleetAuthenticator.allowed_groups = {{"jupyter-users", "posix", "unique-users", "project-x",
                                                   "local-users", "judy-team"}}
        c.HubfleetAuthenticator.admin_groups = {{"hub-admins"}}
        c.HubfleetAuthenticator.blocked_users = {{"mallory"}}
        c.HubfleetAuthenticator.group_mapping = {{"posix-users": "posix"}}
        c.HubfleetAuthenticator.auth_refresh_age = 2
        c.JupyterHub.public_url = c.JupyterHub.bind_url  # OIDC redirect URIs come from it, not the Host header
        """)


@pytest.fixture(scope="session")
def hub(auth_tmp, slapd, ldap_proxy, oidc_mock, bad_idp, hanging_port, users_file, request):
    _require(CHP_BIN, "configurable-http-proxy")
    dead_port = S.free_port()  # nothing listens here: the LDAP failover skips it
    cfg = hub_config(slapd=slapd, ldap_proxy=ldap_proxy, dead_port=dead_port, oidc_mock=oidc_mock, bad_idp=bad_idp,
                     hanging_port=hanging_port, users_file=users_file)
    h = S.start_hub(auth_tmp / "hub", cfg)
    h.extra.update(users_file=users_file, slapd=slapd, ldap_proxy=ldap_proxy)
    yield h
    h.stop()
    if request.session.testsfailed:
        dest = ARTIFACTS / "auth"
        dest.mkdir(parents=True, exist_ok=True)
        for p in [h.proc.log_path, slapd.proc.log_path]:
            shutil.copy(p, dest / p.name)


@pytest.fixture
def hub_log_on_failure(hub, request):
    """Print the hub log tail when a test fails (what was awaited, what was seen)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- hub log tail ---\n{hub.log_tail(120)}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
