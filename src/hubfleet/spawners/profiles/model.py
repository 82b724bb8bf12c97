"""The validated model every profiles source turns into: hubfleet's own format and KubeSpawner's ``profile_list``
(list or dict form) both parse into these frozen dataclasses, so the form, the validation of a choice, the trait
overrides and the quotas see one shape.

Nothing here does I/O or imports a framework; every object is immutable and every function returns new objects.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import HubfleetError

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_GPU_TOLERATIONS = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)

#: Keys every profile accepts in ``user_options`` besides its ``profile_options`` (from the form or the REST API).
USER_OPTION_KEYS = ("profile", "image", "other_image")

#: KubeSpawner's suffix for the free-text value of a profile option (``image--unlisted-choice``).
UNLISTED_SUFFIX = "--unlisted-choice"


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


class ProfileError(HubfleetError):
    """Base of every profiles error; ``status`` is the HTTP status a hub answers with, ``reason`` the short label
    (JupyterHub 6's ``SpawnException(reason=...)`` and hubfleet's refusal metric)."""

    status = 400
    reason = "invalid"


class ProfileConfigError(ProfileError, ValueError):
    """The profiles configuration itself is wrong (an admin's mistake): the message names the profile, the key and
    the value, ``fix`` says what to write instead."""

    status = 500
    reason = "config"


class ChoiceError(ProfileError, ValueError):
    """A user's choice (form, query string or ``user_options``) names something that does not exist or is
    malformed."""

    status = 400
    reason = "invalid"


class AccessDenied(ChoiceError):
    """A user's choice names something that exists but that this user may not use."""

    status = 403
    reason = "disallowed"


class QuotaExceeded(ProfileError):
    """Starting one more server would exceed a quota; the message names the full quota."""

    status = 403
    reason = "quota"


# ---------------------------------------------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Who may use a profile. Empty ``groups`` and ``users`` mean everyone; ``admin_only`` requires an admin."""

    groups: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    admin_only: bool = False

    def allows(self, user: str, groups: frozenset[str], is_admin: bool) -> bool:
        if self.admin_only and not is_admin:
            return False
        if not self.groups and not self.users:
            return True
        return user in self.users or not self.groups.isdisjoint(groups)

    def describe(self) -> str:
        parts = []
        if self.admin_only:
            parts.append("admins")
        if self.groups:
            parts.append("groups " + ", ".join(sorted(self.groups)))
        if self.users:
            parts.append("users " + ", ".join(sorted(self.users)))
        return " and ".join(parts) if parts else "everyone"


@dataclass(frozen=True)
class ImageChoice:
    slug: str
    display_name: str
    image: str
    default: bool = False


@dataclass(frozen=True)
class GPU:
    count: int
    resource: str = DEFAULT_GPU_RESOURCE
    node_selector: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GPU_NODE_SELECTOR))
    tolerations: tuple[Mapping, ...] = DEFAULT_GPU_TOLERATIONS


@dataclass(frozen=True)
class VolumeSpec:
    """A volume and where it is mounted: a PVC (``claim``) or any Kubernetes volume source (``source``)."""

    name: str
    mount_path: str
    read_only: bool = False
    claim: str | None = None
    source: Mapping | None = None
    sub_path: str | None = None

    def volume(self) -> dict:
        if self.claim is not None:
            return {"name": self.name, "persistentVolumeClaim": {"claimName": self.claim, "readOnly": self.read_only}}
        return {"name": self.name, **copy.deepcopy(dict(self.source or {}))}

    def mount(self) -> dict:
        mount = {"name": self.name, "mountPath": self.mount_path, "readOnly": self.read_only}
        if self.sub_path:
            mount["subPath"] = self.sub_path
        return mount


@dataclass(frozen=True)
class OptionChoice:
    """One pre-defined choice of a KubeSpawner ``profile_options`` entry."""

    slug: str
    display_name: str
    default: bool = False
    kubespawner_override: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class UnlistedChoice:
    """The free-text choice of a profile option (KubeSpawner's ``unlisted_choice`` with ``enabled: true``);
    ``{value}`` in ``kubespawner_override`` strings is replaced by what the user typed."""

    display_name: str = ""
    display_name_in_choices: str = "Other..."
    validation_regex: str | None = None
    validation_message: str = ""
    kubespawner_override: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileOption:
    """A KubeSpawner ``profile_options`` entry: a drop-down of choices, optionally with a free-text choice."""

    name: str
    display_name: str
    choices: tuple[OptionChoice, ...] = ()
    unlisted: UnlistedChoice | None = None

    @property
    def default_choice(self) -> OptionChoice | None:
        return next((c for c in self.choices if c.default), self.choices[0] if self.choices else None)


