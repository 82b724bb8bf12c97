"""Per-profile cull decisions: pure functions of the hub's REST models and a clock.

No HTTP, no tornado: :mod:`.app` fetches the models and calls :func:`cull_decision` /
:func:`user_cull_decision` for each of them; the tests call them with tables.

Built on jupyterhub-idle-culler 2.0.0 (read from its source):

- the hook shape is its ``default_cull_arbiter(*, inactive, inactive_limit, server, **kwargs) -> bool``: keyword-only
  and forward-compatible; ours returns a :class:`Decision` (a boolean plus the reason that is logged) and takes the
  whole models, because a per-profile policy needs ``user_options`` and ``started`` (for ``max_age``), which
  idle-culler's hook does not receive. :func:`idle_culler_hook` adapts our policies to *its* hook for deployments
  that keep running stock idle-culler (per-profile timeouts only: there, ``max_age`` stays one global number,
  applied outside the hook).
- the rules are idle-culler's ``handle_server``/``handle_user`` rules, unchanged: pending and not-ready servers are
  never culled; ``last_activity`` missing means "inactive since ``started``"; ``--cull-default-servers`` /
  ``--cull-named-servers`` gate idleness culling; ``max_age`` culls even active servers; admins' *servers* are culled,
  admin *users* only with ``cull_admin_users``; a user is deleted only once none of its servers is left.
- ``parse_date`` and ``format_td`` are the same functions as idle-culler's; they are re-implemented here on the
  standard library because importing ``jupyterhub_idle_culler`` imports tornado and dateutil, which a pure module
  must not. ``tests/unit/test_culler_arbiter.py`` checks both against idle-culler's on a table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from ...errors import HubfleetError

PROFILE_KEY = "profile"  # the user_options key ProfileSpawner sets (docs/spawner.md)
_SLUG = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CullConfigError(HubfleetError, ValueError):
    """A cull policy document or option is invalid; the message names the field and the value."""


@dataclass(frozen=True)
class CullPolicy:
    """How servers of one profile are culled.

    - ``timeout``: seconds of inactivity after which a server is culled.
    - ``max_age``: seconds since the server started after which it is culled even if active; 0 = no limit.
    - ``cull_users``: also delete the user once all its servers are culled and it is itself inactive.
    - ``never``: never cull for inactivity (``timeout`` is ignored); ``max_age`` still applies, so a
      "long-running" profile is ``never: true, max_age: 7d`` and a fully exempt one ``never: true``.
    """

    timeout: float = 3600.0
    max_age: float = 0.0
    cull_users: bool = False
    never: bool = False

    def __post_init__(self):
        for name in ("timeout", "max_age"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise CullConfigError(f"{name}: expected a duration >= 0 in seconds, got {value!r}")
        if self.timeout == 0 and not self.never:
            raise CullConfigError("timeout: 0 would cull every server at once; to switch idle culling off give "
                                  "never: true")

    def describe(self) -> str:
        idle = "never for inactivity" if self.never else f"after {format_td(self.timeout)} inactive"
        age = f", at age {format_td(self.max_age)}" if self.max_age else ""
        return f"{idle}{age}{', then the user' if self.cull_users else ''}"


@dataclass(frozen=True)
class Decision:
    cull: bool
    reason: str

    def __bool__(self) -> bool:
        return self.cull


# --- idle-culler's date helpers, on the standard library ------------------------------------------------------------

def parse_date(value: str) -> datetime:
    """An ISO 8601 timestamp as an aware datetime; naive means UTC (as ``jupyterhub_idle_culler.parse_date``)."""
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def format_td(td: timedelta | float | int | str | None) -> str:
    """``HH:MM:SS`` (as ``jupyterhub_idle_culler.format_td``); also accepts seconds."""
    if td is None:
        return "unknown"
    if isinstance(td, str):
        return td
    seconds = int(td.total_seconds() if isinstance(td, timedelta) else td)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02}:{m:02}:{s:02}"


def parse_duration(value, *, field: str) -> float:
    """Seconds from ``3600``, ``90.5``, ``"30m"``, ``"8h"``, ``"7d"``, ``"2w"``."""
    if isinstance(value, bool):
        raise CullConfigError(f"{field}: expected a duration like 1800, '30m', '8h' or '7d', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise CullConfigError(f"{field}: expected a duration like 1800, '30m', '8h' or '7d', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise CullConfigError(f"{field}: expected a duration >= 0, got {value!r}")
    return seconds


# --- the policies document -----------------------------------------------------------------------------------------

_POLICY_KEYS = ("timeout", "max_age", "cull_users", "never")


def policy_from_mapping(data, *, field: str, base: CullPolicy | None = None) -> CullPolicy:
    """One policy mapping; keys it leaves out come from ``base`` (the default policy)."""
    if not isinstance(data, Mapping):
        raise CullConfigError(f"{field}: expected a mapping with keys {', '.join(_POLICY_KEYS)}, "
                              f"got {type(data).__name__} {data!r}")
    unknown = sorted(set(data) - set(_POLICY_KEYS))
    if unknown:
        raise CullConfigError(f"{field}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_POLICY_KEYS)}")
    base = base or CullPolicy()
    values = {"timeout": base.timeout, "max_age": base.max_age, "cull_users": base.cull_users, "never": base.never}
    for key in ("timeout", "max_age"):
        if key in data:
            values[key] = parse_duration(data[key], field=f"{field}.{key}")
    for key in ("cull_users", "never"):
        if key in data:
            if not isinstance(data[key], bool):
                raise CullConfigError(f"{field}.{key}: expected true or false, got {data[key]!r}")
            values[key] = data[key]
    if "timeout" in data and "never" not in data:
        values["never"] = False  # a profile that gives a timeout is culled by it, whatever the default says
    try:
        return CullPolicy(**values)
    except CullConfigError as e:
        raise CullConfigError(f"{field}.{e}") from None


def policies_from_config(data, *, default: CullPolicy | None = None) -> tuple[dict[str, CullPolicy], CullPolicy]:
    """Parse a policies document into ``({profile slug: policy}, default policy)``.

    The document (YAML or a dict)::

        default: {timeout: 8h}                 # optional; keys left out come from ``default`` (the app's options)
        profiles:
          gpu: {timeout: 30m}                  # keys left out come from the default policy
          small: {timeout: 8h}
          long-running: {never: true, max_age: 7d}

    A bare mapping of profiles (without ``default``/``profiles``) is accepted too. Durations are seconds or
    ``30m``/``8h``/``7d``/``2w``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise CullConfigError(f"policies: expected a mapping with 'default' and 'profiles', got "
                              f"{type(data).__name__} {data!r}")
    if set(data) <= {"default", "profiles"}:
        default_data, profiles_data = data.get("default") or {}, data.get("profiles") or {}
    else:
        default_data, profiles_data = {}, data
    default_policy = policy_from_mapping(default_data, field="default", base=default or CullPolicy())
    if not isinstance(profiles_data, Mapping):
        raise CullConfigError(f"profiles: expected a mapping of profile slug to policy, got "
                              f"{type(profiles_data).__name__} {profiles_data!r}")
    policies = {}
    for slug, pdata in profiles_data.items():
        if not isinstance(slug, str) or not _SLUG.match(slug):
            raise CullConfigError(f"profiles: {slug!r} is not a profile slug (lowercase letters, digits, '-')")
        policies[slug] = policy_from_mapping(pdata if pdata is not None else {}, field=f"profiles.{slug}",
                                             base=default_policy)
    return policies, default_policy


