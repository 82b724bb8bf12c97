"""Pure access policy shared by every hubfleet backend.

Nothing here talks to a network or imports tornado, ldap3 or an HTTP client: every function takes plain values and
returns plain values, so the whole policy is unit-tested with tables (tests/unit/test_auth_policy.py).

The pieces, in the order a login uses them:

- :func:`normalize_username` — strip, lowercase, map, then check against the username pattern;
  returns ``None`` for a name that must be refused before any backend sees it.
- :func:`password_acceptable` — an empty or whitespace-only password is refused before any bind
  (an LDAP simple bind with an empty password is an *unauthenticated* bind that "succeeds").
- :func:`map_groups` — backend group names -> hub group names (explicit mapping, optional prefix).
- :func:`decide` — blocked / allowed / admin decision from the configured sets and the mapped groups.
- :func:`evaluate` — the one policy call of a login or refresh: :func:`map_groups` then :func:`decide`, with the
  :class:`Rules` in force for the backend the user came through.
- :func:`expand_nested_groups` — breadth-first walk of parent groups with a depth limit and cycle detection;
  the lookup of one group's parents is a callable supplied by the backend.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

#: The default username pattern: ASCII letters/digits and ``. _ @ -``, starting with a letter or digit.
#: Anything else (LDAP/DN metacharacters, Unicode look-alikes, control characters) is refused up front.
DEFAULT_USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]*$"
#: Longest accepted username; longer input is refused before any backend call.
DEFAULT_MAX_USERNAME_LENGTH = 64


def normalize_username(
    raw: str,
    *,
    lowercase: bool = True,
    strip: bool = True,
    username_map: Mapping[str, str] | None = None,
    pattern: str | re.Pattern[str] | None = DEFAULT_USERNAME_PATTERN,
    max_length: int = DEFAULT_MAX_USERNAME_LENGTH,
) -> str | None:
    """Return the canonical hub username for ``raw``, or ``None`` when it must be refused.

    Steps: strip surrounding whitespace, refuse non-ASCII input (unless ``username_map`` names it as typed),
    lowercase, apply ``username_map``, then require the result to be non-empty, at most ``max_length``
    characters, free of control characters, and to match ``pattern`` (``re.fullmatch``). Unicode is *not* folded
    to ASCII: NFKC would turn a fullwidth ``ａｌｉｃｅ`` into ``alice`` and ``str.lower()`` turns the Kelvin sign
    ``K`` (U+212A) into ``k``, so a non-ASCII name is refused before case folding rather than silently mapped
    onto someone else. A site whose names are not ASCII lists them in ``username_map`` (typed name -> hub name).
    """
    if not isinstance(raw, str):
        return None
    name = raw.strip() if strip else raw
    if username_map and name in username_map:
        name = username_map[name]
    elif not name.isascii():
        return None  # before lower(): "\u212aim".lower() == "kim"
    else:
        if lowercase:
            name = name.lower()
        if username_map:
            name = username_map.get(name, name)
    if not name.isascii() and not (username_map and name in set(username_map.values())):
        return None
    if not name or len(name) > max_length:
        return None
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return None  # NUL and other control/format characters (zero-width joiners, BOM, ...)
    if pattern is not None:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        if not regex.fullmatch(name):
            return None
    return name


def password_acceptable(password: object, *, max_length: int = 1024) -> bool:
    """True when ``password`` may be sent to a backend: a non-blank string of at most ``max_length`` characters.

    Blank passwords are refused because an LDAP simple bind with an empty password is an unauthenticated bind
    that the server reports as a success (RFC 4513 5.1.2). Passwords are never stripped or otherwise changed.
    """
    if not isinstance(password, str):
        return False
    if not password.strip():
        return False
    if "\x00" in password:
        return False
    return len(password) <= max_length


def map_groups(
    groups: Iterable[str],
    *,
    mapping: Mapping[str, str] | None = None,
    prefix: str = "",
    only_mapped: bool = False,
    lowercase: bool = False,
) -> list[str]:
    """Map backend group names to hub group names; sorted, without duplicates.

    ``mapping`` renames a backend group (``{"cn-jupyter-users": "users"}``); a mapping to ``""`` drops the group.
    With ``only_mapped`` every group absent from ``mapping`` is dropped. ``prefix`` is put in front of every
    resulting name (``"ldap-"`` -> ``"ldap-users"``), after mapping.
    """
    mapping = mapping or {}
    out: set[str] = set()
    for group in groups:
        if not isinstance(group, str):
            continue
        key = group.lower() if lowercase else group
        if key in mapping:
            target = mapping[key]
        elif only_mapped:
            continue
        else:
            target = key
        if target:
            out.add(f"{prefix}{target}")
    return sorted(out)


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`: whether the user may log in, their admin flag and why."""

    allowed: bool
    admin: bool | None
    reason: str


