"""kube-scheduler's extender wire types (k8s.io/kube-scheduler/extender/v1).

Those Go structs carry no JSON tags, so the wire uses the Go field names (``Pod``, ``Nodes``, ``NodeNames``,
``FailedNodes``, ``Host``, ``Score``...). Requests are decoded as Go's encoding/json decodes them: keys match field
names case-insensitively and, when one object repeats a field, the last occurrence wins. Anything else in a payload
is ignored, as Go ignores unknown fields.

Malformed payloads raise :class:`WireError` naming the field and what was found; the HTTP layer answers 400 with it.
JSON is decoded/encoded with orjson when it is installed (3-4x faster than the stdlib on NodeList payloads).

Answers are encoded here only, from per-node fragments (``filter_fragments``, ``priority_fragment``: the JSON a node
contributes, ending in a comma) joined into an ExtenderFilterResult (``encode_filter``) or a HostPriorityList
(``encode_priorities``): the score tables keep the fragments and re-join them, a computed answer joins them once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping
from ..errors import HubfleetError

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib keeps working without it
    orjson = None

JSON_BACKEND = "orjson" if orjson is not None else "json"


class WireError(HubfleetError, ValueError):
    """A request the extender cannot decode; `field` is the Go field path at fault ("" for the whole body)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def to_json(self) -> dict:
        return {"error": str(self), "field": self.field}


def loads(body: bytes | str) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise WireError("", f"request body is not valid JSON: {e}") from e
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise WireError("", f"request body is not valid JSON: {e}") from e


