"""What kube-apiserver refuses, with its code, reason and message shape. Pure.

- decoding (400 BadRequest): a body that is not an object, values of the wrong JSON type, unknown fields under
  ``fieldValidation=Strict`` (``strict decoding error: unknown field "spec.foo"``; ``Warn`` answers them in a
  ``Warning`` header, ``Ignore`` drops them silently; unknown fields are always dropped, as Go's decoder does);
- the request (400): name or namespace in the body differing from the URL;
- validation (422 Invalid, every error of the object in one ``Kind "name" is invalid: [...]`` message with
  ``details.causes``): names per kind (DNS-1123 subdomain, DNS-1123 label, DNS-1035 label, path segment), label
  keys and values, annotations over 256 KiB in total, pod containers (names, images, quantities), and on update
  the pod spec fields that cannot change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .resources import RESOURCES, ResourceType
from .schemas import definition, prune_unknown, type_errors
from .status import APIError

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request body limit
MAX_ANNOTATIONS = 256 * 1024  # TotalAnnotationSizeLimitB

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = rf"({_QUALIFIED_NAME})?"

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 f"validation is '{_DNS1123_SUBDOMAIN}')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             f"and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             f"'{_DNS1123_LABEL}')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex "
               f"used for validation is '{_DNS1035_LABEL}')")
QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                 "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                 f"'{_QUALIFIED_NAME}')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                   "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
                   f"regex used for validation is '{_LABEL_VALUE}')")

# how each kind's names are checked (kube-apiserver's ValidateObjectMeta name functions)
_NAME_RULES = {"namespaces": "label", "services": "dns1035", "roles": "path", "rolebindings": "path",
               "clusterroles": "path", "clusterrolebindings": "path"}
POD_MUTABLE = ("`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
               "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
               "(allow it to be set to 1 if it was previously negative)")


@dataclass
class FieldError:
    field: str
    type: str  # Invalid value | Required value | Too long | Forbidden | Duplicate value | Unsupported value
    detail: str = ""
    value: Any = None

    def text(self) -> str:
        if self.type == "Invalid value":
            return f"{self.field}: Invalid value: {json.dumps(self.value)}: {self.detail}"
        return f"{self.field}: {self.type}" + (f": {self.detail}" if self.detail else "")

    def cause(self) -> dict:
        reason = {"Invalid value": "FieldValueInvalid", "Required value": "FieldValueRequired",
                  "Too long": "FieldValueTooLong", "Forbidden": "FieldValueForbidden",
                  "Duplicate value": "FieldValueDuplicate"}.get(self.type, "FieldValueInvalid")
        return {"reason": reason, "message": self.text().split(": ", 1)[1], "field": self.field}


def invalid(r: ResourceType, name: str, errors: list[FieldError]) -> APIError:
    texts = [e.text() for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = {"name": name, "kind": r.kind, "causes": [e.cause() for e in errors]}
    if r.group:
        details["group"] = r.group
    return APIError(422, "Invalid", f'{r.kind} "{name}" is invalid: {joined}', details)


def check_name(value: Any, rule: str, field: str) -> list[FieldError]:
    if not isinstance(value, str) or not value:
        return [FieldError(field, "Required value", "name or generateName is required")]
    if rule == "path":
        if value in (".", "..") or "/" in value or "%" in value:
            return [FieldError(field, "Invalid value", "may not contain '/' or '%' and may not be '.' or '..'", value)]
        return []
    limit, regex, msg = {"label": (63, _DNS1123_LABEL, LABEL_MSG), "dns1035": (63, _DNS1035_LABEL, DNS1035_MSG),
                         "subdomain": (253, _DNS1123_SUBDOMAIN, SUBDOMAIN_MSG)}[rule]
    if len(value) > limit:
        return [FieldError(field, "Invalid value", f"must be no more than {limit} characters", value)]
    if not re.fullmatch(regex, value):
        return [FieldError(field, "Invalid value", msg, value)]
    return []


def check_labels(labels: Any, field: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in (labels or {}).items():
        errors += check_qualified_key(key, field)
        if not isinstance(value, str) or len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            detail = "must be no more than 63 characters" if isinstance(value, str) and len(value) > 63 \
                else LABEL_VALUE_MSG
            errors.append(FieldError(field, "Invalid value", detail, value))
    return errors


def check_qualified_key(key: str, field: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix and (len(prefix) > 253 or not re.fullmatch(_DNS1123_SUBDOMAIN, prefix)):
        errors.append(FieldError(field, "Invalid value", "prefix part " + SUBDOMAIN_MSG, key))
    if not name or len(name) > 63 or not re.fullmatch(_QUALIFIED_NAME, name):
        detail = "name part must be no more than 63 characters" if len(name) > 63 else QUALIFIED_MSG
        errors.append(FieldError(field, "Invalid value", detail, key))
    return errors


def check_metadata(r: ResourceType, meta: dict) -> list[FieldError]:
    errors: list[FieldError] = []
    name = meta.get("name")
    if name or not meta.get("generateName"):
        errors += check_name(name, _NAME_RULES.get(r.plural, "subdomain"), "metadata.name")
    errors += check_labels(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations") or {}
    for key in annotations:
        errors += check_qualified_key(key, "metadata.annotations")
    size = sum(len(k) + len(str(v)) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS:
        errors.append(FieldError("metadata.annotations", "Too long", f"may not be more than {MAX_ANNOTATIONS} bytes"))
    return errors


def check_pod_spec(spec: Any) -> list[FieldError]:
    from hubfleet.quantity import QuantityError, parse_quantity

    if not isinstance(spec, dict):
        return [FieldError("spec", "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [FieldError("spec.containers", "Required value")]
    errors: list[FieldError] = []
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            where = f"spec.{group}[{i}]"
            name = c.get("name")
            if not name:
                errors.append(FieldError(f"{where}.name", "Required value"))
            else:
                errors += check_name(name, "label", f"{where}.name")
                if name in seen:
                    errors.append(FieldError(f"{where}.name", "Duplicate value", value=name))
                seen.add(name)
            if not c.get("image"):
                errors.append(FieldError(f"{where}.image", "Required value"))
            for kind in ("requests", "limits"):
                for res, q in ((c.get("resources") or {}).get(kind) or {}).items():
                    try:
                        if parse_quantity(q, field=f"{where}.resources.{kind}.{res}") < 0:
                            raise QuantityError("negative")
                    except QuantityError:
                        errors.append(FieldError(f"{where}.resources.{kind}.{res}", "Invalid value",
                                                 "must be a quantity such as 2, '500m' or '4Gi', not negative", q))
            for j, m in enumerate(c.get("volumeMounts") or []):
                sub = m.get("subPath") or ""
                if sub.startswith("/") or ".." in sub.split("/"):
                    errors.append(FieldError(f"{where}.volumeMounts[{j}].subPath", "Invalid value",
                                             "must not contain '..'" if not sub.startswith("/")
                                             else "must be a relative path", sub))
    for i, v in enumerate(spec.get("volumes") or []):
        for kind in ("secret", "configMap"):
            for j, item in enumerate((v.get(kind) or {}).get("items") or []):
                path = item.get("path") or ""
                if path.startswith("/") or ".." in path.split("/"):
                    errors.append(FieldError(f"spec.volumes[{i}].{kind}.items[{j}].path", "Invalid value",
                                             "must not contain '..'" if not path.startswith("/")
                                             else "must be a relative path", path))
    return errors


def check_secret_keys(data: Any, field: str) -> list[FieldError]:
    errors = []
    for key in data or {}:
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", key) or key in (".", "..") or key.startswith(".."):
            errors.append(FieldError(f"{field}[{key}]", "Invalid value", "a valid config key must consist of "
                                     "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                                     "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')", key))
    return errors


def decode(r: ResourceType, body: Any, directive: str) -> tuple[dict, list[str]]:
    """Decode a request body as kube-apiserver's JSON decoder does: 400 for a wrong type, unknown fields pruned
    (400 under Strict); returns the object and the warnings for the `Warning` header."""
    where = f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}'
    if not isinstance(body, dict):
        raise APIError(400, "BadRequest", f"{where}: the body must be a JSON object, got {type(body).__name__}")
    schema = definition(r.definition)
    errors = type_errors(body, schema)
    if errors:
        raise APIError(400, "BadRequest", f"{where}: json: cannot unmarshal {errors[0]}")
    unknown = prune_unknown(body, schema)
    directive = directive or "Warn"
    if directive not in ("Strict", "Warn", "Ignore"):
        raise APIError(400, "BadRequest", f"fieldValidation must be one of Ignore, Warn or Strict, not {directive!r}")
    if unknown and directive == "Strict":
        joined = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise APIError(400, "BadRequest", f"{where}: strict decoding error: {joined}")
    return body, ([f'unknown field "{u}"' for u in unknown] if directive == "Warn" else [])


def check_url_match(r: ResourceType, body: dict, name: str | None, namespace: str | None) -> None:
    meta = body.get("metadata") or {}
    if name is not None and meta.get("name") and meta["name"] != name:
        raise APIError(400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name on the "
                       f"URL ({name})")
    if r.namespaced and namespace and meta.get("namespace") and meta["namespace"] != namespace:
        raise APIError(400, "BadRequest", f"the namespace of the provided object ({meta['namespace']}) does not "
                       f"match the namespace sent on the request ({namespace})")


def validate(r: ResourceType, obj: dict, old: dict | None = None) -> None:
    """422 Invalid with every error of `obj` (a create, or an update of `old`)."""
    meta = obj.get("metadata") or {}
    errors = check_metadata(r, meta)
    if r.plural == "pods":
        errors += check_pod_spec(obj.get("spec"))
        if old is not None and not errors:
            errors += check_pod_update(old.get("spec") or {}, obj.get("spec") or {})
    if r.plural in ("secrets", "configmaps"):
        for key in ("data", "stringData", "binaryData"):
            errors += check_secret_keys(obj.get(key), key)
    if errors:
        raise invalid(r, meta.get("name") or meta.get("generateName") or "", errors)


def check_pod_update(old: dict, new: dict) -> list[FieldError]:
    def comparable(spec: dict) -> dict:
        spec = json.loads(json.dumps(spec))
        for group in ("containers", "initContainers"):
            for c in spec.get(group) or []:
                c.pop("image", None)
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"):
            spec.pop(key, None)
        return spec

    if comparable(old) != comparable(new):
        return [FieldError("spec", "Forbidden", f"pod updates may not change fields other than {POD_MUTABLE}")]
    return []


def check_resource_version(r: ResourceType, body: dict, current: dict, name: str) -> None:
    want = (body.get("metadata") or {}).get("resourceVersion")
    if want and want != current["metadata"]["resourceVersion"]:
        what = f"{r.plural}.{r.group}" if r.group else r.plural
        raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {what} "{name}": the object has been '
                       "modified; please apply your changes to the latest version and try again",
                       {"name": name, "kind": r.plural})


__all__ = ["MAX_BODY", "RESOURCES", "decode", "validate", "check_url_match", "check_resource_version"]