# --- decisions -----------------------------------------------------------------------------------------------------

def profile_of(server: Mapping) -> str | None:
    """The profile slug a server was started with (``user_options["profile"]``), or None."""
    options = server.get("user_options") or {}
    profile = options.get(PROFILE_KEY) if isinstance(options, Mapping) else None
    return profile if isinstance(profile, str) and profile else None


def policy_for(server: Mapping, policies: Mapping[str, CullPolicy], default: CullPolicy) -> tuple[str, CullPolicy]:
    """``(label, policy)`` for a server: its profile's policy, else the default one."""
    profile = profile_of(server)
    if profile is not None and profile in policies:
        return f"profile {profile}", policies[profile]
    if profile is not None:
        return f"profile {profile} (no policy: default)", default
    return "default policy", default


def _ago(now: datetime, stamp) -> timedelta | None:
    return now - parse_date(stamp) if stamp else None


def _first(*values):
    return next((v for v in values if v is not None), None)


def cull_decision(*, server: Mapping, user: Mapping, now: datetime, policies: Mapping[str, CullPolicy],
                  default: CullPolicy, cull_default_servers: bool = True, cull_named_servers: bool = True,
                  **kwargs) -> Decision:
    """Whether to stop one server (a server model of ``GET /hub/api/users``), and why.

    Keyed on the server's ``user_options["profile"]``; servers without one, or of a profile with no policy, get
    ``default``. Extra keyword arguments are ignored, so callers may pass more context later.
    """
    name = server.get("name", "")
    label, policy = policy_for(server, policies, default)
    if server.get("pending"):
        return Decision(False, f"pending {server['pending']}")
    if not server.get("ready", bool(server.get("url"))):
        return Decision(False, "not ready")
    age = _ago(now, server.get("started"))
    inactive = _first(_ago(now, server.get("last_activity")), age)
    kind_allowed = cull_named_servers if name else cull_default_servers
    if (not policy.never and kind_allowed and inactive is not None
            and inactive.total_seconds() >= policy.timeout):
        return Decision(True, f"inactive for {format_td(inactive)} >= {format_td(policy.timeout)} ({label})")
    if policy.max_age and age is not None and age.total_seconds() >= policy.max_age:
        return Decision(True, f"age {format_td(age)} >= max_age {format_td(policy.max_age)} "
                              f"(inactive for {format_td(inactive)}, {label})")
    if not kind_allowed:
        why = "named servers" if name else "default servers"
        return Decision(False, f"{why} are not culled for inactivity ({label})")
    if policy.never:
        return Decision(False, f"never culled for inactivity ({label}), age {format_td(age)}")
    return Decision(False, f"inactive for {format_td(inactive)} < {format_td(policy.timeout)} ({label})")


