"""Where the devcluster used to differ from Kubernetes, tried with the real kubectl 1.37 as an operator would:
a subPath mount of one ConfigMap/Secret key, a volume whose Secret comes after its pod (KubeSpawner with
internal_ssl), garbage collection by ownerReferences, `kubectl exec`, readiness probes and pod phases."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.kubectl import kubectl
from tests.procs import wait_for

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image


def apply(cluster, text: str) -> None:
    kubectl(cluster, "apply", "-f", "-", stdin=textwrap.dedent(text))


def get(cluster, kind: str, name: str) -> dict | None:
    p = kubectl(cluster, "get", kind, name, "-o", "json", ok=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def events_of(cluster, pod: str, reason: str) -> list[dict]:
    p = kubectl(cluster, "get", "events", "--field-selector", f"involvedObject.name={pod},reason={reason}",
                "-o", "json")
    return json.loads(p.stdout)["items"]


def conditions(pod: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}


def apply_sleeper(cluster, name: str) -> None:
    """A pod whose one container prints `up` and sleeps (no probe, no volume)."""
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: python:3.11
            command: [python3, -u, -c, "import time; print('up'); time.sleep(600)"]
        """)


def wait_ready(cluster, name: str) -> None:
    kubectl(cluster, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s", timeout=90)


def test_a_subpath_mount_of_one_configmap_and_one_secret_key_is_that_file(cluster):
    """How z2jh mounts the hub's config: one key of a ConfigMap (and of a Secret) at a file path the host lacks."""
    kubectl(cluster, "create", "configmap", "hub", "--from-literal=jupyterhub_config.py=c.answer = 42")
    kubectl(cluster, "create", "secret", "generic", "hub", "--from-literal=values.yaml=secret: s3cr3t")
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: hubcfg}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: hub
            image: python:3.11
            command: [sh, -c, "cat /usr/local/etc/jupyterhub/jupyterhub_config.py /usr/local/etc/jupyterhub/secret/values.yaml; echo; sleep 600"]
            volumeMounts:
            - {{name: config, mountPath: /usr/local/etc/jupyterhub/jupyterhub_config.py, subPath: jupyterhub_config.py}}
            - {{name: secret, mountPath: /usr/local/etc/jupyterhub/secret/values.yaml, subPath: values.yaml}}
          volumes:
          - {{name: config, configMap: {{name: hub}}}}
          - {{name: secret, secret: {{secretName: hub}}}}
        """)
    wait_ready(cluster, "hubcfg")
    wait_for("the hub container to print its config", lambda: "secret: s3cr3t" in kubectl(
        cluster, "logs", "hubcfg").stdout, timeout=30)
    assert kubectl(cluster, "logs", "hubcfg").stdout.startswith("c.answer = 42")


def test_a_secret_created_after_its_pod_is_waited_for(cluster):
    """KubeSpawner with internal_ssl creates the pod, then the Secret its volume names: the pod waits in
    ContainerCreating with FailedMount warnings, then starts once the Secret exists."""
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: late}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: python:3.11
            command: [sh, -c, "cat /etc/jupyterhub/ssl/ca.crt; echo; sleep 600"]
            volumeMounts: [{{name: certs, mountPath: /etc/jupyterhub/ssl}}]
          volumes: [{{name: certs, secret: {{secretName: late-certs}}}}]
        """)
    events = wait_for("a FailedMount warning for pod late", lambda: events_of(cluster, "late", "FailedMount"),
                      timeout=30)
    assert events[0]["type"] == "Warning" and 'secret "late-certs" not found' in events[0]["message"]
    pod = get(cluster, "pod", "late")
    assert pod["status"]["phase"] == "Pending", pod["status"]
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"

    kubectl(cluster, "create", "secret", "generic", "late-certs", "--from-literal=ca.crt=THE-CA")
    wait_ready(cluster, "late")
    wait_for("the container to read the Secret", lambda: "THE-CA" in kubectl(cluster, "logs", "late").stdout,
             timeout=30)


