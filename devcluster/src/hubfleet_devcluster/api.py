"""The devcluster's Kubernetes API over HTTP (aiohttp's low-level server; no framework in between).

Routing, authentication (the bearer token the kubeconfig carries; 401 Status otherwise), content negotiation
(JSON and YAML bodies up to 3 MiB; protobuf refused with 415, after which client-go resends JSON; server-side
Tables), the verbs (get, list with ``limit``/``continue``/``resourceVersionMatch``, watch with bookmarks and
WatchList's ``sendInitialEvents``, create, update, the three patch types, delete, ``dryRun=All``), ``pods/log``,
the review resources, health endpoints and the ``/devcluster/*`` control endpoints. The object store, selectors,
validation, patching, discovery and fault injection live in their own modules; this one only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import hmac
import json
import logging
import re
from pathlib import Path
from typing import Any, Protocol

import aiohttp.web
import yaml

from . import discovery, protobuf, validation
from .exec import serve_exec
from .faults import Faults
from .patching import json_patch, merge_patch, strategic_merge_patch
from .resources import REVIEWS, RESOURCES, ResourceType, resource_for
from .schemas import definition
from .selectors import matches, parse_selector  # noqa: F401  (re-exported for callers of the old module)
from .status import APIError, not_found, now_iso  # noqa: F401
from .store import Store, Watcher
from .tables import table

log = logging.getLogger("hubfleet_devcluster.api")

_CORE_RE = re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+)(?=/[a-z]))?/(?P<plural>[a-z]+)"
                      r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?/?$")
_GROUP_RE = re.compile(r"^/apis/(?P<group>[a-z0-9.]+)/(?P<version>v[a-z0-9]+)(?:/namespaces/(?P<ns>[^/]+)(?=/[a-z]))?"
                       r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?/?$")
_NS_RE = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?$")
_ANONYMOUS = {"/healthz", "/livez", "/readyz", "/version", "/version/"}
_JSON_TYPES = ("application/json", "application/yaml", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/json-patch+json", "")
PROTOBUF = "application/vnd.kubernetes.protobuf"
_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
                "application/json-patch+json")


class LogSource(Protocol):
    """What the kubelet offers `pods/log`: the file a container logs to, and whether it is still running."""

    def log_path(self, pod: dict, container: str, previous: bool) -> Path | None: ...

    def running(self, pod: dict, container: str) -> bool: ...

    async def exec_process(self, pod: dict, container: str | None, command: list[str],
                           stdin: bool) -> asyncio.subprocess.Process: ...


def _json(data: Any, status: int = 200, headers: dict | None = None) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(data).encode(), status=status, headers=headers,
                                content_type="application/json")


class DevClusterAPI:
    """The HTTP handler over a `Store` (see the module docstring)."""

    def __init__(self, store: Store | None = None, *, token: str | None = None) -> None:
        self.store = store if store is not None else Store()
        self.faults = Faults()
        self.stats: collections.Counter = collections.Counter()
        self.token = token
        self.logs: LogSource | None = None
        self.server_url = ""
        for ns in ("default", "kube-system", "kube-public"):
            self.store.create("namespaces", None, {"metadata": {"name": ns}})

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            if raw.path not in _ANONYMOUS and not self._authenticated(raw):
                raise APIError(401, "Unauthorized", "Unauthorized")
            return await self._dispatch(raw)
        except APIError as e:
            return _json(e.status(), e.code, {"Retry-After": "1"} if e.code in (429, 504) else None)

    def _authenticated(self, raw: aiohttp.web.BaseRequest) -> bool:
        if self.token is None:
            return True
        scheme, _, value = raw.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    async def _dispatch(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw.path
        if path.startswith("/devcluster/"):
            return await self._serve_control(raw)
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return aiohttp.web.Response(text="ok")
        if path.rstrip("/") == "/version":
            return _json(discovery.KUBE_VERSION)
        if path.rstrip("/") == "/api":
            return _json(discovery.api_versions(raw.host))
        if path.rstrip("/") == "/api/v1":
            return _json(discovery.resource_list("v1"))
        if path.rstrip("/") == "/apis":
            return _json(discovery.api_group_list())
        if path.startswith("/openapi/"):
            return self._serve_openapi(raw)
        m = re.match(r"^/apis/([a-z0-9.]+)/?$", path)
        if m:
            group = discovery.api_group(m.group(1))
            if group is None:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return _json(group)
        m = re.match(r"^/apis/([a-z0-9.]+)/(v[a-z0-9]+)/?$", path)
        if m:
            listing = discovery.resource_list(f"{m.group(1)}/{m.group(2)}")
            if listing is None:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return _json(listing)
        m = re.match(r"^/apis/([a-z0-9.]+)/v1/([a-z]+)/?$", path)
        if m and (m.group(1), m.group(2)) in REVIEWS and raw.method == "POST":
            try:
                body = await self._body(raw)
            except APIError as e:  # a protobuf review: the answer does not depend on its spec
                if e.code != 415:
                    raise
                body = {}
            self.stats[f"create {m.group(2)}"] += 1
            return _json(discovery.review(REVIEWS[(m.group(1), m.group(2))], m.group(1), body), 201)
        route = self._route(path)
        if route is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return await self._serve_resource(raw, *route)

    @staticmethod
    def _route(path: str) -> tuple[ResourceType, str | None, str | None, str | None] | None:
        m = _NS_RE.match(path)
        if m:
            return RESOURCES["namespaces"], None, m.group("name"), m.group("sub")
        m = _CORE_RE.match(path)
        group, version = "", "v1"
        if not m:
            m = _GROUP_RE.match(path)
            if not m:
                return None
            group, version = m.group("group"), m.group("version")
        r = resource_for(group, version, m.group("plural"))
        if r is None:
            raise APIError(404, "NotFound", f"the server could not find the requested resource "
                           f"({m.group('plural')})")
        ns = m.group("ns")
        if ns and not r.namespaced:
            raise APIError(404, "NotFound", f"the server could not find the requested resource: {r.plural} is not "
                           "a namespaced resource")
        return r, ns, m.group("name"), m.group("sub")

    # --- content --------------------------------------------------------------------------------------------------

    async def _body(self, raw: aiohttp.web.BaseRequest) -> Any:
        # no Content-Type means JSON to kube-apiserver (aiohttp would call it application/octet-stream)
        ctype = raw.content_type if raw.can_read_body and raw.headers.get("Content-Type") else ""
        if ctype not in _JSON_TYPES and ctype != PROTOBUF:
            raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format "
                           f"({ctype}) - accepted media types include: application/json, application/yaml, "
                           "application/json-patch+json, application/merge-patch+json, "
                           "application/strategic-merge-patch+json")
        chunks, size = [], 0
        while True:
            chunk = await raw.content.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > validation.MAX_BODY:
                raise APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is "
                               f"{validation.MAX_BODY}")
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            return None
        if ctype == PROTOBUF:
            try:
                return protobuf.decode(data)
            except (protobuf.ProtobufError, KeyError, UnicodeDecodeError, IndexError) as e:
                raise APIError(415, "UnsupportedMediaType", f"the body of the request could not be decoded as "
                               f"{PROTOBUF}: {e}") from e
        try:
            return yaml.safe_load(data) if ctype == "application/yaml" else json.loads(data)
        except (ValueError, yaml.YAMLError) as e:
            raise APIError(400, "BadRequest", f"the request body is not valid {ctype or 'JSON'}: {e}") from e

    @staticmethod
    def _table_wanted(raw: aiohttp.web.BaseRequest) -> bool:
        return "as=Table" in raw.headers.get("Accept", "")

    # --- control endpoints: /devcluster/stats, /devcluster/faults, /devcluster/compact, /devcluster/healthz ---------

    async def _serve_control(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.path == "/devcluster/healthz":
            return _json({"ok": True, "resourceVersion": str(self.store.rv)})
        if raw.path == "/devcluster/compact" and raw.method == "POST":
            # what etcd compaction does on a real cluster: a watch from an older resourceVersion gets 410 Gone
            self.store.log.clear()
            return _json({"compactedTo": str(self.store.rv)})
        if raw.path == "/devcluster/stats":
            if raw.method == "DELETE":
                self.stats.clear()
            return _json({"requests": dict(sorted(self.stats.items()))})
        if raw.path == "/devcluster/faults":
            if raw.method in ("POST", "PUT", "PATCH"):
                try:
                    data = json.loads(await raw.read() or b"null")
                except ValueError as e:
                    raise APIError(400, "BadRequest", f"faults: body is not JSON: {e}") from e
                self.faults.update(data)
            return _json(self.faults.as_dict())
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

    def _serve_openapi(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw.path.rstrip("/")
        if path == "/openapi/v2":
            if "json" not in raw.headers.get("Accept", "application/json") and "*/*" not in raw.headers.get(
                    "Accept", ""):
                raise APIError(406, "NotAcceptable", "only application/json is served for /openapi/v2")
            return aiohttp.web.Response(body=discovery.openapi_v2(), content_type="application/json")
        if path == "/openapi/v3":
            return aiohttp.web.Response(body=discovery.openapi_v3_root(), content_type="application/json")
        m = re.match(r"^/openapi/v3/apis?/(.+)$", path)
        doc = discovery.openapi_v3(m.group(1)) if m else None
        if doc is None:
            raise APIError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return aiohttp.web.Response(body=doc, content_type="application/json",
                                    headers={"Cache-Control": "public, immutable"})

    # --- resources ------------------------------------------------------------------------------------------------

    async def _serve_resource(self, raw: aiohttp.web.BaseRequest, r: ResourceType, ns: str | None,
                              name: str | None, sub: str | None) -> aiohttp.web.StreamResponse:
        q, method = raw.query, raw.method
        watching = method == "GET" and q.get("watch", "").lower() in ("true", "1")
        verb = ("watch" if watching else "get" if method == "GET" and name else "list" if method == "GET"
                else "create" if method == "POST" else "patch" if method == "PATCH"
                else "update" if method == "PUT" else "delete" if method == "DELETE" else method.lower())
        self.stats[f"{verb} {r.plural}{'/' + sub if sub else ''}"] += 1
        await self._inject_faults()
        if sub is not None and (name is None or sub not in r.subresources):
            raise APIError(404, "NotFound", f"the server could not find the requested resource ({r.plural}/{sub})")
        if sub == "log":
            return await self._serve_log(raw, ns, name)
        if sub == "exec":
            return await serve_exec(raw, self.store.get("pods", ns, name), self.logs)
        if watching:
            return await self._serve_watch(raw, r, ns, name)
        dry_run = q.get("dryRun") == "All"
        if q.get("dryRun") not in (None, "", "All"):
            raise APIError(400, "BadRequest", f"dryRun: Unsupported value: {q.get('dryRun')!r}: supported values: "
                           '"All"')
        if method == "GET" and name:
            obj = self.store.get(r.plural, ns, name)
            if self._table_wanted(raw):
                return _json(table(r.plural, [obj], obj["metadata"]["resourceVersion"], q.get("includeObject", "")))
            return _json(obj)
        if method == "GET":
            return self._serve_list(raw, r, ns)
        if method == "POST" and sub == "binding":
            body = await self._body(raw) or {}
            node = (body.get("target") or {}).get("name")
            if not node:
                raise APIError(422, "Invalid", f'Binding "{name}" is invalid: target.name: Required value')
            self.store.patch("pods", ns, name, {"spec": {"nodeName": node}})
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}, 201)
        if method == "POST" and not name:
            obj, warnings = validation.decode(r, await self._body(raw), q.get("fieldValidation", ""))
            validation.check_url_match(r, obj, None, ns)
            validation.validate(r, obj)
            created = self.store.create(r.plural, None if not r.namespaced else ns, obj, dry_run=dry_run)
            return _json(created, 201, self._warnings(warnings))
        if method in ("PUT", "PATCH") and name:
            return await self._serve_update(raw, r, ns, name, sub, dry_run)
        if method == "DELETE" and name:
            grace = q.get("gracePeriodSeconds")
            body = await self._body(raw) if raw.can_read_body else None
            if grace is None and isinstance(body, dict):
                grace = body.get("gracePeriodSeconds")
                dry_run = dry_run or "All" in (body.get("dryRun") or [])
            try:
                grace_int = None if grace is None else int(grace)
            except (TypeError, ValueError) as e:
                raise APIError(400, "BadRequest", f"gracePeriodSeconds: {grace!r} is not an integer") from e
            return _json(self.store.delete(r.plural, ns, name, grace_int, dry_run=dry_run))
        if method == "DELETE":
            for o in self._select(raw, r, ns):
                self.store.delete(r.plural, o["metadata"].get("namespace"), o["metadata"]["name"], dry_run=dry_run)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise APIError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource "
                       f"({method} {raw.path})")

    @staticmethod
    def _warnings(warnings: list[str]) -> dict | None:
        if not warnings:
            return None
        return {"Warning": ", ".join('299 - ' + json.dumps(w) for w in warnings)}

    def _select(self, raw: aiohttp.web.BaseRequest, r: ResourceType, ns: str | None) -> list[dict]:
        return self.store.list(r.plural, ns, parse_selector(raw.query.get("labelSelector"), kind="label"),
                               parse_selector(raw.query.get("fieldSelector"), kind="field"))

    def _serve_list(self, raw: aiohttp.web.BaseRequest, r: ResourceType, ns: str | None) -> aiohttp.web.Response:
        q = raw.query
        rv, match = q.get("resourceVersion", ""), q.get("resourceVersionMatch", "")
        if match:
            if match not in ("Exact", "NotOlderThan"):
                raise APIError(422, "Invalid", f'resourceVersionMatch: Unsupported value: "{match}": supported '
                               'values: "Exact", "NotOlderThan"')
            if not rv:
                raise APIError(400, "BadRequest", "resourceVersionMatch is forbidden unless resourceVersion is "
                               "provided")
        if rv and rv != "0":
            try:
                want = int(rv)
            except ValueError as e:
                raise APIError(400, "BadRequest", f"resourceVersion: Invalid value: {rv!r}: must be an integer") \
                    from e
            if want > self.store.rv:
                raise APIError(504, "Timeout", f"Too large resource version: {want}, current: {self.store.rv}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}], "retryAfterSeconds": 1})
            if match == "Exact" and want != self.store.rv:
                raise APIError(410, "Expired", f"too old resource version: {want} ({self.store.rv})")
        items = self._select(raw, r, ns)
        start = 0
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"].encode()))
                after = (token["ns"], token["name"])
            except (ValueError, KeyError, TypeError) as e:
                raise APIError(400, "BadRequest", f"continue key is not valid: {e}") from e
            start = next((i + 1 for i, o in enumerate(items)
                          if (o["metadata"].get("namespace") or "", o["metadata"]["name"]) == after), None)
            if start is None:
                raise APIError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                               "list result. You can start a new list without the continue parameter.")
        limit = q.get("limit")
        try:
            limit_n = int(limit) if limit else 0
        except ValueError as e:
            raise APIError(400, "BadRequest", f"limit: {limit!r} is not an integer") from e
        page = items[start:start + limit_n] if limit_n > 0 else items[start:]
        meta: dict = {"resourceVersion": str(self.store.rv)}
        rest = len(items) - start - len(page)
        if limit_n > 0 and rest > 0:
            last = page[-1]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": self.store.rv, "ns": last.get("namespace") or "", "name": last["name"]}).encode()).decode()
            meta["remainingItemCount"] = rest
        if self._table_wanted(raw):
            return _json(table(r.plural, page, meta["resourceVersion"], q.get("includeObject", ""),
                               meta.get("continue")))
        return _json({"apiVersion": r.group_version, "kind": r.kind + "List", "metadata": meta, "items": page})

    async def _serve_update(self, raw: aiohttp.web.BaseRequest, r: ResourceType, ns: str | None, name: str,
                            sub: str | None, dry_run: bool) -> aiohttp.web.Response:
        q = raw.query
        current = self.store.get(r.plural, ns, name)
        body = await self._body(raw)
        if raw.method == "PUT":
            new = body
        else:
            ctype = raw.content_type if raw.headers.get("Content-Type") else ""
            if ctype == "application/apply-patch+yaml":
                raise APIError(415, "UnsupportedMediaType", "server-side apply is not supported by the devcluster; "
                               "use client-side `kubectl apply` (the default)")
            if ctype not in _PATCH_TYPES:
                raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                               f"accepted media types include: {', '.join(_PATCH_TYPES)}")
            if ctype == "application/json-patch+json":
                new = json_patch(current, body)
            else:
                if not isinstance(body, dict):
                    raise APIError(400, "BadRequest", "a merge patch must be a JSON object")
                validation.check_resource_version(r, body, current, name)
                new = merge_patch(current, body) if ctype == "application/merge-patch+json" else \
                    strategic_merge_patch(current, body, definition(r.definition))
        new, warnings = validation.decode(r, copy.deepcopy(new), q.get("fieldValidation", ""))
        validation.check_url_match(r, new, name, ns)
        validation.check_resource_version(r, new, current, name)
        if sub == "status":
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status") or {}
            new = merged
        elif "status" in r.subresources:
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        validation.validate(r, new, current)
        return _json(self.store.put(r.plural, ns, name, new, dry_run=dry_run), 200, self._warnings(warnings))

    # --- pods/log -------------------------------------------------------------------------------------------------

    async def _serve_log(self, raw: aiohttp.web.BaseRequest, ns: str | None, name: str) -> aiohttp.web.StreamResponse:
        q = raw.query
        pod = self.store.get("pods", ns, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []] + \
                     [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        main = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = q.get("container") or (main[0] if len(main) == 1 else None)
        if container is None:
            raise APIError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                           f"[{' '.join(main)}]")
        if container not in containers:
            raise APIError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        previous = q.get("previous", "").lower() in ("true", "1")
        path = self.logs.log_path(pod, container, previous) if self.logs is not None else None
        if path is None or not path.exists():
            if previous:
                raise APIError(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" '
                               "not found")
            raise APIError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: '
                           "ContainerCreating")
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        except ValueError as e:
            raise APIError(400, "BadRequest", f"tailLines/limitBytes must be integers: {e}") from e
        data = path.read_bytes()
        offset = len(data)  # a follow goes on from what was read: nothing written meanwhile is lost
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if limit is not None:
            data = data[:limit]
        follow = q.get("follow", "").lower() in ("true", "1") and not previous
        if not follow:
            return aiohttp.web.Response(body=data, content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw)
        await response.write(data)
        uid = pod["metadata"]["uid"]
        try:
            while not self.store.closed:
                size = path.stat().st_size if path.exists() else offset
                if size > offset:
                    with path.open("rb") as f:
                        f.seek(offset)
                        await response.write(f.read(size - offset))
                    offset = size
                    continue
                current = self.store.find("pods", ns, name)
                if current is None or current["metadata"]["uid"] != uid or not self.logs.running(current,
                                                                                                 container):
                    break
                await asyncio.sleep(0.2)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    # --- watch ----------------------------------------------------------------------------------------------------

    async def _serve_watch(self, raw: aiohttp.web.BaseRequest, r: ResourceType, ns: str | None,
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
        send_initial = q.get("sendInitialEvents", "").lower() == "true"
        bookmarks = q.get("allowWatchBookmarks", "").lower() == "true"
        if send_initial and (q.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            raise APIError(422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: "
                           "sendInitialEvents is allowed with watch=true, allowWatchBookmarks=true and "
                           "resourceVersionMatch=NotOlderThan")
        as_table = self._table_wanted(raw)
        watcher = Watcher(r.plural, ns, labels, fields)
        store = self.store
        since = q.get("resourceVersion") or "0"
        # Everything up to the registration below is synchronous, so no event can slip between the snapshot (or
        # the replay from the log) and the live stream.
        initial: list[dict] = []
        gone: str | None = None
        if since == "0" or send_initial:
            initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in store.list(r.plural, ns, labels, fields)]
        else:
            try:
                since_rv = int(since)
            except ValueError as e:
                raise APIError(400, "BadRequest", f"resourceVersion: {since!r} is not valid") from e
            oldest = store.log[0][0] if store.log else store.rv + 1
            if since_rv < oldest - 1 and since_rv < store.rv:
                gone = f"too old resource version: {since_rv} ({oldest - 1})"
            else:
                initial = [copy.deepcopy(ev) for rv, p, ev in store.log
                           if rv > since_rv and watcher.wants(p, ev["object"])]
        if send_initial:
            initial.append({"type": "BOOKMARK", "object": {
                "kind": r.kind, "apiVersion": r.group_version,
                "metadata": {"resourceVersion": str(store.rv),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}})
        store.watchers.add(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json",
                                                       "Transfer-Encoding": "chunked"})

        def encode(ev: dict) -> bytes:
            if as_table and ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                obj = ev["object"]
                ev = {"type": ev["type"], "object": table(r.plural, [obj], obj["metadata"]["resourceVersion"],
                                                          q.get("includeObject", ""))}
            return json.dumps(ev).encode() + b"\n"

        try:
            await response.prepare(raw)
            if gone:
                err = APIError(410, "Expired", gone).status()
                await response.write(json.dumps({"type": "ERROR", "object": err}).encode() + b"\n")
                return response
            for ev in initial:
                await response.write(encode(ev))
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
                await response.write(encode(ev))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.watchers.discard(watcher)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response


async def serve(api: DevClusterAPI, host: str = "127.0.0.1", port: int = 0, ssl_context=None
                ) -> tuple[aiohttp.web.AppRunner, int]:
    """Serve `api` over HTTP; returns the runner (for cleanup) and the bound port."""
    server = aiohttp.web.Server(api)
    runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api.server_url = f"{'https' if ssl_context else 'http'}://{host}:{bound}"
    return runner, bound


__all__ = ["APIError", "DevClusterAPI", "Store", "matches", "merge_patch", "not_found", "now_iso",
           "parse_selector", "serve"]
