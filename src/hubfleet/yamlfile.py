"""One loader for every YAML file hubfleet reads (profiles, culler policies, nodes, local accounts, values).

``load_yaml(source, schema=...)`` parses, validates against a JSON Schema and raises :class:`YAMLFileError` naming
the file, the line where YAML could tell, the key path (``profiles[2].cpu_limit``) and what was expected. The
per-file code then only turns a validated document into its model; it writes no validator of its own for what a
schema can say (types, required keys, unknown keys, ranges, patterns, enums).

Pure: no I/O but reading the named file; ``jsonschema`` (a JupyterHub dependency) is imported when first needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import HubfleetError


class YAMLFileError(HubfleetError, ValueError):
    """A YAML file (or document) that does not parse or does not match its schema."""

    def __init__(self, message: str, *, source: str = "", path: str = "", fix: str | None = None):
        self.source, self.key_path = source, path
        super().__init__(message, fix=fix)


def key_path(parts: Sequence[Any]) -> str:
    """``["profiles", 2, "cpu"]`` -> ``profiles[2].cpu`` (the way the docs and messages name a key)."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "(top level)"


def _describe(error) -> str:
    """A jsonschema ValidationError as a sentence a user can act on."""
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, Mapping) else []
        names = ", ".join(repr(x) for x in extra) or "a key"
        hint = f"; known keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {names}{hint}"
    if v == "required":
        return error.message.replace("is a required property", "is required")
    if v == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"expected {want}, got {type(error.instance).__name__} {error.instance!r}"
    if v == "enum":
        return f"{error.instance!r} is not one of: {', '.join(map(str, error.validator_value))}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength",
             "minItems", "maxItems", "pattern", "format", "const"):
        return error.message
    return error.message


def validate(doc: Any, schema: Mapping, *, source: str = "document") -> Any:
    """Validate ``doc`` against ``schema``; raise YAMLFileError for the first (most relevant) problem."""
    import jsonschema  # noqa: PLC0415  (only when a file is checked)

    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(doc), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        best = jsonschema.exceptions.best_match(errors) or errors[0]
        where = key_path(list(best.absolute_path))
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise YAMLFileError(f"{source}: {where}: {_describe(best)}{more}", source=source, path=where)
    return doc


def parse_yaml(text: str, *, source: str = "document", schema: Mapping | None = None, empty: Any = None) -> Any:
    """Parse YAML text (one document); an empty document is ``empty``. Validate when ``schema`` is given."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise YAMLFileError(f"{source}:{line} not valid YAML: {problem}", source=source,
                            fix="check the indentation and quoting at that line") from e
    if doc is None:
        doc = empty
    if schema is not None:
        validate(doc, schema, source=source)
    return doc


def load_yaml(path: str | os.PathLike, *, schema: Mapping | None = None, empty: Any = None,
              what: str = "file") -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a YAMLFileError naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise YAMLFileError(f"{what} {p}: no such file", source=str(p), fix="check the path in the configuration") from e
    except (OSError, UnicodeDecodeError) as e:
        raise YAMLFileError(f"{what} {p}: cannot be read ({e})", source=str(p)) from e
    return parse_yaml(text, source=str(p), schema=schema, empty=empty)