def dumps(obj: Any) -> bytes:
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def _type_name(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _fields(obj: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Go's field matching: case-insensitive, the last occurrence wins. Returns {GoName: value} for present fields."""
    by_lower = {n.lower(): n for n in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = by_lower.get(key.lower()) if isinstance(key, str) else None
        if name is not None:
            out[name] = value
    return out


def _preview(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class ExtenderArgs:
    """``ExtenderArgs{Pod *v1.Pod; Nodes *v1.NodeList; NodeNames *[]string}``: the Pod being scheduled and its
    candidate nodes, as full Node objects (``nodeCacheCapable: false``) or as names (``nodeCacheCapable: true``)."""
    pod: dict
    nodes: list[dict] | None = None
    node_names: list[str] | None = None

    @classmethod
    def from_json(cls, data: object) -> "ExtenderArgs":
        if not isinstance(data, dict):
            raise WireError("", f"expected an ExtenderArgs object {{Pod, Nodes | NodeNames}}, got {_type_name(data)}")
        f = _fields(data, ("Pod", "Nodes", "NodeNames"))
        pod = f.get("Pod")
        if "Pod" not in f or pod is None:
            raise WireError("Pod", "missing: ExtenderArgs needs the Pod being scheduled")
        if not isinstance(pod, dict):
            raise WireError("Pod", f"expected a Pod object, got {_type_name(pod)} {_preview(pod)}")
        meta = pod.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise WireError("Pod.metadata", f"expected an object, got {_type_name(meta)} {_preview(meta)}")
        nodes = None
        raw_nodes = f.get("Nodes")
        if raw_nodes is not None:
            if not isinstance(raw_nodes, dict):
                raise WireError("Nodes", f"expected a NodeList object {{items: [...]}} or null, got "
                                         f"{_type_name(raw_nodes)} {_preview(raw_nodes)}")
            items = raw_nodes.get("items")
            if items is None:
                items = []
            if not isinstance(items, list):
                raise WireError("Nodes.items", f"expected an array of Node objects, got {_type_name(items)}")
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise WireError(f"Nodes.items[{i}]", f"expected a Node object, got {_type_name(item)} "
                                                         f"{_preview(item)}")
                meta = item.get("metadata")
                name = meta.get("name") if isinstance(meta, dict) else None
                if not isinstance(name, str) or not name:
                    raise WireError(f"Nodes.items[{i}].metadata.name",
                                    f"expected the node's name (a non-empty string), got {_preview(name)}")
            nodes = items
        names = f.get("NodeNames")
        if names is not None:
            if not isinstance(names, list):
                raise WireError("NodeNames", f"expected an array of node names or null, got {_type_name(names)} "
                                             f"{_preview(names)}")
            try:
                "".join(names)  # C speed: raises TypeError on the first non-string (5,000 names: ~20 us)
            except TypeError:
                i, n = next((i, n) for i, n in enumerate(names) if not isinstance(n, str))
                raise WireError(f"NodeNames[{i}]", f"expected a node name (string), got {_type_name(n)} "
                                                   f"{_preview(n)}") from None
        if nodes is None and names is None:
            raise WireError("Nodes", "neither Nodes nor NodeNames given: kube-scheduler sends Nodes when the "
                                     "extender is configured with nodeCacheCapable: false, NodeNames when true")
        return cls(pod=pod, nodes=nodes, node_names=names)

    @property
    def pod_key(self) -> str:
        meta = self.pod.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    def candidate_names(self) -> list[str]:
        if self.nodes is not None:
            return [n["metadata"]["name"] for n in self.nodes]
        return list(self.node_names or [])


@dataclass
class ExtenderFilterResult:
    """``ExtenderFilterResult{Nodes *v1.NodeList; NodeNames *[]string; FailedNodes, FailedAndUnresolvableNodes
    map[string]string; Error string}``, as kube-scheduler reads it back (the extender encodes its answers with
    ``encode_filter``, in the form the request came in: Nodes or NodeNames)."""
    nodes: list[dict] | None = None
    node_names: list[str] | None = None
    failed_nodes: dict[str, str] = field(default_factory=dict)
    failed_and_unresolvable_nodes: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @classmethod
    def from_json(cls, data: object) -> "ExtenderFilterResult":
        if not isinstance(data, dict):
            raise WireError("", f"expected an ExtenderFilterResult object, got {_type_name(data)}")
        f = _fields(data, ("Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"))
        nodes = f.get("Nodes")
        return cls(nodes=None if nodes is None else list(nodes.get("items") or []), node_names=f.get("NodeNames"),
                   failed_nodes=dict(f.get("FailedNodes") or {}),
                   failed_and_unresolvable_nodes=dict(f.get("FailedAndUnresolvableNodes") or {}),
                   error=f.get("Error") or "")


@dataclass(frozen=True)
class HostPriority:
    """``HostPriority{Host string; Score int64}``; a prioritize answer is a list of them (HostPriorityList)."""
    host: str
    score: int

    @classmethod
    def from_json(cls, data: object) -> "HostPriority":
        if not isinstance(data, dict):
            raise WireError("", f"expected a HostPriority object {{Host, Score}}, got {_type_name(data)}")
        f = _fields(data, ("Host", "Score"))
        return cls(host=f.get("Host", ""), score=int(f.get("Score", 0)))


def filter_fragments(name: str, failure: tuple[str, bool] | None) -> tuple[bytes, bytes, bytes]:
    """What node `name` contributes to an ExtenderFilterResult's NodeNames, FailedNodes and
    FailedAndUnresolvableNodes: the name when it passes (`failure` None), else ``"name":"why"`` in the second
    (preemption could help) or the third (``failure[1]``: unresolvable) part. Each ends in a comma or is empty."""
    quoted = dumps(name)
    if failure is None:
        return quoted + b",", b"", b""
    part = quoted + b":" + dumps(failure[0]) + b","
    return (b"", b"", part) if failure[1] else (b"", part, b"")


def priority_fragment(name: str, score: int) -> bytes:
    """What node `name` contributes to a HostPriorityList, ending in a comma."""
    return b'{"Host":' + dumps(name) + b',"Score":' + str(score).encode() + b"},"


def encode_filter(ok: bytes = b"", failed: bytes = b"", unresolvable: bytes = b"", *, nodes: list[dict] | None = None,
                  error: str = "") -> bytes:
    """An ExtenderFilterResult from joined fragments (each part's trailing comma included or not); with `nodes`
    (a request that sent Nodes) the kept Node objects go in ``Nodes`` instead of names in ``NodeNames``."""
    ok, failed, unresolvable = (p[:-1] if p.endswith(b",") else p for p in (ok, failed, unresolvable))
    if error:  # kube-scheduler reads nothing else of a result with an Error
        head = b'{"Nodes":null,"NodeNames":null'
    elif nodes is None:
        head = b'{"Nodes":null,"NodeNames":[' + ok + b"]"
    else:
        head = b'{"Nodes":' + dumps({"metadata": {}, "items": nodes}) + b',"NodeNames":null'
    return b"".join((head, b',"FailedNodes":{', failed, b'},"FailedAndUnresolvableNodes":{', unresolvable,
                     b'},"Error":', dumps(error), b"}"))


def encode_priorities(joined: bytes) -> bytes:
    """A HostPriorityList from joined ``priority_fragment``s."""
    return b"[" + (joined[:-1] if joined.endswith(b",") else joined) + b"]"


def encode_preemption(victims: dict[str, list[str]]) -> bytes:
    return dumps(preemption_result(victims))


def split_node_names(body: bytes) -> tuple["ExtenderArgs", int, int] | None:
    """kube-scheduler encodes ExtenderArgs with NodeNames last (``{"Pod":...,"Nodes":null,"NodeNames":[...]}``):
    (the args decoded without that array, its start and end in `body`), so that a list seen before is recognised
    by its bytes without decoding its ~60 KB. None when the body is not shaped so (then decode it whole): no such
    key, or the array found is not the object's last member, or the rest does not decode to NodeNames-only args."""
    start = body.find(b'"NodeNames":[')
    if start < 0:
        return None
    start += len(b'"NodeNames":')
    end = body.find(b"]", start) + 1
    if end <= 0 or body[end:].strip() != b"}":
        return None
    try:
        args = ExtenderArgs.from_json(loads(body[:start] + b"[]" + body[end:]))
    except WireError:
        return None
    if args.node_names != [] or args.nodes is not None:  # the array cut was not the top-level NodeNames
        return None
    return args, start, end


def decode_node_names(segment: bytes) -> list[str]:
    """The node names of a NodeNames array's bytes (from ``split_node_names``)."""
    return ExtenderArgs.from_json({"Pod": {}, "NodeNames": loads(segment)}).node_names or []


@dataclass(frozen=True)
class ExtenderBindingArgs:
    """``ExtenderBindingArgs{PodName, PodNamespace string; PodUID types.UID; Node string}`` (the bind verb; this
    extender does not bind: kube-scheduler keeps doing it)."""
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str

    @classmethod
    def from_json(cls, data: object) -> "ExtenderBindingArgs":
        if not isinstance(data, dict):
            raise WireError("", f"expected an ExtenderBindingArgs object, got {_type_name(data)}")
        f = _fields(data, ("PodName", "PodNamespace", "PodUID", "Node"))
        for name in ("PodName", "PodNamespace", "Node"):
            if not isinstance(f.get(name), str) or not f[name]:
                raise WireError(name, f"expected a non-empty string, got {_preview(f.get(name))}")
        return cls(f["PodName"], f["PodNamespace"], str(f.get("PodUID") or ""), f["Node"])


@dataclass(frozen=True)
class Victims:
    """``Victims{Pods []*v1.Pod; NumPDBViolations int64}`` (``nodeCacheCapable: false``) or ``MetaVictims{Pods
    []*MetaPod{UID string}; NumPDBViolations int64}`` (``true``): `pods` holds full Pods or ``{"UID": ...}``."""
    pods: list[dict]
    num_pdb_violations: int = 0

    def uids(self) -> list[str]:
        out = []
        for p in self.pods:
            meta = p.get("metadata")
            out.append(str(meta.get("uid") or "") if isinstance(meta, dict) else str(_fields(p, ("UID",)).get("UID")))
        return out


def _victims(data: object, where: str, meta: bool) -> Victims:
    if not isinstance(data, dict):
        raise WireError(where, f"expected a {'MetaVictims' if meta else 'Victims'} object {{Pods, NumPDBViolations}}, "
                               f"got {_type_name(data)} {_preview(data)}")
    f = _fields(data, ("Pods", "NumPDBViolations"))
    pods = f.get("Pods")
    pods = [] if pods is None else pods
    if not isinstance(pods, list):
        raise WireError(f"{where}.Pods", f"expected an array, got {_type_name(pods)} {_preview(pods)}")
    for i, p in enumerate(pods):
        if not isinstance(p, dict):
            raise WireError(f"{where}.Pods[{i}]", f"expected a {'MetaPod' if meta else 'Pod'} object, got "
                                                  f"{_type_name(p)} {_preview(p)}")
        if meta:
            uid = _fields(p, ("UID",)).get("UID")
            if not isinstance(uid, str) or not uid:
                raise WireError(f"{where}.Pods[{i}].UID", f"expected the victim pod's UID (a string), got "
                                                          f"{_preview(uid)}")
        else:
            m = p.get("metadata")
            if not isinstance(m, dict) or not isinstance(m.get("uid"), str) or not m["uid"]:
                raise WireError(f"{where}.Pods[{i}].metadata.uid", "expected the victim pod's uid (a string)")
    n = f.get("NumPDBViolations", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise WireError(f"{where}.NumPDBViolations", f"expected a non-negative integer, got {_preview(n)}")
    return Victims(pods=pods, num_pdb_violations=n)


@dataclass(frozen=True)
class ExtenderPreemptionArgs:
    """``ExtenderPreemptionArgs{Pod *v1.Pod; NodeNameToVictims map[string]*Victims; NodeNameToMetaVictims
    map[string]*MetaVictims}``: the preemptor and, per candidate node, the victims kube-scheduler proposes (full Pods
    when ``nodeCacheCapable: false``, UIDs when true)."""
    pod: dict
    victims: dict[str, Victims]
    meta: bool

    @classmethod
    def from_json(cls, data: object) -> "ExtenderPreemptionArgs":
        if not isinstance(data, dict):
            raise WireError("", f"expected an ExtenderPreemptionArgs object {{Pod, NodeNameToVictims | "
                                f"NodeNameToMetaVictims}}, got {_type_name(data)}")
        f = _fields(data, ("Pod", "NodeNameToVictims", "NodeNameToMetaVictims"))
        pod = f.get("Pod")
        if not isinstance(pod, dict):
            raise WireError("Pod", f"expected the preemptor Pod object, got {_type_name(pod)} {_preview(pod)}")
        meta = f.get("NodeNameToMetaVictims") is not None
        name = "NodeNameToMetaVictims" if meta else "NodeNameToVictims"
        raw = f.get(name)
        if raw is None:
            raise WireError("NodeNameToMetaVictims", "neither NodeNameToMetaVictims nor NodeNameToVictims given")
        if not isinstance(raw, dict):
            raise WireError(name, f"expected an object mapping node names to victims, got {_type_name(raw)} "
                                  f"{_preview(raw)}")
        victims = {node: _victims(v, f"{name}.{node}", meta) for node, v in raw.items()}
        return cls(pod=pod, victims=victims, meta=meta)


def preemption_result(victims: dict[str, list[str]], pdb_violations: dict[str, int] | None = None) -> dict:
    """``ExtenderPreemptionResult{NodeNameToMetaVictims map[string]*MetaVictims}`` from {node: [victim UIDs]}."""
    pdb = pdb_violations or {}
    return {"NodeNameToMetaVictims": {node: {"Pods": [{"UID": uid} for uid in uids],
                                             "NumPDBViolations": pdb.get(node, 0)} for node, uids in victims.items()}}


def decode_preemption_result(data: object) -> dict[str, list[str]]:
    """{node: [victim UIDs]} from an ExtenderPreemptionResult (what kube-scheduler reads back)."""
    if not isinstance(data, dict):
        raise WireError("", f"expected an ExtenderPreemptionResult object, got {_type_name(data)}")
    raw = _fields(data, ("NodeNameToMetaVictims",)).get("NodeNameToMetaVictims") or {}
    if not isinstance(raw, dict):
        raise WireError("NodeNameToMetaVictims", f"expected an object, got {_type_name(raw)}")
    return {node: _victims(v, f"NodeNameToMetaVictims.{node}", True).uids() for node, v in raw.items()}


__all__ = ["ExtenderArgs", "ExtenderBindingArgs", "ExtenderFilterResult", "ExtenderPreemptionArgs", "HostPriority",
           "JSON_BACKEND", "Victims", "WireError", "decode_node_names", "decode_preemption_result", "dumps",
           "encode_filter", "encode_preemption", "encode_priorities", "filter_fragments", "loads", "preemption_result",
           "priority_fragment", "split_node_names"]
