"""Profiles as data: parsing, access rules, choice validation, trait overrides and quota accounting.

This module is pure: it imports no tornado, kubernetes or jupyterhub code, so every rule here is unit-tested with
plain tables (tests/unit/test_profiles*.py). :class:`hubfleet.spawners.ProfileSpawner` only wires it into
KubeSpawner.

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
    quotas:
      - {group: class-b, profile: gpu, max_servers: 2}
    group_volumes:
      class-a:
        - {name: course, claim: course-data, mount_path: /home/jovyan/course, read_only: true}

Every function returns new objects; nothing here mutates its arguments or the parsed configuration.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ..errors import HubfleetError

__all__ = [
    "Access",
    "AccessDenied",
    "Catalog",
    "ChoiceError",
    "GPU",
    "ImageChoice",
    "Profile",
    "ProfileConfigError",
    "ProfileError",
    "Quota",
    "QuotaCounts",
    "QuotaExceeded",
    "ResolvedChoice",
    "RunningServer",
    "USER_OPTION_KEYS",
    "VolumeSpec",
    "applicable_quotas",
    "format_bytes",
    "format_cpu",
    "merge_overrides",
    "overrides_for",
    "parse_catalog",
    "parse_profiles",
    "parse_quotas",
    "quota_violation",
    "validate_choice",
    "visible_profiles",
]

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_GPU_TOLERATIONS = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)

#: Keys accepted in ``user_options`` (from the form or ``POST /hub/api/users/<name>/server``).
USER_OPTION_KEYS = ("profile", "image", "other_image")

PROFILE_LABEL = "hubfleet.io/profile"

_SLUG = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?\s*$")
_BINARY = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


class ProfileError(HubfleetError):
    """Base of every error this module raises; ``status`` is the HTTP status a hub should answer with."""

    status = 400


class ProfileConfigError(ProfileError, ValueError):
    """The profiles configuration itself is wrong (an admin's mistake): the message names the field and value."""

    status = 500


class ChoiceError(ProfileError, ValueError):
    """A user's choice (form or ``user_options``) names something that does not exist or is malformed."""

    status = 400


class AccessDenied(ChoiceError):
    """A user's choice names something that exists but that this user may not use."""

    status = 403


class QuotaExceeded(ProfileError):
    """Starting one more server would exceed a quota; the message names the full quota."""

    status = 403


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
class Quota:
    """At most ``max_servers`` servers running at once, of ``profile`` (None: any) for members of ``group`` (None:
    everyone)."""

    max_servers: int
    profile: str | None = None
    group: str | None = None

    def applies_to(self, profile: str, groups: frozenset[str]) -> bool:
        return (self.profile is None or self.profile == profile) and (self.group is None or self.group in groups)

    def describe(self) -> str:
        what = f"'{self.profile}' servers" if self.profile else "servers"
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
    access: Access = Access()

    @property
    def default_image(self) -> ImageChoice | None:
        for image in self.images:
            if image.default:
                return image
        return self.images[0] if self.images else None


@dataclass(frozen=True)
class Catalog:
    """Everything a profiles document declares."""

    profiles: tuple[Profile, ...] = ()
    quotas: tuple[Quota, ...] = ()
    group_volumes: Mapping[str, tuple[VolumeSpec, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedChoice:
    """A validated choice: the profile, the image to run (None: keep the spawner's image) and who asked."""

    profile: Profile
    image: str | None
    image_slug: str | None
    user: str
    groups: frozenset[str]

    @property
    def other_image(self) -> bool:
        return self.image is not None and self.image_slug is None


@dataclass(frozen=True)
class RunningServer:
    """A server that counts against quotas: its pod key (``namespace/name``), profile and owner's groups."""

    key: str
    profile: str
    groups: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------


def _fail(path: str, message: str) -> ProfileConfigError:
    return ProfileConfigError(f"{path}: {message}")


def _mapping(value, path: str, allowed: Sequence[str] | None = None) -> Mapping:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected a mapping, got {type(value).__name__} {value!r}")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise _fail(path, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    return value


def _list(value, path: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise _fail(path, f"expected a list, got {type(value).__name__} {value!r}")
    return list(value)


def _string(value, path: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise _fail(path, f"expected a non-empty string, got {value!r}")
    return value


def _slug(value, path: str) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise _fail(path, f"{value!r} is not a valid slug (lowercase letters, digits and '-', at most 63 characters)")
    return value


def _bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"expected true or false, got {value!r}")
    return value


def _count(value, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"expected a whole number >= {minimum}, got {value!r}")
    return value


def parse_cpu(value, path: str = "cpu") -> float:
    """Cores as a float from ``2``, ``0.5``, ``"1.5"`` or ``"500m"``."""
    if isinstance(value, bool):
        raise _fail(path, f"expected a number of cores like 2, 0.5 or '500m', got {value!r}")
    if isinstance(value, (int, float)):
        cores = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise _fail(path, f"expected a number of cores like 2, 0.5 or '500m', got {value!r}") from None
    else:
        raise _fail(path, f"expected a number of cores like 2, 0.5 or '500m', got {value!r}")
    if not cores > 0:
        raise _fail(path, f"must be more than 0 cores, got {value!r}")
    return cores


def parse_memory(value, path: str = "memory") -> int:
    """Bytes from an int or a string with a binary suffix: ``"512M"``, ``"4G"``, ``"4Gi"`` (K/M/G/T = Ki/Mi/Gi/Ti,
    as in JupyterHub's ByteSpecification)."""
    if isinstance(value, bool):
        raise _fail(path, f"expected a size like 512M or 4G, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _MEMORY.match(value)):
        size = int(float(m.group(1)) * _BINARY[(m.group(2) or "").rstrip("i")])
    else:
        raise _fail(path, f"expected a size like 512M or 4G, got {value!r}")
    if size <= 0:
        raise _fail(path, f"must be more than 0 bytes, got {value!r}")
    return size


def _resource_pair(value, path: str, parse) -> tuple:
    if isinstance(value, Mapping):
        spec = _mapping(value, path, ("guarantee", "limit"))
        guarantee = parse(spec["guarantee"], f"{path}.guarantee") if spec.get("guarantee") is not None else None
        limit = parse(spec["limit"], f"{path}.limit") if spec.get("limit") is not None else None
    else:  # a bare value is both guarantee and limit
        guarantee = limit = parse(value, path)
    if guarantee is not None and limit is not None and guarantee > limit:
        raise _fail(path, f"guarantee {value['guarantee']!r} is more than limit {value['limit']!r}")
    return guarantee, limit


def _string_map(value, path: str) -> dict[str, str]:
    out = {}
    for key, item in _mapping(value, path).items():
        if not isinstance(key, str) or not key:
            raise _fail(path, f"keys must be non-empty strings, got {key!r}")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _fail(f"{path}.{key}", f"expected a string, got {item!r}")
        out[key] = str(item)
    return out


def _tolerations(value, path: str) -> tuple[dict, ...]:
    out = []
    for i, item in enumerate(_list(value, path)):
        spec = _mapping(item, f"{path}[{i}]", ("key", "operator", "value", "effect", "tolerationSeconds"))
        if spec.get("operator", "Equal") not in ("Equal", "Exists"):
            raise _fail(f"{path}[{i}].operator", f"expected Equal or Exists, got {spec['operator']!r}")
        out.append(dict(spec))
    return tuple(out)


def _volume(value, path: str) -> VolumeSpec:
    spec = _mapping(value, path, ("name", "mount_path", "read_only", "claim", "source", "sub_path"))
    for key in ("name", "mount_path"):
        if key not in spec:
            raise _fail(path, f"missing required key {key!r}")
    name = _slug(spec["name"], f"{path}.name")
    mount_path = _string(spec["mount_path"], f"{path}.mount_path")
    if not mount_path.startswith("/"):
        raise _fail(f"{path}.mount_path", f"must be an absolute path, got {mount_path!r}")
    has_claim, has_source = spec.get("claim") is not None, spec.get("source") is not None
    if has_claim == has_source:
        raise _fail(path, "give exactly one of 'claim' (a PVC name) or 'source' (a Kubernetes volume source)")
    source = None
    if has_source:
        source = _mapping(spec["source"], f"{path}.source")
        if len(source) != 1:
            raise _fail(f"{path}.source", f"expected one volume source like {{nfs: {{...}}}}, got {dict(source)!r}")
        source = copy.deepcopy(dict(source))
    return VolumeSpec(
        name=name,
        mount_path=mount_path,
        read_only=_bool(spec.get("read_only", False), f"{path}.read_only"),
        claim=_slug(spec["claim"], f"{path}.claim") if has_claim else None,
        source=source,
        sub_path=_string(spec["sub_path"], f"{path}.sub_path") if spec.get("sub_path") else None,
    )


def _volumes(value, path: str) -> tuple[VolumeSpec, ...]:
    volumes = tuple(_volume(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path)))
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        if volume.name in seen:
            raise _fail(f"{path}[{i}].name", f"duplicate volume name {volume.name!r}")
        seen.add(volume.name)
    return volumes


def _images(spec: Mapping, path: str) -> tuple[ImageChoice, ...]:
    if "image" in spec and "images" in spec:
        raise _fail(path, "give either 'image' or 'images', not both")
    if "image" in spec:
        image = _string(spec["image"], f"{path}.image")
        return (ImageChoice(slug="default", display_name=image, image=image, default=True),)
    images = []
    for i, item in enumerate(_list(spec.get("images", []), f"{path}.images")):
        ipath = f"{path}.images[{i}]"
        if isinstance(item, str):
            item = {"image": item}
        choice = _mapping(item, ipath, ("slug", "display_name", "image", "default"))
        if "image" not in choice:
            raise _fail(ipath, "missing required key 'image'")
        image = _string(choice["image"], f"{ipath}.image")
        slug = choice.get("slug") or _slugify(image.rsplit("/", 1)[-1])
        images.append(
            ImageChoice(
                slug=_slug(slug, f"{ipath}.slug"),
                display_name=_string(choice.get("display_name", image), f"{ipath}.display_name"),
                image=image,
                default=_bool(choice.get("default", False), f"{ipath}.default"),
            )
        )
    slugs = [image.slug for image in images]
    for i, slug in enumerate(slugs):
        if slugs.index(slug) != i:
            raise _fail(f"{path}.images[{i}].slug", f"duplicate image slug {slug!r}")
    return tuple(images)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-") or "image"


def _names(value, path: str) -> frozenset[str]:
    return frozenset(_string(name, f"{path}[{i}]") for i, name in enumerate(_list(value, path)))


def _access(value, path: str) -> Access:
    spec = _mapping(value, path, ("groups", "users", "admin_only"))
    return Access(
        groups=_names(spec.get("groups", []), f"{path}.groups"),
        users=_names(spec.get("users", []), f"{path}.users"),
        admin_only=_bool(spec.get("admin_only", False), f"{path}.admin_only"),
    )


def _gpu(value, path: str) -> GPU:
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"count": value}
    spec = _mapping(value, path, ("count", "resource", "node_selector", "tolerations"))
    return GPU(
        count=_count(spec.get("count", 1), f"{path}.count", minimum=1),
        resource=_string(spec.get("resource", DEFAULT_GPU_RESOURCE), f"{path}.resource"),
        node_selector=(
            _string_map(spec["node_selector"], f"{path}.node_selector")
            if "node_selector" in spec
            else dict(DEFAULT_GPU_NODE_SELECTOR)
        ),
        tolerations=(
            _tolerations(spec["tolerations"], f"{path}.tolerations")
            if "tolerations" in spec
            else DEFAULT_GPU_TOLERATIONS
        ),
    )


_PROFILE_KEYS = (
    "slug", "display_name", "description", "default", "cpu", "memory", "gpu", "image", "images", "other_image",
    "env", "volumes", "node_selector", "tolerations", "kubespawner_override", "access", "quota",
)  # fmt: skip


def _profile(value, path: str) -> tuple[Profile, list[Quota]]:
    spec = _mapping(value, path, _PROFILE_KEYS)
    if "slug" not in spec:
        raise _fail(path, "missing required key 'slug'")
    slug = _slug(spec["slug"], f"{path}.slug")
    cpu_guarantee, cpu_limit = _resource_pair(spec["cpu"], f"{path}.cpu", parse_cpu) if "cpu" in spec else (None, None)
    mem_guarantee, mem_limit = (
        _resource_pair(spec["memory"], f"{path}.memory", parse_memory) if "memory" in spec else (None, None)
    )
    other_pattern = None
    if spec.get("other_image") is not None:
        other = _mapping(spec["other_image"], f"{path}.other_image", ("pattern",))
        if "pattern" not in other:
            raise _fail(f"{path}.other_image", "missing required key 'pattern' (the allow-list regular expression)")
        other_pattern = _string(other["pattern"], f"{path}.other_image.pattern")
        try:
            re.compile(other_pattern)
        except re.error as e:
            raise _fail(f"{path}.other_image.pattern", f"invalid regular expression {other_pattern!r}: {e}") from e
    env = _string_map(spec.get("env", {}), f"{path}.env")
    for name in env:
        if not _ENV_NAME.match(name):
            raise _fail(f"{path}.env", f"invalid environment variable name {name!r}")
    profile = Profile(
        slug=slug,
        display_name=_string(spec.get("display_name", slug), f"{path}.display_name"),
        description=_string(spec.get("description", ""), f"{path}.description", empty=True),
        default=_bool(spec.get("default", False), f"{path}.default"),
        cpu_guarantee=cpu_guarantee,
        cpu_limit=cpu_limit,
        mem_guarantee=mem_guarantee,
        mem_limit=mem_limit,
        gpu=_gpu(spec["gpu"], f"{path}.gpu") if spec.get("gpu") else None,
        images=_images(spec, path),
        other_image_pattern=other_pattern,
        env=env,
        volumes=_volumes(spec.get("volumes", []), f"{path}.volumes"),
        node_selector=_string_map(spec.get("node_selector", {}), f"{path}.node_selector"),
        tolerations=_tolerations(spec.get("tolerations", []), f"{path}.tolerations"),
        kubespawner_override=copy.deepcopy(
            dict(_mapping(spec.get("kubespawner_override", {}), f"{path}.kubespawner_override"))
        ),
        access=_access(spec.get("access", {}), f"{path}.access"),
    )
    return profile, _profile_quotas(spec.get("quota"), f"{path}.quota", slug)


def _profile_quotas(value, path: str, slug: str) -> list[Quota]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"max_servers": value}
    spec = _mapping(value, path, ("max_servers", "groups"))
    quotas = []
    if spec.get("max_servers") is not None:
        quotas.append(Quota(_count(spec["max_servers"], f"{path}.max_servers"), profile=slug))
    for group, limit in _mapping(spec.get("groups", {}), f"{path}.groups").items():
        group = _string(group, f"{path}.groups")
        quotas.append(Quota(_count(limit, f"{path}.groups.{group}"), profile=slug, group=group))
    return quotas


def parse_profiles(data) -> list[Profile]:
    """Profiles from a list of mappings (or a document with a ``profiles`` key); raises :class:`ProfileConfigError`
    naming the field and the bad value."""
    return list(parse_catalog(data).profiles)


def parse_quotas(data, profiles: Iterable[Profile] = ()) -> list[Quota]:
    """Quotas from a list of ``{max_servers, profile?, group?}`` mappings; ``profile`` must name a declared one."""
    slugs = [p.slug for p in profiles]
    quotas = []
    for i, item in enumerate(_list(data, "quotas")):
        path = f"quotas[{i}]"
        spec = _mapping(item, path, ("max_servers", "profile", "group"))
        if "max_servers" not in spec:
            raise _fail(path, "missing required key 'max_servers'")
        profile = spec.get("profile")
        if profile is not None and profile not in slugs:
            raise _fail(f"{path}.profile", f"unknown profile {profile!r}; declared: {', '.join(slugs) or '(none)'}")
        group = _string(spec["group"], f"{path}.group") if spec.get("group") is not None else None
        quotas.append(Quota(_count(spec["max_servers"], f"{path}.max_servers"), profile=profile, group=group))
    return quotas


def parse_catalog(data, *, quotas=(), group_volumes=None) -> Catalog:
    """A :class:`Catalog` from a profiles document: a list of profiles, or a mapping with ``profiles``, ``quotas``
    and ``group_volumes``. Extra ``quotas`` / ``group_volumes`` (from traitlets config) are added to the document's."""
    if data is None:
        data = []
    if isinstance(data, Mapping):
        doc = _mapping(data, "document", ("profiles", "quotas", "group_volumes"))
        profile_data = doc.get("profiles", [])
        quota_data = list(_list(doc.get("quotas", []), "quotas")) + list(quotas)
        volume_data = dict(_mapping(doc.get("group_volumes", {}), "group_volumes"))
    else:
        profile_data, quota_data, volume_data = data, list(quotas), {}
    for group, volumes in (group_volumes or {}).items():
        if group in volume_data:
            raise _fail(f"group_volumes.{group}", "declared twice (in the profiles document and in configuration)")
        volume_data[group] = volumes

    profiles: list[Profile] = []
    profile_quotas: list[Quota] = []
    for i, item in enumerate(_list(profile_data, "profiles")):
        profile, pq = _profile(item, f"profiles[{i}]")
        if any(p.slug == profile.slug for p in profiles):
            raise _fail(f"profiles[{i}].slug", f"duplicate profile slug {profile.slug!r}")
        profiles.append(profile)
        profile_quotas.extend(pq)
    defaults = [p.slug for p in profiles if p.default]
    if len(defaults) > 1:
        raise _fail("profiles", f"more than one default profile: {', '.join(defaults)}")
    return Catalog(
        profiles=tuple(profiles),
        quotas=tuple(profile_quotas + parse_quotas(quota_data, profiles)),
        group_volumes={
            _string(group, "group_volumes"): _volumes(volumes, f"group_volumes.{group}")
            for group, volumes in volume_data.items()
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# Access and choice validation
# ---------------------------------------------------------------------------------------------------------------


def visible_profiles(profiles: Iterable[Profile], user: str, groups: Iterable[str], is_admin: bool) -> list[Profile]:
    """The profiles this user may use, in declaration order."""
    groups = groups if isinstance(groups, frozenset) else frozenset(groups)
    return [p for p in profiles if p.access.allows(user, groups, is_admin)]


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


def _slugs(items) -> str:
    return ", ".join(item.slug for item in items) or "(none)"


def validate_choice(
    profiles: Sequence[Profile], user_options, user: str, groups: Iterable[str], is_admin: bool
) -> ResolvedChoice:
    """Check a user's choice and resolve it, or raise :class:`ChoiceError` (400) / :class:`AccessDenied` (403).

    ``user_options`` is ``{"profile": slug, "image": slug}`` or ``{"profile": slug, "other_image": "ref"}``; every
    key is optional (missing means the default) and any other key is refused.
    """
    groups = groups if isinstance(groups, frozenset) else frozenset(groups)
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, Mapping):
        raise ChoiceError(f"user_options must be an object, got {type(user_options).__name__}")
    unknown = sorted(str(k) for k in user_options if k not in USER_OPTION_KEYS)
    if unknown:
        raise ChoiceError(f"unknown option {unknown[0]!r}; allowed options: {', '.join(USER_OPTION_KEYS)}")
    for key, value in user_options.items():
        if value is not None and not isinstance(value, str):
            raise ChoiceError(f"option {key!r} must be a string, got {type(value).__name__} {value!r}")

    visible = visible_profiles(profiles, user, groups, is_admin)
    slug = user_options.get("profile") or None
    if slug is None:
        profile = default_profile(visible)
        if profile is None:
            raise AccessDenied("no profile is available to you; ask an administrator for access")
    else:
        profile = next((p for p in visible if p.slug == slug), None)
        if profile is None:
            if any(p.slug == slug for p in profiles):
                raise AccessDenied(f"profile {slug!r} is not available to you; choose one of: {_slugs(visible)}")
            raise ChoiceError(f"unknown profile {slug!r}; choose one of: {_slugs(visible)}")

    image_slug = user_options.get("image") or None
    other = user_options.get("other_image") or None
    if image_slug and other:
        raise ChoiceError("give either 'image' or 'other_image', not both")
    if other is not None:
        other = other.strip()
        if profile.other_image_pattern is None:
            raise AccessDenied(
                f"profile {profile.slug!r} does not allow another image; choose one of: {_slugs(profile.images)}"
            )
        if not re.fullmatch(profile.other_image_pattern, other):
            raise AccessDenied(
                f"image {other!r} is not allowed for profile {profile.slug!r}: "
                f"it must match {profile.other_image_pattern!r}"
            )
        return ResolvedChoice(profile, image=other, image_slug=None, user=user, groups=groups)
    if image_slug is not None:
        image = next((i for i in profile.images if i.slug == image_slug), None)
        if image is None:
            raise ChoiceError(
                f"image {image_slug!r} is not offered by profile {profile.slug!r}; "
                f"choose one of: {_slugs(profile.images)}"
            )
    else:
        image = profile.default_image
    return ResolvedChoice(
        profile,
        image=image.image if image else None,
        image_slug=image.slug if image else None,
        user=user,
        groups=groups,
    )


# ---------------------------------------------------------------------------------------------------------------
# Trait overrides
# ---------------------------------------------------------------------------------------------------------------


def _as_list(value) -> list:
    """KubeSpawner list traits may also be dicts (sorted by key); normalise to a new list."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [copy.deepcopy(value[k]) for k in sorted(value)]
    return copy.deepcopy(list(value))


def _deep_merge(base, new):
    """A new dict: ``new`` merged into ``base`` recursively; a None value removes the key (KubeSpawner's rule)."""
    out = copy.deepcopy(dict(base))
    for key, value in new.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_overrides(base: Mapping, overrides: Mapping) -> dict:
    """New trait values: each override replaces the base value, except dicts, which are merged into the base dict
    (as KubeSpawner's ``kubespawner_override`` does, but without touching either argument)."""
    out = {}
    for name, value in overrides.items():
        current = base.get(name)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[name] = _deep_merge(current, value)
        else:
            out[name] = copy.deepcopy(value)
    return out


def _volume_names(volumes: Iterable) -> set:
    return {v.get("name") for v in volumes if isinstance(v, Mapping)}


def overrides_for(
    choice: ResolvedChoice,
    *,
    base: Mapping | None = None,
    group_volumes: Mapping[str, Sequence[VolumeSpec]] | None = None,
) -> dict:
    """A NEW dict of KubeSpawner trait overrides for a resolved choice.

    ``base`` holds the spawner's current (configured) trait values; dicts and lists are extended, never modified.
    The profile's ``kubespawner_override`` is applied last, so it wins.
    """
    base = base or {}
    profile = choice.profile
    out: dict = {
        "cpu_guarantee": profile.cpu_guarantee,
        "cpu_limit": profile.cpu_limit,
        "mem_guarantee": profile.mem_guarantee,
        "mem_limit": profile.mem_limit,
    }
    out = {k: v for k, v in out.items() if v is not None}
    if choice.image is not None:
        out["image"] = choice.image

    node_selector = {**copy.deepcopy(dict(base.get("node_selector") or {})), **profile.node_selector}
    tolerations = _as_list(base.get("tolerations")) + copy.deepcopy(list(profile.tolerations))
    extra_limits = copy.deepcopy(dict(base.get("extra_resource_limits") or {}))
    if profile.gpu is not None:
        extra_limits[profile.gpu.resource] = str(profile.gpu.count)
        node_selector.update(profile.gpu.node_selector)
        tolerations.extend(t for t in copy.deepcopy(list(profile.gpu.tolerations)) if t not in tolerations)
    if node_selector:
        out["node_selector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if extra_limits:
        out["extra_resource_limits"] = extra_limits

    out["environment"] = {
        **copy.deepcopy(dict(base.get("environment") or {})),
        **profile.env,
        "HUBFLEET_PROFILE": profile.slug,
    }

    extra_volumes = list(profile.volumes)
    for group in sorted(choice.groups):
        extra_volumes.extend((group_volumes or {}).get(group, ()))
    if extra_volumes:
        volumes = _as_list(base.get("volumes"))
        mounts = _as_list(base.get("volume_mounts"))
        names = _volume_names(volumes)
        for spec in extra_volumes:
            if spec.name in names:  # a profile volume and a group volume with one name: the first wins
                continue
            names.add(spec.name)
            volumes.append(spec.volume())
            mounts.append(spec.mount())
        out["volumes"] = volumes
        out["volume_mounts"] = mounts

    out["extra_labels"] = {**copy.deepcopy(dict(base.get("extra_labels") or {})), PROFILE_LABEL: profile.slug}

    if profile.kubespawner_override:
        merged_base = {**base, **out}
        out.update(merge_overrides(merged_base, profile.kubespawner_override))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Quotas
# ---------------------------------------------------------------------------------------------------------------


def applicable_quotas(quotas: Iterable[Quota], profile: str, groups: Iterable[str]) -> list[Quota]:
    groups = groups if isinstance(groups, frozenset) else frozenset(groups)
    return [q for q in quotas if q.applies_to(profile, groups)]


class QuotaCounts:
    """Running servers counted once per key, indexed so each quota check is O(1)."""

    __slots__ = ("total", "by_profile", "by_group", "by_group_profile")

    def __init__(self, running: Iterable[RunningServer] = ()):
        self.total = 0
        self.by_profile: Counter = Counter()
        self.by_group: Counter = Counter()
        self.by_group_profile: Counter = Counter()
        seen: set[str] = set()
        for server in running:
            if server.key in seen:
                continue
            seen.add(server.key)
            self.total += 1
            self.by_profile[server.profile] += 1
            for group in server.groups:
                self.by_group[group] += 1
                self.by_group_profile[group, server.profile] += 1

    def count(self, quota: Quota) -> int:
        if quota.group is None:
            return self.by_profile[quota.profile] if quota.profile is not None else self.total
        if quota.profile is None:
            return self.by_group[quota.group]
        return self.by_group_profile[quota.group, quota.profile]


def quota_violation(
    quotas: Iterable[Quota], running: QuotaCounts | Iterable[RunningServer], *, profile: str, groups: Iterable[str]
) -> str | None:
    """The message for the first quota that one more ``profile`` server for a member of ``groups`` would exceed, or
    None if it fits."""
    counts = running if isinstance(running, QuotaCounts) else QuotaCounts(running)
    for quota in applicable_quotas(quotas, profile, groups):
        used = counts.count(quota)
        if used >= quota.max_servers:
            return f"Quota full: {quota.describe()} ({used} running). Stop one or pick another profile."
    return None


# ---------------------------------------------------------------------------------------------------------------
# Display helpers (for the form)
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
