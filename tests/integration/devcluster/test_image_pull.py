"""Image pulls on the devcluster as kubectl shows them on a real cluster: an image that does not exist keeps its pod
Pending, ErrImagePull then ImagePullBackOff with a growing pause, retried until it can be pulled; imagePullPolicy
against the images each node already has."""

from __future__ import annotations

import queue
import subprocess
import threading
import time

import pytest

from tests.conftest import start_devcluster
from tests.kubectl import KUBECTL, kubectl, kubectl_env

from .conftest import create_pod, get_pod, phase_is, pod_body, unique, wait_pod

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image

BASE = 0.2  # --image-pull-backoff: the pauses are 0.2, 0.4, 0.8 s ...
MISSING = "*:no-such-tag"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    handle = start_devcluster(tmp_path_factory.mktemp("pull-dc"), "--image-pull-backoff", str(BASE),
                              "--missing-image", MISSING)
    yield handle
    handle.proc.stop()


def _waiting(pod: dict) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        return ((cs.get("state") or {}).get("waiting") or {}).get("reason")
    return None


def _watch_statuses(cluster, name: str, until, timeout: float = 30) -> list[tuple[float, str]]:
    """`kubectl get pod NAME -w`: the STATUS column of each line with when it came, until ``until(seen)``."""
    proc = subprocess.Popen([str(KUBECTL), "get", "pod", name, "-w", "--no-headers"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=kubectl_env(cluster), start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(seen):
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"kubectl get pod {name} -w: waited {timeout}s; it printed {seen}") from None
            fields = line.split()
            if len(fields) >= 3 and fields[0] == name:
                seen.append((time.monotonic(), fields[2]))
    finally:
        proc.kill()
        proc.wait(5)
    return seen


def _pull_attempts(seen: list[tuple[float, str]]) -> list[float]:
    """When STATUS turned ErrImagePull (each a failed pull)."""
    return [t for i, (t, s) in enumerate(seen) if s == "ErrImagePull" and (i == 0 or seen[i - 1][1] != s)]


def test_an_image_that_does_not_exist_backs_off_and_keeps_retrying(cluster):
    name, image = unique("pull"), "registry.example.org/team/app:1.0"
    create_pod(cluster, pod_body(name, image=image, command=["true"]))
    seen = _watch_statuses(cluster, name, lambda seen: len(_pull_attempts(seen)) >= 5)
    statuses = [s for _, s in seen]
    first = statuses.index("ErrImagePull")
    assert "ImagePullBackOff" in statuses[first:], statuses
    # retried after each back-off: ErrImagePull, ImagePullBackOff, ErrImagePull ... (the doubling pause itself is
    # pull_backoff's, tests/unit/test_devcluster_images.py: kubectl's lines arrive late on a loaded machine)
    changes = [s for i, s in enumerate(statuses[first:]) if i == 0 or statuses[first:][i - 1] != s]
    pulls = [i for i, s in enumerate(changes) if s == "ErrImagePull"]
    assert len(pulls) >= 5 and all("ImagePullBackOff" in changes[a:b] for a, b in zip(pulls, pulls[1:])), changes

    pod = get_pod(cluster, name)
    assert pod["status"]["phase"] == "Pending"  # restartPolicy Never does not end a pull that fails
    assert _waiting(pod) in ("ErrImagePull", "ImagePullBackOff")
    described = kubectl(cluster, "describe", "pod", name).stdout
    assert "Status:       Pending" in described, described
    assert "State:          Waiting" in described and ("Reason:       ImagePullBackOff" in described
                                                        or "Reason:       ErrImagePull" in described), described
    ref = "registry.example.org/team/app:1.0"
    for line in (f'Pulling image "{image}"',
                 f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack '
                 f'image "{ref}": failed to resolve reference "{ref}": {ref}: not found',
                 "Error: ErrImagePull", f'Back-off pulling image "{image}"', "Error: ImagePullBackOff"):
        assert line in described, (line, described)
    pulling = [e for e in cluster.events(name) if e["reason"] == "Pulling"]
    assert len(pulling) == 1 and pulling[0]["count"] >= 5, pulling  # one event, counted as kubelet's are

    kubectl(cluster, "delete", "pod", name, "--grace-period=1")  # deleting it stops the retries
    assert get_pod(cluster, name) is None


def test_a_missing_image_is_pulled_once_it_exists(cluster):
    """--missing-image marks images the registry lacks even where a mapping matches; the kubelet keeps retrying, so
    the pod starts once the image is there (the faults knob changed)."""
    assert cluster.get("/devcluster/faults")["missing_images"] == [MISSING]
    name, image = unique("later"), "quay.io/jupyter/base-notebook:no-such-tag"
    create_pod(cluster, pod_body(name, image=image, command=["python3", "-c", "print('pulled at last')"]))
    try:
        wait_pod(cluster, name, lambda p: _waiting(p) == "ImagePullBackOff", "ImagePullBackOff")
        cluster.set_faults(missing_images=[])
        pod = wait_pod(cluster, name, phase_is("Succeeded", "Failed"), "finished once pulled")
    finally:
        cluster.set_faults(missing_images=[MISSING])
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    messages = [(e["reason"], e["message"]) for e in cluster.events(name)]
    assert any(r == "Failed" and m.startswith(f'Failed to pull image "{image}"') for r, m in messages), messages
    pulled = [m for r, m in messages if r == "Pulled"]
    assert len(pulled) == 1 and pulled[0].startswith(f'Successfully pulled image "{image}" in '), messages
    assert kubectl(cluster, "logs", name).stdout == "pulled at last\n"


def test_pull_policies_against_the_images_each_node_has(cluster):
    image = f"python:3.12-{unique('t')}"  # a tag no other test pulled: no node has it yet

    def run(node: str, policy: str) -> str:
        name = unique(policy.lower())
        body = pod_body(name, image=image, command=["true"])
        body["spec"]["nodeName"] = node
        body["spec"]["containers"][0]["imagePullPolicy"] = policy
        create_pod(cluster, body)
        return name

    first = run("cpu-1", "IfNotPresent")
    wait_pod(cluster, first, phase_is("Succeeded"), "Succeeded")
    reasons = [(e["reason"], e["message"].split(" in ")[0]) for e in cluster.events(first)]
    assert reasons[:2] == [("Pulling", f'Pulling image "{image}"'),
                           ("Pulled", f'Successfully pulled image "{image}"')], reasons

    again = run("cpu-1", "IfNotPresent")  # present on cpu-1: no pull
    wait_pod(cluster, again, phase_is("Succeeded"), "Succeeded")
    assert [(e["reason"], e["message"]) for e in cluster.events(again)][0] == \
        ("Pulled", f'Container image "{image}" already present on machine')

    never_here = run("cpu-1", "Never")
    wait_pod(cluster, never_here, phase_is("Succeeded"), "Succeeded")

    never_there = run("cpu-2", "Never")  # cpu-2 never pulled it, and may not
    wait_pod(cluster, never_there, lambda p: _waiting(p) == "ErrImageNeverPull", "ErrImageNeverPull")
    row = kubectl(cluster, "get", "pod", never_there, "--no-headers").stdout.split()
    assert row[1:3] == ["0/1", "ErrImageNeverPull"], row
    events = [(e["type"], e["reason"], e["message"]) for e in cluster.events(never_there)]
    assert ("Warning", "ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never') \
        in events and not any(r == "Pulling" for _, r, _ in events), events
    kubectl(cluster, "delete", "pod", never_there, "--grace-period=1")
