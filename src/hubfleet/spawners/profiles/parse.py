"""Profiles documents -> :class:`~.model.Catalog`: hubfleet's own format and KubeSpawner's ``profile_list``.

Types, required and unknown keys are checked by the JSON Schema in :mod:`.schema` (through
:mod:`hubfleet.yamlfile`); this module checks what a schema cannot (quantities, regular expressions, duplicates,
references) and builds the model. Every error is a :class:`~.model.ProfileConfigError` naming the source, the
profile (by slug), the key and the bad value, with a ``fix``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from ...cullpolicies import CullConfigError, parse_duration
from ...yamlfile import YAMLFileError, load_yaml, validate
from . import schema as _schema
from .model import (
    DEFAULT_GPU_NODE_SELECTOR,
    DEFAULT_GPU_RESOURCE,
    DEFAULT_GPU_TOLERATIONS,
    GPU,
    UNLISTED_SUFFIX,
    Access,
    Catalog,
    GroupRule,
    ImageChoice,
    OptionChoice,
    Profile,
    ProfileConfigError,
    ProfileOption,
    Quota,
    UnlistedChoice,
    VolumeSpec,
)

_SLUG = re.compile(_schema.SLUG_PATTERN)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?\s*$")
_BINARY = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
#: The notebook server's container in KubeSpawner's pod; a sidecar may not take its name.
NOTEBOOK_CONTAINER = "notebook"
_DOCS = "see docs/spawner.md for every profile key"


def _fail(where: str, message: str, fix: str | None = None) -> ProfileConfigError:
    return ProfileConfigError(f"{where}: {message}", fix=fix)


class _Where:
    """Names a key the way an operator finds it: ``profiles.yaml: profile 'gpu': cpu.limit``."""

    def __init__(self, source: str, profile: str):
        self.source, self.profile = source, profile

    def __call__(self, key: str = "") -> str:
        head = f"{self.source}: profile {self.profile!r}"
        return f"{head}: {key}" if key else head


# ---------------------------------------------------------------------------------------------------------------
# Quantities
# ---------------------------------------------------------------------------------------------------------------


def parse_cpu(value, path: str = "cpu") -> float:
    """Cores as a float from ``2``, ``0.5``, ``"1.5"`` or ``"500m"``."""
    bad = _fail(path, f"expected a number of cores like 2, 0.5 or '500m', got {value!r}", fix="write e.g. cpu: 2")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad
    if isinstance(value, str):
        text = value.strip()
        try:
            cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise bad from None
    else:
        cores = float(value)
    if not cores > 0:
        raise _fail(path, f"must be more than 0 cores, got {value!r}")
    return cores


def parse_memory(value, path: str = "memory") -> int:
    """Bytes from an int or a string with a binary suffix: ``"512M"``, ``"4G"``, ``"4Gi"`` (K/M/G/T = Ki/Mi/Gi/Ti,
    as in JupyterHub's ByteSpecification)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _MEMORY.match(value)):
        size = int(float(m.group(1)) * _BINARY[(m.group(2) or "").rstrip("i")])
    else:
        raise _fail(path, f"expected a size like 512M or 4G, got {value!r}", fix="write e.g. memory: 4G")
    if size <= 0:
        raise _fail(path, f"must be more than 0 bytes, got {value!r}")
    return size


def _resource_pair(value, path: str, parse) -> tuple:
    if isinstance(value, Mapping):
        guarantee = parse(value["guarantee"], f"{path}.guarantee") if value.get("guarantee") is not None else None
        limit = parse(value["limit"], f"{path}.limit") if value.get("limit") is not None else None
    else:  # a bare value is both guarantee and limit
        guarantee = limit = parse(value, path)
    if guarantee is not None and limit is not None and guarantee > limit:
        raise _fail(path, f"guarantee {value['guarantee']!r} is more than limit {value['limit']!r}",
                    fix="the guarantee is what the pod is sure to get; make it at most the limit")
    return guarantee, limit


# ---------------------------------------------------------------------------------------------------------------
# Parts of a profile
# ---------------------------------------------------------------------------------------------------------------


def _slug(value: str, where: str) -> str:
    if not _SLUG.match(value):
        raise _fail(where, f"{value!r} is not a valid slug",
                    fix="use lowercase letters, digits and '-', at most 63 characters")
    return value


def slugify(text: str) -> str:
    """A slug from a display name, as KubeSpawner generates missing ``slug``s (python-slugify)."""
    try:
        from slugify import slugify as _slugify  # noqa: PLC0415  (KubeSpawner's own dependency; pure)
    except ImportError:  # pragma: no cover - python-slugify comes with KubeSpawner
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return _slugify(text)


def _string_map(value: Mapping, where: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()}


def _volume(spec: Mapping, where: str) -> VolumeSpec:
    name = _slug(spec["name"], f"{where}.name")
    if not spec["mount_path"].startswith("/"):
        raise _fail(f"{where}.mount_path", f"must be an absolute path, got {spec['mount_path']!r}")
    has_claim, has_source = spec.get("claim") is not None, spec.get("source") is not None
    if has_claim == has_source:
        raise _fail(where, "give exactly one of 'claim' (a PVC name) or 'source' (a Kubernetes volume source)")
    if has_source and len(spec["source"]) != 1:
        raise _fail(f"{where}.source", f"expected one volume source like {{nfs: {{...}}}}, got {dict(spec['source'])!r}")
    return VolumeSpec(
        name=name,
        mount_path=spec["mount_path"],
        read_only=spec.get("read_only", False),
        claim=_slug(spec["claim"], f"{where}.claim") if has_claim else None,
        source=copy.deepcopy(dict(spec["source"])) if has_source else None,
        sub_path=spec.get("sub_path") or None,
    )


def _volumes(value: Sequence, where: str) -> tuple[VolumeSpec, ...]:
    volumes = tuple(_volume(item, f"{where}[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        if volume.name in seen:
            raise _fail(f"{where}[{i}].name", f"duplicate volume name {volume.name!r}")
        seen.add(volume.name)
    return volumes


def _images(spec: Mapping, where) -> tuple[ImageChoice, ...]:
    if "image" in spec and "images" in spec:
        raise _fail(where(), "give either 'image' or 'images', not both")
    if "image" in spec:
        return (ImageChoice(slug="default", display_name=spec["image"], image=spec["image"], default=True),)
    images = []
    for i, item in enumerate(spec.get("images", [])):
        item = {"image": item} if isinstance(item, str) else item
        slug = item.get("slug") or (slugify(item["image"].rsplit("/", 1)[-1]) or "image")
        images.append(ImageChoice(slug=_slug(slug, where(f"images[{i}].slug")),
                                  display_name=item.get("display_name", item["image"]), image=item["image"],
                                  default=item.get("default", False)))
    slugs = [image.slug for image in images]
    for i, slug in enumerate(slugs):
        if slugs.index(slug) != i:
            raise _fail(where(f"images[{i}].slug"), f"duplicate image slug {slug!r}")
    return tuple(images)


def _gpu(value, where: str) -> GPU:
    spec = {"count": value} if isinstance(value, int) else value
    if spec.get("count", 1) < 1:
        raise _fail(f"{where}.count", f"expected a whole number >= 1, got {spec['count']!r}")
    return GPU(
        count=spec.get("count", 1),
        resource=spec.get("resource", DEFAULT_GPU_RESOURCE),
        node_selector=_string_map(spec.get("node_selector", DEFAULT_GPU_NODE_SELECTOR), where),
        tolerations=tuple(dict(t) for t in spec["tolerations"]) if "tolerations" in spec else DEFAULT_GPU_TOLERATIONS,
    )


def _regex(pattern: str, where: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise _fail(where, f"invalid regular expression {pattern!r}: {e}") from e
    return pattern


def _profile_options(value: Mapping, where) -> tuple[ProfileOption, ...]:
    options = []
    for name, spec in value.items():
        if not name or name in ("profile", "other_image") or name.endswith(UNLISTED_SUFFIX):
            raise _fail(where(f"profile_options.{name}"), f"{name!r} cannot name a profile option",
                        fix="pick another name; 'profile' is the profile itself, 'other_image' hubfleet's image")
        choices = tuple(
            OptionChoice(slug=slug, display_name=c.get("display_name", slug), default=c.get("default", False),
                         kubespawner_override=copy.deepcopy(dict(c.get("kubespawner_override", {}))))
            for slug, c in (spec.get("choices") or {}).items()
        )
        if sum(c.default for c in choices) > 1:
            raise _fail(where(f"profile_options.{name}.choices"), "more than one default choice")
        unlisted = None
        u = spec.get("unlisted_choice") or {}
        if u.get("enabled"):
            unlisted = UnlistedChoice(
                display_name=u.get("display_name", ""),
                display_name_in_choices=u.get("display_name_in_choices", "Other..."),
                validation_regex=(_regex(u["validation_regex"], where(f"profile_options.{name}.unlisted_choice"
                                                                      ".validation_regex"))
                                  if u.get("validation_regex") else None),
                validation_message=u.get("validation_message", ""),
                kubespawner_override=copy.deepcopy(dict(u.get("kubespawner_override", {}))),
            )
        if not choices and unlisted is None:
            raise _fail(where(f"profile_options.{name}"), "has no choices and no enabled unlisted_choice",
                        fix="add choices, or unlisted_choice: {enabled: true, ...}")
        options.append(ProfileOption(name=name, display_name=spec.get("display_name", name), choices=choices,
                                     unlisted=unlisted))
    return tuple(options)


def _containers(value: Sequence, where, key: str, taken: set[str]) -> tuple[dict, ...]:
    out = []
    for i, container in enumerate(value):
        name = container["name"]
        if name in taken:
            clash = ("the notebook server's container" if name == NOTEBOOK_CONTAINER
                     else "another init or sidecar container")
            raise _fail(where(f"{key}[{i}].name"), f"{name!r} is already the name of {clash}",
                        fix=f"rename this container, e.g. {name}-sidecar")
        taken.add(name)
        out.append(copy.deepcopy(dict(container)))
    return tuple(out)


def _claim_window(value, where: str) -> float:
    try:
        return parse_duration(value, field=where, zero_ok=True)
    except CullConfigError as e:
        raise ProfileConfigError(str(e), fix="give seconds or a duration such as \"10m\"; 0 starts the server for "
                                 "the user at once") from e


def _profile(spec: Mapping, source: str) -> tuple[Profile, list[Quota]]:
    slug = spec.get("slug") or slugify(spec["display_name"])
    where = _Where(source, slug)
    _slug(slug, where("slug"))
    cpu = _resource_pair(spec["cpu"], where("cpu"), parse_cpu) if "cpu" in spec else (None, None)
    mem = _resource_pair(spec["memory"], where("memory"), parse_memory) if "memory" in spec else (None, None)
    other = spec.get("other_image")
    env = _string_map(spec.get("env", {}), where("env"))
    for name in env:
        if not _ENV_NAME.match(name):
            raise _fail(where("env"), f"invalid environment variable name {name!r}",
                        fix="use letters, digits, '_', '-' and '.', not starting with a digit")
    options = _profile_options(spec.get("profile_options", {}), where)
    images = _images(spec, where)
    if (images or other) and any(o.name == "image" for o in options):
        raise _fail(where("profile_options.image"), "clashes with the profile's 'image'/'images'/'other_image'",
                    fix="declare the images one way: hubfleet's images or a profile option")
    taken = {NOTEBOOK_CONTAINER}
    profile = Profile(
        slug=slug,
        display_name=spec.get("display_name", slug),
        description=spec.get("description", ""),
        default=spec.get("default", False),
        cpu_guarantee=cpu[0], cpu_limit=cpu[1], mem_guarantee=mem[0], mem_limit=mem[1],
        gpu=_gpu(spec["gpu"], where("gpu")) if spec.get("gpu") else None,
        images=images,
        other_image_pattern=_regex(other["pattern"], where("other_image.pattern")) if other else None,
        env=env,
        volumes=_volumes(spec.get("volumes", []), where("volumes")),
        node_selector=_string_map(spec.get("node_selector", {}), where("node_selector")),
        tolerations=tuple(dict(t) for t in spec.get("tolerations", [])),
        kubespawner_override=copy.deepcopy(dict(spec.get("kubespawner_override", {}))),
        options=options,
        access=Access(groups=frozenset((spec.get("access") or {}).get("groups", [])),
                      users=frozenset((spec.get("access") or {}).get("users", [])),
                      admin_only=(spec.get("access") or {}).get("admin_only", False)),
        init_containers=_containers(spec.get("init_containers", []), where, "init_containers", taken),
        extra_containers=_containers(spec.get("extra_containers", []), where, "extra_containers", taken),
        image_pull_policy=spec.get("image_pull_policy"),
        scheduling_strategy=spec.get("scheduling_strategy"),
        priority_class_name=spec.get("priority_class_name"),
        queue=bool(spec.get("queue", False)),
        claim_window=_claim_window(spec["claim_window"], where("claim_window")) if "claim_window" in spec else None,
    )
    quotas = _profile_quotas(spec.get("quota"), slug)
    if spec.get("max_per_user") is not None:
        quotas.append(Quota(spec["max_per_user"], profile=slug, per_user=True))
    return profile, quotas


def _profile_quotas(value, slug: str) -> list[Quota]:
    if value is None:
        return []
    spec = {"max_servers": value} if isinstance(value, int) else value
    quotas = [Quota(spec["max_servers"], profile=slug)] if spec.get("max_servers") is not None else []
    quotas.extend(Quota(limit, profile=slug, group=group) for group, limit in (spec.get("groups") or {}).items())
    return quotas


# ---------------------------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------------------------


def _detail(e: YAMLFileError, source: str) -> str:
    return e.message.removeprefix(f"{source}: {e.key_path}: ")


def _schema_error(e: YAMLFileError, doc, source: str) -> ProfileConfigError:
    """A schema error re-worded to name the profile by its slug."""
    where, detail = e.key_path, _detail(e, source)
    m = re.match(r"^(?:profiles)?\[(\d+)\]\.?(.*)$", where)
    entry = None
    if m:
        entries = doc.get("profiles", []) if isinstance(doc, Mapping) else doc
        entry = entries[int(m.group(1))] if int(m.group(1)) < len(entries) else {}
        name = entry.get("slug") or entry.get("display_name") if isinstance(entry, Mapping) else None
        label = f"profile {name!r}" if name else f"profiles[{m.group(1)}]"
        where = f"{label}: {m.group(2)}" if m.group(2) else label
    if where == "(top level)":
        where = "document"
    fix = _DOCS
    if "is not valid under any of the given schemas" in detail and m and not (
            isinstance(entry, Mapping) and (entry.get("slug") or entry.get("display_name"))):
        detail = "a profile needs a 'slug' (or KubeSpawner's 'display_name', from which a slug is made)"
        fix = "add slug: <name>"
    elif "unknown key" in detail:
        fix = "remove the key or correct its spelling; " + _DOCS
    elif "'image' is required" in detail:
        fix = "give the container an image, e.g. image: busybox:1.36"
    return ProfileConfigError(f"{source}: {where}: {detail}", fix=fix)


def validate_document(doc, source: str = "profiles"):
    """Check a profiles document (list or mapping) against the schema; a :class:`ProfileConfigError` otherwise."""
    schema = _schema.DOCUMENT
    try:
        validate(doc, schema, source=source)
    except YAMLFileError as e:
        raise _schema_error(e, doc, source) from e
    return doc


def profile_list_entries(profile_list, source: str = "KubeSpawner.profile_list") -> list:
    """KubeSpawner's ``profile_list`` (a list, or 7.1's dict form sorted by key as KubeSpawner sorts it) as a list
    of entries, checked against the same schema as hubfleet's profiles."""
    if profile_list is None:
        return []
    entries = [profile_list[k] for k in sorted(profile_list)] if isinstance(profile_list, Mapping) else profile_list
    try:
        validate(entries, _schema.PROFILE_LIST, source=source)
    except YAMLFileError as e:
        raise _schema_error(e, entries, source) from e
    return list(entries)


def parse_quotas(data: Iterable[Mapping], profiles: Iterable[Profile] = (), source: str = "profiles") -> list[Quota]:
    """Quotas from ``{max_servers, profile?, group?, per_user?}`` mappings; ``profile`` must name a declared one."""
    slugs = [p.slug for p in profiles]
    quotas = []
    for i, spec in enumerate(data):
        validate_quota(spec, f"{source}: quotas[{i}]")
        profile = spec.get("profile")
        if profile is not None and profile not in slugs:
            raise _fail(f"{source}: quotas[{i}].profile", f"unknown profile {profile!r}; declared: "
                        f"{', '.join(slugs) or '(none)'}", fix="name a declared profile's slug")
        quotas.append(Quota(spec["max_servers"], profile=profile, group=spec.get("group"),
                            per_user=spec.get("per_user", False)))
    return quotas


def validate_quota(spec, where: str) -> None:
    try:
        validate(spec, _schema.QUOTA, source=where)
    except YAMLFileError as e:
        raise ProfileConfigError(e.message.replace(": (top level)", ""), fix=_DOCS) from e


def parse_catalog(data, *, quotas=(), group_volumes=None, profile_list=None, max_servers_per_user=None,
                  source: str = "profiles") -> Catalog:
    """A :class:`Catalog` from a profiles document (a list of profiles, or a mapping with ``profiles``, ``quotas``,
    ``group_volumes``, ``group_rules``, ``max_servers_per_user``) plus, optionally, KubeSpawner's ``profile_list``
    entries and quotas / group volumes / a per-user limit from traitlets configuration."""
    validate_document(data, source)
    doc = dict(data) if isinstance(data, Mapping) else {"profiles": list(data or [])}
    entries = [(e, source) for e in doc.get("profiles", [])]
    entries += [(e, "KubeSpawner.profile_list") for e in profile_list_entries(profile_list)]
    volume_data = dict(doc.get("group_volumes", {}))
    for group, volumes in (group_volumes or {}).items():
        if group in volume_data:
            raise _fail(f"{source}: group_volumes.{group}", "declared twice (in the profiles document and in "
                        "configuration)", fix="keep one of the two")
        volume_data[group] = volumes
    try:
        validate(volume_data, _schema.DOCUMENT["anyOf"][2]["properties"]["group_volumes"], source=source)
    except YAMLFileError as e:
        raise ProfileConfigError(f"{source}: group_volumes.{e.key_path}: {_detail(e, source)}",
                                 fix=_DOCS) from e

    profiles: list[Profile] = []
    profile_quotas: list[Quota] = []
    for entry, where in entries:
        profile, pq = _profile(entry, where)
        if any(p.slug == profile.slug for p in profiles):
            raise _fail(f"{where}: profile {profile.slug!r}", "duplicate profile slug",
                        fix="give every profile its own slug")
        profiles.append(profile)
        profile_quotas.extend(pq)
    defaults = [p.slug for p in profiles if p.default]
    if len(defaults) > 1:
        raise _fail(source, f"more than one default profile: {', '.join(defaults)}", fix="keep default: true on one")
    limit = doc.get("max_servers_per_user", max_servers_per_user)
    per_user = [Quota(limit, per_user=True)] if limit is not None else []
    return Catalog(
        profiles=tuple(profiles),
        quotas=tuple(per_user + profile_quotas + parse_quotas(list(doc.get("quotas", [])) + list(quotas), profiles,
                                                              source)),
        group_volumes={group: _volumes(volumes, f"{source}: group_volumes.{group}")
                       for group, volumes in volume_data.items()},
        group_rules=tuple(GroupRule(r["group"], r.get("priority_class_name")) for r in doc.get("group_rules", [])),
    )


def parse_profiles(data) -> list[Profile]:
    """Profiles from a list of mappings (or a document with a ``profiles`` key)."""
    return list(parse_catalog(data).profiles)


def read_document(path: str | os.PathLike):
    """Read a profiles YAML file (blocking: call it off the event loop); :func:`parse_catalog` validates it."""
    try:
        return load_yaml(path, what="profiles file")
    except YAMLFileError as e:
        raise ProfileConfigError(str(e.message), fix=e.fix) from e
