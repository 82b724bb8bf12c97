"""The process kubelet, through the API: pods become local processes on their own 127.0.X.Y, with the events,
phases, exit codes and volumes a user of a real cluster would see."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from tests.procs import port_open

from .conftest import create_pod, get_pod, pod_body, phase_is, reasons_of, unique, wait_for, wait_pod

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image

HTTP_SERVER = ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]


def _ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


def _pgrep(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


def test_http_server_pod_runs_on_its_own_ip_and_stops_on_delete(cluster):
    name = unique("web")
    body = pod_body(name, command=HTTP_SERVER, port=8000)
    body["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8000}, "periodSeconds": 1}
    create_pod(cluster, body)
    pod = wait_pod(cluster, name, _ready, "Running and Ready")
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.0.") and ip != "127.0.0.1"
    assert pod["status"]["podIPs"] == [{"ip": ip}]
    assert pod["spec"]["nodeName"] in ("cpu-1", "cpu-2", "cpu-3")
    r = requests.get(f"http://{ip}:8000/", timeout=5)
    assert r.status_code == 200 and "Directory listing" in r.text
    # (and an Unhealthy warning for each probe that ran before the server listened, as on a kubelet)
    assert [r for r in reasons_of(cluster, name) if r != "Unhealthy"] == ["Scheduled", "Pulling", "Pulled",
                                                                          "Created", "Started"]
    marker = f"http.server 8000 --bind {ip}$"  # 0.0.0.0 in the args was made the pod's IP
    assert _pgrep(marker)  # (the container's process, and bwrap's around it when sandboxed)

    r = cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"].get("deletionTimestamp")
    wait_for(f"pod {name} to be gone", lambda: get_pod(cluster, name) is None, timeout=10)
    assert _pgrep(marker) == []
    assert not port_open(ip, 8000)


def test_exit_codes_set_phase(cluster):
    failing, succeeding = unique("exit3"), unique("exit0")
    create_pod(cluster, pod_body(failing, command=["python3", "-c", "import sys; sys.exit(3)"]))
    create_pod(cluster, pod_body(succeeding, command=["sh", "-c", "exit 0"]))
    pod = wait_pod(cluster, failing, phase_is("Failed", "Succeeded"), "finished")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    pod = wait_pod(cluster, succeeding, phase_is("Failed", "Succeeded"), "finished")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_container_without_a_runnable_command_fails(cluster):
    name = unique("bare")
    create_pod(cluster, pod_body(name, image="bare/thing:1"))  # the module's --images maps bare/* to nothing
    pod = wait_pod(cluster, name, phase_is("Failed", "Succeeded", "Running"), "a final phase")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "CreateContainerError"
    assert "no command to run" in pod["status"]["message"] and "bare/*" in pod["status"]["message"]

    # a number in the command is a decoding error, refused at the API as kube-apiserver refuses it
    r = cluster.request("POST", "/api/v1/namespaces/default/pods",
                        json=pod_body(unique("numbers"), command=["python3", "-m", "http.server", 8000]))
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest", r.text
    assert "spec.containers[0].command[3]: expected string, got number" in r.json()["message"]


def test_pvc_directory_survives_pod_delete_and_recreate(cluster):
    claim, name = unique("home"), unique("writer")
    r = cluster.request("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json={
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    assert r.status_code == 201, r.text
    volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}]
    mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    create_pod(cluster, pod_body(name, volumes=volumes, mounts=mounts, command=[
        "sh", "-c", f"echo written-by-{name} > /home/jovyan/note.txt"]))
    pod = wait_pod(cluster, name, phase_is("Succeeded", "Failed"), "finished")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    on_disk = cluster.state_dir / "volumes" / "default" / claim / "note.txt"
    assert on_disk.read_text() == f"written-by-{name}\n"

    assert cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{name}").status_code == 200
    wait_for(f"pod {name} to be gone", lambda: get_pod(cluster, name) is None, timeout=10)
    assert on_disk.exists()
    # the same pod again: the process finds the file at the mount path
    create_pod(cluster, pod_body(name, volumes=volumes, mounts=mounts, command=[
        "sh", "-c", f"grep -qx written-by-{name} /home/jovyan/note.txt"]))
    pod = wait_pod(cluster, name, phase_is("Succeeded", "Failed"), "finished")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]


def test_grace_period_then_sigkill(cluster):
    """A process that ignores SIGTERM is killed once the grace period is over, not before."""
    name = unique("stubborn")
    marker = f"stubborn-{name}"
    nap = f"60.{int(time.time() * 1000) % 100000:05d}"  # a unique sleep: it runs only once the trap is set
    create_pod(cluster, pod_body(name, command=["sh", "-c", f"trap '' TERM; sleep {nap}; echo {marker}"]))
    wait_pod(cluster, name, _ready, "Running and Ready")
    wait_for("the pod's process", lambda: _pgrep(marker))
    wait_for("the pod's shell to ignore SIGTERM (its sleep started)", lambda: _pgrep(f"sleep {nap}"))
    started = time.monotonic()
    r = cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{name}", json={"gracePeriodSeconds": 2})
    assert r.status_code == 200, r.text
    wait_for(f"pod {name} to be gone", lambda: get_pod(cluster, name) is None, timeout=10, interval=0.05)
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 5, f"deleted after {elapsed:.2f}s with a 2s grace period"
    assert _pgrep(marker) == []
