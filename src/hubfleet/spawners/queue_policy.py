"""The decisions of a profile's spawn queue and of usage budgets, as pure functions of plain records and a clock.

No database, no HTTP, no tornado: the spawner keeps the queue and the usage records, and asks here

- who is admitted next when a slot of a full profile frees (:func:`admission_order`, :func:`next_admitted`): fair
  share (the waiting request whose group has used the least of its weighted share over the window, FIFO inside a
  group) or plain FIFO; one queued request per user and profile (:func:`join`);
- each waiting request's place in line (:func:`positions`, the order of admission);
- what a waiting user is shown (:func:`shown_wait`): the position, how many wait, when a slot frees *at the latest*
  (from the running servers' ``max_age`` deadlines, :func:`max_age_deadlines`) and an expected wait (from their
  expected ends);
- when an admission that waits for its user to start passes on (:func:`claim_expired`);
- whether a budget of use over a rolling window allows a spawn, and when enough frees up (:func:`budget_check`,
  :func:`budget_message`).

Times are seconds on one clock (e.g. the epoch); amounts are per second of use (a 2-GPU server uses 2 GPU-seconds
per second). The churn simulation (``bench/sim_gpu.py``) runs these very functions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from ..errors import HubfleetError

FAIR_SHARE, FIFO = "fair_share", "fifo"
ORDERS = (FAIR_SHARE, FIFO)


class QueuePolicyError(HubfleetError, ValueError):
    """A queue or budget setting that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class Request:
    """A queued spawn: ``group`` is the group its use is accounted to ("" for none; see :func:`accounting_group`),
    ``seq`` the order of joining (ties of ``joined_at``)."""

    user: str
    profile: str
    group: str
    joined_at: float
    seq: int = 0


@dataclass(frozen=True)
class Use:
    """One server's use: from ``start`` to ``end`` (None: still running), ``amount`` per second (GPUs or CPUs)."""

    user: str
    group: str
    start: float
    end: float | None = None
    amount: float = 1.0


@dataclass(frozen=True)
class ShownWait:
    """What a waiting user sees: 1-based ``position`` among ``waiting``; ``at_latest`` (absolute time) when their
    slot frees at the latest if nobody overtakes (None: no ``max_age`` bounds it); ``expected`` (absolute time)."""

    position: int
    waiting: int
    at_latest: float | None
    expected: float | None


@dataclass(frozen=True)
class BudgetCheck:
    """``used`` of ``budget`` (amount-seconds) within the window at the check; ``ok``: the spawn may go;
    ``frees_at``: when the use within the window has dropped far enough (None when ok); ``frees``: by how much."""

    used: float
    budget: float
    ok: bool
    frees_at: float | None = None
    frees: float = 0.0


def _check_window(window: float) -> None:
    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise QueuePolicyError(f"window: expected a duration > 0 in seconds, got {window!r}")


def used_in_window(*, uses: Iterable[Use], now: float, window: float, user: str | None = None,
                   group: str | None = None) -> float:
    """Amount-seconds of `uses` (of `user` / of `group`, when given) within ``[now - window, now]``; a running use
    counts up to `now`."""
    _check_window(window)
    lo, total = now - window, 0.0
    for u in uses:
        if (user is not None and u.user != user) or (group is not None and u.group != group):
            continue
        end = now if u.end is None else min(u.end, now)
        total += u.amount * max(0.0, end - max(u.start, lo))
    return total


def group_usage(*, uses: Iterable[Use], now: float, window: float) -> dict[str, float]:
    """Amount-seconds per group within ``[now - window, now]``."""
    _check_window(window)
    out: dict[str, float] = {}
    for u in uses:
        out[u.group] = out.get(u.group, 0.0) + used_in_window(uses=(u,), now=now, window=window)
    return out


def accounting_group(*, groups: Iterable[str], weights: Mapping[str, float]) -> str:
    """The group a user's use is accounted to: the first (by name) of their groups that has a weight, else the
    first of their groups, else ""."""
    ordered = sorted(groups)
    return next((g for g in ordered if g in weights), ordered[0] if ordered else "")


