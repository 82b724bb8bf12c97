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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .policies import (
    POLICY_KEYS,
    CullConfigError,
    CullPolicy,
    format_td,
    is_slug,
    parse_duration,
    policies_from_config,
    policy_from_mapping,
)

PROFILE_KEY = "profile"  # the user_options key ProfileSpawner sets (docs/spawner.md)


@dataclass(frozen=True)
class Activity:
    """What the culler's activity sources saw for one server; None: not asked, or no answer.

    - ``busy_kernels``: kernels in ``execution_state: busy`` (from the server's ``/api/kernels``).
    - ``gpu_idle_for``: seconds the server's GPU has stayed under its policy's ``gpu_idle_below``, at least (0: in
      use now), from Prometheus.
    """

    busy_kernels: int | None = None
    gpu_idle_for: float | None = None


@dataclass(frozen=True)
class BudgetState:
    """A running server's usage budgets as the hub counts them (``GET /hub/api/budgets``): ``used_up`` when one that
    applies to it is used up, ``text`` saying which (``you have used 20.1 of 20 GPU-hours in the last 7 days``)."""

    used_up: bool
    text: str = ""


@dataclass(frozen=True)
class Warned:
    """A warning given: when, and for what (``idle``: activity cancels it; ``max_age``: nothing does; ``budget``:
    the budget freeing up cancels it)."""

    at: datetime
    kind: str = "idle"


@dataclass(frozen=True)
class Decision:
    """``cull`` and the ``reason`` that is logged; ``action`` is ``cull``, ``warn`` (give the warning now),
    ``wait`` (warned; the notice period runs) or ``keep``; ``why`` is the metrics label: ``idle``, ``gpu_idle``,
    ``max_age``, ``budget`` (for cull, warn and wait), ``busy`` (kept because a kernel is busy)."""

    cull: bool
    reason: str
    action: str = ""
    why: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not self.action:
            object.__setattr__(self, "action", "cull" if self.cull else "keep")

    def __bool__(self) -> bool:
        return self.cull


# --- idle-culler's date helpers, on the standard library ------------------------------------------------------------

def parse_date(value: str) -> datetime:
    """An ISO 8601 timestamp as an aware datetime; naive means UTC (as ``jupyterhub_idle_culler.parse_date``)."""
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


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


def most_lenient(policies: list[CullPolicy]) -> CullPolicy:
    """The policy that culls no server sooner than any of ``policies`` would (for a server whose profile is
    unknown among them): the longest timeout and max_age, every warning, busy kernels spared if any spares them,
    browser activity counted unless all judge by GPU, the user deleted only if all allow it."""
    if len(policies) == 1:
        return policies[0]
    never = any(p.never for p in policies)
    timeouts = [p.timeout for p in policies if not p.never]
    gpu = [p.gpu_idle_below for p in policies]
    return CullPolicy(
        timeout=max(timeouts, default=max(p.timeout for p in policies)), never=never,
        max_age=0.0 if any(not p.max_age for p in policies) else max(p.max_age for p in policies),
        warn_before=max((p.warn_before for p in policies), default=0.0),
        spare_busy_kernels=any(p.spare_busy_kernels for p in policies),
        gpu_idle_below=None if any(g is None for g in gpu) else min(gpu),
        cull_users=all(p.cull_users for p in policies))


