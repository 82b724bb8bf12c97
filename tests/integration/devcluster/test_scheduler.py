"""The devcluster scheduler through the API: placement, FailedScheduling in kube-scheduler's words, nodes files, and
the kube-scheduler extender protocol against a real HTTP extender."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.conftest import start_devcluster
from tests.procs import VENV_BIN

from .conftest import create_pod, get_pod, pod_body, phase_is, unique, wait_for, wait_pod

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
SLEEP = ["sleep", "30"]


def _bound(pod: dict) -> bool:
    return bool(pod["spec"].get("nodeName"))


def _failed_scheduling(cluster, name: str) -> list[dict]:
    return [e for e in cluster.events(name) if e["reason"] == "FailedScheduling"]


def test_pod_too_big_stays_pending_with_failed_scheduling(cluster):
    name = unique("huge")
    create_pod(cluster, pod_body(name, command=SLEEP, requests={"cpu": "100"}))
    events = wait_for(f"a FailedScheduling event for {name}", lambda: _failed_scheduling(cluster, name))
    assert events[0]["type"] == "Warning"
    assert events[0]["message"] == ("0/4 nodes are available: 1 node(s) had untolerated taint "
                                    "{nvidia.com/gpu: present}, 3 Insufficient cpu.")
    pod = get_pod(cluster, name)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled == [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": events[0]["message"]}]


def test_gpu_pod_with_toleration_lands_on_gpu_node(cluster):
    name = unique("gpu")
    create_pod(cluster, pod_body(name, command=SLEEP, requests={"nvidia.com/gpu": "1"},
                                 tolerations=[GPU_TOLERATION]))
    pod = wait_pod(cluster, name, _bound, "bound to a node")
    assert pod["spec"]["nodeName"] == "gpu-1"
    scheduled = [e for e in cluster.events(name) if e["reason"] == "Scheduled"]
    assert scheduled[0]["message"] == f"Successfully assigned default/{name} to gpu-1"

    untolerated = unique("gpu-no-toleration")
    create_pod(cluster, pod_body(untolerated, command=SLEEP, requests={"nvidia.com/gpu": "1"}))
    events = wait_for(f"a FailedScheduling event for {untolerated}", lambda: _failed_scheduling(cluster, untolerated))
    assert events[0]["message"] == ("0/4 nodes are available: 1 node(s) had untolerated taint "
                                    "{nvidia.com/gpu: present}, 3 Insufficient nvidia.com/gpu.")


def test_node_selector_is_respected(cluster):
    names = [unique("pinned") for _ in range(2)]
    for name in names:
        create_pod(cluster, pod_body(name, command=SLEEP, node_selector={"kubernetes.io/hostname": "cpu-3"}))
    for name in names:
        assert wait_pod(cluster, name, _bound, "bound")["spec"]["nodeName"] == "cpu-3"


def test_unknown_scheduler_name_is_left_alone(cluster):
    other, control = unique("other-sched"), unique("control")
    create_pod(cluster, pod_body(other, command=SLEEP, scheduler_name="someone-else"))
    create_pod(cluster, pod_body(control, command=SLEEP))
    wait_pod(cluster, control, _bound, "bound")
    # a pod nobody can place, created after `other`: two failed passes over it mean two full passes over the
    # pending pods, `other` included
    witness = unique("witness")
    create_pod(cluster, pod_body(witness, command=SLEEP, requests={"cpu": "100"}))
    wait_for(f"two scheduling passes over {witness}", lambda: cluster.scheduling_failures(witness) >= 2)
    pod = get_pod(cluster, other)
    assert not pod["spec"].get("nodeName")
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert cluster.events(other) == []


# --- nodes files ------------------------------------------------------------------------------------------------------

def test_custom_nodes_file(tmp_path):
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"nodes": [
        {"name": "tiny-1", "allocatable": {"cpu": "1", "memory": "1Gi", "pods": 2}},
        {"name": "big-1", "labels": {"size": "big"}, "allocatable": {"cpu": "16", "memory": "64Gi"}},
    ]}))
    cluster = start_devcluster(tmp_path / "state", "--nodes", str(nodes))
    try:
        listed = cluster.get("/api/v1/nodes")["items"]
        assert [n["metadata"]["name"] for n in listed] == ["tiny-1", "big-1"]
        assert listed[1]["metadata"]["labels"]["size"] == "big"
        assert listed[0]["status"]["allocatable"] == {"cpu": "1", "memory": "1Gi", "pods": "2"}

        create_pod(cluster, pod_body("needs-2-cpu", command=SLEEP, requests={"cpu": "2"}))
        assert wait_pod(cluster, "needs-2-cpu", _bound, "bound")["spec"]["nodeName"] == "big-1"
        create_pod(cluster, pod_body("wants-big", command=SLEEP, node_selector={"size": "big"}))
        assert wait_pod(cluster, "wants-big", _bound, "bound")["spec"]["nodeName"] == "big-1"
        create_pod(cluster, pod_body("too-big", command=SLEEP, requests={"cpu": "32", "memory": "1Gi"}))
        events = wait_for("FailedScheduling of too-big", lambda: _failed_scheduling(cluster, "too-big"))
        assert events[0]["message"] == "0/2 nodes are available: 2 Insufficient cpu."
    except BaseException:
        print(cluster.report())
        raise
    finally:
        cluster.proc.stop()


def test_invalid_nodes_file_exits_non_zero_naming_the_field(tmp_path):
    """(Every invalid case is in tests/unit/test_devcluster_pure.py; this is what the command line does with one.)"""
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump({"nodes": [{"name": "cpu-1", "allocatable": {"cpu": "lots", "memory": "1Gi"}}]}))
    expected = ["invalid nodes file", "nodes[0].allocatable.cpu", "'lots'"]
    proc = subprocess.run([VENV_BIN / "hubfleet-devcluster", "--state", tmp_path / "state", "--nodes", path],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    for part in expected:
        assert part in proc.stderr, proc.stderr
    assert str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "state" / "devcluster.json").exists()


# --- the extender protocol --------------------------------------------------------------------------------------------

class Extender:
    """A real kube-scheduler extender over HTTP: under /ext, `filter` keeps the nodes whose name ends in "-2" and
    `prioritize` gives them 10; under /broken, every verb answers 500."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls.append((self.path, body))
                if self.path.startswith("/broken/"):
                    return self._send(500, {"error": "extender exploded"})
                if body.get("NodeNames") is not None:
                    names = body["NodeNames"]
                else:
                    names = [n["metadata"]["name"] for n in body["Nodes"]["items"]]
                keep = [n for n in names if n.endswith("-2")]
                if self.path == "/ext/filter":
                    items = [n for n in (body.get("Nodes") or {}).get("items", []) if n["metadata"]["name"] in keep]
                    return self._send(200, {"Nodes": {"items": items}, "NodeNames": None, "Error": "",
                                            "FailedNodes": {n: "name does not end in -2" for n in names
                                                            if n not in keep}})
                if self.path == "/ext/prioritize":
                    return self._send(200, [{"Host": n, "Score": 10} for n in names])
                return self._send(404, {"error": f"no verb {self.path}"})

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def extender():
    ext = Extender()
    yield ext
    ext.close()


