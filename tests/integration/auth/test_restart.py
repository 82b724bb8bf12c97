"""Sessions after a hub restart (issue 8, defects 1 and 2), through real hubs that are stopped and started again
on the same database and cookie secret, against the real slapd and a local accounts file.

Per hub (the composite, LDAP alone, local accounts alone; each with and without ``enable_auth_state``): users log
in, the hub stops, the directory / accounts file changes (one user deleted, one user out of every allowed group —
``allowed_users`` is non-empty, so JupyterHub's ``allow_existing_users`` default would keep them), the hub starts
again, and each session's next request refreshes: the removed users get 403 on ``/hub/api/user``, the unchanged
user is still logged in (so the cookie itself survived the restart), and the bindings survived too.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from hubfleet.authenticators.binding import BindingStore
from hubfleet.authenticators.local import hash_password, write_users_file
from hubfleet.db import Database

from . import servers as S

PEOPLE_OK = "jupyter-users"


def ldap_add_user(slapd, name: str, password: str) -> None:
    slapd.ldapmodify(
        f"dn: uid={name},{S.PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\n"
        f"sn: {name}\nuserPassword: {password}\n")
    slapd.ldapmodify(f"dn: cn={PEOPLE_OK},{S.GROUPS}\nchangetype: modify\nadd: member\n"
                     f"member: uid={name},{S.PEOPLE}\n")


def ldap_delete_user(slapd, name: str) -> None:
    slapd.ldapmodify(f"dn: cn={PEOPLE_OK},{S.GROUPS}\nchangetype: modify\ndelete: member\n"
                     f"member: uid={name},{S.PEOPLE}\n")
    slapd.ldapmodify(f"dn: uid={name},{S.PEOPLE}\nchangetype: delete\n")


def ldap_leave_group(slapd, name: str) -> None:
    slapd.ldapmodify(f"dn: cn={PEOPLE_OK},{S.GROUPS}\nchangetype: modify\ndelete: member\n"
                     f"member: uid={name},{S.PEOPLE}\n")


def ldap_options(slapd) -> dict:
    return {"server_urls": [slapd.url], "tls_ca_file": str(slapd.ca_file), "user_search_base": S.PEOPLE,
            "search_bind_dn": S.SVC_DN, "search_bind_password": S.SVC_PW, "group_search_base": S.GROUPS,
            "connect_timeout": 2, "operation_timeout": 2}


def hub_config(kind: str, auth_state: bool, slapd, users_file) -> str:
    local = {"users_file": str(users_file), "bcrypt_rounds": 4}
    common = textwrap.dedent(f"""
        c.Authenticator.enable_auth_state = {auth_state}
        c.Authenticator.auth_refresh_age = 1
        c.Authenticator.allowed_users = {{"someone-listed"}}
        """)
    if kind == "composite":
        backends = [{"kind": "local", **local}, {"kind": "ldap", **ldap_options(slapd)}]
        return common + textwrap.dedent(f"""
            c.JupyterHub.authenticator_class = "hubfleet"
            c.HubfleetAuthenticator.backends = {backends!r}
            c.HubfleetAuthenticator.allowed_groups = {{"{PEOPLE_OK}", "local-users"}}
            """)
    if kind == "ldap":
        lines = "\n".join(f"c.HubfleetLDAPAuthenticator.{k} = {v!r}" for k, v in ldap_options(slapd).items())
        return common + f'c.JupyterHub.authenticator_class = "hubfleet-ldap"\n{lines}\n' \
            f'c.HubfleetLDAPAuthenticator.allowed_groups = {{"{PEOPLE_OK}"}}\n'
    return common + textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet-local"
        c.HubfleetLocalAuthenticator.users_file = {str(users_file)!r}
        c.HubfleetLocalAuthenticator.bcrypt_rounds = 4
        c.HubfleetLocalAuthenticator.allowed_groups = {{"local-users"}}
        """)


def api_user_status(session, hub) -> int:
    return session.get(f"{hub.url}/hub/api/user", timeout=10).status_code


COMBOS = [(kind, auth_state) for kind in ("composite", "ldap", "local") for auth_state in (True, False)]


