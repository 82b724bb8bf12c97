"""A resolved choice -> a NEW dict of KubeSpawner trait overrides. Nothing here modifies the configured values or
the parsed profiles: dicts and lists are copied and extended.

The layers, later ones winning (KubeSpawner's order, with hubfleet's declarative keys first):

1. the spawner's configured traits (``base``);
2. the profile's hubfleet keys (resources, GPU, image, env, volumes, placement, pod parts);
3. the profile's ``kubespawner_override``;
4. each ``profile_options`` entry's chosen ``kubespawner_override``, in declaration order (an unlisted choice's
   with ``{value}`` replaced by what the user typed);
5. hubfleet's ``hubfleet.io/*`` labels and annotations (:mod:`hubfleet.labels`), added to ``extra_labels`` and
   ``extra_annotations`` as they stand after the layers above, so that the configured and the profile's own are
   kept and no layer can drop or alter the ones quotas and the extender rely on.

A dict value is merged recursively into the current dict (``None`` removes a key), anything else replaces it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

from ...labels import pod_annotations, pod_labels
from .model import GroupRule, ResolvedChoice, VolumeSpec


class _Keep(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def recursive_format(obj, /, **kwargs):
    """KubeSpawner's ``recursive_format``: ``str.format_map`` on every string (keys too), unknown fields kept."""
    if isinstance(obj, str):
        return obj.format_map(_Keep(kwargs))
    if isinstance(obj, list):
        return [recursive_format(v, **kwargs) for v in obj]
    if isinstance(obj, Mapping):
        return {recursive_format(k, **kwargs): recursive_format(v, **kwargs) for k, v in obj.items()}
    return obj


def escape_template(value: str) -> str:
    """``value`` kept literal through KubeSpawner's ``str.format`` of ``extra_labels`` and ``extra_annotations``."""
    return value.replace("{", "{{").replace("}", "}}")


def _as_list(value) -> list:
    """KubeSpawner list traits may also be dicts (sorted by key); normalise to a new list."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [copy.deepcopy(value[k]) for k in sorted(value)]
    return copy.deepcopy(list(value))


def deep_merge(base, new):
    """A new dict: ``new`` merged into ``base`` recursively; a None value removes the key (KubeSpawner's rule)."""
    out = copy.deepcopy(dict(base))
    for key, value in new.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
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
            out[name] = deep_merge(current, value)
        else:
            out[name] = value if callable(value) else copy.deepcopy(value)
    return out


def _volume_names(volumes: Iterable) -> set:
    return {v.get("name") for v in volumes if isinstance(v, Mapping)}


def option_overrides(choice: ResolvedChoice) -> list[Mapping]:
    """The ``kubespawner_override`` of each chosen profile option, in declaration order."""
    layers = []
    for option in choice.profile.options:
        if option.name in choice.unlisted_values and option.unlisted is not None:
            layers.append(recursive_format(option.unlisted.kubespawner_override,
                                           value=choice.unlisted_values[option.name]))
        elif option.name in choice.option_choices:
            chosen = next(c for c in option.choices if c.slug == choice.option_choices[option.name])
            layers.append(chosen.kubespawner_override)
    return layers


def _priority_class(choice: ResolvedChoice, rules: Sequence[GroupRule]) -> str | None:
    if choice.profile.priority_class_name:
        return choice.profile.priority_class_name
    for rule in rules:  # the first rule of one of the user's groups
        if rule.group in choice.groups and rule.priority_class_name:
            return rule.priority_class_name
    return None


def overrides_for(
    choice: ResolvedChoice,
    *,
    base: Mapping | None = None,
    group_volumes: Mapping[str, Sequence[VolumeSpec]] | None = None,
    group_rules: Sequence[GroupRule] = (),
    user_slug: str,
    profile_environment_variable: str = "",
) -> dict:
    """A NEW dict of KubeSpawner trait overrides for a resolved choice (``base``: the configured trait values;
    ``user_slug``: the user's name as a label value; ``profile_environment_variable``: the name of an environment
    variable to carry the profile's slug, none when empty)."""
    base = base or {}
    profile = choice.profile
    out: dict = {
        "cpu_guarantee": profile.cpu_guarantee,
        "cpu_limit": profile.cpu_limit,
        "mem_guarantee": profile.mem_guarantee,
        "mem_limit": profile.mem_limit,
        "image_pull_policy": profile.image_pull_policy,
        "priority_class_name": _priority_class(choice, group_rules),
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
    if profile.init_containers:
        out["init_containers"] = _as_list(base.get("init_containers")) + copy.deepcopy(list(profile.init_containers))
    if profile.extra_containers:
        out["extra_containers"] = (_as_list(base.get("extra_containers"))
                                   + copy.deepcopy(list(profile.extra_containers)))

    environment = {**copy.deepcopy(dict(base.get("environment") or {})), **profile.env}
    if profile_environment_variable:
        environment[profile_environment_variable] = profile.slug
    if environment:
        out["environment"] = environment

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

    for layer in [profile.kubespawner_override, *option_overrides(choice)]:
        if layer:
            out.update(merge_overrides({**base, **out}, layer))

    ours = {
        "extra_labels": pod_labels(profile=profile.slug, strategy=profile.scheduling_strategy, user_slug=user_slug),
        "extra_annotations": pod_annotations(username=choice.user, groups=choice.groups),
    }
    for name, keys in ours.items():
        current = out[name] if name in out else base.get(name)
        out[name] = {**copy.deepcopy(dict(current or {})), **{k: escape_template(v) for k, v in keys.items()}}
    return out
