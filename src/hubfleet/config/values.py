"""Helm values helpers: merge values files the way Helm does, and validate them against a chart's schema.

Pure helpers (no Kubernetes, no Helm binary) used by the tests of ``chart-values/`` and from the command line::

    python -m hubfleet.config.values chart-values/hubfleet-base.yaml chart-values/auth-ldap.yaml \\
        --schema ../shared/z2jh-4.4.0/values.schema.yaml --values ../shared/z2jh-4.4.0/values.yaml

prints ``OK`` or one line per schema error (``proxy.htps: unknown key ...``) and exits 1.

Helm's semantics, as implemented by :func:`helm_merge`: mappings merge deeply, every other value (lists included)
is replaced by the later file's value, and a ``null`` in a later file deletes the key (the chart default too).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from ..errors import HubfleetError

__all__ = ["ValuesError", "format_path", "helm_merge", "load_values", "main", "merge_files", "validate_values"]


class ValuesError(HubfleetError):
    """A values or schema file cannot be read or parsed; the message names the file."""


def helm_merge(base: Mapping | None, *overlays: Mapping | None) -> dict:
    """Merge ``overlays`` over ``base`` like ``helm install -f base.yaml -f a.yaml -f b.yaml`` (the chart's
    values.yaml being the first ``base``).

    - mappings merge key by key, recursively;
    - lists, scalars and a mapping replacing a non-mapping (or the reverse) are replaced wholesale;
    - a ``None`` (YAML ``null``) value deletes the key from the result, including a chart default;
    - ``None`` inside ``base`` itself is kept (the chart's values.yaml has many ``key:`` with no value).

    Returns a new dict; the arguments are not modified.
    """
    result = copy.deepcopy(dict(base or {}))
    for overlay in overlays:
        if overlay is None:
            continue
        if not isinstance(overlay, Mapping):
            raise TypeError(f"a values overlay must be a mapping, got {type(overlay).__name__}")
        result = _merge(result, overlay)
    return result


def _merge(base: dict, overlay: Mapping) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        elif isinstance(value, Mapping):
            # a new mapping: still drop its nulls, as Helm does when it coalesces user values
            out[key] = _merge({}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def format_path(parts: Sequence) -> str:
    """``["proxy", "https", "hosts", 0]`` -> ``proxy.https.hosts[0]``; the empty path is ``(root)``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(root)"


def _unknown_keys(error) -> list[str]:
    """The keys an ``additionalProperties: false`` error is about."""
    schema = error.schema
    known = set(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    return sorted(
        str(key)
        for key in error.instance
        if key not in known and not any(re.search(pattern, str(key)) for pattern in patterns)
    )


def _messages(error) -> list[tuple[str, str]]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = sorted(error.schema.get("properties", {}))
        out = []
        for key in _unknown_keys(error):
            hint = difflib.get_close_matches(key, known, n=1)
            where = format_path(path)
            fix = f"did you mean '{hint[0]}'?" if hint else f"{where} accepts: {', '.join(known) or '(no keys)'}"
            out.append((format_path([*path, key]), f"unknown key (not in the chart's schema); {fix}"))
        if out:
            return out
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = min(error.context, key=lambda e: len(list(e.absolute_path)))
        return [(format_path(path), f"{error.message.splitlines()[0][:200]} (e.g. {best.message[:200]})")]
    return [(format_path(path), error.message)]


def validate_values(values: Mapping, schema: Mapping) -> list[str]:
    """Validate merged values against a chart's ``values.schema`` and return readable errors (empty: valid).

    The JSON Schema draft is the one the schema declares in ``$schema`` (Draft 7 when it declares none, as Helm
    assumes). Each error is ``"<dotted.path>: <message>"``, e.g.
    ``proxy.https.letsencrypt.contactEmail: 42 is not of type 'string', 'null'``; an unknown key is reported at its
    own path with a suggestion (``proxy.htps: unknown key (not in the chart's schema); did you mean 'https'?``).
    """
    from jsonschema import Draft7Validator, validators

    cls = validators.validator_for(schema, default=Draft7Validator)
    cls.check_schema(schema)
    validator = cls(schema)
    found = set()
    for error in validator.iter_errors(values):
        found.update(_messages(error))
    return [f"{path}: {message}" for path, message in sorted(found)]


def load_values(path: str | Path) -> dict:
    """Read one YAML values file (an empty file is ``{}``); :class:`ValuesError` names the file on failure."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValuesError(f"{path}: cannot read: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ValuesError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValuesError(f"{path}: a values file must hold a mapping at the top, got {type(data).__name__}")
    return data


def merge_files(*paths: str | Path, chart_values: str | Path | None = None) -> dict:
    """``helm_merge`` of the chart's values.yaml (if given) and the files, in order."""
    base = load_values(chart_values) if chart_values else {}
    return helm_merge(base, *(load_values(p) for p in paths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hubfleet.config.values",
        description="Merge Helm values files the way Helm does and validate the result against a chart's "
        "values.schema.yaml (or .json). Prints OK, or one error per line and exits 1.",
    )
    parser.add_argument("files", nargs="+", metavar="VALUES.yaml", help="overlays, in `helm -f` order")
    parser.add_argument("--schema", required=True, help="the chart's values.schema.yaml / values.schema.json")
    parser.add_argument("--values", metavar="CHART_VALUES", help="the chart's own values.yaml (merged first)")
    parser.add_argument("--print", action="store_true", dest="print_merged", help="also print the merged values")
    args = parser.parse_args(argv)
    try:
        schema = load_values(args.schema)
        merged = merge_files(*args.files, chart_values=args.values)
    except ValuesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_merged:
        import yaml

        print(yaml.safe_dump(merged, sort_keys=False), end="")
    errors = validate_values(merged, schema)
    if errors:
        for line in errors:
            print(line)
        print(f"{len(errors)} error(s) in {' + '.join(args.files)}", file=sys.stderr)
        return 1
    print(f"OK: {' + '.join(args.files)} validate against {args.schema}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
