"""Local accounts: YAML parsing, atomic 0600 writes, re-read on change, and the `hubfleet users` CLI (no sockets)."""

from __future__ import annotations

import asyncio
import io
import os
import stat

import pytest
import yaml

from hubfleet.authenticators import cli
from hubfleet.authenticators.local import (
    HubfleetLocalAuthenticator,
    UsersFileError,
    hash_password,
    parse_users,
    write_users_file,
)

H = hash_password("pw", rounds=4)


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "expected a mapping with a 'users' mapping"),
        ({"users": []}, "expected a mapping with a 'users' mapping"),
        ({"users": {"a": "x"}}, "entry 'a' must be a mapping"),
        ({"users": {"a": {}}}, "user 'a' has no bcrypt password_hash"),
        ({"users": {"a": {"password_hash": "plain"}}}, "user 'a' has no bcrypt password_hash"),
        ({"users": {"a": {"password_hash": H, "groups": "g"}}}, "groups must be a list of strings"),
        ({"users": {"a": {"password_hash": H, "admin": "yes"}}}, "admin must be true or false"),
    ],
)
def test_parse_users_errors(doc, message):
    with pytest.raises(UsersFileError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_users(doc, source="f.yaml")


def test_parse_users_ok():
    accounts = parse_users({"users": {"a": {"password_hash": H, "groups": ["g"], "admin": True}}})
    assert accounts["a"].groups == ("g",) and accounts["a"].admin is True
    assert parse_users(None) == {}


def test_write_is_atomic_and_private(tmp_path):
    path = tmp_path / "sub" / "users.yaml"
    write_users_file(path, {"users": {"a": {"password_hash": H}}})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert yaml.safe_load(path.read_text())["users"]["a"]["password_hash"] == H
    assert [p.name for p in path.parent.iterdir()] == ["users.yaml"]  # no temp file left behind


def run_cli(argv, stdin=""):
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return cli.main(argv)
    finally:
        sys.stdin = old


def test_cli_add_passwd_remove(tmp_path, capsys):
    f = str(tmp_path / "users.yaml")
    assert run_cli(["users", "add", "Alice", "--group", "g1", "--group", "g2", "--admin", "--file", f,
                    "--password-stdin", "--rounds", "4"], "s3cret\n") == 0
    doc = yaml.safe_load(open(f))
    assert doc["users"]["alice"]["groups"] == ["g1", "g2"] and doc["users"]["alice"]["admin"] is True
    old_hash = doc["users"]["alice"]["password_hash"]
    assert run_cli(["users", "add", "alice", "--file", f, "--password-stdin"], "x\n") == 1  # exists
    assert run_cli(["users", "passwd", "alice", "--file", f, "--password-stdin", "--rounds", "4"], "new\n") == 0
    assert yaml.safe_load(open(f))["users"]["alice"]["password_hash"] != old_hash
    assert run_cli(["users", "passwd", "nobody", "--file", f, "--password-stdin"], "x\n") == 1
    assert run_cli(["users", "add", "bob", "--file", f, "--password-stdin"], "   \n") == 2  # blank password
    assert run_cli(["users", "add", "bad*name", "--file", f, "--password-stdin"], "x\n") == 2
    assert run_cli(["users", "list", "--file", f]) == 0
    assert "alice (admin): g1, g2" in capsys.readouterr().out
    assert run_cli(["users", "remove", "alice", "--file", f]) == 0
    assert run_cli(["users", "remove", "alice", "--file", f]) == 1
    assert yaml.safe_load(open(f)) == {"users": {}}


def test_cli_reports_a_broken_file(tmp_path, capsys):
    f = tmp_path / "users.yaml"
    f.write_text("users: [1, 2]\n")
    assert run_cli(["users", "list", "--file", str(f)]) == 1
    assert "expected a mapping" in capsys.readouterr().err


def test_registered_in_the_hubfleet_command():
    from hubfleet import cli as top

    args = top.build_parser("users").parse_args(["users", "list", "--file", "x.yaml"])
    assert callable(args.func)


def test_backend_rereads_file_and_keeps_last_good_copy(tmp_path):
    f = tmp_path / "users.yaml"
    write_users_file(f, {"users": {"ann": {"password_hash": H, "groups": ["g"]}}})
    a = HubfleetLocalAuthenticator(users_file=str(f))

    async def scenario():
        ok = await a.authenticate_password("ann", "pw")
        assert ok is not None and ok.groups == ["g"] and ok.admin is False
        assert await a.authenticate_password("ann", "wrong") is None
        assert await a.authenticate_password("nobody", "pw") is None
        # change the file: groups and admin flag follow without a restart
        write_users_file(f, {"users": {"ann": {"password_hash": H, "groups": ["h"], "admin": True}}})
        r = await a.lookup_user("ann")
        assert r.groups == ["h"] and r.admin is True
        # a broken edit keeps the last good accounts
        f.write_text("users: {ann: 12}\n")
        assert (await a.lookup_user("ann")).groups == ["h"]
        # removed from the file: unknown
        write_users_file(f, {"users": {}})
        assert await a.lookup_user("ann") is None

    asyncio.run(scenario())


def test_backend_through_policy(tmp_path):
    f = tmp_path / "users.yaml"
    write_users_file(f, {"users": {"ann": {"password_hash": H, "groups": ["staff"], "admin": False},
                                   "root": {"password_hash": H, "admin": True}}})
    a = HubfleetLocalAuthenticator(users_file=str(f), allowed_groups={"staff"}, group_prefix="local-",
                                   group_mapping={"staff": "users"},
                                   db_url=f"sqlite:///{tmp_path}/hub.sqlite")

    async def login(name, pw):
        return await a.get_authenticated_user(None, {"username": name, "password": pw})

    m = asyncio.run(login(" ANN ", "pw"))
    assert m is None  # staff -> local-users after mapping+prefix; allowed_groups names hub groups
    a.allowed_groups = {"local-users"}
    m = asyncio.run(login(" ANN ", "pw"))
    assert m["name"] == "ann" and m["groups"] == ["local-users"] and m["admin"] is False
    assert asyncio.run(login("root", "pw"))["admin"] is True  # admin flag from the file implies access
    assert asyncio.run(login("ann", "")) is None
