"""hubfleet's tables in the hub's database, on SQLite and on a real PostgreSQL server (tests/pg.py):
migrations that two processes run at once, identity bindings bound by exactly one of several concurrent first
logins, the JSON store imported once, an unreachable database refusing sign-in, and ``hubfleet users`` on it.

Each "process" is its own :class:`Database` (own engine, own connections), as two hub replicas or the hub and the
CLI would be; the concurrency is real (threads released together by a barrier, against the real server)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Column, Integer, func, select
from tornado import web

from hubfleet.authenticators import HubfleetAuthenticator, cli
from hubfleet.authenticators.binding import BINDINGS, BindingStore, BindingStoreError, bindings_table
from hubfleet.authenticators.local import hash_password, write_users_file
from hubfleet.authenticators.policy import Binding
from hubfleet.db import Component, Database, migrate, table
from hubfleet.db.schema import schema_versions, utcnow



@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    return request.getfixturevalue("pg_url")


def together(n: int, fn):
    """``fn(i)`` in ``n`` threads released at the same instant; the results in order."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n), timeout=120))


# ---- migrations ---------------------------------------------------------------------------------------------------
steps_log = table("hubfleet_test_steps", Column("id", Integer, primary_key=True, autoincrement=True),
                  Column("step", Integer, nullable=False))


def _step1(conn):
    steps_log.create(conn, checkfirst=True)
    conn.execute(steps_log.insert().values(step=1))


def _step2(conn):
    conn.execute(steps_log.insert().values(step=2))


TEST_COMPONENT = Component("test-steps", (_step1, _step2))


def test_migrations_run_once_when_processes_start_at_once(db_url):
    dbs = [Database(db_url, timeout=30) for _ in range(6)]
    try:
        results = together(6, lambda i: migrate(dbs[i], BINDINGS, TEST_COMPONENT))
        ran = [r["test-steps"] for r in results]
        assert sorted(ran) == [(0, 2)] + [(2, 2)] * 5, ran  # one process migrated, the others found it done
        again = Database(db_url)  # the next start: nothing to do
        assert migrate(again, BINDINGS, TEST_COMPONENT) == {"bindings": (1, 1), "test-steps": (2, 2)}
        steps = again.run(lambda c: [r.step for r in c.execute(select(steps_log.c.step).order_by(steps_log.c.id))])
        versions = again.run(lambda c: dict(c.execute(select(schema_versions.c.component, schema_versions.c.version))
                                            .all()))
        assert steps == [1, 2] and versions == {"bindings": 1, "test-steps": 2}
    finally:
        for db in dbs:
            db.dispose()


# ---- atomic binding -----------------------------------------------------------------------------------------------
def test_concurrent_first_bindings_bind_exactly_one_account(db_url):
    n = 6
    stores = [BindingStore(Database(db_url, timeout=30)) for _ in range(n)]
    for store in stores:  # tables first: this test is about the bindings, not the migrations
        store.prepare()
    try:
        for name in ("alice", "bob", "carol"):
            results = together(n, lambda i: stores[i].bind(name, f"backend{i}", f"{name}-subject-{i}"))
            winners = [i for i, (_, action) in enumerate(results) if action == "bound"]
            assert len(winners) == 1, f"{name}: {len(winners)} logins bound: {results}"
            w = winners[0]
            assert all(before == Binding(f"backend{w}", f"{name}-subject-{w}")
                       for i, (before, _) in enumerate(results) if i != w), results
            assert stores[0].get(name) == Binding(f"backend{w}", f"{name}-subject-{w}")
        rows = stores[0].db.run(lambda c: c.execute(select(func.count()).select_from(bindings_table)).scalar())
        assert rows == 3
    finally:
        for s in stores:
            s.db.dispose()


def _users(path, password: str, names):
    write_users_file(path, {"users": {n: {"password_hash": hash_password(password, rounds=4), "groups": ["staff"]}
                                      for n in names}})
    return str(path)


def test_concurrent_first_logins_through_two_backends_admit_one(db_url, tmp_path):
    """Through the authenticator: for each name, a login through each of two backends at the same moment. Only one
    of them may get the hub user; the other is refused (before, both passed the check and the last write won)."""
    names = [f"u{i}" for i in range(12)]
    a = HubfleetAuthenticator(
        backends=[{"kind": "local", "name": "first", "users_file": _users(tmp_path / "1.yaml", "pw-1", names),
                   "bcrypt_rounds": 4},
                  {"kind": "local", "name": "second", "users_file": _users(tmp_path / "2.yaml", "pw-2", names),
                   "bcrypt_rounds": 4}],
        allowed_groups={"staff"}, db_url=db_url, db_timeout=30, subject_store_file="")

    async def attempt(name, pw):
        try:
            return (await a.get_authenticated_user(None, {"username": name, "password": pw}))["auth_state"][
                "hubfleet_backend"]
        except web.HTTPError as e:
            return e.status_code

    async def main():
        return await asyncio.gather(*[attempt(n, pw) for n in names for pw in ("pw-1", "pw-2")])

    outcomes = asyncio.run(main())
    per_name = {n: outcomes[2 * i:2 * i + 2] for i, n in enumerate(names)}
    for name, (one, two) in per_name.items():
        admitted = [o for o in (one, two) if o in ("first", "second")]
        assert len(admitted) == 1 and 403 in (one, two), f"{name}: {one}, {two} (all: {per_name})"
        assert a.bindings.get(name) == Binding(admitted[0], name)


# ---- moving a binding to a new kind of subject ---------------------------------------------------------------------
def test_a_binding_moves_from_the_old_subject_to_the_new_one(db_url):
    store = BindingStore(Database(db_url))
    dn, uuid = "uid=alice,ou=people,dc=example,dc=org", "6f1c3a52-0d1e-4a8e-9d7e-1b2c3d4e5f60"
    store.bind("alice", "ldap", dn)

    async def check(name, subject, previous=""):
        try:
            return await store.check(name, "ldap", subject, previous_subject=previous)
        except web.HTTPError as e:
            return e.status_code

    assert asyncio.run(check("alice", uuid, previous=dn)) is True
    assert store.get("alice") == Binding("ldap", uuid)
    assert asyncio.run(check("alice", dn)) == 403  # the DN no longer passes
    assert asyncio.run(check("alice", "another-uuid", previous="uid=other,ou=people")) == 403
    assert store.get("alice") == Binding("ldap", uuid)


# ---- the JSON store of earlier releases -----------------------------------------------------------------------------
def test_the_json_store_is_imported_once(db_url, tmp_path, caplog):
    path = tmp_path / "hubfleet-subjects.json"
    path.write_text(json.dumps({"version": 1, "users": {
        "alice": {"backend": "ldap", "subject": "uid=alice,ou=people,dc=example,dc=org", "since": 1},
        "bob": {"backend": "local", "subject": "bob", "since": 1}}}))
    before = path.read_bytes()
    BindingStore(Database(db_url)).bind("bob", "keycloak", "sub-of-bob")  # bound in the database already
    log = logging.getLogger("test-import")
    caplog.set_level(logging.INFO, logger="test-import")
    store = BindingStore(Database(db_url), import_file=path, log=log)
    assert store.all() == {"alice": Binding("ldap", "uid=alice,ou=people,dc=example,dc=org"),
                           "bob": Binding("keycloak", "sub-of-bob")}
    assert "imported user:alice -> ldap uid=alice,ou=people,dc=example,dc=org" in caplog.text
    assert "imported 1 of 2 bindings" in caplog.text and "already bound there were kept: bob" in caplog.text
    assert path.read_bytes() == before  # left in place
    # an admin re-links alice; the next hub start must not bring the old binding back from the file
    store.unbind("alice")
    caplog.clear()
    restarted = BindingStore(Database(db_url), import_file=path, log=log)
    assert restarted.get("alice") is None
    assert "imported" not in caplog.text


# ---- the database unreachable ----------------------------------------------------------------------------------------
@pytest.fixture
def hanging_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("where", ["closed-port", "hanging-server", "sqlite-unopenable"])
def test_sign_in_is_refused_while_the_database_is_unreachable(where, tmp_path, hanging_port):
    if where == "closed-port":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        url = f"postgresql+psycopg2://hub@127.0.0.1:{port}/jupyterhub"
    elif where == "hanging-server":
        url = f"postgresql+psycopg2://hub@127.0.0.1:{hanging_port}/jupyterhub"
    else:
        url = f"sqlite:///{tmp_path}/missing-dir/jupyterhub.sqlite"
    a = HubfleetAuthenticator(backends=[{"kind": "local", "users_file": _users(tmp_path / "u.yaml", "pw", ["ann"]),
                                         "bcrypt_rounds": 4}],
                              allowed_groups={"staff"}, db_url=url, db_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(a.get_authenticated_user(None, {"username": "ann", "password": "pw"}))
    took = time.monotonic() - t0
    assert e.value.status_code == 503 and "Sign-in is unavailable" in e.value.log_message
    assert took < 10, f"the refusal took {took:.1f}s with db_timeout=2"
    user = type("U", (), {"name": "ann"})()
    assert asyncio.run(a.refresh_user(user)) is False


def test_a_database_that_does_not_answer_in_time_is_unavailable(db_url):
    """Another connection holds the lock a first binding needs: the bind gives up after the timeout (PostgreSQL's
    lock_timeout, SQLite's busy timeout) with the error a login fails closed on, instead of waiting."""
    holder = Database(db_url, timeout=30)
    BindingStore(holder).prepare()
    with holder.engine.connect() as conn:
        conn.execution_options(hubfleet_write=True)
        with conn.begin():
            conn.execute(bindings_table.insert().values(username="x", backend="b", subject="s", bound_at=utcnow()))
            store = BindingStore(Database(db_url, timeout=1))
            t0 = time.monotonic()
            with pytest.raises(BindingStoreError, match="lock|timeout"):
                store.bind("x", "other", "s2")
            took = time.monotonic() - t0
    assert took < 5, f"gave up after {took:.1f}s with a 1 s timeout"
    assert store.get("x") == Binding("b", "s")


# ---- hubfleet users ---------------------------------------------------------------------------------------------------
def _cli(capsys, *args):
    code = cli.main(["users", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_hubfleet_users_bindings_and_unbind_work_on_the_database(db_url, capsys):
    store = BindingStore(Database(db_url))
    store.bind("alice", "ldap", "uid=alice,ou=people")
    store.bind("bob", "keycloak", "sub-b")
    code, out, err = _cli(capsys, "bindings", "--db-url", db_url)
    assert code == 0 and out.splitlines() == ["alice: ldap: uid=alice,ou=people", "bob: keycloak: sub-b"], err
    code, out, err = _cli(capsys, "unbind", "alice", "--db-url", db_url)
    assert code == 0 and "unbound alice (was ldap: uid=alice,ou=people)" in out, err
    assert store.get("alice") is None and store.get("bob") == Binding("keycloak", "sub-b")
    code, out, err = _cli(capsys, "unbind", "alice", "--db-url", db_url)
    assert code == 0 and "alice is not bound" in out
    nowhere = "postgresql+psycopg2://hub@127.0.0.1:1/nothing"
    code, out, err = _cli(capsys, "bindings", "--db-url", nowhere, "--db-timeout", "2")
    assert code == 1 and err.startswith(f"error: database {nowhere}"), err