@pytest.fixture(scope="module")
def ext_cluster(tmp_path_factory, extender):
    # full NodeLists and a failing extender that is not ignorable: kube-scheduler's other extender mode
    handle = start_devcluster(tmp_path_factory.mktemp("ext-devcluster"),
                              "--extender", f"my-scheduler={extender.url}/ext,nodeCacheCapable=false,ignorable=false",
                              "--extender", f"broken-scheduler={extender.url}/broken,ignorable=false",
                              "--extender", f"lenient-scheduler={extender.url}/broken")
    yield handle
    handle.proc.stop()


def test_extender_places_pod_with_go_field_names(ext_cluster, extender):
    name = unique("extended")
    create_pod(ext_cluster, pod_body(name, command=SLEEP, scheduler_name="my-scheduler"))
    pod = wait_pod(ext_cluster, name, _bound, "bound by the extender")
    assert pod["spec"]["nodeName"] == "cpu-2"
    scheduled = [e for e in ext_cluster.events(name) if e["reason"] == "Scheduled"]
    assert scheduled[0]["source"]["component"] == "my-scheduler"

    calls = [(path, body) for path, body in extender.calls if body["Pod"]["metadata"]["name"] == name]
    assert [path for path, _ in calls] == ["/ext/filter", "/ext/prioritize"]
    filter_args, prioritize_args = calls[0][1], calls[1][1]
    assert set(filter_args) == {"Pod", "Nodes"}  # Go field names: the wire types carry no JSON tags
    # the built-in filters ran first: the tainted GPU node was never offered
    assert [n["metadata"]["name"] for n in filter_args["Nodes"]["items"]] == ["cpu-1", "cpu-2", "cpu-3"]
    assert [n["metadata"]["name"] for n in prioritize_args["Nodes"]["items"]] == ["cpu-2"]
    wait_pod(ext_cluster, name, phase_is("Running"), "Running")


