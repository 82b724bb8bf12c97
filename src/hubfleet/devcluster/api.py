"""The devcluster's Kubernetes API: kmock's ``KubernetesEmulator`` with the gaps a real JupyterHub needs covered.

kmock (pinned exactly in pyproject) provides the HTTP server, API discovery (``/api``, ``/apis``, ``/version``) and
Kubernetes-style error bodies. This subclass owns the resource endpoints, because kmock 0.8 leaves these gaps
(../shared/RECIPES.md): ``watch=True`` (as kubernetes_asyncio sends it) is not seen as a watch; ``metadata.namespace``,
``uid``, ``creationTimestamp``, ``resourceVersion`` and a Pending pod ``status`` are not filled on create; watches
ignore ``timeoutSeconds`` and ``resourceVersion`` (and a watch opened between a list and its first event can miss
events); label and field selectors are ignored; ``/namespaces`` itself cannot be listed; PATCH of ``/status`` can
change the whole object; there is no PUT and no graceful pod deletion. Objects are therefore held in a plain dict
with a resourceVersion-ordered event log, so a watch resumes exactly where its list left off (and answers
410 Gone when the log no longer reaches back that far, as a real API server does).

The same store is used in-process by the scheduler loop and the process kubelet (they are the "control plane"), so
their writes produce the same watch events a hub sees.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import json
import logging
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp.web
import attrs
import kmock
from ..errors import HubfleetError

log = logging.getLogger("hubfleet.devcluster.api")

# plural -> (kind, namespaced)
CORE_RESOURCES: dict[str, tuple[str, bool]] = {
    "namespaces": ("Namespace", False),
    "nodes": ("Node", False),
    "pods": ("Pod", True),
    "events": ("Event", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "services": ("Service", True),
    "secrets": ("Secret", True),
    "configmaps": ("ConfigMap", True),
    "serviceaccounts": ("ServiceAccount", True),
    "endpoints": ("Endpoints", True),
}
_PATH_RE = re.compile(
    r"^/api/v1(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?/?$"
)
_NS_PATH_RE = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?$")
EVENT_LOG_SIZE = 5000  # enough to resume a watch after a list; older versions answer 410 Gone, as etcd does


class APIError(HubfleetError):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": self.code,
                "reason": self.reason, "message": self.message, "details": self.details}


def not_found(plural: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``application/merge-patch+json`` means): maps merge, ``null`` deletes,
    everything else replaces. Returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --- selectors ------------------------------------------------------------------------------------------------------

def parse_selector(text: str | None, *, kind: str) -> list[tuple[str, str, Any]]:
    """Parse a label or field selector into (key, op, value) requirements.

    Supports equality-based requirements (``a=b``, ``a==b``, ``a!=b``), existence (``a``, ``!a``) and, for labels,
    set-based ``a in (x,y)`` / ``a notin (x,y)``. Anything else is a 400, as on a real API server."""
    reqs: list[tuple[str, str, Any]] = []
    if not text:
        return reqs
    # split on commas that are not inside parentheses
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in (p.strip() for p in parts):
        if not part:
            continue
        m = re.match(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\((.*)\)$", part)
        if m and kind == "label":
            reqs.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}))
            continue
        m = re.match(r"^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./:-]*)$", part)
        if m:
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
            continue
        m = re.match(r"^(!?)([A-Za-z0-9_./-]+)$", part)
        if m and kind == "label":
            reqs.append((m.group(2), "!" if m.group(1) else "exists", None))
            continue
        raise APIError(400, "BadRequest", f"unable to parse requirement: {part!r} in {kind} selector {text!r}")
    return reqs


def _field_value(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def matches(obj: dict, labels: list, fields: list) -> bool:
    obj_labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, op, value in labels:
        have = obj_labels.get(key)
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "exists" and have is None:
            return False
        if op == "!" and have is not None:
            return False
        if op == "in" and have not in value:
            return False
        if op == "notin" and have in value:
            return False
    for key, op, value in fields:
        have = _field_value(obj, key)
        if (op == "=") != (have == value):
            return False
    return True


# --- the store ------------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Watcher:
    plural: str
    namespace: str | None
    labels: list
    fields: list
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def wants(self, plural: str, obj: dict) -> bool:
        if plural != self.plural:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return matches(obj, self.labels, self.fields)


class Store:
    """Objects by (plural, namespace, name), a global resourceVersion and a bounded event log.

    Every method is synchronous, so each one is atomic on the event loop (no lock needed): a list and the
    registration of a watcher see the same resourceVersion.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.rv = 1
        self.log: collections.deque[tuple[int, str, dict]] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[str, str, dict], None]] = []  # in-process controllers
        self.closed = False

    def close(self) -> None:
        """End every watch stream (server shutdown)."""
        self.closed = True
        for w in self.watchers:
            w.queue.put_nowait(None)

    # events
    def _emit(self, type_: str, plural: str, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        event = {"type": type_, "object": obj}
        self.log.append((self.rv, plural, event))
        for w in list(self.watchers):
            if w.wants(plural, obj):
                w.queue.put_nowait(copy.deepcopy(event))
        for listener in self.listeners:
            listener(type_, plural, obj)

    # reads
    def get(self, plural: str, namespace: str | None, name: str) -> dict:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            raise not_found(plural, name)
        return obj

    def find(self, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.objects.get((plural, namespace, name))

    def list(self, plural: str, namespace: str | None = None, labels: list = (), fields: list = ()) -> list[dict]:
        return [o for (p, ns, _), o in self.objects.items()
                if p == plural and (namespace is None or ns == namespace) and matches(o, labels, fields)]

    def restore(self, plural: str, obj: dict) -> None:
        """Put back an object saved by a previous run (uid and timestamps kept; a new resourceVersion)."""
        meta = obj["metadata"]
        key = (plural, meta.get("namespace") if CORE_RESOURCES[plural][1] else None, meta["name"])
        if key not in self.objects:
            self.objects[key] = obj
            self._emit("ADDED", plural, obj)

    # writes
    def create(self, plural: str, namespace: str | None, obj: dict) -> dict:
        kind, namespaced = CORE_RESOURCES[plural]
        if not isinstance(obj, dict):
            raise APIError(400, "BadRequest", f"the body of a {kind} must be a JSON object")
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise APIError(400, "BadRequest", "metadata must be an object")
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name) or len(name) > 253:
            raise APIError(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value: {name!r}: '
                           "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                           "'-' or '.'")
        if namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise APIError(400, "BadRequest", f"the namespace of the provided object ({body_ns}) does not "
                               f"match the namespace sent on the request ({namespace})")
            namespace = namespace or body_ns or "default"
            if ("namespaces", None, namespace) not in self.objects:
                raise not_found("namespaces", namespace)
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        key = (plural, namespace, name)
        if key in self.objects:
            raise APIError(409, "AlreadyExists", f'{plural} "{name}" already exists',
                           {"name": name, "kind": plural})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta.pop("deletionTimestamp", None)
        obj["apiVersion"], obj["kind"] = "v1", kind
        if plural == "pods":
            _validate_pod(name, obj)
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
        elif plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Bound"}  # the kubelet provisions a directory on first use
        elif plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        self.objects[key] = obj
        self._emit("ADDED", plural, obj)
        return obj

    def patch(self, plural: str, namespace: str | None, name: str, patch: dict, subresource: str | None = None
              ) -> dict:
        obj = self.get(plural, namespace, name)
        if not isinstance(patch, dict):
            raise APIError(400, "BadRequest", "a merge patch must be a JSON object")
        if subresource == "status":
            patch = {"status": patch.get("status")} if "status" in patch else {}
        elif subresource is None and plural == "pods":
            patch = {k: v for k, v in patch.items() if k != "status"}  # status only through /status
        new = merge_patch(obj, patch)
        new["metadata"]["uid"] = obj["metadata"]["uid"]
        new["metadata"]["name"], new["metadata"]["namespace"] = name, obj["metadata"].get("namespace")
        if namespace is None:
            new["metadata"].pop("namespace", None)
        self.objects[(plural, namespace, name)] = new
        self._emit("MODIFIED", plural, new)
        return new

    def replace(self, plural: str, namespace: str | None, name: str, body: dict, subresource: str | None = None
                ) -> dict:
        obj = self.get(plural, namespace, name)
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
            raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object has '
                           "been modified; please apply your changes to the latest version and try again")
        if subresource == "status":
            new = copy.deepcopy(obj)
            new["status"] = copy.deepcopy(body.get("status") or {})
        else:
            new = copy.deepcopy(body)
            new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
                if k in obj["metadata"]:
                    new["metadata"][k] = obj["metadata"][k]
            if "status" in obj:
                new["status"] = obj["status"]
        self.objects[(plural, namespace, name)] = new
        self._emit("MODIFIED", plural, new)
        return new

    def delete(self, plural: str, namespace: str | None, name: str, grace: int | None = None) -> dict:
        """Delete an object. A pod running on a node is only marked (deletionTimestamp); the kubelet stops its
        process and then calls `remove`, as on a real cluster."""
        obj = self.get(plural, namespace, name)
        if plural == "pods" and obj.get("spec", {}).get("nodeName") and grace != 0:
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            self.objects[(plural, namespace, name)] = new
            self._emit("MODIFIED", plural, new)
            return new
        if plural == "namespaces":
            for key in [k for k in self.objects if k[1] == name]:
                self.remove(key[0], key[1], key[2])
        return self.remove(plural, namespace, name)

    def remove(self, plural: str, namespace: str | None, name: str) -> dict:
        obj = self.objects.pop((plural, namespace, name), None)
        if obj is None:
            raise not_found(plural, name)
        obj = copy.deepcopy(obj)
        self._emit("DELETED", plural, obj)
        return obj


def _validate_pod(name: str, pod: dict) -> None:
    """The checks a real API server makes that a malformed pod would otherwise trip over later (422 Invalid)."""
    from ..quantity import QuantityError, parse_quantity  # local: quantity is pure and tiny

    def invalid(path: str, value: Any, why: str) -> APIError:
        return APIError(422, "Invalid", f'Pod "{name}" is invalid: {path}: Invalid value: {value!r}: {why}')

    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise invalid("spec", spec, "must be an object")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid("spec.containers", containers, "must be a non-empty list")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c.get("name"):
            raise invalid(f"spec.containers[{i}]", c, "must be an object with a name")
        if not isinstance(c.get("image"), str) or not c["image"]:
            raise invalid(f"spec.containers[{i}].image", c.get("image"), "an image is required")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for res, q in ((resources.get(kind) or {}) if isinstance(resources, dict) else {}).items():
                try:
                    parse_quantity(q, field=f"spec.containers[{i}].resources.{kind}.{res}")
                except QuantityError:
                    raise invalid(f"spec.containers[{i}].resources.{kind}.{res}", q,
                                  "must be a quantity such as 2, '500m' or '4Gi'") from None


def _qos_class(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return "BestEffort"
    if not any((c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
               for c in containers):
        return "BestEffort"
    guaranteed = all(
        (c.get("resources") or {}).get("limits", {}).get(r) is not None
        and (c.get("resources") or {}).get("requests", {}).get(r, c["resources"]["limits"][r])
        == c["resources"]["limits"][r]
        for c in containers for r in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


# --- faults ---------------------------------------------------------------------------------------------------------

@dataclass
class Faults:
    """Fault knobs for tests: a fraction of resource requests answers an error, or answers slowly."""
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (429, 500)
    delay_rate: float = 0.0
    delay: float = 0.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def update(self, data: dict) -> None:
        """Validate every value first, then apply them all (a bad request changes nothing)."""
        known = ("error_rate", "error_codes", "delay_rate", "delay", "seed")
        if not isinstance(data, dict):
            raise APIError(400, "BadRequest", f"faults: expected a JSON object with some of {', '.join(known)}, "
                           f"got {data!r}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise APIError(400, "BadRequest", f"faults: unknown field(s) {unknown}; allowed: {', '.join(known)}")
        new: dict[str, Any] = {}
        for key in ("error_rate", "delay_rate", "delay"):
            if key in data:
                try:
                    value = float(data[key])
                except (TypeError, ValueError) as e:
                    raise APIError(400, "BadRequest", f"faults.{key}: {data[key]!r} is not a number") from e
                if not 0 <= value <= (1 if key.endswith("rate") else float("inf")):
                    raise APIError(400, "BadRequest", f"faults.{key}: {value} out of range"
                                   + (" (0 to 1)" if key.endswith("rate") else " (must be >= 0)"))
                new[key] = value
        if "error_codes" in data:
            try:
                codes = tuple(int(c) for c in data["error_codes"])
            except (TypeError, ValueError) as e:
                raise APIError(400, "BadRequest", f"faults.error_codes: {data['error_codes']!r} is not a list of "
                               "HTTP status codes") from e
            if not codes or any(c not in (429, 500, 503, 504) for c in codes):
                raise APIError(400, "BadRequest", f"faults.error_codes: {codes} must be among 429, 500, 503, 504")
            new["error_codes"] = codes
        if data.get("seed") is not None:
            try:
                new["seed"] = int(data["seed"])
            except (TypeError, ValueError) as e:
                raise APIError(400, "BadRequest", f"faults.seed: {data['seed']!r} is not an integer") from e
        for key, value in new.items():
            setattr(self, key, value)
        if "seed" in new:
            self.rng.seed(self.seed)

    def as_dict(self) -> dict:
        return {"error_rate": self.error_rate, "error_codes": list(self.error_codes), "delay_rate": self.delay_rate,
                "delay": self.delay, "seed": self.seed}


# --- the HTTP handler -----------------------------------------------------------------------------------------------

@attrs.define(kw_only=True)
class DevClusterAPI(kmock.KubernetesEmulator):
    """kmock's emulator serving the devcluster's store (see the module docstring for what is covered and why)."""

    store: Store = attrs.field(factory=Store)
    faults: Faults = attrs.field(factory=Faults)
    stats: collections.Counter = attrs.field(factory=collections.Counter)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for plural, (kind, namespaced) in CORE_RESOURCES.items():
            self.resources[f"v1/{plural}"] = {"kind": kind, "namespaced": namespaced,
                                              "verbs": ["get", "list", "watch", "create", "update", "patch",
                                                        "delete"],
                                              "subresources": ["status"] if plural in ("pods", "nodes") else []}
        for ns in ("default", "kube-system"):
            self.store.create("namespaces", None, {"metadata": {"name": ns}})

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw.path
        try:
            if path.startswith("/devcluster/"):
                return await self._serve_control(raw)
            route = self._route(raw)
            if route is None:
                return await super().__call__(raw)  # discovery, /version: kmock's scaffold
            return await self._serve_resource(raw, *route)
        except APIError as e:
            return aiohttp.web.json_response(e.status(), status=e.code,
                                             headers={"Retry-After": "1"} if e.code == 429 else None)

    @staticmethod
    def _route(raw: aiohttp.web.BaseRequest) -> tuple[str, str | None, str | None, str | None] | None:
        m = _NS_PATH_RE.match(raw.path)
        if m:
            return "namespaces", None, m.group("name"), m.group("sub")
        m = _PATH_RE.match(raw.path)
        if not m:
            return None
        plural = m.group("plural")
        if plural not in CORE_RESOURCES:
            raise APIError(404, "NotFound", f"the server could not find the requested resource ({plural})")
        namespaced = CORE_RESOURCES[plural][1]
        ns = m.group("ns")
        if ns and not namespaced:
            raise APIError(404, "NotFound", f"{plural} is not a namespaced resource")
        return plural, ns, m.group("name"), m.group("sub")

    # control endpoints: /devcluster/stats, /devcluster/faults, /devcluster/compact, /devcluster/healthz
    async def _serve_control(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.path == "/devcluster/healthz":
            return aiohttp.web.json_response({"ok": True, "resourceVersion": str(self.store.rv)})
        if raw.path == "/devcluster/compact" and raw.method == "POST":
            # what etcd compaction does on a real cluster: a watch from an older resourceVersion gets 410 Gone
            self.store.log.clear()
            return aiohttp.web.json_response({"compactedTo": str(self.store.rv)})
        if raw.path == "/devcluster/stats":
            if raw.method == "DELETE":
                self.stats.clear()
            return aiohttp.web.json_response({"requests": dict(sorted(self.stats.items()))})
        if raw.path == "/devcluster/faults":
            if raw.method in ("POST", "PUT", "PATCH"):
                try:
                    data = await raw.json()
                except ValueError as e:
                    raise APIError(400, "BadRequest", f"faults: body is not JSON: {e}") from e
                self.faults.update(data)
            return aiohttp.web.json_response(self.faults.as_dict())
        raise APIError(404, "NotFound", f"no devcluster endpoint {raw.path}")

    async def _inject_faults(self) -> None:
        f = self.faults
        if f.delay and f.delay_rate and f.rng.random() < f.delay_rate:
            await asyncio.sleep(f.delay)
        if f.error_rate and f.rng.random() < f.error_rate:
            code = f.rng.choice(f.error_codes)
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                      504: "Timeout"}[code]
            raise APIError(code, reason, f"devcluster fault injection: {reason} (set by /devcluster/faults)")

    async def _serve_resource(self, raw: aiohttp.web.BaseRequest, plural: str, ns: str | None, name: str | None,
                              sub: str | None) -> aiohttp.web.StreamResponse:
        q = raw.query
        method = raw.method
        watching = method == "GET" and q.get("watch", "").lower() in ("true", "1")
        verb = ("watch" if watching else "get" if method == "GET" and name else "list" if method == "GET"
                else "create" if method == "POST" else "patch" if method == "PATCH"
                else "update" if method == "PUT" else "delete" if method == "DELETE" else method.lower())
        self.stats[f"{verb} {plural}{'/' + sub if sub else ''}"] += 1
        await self._inject_faults()
        store = self.store
        if sub not in (None, "status"):
            raise APIError(404, "NotFound", f"the server could not find the requested resource ({plural}/{sub})")
        if watching:
            return await self._serve_watch_stream(raw, plural, ns, name)
        body: Any = None
        if method in ("POST", "PATCH", "PUT"):
            try:
                body = json.loads(await raw.read() or b"null")
            except ValueError as e:
                raise APIError(400, "BadRequest", f"the request body is not valid JSON: {e}") from e
            if method == "PATCH" and raw.content_type == "application/json-patch+json":
                raise APIError(415, "UnsupportedMediaType", "devcluster supports merge patches "
                               "(application/merge-patch+json or strategic-merge-patch+json), not JSON patch")
        if method == "GET" and name:
            return aiohttp.web.json_response(store.get(plural, ns, name))
        if method == "GET":
            items = store.list(plural, ns, parse_selector(q.get("labelSelector"), kind="label"),
                               parse_selector(q.get("fieldSelector"), kind="field"))
            return aiohttp.web.json_response({
                "apiVersion": "v1", "kind": CORE_RESOURCES[plural][0] + "List",
                "metadata": {"resourceVersion": str(store.rv)}, "items": items})
        if method == "POST" and not name:
            if plural == "namespaces":
                ns = None
            obj = store.create(plural, ns, body)
            return aiohttp.web.json_response(obj, status=201)
        if method == "PATCH" and name:
            return aiohttp.web.json_response(store.patch(plural, ns, name, body, sub))
        if method == "PUT" and name:
            if not isinstance(body, dict):
                raise APIError(400, "BadRequest", "the body must be a JSON object")
            return aiohttp.web.json_response(store.replace(plural, ns, name, body, sub))
        if method == "DELETE" and name:
            grace = q.get("gracePeriodSeconds")
            try:
                body = json.loads(await raw.read() or b"{}")
            except ValueError:
                body = {}
            if grace is None and isinstance(body, dict):
                grace = body.get("gracePeriodSeconds")
            try:
                grace_int = None if grace is None else int(grace)
            except (TypeError, ValueError) as e:
                raise APIError(400, "BadRequest", f"gracePeriodSeconds: {grace!r} is not an integer") from e
            return aiohttp.web.json_response(store.delete(plural, ns, name, grace_int))
        if method == "DELETE":
            items = store.list(plural, ns, parse_selector(q.get("labelSelector"), kind="label"),
                               parse_selector(q.get("fieldSelector"), kind="field"))
            for o in items:
                store.delete(plural, o["metadata"].get("namespace"), o["metadata"]["name"])
            return aiohttp.web.json_response({"kind": "Status", "status": "Success"})
        raise APIError(405, "MethodNotAllowed", f"{method} is not supported on {raw.path}")

    async def _serve_watch_stream(self, raw: aiohttp.web.BaseRequest, plural: str, ns: str | None,
                                  name: str | None) -> aiohttp.web.StreamResponse:
        q = raw.query
        labels = parse_selector(q.get("labelSelector"), kind="label")
        fields = parse_selector(q.get("fieldSelector"), kind="field")
        if name:
            fields.append(("metadata.name", "=", name))
        try:
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        except ValueError as e:
            raise APIError(400, "BadRequest", f"timeoutSeconds: {q['timeoutSeconds']!r} is not a number") from e
        watcher = Watcher(plural, ns, labels, fields)
        store = self.store
        since = q.get("resourceVersion") or "0"
        # Everything up to the registration below is synchronous, so no event can slip between the snapshot (or
        # the replay from the log) and the live stream.
        initial: list[dict] = []
        gone: str | None = None
        if since == "0":
            initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in store.list(plural, ns, labels, fields)]
        else:
            try:
                since_rv = int(since)
            except ValueError as e:
                raise APIError(400, "BadRequest", f"resourceVersion: {since!r} is not valid") from e
            oldest = store.log[0][0] if store.log else store.rv + 1
            if since_rv < oldest - 1 and since_rv < store.rv:
                gone = f"too old resource version: {since_rv} ({oldest - 1})"
            else:
                initial = [copy.deepcopy(ev) for rv, p, ev in store.log if rv > since_rv and watcher.wants(p, ev["object"])]
        store.watchers.add(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(raw)
            if gone:
                err = APIError(410, "Expired", gone).status()
                await response.write(json.dumps({"type": "ERROR", "object": err}).encode() + b"\n")
                return response
            for ev in initial:
                await response.write(json.dumps(ev).encode() + b"\n")
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while not store.closed:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                    async with asyncio.timeout(remaining):
                        ev = await watcher.queue.get()
                except TimeoutError:
                    break
                if ev is None:  # the store is closing
                    break
                await response.write(json.dumps(ev).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.watchers.discard(watcher)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response


async def serve(api: DevClusterAPI, host: str = "127.0.0.1", port: int = 0) -> tuple[aiohttp.web.AppRunner, int]:
    """Serve `api` over HTTP; returns the runner (for cleanup) and the bound port."""
    server = aiohttp.web.Server(api)
    runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound
