"""kube-scheduler extender wire types (k8s.io/kube-scheduler/extender/v1): Go field names, Go-like case-insensitive
decoding, and a clear error naming the field for every malformed payload. Runs the verbs on bytes (no sockets); the
same payloads go over HTTP to the real server in tests/integration/scheduler_plugin."""

from __future__ import annotations

import json

import pytest

from hubfleet.scheduler_plugin import wire
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import Policy
from hubfleet.scheduler_plugin.wire import (ExtenderArgs, ExtenderBindingArgs, ExtenderFilterResult, HostPriority,
                                            WireError)

POD = {"metadata": {"name": "jupyter-alice", "namespace": "jhub"},
       "spec": {"containers": [{"name": "notebook", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}}


def node(name, cpu="4", memory="16Gi", gpus=0, rv="1"):
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    labels = {}
    if gpus:
        alloc["nvidia.com/gpu"] = str(gpus)
        labels["nvidia.com/gpu.present"] = "true"
    return {"metadata": {"name": name, "labels": labels, "resourceVersion": rv}, "status": {"allocatable": alloc}}


NODES = [node("cpu-1"), node("cpu-2"), node("gpu-1", "8", "32Gi", gpus=2)]


@pytest.fixture
def extender():
    cache = ClusterCache()
    cache.replace_nodes(NODES)
    cache.replace_pods([{"metadata": {"uid": "u1"}, "spec": {"nodeName": "cpu-2", "containers": [
        {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}, "status": {"phase": "Running"}}])
    return Extender(Policy(), cache)


@pytest.mark.parametrize("payload", [
    {"Pod": POD, "Nodes": {"items": NODES}, "NodeNames": None},  # kube-scheduler, nodeCacheCapable: false
    {"pod": POD, "nodes": {"items": NODES}},  # Go matches field names case-insensitively
    {"POD": POD, "NODES": {"items": NODES}},
    {"Pod": {"junk": 1}, "pod": POD, "Nodes": {"items": NODES}},  # repeated field: the last one wins, as in Go
    {"Pod": POD, "Nodes": {"items": NODES}, "Extra": [1, 2]},  # unknown fields are ignored
])
def test_args_decode_like_go(payload):
    args = ExtenderArgs.from_json(payload)
    assert args.pod == POD
    assert args.candidate_names() == ["cpu-1", "cpu-2", "gpu-1"]


def test_args_with_node_names():
    args = ExtenderArgs.from_json({"Pod": POD, "Nodes": None, "NodeNames": ["cpu-1", "gpu-1"]})
    assert args.nodes is None and args.candidate_names() == ["cpu-1", "gpu-1"]


MALFORMED = [
    (b"this is not json", "", "request body is not valid JSON"),
    (b'{"Pod": ', "", "request body is not valid JSON"),
    (b"\xff\xfe\x00", "", "request body is not valid JSON"),
    (b"[1, 2, 3]", "", "expected an ExtenderArgs object {Pod, Nodes | NodeNames}, got an array"),
    (b'"Pod"', "", "got a string"),
    (b"null", "", "got null"),
    (b'{"Nodes": {"items": []}}', "Pod", "Pod: missing: ExtenderArgs needs the Pod being scheduled"),
    (b'{"Pod": null, "NodeNames": []}', "Pod", "Pod: missing"),
    (b'{"Pod": "jupyter-alice", "NodeNames": []}', "Pod", "Pod: expected a Pod object, got a string 'jupyter-alice'"),
    (b'{"Pod": [1], "NodeNames": []}', "Pod", "Pod: expected a Pod object, got an array"),
    (b'{"Pod": {"metadata": 5}, "NodeNames": []}', "Pod.metadata", "Pod.metadata: expected an object, got a number"),
    (b'{"Pod": {}}', "Nodes", "neither Nodes nor NodeNames given"),
    (b'{"Pod": {}, "Nodes": [1, 2]}', "Nodes",
     "Nodes: expected a NodeList object {items: [...]} or null, got an array"),
    (b'{"Pod": {}, "Nodes": {"items": {"a": 1}}}', "Nodes.items", "Nodes.items: expected an array of Node objects"),
    (b'{"Pod": {}, "Nodes": {"items": ["cpu-1"]}}', "Nodes.items[0]",
     "Nodes.items[0]: expected a Node object, got a string 'cpu-1'"),
    (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {"name": "a"}}, 42]}}', "Nodes.items[1]",
     "Nodes.items[1]: expected a Node object, got a number 42"),
    (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "Nodes.items[0].metadata.name",
     "expected the node's name (a non-empty string), got None"),
    (b'{"Pod": {}, "NodeNames": "cpu-1"}', "NodeNames", "NodeNames: expected an array of node names or null"),
    (b'{"Pod": {}, "NodeNames": ["cpu-1", 7]}', "NodeNames[1]", "NodeNames[1]: expected a node name (string)"),
    # decodes, but the policy cannot evaluate it: still a 400 naming the field
    (json.dumps({"Pod": {"spec": {"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}},
                 "NodeNames": ["cpu-1"]}).encode(),
     "Pod.spec.containers[0].resources.requests.cpu", "'lots' is not a resource quantity"),
    (json.dumps({"Pod": POD, "Nodes": {"items": [{"metadata": {"name": "n"},
                                                  "status": {"allocatable": {"cpu": "four"}}}]}}).encode(),
     "Nodes.items[0].status.allocatable.cpu", "'four' is not a resource quantity"),
]


@pytest.mark.parametrize("body, field, message", MALFORMED)
@pytest.mark.parametrize("verb", ["filter_body", "prioritize_body"])
def test_malformed_payloads_name_what_is_wrong(extender, verb, body, field, message):
    with pytest.raises(WireError) as e:
        getattr(extender, verb)(body)
    assert e.value.field == field
    assert message in str(e.value)
    assert e.value.to_json() == {"error": str(e.value), "field": field}


def test_filter_answers_in_the_form_asked_nodes(extender):
    gpu_pod = json.loads(json.dumps(POD))
    out = json.loads(extender.filter_body(wire.dumps({"Pod": POD, "Nodes": {"items": NODES}})))
    assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["cpu-1", "cpu-2"]
    assert out["Nodes"]["items"][0] == NODES[0]  # the Node objects are passed back unchanged
    assert out["NodeNames"] is None and out["Error"] == "" and out["FailedNodes"] == {}
    assert list(out["FailedAndUnresolvableNodes"]) == ["gpu-1"]
    gpu_pod["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": 1}
    out = json.loads(extender.filter_body(wire.dumps({"Pod": gpu_pod, "Nodes": {"items": NODES}})))
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["gpu-1"]


def test_filter_answers_in_the_form_asked_node_names(extender):
    out = json.loads(extender.filter_body(wire.dumps({"Pod": POD, "NodeNames": ["cpu-1", "gpu-1", "cpu-9"]})))
    assert out["Nodes"] is None and out["NodeNames"] == ["cpu-1"]
    assert out["FailedNodes"] == {"cpu-9": "node cpu-9 is not (yet) in the extender's node cache"}


def test_prioritize_returns_a_host_priority_list(extender):
    out = json.loads(extender.prioritize_body(wire.dumps({"Pod": POD, "NodeNames": ["cpu-1", "cpu-2", "gpu-1"]})))
    # cpu-2 holds a pod expected to stay as long as this one (the lifetime term) and is fuller: it wins clearly
    assert out == [{"Host": "cpu-1", "Score": 0}, {"Host": "cpu-2", "Score": 6}, {"Host": "gpu-1", "Score": 0}]
    assert [HostPriority.from_json(h) for h in out][1] == HostPriority("cpu-2", 6)


def test_filter_result_round_trip():
    r = ExtenderFilterResult(node_names=["a"], failed_nodes={"b": "Insufficient cpu"}, error="")
    encoded = wire.encode_filter(*wire.filter_fragments("a", None)[:1], wire.filter_fragments(
        "b", ("Insufficient cpu", False))[1])
    assert ExtenderFilterResult.from_json(json.loads(encoded)) == r
    assert ExtenderFilterResult.from_json({"nodenames": ["a"], "error": "x"}).error == "x"


def test_unsynced_cache_is_an_error_not_a_guess():
    out = json.loads(Extender(Policy(), ClusterCache()).filter_body(wire.dumps({"Pod": POD, "NodeNames": ["a"]})))
    assert "pod cache has not synced" in out["Error"]


@pytest.mark.parametrize("payload, expected", [
    ({"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "cpu-1"}, ExtenderBindingArgs("p", "ns", "u",
                                                                                                 "cpu-1")),
    ({"podname": "p", "podnamespace": "ns", "node": "cpu-1"}, ExtenderBindingArgs("p", "ns", "", "cpu-1")),
])
def test_binding_args(payload, expected):
    assert ExtenderBindingArgs.from_json(payload) == expected


def test_binding_args_missing_node():
    with pytest.raises(WireError, match="Node: expected a non-empty string, got None"):
        ExtenderBindingArgs.from_json({"PodName": "p", "PodNamespace": "ns"})


@pytest.mark.parametrize("nodes", [None, [{"metadata": {"name": "a"}}]])
def test_answers_are_encoded_from_fragments_as_kube_scheduler_decodes_them(nodes):
    frags = [wire.filter_fragments("a", None), wire.filter_fragments('b"1', ("Insufficient cpu", False)),
             wire.filter_fragments("c", ("node(s) reserved", True))]
    ok, failed, unresolvable = (b"".join(part) for part in zip(*frags))
    result = ExtenderFilterResult.from_json(json.loads(wire.encode_filter(ok, failed, unresolvable, nodes=nodes)))
    assert (result.node_names, result.nodes) == ((["a"], None) if nodes is None else (None, nodes))
    assert result.failed_nodes == {'b"1': "Insufficient cpu"}
    assert result.failed_and_unresolvable_nodes == {"c": "node(s) reserved"} and result.error == ""
    error = json.loads(wire.encode_filter(error="not synced"))
    assert error == {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "FailedAndUnresolvableNodes": {},
                     "Error": "not synced"}
    joined = wire.priority_fragment("a", 7) + wire.priority_fragment("b", 0)
    assert [HostPriority.from_json(h) for h in json.loads(wire.encode_priorities(joined))] == [
        HostPriority("a", 7), HostPriority("b", 0)]
    assert json.loads(wire.encode_priorities(b"")) == []
