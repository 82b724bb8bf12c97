"""Kubernetes' protobuf wire format, decoded for the kinds typed ``kubectl create`` sends that way (namespace,
configmap, secret, serviceaccount). Pure. Other kinds sent as protobuf are refused with 415 by the caller.

The envelope is ``k8s\\x00`` + ``runtime.Unknown{typeMeta=1{apiVersion=1, kind=2}, raw=2, contentEncoding=3,
contentType=4}``; `raw` is the object's own message, whose field numbers are listed in `_MESSAGES` (from
k8s.io/api's generated.proto)."""

from __future__ import annotations

import base64

MAGIC = b"k8s\x00"

# message -> field number -> (json name, kind); kind: str, bytes, int, bool, a message name, or
# "map:str"/"map:bytes" (map<string,...>), "list:<kind>" (repeated)
_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 5: ("uid", "str"),
                   6: ("resourceVersion", "str"), 7: ("generation", "int"), 11: ("labels", "map:str"),
                   12: ("annotations", "map:str"), 14: ("finalizers", "list:str")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "list:str")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:str"), 3: ("binaryData", "map:bytes"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "str"),
               4: ("stringData", "map:str"), 5: ("immutable", "bool")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "list:ObjectReference"),
                       3: ("imagePullSecrets", "list:LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool")},
    "ObjectReference": {1: ("kind", "str"), 2: ("namespace", "str"), 3: ("name", "str")},
    "LocalObjectReference": {1: ("name", "str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "str"),
                4: ("contentType", "str")},
}
DECODABLE = ("Namespace", "ConfigMap", "Secret", "ServiceAccount")


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _fields(data: bytes):
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            n, pos = _varint(data, pos)
            value, pos = data[pos:pos + n], pos + n
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, wire, value


def _scalar(kind: str, value) -> object:
    if kind == "str":
        return value.decode()
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "int":
        return value
    if kind == "bool":
        return bool(value)
    return decode_message(kind, value)


def decode_message(name: str, data: bytes) -> dict:
    spec = _MESSAGES[name]
    out: dict = {}
    for number, _, value in _fields(data):
        if number not in spec:
            continue  # a field this table does not list (timestamps, managedFields): the server sets those
        key, kind = spec[number]
        if kind.startswith("map:"):
            entry = {n: v for n, _, v in _fields(value)}
            out.setdefault(key, {})[entry.get(1, b"").decode()] = _scalar(kind[4:], entry.get(2, b""))
        elif kind.startswith("list:"):
            out.setdefault(key, []).append(_scalar(kind[5:], value))
        elif value not in (b"", 0):  # go-proto writes every non-pointer field; its zero values mean "unset"
            out[key] = _scalar(kind, value)
    return out


def decode(body: bytes) -> dict:
    """The JSON-shaped object of a protobuf request body; ProtobufError for anything else."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body (no k8s\\x00 prefix)")
    unknown = decode_message("Unknown", body[len(MAGIC):])
    type_meta = unknown.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in DECODABLE:
        raise ProtobufError(f"protobuf bodies of kind {kind or '?'} are not decoded by the devcluster; send JSON")
    raw = base64.b64decode(unknown.get("raw", ""))
    obj = decode_message(kind, raw)
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}