def resolve_policy(*, server: Mapping, user: Mapping, policies: Mapping[str, CullPolicy], default: CullPolicy,
                   profiles=(), **kwargs) -> tuple[str, CullPolicy, bool]:
    """``(label, policy, certain)`` for a server, resolving a missing ``user_options["profile"]`` the way
    ProfileSpawner resolves ``{}``: the default one (``default: true``, else the first) of the profiles the user may
    use. ``profiles``: ProfileSpawner's parsed profiles (``hubfleet.spawners.profiles.Profile``; anything with
    ``slug``, ``default`` and ``access.allows(user, groups, is_admin)``); empty: no resolution.

    The user's groups come from the user model (``read:users:groups``). Without them, the profiles that could be
    this user's default are the candidates; if their policies differ the most lenient of them applies and
    ``certain`` is False (the caller logs it).
    """
    slug = profile_of(server)
    if slug is not None or not profiles:
        label, policy = policy_for(server, policies, default)
        return label, policy, True
    name, admin = str(user.get("name", "")), bool(user.get("admin"))

    def policy_of(p) -> CullPolicy:
        return policies.get(p.slug, default)

    groups = user.get("groups")
    if isinstance(groups, list):
        visible = [p for p in profiles if p.access.allows(name, frozenset(groups), admin)]
        chosen = next((p for p in visible if p.default), visible[0] if visible else None)
        if chosen is None:
            return "default policy (no profile is available to the user)", default, True
        return f"profile {chosen.slug} (the user's default)", policy_of(chosen), True
    surely = [p for p in profiles if p.access.allows(name, frozenset(), admin)]
    maybe = [p for p in profiles if p.access.allows(name, frozenset(getattr(p.access, "groups", ()) or ()), admin)]
    explicit = next((p for p in maybe if p.default), None)
    if explicit is not None and explicit in surely:
        candidates = [explicit]
    else:
        first_sure = surely[0] if surely else None
        cut = maybe.index(first_sure) + 1 if first_sure in maybe else len(maybe)
        by_slug = {p.slug: p for p in ([explicit] if explicit else []) + maybe[:cut]}
        candidates = list(by_slug.values())
    if not candidates:
        return "default policy (no profile is available to the user)", default, True
    distinct = list(dict.fromkeys(policy_of(p) for p in candidates))
    if len(distinct) == 1:
        slugs = "/".join(p.slug for p in candidates)
        return f"profile {slugs} (the user's default)", distinct[0], True
    slugs = ", ".join(p.slug for p in candidates)
    return f"profile unknown (one of {slugs}: the most lenient of their policies)", most_lenient(distinct), False


def _ago(now: datetime, stamp) -> timedelta | None:
    return now - parse_date(stamp) if stamp else None


def _first(*values):
    return next((v for v in values if v is not None), None)


