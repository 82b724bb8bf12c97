"""Usage budgets over a rolling window (GPU-hours, CPU-hours), per user or per group, checked at every spawn (an
admission from the queue is a spawn too) from the usage records in the hub's database (:mod:`.queue_store`).

The decision is :func:`.queue_policy.budget_check`; this module parses the configuration, reads the records and
words the refusal. When the database cannot be reached, a spawn that a budget applies to is refused (fail closed);
spawns no budget applies to never touch it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from traitlets import List, Dict, validate
from traitlets.config import LoggingConfigurable

from ..db import DatabaseUnavailable
from . import queue_policy, queue_store
from .profiles import ProfileConfigError, ProfileError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
RESOURCES = {"gpu_hours": ("gpus", "GPU-hours"), "cpu_hours": ("cpu", "CPU-hours")}


class BudgetExceeded(ProfileError):
    status = 403
    reason = "budget"


class BudgetUnavailable(ProfileError):
    status = 503
    reason = "unavailable"


@dataclass(frozen=True)
class Budget:
    """``hours`` of ``resource`` (``gpu_hours`` or ``cpu_hours``) within ``window`` seconds, for each user
    (``per="user"``, of ``group`` only when given) or for ``group`` as a whole (``per="group"``)."""

    resource: str
    hours: float
    window: float
    window_text: str
    per: str = "user"
    group: str | None = None
    profile: str | None = None

    def applies(self, profile: str, groups, gpus: float) -> bool:
        if self.profile is not None and self.profile != profile:
            return False
        if self.group is not None and self.group not in groups:
            return False
        return gpus > 0 if self.resource == "gpu_hours" else True


def parse_window(text, key: str) -> tuple[float, str]:
    """``"7d"`` -> (604800, "7 days"); a clear error naming ``key`` otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{key}: {text!r} is not a window; write e.g. \"7d\", \"24h\", \"2w\"")
    n, unit = float(m.group(1)), m.group(2)
    return n * _UNITS[unit], f"{n:g} {_UNIT_WORDS[unit]}{'' if n == 1 else 's'}"


def parse_budgets(specs, *, key: str = "ProfileSpawner.budgets", profiles=None) -> list[Budget]:
    """Budgets from ``[{"gpu_hours": 20, "window": "7d", "per": "user", "group": ..., "profile": ...}]``."""
    out = []
    for i, spec in enumerate(specs):
        where = f"{key}[{i}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: expected a mapping, got {spec!r}")
        unknown = set(spec) - {"gpu_hours", "cpu_hours", "window", "per", "group", "profile"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: gpu_hours, cpu_hours, "
                             "window, per, group, profile")
        resources = [r for r in RESOURCES if r in spec]
        if len(resources) != 1:
            raise ValueError(f"{where}: give exactly one of gpu_hours, cpu_hours")
        hours = spec[resources[0]]
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0:
            raise ValueError(f"{where}.{resources[0]}: expected an amount > 0, got {hours!r}")
        window, text = parse_window(spec.get("window", "7d"), f"{where}.window")
        per = spec.get("per", "user")
        if per not in ("user", "group"):
            raise ValueError(f"{where}.per: expected 'user' or 'group', got {per!r}")
        if per == "group" and not spec.get("group"):
            raise ValueError(f"{where}.group: a per-group budget names its group")
        profile = spec.get("profile")
        if profile is not None and profiles is not None and profile not in profiles:
            raise ValueError(f"{where}.profile: unknown profile {profile!r}; declared: {', '.join(sorted(profiles))}")
        out.append(Budget(resources[0], float(hours), window, text, per, spec.get("group"), profile))
    return out


