"""Pods behave like containers when the devcluster runs as root (CI does): the pod's user, a private mount namespace
with only its own volumes, memory limits (OOMKilled), restartPolicy with back-off, init containers and sidecars."""

from __future__ import annotations

import os

import pytest

from tests.conftest import start_devcluster
from tests.procs import wait_for

from .conftest import create_pod, pod_body, unique, wait_pod

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="enforcement needs root (CI runs as root)"),
              pytest.mark.stack_independent]  # the devcluster never runs in the hub image: one stack runs it
USER = {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100, "runAsNonRoot": True}


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """A devcluster whose crash back-off starts at 1 s (kubelet's is 10 s)."""
    handle = start_devcluster(tmp_path_factory.mktemp("sandbox-dc"), "--restart-backoff", "1")
    yield handle
    handle.proc.stop()


def log_of(cluster, name: str, **params) -> str:
    r = cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}/log", params=params)
    assert r.status_code == 200, r.text
    return r.text


def finished(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def home_pod(name: str, claim: str, script: str, **kw) -> dict:
    body = pod_body(name, command=["sh", "-c", script], volumes=[{"name": "home", "persistentVolumeClaim": {
        "claimName": claim}}], mounts=[{"name": "home", "mountPath": "/home/jovyan"}], **kw)
    body["spec"]["securityContext"] = dict(USER)
    return body


def make_claim(cluster, claim: str) -> None:
    r = cluster.request("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json={
        "metadata": {"name": claim}, "spec": {"accessModes": ["ReadWriteOnce"],
                                              "resources": {"requests": {"storage": "1Gi"}}}})
    assert r.status_code == 201, r.text


def test_pod_runs_as_its_user_with_its_home_and_nobody_elses(fast):
    alice, bob = unique("alice"), unique("bob")
    make_claim(fast, alice)
    make_claim(fast, bob)
    create_pod(fast, home_pod(alice, alice, "id -u; id -G; echo secret > /home/jovyan/notes.txt && echo wrote"))
    wait_pod(fast, alice, finished, "alice's pod finished", timeout=30)
    out = log_of(fast, alice).split()
    assert out[0] == "1000" and "100" in out[1:-1] and out[-1] == "wrote", out
    # bob sees his own (empty) home, and neither alice's volume nor the devcluster's state directory
    script = (f"ls -A /home/jovyan; cat {fast.state_dir}/volumes/default/{alice}/notes.txt 2>&1; "
              f"ls {fast.state_dir} 2>&1; cat {fast.state_dir}/token 2>&1; echo done")
    create_pod(fast, home_pod(bob, bob, script))
    wait_pod(fast, bob, finished, "bob's pod finished", timeout=30)
    lines = log_of(fast, bob).splitlines()
    assert "secret" not in lines and "notes.txt" not in lines, lines  # neither `ls -A` nor `cat` found them
    assert lines[0].startswith("cat: ") and "No such file or directory" in lines[0], lines  # bob's home is empty
    assert all("No such file or directory" in line for line in lines[1:-1]) and lines[-1] == "done", lines
    # and a file in alice's home survives her pod (stop/start)
    again = unique("alice-again")
    create_pod(fast, home_pod(again, alice, "cat /home/jovyan/notes.txt; ls -ln /home/jovyan/notes.txt"))
    wait_pod(fast, again, finished, "alice's second pod finished", timeout=30)
    out = log_of(fast, again)
    assert out.startswith("secret") and " 1000 " in out, out


def test_run_as_non_root_without_a_user_is_refused(fast):
    name = unique("rootish")
    body = pod_body(name, command=["true"])
    body["spec"]["securityContext"] = {"runAsNonRoot": True}
    create_pod(fast, body)
    pod = wait_pod(fast, name, finished, "a final phase", timeout=30)
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert "runAsNonRoot" in pod["status"]["message"]


def test_over_the_memory_limit_is_oom_killed(fast):
    name = unique("hog")
    body = pod_body(name, image="python:3.11", command=["python3", "-c", "x = bytearray(300 * 2**20); print(len(x))"],
                    limits={"memory": "100Mi"}, restart="OnFailure")
    create_pod(fast, body)

    def restarted_after_oom(pod):
        cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
        return (cs.get("lastState") or {}).get("terminated", {}).get("reason") == "OOMKilled"

    pod = wait_pod(fast, name, restarted_after_oom, "lastState.terminated.reason OOMKilled", timeout=40)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" or cs["restartCount"] >= 1


def test_crash_loop_backs_off_and_keeps_the_previous_log(fast):
    name = unique("crash")
    create_pod(fast, pod_body(name, command=["sh", "-c", "echo attempt; exit 1"], restart="Always"))

    def looping(pod):
        cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
        return cs.get("restartCount", 0) >= 2 and (cs.get("state") or {}).get("waiting", {}).get(
            "reason") == "CrashLoopBackOff"

    pod = wait_pod(fast, name, looping, "restartCount >= 2 in CrashLoopBackOff", timeout=40)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert "back-off 4s restarting failed container" in cs["state"]["waiting"]["message"]
    assert log_of(fast, name, previous="true").strip() == "attempt"


def test_init_containers_first_then_every_container_with_its_own_log(fast):
    name = unique("multi")
    body = pod_body(name, command=["sh", "-c", "cat /work/ready; sleep 30"],
                    volumes=[{"name": "work", "emptyDir": {}}], mounts=[{"name": "work", "mountPath": "/work"}])
    body["spec"]["initContainers"] = [{"name": "prepare", "image": "busybox:1.36", "command": [
        "sh", "-c", "echo prepared > /work/ready"], "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
    body["spec"]["containers"].append({"name": "sidecar", "image": "busybox:1.36",
                                       "command": ["sh", "-c", "echo sidecar up; sleep 30"]})
    create_pod(fast, body)
    wait_pod(fast, name, lambda p: p["status"].get("phase") == "Running" and all(
        c.get("ready") for c in p["status"].get("containerStatuses") or [{}]) and len(
        p["status"].get("containerStatuses") or []) == 2, "both containers ready", timeout=30)
    # ready as soon as they run (no readiness probe): their first line may come a moment later
    wait_for("main's log", lambda: log_of(fast, name, container="main").strip() == "prepared")
    wait_for("the sidecar's log", lambda: log_of(fast, name, container="sidecar").strip() == "sidecar up")
    r = fast.request("GET", f"/api/v1/namespaces/default/pods/{name}/log")
    assert r.status_code == 400 and "a container name must be specified" in r.json()["message"]
    fast.request("DELETE", f"/api/v1/namespaces/default/pods/{name}").raise_for_status()
