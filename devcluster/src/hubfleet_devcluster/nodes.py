"""Simulated nodes: the nodes file format, its validation and the Node objects built from it. Pure (no I/O but
`load_nodes_file`).

A nodes file is YAML, either a list of nodes or ``{nodes: [...]}``; each node has a ``name``, optional ``labels``
and ``taints`` (``{key, value, effect}``) and an ``allocatable`` with at least cpu and memory (pods: 110 unless
given). ``DEFAULT_NODES_YAML`` below, the nodes a devcluster has unless given a file, is an example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml

from hubfleet.quantity import QuantityError, parse_quantity
from hubfleet.errors import HubfleetError

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class NodesFileError(HubfleetError, ValueError):
    """The nodes file is not valid; the message names the field and the value."""


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    allocatable: dict[str, Decimal] = field(default_factory=dict)
    raw_allocatable: dict[str, str] = field(default_factory=dict)

    def to_object(self) -> dict:
        """The Node object the API serves for this node."""
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", **self.labels}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": [_taint_dict(t) for t in self.taints]} if self.taints else {},
            "status": {
                "capacity": dict(self.raw_allocatable),
                "allocatable": dict(self.raw_allocatable),
                "conditions": _conditions(),
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"kubeletVersion": "v1.37.0-devcluster", "kubeProxyVersion": "v1.37.0-devcluster",
                             "operatingSystem": "linux", "architecture": "amd64", "osImage": "devcluster",
                             "kernelVersion": _kernel(), "containerRuntimeVersion": "process://local",
                             "machineID": self.name, "systemUUID": self.name, "bootID": self.name},
            },
        }


def _conditions() -> list[dict]:
    import datetime

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ok = {"MemoryPressure": ("False", "KubeletHasSufficientMemory"), "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
          "PIDPressure": ("False", "KubeletHasSufficientPID"), "Ready": ("True", "KubeletReady")}
    return [{"type": t, "status": st, "reason": reason, "message": f"devcluster process kubelet: {reason}",
             "lastHeartbeatTime": now, "lastTransitionTime": now} for t, (st, reason) in ok.items()]


def _kernel() -> str:
    import platform

    return platform.release()


def _taint_dict(t: Taint) -> dict:
    d = {"key": t.key, "effect": t.effect}
    if t.value:
        d["value"] = t.value
    return d


DEFAULT_NODES_YAML = """
nodes:
  - name: cpu-1
    labels: {hub.jupyter.org/node-purpose: user}
    allocatable: {cpu: "4", memory: 16Gi, pods: 110}
  - name: cpu-2
    labels: {hub.jupyter.org/node-purpose: user}
    allocatable: {cpu: "4", memory: 16Gi, pods: 110}
  - name: cpu-3
    labels: {hub.jupyter.org/node-purpose: user}
    allocatable: {cpu: "4", memory: 16Gi, pods: 110}
  - name: gpu-1
    labels: {hub.jupyter.org/node-purpose: user, nvidia.com/gpu.present: "true"}
    taints: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
    allocatable: {cpu: "8", memory: 32Gi, nvidia.com/gpu: 2, pods: 110}
"""


def parse_nodes(data: object, *, source: str = "nodes file") -> list[NodeSpec]:
    if isinstance(data, dict) and "nodes" in data:
        data = data["nodes"]
    if not isinstance(data, list) or not data:
        raise NodesFileError(f"{source}: expected a non-empty list of nodes (or `nodes: [...]`), got {data!r}")
    specs: list[NodeSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        where = f"{source}: nodes[{i}]"
        if not isinstance(item, dict):
            raise NodesFileError(f"{where}: expected a mapping, got {item!r}")
        unknown = set(item) - {"name", "labels", "taints", "allocatable"}
        if unknown:
            raise NodesFileError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: name, labels, taints, allocatable")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise NodesFileError(f"{where}.name: {name!r} is not a valid node name (lowercase DNS subdomain)")
        if name in seen:
            raise NodesFileError(f"{where}.name: duplicate node name {name!r}")
        seen.add(name)
        labels = item.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) for k in labels):
            raise NodesFileError(f"{where}.labels: expected a mapping of strings, got {labels!r}")
        labels = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in labels.items()}
        taints = []
        for j, t in enumerate(item.get("taints") or []):
            if not isinstance(t, dict) or not isinstance(t.get("key"), str):
                raise NodesFileError(f"{where}.taints[{j}]: expected {{key, value, effect}}, got {t!r}")
            if t.get("effect") not in _EFFECTS:
                raise NodesFileError(f"{where}.taints[{j}].effect: {t.get('effect')!r} is not one of {', '.join(_EFFECTS)}")
            taints.append(Taint(key=t["key"], effect=t["effect"], value=str(t.get("value", ""))))
        alloc_in = item.get("allocatable")
        if not isinstance(alloc_in, dict):
            raise NodesFileError(f"{where}.allocatable: expected a mapping with at least cpu and memory, got {alloc_in!r}")
        for res in ("cpu", "memory"):
            if res not in alloc_in:
                raise NodesFileError(f"{where}.allocatable.{res}: missing (allocatable needs at least cpu and memory), "
                                     f"got {alloc_in!r}")
        alloc: dict[str, Decimal] = {}
        raw: dict[str, str] = {}
        for res, q in alloc_in.items():
            try:
                alloc[res] = parse_quantity(q, field=f"{where}.allocatable.{res}")
            except QuantityError as e:
                raise NodesFileError(str(e)) from e
            raw[res] = str(q)
        raw.setdefault("pods", "110")
        alloc.setdefault("pods", Decimal(110))
        specs.append(NodeSpec(name=name, labels=labels, taints=tuple(taints), allocatable=alloc, raw_allocatable=raw))
    return specs


def default_nodes() -> list[NodeSpec]:
    return parse_nodes(yaml.safe_load(DEFAULT_NODES_YAML), source="default nodes")


def load_nodes_file(path: str | Path) -> list[NodeSpec]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise NodesFileError(f"cannot read nodes file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise NodesFileError(f"{path}: not valid YAML: {e}") from e
    return parse_nodes(data, source=str(path))
