"""Each rule kube-apiserver enforces that the devcluster enforces too, with kube-apiserver's code and reason (one
test per rule, over raw HTTP so the exact answer is seen)."""

from __future__ import annotations

import pytest

from .conftest import pod_body, unique

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image

INERT = "nobody-scheduler"
PODS = "/api/v1/namespaces/default/pods"


def post(cluster, body, path=PODS, **params):
    return cluster.request("POST", path, json=body, params=params)


def refused(r, code: int, reason: str, text: str) -> None:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code, body
    assert text in body["message"], body["message"]


def inert_pod(**kw):
    return pod_body(unique("v"), scheduler_name=INERT, **kw)


@pytest.mark.parametrize("name, text", [
    ("Bad_Name", 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'),
    ("a" * 254, "metadata.name: Invalid value"),
    ("-start", "a lowercase RFC 1123 subdomain"),
])
def test_pod_names_are_dns_subdomains(cluster, name, text):
    body = inert_pod()
    body["metadata"]["name"] = name
    refused(post(cluster, body), 422, "Invalid", text)


def test_namespace_and_service_names_follow_their_rules(cluster):
    refused(post(cluster, {"metadata": {"name": "a.b"}}, "/api/v1/namespaces"), 422, "Invalid",
            "a lowercase RFC 1123 label must consist of")
    refused(post(cluster, {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}},
                 "/api/v1/namespaces/default/services"), 422, "Invalid", "a DNS-1035 label must consist of")


def test_container_names_are_dns_labels(cluster):
    body = inert_pod()
    body["spec"]["containers"][0]["name"] = "C_1"
    refused(post(cluster, body), 422, "Invalid", 'spec.containers[0].name: Invalid value: "C_1": a lowercase RFC 1123 '
            "label")


@pytest.mark.parametrize("labels, text", [
    ({"app": "with space"}, 'metadata.labels: Invalid value: "with space": a valid label must be an empty string'),
    ({"bad key!": "x"}, 'metadata.labels: Invalid value: "bad key!": name part must consist of'),
    ({"app": "x" * 64}, "must be no more than 63 characters"),
])
def test_label_keys_and_values(cluster, labels, text):
    refused(post(cluster, inert_pod(labels=labels)), 422, "Invalid", text)


def test_annotations_over_256_kib_are_too_long(cluster):
    body = inert_pod()
    body["metadata"]["annotations"] = {"big": "x" * (300 * 1024)}
    refused(post(cluster, body), 422, "Invalid", "metadata.annotations: Too long: may not be more than 262144 bytes")


def test_body_over_3_mib_is_413(cluster):
    body = {"metadata": {"name": unique("huge")}, "data": {f"k{i}": "x" * 1024 * 1024 for i in range(4)}}
    refused(post(cluster, body, "/api/v1/namespaces/default/configmaps"), 413, "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728")
    # under the limit (but over aiohttp's default 1 MiB) is fine
    body = {"metadata": {"name": unique("big")}, "data": {"k": "x" * (2 * 1024 * 1024)}}
    assert post(cluster, body, "/api/v1/namespaces/default/configmaps").status_code == 201


def test_field_validation_strict_warn_ignore(cluster):
    body = inert_pod()
    body["spec"]["nosuch"] = 1
    refused(post(cluster, body, fieldValidation="Strict"), 400, "BadRequest",
            'strict decoding error: unknown field "spec.nosuch"')
    r = post(cluster, body, fieldValidation="Warn")
    assert r.status_code == 201 and 'unknown field \\"spec.nosuch\\"' in r.headers["Warning"], r.headers
    assert "nosuch" not in r.json()["spec"]
    body["metadata"]["name"] = unique("v")
    r = post(cluster, body, fieldValidation="Ignore")
    assert r.status_code == 201 and "Warning" not in r.headers and "nosuch" not in r.json()["spec"]


def test_immutable_pod_fields_and_required_image(cluster):
    body = inert_pod()
    name = post(cluster, body).json()["metadata"]["name"]
    patch = {"headers": {"Content-Type": "application/strategic-merge-patch+json"}}
    r = cluster.request("PATCH", f"{PODS}/{name}", json={"spec": {"containers": [{"name": "main", "image": ""}]}},
                        **patch)
    refused(r, 422, "Invalid", "spec.containers[0].image: Required value")
    r = cluster.request("PATCH", f"{PODS}/{name}", json={"spec": {"nodeName": "cpu-1"}}, **patch)
    refused(r, 422, "Invalid", "spec: Forbidden: pod updates may not change fields other than")
    r = cluster.request("PATCH", f"{PODS}/{name}", json={"spec": {"containers": [{"name": "main",
                                                                                  "image": "busybox:2"}]}}, **patch)
    assert r.status_code == 200 and r.json()["spec"]["containers"][0]["image"] == "busybox:2"