def _scenario(auth_tmp, slapd, n: int, kind: str, auth_state: bool) -> dict:
    """Log in, stop the hub, remove users, start it again; return what each session's next request saw."""
    tmp = auth_tmp / f"restart-{kind}-{auth_state}"
    users_file = tmp / "users.yaml"
    local_users = {f"lgone{n}": "lgone-pw", f"lleft{n}": "lleft-pw", f"lstay{n}": "lstay-pw"}

    def accounts(changed: bool) -> dict:
        doc = {"users": {name: {"password_hash": hash_password(pw, rounds=4), "groups": ["local-users"],
                                "admin": False} for name, pw in local_users.items()}}
        if changed:  # one user deleted, one out of every allowed group, one unchanged
            del doc["users"][f"lgone{n}"]
            doc["users"][f"lleft{n}"]["groups"] = []
        return doc

    write_users_file(users_file, accounts(False))
    ldap_users = {f"rgone{n}": "rgone-pw", f"rleft{n}": "rleft-pw", f"rstay{n}": "rstay-pw"}
    for name, pw in ldap_users.items():
        ldap_add_user(slapd, name, pw)
    users = {"composite": {**local_users, **ldap_users}, "ldap": ldap_users, "local": local_users}[kind]
    cfg = hub_config(kind, auth_state, slapd, users_file)
    out: dict = {"kind": kind, "auth_state": auth_state, "users": users, "tmp": tmp}
    hub = S.start_hub(tmp, cfg, name=f"hub-restart-{n}")
    try:
        sessions = {}
        for name, pw in users.items():
            r = S.form_login(hub.url, name, pw)
            assert r.ok, f"{kind}: login {name} failed: {r.status} {r.error!r}\n{hub.log_tail(30)}"
            sessions[name] = r.session
        hub.stop()
        write_users_file(users_file, accounts(True))
        ldap_delete_user(slapd, f"rgone{n}")
        ldap_leave_group(slapd, f"rleft{n}")
        hub = S.start_hub(tmp, cfg, name=f"hub-restart-{n}b")
        # no wait: the restarted hub has refreshed nobody yet, so each session's first request refreshes its user
        out["seen"] = {name: api_user_status(s, hub) for name, s in sessions.items()}
        gone = next(name for name in users if "gone" in name)
        out["gone_login_ok"] = S.form_login(hub.url, gone, users[gone]).ok
        out["log"] = hub.log_tail(60)
    finally:
        hub.stop()
        for name in ldap_users:  # whatever is left of them
            for ldif in (f"dn: cn={PEOPLE_OK},{S.GROUPS}\nchangetype: modify\ndelete: member\n"
                         f"member: uid={name},{S.PEOPLE}\n", f"dn: uid={name},{S.PEOPLE}\nchangetype: delete\n"):
                try:
                    slapd.ldapmodify(ldif)
                except subprocess.CalledProcessError:
                    pass  # already gone
    return out


@pytest.fixture(scope="module")
def restarted(auth_tmp, slapd):
    """Every combination at once (hub start-up dominates; they run side by side)."""
    return S.side_by_side(_scenario, {combo: (auth_tmp, slapd, i, *combo) for i, combo in enumerate(COMBOS)})


@pytest.mark.parametrize("kind, auth_state", COMBOS, ids=[f"{k}-{'auth_state' if a else 'no_auth_state'}"
                                                         for k, a in COMBOS])
def test_removed_users_are_logged_out_after_a_restart(restarted, kind, auth_state):
    out = restarted[(kind, auth_state)]
    if isinstance(out, Exception):
        raise out
    expected = {name: (200 if "stay" in name else 403) for name in out["users"]}
    assert out["seen"] == expected, f"{kind} auth_state={auth_state}: /hub/api/user after restart\n{out['log']}"
    store = BindingStore(Database(f"sqlite:///{out['tmp']}/jupyterhub.sqlite")).all()
    stay = [name for name in out["users"] if "stay" in name]
    assert {name: store[name].backend.split()[0] for name in stay} == {
        name: ("local" if name.startswith("l") else "ldap") for name in stay}, store
    assert not out["gone_login_ok"], "a removed user logged in again"
