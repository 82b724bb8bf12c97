"""The page's server rows: the hub's user models joined with their pods (pure).

A row comes from the hub (the server exists there) and is matched to a pod by KubeSpawner's annotations
(``hub.jupyter.org/username``, ``hub.jupyter.org/servername``), never by a pod name taken from a request.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ...labels import PROFILE_LABEL
from .kube import SERVERNAME_ANNOTATION, USERNAME_ANNOTATION
from .usage import UsageInterval


def parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def gpus_of(pod: dict) -> float:
    """GPUs a pod holds: the sum of its containers' ``*/gpu`` limits."""
    total = 0.0
    for c in ((pod.get("spec") or {}).get("containers") or []):
        for key, value in (((c.get("resources") or {}).get("limits")) or {}).items():
            if key.endswith("/gpu"):
                try:
                    total += float(value)
                except (TypeError, ValueError):
                    pass
    return total


def pod_index(pods: list[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for pod in pods:
        ann = (pod.get("metadata") or {}).get("annotations") or {}
        if USERNAME_ANNOTATION in ann:
            out[(ann[USERNAME_ANNOTATION], ann.get(SERVERNAME_ANNOTATION, ""))] = pod
    return out


def server_rows(users: list[dict], pods: list[dict] | None, culler: dict | None = None) -> list[dict]:
    """One row per server of ``users`` (hub user models), with its pod's facts when ``pods`` is known and the
    culler's note (:func:`culler_notes`) when ``culler`` is."""
    by_key = pod_index(pods or [])
    rows = []
    for user in users:
        for name, server in sorted((user.get("servers") or {}).items()):
            pod = by_key.get((user["name"], name)) or {}
            meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
            profile = (meta.get("labels") or {}).get(PROFILE_LABEL) or \
                str(((server.get("user_options") or {}).get("profile")) or "")
            rows.append({
                "user": user["name"], "server": name, "groups": tuple(sorted(user.get("groups") or ())),
                "profile": profile, "node": spec.get("nodeName") or "",
                "phase": status.get("phase") or ("pending" if server.get("pending") else ""),
                "started": parse_time(server.get("started")), "last_activity": parse_time(server.get("last_activity")),
                "ready": bool(server.get("ready")), "pending": server.get("pending"),
                "pod": meta.get("name") or "", "containers": [c.get("name") for c in spec.get("containers") or []],
                "gpus": gpus_of(pod), "culler": (culler or {}).get((user["name"], name), ""),
            })
    return rows


def culler_notes(state: dict) -> dict[tuple[str, str], str]:
    """``(user, server) -> text`` for the Culler column, from the culler's ``/state``
    (:func:`hubfleet.services.culler.state.snapshot`): the warning running now (when, why, from when the server
    may be stopped, the reason) and the server's last cull."""
    notes: dict[tuple[str, str], list[str]] = {}
    for w in state.get("warned") or []:
        notes.setdefault((w["user"], w["server"]), []).append(
            f"warned {_hm(w['warned_at'])} ({w['why']}), stopped after {_hm(w['cull_after'])}: {w['reason']}")
    for c in state.get("culled") or []:
        notes.setdefault((c["user"], c["server"]), []).append(
            f"culled {_hm(c['culled_at'])} ({c['why']}): {c['reason']}")
    return {key: "; ".join(parts) for key, parts in notes.items()}


def _hm(stamp: str) -> str:
    t = parse_time(stamp)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else str(stamp)


def intervals(rows: list[dict]) -> list[UsageInterval]:
    return [UsageInterval(r["user"], r["server"], r["profile"], r["groups"], r["gpus"], r["started"], None)
            for r in rows if r["started"] is not None]