def user_cull_decision(*, user: Mapping, now: datetime, policy: CullPolicy, servers_left: int = 0,
                       cull_admin_users: bool = True, **kwargs) -> Decision:
    """Whether to delete a user whose servers were all handled, and why (idle-culler's ``handle_user`` rules).

    ``policy`` is the policy that governs the user: the default one, or, when the sweep culled servers of this
    user, the caller combines theirs (every one must allow ``cull_users``).
    """
    name = user.get("name", "?")
    if not policy.cull_users:
        return Decision(False, "cull_users is off")
    if servers_left:
        return Decision(False, f"{servers_left} server(s) still running")
    if user.get("admin") and not cull_admin_users:
        return Decision(False, "admin users are not culled")
    age = _ago(now, user.get("created"))
    inactive = _first(_ago(now, user.get("last_activity")), age)
    if not policy.never and inactive is not None and inactive.total_seconds() >= policy.timeout:
        return Decision(True, f"user {name} inactive for {format_td(inactive)} >= {format_td(policy.timeout)}")
    if policy.max_age and age is not None and age.total_seconds() >= policy.max_age:
        return Decision(True, f"user {name} age {format_td(age)} >= max_age {format_td(policy.max_age)}")
    return Decision(False, f"user {name} inactive for {format_td(inactive)}")


def combine_for_user(policies: list[CullPolicy], default: CullPolicy) -> CullPolicy:
    """The policy that decides a user's deletion after its servers were culled under ``policies``: the user goes
    only if every one of them allows ``cull_users``; idleness and age are judged by the default policy."""
    allowed = all(p.cull_users for p in policies) if policies else default.cull_users
    return CullPolicy(timeout=default.timeout, max_age=default.max_age, cull_users=allowed, never=default.never)


def idle_culler_hook(policies: Mapping[str, CullPolicy], default: CullPolicy):
    """A ``c.IdleCuller.cull_arbiter_hook`` for stock jupyterhub-idle-culler with per-profile timeouts.

    Only idleness is per profile there: idle-culler applies its one ``--max-age`` itself, outside the hook.
    """
    def arbiter(*, inactive, inactive_limit, server, **kwargs) -> bool:
        _, policy = policy_for(server, policies, default)
        return (not policy.never) and inactive is not None and inactive.total_seconds() >= policy.timeout

    return arbiter


__all__ = ["CullPolicy", "Decision", "CullConfigError", "policies_from_config", "policy_from_mapping",
           "cull_decision", "user_cull_decision", "combine_for_user", "idle_culler_hook", "profile_of",
           "policy_for", "parse_date", "parse_duration", "format_td", "PROFILE_KEY"]