def cull_decision(*, server: Mapping, user: Mapping, now: datetime, policies: Mapping[str, CullPolicy],
                  default: CullPolicy, cull_default_servers: bool = True, cull_named_servers: bool = True,
                  activity: Activity | None = None, warned: Warned | None = None, policy: CullPolicy | None = None,
                  label: str | None = None, budget: BudgetState | None = None, **kwargs) -> Decision:
    """Whether to stop one server (a server model of ``GET /hub/api/users``), warn its user first, or keep it.

    Keyed on the server's ``user_options["profile"]``; servers without one, or of a profile with no policy, get
    ``default`` — unless the caller resolved the policy itself (``policy`` and ``label``). ``activity``: what the
    activity sources saw (busy kernels, GPU use); ``warned``: the warning this server was given, if any;
    ``budget``: its usage budgets (None: not asked, or they could not be read — then nobody is culled for a budget,
    and a budget warning waits). A used-up budget culls like ``max_age``, whatever the policy (``never`` and the
    server kinds gate idleness only), ``warn_before`` after its warning, unless the budget frees up meanwhile.
    Extra keyword arguments are ignored, so callers may pass more context later.
    """
    if policy is None:
        label, policy = policy_for(server, policies, default)
    label = label or "default policy"
    if server.get("pending"):
        return Decision(False, f"pending {server['pending']}")
    if not server.get("ready", bool(server.get("url"))):
        return Decision(False, "not ready")
    activity = activity or Activity()
    age = _ago(now, server.get("started"))
    inactive = _first(_ago(now, server.get("last_activity")), age)
    by_gpu = policy.gpu_idle_below is not None and activity.gpu_idle_for is not None
    if by_gpu:  # GPU use, not the browser, says whether the server is in use
        inactive = timedelta(seconds=activity.gpu_idle_for)
        if age is not None:
            inactive = min(inactive, age)
    before_busy = inactive
    busy = policy.spare_busy_kernels and bool(activity.busy_kernels)
    if busy:  # a running computation is activity (up to max_age)
        inactive = timedelta(0)
    kind_allowed = cull_named_servers if server.get("name", "") else cull_default_servers
    idle_judged = not policy.never and kind_allowed and inactive is not None
    secs = inactive.total_seconds() if inactive is not None else 0.0
    idle_due = idle_judged and secs >= policy.timeout
    age_due = bool(policy.max_age) and age is not None and age.total_seconds() >= policy.max_age
    gpu_note = f"GPU under {policy.gpu_idle_below:g} % for" if by_gpu else "inactive for"
    busy_note = f", {activity.busy_kernels} busy kernel(s)" if busy else ""
    budget_due = budget is not None and budget.used_up
    if warned is not None and warned.kind == "idle" and (not idle_judged or secs < (now - warned.at).total_seconds()):
        warned = None  # activity after the warning cancels it
    if warned is not None and warned.kind == "budget" and budget is not None and not budget.used_up:
        warned = None  # the budget freed up
    wb = policy.warn_before

    if idle_due or age_due or budget_due:
        unless = "unless active"
        if idle_due:
            why, kind = ("gpu_idle" if by_gpu else "idle"), "idle"
            reason = f"{gpu_note} {format_td(inactive)} >= {format_td(policy.timeout)} ({label})"
        elif age_due:
            why = kind = "max_age"
            reason = (f"age {format_td(age)} >= max_age {format_td(policy.max_age)} "
                      f"(inactive for {format_td(inactive)}{busy_note}, {label})")
        else:
            why = kind = "budget"
            reason, unless = f"budget used up: {budget.text} ({label})", "unless the budget frees up"
        if wb:
            if warned is None:
                return Decision(False, f"warn: {reason}; culled in {format_td(wb)} {unless}", "warn", why)
            waited = now - warned.at
            if waited.total_seconds() < wb:
                return Decision(False, f"warned {format_td(waited)} ago: {reason}; culled at "
                                       f"{(warned.at + timedelta(seconds=wb)).isoformat(timespec='seconds')}",
                                "wait", why)
            reason += f", warned {format_td(waited)} ago"
        return Decision(True, reason, "cull", why)

    if wb and warned is None:  # not due yet: warn when the cull is less than warn_before away
        if idle_judged and secs >= policy.timeout - wb:
            left = policy.timeout - secs
            return Decision(False, f"warn: {gpu_note} {format_td(inactive)}, culled in {format_td(max(left, wb))} "
                                   f"unless active ({label})", "warn", "gpu_idle" if by_gpu else "idle")
        if policy.max_age and age is not None and age.total_seconds() >= policy.max_age - wb:
            return Decision(False, f"warn: age {format_td(age)}, culled at max_age {format_td(policy.max_age)} in "
                                   f"{format_td(max(policy.max_age - age.total_seconds(), wb))} ({label})",
                            "warn", "max_age")
    if warned is not None:
        if warned.kind == "budget":  # still warned: its budget could not be read this time
            return Decision(False, f"warned {format_td(now - warned.at)} ago for a used-up budget, which cannot be "
                                   f"read now: not culled for it ({label})", "wait", "budget")
        return Decision(False, f"warned {format_td(now - warned.at)} ago, not due yet ({label})", "wait",
                        "max_age" if warned.kind == "max_age" else ("gpu_idle" if by_gpu else "idle"))
    if busy and not policy.never and before_busy is not None and before_busy.total_seconds() >= policy.timeout:
        return Decision(False, f"spared: {activity.busy_kernels} busy kernel(s), {gpu_note} "
                               f"{format_td(before_busy)} >= {format_td(policy.timeout)} ({label})", "keep", "busy")
    if not kind_allowed:
        what = "named servers" if server.get("name", "") else "default servers"
        return Decision(False, f"{what} are not culled for inactivity ({label})")
    if policy.never:
        return Decision(False, f"never culled for inactivity ({label}), age {format_td(age)}")
    return Decision(False, f"{gpu_note} {format_td(inactive)}{busy_note} < {format_td(policy.timeout)} ({label})")


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


__all__ = ["CullPolicy", "Decision", "Activity", "BudgetState", "Warned", "CullConfigError", "policies_from_config",
           "policy_from_mapping", "POLICY_KEYS", "is_slug", "cull_decision", "resolve_policy", "most_lenient",
           "user_cull_decision", "combine_for_user", "idle_culler_hook", "profile_of", "policy_for", "parse_date", "parse_duration", "format_td", "PROFILE_KEY"]
