"""Helm values: merge values files the way Helm does, validate them against a chart's schema, render the chart.

Used by the tests of ``chart-values/`` and by ``hubfleet values check`` (:mod:`hubfleet.config.cli`).

Helm's semantics (``helm install -f a.yaml -f b.yaml``), as implemented by :func:`combine` and :func:`coalesce` and
checked against Helm's own Go code (``helm_python``) in the tests:

- the ``-f`` files are combined first: mappings merge key by key, every other value (lists included) is replaced by
  the later file's value, a ``null`` replaces too (it is kept);
- the result is coalesced over the chart's ``values.yaml``: a ``null`` deletes a key the chart defines (its default
  too); a ``null`` for a key the chart does not define stays ``null``; the chart's own ``key:`` defaults with no
  value are dropped (a template sees them as unset either way).

:func:`check_values` does what ``helm lint`` + ``helm template`` + a strict OpenAPI check do, and names for each
problem the values file and key path that caused it (:class:`Problem`). Rendering needs the ``helm-python-sdk``
package (Helm's Go SDK in a wheel, no binary) and ``kubernetes-validate``: ``pip install hubfleet[values]``.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HubfleetError
from ..yamlfile import YAMLFileError, load_yaml

__all__ = ["CheckResult", "Problem", "ValuesError", "autohttps_problems", "check_values", "coalesce", "combine", "format_path",
           "helm_merge", "load_values", "manifests", "validate_values"]

KUBE_VERSION = "1.37"  # the newest Kubernetes kubernetes-validate knows; z2jh 4.4.0 wants >= 1.28
RELEASE, NAMESPACE = "jhub", "jhub"
_CHART_FIX = "give the directory of `helm pull jupyterhub/jupyterhub --version 4.4.0 --untar`"
_TOP = {"type": "object"}  # a values file holds a mapping at the top (or nothing)


class ValuesError(HubfleetError):
    """The chart cannot be loaded or the Helm libraries are missing; the message says which and what to do."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a stack of values files: ``source`` is the values file (or chart template) at fault,
    ``path`` the key path in it (``proxy.https.hosts[0]``), ``message`` what is wrong and what is expected."""

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.source, self.path, self.message) if part)


# --------------------------------------------------------------------------------------------------- merging


def _check_mapping(doc) -> Mapping:
    if doc is not None and not isinstance(doc, Mapping):
        raise TypeError(f"a values overlay must be a mapping, got {type(doc).__name__}")
    return doc or {}


def combine(*docs: Mapping | None, names: Sequence[str] = ()) -> tuple[dict, dict[tuple, str]]:
    """Combine ``-f`` files the way the Helm CLI does before it looks at the chart (later wins, mappings merge,
    ``null`` kept). Returns the values and their origin: key path (tuple) -> the name of the file that set it last
    (``names[i]`` for ``docs[i]``, default ``"-f #i"``)."""
    out: dict = {}
    origin: dict[tuple, str] = {}

    def merge(dst: dict, src: Mapping, prefix: tuple, name: str) -> None:
        for key, value in src.items():
            path = (*prefix, key)
            origin[path] = name
            if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
                merge(dst[key], value, path, name)
            elif isinstance(value, Mapping):
                dst[key] = {}
                merge(dst[key], value, path, name)
            else:
                dst[key] = copy.deepcopy(value)

    for i, doc in enumerate(docs):
        merge(out, _check_mapping(doc), (), names[i] if i < len(names) else f"-f #{i + 1}")
    return out, origin


def _without_nulls(node: Mapping) -> dict:
    return {k: _without_nulls(v) if isinstance(v, Mapping) else copy.deepcopy(v)
            for k, v in node.items() if v is not None}


def coalesce(chart: Mapping | None, user: Mapping | None) -> dict:
    """User values over a chart's defaults, as Helm does at install: mappings merge, user scalars/lists win, a user
    ``null`` deletes the chart's key; the chart's own ``null`` defaults are dropped. Returns a new dict."""
    out = _without_nulls(chart or {})
    for key, value in (user or {}).items():
        if value is None and chart and key in chart:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = coalesce(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def helm_merge(base: Mapping | None, *overlays: Mapping | None) -> dict:
    """``base`` (a chart's values.yaml) with ``overlays`` applied like ``helm install -f a.yaml -f b.yaml``."""
    user, _ = combine(*overlays)
    return coalesce(base, user)


def format_path(parts: Sequence) -> str:
    """``["proxy", "https", "hosts", 0]`` -> ``proxy.https.hosts[0]``; the empty path is ``(root)``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(root)"


def load_values(path: str | Path) -> dict:
    """Read one YAML values file (an empty file is ``{}``); a YAMLFileError names the file, line and problem."""
    return load_yaml(path, schema=_TOP, empty={}, what="values file")


# --------------------------------------------------------------------------------------------------- schema


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


def _schema_errors(values: Mapping, schema: Mapping) -> list[tuple[tuple, str]]:
    """(key path, message) for each schema error, unknown keys at their own path with a did-you-mean."""
    from jsonschema import Draft7Validator, validators

    cls = validators.validator_for(schema, default=Draft7Validator)
    cls.check_schema(schema)
    found: set[tuple[tuple, str]] = set()
    for error in cls(schema).iter_errors(values):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            known = sorted(error.schema.get("properties", {}))
            keys = _unknown_keys(error)
            for key in keys:
                hint = difflib.get_close_matches(key, known, n=1)
                fix = (f"did you mean '{hint[0]}'?" if hint
                       else f"{format_path(path)} accepts: {', '.join(known) or '(no keys)'}")
                found.add(((*path, key), f"unknown key (not in the chart's schema); {fix}"))
            if keys:
                continue
        if error.validator in ("oneOf", "anyOf") and error.context:
            best = min(error.context, key=lambda e: len(list(e.absolute_path)))
            found.add((path, f"{error.message.splitlines()[0][:200]} (e.g. {best.message[:200]})"))
        else:
            found.add((path, error.message))
    return sorted(found, key=lambda item: (format_path(item[0]), item[1]))


def validate_values(values: Mapping, schema: Mapping) -> list[str]:
    """Validate merged values against a chart's ``values.schema`` and return readable errors (empty: valid).

    The JSON Schema draft is the one the schema declares in ``$schema`` (Draft 7 when it declares none, as Helm
    assumes). Each error is ``"<dotted.path>: <message>"``, e.g.
    ``proxy.https.letsencrypt.contactEmail: 42 is not of type 'string', 'null'``; an unknown key is reported at its
    own path with a suggestion (``proxy.htps: unknown key (not in the chart's schema); did you mean 'https'?``).
    """
    return [f"{format_path(path)}: {message}" for path, message in _schema_errors(values, schema)]


# --------------------------------------------------------------------------------------------------- autohttps

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}")
_ACME_MIN_HOURS = 1  # Traefik refuses a resolver with certificatesDuration under 1 (hour)


def _dns_name_problem(name) -> str | None:
    """Why ``name`` is not a DNS name an ACME CA issues for over HTTP-01 / TLS-ALPN-01 (None: it is one)."""
    if not isinstance(name, str) or not name:
        return "must be a DNS name (e.g. hub.example.org)"
    if name.startswith("*."):
        return (f"{name!r} is a wildcard: Let's Encrypt issues wildcards only over DNS-01, which the chart does "
                "not configure; list each host")
    labels = name.rstrip(".").split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        return (f"{name!r} is not a DNS name: give a fully qualified host name such as hub.example.org (letters, "
                "digits and '-' in dot-separated labels; no scheme, port, path or IP address)")
    return None


def _mapping(value) -> Mapping:
    """``value`` if it is a mapping, else an empty one: a value of the wrong type is the chart schema's to report."""
    return value if isinstance(value, Mapping) else {}


def autohttps_problems(values: Mapping) -> list[tuple[tuple, str]]:
    """(key path, message) for what the chart's schema lets through but Let's Encrypt or Traefik refuses: a
    ``proxy.https.hosts`` entry that is not a DNS name, a ``contactEmail`` that is not an e-mail address, an ACME
    ``certificatesDuration`` under Traefik's 1-hour minimum."""
    found: list[tuple[tuple, str]] = []
    proxy = _mapping(values.get("proxy"))
    https = _mapping(proxy.get("https"))
    hosts = https.get("hosts") if isinstance(https.get("hosts"), list) else []
    for i, host in enumerate(hosts):
        if (why := _dns_name_problem(host)) is not None:
            found.append((("proxy", "https", "hosts", i), why))
    letsencrypt = https.get("enabled") and https.get("type", "letsencrypt") == "letsencrypt" and hosts
    email = _mapping(https.get("letsencrypt")).get("contactEmail")
    if letsencrypt:
        local, _, domain = str(email or "").rpartition("@")
        if not email or not _EMAIL_LOCAL.fullmatch(local) or _dns_name_problem(domain):
            found.append((("proxy", "https", "letsencrypt", "contactEmail"),
                          f"{email!r} is not an e-mail address: Let's Encrypt refuses the account; give one such as "
                          "hub-admins@example.org"))
    static = _mapping(_mapping(proxy.get("traefik")).get("extraStaticConfig"))
    for name, resolver in _mapping(static.get("certificatesResolvers")).items():
        acme = _mapping(_mapping(resolver).get("acme"))
        if "certificatesDuration" not in acme:
            continue
        hours = acme["certificatesDuration"]
        if isinstance(hours, bool) or not isinstance(hours, int) or hours < _ACME_MIN_HOURS:
            found.append((("proxy", "traefik", "extraStaticConfig", "certificatesResolvers", name, "acme",
                           "certificatesDuration"),
                          f"{hours!r} is not a whole number of hours of at least {_ACME_MIN_HOURS} (Traefik's minimum; "
                          "it refuses the resolver): give the certificates' lifetime in hours, e.g. 2160 for 90 days"))
    return found


def _blame(path: tuple, origin: Mapping[tuple, str]) -> str:
    """The file that set ``path`` or its nearest ancestor (a key deleted by ``null`` is blamed on that file)."""
    for n in range(len(path), 0, -1):
        if path[:n] in origin:
            return origin[path[:n]]
    return "the chart's values.yaml"


# --------------------------------------------------------------------------------------------------- rendering


@dataclass
class CheckResult:
    """What :func:`check_values` found: ``problems`` (empty: the stack is fine), the merged ``values``, and the
    rendered ``objects`` as ``(template path, manifest)`` pairs."""

    problems: list[Problem] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    user_values: dict = field(default_factory=dict)
    objects: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _helm():
    try:
        import helm_python
    except ImportError as e:
        raise ValuesError("rendering the chart needs the helm-python-sdk package",
                          fix="pip install 'hubfleet[values]'") from e
    return helm_python


def manifests(rendered: Mapping[str, str]) -> list[tuple[str, dict]]:
    """The Kubernetes objects of ``Chart.render()`` output, as ``(template path, object)``, in template order."""
    import yaml

    out = []
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml", ".json")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((template, doc))
    return out


def _find_value(node, wanted, prefix: tuple = ()) -> tuple | None:
    """The key path of the first place ``wanted`` (a mapping, list or longer string) appears in ``node``."""
    if node == wanted:
        return prefix
    items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _find_value(value, wanted, (*prefix, key))
        if found is not None:
            return found
    return None


def _values_source(instance, user: Mapping, origin: Mapping[tuple, str]) -> str:
    """`` (from site.yaml: hub.extraVolumes[0])`` when the invalid part of a manifest came verbatim from values."""
    if not instance or isinstance(instance, bool) or (isinstance(instance, str) and len(instance) < 4) \
            or isinstance(instance, (int, float)):
        return ""
    path = _find_value(user, instance)
    return f" (from {_blame(path, origin)}: {format_path(path)})" if path else ""


def _validate_objects(objects, kube_version: str, user: Mapping = {}, origin: Mapping = {}) -> list[Problem]:
    try:
        import kubernetes_validate
    except ImportError as e:
        raise ValuesError("validating rendered manifests needs the kubernetes-validate package",
                          fix="pip install 'hubfleet[values]'") from e
    problems = []
    for template, obj in objects:
        what = f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(Problem(template, f"{what} {format_path(list(e.path))}",
                                    f"invalid for Kubernetes {kube_version}: {e.message[:300]}"
                                    f"{_values_source(e.instance, user, origin)}"))
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            problems.append(Problem(template, what, f"no Kubernetes {kube_version} schema for "
                                    f"{obj.get('apiVersion')} {obj.get('kind')} ({e})"))
    return problems


def check_values(chart_dir: str | Path, files: Sequence[str | Path] = (), *, docs: Sequence[Mapping] = (),
                 release: str = RELEASE, namespace: str = NAMESPACE, kube_version: str = KUBE_VERSION,
                 render: bool = True) -> CheckResult:
    """Check a stack of values files against the chart in ``chart_dir`` as Helm would install it: parse each file,
    merge them (``helm -f`` order), validate against the chart's schema, lint, render every template and validate
    every manifest with kubernetes-validate in strict mode. ``docs`` are already-parsed files (named ``-f #i``).

    Returns a :class:`CheckResult`; every problem names the values file and key path (or the template and field) at
    fault. Raises :class:`ValuesError` only when the chart cannot be loaded or the libraries are missing.
    """
    result = CheckResult()
    loaded, names = [], []
    for f in files:
        try:
            loaded.append(load_values(f))
            names.append(str(f))
        except YAMLFileError as e:
            message = e.message.removeprefix(f"values file {f}: ").removeprefix(f"{f}: ")
            if e.key_path == "(top level)":
                message = "a values file holds a mapping (key: value) at the top"
            result.problems.append(Problem(str(f), "", message))
    for i, doc in enumerate(docs):
        loaded.append(doc)
        names.append(f"-f #{len(files) + i + 1}")
    if result.problems:
        return result
    helm = _helm()
    if not (Path(chart_dir) / "Chart.yaml").is_file():
        raise ValuesError(f"{chart_dir}: not a Helm chart (no Chart.yaml)", fix=_CHART_FIX)
    try:
        chart = helm.Chart.load(str(chart_dir))
    except helm.HelmError as e:
        raise ValuesError(f"{chart_dir}: not a Helm chart ({str(e).strip()})",
                          fix=_CHART_FIX) from e
    with chart:
        user, origin = combine(*loaded, names=names)
        result.user_values = user
        result.values = chart.merge_values(user)
        schema = chart.schema or {}
        for path, message in _schema_errors(result.values, schema) + autohttps_problems(result.values):
            result.problems.append(Problem(_blame(path, origin), format_path(path), message))
        if not result.problems:
            try:
                chart.validate_schema(user)
            except helm.HelmValuesError as e:  # what Helm sees that jsonschema did not
                result.problems.append(Problem(" + ".join(names) or "values", "", f"Helm: {str(e).strip()}"))
        if result.problems or not render:
            return result
        try:
            rendered = chart.render(user, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as e:
            text = " ".join(str(e).split())  # the chart's `fail` messages start with blank lines
            where = re.match(r"execution error at \(([^)]+)\): (.*)", text)
            source, text = where.groups() if where else ("chart templates", text)
            result.problems.append(Problem(source, "", f"the chart refuses to render: {text}"))
            return result
    report = helm.lint(str(chart_dir), user, namespace=namespace, kube_version=f"v{kube_version}.0")
    for message in report.get("messages", []):
        if message.get("severity", 0) >= 2:
            result.problems.append(Problem(message.get("path", "chart"), "", f"helm lint: {message.get('error')}"))
    result.objects = manifests(rendered)
    result.problems += _validate_objects(result.objects, kube_version, user, origin)
    return result