def test_extender_error_leaves_pod_pending(ext_cluster):
    name = unique("broken")
    create_pod(ext_cluster, pod_body(name, command=SLEEP, scheduler_name="broken-scheduler"))
    events = wait_for(f"FailedScheduling of {name}", lambda: _failed_scheduling(ext_cluster, name))
    message = events[0]["message"]
    assert "extender" in message and "/broken/filter" in message and "500" in message
    assert "extender exploded" in message
    pod = get_pod(ext_cluster, name)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_an_ignorable_extender_that_fails_is_skipped(ext_cluster, extender):
    """kube-scheduler's `ignorable: true` (hubfleet's default): the built-in plugins place the pod."""
    name = unique("lenient")
    create_pod(ext_cluster, pod_body(name, command=SLEEP, scheduler_name="lenient-scheduler"))
    pod = wait_pod(ext_cluster, name, _bound, "bound without the extender")
    assert pod["spec"]["nodeName"] in ("cpu-1", "cpu-2", "cpu-3")
    # as kube-scheduler: the failed filter is skipped, and so is the prioritize that fails next
    assert [p for p, b in extender.calls if b["Pod"]["metadata"]["name"] == name] == ["/broken/filter",
                                                                                     "/broken/prioritize"]
    assert not _failed_scheduling(ext_cluster, name)


def test_bad_extender_options_are_refused_naming_them(tmp_path):
    proc = subprocess.run([VENV_BIN / "hubfleet-devcluster", "--state", tmp_path / "s", "--extender",
                           "x=http://127.0.0.1:9/p,ignorable=maybe"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "ignorable must be true or false, not 'maybe'" in proc.stderr, proc.stderr


def test_extender_cluster_still_schedules_default_pods(ext_cluster, extender):
    name = unique("plain")
    before = len(extender.calls)
    create_pod(ext_cluster, pod_body(name, command=SLEEP))
    assert wait_pod(ext_cluster, name, _bound, "bound")["spec"]["nodeName"] in ("cpu-1", "cpu-2", "cpu-3")
    assert not [c for c in extender.calls[before:] if c[1]["Pod"]["metadata"]["name"] == name]


@pytest.mark.parametrize("mode,reason,message", [
    ("scale-up", "TriggeredScaleUp", "pod triggered scale-up: [{devcluster-pool 0->1 (max: 3)}]"),
    ("no-scale-up", "NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size reached"),
])
def test_cluster_autoscaler_events_on_request(cluster, mode, reason, message):
    """A test asks (`/devcluster/faults` `autoscaler`) for what cluster-autoscaler says about an unschedulable pod."""
    r = cluster.request("POST", "/devcluster/faults", json={"autoscaler": "sometimes"})
    assert r.status_code == 400 and "faults.autoscaler: 'sometimes' must be one of" in r.text
    cluster.set_faults(autoscaler=mode)
    try:
        name = unique("wants-a-node")
        create_pod(cluster, pod_body(name, command=SLEEP, requests={"cpu": "100"}))
        events = wait_for(f"a {reason} event for {name}",
                          lambda: [e for e in cluster.events(name) if e["reason"] == reason])
        assert (events[0]["type"], events[0]["message"], events[0]["source"]["component"]) == \
            ("Normal", message, "cluster-autoscaler")
        assert _failed_scheduling(cluster, name), "beside kube-scheduler's FailedScheduling"
    finally:
        cluster.set_faults(autoscaler="")
    later = unique("no-autoscaler")
    create_pod(cluster, pod_body(later, command=SLEEP, requests={"cpu": "100"}))
    wait_for(f"a FailedScheduling event for {later}", lambda: _failed_scheduling(cluster, later))
    assert not [e for e in cluster.events(later) if e["reason"] == reason]
