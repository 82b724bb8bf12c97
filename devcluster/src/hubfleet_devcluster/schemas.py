"""The Kubernetes object schemas, from kubernetes-validate's copy of the official OpenAPI definitions (a kept source,
not a hand-written one): used to prune and report unknown fields (``fieldValidation``), to find the patch-merge keys
of a strategic merge patch and to serve ``/openapi/v2`` and ``/openapi/v3``. Pure but for reading that file once."""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

SCHEMA_VERSION = "v1.37.0-local"
_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict]:
    path = files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_VERSION / "_definitions.json"
    return json.loads(path.read_text())["$defs"]


def resolve(schema: dict | None) -> dict:
    """Follow `$ref`s (and a single-branch `allOf`) to the schema that describes a value."""
    seen = 0
    while isinstance(schema, dict) and seen < 20:
        seen += 1
        ref = schema.get("$ref")
        if ref:
            schema = definitions().get(ref.rsplit("/", 1)[-1], {})
            continue
        if len(schema.get("allOf") or ()) == 1:
            schema = schema["allOf"][0]
            continue
        break
    return schema if isinstance(schema, dict) else {}


def definition(name: str) -> dict:
    return definitions().get(name, {})


def property_schema(schema: dict, key: str) -> dict | None:
    """The schema of `key` in an object described by `schema`; None when the key is unknown there."""
    schema = resolve(schema)
    props = schema.get("properties")
    if props is not None and key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    if extra is True or props is None:
        return {}
    return None


def items_schema(schema: dict) -> dict:
    return resolve(schema).get("items") or {}


def json_types(schema: dict) -> set[str]:
    """The JSON types a schema allows (empty: anything)."""
    schema = resolve(schema)
    if "oneOf" in schema:
        out: set[str] = set()
        for s in schema["oneOf"]:
            out |= json_types(s)
        return out
    t = schema.get("type")
    if t is None:
        return set()
    return {x for x in ([t] if isinstance(t, str) else t) if x != "null"}


def prune_unknown(obj: Any, schema: dict, path: str = "") -> list[str]:
    """Remove the fields `schema` does not know from `obj` (in place), as kube-apiserver's decoder drops them;
    returns their dotted paths (``spec.containers[0].foo``) for a Strict refusal or a Warn header."""
    unknown: list[str] = []
    schema = resolve(schema)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return unknown
    if isinstance(obj, dict):
        if "properties" not in schema and "additionalProperties" not in schema:
            return unknown
        for key in list(obj):
            sub = property_schema(schema, key)
            where = f"{path}.{key}" if path else key
            if sub is None:
                unknown.append(where)
                del obj[key]
            else:
                unknown += prune_unknown(obj[key], sub, where)
    elif isinstance(obj, list):
        sub = items_schema(schema)
        for i, item in enumerate(obj):
            unknown += prune_unknown(item, sub, f"{path}[{i}]")
    return unknown


_GO_TYPES = {"object": "object", "array": "array", "string": "string", "integer": "number", "number": "number",
             "boolean": "bool"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value == int(value) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def type_errors(obj: Any, schema: dict, path: str = "") -> list[str]:
    """Values of the wrong JSON type (what Go's decoder refuses): ``spec.containers: expected array, got string``."""
    schema = resolve(schema)
    if obj is None:
        return []
    allowed = json_types(schema)
    have = _json_type(obj)
    if allowed and have not in allowed and not (have == "integer" and "number" in allowed):
        want = "/".join(sorted(_GO_TYPES.get(t, t) for t in allowed))
        return [f"{path or '<root>'}: expected {want}, got {_GO_TYPES.get(have, have)}"]
    errors: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = property_schema(schema, key)
            if sub is not None:
                errors += type_errors(value, sub, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        sub = items_schema(schema)
        for i, item in enumerate(obj):
            errors += type_errors(item, sub, f"{path}[{i}]")
    return errors


def reachable(names: list[str]) -> dict[str, dict]:
    """The named definitions and every definition they refer to (for a per-group OpenAPI document)."""
    defs = definitions()
    out: dict[str, dict] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out or name not in defs:
            continue
        out[name] = defs[name]
        text = json.dumps(defs[name])
        pos = 0
        while True:
            pos = text.find(_PREFIX, pos)
            if pos < 0:
                break
            end = text.find('"', pos)
            todo.append(text[pos + len(_PREFIX):end])
            pos = end
    return out


def rewrite_refs(defs: dict[str, dict], prefix: str) -> dict[str, dict]:
    """The definitions with `#/$defs/X` refs pointing at `prefix + X` (`#/definitions/`, `#/components/schemas/`)."""
    return json.loads(json.dumps(defs).replace(f'"{_PREFIX}', f'"{prefix}'))
