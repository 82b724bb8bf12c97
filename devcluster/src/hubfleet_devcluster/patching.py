"""The three PATCH formats kube-apiserver accepts: JSON merge patch (RFC 7386), strategic merge patch (lists merged
by the patch-merge keys the Kubernetes schemas declare: containers and env by name, ports by containerPort, volumes
by name, ...) and JSON patch (RFC 6902). Pure: each returns a new value."""

from __future__ import annotations

import copy
from typing import Any

from .status import APIError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``application/merge-patch+json`` means): maps merge, ``null`` deletes,
    everything else replaces. Returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(target: Any, patch: Any, schema: dict) -> Any:
    """Kubernetes' strategic merge patch of `target` with `patch`, the merge keys taken from `schema`.

    Directives understood: ``$patch: replace|delete|merge``, ``$retainKeys``, ``$setElementOrder/<list>`` and
    ``$deleteFromPrimitiveList/<list>``; a list without a merge strategy is replaced, as by kube-apiserver."""
    from .schemas import items_schema, property_schema, resolve

    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    schema = resolve(schema)
    orders: dict[str, list] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [x for x in out.get(name) or [] if x not in (value or [])]
            continue
        if value is None:
            out.pop(key, None)
            continue
        sub = resolve(property_schema(schema, key) or {})
        if isinstance(value, list) and "merge" in (sub.get("x-kubernetes-patch-strategy") or "").split(","):
            out[key] = _merge_list(out.get(key) or [], value, sub.get("x-kubernetes-patch-merge-key"),
                                   items_schema(sub))
        elif isinstance(value, dict):
            if isinstance(value, dict) and value.get("$patch") == "delete":
                out.pop(key, None)
                continue
            out[key] = strategic_merge_patch(out.get(key), value, sub)
        else:
            out[key] = copy.deepcopy(value)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        out = {k: v for k, v in out.items() if k in keep}
    for name, order in orders.items():
        if isinstance(out.get(name), list):
            out[name] = _ordered(out[name], order, resolve(property_schema(schema, name) or {})
                                 .get("x-kubernetes-patch-merge-key"))
    return out


def _merge_list(current: list, patch: list, key: str | None, item_schema: dict) -> list:
    out = copy.deepcopy(current)
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    if key is None:  # a set of primitives: union, keeping order
        for p in patch:
            if p not in out:
                out.append(copy.deepcopy(p))
        return out
    for p in patch:
        if not isinstance(p, dict):
            raise APIError(400, "BadRequest", f"unable to find api field in struct for the merge key {key!r}: "
                           f"expected a map in the list, got {p!r}")
        index = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == p.get(key)), None)
        if p.get("$patch") == "delete":
            out = [c for c in out if not (isinstance(c, dict) and c.get(key) == p.get(key))]
        elif index is None:
            out.append({k: copy.deepcopy(v) for k, v in p.items() if k != "$patch"})
        else:
            out[index] = strategic_merge_patch(out[index], p, item_schema)
    return out


def _ordered(items: list, order: list, key: str | None) -> list:
    ident = (lambda x: x.get(key) if isinstance(x, dict) else x) if key else (lambda x: x)
    wanted = [ident(o) for o in order]
    ranked = [i for i in items if ident(i) in wanted]
    ranked.sort(key=lambda i: wanted.index(ident(i)))
    rest = iter(ranked)
    return [next(rest) if ident(i) in wanted else i for i in items]


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                       f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for p in parts:
        if isinstance(doc, dict) and p in doc:
            doc = doc[p]
        elif isinstance(doc, list) and p.isdigit() and int(p) < len(doc):
            doc = doc[int(p)]
        else:
            raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                           f"doc is missing path: {path!r}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise APIError(400, "BadRequest", "the body of a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
            raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                           f"unexpected kind of operation {op!r}")
        kind, path = op["op"], op.get("path", "")
        parts = _pointer(path)
        if kind in ("move", "copy"):
            src_parts = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src_parts, op.get("from", "")))
            if kind == "move":
                doc = _remove(doc, src_parts, op.get("from", ""))
            doc = _add(doc, parts, value, path)
        elif kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                               f"testing value {path} failed")
        elif kind == "remove":
            doc = _remove(doc, parts, path)
        elif kind == "replace":
            _walk(doc, parts, path)
            doc = _add(_remove(doc, parts, path), parts, copy.deepcopy(op.get("value")), path)
        else:
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), path)
    return doc


def _add(doc: Any, parts: list[str], value: Any, path: str) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                           f"index out of range in {path!r}")
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                       f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1], path)
    _walk(parent, parts[-1:], path)
    if isinstance(parent, list):
        parent.pop(int(parts[-1]))
    else:
        del parent[parts[-1]]
    return doc
