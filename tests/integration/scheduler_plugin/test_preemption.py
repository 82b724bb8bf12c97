"""Priority and preemption, the whole path on the devcluster: the devcluster's scheduler runs kube-scheduler's
DefaultPreemption (lower-priority victims on one node, reprieving the most important), calls the real extender's
``preempt`` verb, and the extender narrows the victims to the idlest user servers, never one active within
``--protect-active``. The victim gets kube-scheduler's ``Preempted`` event and DisruptionTarget condition, and its
volume claim stays. The extenders are registered as deploy/'s configmap registers them (preempt not ignorable): an
extender that cannot answer means no preemption; only user servers in ``--user-namespace`` are ever victims."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from .conftest import SCHEDULER, create_pod, failed_scheduling, make_stack, pod_body, wait_bound, wait_for

NODES = {"nodes": [{"name": n, "allocatable": {"cpu": "2", "memory": "8Gi", "pods": 110}} for n in ("n1", "n2")]}


def _ago(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_pod(name: str, node: str, priority: int, idle_minutes: float | None, *, claim: str | None = None,
             namespace: str = "default", component: str | None = "singleuser-server") -> dict:
    """A user server (labels component=singleuser-server, as KubeSpawner sets it, and hubfleet.io/user) pinned to
    `node`, with the priority admission would set from its PriorityClass and the last-activity annotation."""
    labels = {"hubfleet.io/user": name.split("-")[-1], "hubfleet.io/profile": "small"}
    if component:
        labels["component"] = component
    body = pod_body(name, cpu="1", scheduler=None, node_selector={"kubernetes.io/hostname": node},
                    labels=labels, namespace=namespace,
                    volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": claim}}] if claim else None,
                    mounts=[{"name": "home", "mountPath": "/home/jovyan"}] if claim else None)
    body["spec"]["containers"][0]["command"] = ["sh", "-c", "trap '' TERM; sleep 300"]
    body["spec"]["terminationGracePeriodSeconds"] = 8  # long enough to read its events while it terminates
    body["spec"]["priority"] = priority
    body["spec"]["priorityClassName"] = "hubfleet-user-low"
    if idle_minutes is not None:
        body["metadata"]["annotations"] = {"hubfleet.io/last-activity": _ago(idle_minutes)}
    return body


@pytest.fixture
def preempt_stack(tmp_path, request):
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(NODES))
    stack = make_stack(tmp_path, "--protect-active", "45m", "--user-namespace", "default",
                       devcluster_args=("--nodes", str(nodes)))
    yield stack
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        print("\n--- devcluster state ---\n" + stack.cluster.describe())
        print("--- devcluster log ---\n" + stack.cluster.proc.log_tail(40))
        print("--- extender log ---\n" + stack.extender.log_tail(40))
    stack.extender.stop()
    stack.cluster.proc.stop()


def _pod(stack, name, namespace="default"):
    r = stack.cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    return r.json() if r.status_code == 200 else None


def _create(stack, body) -> None:
    namespace = body["metadata"].get("namespace", "default")
    r = stack.cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", json=body)
    assert r.status_code == 201, r.text
    name = body["metadata"]["name"]
    wait_for(f"{namespace}/{name} to be bound", lambda: (_pod(stack, name, namespace) or {}).get("spec", {}).get(
        "nodeName"), timeout=20)


def _preempted_events(stack) -> list[str]:
    r = stack.cluster.request("GET", "/api/v1/events")
    return [f"{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}: {e['message']}"
            for e in r.json()["items"] if e["reason"] == "Preempted"]


def assert_nobody_preempted(stack, servers: tuple[str, ...]) -> None:
    """vip does not fit, kube-scheduler proposes victims, the extender keeps none: every server stays, vip waits."""
    messages = wait_for("FailedScheduling for vip", lambda: failed_scheduling(stack.cluster, "vip"))
    assert messages[0] == "0/2 nodes are available: 2 Insufficient cpu.", messages
    wait_for("the extender to refuse the victims", lambda: "preempt pod:default/vip: no victims" in
             stack.extender.log_tail(50), seen=lambda: stack.extender.log_tail(20))
    for name in servers:
        pod = _pod(stack, name)
        assert pod is not None and not pod["metadata"].get("deletionTimestamp"), name
    assert not _pod(stack, "vip")["spec"].get("nodeName")


def test_preemption_takes_the_idlest_user_server_and_keeps_its_files(preempt_stack):
    stack = preempt_stack
    r = stack.cluster.request("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json={
        "metadata": {"name": "claim-dave"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    assert r.status_code == 201, r.text
    # n1: alice (active 2 minutes ago) and bob (idle 2 h); n2: carol (idle 50 min) and dave (idle 3 h).
    # kube-scheduler alone would preempt bob: on n1 its victim has the lowest priority (100 < 400).
    for body in (user_pod("srv-alice", "n1", 200, 2), user_pod("srv-bob", "n1", 100, 120),
                 user_pod("srv-carol", "n2", 500, 50), user_pod("srv-dave", "n2", 400, 180, claim="claim-dave")):
        create_pod(stack.cluster, body)
        wait_bound(stack.cluster, body["metadata"]["name"])
    wait_for("the extender's cache to hold the 4 servers", lambda: stack.cache()["pods"] == 4, seen=stack.cache)

    vip = pod_body("vip", cpu="1")  # schedulerName hubfleet-scheduler: through the extender
    vip["spec"]["priority"] = 1000
    create_pod(stack.cluster, vip)
    wait_for("vip to be nominated to a node", lambda: (_pod(stack, "vip").get("status") or {}).get(
        "nominatedNodeName"), timeout=20, seen=lambda: failed_scheduling(stack.cluster, "vip"))

    # dave, the idlest, is preempted: told why, in kube-scheduler's words (the events a spawn page shows), and his
    # claim stays
    def preempted():
        return [(e["reason"], e["message"], e["source"]["component"]) for e in stack.cluster.events("srv-dave")
                if e["reason"] == "Preempted"]
    assert wait_for("a Preempted event on srv-dave", preempted, timeout=20) == [
        ("Preempted", "Preempted by pod default/vip on node n2", SCHEDULER)]
    dave = _pod(stack, "srv-dave")
    assert dave is None or dave["metadata"].get("deletionTimestamp")
    if dave is not None:
        assert {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": f"{SCHEDULER}: preempting to accommodate a higher priority pod"} in dave["status"][
                    "conditions"]
    assert stack.cluster.request("GET", "/api/v1/namespaces/default/persistentvolumeclaims/claim-dave"
                                 ).status_code == 200
    assert wait_bound(stack.cluster, "vip", timeout=40) == "n2"  # once dave's server has stopped
    assert _pod(stack, "srv-dave") is None
    for name in ("srv-alice", "srv-bob", "srv-carol"):
        pod = _pod(stack, name)
        assert pod["spec"]["nodeName"] and not pod["metadata"].get("deletionTimestamp"), name
    metrics = requests.get(stack.url + "/metrics", timeout=5).text
    assert "hubfleet_extender_preemption_victims_total 1.0" in metrics
    assert "preempt pod:default/vip: on n2, victims default/srv-dave" in stack.extender.log_tail(50)


def test_no_preemption_of_servers_active_within_the_window(preempt_stack):
    stack = preempt_stack
    # every lower-priority server was active within --protect-active (45 min): nobody is preempted
    for body in (user_pod("srv-alice", "n1", 100, 2), user_pod("srv-bob", "n1", 100, 30),
                 user_pod("srv-carol", "n2", 100, 44), user_pod("srv-erin", "n2", 100, None)):  # erin: unknown
        create_pod(stack.cluster, body)
        wait_bound(stack.cluster, body["metadata"]["name"])
    wait_for("the extender's cache to hold the 4 servers", lambda: stack.cache()["pods"] == 4, seen=stack.cache)
    vip = pod_body("vip", cpu="1")
    vip["spec"]["priority"] = 1000
    create_pod(stack.cluster, vip)
    assert_nobody_preempted(stack, ("srv-alice", "srv-bob", "srv-carol", "srv-erin"))


def test_no_preemption_when_the_extender_cannot_answer(preempt_stack):
    """kube-scheduler alone would preempt alice (the lowest priority, though active a minute ago); with the extender
    down, the preempt call fails and, not being ignorable, means no preemption: vip waits."""
    stack = preempt_stack
    for body in (user_pod("srv-alice", "n1", 100, 1), user_pod("srv-bob", "n1", 300, 2),
                 user_pod("srv-carol", "n2", 300, 3), user_pod("srv-dave", "n2", 300, 4)):
        _create(stack, body)
    stack.extender.stop()  # down (a crash, an OOM kill, a rollout): every call fails
    vip = pod_body("vip", cpu="1")
    vip["spec"]["priority"] = 1000
    create_pod(stack.cluster, vip)
    messages = wait_for("FailedScheduling for vip", lambda: failed_scheduling(stack.cluster, "vip"))
    assert messages[0] == "0/2 nodes are available: 2 Insufficient cpu.", messages
    wait_for("the scheduler to abort preemption", lambda: "preemption for vip aborted" in
             stack.cluster.proc.log_tail(100), seen=lambda: stack.cluster.proc.log_tail(10))
    assert _preempted_events(stack) == []
    for name in ("srv-alice", "srv-bob", "srv-carol", "srv-dave"):
        pod = _pod(stack, name)
        assert pod is not None and not pod["metadata"].get("deletionTimestamp"), name
    assert not _pod(stack, "vip")["spec"].get("nodeName")


def test_annotations_outside_user_servers_in_the_user_namespace_are_not_trusted(preempt_stack):
    """Two pods whose annotations say "idle for 3 hours": a user-server look-alike in another namespace, and a pod
    without KubeSpawner's component label in the user namespace. Neither is trusted, so neither is a victim; the real
    user servers are active: nobody is preempted."""
    stack = preempt_stack
    r = stack.cluster.request("POST", "/api/v1/namespaces", json={"metadata": {"name": "elsewhere"}})
    assert r.status_code == 201, r.text
    for body in (user_pod("srv-mallory", "n1", 100, 180, namespace="elsewhere"),
                 user_pod("srv-alice", "n1", 300, 1),
                 user_pod("batch-job", "n2", 100, 180, component=None),
                 user_pod("srv-bob", "n2", 300, 2)):
        _create(stack, body)
    wait_for("the extender's cache to hold the 4 pods", lambda: stack.cache()["pods"] == 4, seen=stack.cache)
    vip = pod_body("vip", cpu="1")
    vip["spec"]["priority"] = 1000
    create_pod(stack.cluster, vip)
    wait_for("the extender to refuse the victims", lambda: "preempt pod:default/vip: no victims" in
             stack.extender.log_tail(50), seen=lambda: stack.extender.log_tail(20))
    log = stack.extender.log_tail(50)
    assert "no proposed victim is a user server (label component=singleuser-server in namespace(s) default)" in log
    assert _preempted_events(stack) == []
    for name, namespace in (("srv-mallory", "elsewhere"), ("batch-job", "default")):
        pod = _pod(stack, name, namespace)
        assert pod is not None and not pod["metadata"].get("deletionTimestamp"), name