def decide(
    *,
    username: str,
    groups: Iterable[str] = (),
    backend_admin: bool | None = None,
    backend_allows: str = "",
    allow_all: bool = False,
    allowed_users: Iterable[str] = (),
    blocked_users: Iterable[str] = (),
    allowed_groups: Iterable[str] = (),
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
) -> Decision:
    """Decide whether ``username`` (already normalised) with hub ``groups`` (already mapped) may log in.

    Order: ``blocked_users`` always wins; then admins (``admin_users``, ``admin_groups``, or an admin flag from
    the backend, e.g. the local accounts file) are allowed; then ``backend_allows`` (a reason the backend itself
    grants access, e.g. OIDC ``allowed_scopes``), ``allow_all``, ``allowed_users`` and ``allowed_groups``. The admin flag is ``True``/``False`` when the configuration decides it (admin groups or a
    backend flag are configured, so leaving an admin group demotes at the next login) and ``None`` ("leave as is")
    when nothing about this user's admin status is configured.
    """
    groups = set(groups)
    if username in set(blocked_users):
        return Decision(False, None, "in blocked_users")
    admin_groups = set(admin_groups)
    admin: bool | None
    if username in set(admin_users):
        admin, why = True, "in admin_users"
    elif admin_groups & groups:
        admin, why = True, f"in admin group(s) {sorted(admin_groups & groups)}"
    elif backend_admin:
        admin, why = True, "admin flag from the backend"
    elif admin_groups or backend_admin is not None:
        admin, why = False, ""
    else:
        admin, why = None, ""
    if admin:
        return Decision(True, True, why)
    if backend_allows:
        return Decision(True, admin, backend_allows)
    if allow_all:
        return Decision(True, admin, "allow_all")
    if username in set(allowed_users):
        return Decision(True, admin, "in allowed_users")
    matched = set(allowed_groups) & groups
    if matched:
        return Decision(True, admin, f"in allowed group(s) {sorted(matched)}")
    return Decision(False, admin, "not in allowed_users or allowed_groups")


@dataclass(frozen=True)
class Rules:
    """Everything the policy decides from, for the users of one backend: the hub-wide sets and the group options
    in force for that backend (its own where its configuration sets them, else the hub's)."""

    allow_all: bool = False
    allowed_users: frozenset[str] = frozenset()
    blocked_users: frozenset[str] = frozenset()
    admin_users: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()
    group_mapping: Mapping[str, str] = field(default_factory=dict)
    group_mapping_only: bool = False
    group_prefix: str = ""
    lowercase_groups: bool = False


def evaluate(
    rules: Rules, *, username: str, backend_groups: Iterable[str] = (), backend_admin: bool | None = None,
    backend_allows: str = "",
) -> tuple[list[str], Decision]:
    """The policy of one login or refresh, in one call: the backend's group names mapped to hub groups with the
    backend's rules (:func:`map_groups`), then the decision on those hub groups (:func:`decide`)."""
    groups = map_groups(backend_groups, mapping=rules.group_mapping, prefix=rules.group_prefix,
                        only_mapped=rules.group_mapping_only, lowercase=rules.lowercase_groups)
    decision = decide(username=username, groups=groups, backend_admin=backend_admin, backend_allows=backend_allows,
                      allow_all=rules.allow_all, allowed_users=rules.allowed_users,
                      blocked_users=rules.blocked_users, allowed_groups=rules.allowed_groups,
                      admin_users=rules.admin_users, admin_groups=rules.admin_groups)
    return groups, decision


@dataclass
class NestedGroups:
    """Result of :func:`expand_nested_groups`: every group reached, and whether the walk was cut short."""

    groups: set[str] = field(default_factory=set)
    truncated: bool = False


def expand_nested_groups(
    direct: Iterable[str], parents_of: Callable[[str], Iterable[str]], *, max_depth: int = 5
) -> NestedGroups:
    """Breadth-first closure of ``direct`` under ``parents_of`` (the groups a group is itself a member of).

    ``max_depth`` counts levels above the direct groups (0 = direct groups only). A group already seen is not
    visited again, so cycles (A in B, B in A) terminate and every group's parents are looked up at most once.
    ``truncated`` is True when groups at the depth limit still had unseen parents.
    """
    result = NestedGroups(groups=set(direct))
    frontier = list(result.groups)
    depth = 0
    while frontier:
        if depth >= max_depth:
            for g in frontier:
                if any(p not in result.groups for p in parents_of(g)):
                    result.truncated = True
                    break
            break
        next_frontier: list[str] = []
        for child in frontier:
            for parent in parents_of(child):
                if parent in result.groups:
                    continue
                result.groups.add(parent)
                next_frontier.append(parent)
        frontier = next_frontier
        depth += 1
    return result


def claim_at_path(claims: Mapping, path: str):
    """``claims["a"]["b"]`` for ``path = "a.b"``; None when any step is missing."""
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True)
class Binding:
    """The (backend, subject) a hub user is bound to at first login."""

    backend: str
    subject: str


def binding_conflict(bound: Binding | None, backend: str, subject: str) -> str | None:
    """Why a login as (``backend``, ``subject``) must be refused for a user bound to ``bound``; None when it may
    proceed (no binding yet, or the same one). An empty ``subject`` never matches a binding (fail closed)."""
    if bound is None:
        return None if subject else "the backend gave no stable subject for this account"
    if bound.backend != backend:
        return f"this hub user belongs to the {bound.backend!r} sign-in, not {backend!r}"
    if not subject or bound.subject != subject:
        return f"this hub user belongs to another {backend!r} account"
    return None


def check_pattern(pattern: str) -> str | None:
    """Return an error message when ``pattern`` is not a valid regular expression, else None."""
    try:
        re.compile(pattern)
    except re.error as e:
        return f"{pattern!r} is not a valid regular expression: {e}"
    return None