def check_weights(weights: Mapping[str, float], *, field: str = "weights", known_groups=None) -> dict[str, float]:
    """Validated group weights (each > 0; with `known_groups`, each group must be one of them)."""
    out = {}
    for group, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise QueuePolicyError(f"{field}.{group}: expected a weight > 0, got {w!r}")
        if known_groups is not None and group not in known_groups:
            raise QueuePolicyError(f"{field}.{group}: unknown group {group!r}; the hub's groups are: "
                                   f"{', '.join(sorted(known_groups)) or '(none)'}")
        out[group] = float(w)
    return out


def join(*, queue: Sequence[Request], request: Request) -> tuple[tuple[Request, ...], Request]:
    """The queue with `request` at its end, and the request that holds the place: joining twice (same user and
    profile) keeps the first request and its place."""
    for queued in queue:
        if queued.user == request.user and queued.profile == request.profile:
            return tuple(queue), queued
    return (*queue, request), request


def leave(*, queue: Sequence[Request], user: str, profile: str) -> tuple[Request, ...]:
    """The queue without `user`'s request for `profile`."""
    return tuple(q for q in queue if not (q.user == user and q.profile == profile))


def admission_order(*, queue: Sequence[Request], usage: Mapping[str, float], weights: Mapping[str, float],
                    order: str = FAIR_SHARE, charge: float = 0.0) -> list[Request]:
    """The order in which `queue` would be admitted.

    ``fifo``: by joining. ``fair_share``: repeatedly the oldest request of the group with the least ``usage /
    weight`` (usage in amount-seconds over the window; weight 1 for a group without one), FIFO inside a group; each
    admission adds `charge` (the use one admission is expected to bring) to its group, so that the positions
    after the first alternate between groups as admissions would.
    """
    if order not in ORDERS:
        raise QueuePolicyError(f"order: expected one of {', '.join(ORDERS)}, got {order!r}")
    fifo = sorted(queue, key=lambda q: (q.joined_at, q.seq))
    if order == FIFO:
        return fifo
    by_group: dict[str, list[Request]] = {}
    for q in fifo:
        by_group.setdefault(q.group, []).append(q)
    used = {g: float(usage.get(g, 0.0)) for g in by_group}
    heads = {g: 0 for g in by_group}
    out = []
    while len(out) < len(fifo):
        group = min((g for g in by_group if heads[g] < len(by_group[g])),
                    key=lambda g: (used[g] / weights.get(g, 1.0), by_group[g][heads[g]].joined_at,
                                   by_group[g][heads[g]].seq))
        out.append(by_group[group][heads[group]])
        heads[group] += 1
        used[group] += charge
    return out


def positions(*, queue: Sequence[Request], usage: Mapping[str, float], weights: Mapping[str, float],
              order: str = FAIR_SHARE) -> dict[int, int]:
    """``seq -> place`` (1-based) of each waiting request of one profile's `queue` in the order of admission
    (:func:`admission_order`): what the user, the 429 message and the admin page show."""
    ordered = admission_order(queue=queue, usage=usage, weights=weights, order=order)
    return {q.seq: n for n, q in enumerate(ordered, start=1)}


def next_admitted(*, queue: Sequence[Request], usage: Mapping[str, float], weights: Mapping[str, float],
                  order: str = FAIR_SHARE) -> Request | None:
    """The request admitted when a slot frees (see :func:`admission_order`), or None for an empty queue."""
    ordered = admission_order(queue=queue, usage=usage, weights=weights, order=order)
    return ordered[0] if ordered else None


def slot_frees_at(*, now: float, position: int, ends: Iterable[float], cycle: float | None) -> float | None:
    """When the `position`-th (1-based) slot frees, given the running servers' `ends` (one per slot): each slot,
    once it frees, is taken by the next in line and frees again `cycle` seconds later. None without ends, or past
    the ends without a cycle."""
    heap = [max(now, e) for e in ends]
    heapq.heapify(heap)
    if position < 1:
        raise QueuePolicyError(f"position: expected >= 1, got {position!r}")
    for _ in range(position - 1):
        if not heap:
            return None
        t = heapq.heappop(heap)
        if cycle:
            heapq.heappush(heap, t + cycle)
    return heap[0] if heap else None