@dataclass(frozen=True)
class Quota:
    """At most ``max_servers`` servers running at once, of ``profile`` (None: any) for members of ``group`` (None:
    everyone); with ``per_user`` the limit holds for each user separately."""

    max_servers: int
    profile: str | None = None
    group: str | None = None
    per_user: bool = False

    def applies_to(self, profile: str, groups: frozenset[str]) -> bool:
        return (self.profile is None or self.profile == profile) and (self.group is None or self.group in groups)

    def describe(self) -> str:
        what = f"'{self.profile}' servers" if self.profile else "servers"
        if self.per_user:
            return f"each user may run at most {self.max_servers} {what} at once"
        if self.group is not None:
            return f"group {self.group} may run at most {self.max_servers} {what}"
        return f"at most {self.max_servers} {what} may run at once"


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    description: str = ""
    default: bool = False
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: int | None = None
    mem_limit: int | None = None
    gpu: GPU | None = None
    images: tuple[ImageChoice, ...] = ()
    other_image_pattern: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeSpec, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping, ...] = ()
    kubespawner_override: Mapping = field(default_factory=dict)
    options: tuple[ProfileOption, ...] = ()
    access: Access = Access()
    init_containers: tuple[Mapping, ...] = ()
    extra_containers: tuple[Mapping, ...] = ()
    image_pull_policy: str | None = None
    scheduling_strategy: str | None = None
    priority_class_name: str | None = None
    queue: bool = False  # a spawn over one of this profile's quotas joins its queue instead of being refused
    claim_window: float | None = None  # seconds an admitted user has to start (0: started for them; None: queue-wide)

    @property
    def default_image(self) -> ImageChoice | None:
        for image in self.images:
            if image.default:
                return image
        return self.images[0] if self.images else None

    def option_keys(self) -> tuple[str, ...]:
        """Every ``user_options`` key this profile understands."""
        keys = list(USER_OPTION_KEYS)
        for option in self.options:
            keys.append(option.name)
            if option.unlisted is not None:
                keys.append(option.name + UNLISTED_SUFFIX)
        return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class GroupRule:
    """Settings a group's members get on every profile (``group_rules`` in the document)."""

    group: str
    priority_class_name: str | None = None


@dataclass(frozen=True)
class Catalog:
    """Everything a profiles document declares."""

    profiles: tuple[Profile, ...] = ()
    quotas: tuple[Quota, ...] = ()
    group_volumes: Mapping[str, tuple[VolumeSpec, ...]] = field(default_factory=dict)
    group_rules: tuple[GroupRule, ...] = ()


@dataclass(frozen=True)
class ResolvedChoice:
    """A validated choice: the profile, the image to run (None: keep the spawner's image), the profile options'
    chosen slugs and free-text values, who asked, and why the saved choice was replaced (``fallback``)."""

    profile: Profile
    image: str | None
    image_slug: str | None
    user: str
    groups: frozenset[str]
    option_choices: Mapping[str, str] = field(default_factory=dict)
    unlisted_values: Mapping[str, str] = field(default_factory=dict)
    fallback: str | None = None  # the progress message when a stale saved choice was replaced
    fallback_form: str | None = None  # the same, as the form says it

    @property
    def other_image(self) -> bool:
        return self.image is not None and self.image_slug is None and bool(self.profile.other_image_pattern)

    def user_options(self) -> dict:
        """The choice as ``user_options`` that validate to the same choice again (recorded for every spawn, so the
        admin panel, the culler and the metrics see the profile, also for a default-profile spawn)."""
        out: dict = {"profile": self.profile.slug}
        if self.image_slug is not None:
            out["image"] = self.image_slug
        elif self.other_image:
            out["other_image"] = self.image
        for name, slug in self.option_choices.items():
            out[name] = slug
        for name, value in self.unlisted_values.items():
            out[name + UNLISTED_SUFFIX] = value
        return out


@dataclass(frozen=True)
class RunningServer:
    """A server that counts against quotas: its pod key (``namespace/name``), profile, owner and owner's groups."""

    key: str
    profile: str
    groups: frozenset[str] = frozenset()
    user: str = ""


# ---------------------------------------------------------------------------------------------------------------
# Display helpers (the form and ``hubfleet profiles check``)
# ---------------------------------------------------------------------------------------------------------------


def format_cpu(cores: float | None) -> str:
    if cores is None:
        return ""
    return f"{cores:g}"


def format_bytes(size: int | None) -> str:
    if size is None:
        return ""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} B"
