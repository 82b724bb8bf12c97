"""Profiles as data: the model, parsing (hubfleet's format and KubeSpawner's ``profile_list``), access and choice
validation, trait overrides and quota accounting.

This package is pure: it imports no tornado, kubernetes, jupyterhub or KubeSpawner code (tests/unit/test_purity.py
checks every submodule), so every rule here is unit-tested with plain tables. :class:`hubfleet.spawners.
ProfileSpawner` only wires it into KubeSpawner.

The data model, as it appears in YAML (see docs/spawner.md)::

    profiles:
      - slug: gpu
        display_name: GPU (1 x NVIDIA)
        cpu: {guarantee: 1, limit: 4}
        memory: {guarantee: 4G, limit: 16G}
        gpu: {count: 1}                    # resource defaults to nvidia.com/gpu
        images:
          - {slug: torch, display_name: PyTorch, image: quay.io/org/torch:2.5}
        other_image: {pattern: '^quay\\.io/org/.+$'}
        access: {groups: [class-a]}
        quota: {max_servers: 10, groups: {class-a: 4}}
        max_per_user: 1
    quotas:
      - {group: class-b, profile: gpu, max_servers: 2}
    max_servers_per_user: 3
    group_volumes:
      class-a:
        - {name: course, claim: course-data, mount_path: /home/jovyan/course, read_only: true}

Submodules: :mod:`.model` (dataclasses, errors), :mod:`.schema` (JSON Schema), :mod:`.parse`, :mod:`.choice`,
:mod:`.overrides`, :mod:`.quota`.
"""

from __future__ import annotations

from .choice import default_profile, resolve_choice, validate_choice, visible_profiles
from .model import (
    GPU,
    UNLISTED_SUFFIX,
    USER_OPTION_KEYS,
    Access,
    AccessDenied,
    Catalog,
    ChoiceError,
    GroupRule,
    ImageChoice,
    OptionChoice,
    Profile,
    ProfileConfigError,
    ProfileError,
    ProfileOption,
    Quota,
    QuotaExceeded,
    ResolvedChoice,
    RunningServer,
    UnlistedChoice,
    VolumeSpec,
    format_bytes,
    format_cpu,
)
from .overrides import deep_merge, merge_overrides, overrides_for, recursive_format
from .parse import (
    parse_catalog,
    parse_cpu,
    parse_memory,
    parse_profiles,
    parse_quotas,
    profile_list_entries,
    read_document,
    validate_document,
)
from .quota import QuotaCounts, applicable_quotas, quota_violation

__all__ = [
    "Access", "AccessDenied", "Catalog", "ChoiceError", "GPU", "GroupRule", "ImageChoice", "OptionChoice",
    "Profile", "ProfileConfigError", "ProfileError", "ProfileOption", "Quota", "QuotaCounts",
    "QuotaExceeded", "ResolvedChoice", "RunningServer", "UNLISTED_SUFFIX", "USER_OPTION_KEYS",
    "UnlistedChoice", "VolumeSpec", "applicable_quotas", "deep_merge", "default_profile", "format_bytes",
    "format_cpu", "merge_overrides", "overrides_for", "parse_catalog", "parse_cpu", "parse_memory",
    "parse_profiles", "parse_quotas", "profile_list_entries", "quota_violation", "read_document",
    "recursive_format", "resolve_choice", "validate_choice", "validate_document", "visible_profiles",
]  # fmt: skip