def test_services_and_secrets_owned_by_a_deleted_pod_are_collected(cluster):
    apply_sleeper(cluster, "owner")
    uid = get(cluster, "pod", "owner")["metadata"]["uid"]
    ref = f"ownerReferences: [{{apiVersion: v1, kind: Pod, name: owner, uid: {uid}}}]"
    apply(cluster, f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: owner, {ref}}}
        spec: {{ports: [{{port: 8888}}], selector: {{app: owner}}}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: owner-certs, {ref}}}
        stringData: {{a: b}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: unowned}}
        data: {{a: b}}
        """)
    kubectl(cluster, "delete", "pod", "owner", "--timeout=60s", timeout=90)
    kubectl(cluster, "wait", "--for=delete", "service/owner", "secret/owner-certs", "--timeout=30s", timeout=60)
    assert get(cluster, "configmap", "unowned") is not None  # no owners: never collected


def test_kubectl_exec_runs_in_the_container_and_passes_the_exit_code(cluster):
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: shell}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: python:3.11
            command: [sh, -c, "echo from-the-container > /data/note; sleep 600"]
            env: [{{name: GREETING, value: hello-env}}]
            volumeMounts: [{{name: data, mountPath: /data}}]
          volumes: [{{name: data, emptyDir: {{}}}}]
        """)
    wait_ready(cluster, "shell")
    p = kubectl(cluster, "exec", "shell", "--", "echo", "hi")
    assert p.stdout == "hi\n"
    p = kubectl(cluster, "exec", "shell", "--", "sh", "-c", "echo $GREETING; cat /data/note; echo oops >&2; exit 3",
                ok=False)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "hello-env\nfrom-the-container\n" and "oops" in p.stderr
    p = kubectl(cluster, "exec", "-i", "shell", "-c", "main", "--", "cat", stdin="piped in\n")
    assert p.stdout == "piped in\n"
    p = kubectl(cluster, "exec", "shell", "-c", "nosuch", "--", "true", ok=False)
    assert p.returncode != 0 and "container nosuch is not valid for pod shell" in p.stderr


def test_readiness_probe_decides_ready_and_a_running_container_makes_the_pod_running(cluster):
    """Running as soon as the container runs; Ready only while its readiness probe passes (here: an HTTP GET of a
    file that `kubectl exec` creates and removes)."""
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: probed}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: python:3.11
            command: [python3, -m, http.server, "8000", --bind, 0.0.0.0, --directory, /tmp/www]
            ports: [{containerPort: 8000, name: http}]
            volumeMounts: [{name: www, mountPath: /tmp/www}]
            readinessProbe:
              httpGet: {path: /healthy, port: http}
              periodSeconds: 1
              failureThreshold: 2
              successThreshold: 1
          volumes: [{name: www, emptyDir: {}}]
        """)
    wait_for("a failed readiness probe of pod probed", lambda: events_of(cluster, "probed", "Unhealthy"), timeout=30)
    pod = get(cluster, "pod", "probed")
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert conditions(pod)["Ready"] == "False" and pod["status"]["containerStatuses"][0]["ready"] is False

    kubectl(cluster, "exec", "probed", "--", "touch", "/tmp/www/healthy")
    wait_ready(cluster, "probed")
    kubectl(cluster, "exec", "probed", "--", "rm", "/tmp/www/healthy")
    kubectl(cluster, "wait", "--for=condition=Ready=false", "pod/probed", "--timeout=30s", timeout=60)
    assert get(cluster, "pod", "probed")["status"]["phase"] == "Running"


def test_a_container_without_a_probe_is_ready_once_it_runs(cluster):
    apply_sleeper(cluster, "noprobe")
    wait_ready(cluster, "noprobe")
    assert get(cluster, "pod", "noprobe")["status"]["phase"] == "Running"
