"""What the culler knows of each server, as JSON for the admin page (``GET /state`` on the culler's HTTP port, the
port of ``/metrics``; :mod:`.metrics` serves it to holders of ``access:services!service=<the culler>``).

Pure: built from the sweeper's memory — the warnings given and not yet over (idle, max_age, budget) and the last
cull of each server (a bounded number, oldest forgotten first). Both live in the culler's memory only: after a
restart the list starts empty, and warnings are given anew (the notice period starts again, so no server is culled
sooner than it was told).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime

CULLS_KEPT = 10_000


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def remember_cull(culled: OrderedDict, key: tuple[str, str], *, at: datetime, why: str, reason: str,
                  keep: int = CULLS_KEPT) -> None:
    """Record the cull of server ``key`` (user, server name) in ``culled``, keeping the ``keep`` latest."""
    culled.pop(key, None)
    culled[key] = {"culled_at": _iso(at), "why": why, "reason": reason}
    while len(culled) > keep:
        culled.popitem(last=False)


def snapshot(warned: Mapping, culled: Mapping) -> dict:
    """``{"warned": [{"user", "server", "warned_at", "cull_after", "why", "reason"}], "culled": [{"user", "server",
    "culled_at", "why", "reason"}]}`` from the sweeper's ``warned`` (``(user, server) -> WarnState``) and
    ``culled``."""
    return {
        "warned": [{"user": user, "server": server, "warned_at": _iso(ws.warned.at),
                    "cull_after": ws.notice.cull_after, "why": ws.notice.why, "reason": ws.notice.reason}
                   for (user, server), ws in warned.items()],
        "culled": [{"user": user, "server": server, **c} for (user, server), c in culled.items()],
    }


__all__ = ["CULLS_KEPT", "remember_cull", "snapshot"]
