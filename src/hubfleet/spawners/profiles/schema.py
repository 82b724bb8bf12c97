"""The JSON Schema of a profiles document (``hubfleet.yamlfile`` validates files and inline configuration with it).

One profile entry takes hubfleet's keys and KubeSpawner 7.1's ``profile_list`` keys side by side, so a site's
existing ``profile_list`` entries validate as they are and hubfleet's additions (``access``, ``quota``,
``max_per_user``, placement, priority, pod parts) are extra keys on the same entries. What a schema cannot say
(quantities, regular expressions, duplicates, cross-references) is checked in :mod:`.parse`.
"""

from __future__ import annotations

SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
_COUNT = {"type": "integer", "minimum": 0}
_QUANTITY = {"type": ["number", "string"]}
_RESOURCE = {
    "anyOf": [
        _QUANTITY,
        {"type": "object", "additionalProperties": False,
         "properties": {"guarantee": _QUANTITY, "limit": _QUANTITY}},
    ]
}
_TOLERATIONS = {
    "type": "array",
    "items": {
        "type": "object", "additionalProperties": False,
        "properties": {"key": {"type": "string"}, "operator": {"enum": ["Equal", "Exists"]},
                       "value": {"type": "string"}, "effect": {"type": "string"},
                       "tolerationSeconds": {"type": "integer"}},
    },
}
_VOLUME = {
    "type": "object", "additionalProperties": False, "required": ["name", "mount_path"],
    "properties": {"name": {"type": "string"}, "mount_path": {"type": "string"}, "read_only": {"type": "boolean"},
                   "claim": {"type": "string"}, "source": {"type": "object"}, "sub_path": {"type": "string"}},
}
_VOLUMES = {"type": "array", "items": _VOLUME}
#: A Kubernetes container as KubeSpawner's ``init_containers`` / ``extra_containers`` take it (camelCase keys);
#: the whole manifest is checked against the Kubernetes OpenAPI schema by the tests (kubernetes-validate).
_CONTAINER = {
    "type": "object", "required": ["name", "image"],
    "properties": {"name": {"type": "string", "pattern": DNS_LABEL}, "image": {"type": "string", "minLength": 1},
                   "command": {"type": "array", "items": {"type": "string"}},
                   "args": {"type": "array", "items": {"type": "string"}},
                   "env": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                   "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                   "restartPolicy": {"enum": ["Always"]}},
}
_OVERRIDE = {"type": "object"}
_CHOICE = {
    "type": "object", "additionalProperties": False,
    "properties": {"display_name": {"type": "string"}, "default": {"type": "boolean"},
                   "kubespawner_override": _OVERRIDE},
}
_UNLISTED = {
    "type": "object", "additionalProperties": False,
    "properties": {"enabled": {"type": "boolean"}, "display_name": {"type": "string"},
                   "display_name_in_choices": {"type": "string"}, "validation_regex": {"type": "string"},
                   "validation_message": {"type": "string"}, "kubespawner_override": _OVERRIDE},
}
_PROFILE_OPTION = {
    "type": "object", "additionalProperties": False,
    "properties": {"display_name": {"type": "string"},
                   "choices": {"type": "object", "additionalProperties": _CHOICE},
                   "unlisted_choice": _UNLISTED},
}

PROFILE = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["slug"]}, {"required": ["display_name"]}],
    "properties": {
        # shared with KubeSpawner's profile_list
        "slug": {"type": "string"},
        "display_name": {"type": "string"},
        "description": {"type": "string"},
        "default": {"type": "boolean"},
        "kubespawner_override": _OVERRIDE,
        "profile_options": {"type": "object", "additionalProperties": _PROFILE_OPTION},
        # hubfleet's
        "cpu": _RESOURCE,
        "memory": _RESOURCE,
        "gpu": {"anyOf": [{"type": "integer"}, {
            "type": "object", "additionalProperties": False,
            "properties": {"count": {"type": "integer", "minimum": 1}, "resource": {"type": "string"},
                           "node_selector": _STRING_MAP, "tolerations": _TOLERATIONS}}]},
        "image": {"type": "string", "minLength": 1},
        "images": {"type": "array", "items": {"anyOf": [{"type": "string"}, {
            "type": "object", "additionalProperties": False, "required": ["image"],
            "properties": {"slug": {"type": "string"}, "display_name": {"type": "string"},
                           "image": {"type": "string", "minLength": 1}, "default": {"type": "boolean"}}}]}},
        "other_image": {"type": "object", "additionalProperties": False, "required": ["pattern"],
                        "properties": {"pattern": {"type": "string", "minLength": 1}}},
        "env": _STRING_MAP,
        "volumes": _VOLUMES,
        "node_selector": _STRING_MAP,
        "tolerations": _TOLERATIONS,
        "access": {"type": "object", "additionalProperties": False,
                   "properties": {"groups": {"type": "array", "items": {"type": "string"}},
                                  "users": {"type": "array", "items": {"type": "string"}},
                                  "admin_only": {"type": "boolean"}}},
        "quota": {"anyOf": [_COUNT, {"type": "null"}, {
            "type": "object", "additionalProperties": False,
            "properties": {"max_servers": _COUNT, "groups": {"type": "object", "additionalProperties": _COUNT}}}]},
        "max_per_user": _COUNT,
        "queue": {"type": "boolean"},
        "claim_window": {"type": ["number", "string"]},
        "init_containers": {"type": "array", "items": _CONTAINER},
        "extra_containers": {"type": "array", "items": _CONTAINER},
        "image_pull_policy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "scheduling_strategy": {"enum": ["pack", "spread"]},
        "priority_class_name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
    },
}

QUOTA = {
    "type": "object", "additionalProperties": False, "required": ["max_servers"],
    "properties": {"max_servers": _COUNT, "profile": {"type": "string"}, "group": {"type": "string"},
                   "per_user": {"type": "boolean"}},
}

GROUP_RULE = {
    "type": "object", "additionalProperties": False, "required": ["group"],
    "properties": {"group": {"type": "string", "minLength": 1},
                   "priority_class_name": PROFILE["properties"]["priority_class_name"]},
}

DOCUMENT = {
    "anyOf": [
        {"type": "null"},
        {"type": "array", "items": PROFILE},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "profiles": {"type": "array", "items": PROFILE},
                "quotas": {"type": "array", "items": QUOTA},
                "group_volumes": {"type": "object", "additionalProperties": _VOLUMES},
                "group_rules": {"type": "array", "items": GROUP_RULE},
                "max_servers_per_user": _COUNT,
            },
        },
    ]
}

#: KubeSpawner's ``profile_list`` entries (7.1's dict form ``{key: profile}`` is checked as its values, sorted by key).
PROFILE_LIST = {"type": "array", "items": PROFILE}
