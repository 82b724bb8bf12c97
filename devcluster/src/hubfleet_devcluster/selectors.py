"""Label and field selectors as kube-apiserver parses and applies them. Pure."""

from __future__ import annotations

import re
from typing import Any

from .status import APIError


def parse_selector(text: str | None, *, kind: str) -> list[tuple[str, str, Any]]:
    """Parse a label or field selector into (key, op, value) requirements.

    Supports equality-based requirements (``a=b``, ``a==b``, ``a!=b``), existence (``a``, ``!a``) and, for labels,
    set-based ``a in (x,y)`` / ``a notin (x,y)``. Anything else is a 400, as on a real API server."""
    reqs: list[tuple[str, str, Any]] = []
    if not text:
        return reqs
    # split on commas that are not inside parentheses
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in (p.strip() for p in parts):
        if not part:
            continue
        m = re.match(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\((.*)\)$", part)
        if m and kind == "label":
            reqs.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}))
            continue
        m = re.match(r"^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./:-]*)$", part)
        if m:
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
            continue
        m = re.match(r"^(!?)([A-Za-z0-9_./-]+)$", part)
        if m and kind == "label":
            reqs.append((m.group(2), "!" if m.group(1) else "exists", None))
            continue
        raise APIError(400, "BadRequest", f"unable to parse requirement: {part!r} in {kind} selector {text!r}")
    return reqs


def _field_value(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def matches(obj: dict, labels: list, fields: list) -> bool:
    obj_labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, op, value in labels:
        have = obj_labels.get(key)
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "exists" and have is None:
            return False
        if op == "!" and have is not None:
            return False
        if op == "in" and have not in value:
            return False
        if op == "notin" and have in value:
            return False
    for key, op, value in fields:
        have = _field_value(obj, key)
        if (op == "=") != (have == value):
            return False
    return True
