"""What clients read before they talk to resources: legacy discovery (``/api``, ``/apis``, each group version's
APIResourceList), ``/version``, and the OpenAPI documents (v2 and v3, derived from the kept Kubernetes schemas, with
the ``fieldValidation`` parameter on every PATCH so kubectl leaves validation to the server). Pure."""

from __future__ import annotations

import functools
import hashlib
import json

from .resources import GROUPS, REVIEWS, VERBS, ResourceType
from .schemas import reachable, rewrite_refs

KUBE_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-devcluster", "gitCommit": "devcluster",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                "compiler": "gc", "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "37",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "36"}


def api_versions(server: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]}


def _group_names() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for gv in GROUPS:
        if "/" in gv:
            g, v = gv.split("/")
            out.setdefault(g, []).append(v)
    for g, _ in REVIEWS:
        out.setdefault(g, ["v1"])
    return out


def api_group_list() -> dict:
    groups = []
    for g, versions in _group_names().items():
        vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
        groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict | None:
    versions = _group_names().get(group)
    if versions is None:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}


def _entry(r: ResourceType) -> dict:
    e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
         "verbs": list(VERBS)}
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    return e


def resource_list(group_version: str) -> dict | None:
    resources = GROUPS.get(group_version)
    reviews = [(g, plural, kind) for (g, plural), kind in REVIEWS.items() if f"{g}/v1" == group_version]
    if resources is None and not reviews:
        return None
    out = []
    for r in resources or []:
        out.append(_entry(r))
        for sub in r.subresources:
            verbs = {"status": ["get", "patch", "update"], "log": ["get"], "binding": ["create"], "exec": ["create", "get"],
                     "finalize": ["update"]}[sub]
            kind = {"log": "Pod", "binding": "Binding", "exec": "PodExecOptions"}.get(sub, r.kind)
            out.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": kind,
                        "verbs": verbs})
    for _, plural, kind in reviews:
        out.append({"name": plural, "singularName": kind.lower(), "namespaced": False, "kind": kind,
                    "verbs": ["create"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}


# --- OpenAPI ----------------------------------------------------------------------------------------------------------

def _openapi_types(node):
    """JSON Schema's `type: [string, "null"]` (kubernetes-validate's form) as OpenAPI's single `type` string."""
    if isinstance(node, dict):
        out = {k: _openapi_types(v) for k, v in node.items()}
        t = out.get("type")
        if isinstance(t, list):
            kinds = [x for x in t if x != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            else:
                out.pop("type")
        return out
    if isinstance(node, list):
        return [_openapi_types(v) for v in node]
    return node


_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _operations(r: ResourceType, ref: str) -> dict[str, dict]:
    gvk = {"group": r.group, "version": r.version, "kind": r.kind}
    body = {"content": {"application/json": {"schema": {"$ref": ref}}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
    params = [{"name": p, "in": "query", "schema": {"type": "string"}} for p in _QUERY]

    def op(verb: str, action: str, with_body: bool) -> dict:
        o = {"operationId": f"{verb}{r.kind}", "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
             "responses": ok, "parameters": params}
        if with_body:
            o["requestBody"] = body
        return o

    base = r.api_prefix + ("/namespaces/{namespace}" if r.namespaced else "") + f"/{r.plural}"
    return {base: {"get": op("list", "list", False), "post": op("create", "post", True)},
            base + "/{name}": {"get": op("read", "get", False), "put": op("replace", "put", True),
                               "patch": op("patch", "patch", True), "delete": op("delete", "delete", False)}}


@functools.cache
def openapi_v3(group_version: str) -> bytes | None:
    resources = GROUPS.get(group_version)
    if resources is None:
        return None
    schemas = _openapi_types(rewrite_refs(reachable([r.definition for r in resources]), "#/components/schemas/"))
    paths: dict = {}
    for r in resources:
        paths.update(_operations(r, f"#/components/schemas/{r.definition}"))
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes (devcluster)", "version": KUBE_VERSION["gitVersion"]},
           "paths": paths, "components": {"schemas": schemas}}
    return json.dumps(doc).encode()


@functools.cache
def openapi_v3_root() -> bytes:
    paths = {}
    for gv in GROUPS:
        path = f"api/{gv}" if "/" not in gv else f"apis/{gv}"
        digest = hashlib.sha256(openapi_v3(gv) or b"").hexdigest()[:16].upper()
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return json.dumps({"paths": paths}).encode()


@functools.cache
def openapi_v2() -> bytes:
    names = [r.definition for rs in GROUPS.values() for r in rs]
    defs = _openapi_types(rewrite_refs(reachable(names), "#/definitions/"))
    paths: dict = {}
    for rs in GROUPS.values():
        for r in rs:
            for path, ops in _operations(r, f"#/definitions/{r.definition}").items():
                paths[path] = {verb: {k: v for k, v in o.items() if k not in ("requestBody", "responses")}
                               | {"responses": {"200": {"description": "OK"}},
                                  "parameters": [{"name": p, "in": "query", "type": "string"} for p in _QUERY]}
                               for verb, o in ops.items()}
    return json.dumps({"swagger": "2.0", "info": {"title": "Kubernetes (devcluster)",
                                                  "version": KUBE_VERSION["gitVersion"]},
                       "paths": paths, "definitions": defs}).encode()


def review(kind: str, group: str, body: dict) -> dict:
    """SelfSubject*Review: no RBAC here, so every authenticated request is allowed (a real answer, not a 404)."""
    out = {"kind": kind, "apiVersion": f"{group}/v1", "metadata": {"creationTimestamp": None},
           "spec": (body or {}).get("spec") or {}}
    if kind == "SelfSubjectAccessReview":
        out["status"] = {"allowed": True, "reason": "devcluster: no RBAC; the bearer token of the kubeconfig is "
                                                    "allowed everything"}
    elif kind == "SelfSubjectRulesReview":
        out["status"] = {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                         "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}
    else:
        out["status"] = {"userInfo": {"username": "devcluster-admin", "groups": ["system:masters",
                                                                                "system:authenticated"]}}
    return out