def test_stale_resource_version_in_patch_and_put_is_409(cluster):
    name = post(cluster, inert_pod()).json()["metadata"]["name"]
    current = cluster.get(f"{PODS}/{name}")
    stale = current["metadata"]["resourceVersion"]
    cluster.request("PATCH", f"{PODS}/{name}", json={"metadata": {"labels": {"a": "1"}}},
                    headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    r = cluster.request("PATCH", f"{PODS}/{name}", json={"metadata": {"resourceVersion": stale, "labels": {"a": "2"}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    refused(r, 409, "Conflict", f'Operation cannot be fulfilled on pods "{name}": the object has been modified')
    refused(cluster.request("PUT", f"{PODS}/{name}", json=current), 409, "Conflict", "the object has been modified")


def test_name_and_namespace_must_match_the_url(cluster):
    name = post(cluster, inert_pod()).json()["metadata"]["name"]
    current = cluster.get(f"{PODS}/{name}")
    other = dict(current, metadata=dict(current["metadata"], name="other"))
    refused(cluster.request("PUT", f"{PODS}/{name}", json=other), 400, "BadRequest",
            f"the name of the object (other) does not match the name on the URL ({name})")
    body = inert_pod(namespace="kube-system")
    refused(post(cluster, body), 400, "BadRequest", "the namespace of the provided object (kube-system) does not "
            "match the namespace sent on the request (default)")


def test_limit_and_continue(cluster):
    ns = unique("pages")
    assert post(cluster, {"metadata": {"name": ns}}, "/api/v1/namespaces").status_code == 201
    path = f"/api/v1/namespaces/{ns}/configmaps"
    for i in range(5):
        assert post(cluster, {"metadata": {"name": f"cm{i}"}}, path).status_code == 201
    names, token, pages = [], None, 0
    while True:
        page = cluster.get(path, params={"limit": 2, **({"continue": token} if token else {})})
        names += [o["metadata"]["name"] for o in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 5 - len(names)
    assert names == [f"cm{i}" for i in range(5)] and pages == 3
    refused(cluster.request("GET", path, params={"limit": 2, "continue": "garbage"}), 400, "BadRequest",
            "continue key is not valid")


def test_resource_version_match(cluster):
    path = "/api/v1/namespaces/default/configmaps"
    refused(cluster.request("GET", path, params={"resourceVersionMatch": "NotOlderThan"}), 400, "BadRequest",
            "resourceVersionMatch is forbidden unless resourceVersion is provided")
    refused(cluster.request("GET", path, params={"resourceVersionMatch": "Sometimes", "resourceVersion": "1"}), 422,
            "Invalid", 'resourceVersionMatch: Unsupported value: "Sometimes"')
    refused(cluster.request("GET", path, params={"resourceVersionMatch": "Exact", "resourceVersion": "1"}), 410,
            "Expired", "too old resource version")
    refused(cluster.request("GET", path, params={"resourceVersionMatch": "NotOlderThan",
                                                 "resourceVersion": "999999999"}), 504, "Timeout",
            "Too large resource version")
    current = cluster.get(path)["metadata"]["resourceVersion"]
    assert cluster.request("GET", path, params={"resourceVersionMatch": "NotOlderThan",
                                                "resourceVersion": current}).status_code == 200


def test_sub_path_and_key_traversal_are_refused(cluster):
    body = inert_pod(volumes=[{"name": "home", "emptyDir": {}}],
                     mounts=[{"name": "home", "mountPath": "/home/jovyan", "subPath": "../../etc"}])
    refused(post(cluster, body), 422, "Invalid", "volumeMounts[0].subPath: Invalid value: \"../../etc\": must not "
            "contain '..'")
    body = inert_pod(volumes=[{"name": "s", "secret": {"secretName": "x", "items": [{"key": "k", "path": "../x"}]}}])
    refused(post(cluster, body), 422, "Invalid", "spec.volumes[0].secret.items[0].path")
    r = post(cluster, {"metadata": {"name": unique("s")}, "data": {"../evil": "eA=="}},
             "/api/v1/namespaces/default/secrets")
    refused(r, 422, "Invalid", "a valid config key must consist of alphanumeric characters")


def test_protobuf_of_an_undecoded_kind_is_415(cluster):
    r = cluster.request("POST", PODS, data=b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x03Pod",
                        headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    refused(r, 415, "UnsupportedMediaType", "protobuf bodies of kind Pod are not decoded")