def shown_wait(*, now: float, position: int, waiting: int, deadlines: Iterable[float], max_age: float | None,
               expected_ends: Iterable[float], expected_session: float | None, claim_window: float = 0.0) -> ShownWait:
    """What a user at `position` of `waiting` is shown: at the latest from the running servers' ``max_age``
    `deadlines` (see :func:`max_age_deadlines`; none when the profile's culler policy has no max_age), expected from
    their `expected_ends` (e.g. ``scheduler_plugin.scoring.Lifetimes.expected_end``) with `expected_session` (the
    profile's mean session length) for the slots that free again. A slot that frees and is taken again frees at the
    latest `claim_window` (the time an admitted user has to start) plus ``max_age`` later."""
    deadlines = list(deadlines) if max_age else []
    cycle = (max_age + claim_window) if max_age else None
    return ShownWait(position, waiting,
                     slot_frees_at(now=now, position=position, ends=deadlines, cycle=cycle) if deadlines else None,
                     slot_frees_at(now=now, position=position, ends=expected_ends, cycle=expected_session))


def max_age_deadlines(*, started: Iterable[float], admitted: Iterable[float], max_age: float | None,
                      claim_window: float = 0.0) -> list[float]:
    """When each slot of a profile frees at the latest under the culler's ``max_age``: ``started + max_age`` of each
    running server, and ``admitted_at + claim_window + max_age`` of each admission whose server has not started yet
    (it starts within the claim window, or at once without one). Empty without a ``max_age``."""
    if not max_age:
        return []
    return [s + max_age for s in started] + [a + claim_window + max_age for a in admitted]


def claim_expired(*, admitted_at: float | None, claim_window: float, now: float) -> bool:
    """Whether an admission with a claim window has gone unclaimed past its window (False without a window: an
    admission started for its user does not expire)."""
    return bool(claim_window) and admitted_at is not None and now >= admitted_at + claim_window


def budget_check(*, uses: Iterable[Use], now: float, window: float, budget: float, need: float = 0.0,
                 user: str | None = None, group: str | None = None) -> BudgetCheck:
    """Whether `user`'s (or `group`'s) use within the rolling `window` leaves room: ok when ``used + need <=
    budget`` and ``used < budget``. Otherwise ``frees_at`` is the earliest time at which it does, counting running
    uses as if they stopped now (a later start adds to the use again)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise QueuePolicyError(f"budget: expected an amount > 0, got {budget!r}")
    mine = [replace(u, end=now if u.end is None else min(u.end, now)) for u in uses
            if (user is None or u.user == user) and (group is None or u.group == group)]
    used = used_in_window(uses=mine, now=now, window=window)
    target = budget - need

    def fits(value: float) -> bool:
        return value <= target + 1e-9 and value < budget - 1e-9

    if fits(used):
        return BudgetCheck(used, budget, True)
    if target <= 0 and need > 0:
        return BudgetCheck(used, budget, False)  # never fits: the need alone is over the budget
    # the use within the window only drops from now on, linearly between the times a use's start or end leaves it
    points = sorted({t for u in mine for t in (u.start + window, u.end + window) if t > now})
    prev, prev_used = now, used
    for t in points:
        at = used_in_window(uses=mine, now=t, window=window)
        if fits(at):
            goal = min(target, budget - 1e-6)
            slope = (prev_used - at) / (t - prev) if t > prev else 0.0
            when = t if slope <= 0 else min(t, prev + (prev_used - goal) / slope)
            return BudgetCheck(used, budget, False, when, used - used_in_window(uses=mine, now=when, window=window))
        prev, prev_used = t, at
    return BudgetCheck(used, budget, False)


def budget_message(check: BudgetCheck, *, unit: str = "GPU-hours", per: float = 3600.0, window_text: str = "7 days",
                   whose: str = "you have") -> str:
    """The refusal text: ``you have used 19.6 of 20 GPU-hours in the last 7 days; 1.2 GPU-hours free up on Tue
    10:00 UTC``."""
    text = f"{whose} used {check.used / per:.1f} of {check.budget / per:g} {unit} in the last {window_text}"
    if check.frees_at is not None:
        when = datetime.fromtimestamp(check.frees_at, timezone.utc).strftime("%a %H:%M UTC")
        text += f"; {check.frees / per:.1f} {unit} free up on {when}"
    return text


__all__ = ["Request", "Use", "ShownWait", "BudgetCheck", "QueuePolicyError", "FAIR_SHARE", "FIFO", "ORDERS",
           "used_in_window", "group_usage", "accounting_group", "check_weights", "join", "leave", "admission_order",
           "positions", "next_admitted", "slot_frees_at", "shown_wait", "max_age_deadlines", "claim_expired",
           "budget_check", "budget_message"]