class UsageBudgets(LoggingConfigurable):
    """Mixin for ProfileSpawner (needs ``_queue_call`` and ``_refusal``)."""

    budgets = List(Dict(), config=True, help="""
        Usage budgets over a rolling window, checked at every spawn (and so at every admission from a queue):
        ``{"gpu_hours": 20, "window": "7d"}`` (each user may use 20 GPU-hours per 7 days; only spawns of profiles
        with GPUs are checked), ``{"cpu_hours": 500, "window": "7d", "per": "group", "group": "physics"}`` (the
        group's members together), ``"group"`` on a per-user budget limits it to that group's members,
        ``"profile"`` to one profile. Windows: a number and s, m, h, d or w. A spawn is refused when the use
        within the window has reached the budget, with a message naming the use, the budget and when enough
        frees up. Use is counted from the usage records (requested GPUs and CPU cores times the time run).""")

    @validate("budgets")
    def _check_budgets(self, proposal):
        parse_budgets(proposal.value)
        return proposal.value

    def _budget_list(self, catalog=None) -> list[Budget]:
        return parse_budgets(self.budgets, profiles={p.slug for p in catalog.profiles} if catalog else None)

    async def _budget_checks(self, budgets, *, user: str, groups) -> list[tuple[Budget, queue_policy.BudgetCheck]]:
        now = time.time()
        out = []
        for b in budgets:
            amount = RESOURCES[b.resource][0]
            records = await self._queue_call(queue_store.uses_of, since=now - b.window, amount=amount,
                                             user=None if b.per == "group" else user,
                                             group=b.group if b.per == "group" else None,
                                             profile=b.profile)
            check = queue_policy.budget_check(uses=records, now=now, window=b.window, budget=b.hours * 3600)
            if not check.ok:  # when does one hour of one GPU (CPU) fit again: what the message names
                check = queue_policy.budget_check(uses=records, now=now, window=b.window, budget=b.hours * 3600,
                                                  need=min(3600.0, b.hours * 3600 / 2))
                check = replace(check, ok=False)
            out.append((b, check))
        return out

    async def _budget_gate(self, choice) -> None:
        """Refuse the spawn when a budget that applies is used up (or cannot be read: fail closed)."""
        if not self.budgets:
            return
        profile = choice.profile
        gpus = profile.gpu.count if profile.gpu is not None else 0
        try:
            budgets = self._budget_list(await self.load_catalog())
        except ValueError as e:
            raise self._refusal(ProfileConfigError(str(e), fix="correct ProfileSpawner.budgets"), profile.slug) from e
        budgets = [b for b in budgets if b.applies(profile.slug, choice.groups, gpus)]
        if not budgets:
            return
        try:
            checks = await self._budget_checks(budgets, user=choice.user, groups=choice.groups)
        except DatabaseUnavailable as e:
            self.log.error("user:%s budgets of %s: %s", choice.user, profile.slug, e)
            self._refused = True
            raise self._refusal(BudgetUnavailable(
                f"Spawns of '{profile.slug}' are unavailable right now: the usage budgets cannot be checked (the "
                "hub's database cannot be reached). Try again in a minute."), profile.slug) from e
        for b, check in checks:
            if not check.ok:
                self._refused = True
                raise self._refusal(BudgetExceeded(budget_text(b, check, refusal=True)), profile.slug)

    async def budget_status(self, user: str, groups) -> list[dict]:
        """Each budget that applies to ``user`` (of any profile) with its use: for the spawn form and the API."""
        budgets = [b for b in self._budget_list() if b.group is None or b.group in groups]
        return [_status(b, c) for b, c in await self._budget_checks(budgets, user=user, groups=groups)]

    async def server_budget_status(self) -> list[dict]:
        """The budgets that apply to this spawner's running server (its profile, its user's groups now, as the spawn
        gate applies them) with their use, as :meth:`budget_status` gives them; ``ok`` False: used up. For the
        culler (``GET /hub/api/budgets``). Raises DatabaseUnavailable."""
        if not self.budgets:
            return []
        catalog = await self.load_catalog()
        slug = str((self.user_options or {}).get("profile") or "")
        profile = next((p for p in catalog.profiles if p.slug == slug), None)
        gpus = profile.gpu.count if profile is not None and profile.gpu is not None else 0
        name, groups, _ = self._identity()
        budgets = [b for b in self._budget_list(catalog) if b.applies(slug, groups, gpus)]
        return [_status(b, c) for b, c in await self._budget_checks(budgets, user=name, groups=groups)]


def _status(budget: Budget, check: queue_policy.BudgetCheck) -> dict:
    return {"resource": budget.resource, "per": budget.per, "group": budget.group, "profile": budget.profile,
            "used_hours": check.used / 3600, "budget_hours": budget.hours, "window": budget.window_text,
            "ok": check.ok, "frees_at": check.frees_at, "text": budget_text(budget, check)}


def budget_text(budget: Budget, check: queue_policy.BudgetCheck, *, refusal: bool = False) -> str:
    whose = f"group {budget.group} has" if budget.per == "group" else "you have"
    text = queue_policy.budget_message(check, unit=RESOURCES[budget.resource][1], window_text=budget.window_text,
                                       whose=whose)
    if budget.profile:
        text += f" (profile {budget.profile})"
    if refusal:
        return f"Budget used up: {text[0].upper()}{text[1:]}."
    return text
