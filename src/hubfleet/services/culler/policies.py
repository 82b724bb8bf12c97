"""The culler's cull policies: :mod:`hubfleet.cullpolicies` (the model, the policies file and its schema, shared with
ProfileSpawner's queue) with the culler's ``consolidate`` part (:mod:`.consolidate`) parsed in.

Pure: no HTTP, no tornado.
"""

from __future__ import annotations

from collections.abc import Iterable

from ... import cullpolicies as _shared
from ...cullpolicies import (POLICY_KEYS, SCHEMA, CullConfigError, CullPolicy, format_td, is_slug,
                             parse_duration)


def _consolidate(data, *, field: str, cull: CullPolicy):
    from .consolidate import consolidate_policy_from_mapping  # noqa: PLC0415  (it builds on this module)

    return consolidate_policy_from_mapping(data, field=field, cull=cull)


def policy_from_mapping(data, *, field: str, base: CullPolicy | None = None) -> CullPolicy:
    """:func:`hubfleet.cullpolicies.policy_from_mapping` with ``consolidate`` parsed."""
    return _shared.policy_from_mapping(data, field=field, base=base, consolidate=_consolidate)


def policies_from_config(data, *, default: CullPolicy | None = None, source: str = "policies",
                         known_profiles: Iterable[str] | None = None) -> tuple[dict[str, CullPolicy], CullPolicy]:
    """:func:`hubfleet.cullpolicies.policies_from_config` with ``consolidate`` parsed."""
    return _shared.policies_from_config(data, default=default, source=source, known_profiles=known_profiles,
                                        consolidate=_consolidate)


def load_policies(path: str, *, default: CullPolicy, known_profiles: Iterable[str] | None = None):
    """:func:`hubfleet.cullpolicies.load_policies` (``--policies-file``) with ``consolidate`` parsed."""
    return _shared.load_policies(path, default=default, known_profiles=known_profiles, consolidate=_consolidate)


__all__ = ["CullPolicy", "CullConfigError", "SCHEMA", "POLICY_KEYS", "policies_from_config", "policy_from_mapping",
           "load_policies", "parse_duration", "format_td", "is_slug"]
