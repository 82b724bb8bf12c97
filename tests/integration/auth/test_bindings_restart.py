"""Identity bindings survive a hub restart in a fresh, empty working directory — what z2jh does with
``hub.db.type: postgres`` (and any database but ``sqlite-pvc``): nothing of the last run's working directory is
left, only the hub's database.

A real hub runs the composite with the LDAP backend (the real alice, in slapd) and a local accounts file that has
an account of the same name (an impostor). Alice logs in through LDAP; the hub stops and starts again on the same
database, in a new empty working directory; then the local account's login is refused and the real alice still
gets in. On SQLite (the database file outside the working directory) and on a real PostgreSQL server.

The first start also upgrades from an earlier hubfleet: its ``hubfleet-subjects.json`` in the working directory
binds ``legacy-<db>`` to LDAP; it is imported, so that name's local impostor is refused before and after the
restart (when the file is gone with the old working directory).
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from hubfleet.authenticators.local import hash_password, write_users_file

from . import servers as S
from .test_restart import PEOPLE_OK, ldap_add_user, ldap_options

DATABASES = ("sqlite", "postgresql")


def _scenario(auth_tmp, slapd, db: str, db_url: str | None) -> dict:
    name, legacy = f"rebind-{db}", f"legacy-{db}"
    tmp = auth_tmp / f"bindings-restart-{db}"
    users_file = tmp / "users.yaml"
    write_users_file(users_file, {"users": {n: {"password_hash": hash_password("impostor-pw", rounds=4),
                                                "groups": ["local-users"]} for n in (name, legacy)}})
    (tmp / "workdir-1" / "hubfleet-subjects.json").write_text(json.dumps({"version": 1, "users": {
        legacy: {"backend": "ldap", "subject": f"uid={legacy},{S.PEOPLE}", "since": 1}}}))
    ldap_add_user(slapd, name, "real-pw")
    backends = [{"kind": "ldap", **ldap_options(slapd)}, {"kind": "local", "users_file": str(users_file),
                                                          "bcrypt_rounds": 4}]
    cfg = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet"
        c.HubfleetAuthenticator.backends = {backends!r}
        c.HubfleetAuthenticator.allowed_groups = {{"{PEOPLE_OK}", "local-users"}}
        """) + (f"c.JupyterHub.db_url = {db_url!r}\n" if db_url else "")
    out: dict = {"name": name, "tmp": tmp}
    try:
        hub = S.start_hub(tmp, cfg, name=f"hub-{db}-1", workdir=tmp / "workdir-1")
        try:
            r = S.form_login(hub.url, name, "real-pw")
            out["first"] = (r.status, S.whoami(r.session, hub.url), r.error)
            out["legacy-1"] = S.form_login(hub.url, legacy, "impostor-pw").status
            out["imported"] = [line for line in hub.log_tail(200).splitlines() if "bindings: imported" in line]
        finally:
            hub.stop()
        hub = S.start_hub(tmp, cfg, name=f"hub-{db}-2", workdir=tmp / "workdir-2")  # fresh and empty
        try:
            r = S.form_login(hub.url, name, "impostor-pw")
            out["impostor"] = (r.status, S.whoami(r.session, hub.url), r.error)
            r = S.form_login(hub.url, name, "real-pw")
            out["real"] = (r.status, S.whoami(r.session, hub.url), r.error)
            out["legacy-2"] = S.form_login(hub.url, legacy, "impostor-pw").status
            out["log"] = hub.log_tail(40)
        finally:
            hub.stop()
        out["workdir"] = sorted(p.name for p in (tmp / "workdir-2").iterdir())
    finally:
        try:
            slapd.ldapmodify(f"dn: cn={PEOPLE_OK},{S.GROUPS}\nchangetype: modify\ndelete: member\n"
                             f"member: uid={name},{S.PEOPLE}\n")
            slapd.ldapmodify(f"dn: uid={name},{S.PEOPLE}\nchangetype: delete\n")
        except subprocess.CalledProcessError:
            pass
    return out


@pytest.fixture(scope="module")
def restarted(auth_tmp, slapd, postgres):
    """Both databases side by side (hub start-up dominates)."""
    urls = {"sqlite": None, "postgresql": postgres.create_database("bindings_restart")}
    for d in DATABASES:  # the working directories: fresh and empty, but for an earlier hubfleet's JSON store
        (auth_tmp / f"bindings-restart-{d}" / "workdir-1").mkdir(parents=True)
        (auth_tmp / f"bindings-restart-{d}" / "workdir-2").mkdir(parents=True)
    return S.side_by_side(_scenario, {d: (auth_tmp, slapd, d, urls[d]) for d in DATABASES})


@pytest.mark.parametrize("db", DATABASES)
def test_a_restart_in_a_fresh_working_directory_keeps_the_bindings(restarted, db):
    out = restarted[db]
    if isinstance(out, Exception):
        raise out
    name = out["name"]
    print(f"{db}: first login {out['first'][:2]}; after the restart: impostor {out['impostor']}, "
          f"real {out['real'][:2]}\n" + "\n".join(out["imported"]))
    assert out["first"][:2] == (302, name), out
    status, who, error = out["impostor"]
    assert status == 403 and who is None, f"the local account took over {name}: {out['impostor']}\n{out['log']}"
    assert "belongs to the 'ldap' sign-in, not 'local'" in error
    assert out["real"][:2] == (302, name), f"the real {name} was refused after the restart: {out['real']}\n{out['log']}"
    assert "hubfleet-subjects.json" not in out["workdir"]
    assert (out["legacy-1"], out["legacy-2"]) == (403, 403), "the imported binding did not hold: " + str(out)
    assert any(f"imported 1 of 1 bindings from {out['tmp']}/workdir-1/hubfleet-subjects.json" in line
               for line in out["imported"]), out["imported"]
