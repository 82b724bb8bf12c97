"""Cull policies: the model (:class:`CullPolicy`) and the policies file, validated by a JSON Schema.

Shared by the culler (:mod:`hubfleet.services.culler.policies`, which adds the ``consolidate`` part) and
ProfileSpawner's queue (which reads each profile's ``max_age`` for "at the latest"). Pure: no HTTP, no tornado. The file is read with :func:`hubfleet.yamlfile.load_yaml` (one loader for every YAML file
hubfleet reads, naming the file, the line and the key path); the schema says what the structure may be (unknown keys,
types), :func:`policies_from_config` then turns durations into seconds with messages that name the field and value.

    default: {timeout: 8h}                  # optional; keys left out come from the culler's options
    profiles:
      gpu: {timeout: 30m, warn_before: 10m, gpu_idle_below: 5}
      small: {timeout: 8h, spare_busy_kernels: true}
      long-running: {never: true, max_age: 7d}
      course: {timeout: 4h, warn_before: 10m, consolidate: {idle_after: 30m, node_requests_below: 25%}}

``consolidate`` (profiles only; :mod:`hubfleet.services.culler.consolidate`): idle servers on nearly empty nodes are
warned and stopped before the timeout so that the cluster autoscaler can remove the node. Its parser is passed in
(``consolidate=``) by the culler; without one the key is checked by the schema only and left as None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta

from .errors import HubfleetError

_SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SLUG = re.compile(_SLUG_PATTERN)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_KEYS = ("timeout", "max_age", "warn_before")
BOOL_KEYS = ("never", "cull_users", "spare_busy_kernels")
POLICY_KEYS = (*DURATION_KEYS, *BOOL_KEYS, "gpu_idle_below")


class CullConfigError(HubfleetError, ValueError):
    """A cull policy document or option is invalid; the message names the field and the value."""


_DURATION_SCHEMA = {"type": ["number", "string", "null"]}  # the value itself is checked by parse_duration
_POLICY_SCHEMA = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        **{k: _DURATION_SCHEMA for k in DURATION_KEYS},
        **{k: {"type": "boolean"} for k in BOOL_KEYS},
        "gpu_idle_below": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
    },
}
_PROFILE_SCHEMA = {**_POLICY_SCHEMA, "properties": {**_POLICY_SCHEMA["properties"],
                                                     "consolidate": {"type": ["object", "null"]}}}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hubfleet culler policies",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "default": _POLICY_SCHEMA,
        "profiles": {"type": ["object", "null"], "propertyNames": {"pattern": _SLUG_PATTERN},
                     "additionalProperties": _PROFILE_SCHEMA},
    },
}


@dataclass(frozen=True)
class CullPolicy:
    """How servers of one profile are culled.

    - ``timeout``: seconds of inactivity after which a server is culled.
    - ``max_age``: seconds since the server started after which it is culled even if active; 0 = no limit.
    - ``cull_users``: also delete the user once all its servers are culled and it is itself inactive.
    - ``never``: never cull for inactivity (``timeout`` is ignored); ``max_age`` still applies, so a
      "long-running" profile is ``never: true, max_age: 7d`` and a fully exempt one ``never: true``.
    - ``warn_before``: warn the user this long before the cull (0: no warning); the cull waits for it.
    - ``spare_busy_kernels``: a kernel in ``execution_state: busy`` counts as activity (``max_age`` still culls).
    - ``gpu_idle_below``: judge idleness by GPU use: the server is idle while its GPU utilisation (percent, from
      Prometheus) stays under this; browser activity does not count. None: by browser activity.
    - ``consolidate``: a :class:`hubfleet.services.culler.consolidate.ConsolidatePolicy` (idle servers on nearly
      empty nodes are stopped earlier), or None.
    """

    timeout: float = 3600.0
    max_age: float = 0.0
    cull_users: bool = False
    never: bool = False
    warn_before: float = 0.0
    spare_busy_kernels: bool = False
    gpu_idle_below: float | None = None
    consolidate: object = None

    def __post_init__(self):
        for name in DURATION_KEYS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise CullConfigError(f"{name}: expected a duration >= 0 in seconds, got {value!r}")
        if self.timeout == 0 and not self.never:
            raise CullConfigError("timeout: 0 would cull every server at once; to switch idle culling off give "
                                  "never: true")
        if self.warn_before and not self.never and self.warn_before >= self.timeout:
            raise CullConfigError(f"warn_before: {format_td(self.warn_before)} is not shorter than timeout "
                                  f"{format_td(self.timeout)}; the warning must come before the cull")
        if self.warn_before and self.max_age and self.warn_before >= self.max_age:
            raise CullConfigError(f"warn_before: {format_td(self.warn_before)} is not shorter than max_age "
                                  f"{format_td(self.max_age)}")
        if self.gpu_idle_below is not None and not 0 < self.gpu_idle_below <= 100:
            raise CullConfigError(f"gpu_idle_below: expected a percentage in (0, 100], got {self.gpu_idle_below!r}")

    def describe(self) -> str:
        idle = "never for inactivity" if self.never else f"after {format_td(self.timeout)} inactive"
        if self.gpu_idle_below is not None and not self.never:
            idle += f" (GPU under {self.gpu_idle_below:g} %)"
        age = f", at age {format_td(self.max_age)}" if self.max_age else ""
        c = self.consolidate
        extra = "".join([f", warned {format_td(self.warn_before)} before" if self.warn_before else "",
                         ", busy kernels spared" if self.spare_busy_kernels else "",
                         ", then the user" if self.cull_users else "",
                         f", stopped after {format_td(c.idle_after)} idle on a node under "
                         f"{c.node_requests_below:g} % requested" if c is not None else ""])
        return f"{idle}{age}{extra}"


def format_td(td: timedelta | float | int | str | None) -> str:
    """``HH:MM:SS`` (as ``jupyterhub_idle_culler.format_td``); also accepts seconds."""
    if td is None:
        return "unknown"
    if isinstance(td, str):
        return td
    seconds = int(td.total_seconds() if isinstance(td, timedelta) else td)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02}:{m:02}:{s:02}"


def parse_duration(value, *, field: str, zero_ok: bool = False) -> float:
    """Seconds from ``3600``, ``90.5``, ``"30m"``, ``"8h"``, ``"7d"``, ``"2w"``; 0 only with ``zero_ok``."""
    if isinstance(value, bool):
        raise CullConfigError(f"{field}: expected a duration like 1800, '30m', '8h' or '7d', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise CullConfigError(f"{field}: expected a duration like 1800, '30m', '8h' or '7d', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise CullConfigError(f"{field}: expected a duration > 0, got {value!r}")
    if seconds == 0 and not zero_ok:
        hint = {"timeout": "to switch idle culling off give never: true",
                "max_age": "leave max_age out (or null) for no age limit",
                "warn_before": "leave warn_before out (or null) for no warning"}.get(field.rsplit(".", 1)[-1], "")
        raise CullConfigError(f"{field}: a duration must be more than 0, got {value!r}" + (f"; {hint}" if hint
                                                                                          else ""))
    return seconds


def policy_from_mapping(data, *, field: str, base: CullPolicy | None = None, consolidate=None) -> CullPolicy:
    """One (schema-valid) policy mapping; keys it leaves out come from ``base`` (the default policy).
    ``consolidate``: ``consolidate(data, *, field, cull) -> policy`` for the ``consolidate`` key (None: ignored)."""
    base = base or CullPolicy()
    data = data or {}
    values: dict = {}
    for key in DURATION_KEYS:
        if key in data:
            values[key] = 0.0 if data[key] is None else parse_duration(data[key], field=f"{field}.{key}")
    for key in (*BOOL_KEYS, "gpu_idle_below"):
        if key in data:
            values[key] = data[key]
    if "timeout" in data and "never" not in data:
        values["never"] = False  # a profile that gives a timeout is culled by it, whatever the default says
    try:
        policy = replace(base, **values)
    except CullConfigError as e:
        raise CullConfigError(f"{field}.{e}") from None
    if data.get("consolidate") is None or consolidate is None:
        return policy
    return replace(policy, consolidate=consolidate(data["consolidate"], field=f"{field}.consolidate", cull=policy))


def policies_from_config(data, *, default: CullPolicy | None = None, source: str = "policies",
                         known_profiles: Iterable[str] | None = None,
                         consolidate=None) -> tuple[dict[str, CullPolicy], CullPolicy]:
    """Validate and parse a policies document into ``({profile slug: policy}, default policy)``.

    ``known_profiles``: the profile slugs the spawner offers; a policy for any other slug is refused (a typo would
    silently leave that profile on the default policy). None: not checked. ``consolidate``: as for
    :func:`policy_from_mapping`.
    """
    from .yamlfile import validate  # noqa: PLC0415  (pure; jsonschema is imported when first needed)

    if data is None:
        data = {}
    try:
        validate(data, SCHEMA, source=source)
    except HubfleetError as e:
        raise CullConfigError(str(e)) from e
    try:
        default_policy = policy_from_mapping(data.get("default"), field="default", base=default or CullPolicy())
        profiles_data = data.get("profiles") or {}
        if known_profiles is not None:
            known = sorted(set(known_profiles))
            for slug in profiles_data:
                if slug not in known:
                    raise CullConfigError(f"profiles.{slug}: unknown profile {slug!r}; the spawner's profiles are: "
                                          f"{', '.join(known) or '(none)'}")
        policies = {slug: policy_from_mapping(pdata, field=f"profiles.{slug}", base=default_policy,
                                              consolidate=consolidate)
                    for slug, pdata in profiles_data.items()}
    except CullConfigError as e:
        raise CullConfigError(f"{source}: {e}") from None
    return policies, default_policy


def load_policies(path: str, *, default: CullPolicy, known_profiles: Iterable[str] | None = None,
                  what: str = "--policies-file", consolidate=None):
    """Read a policies file (``hubfleet.yamlfile.load_yaml``); raises CullConfigError naming the file (as ``what``,
    the option that names it)."""
    from .yamlfile import load_yaml  # noqa: PLC0415

    try:
        doc = load_yaml(path, what=what, empty={})
    except HubfleetError as e:
        raise CullConfigError(str(e)) from e
    return policies_from_config(doc, default=default, source=f"{what} {path}", known_profiles=known_profiles,
                                consolidate=consolidate)


def is_slug(value) -> bool:
    return isinstance(value, str) and bool(_SLUG.match(value))


__all__ = ["CullPolicy", "CullConfigError", "SCHEMA", "POLICY_KEYS", "policies_from_config", "policy_from_mapping",
           "load_policies", "parse_duration", "format_td", "is_slug"]
