"""Quota accounting: group, profile, global and per-user limits, all counted the same way (live pods plus pending
reservations, each pod once)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .model import Quota, RunningServer


def applicable_quotas(quotas: Iterable[Quota], profile: str, groups: Iterable[str]) -> list[Quota]:
    groups = groups if isinstance(groups, frozenset) else frozenset(groups)
    return [q for q in quotas if q.applies_to(profile, groups)]


class QuotaCounts:
    """Running servers counted once per key, indexed so each quota check is O(1)."""

    __slots__ = ("total", "by_profile", "by_group", "by_group_profile", "by_user", "by_user_profile")

    def __init__(self, running: Iterable[RunningServer] = ()):
        self.total = 0
        self.by_profile: Counter = Counter()
        self.by_group: Counter = Counter()
        self.by_group_profile: Counter = Counter()
        self.by_user: Counter = Counter()
        self.by_user_profile: Counter = Counter()
        seen: set[str] = set()
        for server in running:
            if server.key in seen:
                continue
            seen.add(server.key)
            self.total += 1
            self.by_profile[server.profile] += 1
            self.by_user[server.user] += 1
            self.by_user_profile[server.user, server.profile] += 1
            for group in server.groups:
                self.by_group[group] += 1
                self.by_group_profile[group, server.profile] += 1

    def count(self, quota: Quota, user: str = "") -> int:
        if quota.per_user:
            if quota.profile is None:
                return self.by_user[user]
            return self.by_user_profile[user, quota.profile]
        if quota.group is None:
            return self.by_profile[quota.profile] if quota.profile is not None else self.total
        if quota.profile is None:
            return self.by_group[quota.group]
        return self.by_group_profile[quota.group, quota.profile]


def quota_violation(
    quotas: Iterable[Quota], running: QuotaCounts | Iterable[RunningServer], *, profile: str, groups: Iterable[str],
    user: str = "",
) -> str | None:
    """The message for the first quota that one more ``profile`` server for ``user`` (a member of ``groups``) would
    exceed, or None if it fits."""
    counts = running if isinstance(running, QuotaCounts) else QuotaCounts(running)
    for quota in applicable_quotas(quotas, profile, groups):
        used = counts.count(quota, user)
        if used >= quota.max_servers:
            whose = "you have" if quota.per_user else ""
            running_text = f"{whose} {used} running".strip()
            return f"Quota full: {quota.describe()} ({running_text}). Stop one or pick another profile."
    return None
