"""What a container's environment holds, as a kubelet builds it: ``envFrom`` (ConfigMaps, Secrets, with a prefix),
``env`` values and ``valueFrom`` (the downward API's ``fieldRef``, ``secretKeyRef``, ``configMapKeyRef``), then
Kubernetes' ``$(VAR)`` expansion; and the translation the process kubelet needs to run a container as a local
process (``0.0.0.0`` becomes the pod IP, paths under a mount path become the host directories).

A reference that cannot be resolved fails the pod as a kubelet does (``CreateContainerConfigError``), unless it is
``optional``.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path


class PodFailure(Exception):
    """A pod that cannot run, with the reason a kubelet reports (``ErrImagePull``, ``CreateContainerConfigError``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def container_env(store, pod: dict, container: dict, *, ip: str | None) -> dict[str, str]:
    """The container's own variables (``envFrom``, then ``env``; later ones win), before ``$(VAR)`` expansion."""
    meta = pod["metadata"]
    ns = meta.get("namespace", "default")
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            obj = store.find("configmaps", ns, src["configMapRef"].get("name")) or {}
            env.update({prefix + k: str(v) for k, v in (obj.get("data") or {}).items()})
        if "secretRef" in src:
            obj = store.find("secrets", ns, src["secretRef"].get("name")) or {}
            env.update({prefix + k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
    for item in container.get("env") or []:
        name = item.get("name")
        if "value" in item:
            env[name] = str(item["value"])
        elif "valueFrom" in item:
            value = value_from(store, pod, item["valueFrom"], ip=ip)
            if value is not None:
                env[name] = value
    return env


def value_from(store, pod: dict, src: dict, *, ip: str | None) -> str | None:
    """One ``valueFrom``: None for an optional reference that is missing."""
    meta = pod["metadata"]
    ns = meta.get("namespace", "default")
    if "fieldRef" in src:
        path = src["fieldRef"].get("fieldPath", "")
        values = {"metadata.name": meta.get("name", ""), "metadata.namespace": ns, "metadata.uid": meta.get("uid", ""),
                  "spec.nodeName": pod["spec"].get("nodeName", ""), "status.podIP": ip or "",
                  "status.hostIP": "127.0.0.1", "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "")}
        m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        return values.get(path, "")
    for key, resource, kind in (("secretKeyRef", "secrets", "secret"), ("configMapKeyRef", "configmaps", "configmap")):
        if key not in src:
            continue
        ref = src[key]
        obj = store.find(resource, ns, ref.get("name"))
        if obj is None or ref.get("key") not in (obj.get("data") or {}):
            if ref.get("optional"):
                return None
            raise PodFailure("CreateContainerConfigError",
                             f'{kind} "{ref.get("name")}" key "{ref.get("key")}" not found')
        value = obj["data"][ref["key"]]
        return base64.b64decode(value).decode() if resource == "secrets" else str(value)
    return None


_VAR_RE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of env values."""
    return _VAR_RE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def translate_path(path: str, mounts: list[tuple[str, Path]]) -> str:
    """A path inside the pod, as the host directory it is mounted from (unchanged when under no mount)."""
    for mount_path, host in mounts:
        if path == mount_path or path.startswith(mount_path + "/"):
            return str(host) + path[len(mount_path):]
    return path


def translate(value: str, ip: str, mounts: list[tuple[str, Path]]) -> str:
    """What a value means inside the pod, made to mean the same outside: 0.0.0.0 -> pod IP, mount paths -> dirs."""
    value = value.replace("0.0.0.0", ip)
    for mount_path, host in mounts:
        if mount_path == "/":
            continue
        value = re.sub(rf"(?<![\w/.-]){re.escape(mount_path)}(?=/|$|[\s:;,'\"])", str(host), value)
    return value
