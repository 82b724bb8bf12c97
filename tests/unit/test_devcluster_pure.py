"""The devcluster's pure parts, as parametrised tables (no sockets): quantities, the nodes file, the scheduler's fit
check and its kube-scheduler-worded FailedScheduling messages, label/field selectors and JSON merge patch."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
import yaml

from hubfleet_devcluster.faults import Faults
from hubfleet_devcluster.patching import merge_patch
from hubfleet_devcluster.selectors import matches, parse_selector
from hubfleet_devcluster.status import APIError
from hubfleet_devcluster.nodes import NodesFileError, default_nodes, load_nodes_file, parse_nodes
from hubfleet.quantity import QuantityError, format_bytes, format_cpu, parse_quantity
from tests.k8s_objects import pod
from hubfleet_devcluster.scheduling import (
    choose_node, failed_scheduling_message, fit_reasons, matches_node_selector, pod_requests, untolerated_taint,
)

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}


# --- quantities -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2", Decimal(2)),
    (2, Decimal(2)),
    (0.5, Decimal("0.5")),
    ("500m", Decimal("0.5")),
    ("100m", Decimal("0.1")),
    ("1.5Gi", Decimal("1.5") * 2**30),
    ("16Gi", Decimal(16 * 2**30)),
    ("512Mi", Decimal(512 * 2**20)),
    ("1Ki", Decimal(1024)),
    ("512M", Decimal(512 * 10**6)),
    ("1G", Decimal(10**9)),
    ("1e3", Decimal(1000)),
    ("0", Decimal(0)),
])
def test_parse_quantity_good(value, expected):
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["lots", "", "-1", "1.2.3", "4 GB", "5Gb", "1e", "Gi", None, True, [1], {"a": 1}])
def test_parse_quantity_bad_names_field_and_value(value):
    with pytest.raises(QuantityError) as e:
        parse_quantity(value, field="spec.containers[0].resources.cpu")
    assert "spec.containers[0].resources.cpu" in str(e.value)
    assert repr(value) in str(e.value)


@pytest.mark.parametrize("value, text", [
    (Decimal("0.5"), "500m"), (Decimal("0.25"), "250m"), (Decimal(2), "2"), (Decimal("1.5"), "1500m"),
])
def test_format_cpu(value, text):
    assert format_cpu(value) == text
    assert parse_quantity(text) == value


@pytest.mark.parametrize("value, text", [
    (Decimal(2**30), "1Gi"), (Decimal(512 * 2**20), "512Mi"), (Decimal(3 * 1024), "3Ki"), (Decimal(1536), "1536"),
    (Decimal(1000), "1000"),
])
def test_format_bytes(value, text):
    assert format_bytes(value) == text
    assert parse_quantity(text) == value


# --- nodes file -------------------------------------------------------------------------------------------------------

def _node(**over):
    node = {"name": "cpu-1", "allocatable": {"cpu": "4", "memory": "16Gi"}}
    node.update(over)
    return node


def test_default_nodes():
    nodes = default_nodes()
    assert [n.name for n in nodes] == ["cpu-1", "cpu-2", "cpu-3", "gpu-1"]
    gpu = nodes[3]
    assert gpu.allocatable["nvidia.com/gpu"] == 2
    assert gpu.taints[0].key == "nvidia.com/gpu" and gpu.taints[0].effect == "NoSchedule"
    obj = gpu.to_object()
    assert obj["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == "gpu-1"
    assert obj["status"]["allocatable"]["pods"] == "110"


def test_nodes_file_both_shapes_and_defaults():
    as_list = parse_nodes([_node(labels={"gpu": True})])
    as_map = parse_nodes({"nodes": [_node(labels={"gpu": True})]})
    assert as_list == as_map
    assert as_list[0].labels == {"gpu": "true"}  # YAML booleans become the label value Kubernetes would show
    assert as_list[0].allocatable["pods"] == 110
    assert as_list[0].allocatable["memory"] == 16 * 2**30


@pytest.mark.parametrize("data, expected", [
    ("just a string", ["expected a non-empty list", "'just a string'"]),
    ([], ["expected a non-empty list"]),
    ({"nodes": {"name": "cpu-1"}}, ["expected a non-empty list", "{'name': 'cpu-1'}"]),
    (["cpu-1"], ["nodes[0]", "expected a mapping", "'cpu-1'"]),
    ([_node(name="CPU_1")], ["nodes[0].name", "'CPU_1'", "not a valid node name"]),
    ([_node(name=None)], ["nodes[0].name", "None"]),
    ([_node(), _node()], ["nodes[1].name", "duplicate", "'cpu-1'"]),
    ([_node(taints=[{"key": "k", "effect": "NoRun"}])], ["nodes[0].taints[0].effect", "'NoRun'", "NoSchedule"]),
    ([_node(taints=[{"value": "v", "effect": "NoSchedule"}])], ["nodes[0].taints[0]", "expected {key, value, effect}"]),
    ([_node(allocatable={"memory": "1Gi"})], ["nodes[0].allocatable.cpu", "missing"]),
    ([_node(allocatable={"cpu": "1"})], ["nodes[0].allocatable.memory", "missing"]),
    ([_node(allocatable="4 cpus")], ["nodes[0].allocatable", "'4 cpus'"]),
    ([_node(allocatable={"cpu": "lots", "memory": "1Gi"})], ["nodes[0].allocatable.cpu", "'lots'"]),
    ([_node(allocatable={"cpu": "1", "memory": "-1Gi"})], ["nodes[0].allocatable.memory", "'-1Gi'"]),
    ([_node(capacity={"cpu": "1"})], ["nodes[0]", "unknown field", "capacity", "allowed: name, labels"]),
    ([_node(labels=["a"])], ["nodes[0].labels", "['a']"]),
])
def test_nodes_file_errors_name_field_and_value(data, expected):
    with pytest.raises(NodesFileError) as e:
        parse_nodes(data, source="my-nodes.yaml")
    msg = str(e.value)
    assert msg.startswith("my-nodes.yaml")
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_load_nodes_file(tmp_path):
    good = tmp_path / "nodes.yaml"
    good.write_text(yaml.safe_dump({"nodes": [_node(name="big-1", allocatable={"cpu": 64, "memory": "256Gi"})]}))
    assert [n.name for n in load_nodes_file(good)] == ["big-1"]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("nodes: [\n")
    with pytest.raises(NodesFileError, match="not valid YAML"):
        load_nodes_file(bad_yaml)
    with pytest.raises(NodesFileError, match="cannot read nodes file .*missing.yaml"):
        load_nodes_file(tmp_path / "missing.yaml")


# --- scheduling -------------------------------------------------------------------------------------------------------

NODES = [n.to_object() for n in default_nodes()]
BY_NAME = {n["metadata"]["name"]: n for n in NODES}


def make_pod(requests=None, limits=None, node_selector=None, affinity=None, tolerations=None, init=None):
    return pod(requests=requests, limits=limits, node_selector=node_selector, affinity=affinity,
               tolerations=tolerations, init=init, namespace="default")


def test_pod_requests_sum_limits_and_init_containers():
    pod = make_pod(requests={"cpu": "500m"}, limits={"cpu": "1", "memory": "1Gi"},
                   init=[{"name": "i", "resources": {"requests": {"cpu": "2"}}}])
    pod["spec"]["containers"].append({"name": "d", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}})
    assert pod_requests(pod) == {"cpu": Decimal(2), "memory": Decimal(2 * 2**30)}  # max(0.75, 2); limit as request


def test_pod_requests_bad_quantity_names_container():
    with pytest.raises(QuantityError, match=r"spec.containers\[0\].resources.requests.cpu: 'lots'"):
        pod_requests(make_pod(requests={"cpu": "lots"}))


def node_with(labels=None, taints=None, name="n1", alloc=None, unschedulable=False):
    spec = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec,
            "status": {"allocatable": alloc or {"cpu": "4", "memory": "16Gi", "pods": "110"}}}


def required(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def expr(key, op, *values):
    e = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


@pytest.mark.parametrize("affinity, node_selector, fits", [
    (None, None, True),
    (None, {"zone": "a"}, True),
    (None, {"zone": "b"}, False),
    (None, {"missing": "x"}, False),
    (required({"matchExpressions": [expr("zone", "In", "a", "b")]}), None, True),
    (required({"matchExpressions": [expr("zone", "In", "b", "c")]}), None, False),
    (required({"matchExpressions": [expr("missing", "In", "a")]}), None, False),
    (required({"matchExpressions": [expr("zone", "NotIn", "b")]}), None, True),
    (required({"matchExpressions": [expr("zone", "NotIn", "a")]}), None, False),
    (required({"matchExpressions": [expr("missing", "NotIn", "a")]}), None, True),
    (required({"matchExpressions": [expr("gpu", "Exists")]}), None, True),
    (required({"matchExpressions": [expr("missing", "Exists")]}), None, False),
    (required({"matchExpressions": [expr("missing", "DoesNotExist")]}), None, True),
    (required({"matchExpressions": [expr("gpu", "DoesNotExist")]}), None, False),
    (required({"matchExpressions": [expr("cores", "Gt", "4")]}), None, True),
    (required({"matchExpressions": [expr("cores", "Lt", "4")]}), None, False),
    # expressions in a term are ANDed, terms are ORed
    (required({"matchExpressions": [expr("zone", "In", "a"), expr("gpu", "DoesNotExist")]}), None, False),
    (required({"matchExpressions": [expr("zone", "In", "b")]}, {"matchExpressions": [expr("gpu", "Exists")]}),
     None, True),
    (required({"matchFields": [expr("metadata.name", "In", "n1")]}), None, True),
    (required({"matchFields": [expr("metadata.name", "In", "n2")]}), None, False),
    (required({}), None, False),  # an empty term matches no node
    # nodeSelector and affinity must both match
    (required({"matchExpressions": [expr("zone", "In", "a")]}), {"zone": "b"}, False),
])
def test_node_selector_and_required_affinity(affinity, node_selector, fits):
    node = node_with(labels={"zone": "a", "gpu": "true", "cores": "8"})
    pod = make_pod(affinity=affinity, node_selector=node_selector)
    assert matches_node_selector(pod, node) is fits
    assert (fit_reasons(pod, node, {}) == []) is fits
    if not fits:
        assert fit_reasons(pod, node, {}) == ["node(s) didn't match Pod's node affinity/selector"]


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.mark.parametrize("taint, tolerations, tolerated", [
    (GPU_TAINT, None, False),
    (GPU_TAINT, [GPU_TOLERATION], True),
    (GPU_TAINT, [{"key": "nvidia.com/gpu", "value": "present"}], True),  # operator defaults to Equal, any effect
    (GPU_TAINT, [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "absent"}], False),
    (GPU_TAINT, [{"key": "nvidia.com/gpu", "operator": "Equal"}], False),  # value "" != "present"
    (GPU_TAINT, [{"key": "nvidia.com/gpu", "operator": "Exists"}], True),
    (GPU_TAINT, [{"key": "other", "operator": "Exists"}], False),
    (GPU_TAINT, [{"operator": "Exists"}], True),  # empty key + Exists tolerates everything
    (GPU_TAINT, [{"operator": "Exists", "effect": "NoExecute"}], False),
    (GPU_TAINT, [{"operator": "Exists", "effect": "NoSchedule"}], True),
    (GPU_TAINT, [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], False),
    (GPU_TAINT, [{"key": "other", "operator": "Exists"}, {"key": "nvidia.com/gpu", "operator": "Exists"}], True),
    ({"key": "k", "effect": "NoExecute"}, None, False),
    ({"key": "k", "effect": "NoExecute"}, [{"key": "k", "operator": "Exists", "effect": "NoExecute"}], True),
    ({"key": "k", "effect": "PreferNoSchedule"}, None, True),  # a preference, not a filter
])
def test_taints_and_tolerations(taint, tolerations, tolerated):
    node = node_with(taints=[taint])
    pod = make_pod(tolerations=tolerations)
    assert (untolerated_taint(pod, node) is None) is tolerated
    if not tolerated:
        expected = f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        assert fit_reasons(pod, node, {}) == [expected]


@pytest.mark.parametrize("requests, limits, used, reasons", [
    ({"cpu": "4", "memory": "16Gi"}, None, {}, []),
    ({"cpu": "4001m"}, None, {}, ["Insufficient cpu"]),
    ({"cpu": "1"}, None, {"cpu": Decimal("3.5")}, ["Insufficient cpu"]),
    ({"cpu": "500m"}, None, {"cpu": Decimal("3.5")}, []),
    ({"memory": "17Gi"}, None, {}, ["Insufficient memory"]),
    ({"cpu": "5", "memory": "17Gi"}, None, {}, ["Insufficient cpu", "Insufficient memory"]),
    (None, {"cpu": "8"}, {}, ["Insufficient cpu"]),  # a limit without a request is the request
    ({"nvidia.com/gpu": 1}, None, {}, ["Insufficient nvidia.com/gpu"]),
    (None, None, {"pods": Decimal(110)}, ["Too many pods"]),
    ({"cpu": "5"}, None, {"pods": Decimal(110)}, ["Too many pods", "Insufficient cpu"]),
])
def test_resource_fit(requests, limits, used, reasons):
    assert fit_reasons(make_pod(requests=requests, limits=limits), node_with(), used) == reasons


def test_unschedulable_node():
    assert fit_reasons(make_pod(), node_with(unschedulable=True), {}) == ["node(s) were unschedulable"]


def test_first_failing_filter_wins_like_kube_scheduler():
    """kube-scheduler reports for each node only the first filter plugin that rejects it (TaintToleration before
    NodeAffinity before NodeResourcesFit), so the counts of a FailedScheduling message add up to the node count."""
    node = node_with(labels={"zone": "a"}, taints=[GPU_TAINT])
    pod = make_pod(requests={"cpu": "100"}, node_selector={"zone": "b"})
    assert fit_reasons(pod, node, {}) == ["node(s) had untolerated taint {nvidia.com/gpu: present}"]
    pod["spec"]["tolerations"] = [GPU_TOLERATION]
    assert fit_reasons(pod, node, {}) == ["node(s) didn't match Pod's node affinity/selector"]


@pytest.mark.parametrize("pod, message", [
    (make_pod(requests={"nvidia.com/gpu": 1}),
     "0/4 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, "
     "3 Insufficient nvidia.com/gpu."),
    (make_pod(requests={"cpu": "100"}),
     "0/4 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, 3 Insufficient cpu."),
    (make_pod(requests={"cpu": "100"}, tolerations=[GPU_TOLERATION]),
     "0/4 nodes are available: 4 Insufficient cpu."),
    (make_pod(requests={"cpu": "100", "memory": "1Ti"}, tolerations=[GPU_TOLERATION]),
     "0/4 nodes are available: 4 Insufficient cpu, 4 Insufficient memory."),
    (make_pod(requests={"nvidia.com/gpu": 3}, tolerations=[GPU_TOLERATION]),
     "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."),
    (make_pod(node_selector={"nvidia.com/gpu.present": "true"}, requests={"nvidia.com/gpu": 3},
              tolerations=[GPU_TOLERATION]),
     "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node affinity/selector."),
    (make_pod(node_selector={"kubernetes.io/hostname": "nowhere"}),
     "0/4 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, "
     "3 node(s) didn't match Pod's node affinity/selector."),
])
def test_failed_scheduling_message_on_default_nodes(pod, message):
    node, reasons = choose_node(pod, NODES, {})
    assert node is None
    assert failed_scheduling_message(len(NODES), reasons) == message


def test_failed_scheduling_message_sorts_like_sort_strings():
    # kube-scheduler sorts the "<count> <reason>" strings, count included
    reasons = {"a": ["node(s) were unschedulable"], "b": ["Insufficient cpu"], "c": ["Insufficient cpu"],
               "d": ["Insufficient cpu"], "e": ["Too many pods"], "f": ["Too many pods"]}
    assert failed_scheduling_message(6, reasons) == (
        "0/6 nodes are available: 1 node(s) were unschedulable, 2 Too many pods, 3 Insufficient cpu.")
    assert failed_scheduling_message(0, {}) == "0/0 nodes are available."


@pytest.mark.parametrize("pod, used, expected", [
    (make_pod(requests={"cpu": "1"}), {}, "cpu-1"),  # all equal: by name; the tainted GPU node is skipped
    (make_pod(requests={"cpu": "1"}), {"cpu-1": {"cpu": Decimal(3), "pods": Decimal(1)}}, "cpu-2"),  # least allocated
    (make_pod(node_selector={"kubernetes.io/hostname": "cpu-3"}), {}, "cpu-3"),
    (make_pod(requests={"nvidia.com/gpu": 1}, tolerations=[GPU_TOLERATION]), {}, "gpu-1"),
    (make_pod(requests={"cpu": "6"}, tolerations=[GPU_TOLERATION]), {}, "gpu-1"),
    (make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [expr("kubernetes.io/hostname", "In", "cpu-2")]}}]}}),
     {}, "cpu-2"),
])
def test_choose_node(pod, used, expected):
    node, reasons = choose_node(pod, NODES, used)
    assert node == expected, reasons


# --- selectors (api.py) -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, expected", [
    (None, "label", []),
    ("", "label", []),
    ("component=singleuser-server", "label", [("component", "=", "singleuser-server")]),
    ("a==b", "label", [("a", "=", "b")]),
    ("a != b", "label", [("a", "!=", "b")]),
    ("hub.jupyter.org/username", "label", [("hub.jupyter.org/username", "exists", None)]),
    ("!gpu", "label", [("gpu", "!", None)]),
    ("env in (prod, dev)", "label", [("env", "in", {"prod", "dev"})]),
    ("env notin (test)", "label", [("env", "notin", {"test"})]),
    ("a=b,env in (x,y),!c", "label", [("a", "=", "b"), ("env", "in", {"x", "y"}), ("c", "!", None)]),
    ("involvedObject.kind=Pod", "field", [("involvedObject.kind", "=", "Pod")]),
    ("metadata.name=p,status.phase!=Running", "field",
     [("metadata.name", "=", "p"), ("status.phase", "!=", "Running")]),
])
def test_parse_selector(text, kind, expected):
    assert parse_selector(text, kind=kind) == expected


@pytest.mark.parametrize("text, kind", [
    ("a=b=c", "label"),
    ("a b", "label"),
    ("a in (x", "label"),
    ("env in (x)", "field"),  # set-based is for labels only
    ("metadata.name", "field"),  # so is existence
    ("a=(b)", "field"),
])
def test_parse_selector_bad_is_400(text, kind):
    with pytest.raises(APIError) as e:
        parse_selector(text, kind=kind)
    assert e.value.code == 400
    assert repr(text) in e.value.message


OBJ = {"metadata": {"name": "jupyter-alice", "labels": {"component": "singleuser-server", "env": "prod"}},
       "involvedObject": {"kind": "Pod", "name": "jupyter-alice"}, "status": {"phase": "Running"}}


@pytest.mark.parametrize("labels, fields, expected", [
    ("", "", True),
    ("component=singleuser-server", "", True),
    ("component=hub", "", False),
    ("component!=hub", "", True),
    ("missing!=x", "", True),  # != matches objects without the label
    ("env", "", True),
    ("missing", "", False),
    ("!env", "", False),
    ("!missing", "", True),
    ("env in (prod,dev)", "", True),
    ("env in (dev)", "", False),
    ("env notin (dev)", "", True),
    ("missing notin (dev)", "", True),
    ("component=singleuser-server,env=dev", "", False),
    ("", "involvedObject.kind=Pod", True),
    ("", "involvedObject.kind=Node", False),
    ("", "involvedObject.kind!=Node", True),
    ("", "metadata.name=jupyter-alice,status.phase=Running", True),
    ("", "status.phase!=Running", False),
    ("", "spec.nodeName=", True),  # a missing field compares as ""
    ("component=singleuser-server", "metadata.name=jupyter-bob", False),
])
def test_matches(labels, fields, expected):
    assert matches(OBJ, parse_selector(labels, kind="label"), parse_selector(fields, kind="field")) is expected


# --- merge patch (RFC 7386, appendix A) -------------------------------------------------------------------------------

@pytest.mark.parametrize("target, patch, result", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_rfc7386(target, patch, result):
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    out = merge_patch(target, patch)
    assert out == result
    assert target == before_target and patch == before_patch  # inputs are not modified
    if isinstance(patch, dict) and isinstance(out, dict):
        for k, v in patch.items():
            if isinstance(v, (dict, list)):
                assert out[k] is not v  # the result shares nothing with the patch


# --- fault knobs ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    ({"error_rate": 1.5}, "faults.error_rate: 1.5 out of range"),
    ({"error_rate": -0.1}, "faults.error_rate"),
    ({"error_rate": "lots"}, "faults.error_rate: 'lots' is not a number"),
    ({"delay": -1}, "faults.delay"),
    ({"error_codes": [418]}, "faults.error_codes: (418,) must be among 429, 500, 503, 504"),
    ({"error_codes": []}, "faults.error_codes"),
    ({"error_codes": 429}, "faults.error_codes: 429 is not a list"),
    ({"error_rate": 0.5, "eror_codes": [500]}, "unknown field(s) ['eror_codes']"),
    (["error_rate"], "expected a JSON object"),
])
def test_faults_bad_values_are_400_and_change_nothing(data, expected):
    faults = Faults()
    before = faults.as_dict()
    with pytest.raises(APIError) as e:
        faults.update(data)
    assert e.value.code == 400
    assert expected in e.value.message
    assert faults.as_dict() == before


def test_faults_update():
    faults = Faults()
    faults.update({"error_rate": 1, "error_codes": [429], "delay": 0.5, "delay_rate": 0.25, "seed": 7})
    assert faults.as_dict() == {"error_rate": 1.0, "error_codes": [429], "delay_rate": 0.25, "delay": 0.5, "seed": 7,
                                "autoscaler": "", "missing_images": []}


# --- the --images file ------------------------------------------------------------------------------------------------

def test_images_file(tmp_path):
    from hubfleet_devcluster.cli import _load_images
    from hubfleet_devcluster.kubelet import DEFAULT_IMAGES, resolve_image

    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump({"images": [{"pattern": "myorg/*", "command": ["python3"], "args": ["-m", "x"],
                                                "home": "/home/me", "env": {"A": 1}}]}))
    images = _load_images(str(path))
    assert images[len(images) - len(DEFAULT_IMAGES):] == DEFAULT_IMAGES
    mapping = resolve_image("myorg/app:2", images)
    assert (mapping.command, mapping.args, mapping.home, mapping.env) == (("python3",), ("-m", "x"), "/home/me",
                                                                          {"A": "1"})
    assert resolve_image("busybox:1.36", images).pattern == "busybox*"
    assert resolve_image("registry.example.org/app", images) is None


@pytest.mark.parametrize("text, expected", [
    ("[{pattern: 'a/*', command: python3}]", "images[0].command: expected a list of strings"),
    ("[{pattern: 'a/*', args: [-m, 8000]}]", "images[0].args: expected a list of strings"),
    ("[{command: [python3]}]", "images[0].pattern"),
    ("pattern: a", "expected a list of images"),
    ("[{pattern: 'a/*'", "not valid YAML"),
])
def test_images_file_errors(tmp_path, text, expected):
    from hubfleet_devcluster.cli import _load_images

    path = tmp_path / "images.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as e:
        _load_images(str(path))
    assert expected in str(e.value) and str(path) in str(e.value)


def test_images_file_missing(tmp_path):
    from hubfleet_devcluster.cli import _load_images

    with pytest.raises(SystemExit, match="cannot read images file .*nope.yaml"):
        _load_images(str(tmp_path / "nope.yaml"))


# --- the demo's state is private from the start -----------------------------------------------------------------------

def test_demo_state_and_logins_are_private(tmp_path):
    from hubfleet_devcluster.demo import ensure_accounts, make_private_dir

    state = tmp_path / "demo"
    make_private_dir(state)
    assert state.stat().st_mode & 0o777 == 0o700
    ensure_accounts(state)
    assert (state / "logins.json").stat().st_mode & 0o777 == 0o600
    assert not list(state.glob("*.tmp"))


@pytest.mark.parametrize("ip, warns", [("127.0.0.1", False), ("127.0.0.2", False), ("::1", False),
                                       ("localhost", False), ("0.0.0.0", True), ("", True), ("192.168.1.5", True)])
def test_demo_warns_when_ip_is_not_loopback(ip, warns):
    from hubfleet_devcluster.demo import loopback_warning

    assert (loopback_warning(ip) is not None) == warns


# --- strategic merge patch, JSON patch, validation, Tables, protobuf -------------------------------------------------

def _pod_schema():
    from hubfleet_devcluster.schemas import definition

    return definition("io.k8s.api.core.v1.Pod")


def test_strategic_merge_patch_merges_lists_by_their_patch_merge_keys():
    from hubfleet_devcluster.patching import strategic_merge_patch

    pod = {"spec": {"containers": [{"name": "a", "image": "x", "command": ["run"], "env": [{"name": "A", "value": "1"}],
                                    "ports": [{"containerPort": 80}]}, {"name": "b", "image": "y"}],
                    "volumes": [{"name": "v1", "emptyDir": {}}], "tolerations": [{"key": "t"}]}}
    patch = {"spec": {"containers": [{"name": "a", "image": "z", "env": [{"name": "B", "value": "2"}],
                                      "ports": [{"containerPort": 81}]}, {"name": "b", "$patch": "delete"}],
                      "volumes": [{"name": "v2", "emptyDir": {}}], "tolerations": [{"key": "u"}]}}
    out = strategic_merge_patch(pod, patch, _pod_schema())
    [a] = out["spec"]["containers"]
    assert a["image"] == "z" and a["command"] == ["run"]  # merged by name, not replaced
    assert [e["name"] for e in a["env"]] == ["A", "B"] and [p["containerPort"] for p in a["ports"]] == [80, 81]
    assert [v["name"] for v in out["spec"]["volumes"]] == ["v1", "v2"]
    assert out["spec"]["tolerations"] == [{"key": "u"}]  # no merge strategy: replaced, as kube-apiserver does
    assert pod["spec"]["containers"][0]["image"] == "x"  # the input is not changed
    # directives kubectl apply sends
    out = strategic_merge_patch(pod, {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                                      "spec": {"$retainKeys": ["containers"], "containers": [{"name": "a"}]}},
                                _pod_schema())
    assert list(out["spec"]) == ["containers"]
    out = strategic_merge_patch({"metadata": {"finalizers": ["a", "b"]}},
                                {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, _pod_schema())
    assert out["metadata"]["finalizers"] == ["b"]


@pytest.mark.parametrize("ops, expected", [
    ([{"op": "add", "path": "/a/b", "value": 1}], {"a": {"b": 1}, "l": [1, 2]}),
    ([{"op": "add", "path": "/l/-", "value": 3}], {"a": {}, "l": [1, 2, 3]}),
    ([{"op": "add", "path": "/l/0", "value": 0}], {"a": {}, "l": [0, 1, 2]}),
    ([{"op": "remove", "path": "/l/0"}], {"a": {}, "l": [2]}),
    ([{"op": "replace", "path": "/a", "value": 5}], {"a": 5, "l": [1, 2]}),
    ([{"op": "move", "from": "/l", "path": "/m"}], {"a": {}, "m": [1, 2]}),
    ([{"op": "copy", "from": "/l/1", "path": "/a/x~1y"}], {"a": {"x/y": 2}, "l": [1, 2]}),
    ([{"op": "test", "path": "/l/0", "value": 1}], {"a": {}, "l": [1, 2]}),
])
def test_json_patch_rfc6902(ops, expected):
    from hubfleet_devcluster.patching import json_patch

    assert json_patch({"a": {}, "l": [1, 2]}, ops) == expected


@pytest.mark.parametrize("ops, code", [
    ([{"op": "remove", "path": "/nope"}], 422),
    ([{"op": "test", "path": "/l/0", "value": 9}], 422),
    ([{"op": "frobnicate", "path": "/a"}], 422),
    ({"op": "add"}, 400),
])
def test_json_patch_errors(ops, code):
    from hubfleet_devcluster.patching import json_patch

    with pytest.raises(APIError) as e:
        json_patch({"a": {}, "l": [1, 2]}, ops)
    assert e.value.code == code


def test_decode_prunes_unknown_fields_and_reports_their_paths():
    from hubfleet_devcluster.resources import RESOURCES
    from hubfleet_devcluster.validation import decode

    body = {"metadata": {"name": "p", "bogus": 1}, "spec": {"containers": [{"name": "c", "image": "i", "x": 2}]}}
    obj, warnings = decode(RESOURCES["pods"], copy.deepcopy(body), "Warn")
    assert warnings == ['unknown field "metadata.bogus"', 'unknown field "spec.containers[0].x"']
    assert "bogus" not in obj["metadata"] and "x" not in obj["spec"]["containers"][0]
    assert decode(RESOURCES["pods"], copy.deepcopy(body), "Ignore")[1] == []
    with pytest.raises(APIError) as e:
        decode(RESOURCES["pods"], copy.deepcopy(body), "Strict")
    assert e.value.code == 400 and "strict decoding error" in e.value.message


def test_pod_table_columns():
    from hubfleet_devcluster.tables import age, table

    pod = {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "cpu-1"},
           "status": {"podIP": "127.0.1.1", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}},
               {"name": "b", "ready": False, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    t = table("pods", [pod], "7")
    assert [c["name"] for c in t["columnDefinitions"]][:7] == ["Name", "Ready", "Status", "Restarts", "Age", "IP",
                                                               "Node"]
    assert t["rows"][0]["cells"][:4] == ["p", "1/2", "CrashLoopBackOff", 3]
    assert t["rows"][0]["cells"][5:7] == ["127.0.1.1", "cpu-1"]
    assert age(None) == "<unknown>"


def test_protobuf_configmap_is_decoded():
    from hubfleet_devcluster import protobuf

    def field(n: int, payload: bytes) -> bytes:
        return bytes([n << 3 | 2, len(payload)]) + payload

    meta = field(1, b"cm1") + field(2, b"")
    entry = field(1, b"a") + field(2, b"b")
    raw = field(1, meta) + field(2, entry)
    unknown = field(1, field(1, b"v1") + field(2, b"ConfigMap")) + field(2, raw)
    assert protobuf.decode(protobuf.MAGIC + unknown) == {"apiVersion": "v1", "kind": "ConfigMap",
                                                         "metadata": {"name": "cm1"}, "data": {"a": "b"}}
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"not protobuf")
