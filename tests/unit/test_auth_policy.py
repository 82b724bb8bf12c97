"""hubfleet.authenticators.policy: pure tables, no sockets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hubfleet.authenticators import policy
from hubfleet.authenticators.policy import Decision, decide, expand_nested_groups, map_groups, normalize_username


def test_policy_module_imports_nothing_networked():
    src = Path(policy.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "re", "unicodedata", "collections", "dataclasses"}, imported


@pytest.mark.parametrize(
    "raw, kwargs, expected",
    [
        ("alice", {}, "alice"),
        ("Alice", {}, "alice"),
        ("  alice\t", {}, "alice"),
        ("ALICE", {"lowercase": False}, None),  # the default pattern is lowercase
        ("ALICE", {"lowercase": False, "pattern": None}, "ALICE"),
        ("john.smith", {}, "john.smith"),
        ("j_smith-2@corp", {}, "j_smith-2@corp"),
        ("", {}, None),
        ("   ", {}, None),
        ("-alice", {}, None),  # must start with a letter or digit
        (".", {}, None),
        ("a" * 64, {}, "a" * 64),
        ("a" * 65, {}, None),
        ("a" * 65, {"max_length": 100}, "a" * 65),
        ("alice*", {}, None),
        ("al(ice)", {}, None),
        ("alice\\", {}, None),
        ("alice\x00", {}, None),
        ("alice\x00", {"pattern": None}, None),  # control characters are refused even without a pattern
        ("ali\u200bce", {"pattern": None}, None),  # zero-width space (format character)
        ("alice,ou=x", {}, None),
        ("\u0430lice", {}, None),  # Cyrillic а
        ("\uff41lice", {}, None),  # fullwidth a: not folded onto "alice"
        ("AL\u0130CE", {}, None),  # Turkish İ lowercases to i + combining dot
        ("alice/bob", {}, None),
        ("alice bob", {}, None),
        ("bob", {"username_map": {"bob": "robert"}}, "robert"),
        ("Bob", {"username_map": {"bob": "robert"}}, "robert"),
        ("x", {"pattern": r"^[a-z]{2,}$"}, None),
        (None, {}, None),
        (42, {}, None),
    ],
)
def test_normalize_username(raw, kwargs, expected):
    assert normalize_username(raw, **kwargs) == expected


@pytest.mark.parametrize(
    "password, ok",
    [
        ("secret", True),
        (" secret ", True),  # never stripped
        ("", False),
        (" ", False),
        ("\t\n", False),
        ("\u3000", False),  # ideographic space is whitespace too
        ("pass\x00word", False),
        ("x" * 1024, True),
        ("x" * 1025, False),
        (None, False),
        (b"bytes", False),
    ],
)
def test_password_acceptable(password, ok):
    assert policy.password_acceptable(password) is ok


@pytest.mark.parametrize(
    "groups, kwargs, expected",
    [
        (["b", "a", "a"], {}, ["a", "b"]),
        (["users"], {"prefix": "ldap-"}, ["ldap-users"]),
        (["cn-users", "x"], {"mapping": {"cn-users": "users"}}, ["users", "x"]),
        (["cn-users", "x"], {"mapping": {"cn-users": "users"}, "only_mapped": True}, ["users"]),
        (["drop-me", "keep"], {"mapping": {"drop-me": ""}}, ["keep"]),
        (["Users"], {"lowercase": True}, ["users"]),
        (["Users"], {"lowercase": True, "mapping": {"users": "u"}, "prefix": "p-"}, ["p-u"]),
        (["a", 3, None], {}, ["a"]),
        ([], {"prefix": "x"}, []),
    ],
)
def test_map_groups(groups, kwargs, expected):
    assert map_groups(groups, **kwargs) == expected


BASE = dict(allowed_users={"ann"}, blocked_users={"mal"}, allowed_groups={"users"}, admin_users={"root"},
            admin_groups={"admins"})


@pytest.mark.parametrize(
    "username, groups, backend_admin, overrides, allowed, admin",
    [
        ("ann", [], None, {}, True, False),  # allowed_users; admin_groups configured -> explicit False
        ("bob", ["users"], None, {}, True, False),
        ("bob", ["other"], None, {}, False, False),
        ("bob", ["admins"], None, {}, True, True),  # admin groups imply access (ldapauthenticator #239)
        ("root", [], None, {}, True, True),
        ("mal", ["users", "admins"], None, {}, False, None),  # blocked wins over everything
        ("root", [], None, {"blocked_users": {"root"}}, False, None),
        ("bob", [], True, {}, True, True),  # backend admin flag (local accounts file)
        ("bob", ["users"], False, {"admin_groups": set()}, True, False),
        ("bob", ["users"], None, {"admin_groups": set()}, True, None),  # nothing decides admin: leave as is
        ("bob", [], None, {"allow_all": True}, True, False),
        ("bob", [], None, {"allowed_groups": set(), "allowed_users": set()}, False, False),
        # a hub admin's name through a backend not trusted for admin: refused, even with allowed groups
        ("root", ["users", "admins"], True, {"admin_users": set(), "reserved_users": {"root"}}, False, None),
    ],
)
def test_decide(username, groups, backend_admin, overrides, allowed, admin):
    d = decide(username=username, groups=groups, backend_admin=backend_admin, **{**BASE, **overrides})
    assert isinstance(d, Decision)
    assert (d.allowed, d.admin) == (allowed, admin), d.reason
    assert d.reason


GRAPH = {
    "a": ["b"], "b": ["c"], "c": ["d"], "d": [],  # a chain
    "x": ["y"], "y": ["x", "z"], "z": [],  # a cycle with an exit
    "s": ["s"],  # a self-loop
    "m": ["n", "o"], "n": ["p"], "o": ["p"], "p": [],  # a diamond
}


@pytest.mark.parametrize(
    "direct, depth, groups, truncated",
    [
        ({"a"}, 0, {"a"}, True),
        ({"a"}, 1, {"a", "b"}, True),
        ({"a"}, 3, {"a", "b", "c", "d"}, False),
        ({"a"}, 10, {"a", "b", "c", "d"}, False),
        ({"x"}, 5, {"x", "y", "z"}, False),
        ({"s"}, 5, {"s"}, False),
        ({"m"}, 5, {"m", "n", "o", "p"}, False),
        (set(), 5, set(), False),
        ({"unknown"}, 5, {"unknown"}, False),
    ],
)
def test_expand_nested_groups(direct, depth, groups, truncated):
    calls: list[str] = []

    def parents_of(g):
        calls.append(g)
        return GRAPH.get(g, [])

    result = expand_nested_groups(direct, parents_of, max_depth=depth)
    assert result.groups == groups
    assert result.truncated is truncated
    # every group's parents are fetched at most once while walking (plus one truncation probe per frontier group)
    assert len(calls) <= 2 * max(1, len(groups))


@pytest.mark.parametrize(
    "claims, path, expected",
    [
        ({"groups": ["a"]}, "groups", ["a"]),
        ({"realm_access": {"roles": ["r"]}}, "realm_access.roles", ["r"]),
        ({"realm_access": {}}, "realm_access.roles", None),
        ({"realm_access": ["x"]}, "realm_access.roles", None),
        ({}, "groups", None),
    ],
)
def test_claim_at_path(claims, path, expected):
    assert policy.claim_at_path(claims, path) == expected


@pytest.mark.parametrize("pattern, ok", [(r"^[a-z]+$", True), (r"([a-z", False), (r"", True)])
def test_check_pattern(pattern, ok):
    assert (policy.check_pattern(pattern) is None) is ok
