"""The extender's pure policy (hubfleet.scheduler_plugin.scoring) and its cluster cache bookkeeping, as tables."""

from __future__ import annotations

import re
import sys
from decimal import Decimal

import pytest

from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import (NodeInfo, Policy, ScoringError, Weights, add_usage, filter_nodes,
                                               node_failure, node_info, parse_quantity, parse_weights, pod_requests,
                                               prioritize, score_node)

D = Decimal
GPU = "nvidia.com/gpu"
POLICY = Policy()


def node(name, cpu="4", memory="16Gi", gpus=0, labels=None, pods="110") -> NodeInfo:
    alloc = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpus:
        alloc[GPU] = str(gpus)
        labels = {"nvidia.com/gpu.present": "true", **(labels or {})}
    return node_info({"metadata": {"name": name, "labels": labels or {}}, "status": {"allocatable": alloc}})


def req(cpu="0", memory="0", gpus=0) -> dict:
    out = {"cpu": parse_quantity(cpu), "memory": parse_quantity(memory)}
    if gpus:
        out[GPU] = D(gpus)
    return out


def pod(*containers, init=(), overhead=None) -> dict:
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "resources": r} for i, r in enumerate(init)]
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


@pytest.mark.parametrize("p, expected", [
    (pod({"requests": {"cpu": "500m", "memory": "1Gi"}}), {"cpu": D("0.5"), "memory": D(2 ** 30)}),
    (pod({"limits": {"cpu": "2", GPU: 1}}), {"cpu": D(2), GPU: D(1)}),  # a limit without a request counts
    (pod({"requests": {"cpu": "1"}}, {"requests": {"cpu": "250m"}}), {"cpu": D("1.25")}),
    (pod({"requests": {"cpu": "1"}}, init=[{"requests": {"cpu": "3"}}]), {"cpu": D(3)}),  # init: max, not sum
    (pod({"requests": {"cpu": "1"}}, overhead={"cpu": "100m"}), {"cpu": D("1.1")}),
    (pod({}), {}),
])
def test_pod_requests(p, expected):
    assert pod_requests(p) == expected


@pytest.mark.parametrize("p, message", [
    (pod({"requests": {"cpu": "lots"}}), "Pod.spec.containers[0].resources.requests.cpu: 'lots' is not a resource"),
    (pod({"limits": {"memory": True}}), "Pod.spec.containers[0].resources.limits.memory: True is not"),
    (pod({"requests": {"cpu": "-1"}}), "Pod.spec.containers[0].resources.requests.cpu: '-1' must not be negative"),
    ({"spec": {"containers": "nginx"}}, "Pod.spec.containers: expected a list, got 'nginx'"),
    ({"spec": {"containers": [{"resources": []}]}}, "Pod.spec.containers[0].resources: expected an object"),
    ({"spec": {"containers": [7]}}, "Pod.spec.containers[0]: expected a container object, got 7"),
])
def test_pod_requests_errors_name_the_field(p, message):
    with pytest.raises(ScoringError) as e:
        pod_requests(p)
    assert message in str(e.value)


@pytest.mark.parametrize("requests, n, used, expected", [
    (req("1", "1Gi"), node("cpu-1"), {}, None),
    (req("4", "1Gi"), node("cpu-1"), {}, None),  # exactly full fits
    (req("1", "1Gi"), node("cpu-1"), {"cpu": D("3.5")}, ("Insufficient cpu", False)),
    (req("1", "20Gi"), node("cpu-1"), {}, ("Insufficient memory", False)),
    (req("5", "20Gi"), node("cpu-1"), {}, ("Insufficient cpu, Insufficient memory", False)),
    (req("1", "1Gi"), node("cpu-1", pods="2"), {"pods": D(2)}, ("Too many pods", False)),
    # a node with no GPUs at all: no preemption can help
    (req("1", "1Gi", gpus=1), node("cpu-1"), {}, ("Insufficient nvidia.com/gpu", True)),
    (req("1", "1Gi", gpus=1), node("gpu-1", "8", "32Gi", gpus=2), {}, None),
    (req("1", "1Gi", gpus=1), node("gpu-1", "8", "32Gi", gpus=2), {GPU: D(2)}, ("Insufficient nvidia.com/gpu",
                                                                                 False)),
    (req("1", "1Gi", gpus=3), node("gpu-1", "8", "32Gi", gpus=2), {}, ("Insufficient nvidia.com/gpu", False)),
    # GPU nodes are kept for GPU pods (label nvidia.com/gpu.present=true)
    (req("1", "1Gi"), node("gpu-1", "8", "32Gi", gpus=2), {}, ("node(s) reserved for pods requesting "
                                                               "nvidia.com/gpu (label nvidia.com/gpu.present=true)",
                                                               True)),
])
def test_node_failure(requests, n, used, expected):
    assert node_failure(requests, n, used, POLICY) == expected


@pytest.mark.parametrize("label, labels, refused", [
    ("nvidia.com/gpu.present=true", {"nvidia.com/gpu.present": "true"}, True),
    ("nvidia.com/gpu.present=true", {"nvidia.com/gpu.present": "false"}, False),
    ("hub.jupyter.org/node-purpose=gpu", {"hub.jupyter.org/node-purpose": "gpu"}, True),
    ("gpu-only", {"gpu-only": ""}, True),  # KEY alone: label present
    ("", {"nvidia.com/gpu.present": "true"}, False),  # disabled
])
def test_gpu_node_reservation_is_configurable(label, labels, refused):
    n = node_info({"metadata": {"name": "g", "labels": labels}, "status": {"allocatable": {"cpu": "8", "memory":
                                                                                            "32Gi"}}})
    why = node_failure(req("1", "1Gi"), n, {}, Policy(gpu_node_label=label))
    assert (why is not None) == refused


def test_filter_nodes_splits_failed_and_unresolvable():
    nodes = [node("cpu-1"), node("cpu-2"), node("gpu-1", "8", "32Gi", gpus=2)]
    out = filter_nodes(req("2", "1Gi"), nodes, {"cpu-2": {"cpu": D(3)}}, POLICY)
    assert out.feasible == ["cpu-1"]
    assert out.failed == {"cpu-2": "Insufficient cpu"}
    assert list(out.unresolvable) == ["gpu-1"]


@pytest.mark.parametrize("requests, used, expected", [
    # most-allocated after placing the pod, mean of cpu and memory shares, x10, rounded half up
    (req("500m", "1Gi"), {}, 1),  # (0.125 + 0.0625) / 2 = 0.094
    (req("500m", "1Gi"), {"cpu": D("0.5"), "memory": D(2 ** 30)}, 2),  # 0.1875
    (req("2", "8Gi"), {"cpu": D(2), "memory": D(8 * 2 ** 30)}, 10),  # full
    (req("1", "4Gi"), {"cpu": D(1), "memory": D(4 * 2 ** 30)}, 5),
    (req("0", "0"), {}, 0),
])
def test_bin_packing_score(requests, used, expected):
    assert score_node(requests, node("cpu-1"), used, POLICY) == expected


def test_bin_packing_prefers_the_fuller_node():
    nodes = [node("cpu-1"), node("cpu-2"), node("cpu-3")]
    usage = {"cpu-2": {"cpu": D("1.5"), "memory": D(3 * 2 ** 30), "pods": D(3)}}
    scores = dict(prioritize(req("500m", "1Gi"), nodes, usage, POLICY))
    assert scores["cpu-2"] > scores["cpu-1"] == scores["cpu-3"]


@pytest.mark.parametrize("weights, expected", [
    (Weights(cpu=1, memory=1), 5),  # (1.0 + 0.0) / 2
    (Weights(cpu=1, memory=0), 10),
    (Weights(cpu=0, memory=1), 0),
    (Weights(cpu=3, memory=1), 8),  # 7.5 rounds up
])
def test_weights_shape_the_score(weights, expected):
    assert score_node(req("4", "0"), node("cpu-1"), {}, Policy(weights=weights)) == expected


def test_gpu_pod_prefers_best_fit_gpu_node():
    nodes = [node("gpu-a", "8", "32Gi", gpus=4), node("gpu-b", "8", "32Gi", gpus=4), node("gpu-c", "8", "32Gi",
                                                                                          gpus=4)]
    one = {GPU: D(1), "cpu": D(1), "memory": D(2 ** 30), "pods": D(1)}
    usage = {"gpu-a": add_usage(one, one), "gpu-c": add_usage(add_usage(one, one), one)}
    scores = dict(prioritize(req("1", "1Gi", gpus=1), nodes, usage, POLICY))
    # gpu-c is left with 0 free GPUs, gpu-b with 3 (and still room for a 2-GPU pod), gpu-a with 1 (no room for one)
    assert scores["gpu-c"] > scores["gpu-b"] > scores["gpu-a"], scores


@pytest.mark.parametrize("request_gpus, order", [
    (1, [1, 3, 4, 2]),  # fill a lone free GPU, then a node with 3 (leaves a pair); split a free pair last
    (2, [4, 2, 3]),  # half of an empty node before an exact pair: the pair stays for the next 2-GPU pod
])
def test_gpu_pods_keep_nodes_able_to_take_a_gpu_block(request_gpus, order):
    """The order of nodes (by free GPUs) a GPU pod prefers on 4-GPU nodes with the default gpu_block of 2."""
    scores = {free: score_node(req("1", "1Gi", gpus=request_gpus), node(f"gpu-{free}", "8", "32Gi", gpus=4),
                               {GPU: D(4 - free), "pods": D(4 - free)}, POLICY) for free in order}
    assert sorted(order, key=lambda free: -scores[free]) == order, scores
    assert len(set(scores.values())) == len(order), scores  # strict: kube-scheduler sums scores of integer steps
    assert score_node(req(gpus=request_gpus), node("gpu-0", gpus=4), {GPU: D(4)}, POLICY) == 0


def test_gpu_block_zero_is_plain_best_fit_and_is_validated():
    scores = {free: score_node(req("1", "1Gi", gpus=1), node(f"gpu-{free}", "8", "32Gi", gpus=4),
                               {GPU: D(4 - free), "pods": D(4 - free)}, Policy(gpu_block=0)) for free in (1, 2, 3, 4)}
    assert scores[1] > scores[2] > scores[3] > scores[4], scores
    for bad in (-1, 1.5, True):
        with pytest.raises(ScoringError, match=re.escape(f"gpu_block must be a number of GPUs (0: plain best fit), "
                                                         f"not {bad!r}")):
            Policy(gpu_block=bad)


def test_non_gpu_pod_scores_lowest_on_gpu_nodes():
    """Even when the reservation label is off and the GPU node is the fullest one."""
    policy = Policy(gpu_node_label="")
    gpu_node = node("gpu-1", "8", "32Gi", gpus=2)
    busy = {"cpu": D(7), "memory": D(30 * 2 ** 30), "pods": D(5)}
    assert score_node(req("500m", "1Gi"), gpu_node, busy, policy) == 0
    assert score_node(req("500m", "1Gi"), node("cpu-1"), {}, policy) == 1


@pytest.mark.parametrize("text, expected", [
    ("cpu=1,memory=1,gpu=3", Weights(1, 1, 3)),
    ("cpu=2", Weights(cpu=2)),
    ("nvidia.com/gpu=5, memory=0.5", Weights(memory=0.5, gpu=5)),
    ("", Weights()),
])
def test_parse_weights(text, expected):
    assert parse_weights(text) == expected


@pytest.mark.parametrize("text, message", [
    ("cpu=x", "weight of cpu must be a non-negative number, not 'x'"),
    ("disk=1", "'disk=1' is not NAME=NUMBER with NAME one of cpu, memory, gpu"),
    ("cpu", "'cpu' is not NAME=NUMBER"),
    ("cpu=-1", "weight of cpu must be a non-negative number, not -1.0"),
    ("cpu=0,memory=0,gpu=0", "at least one of the cpu, memory, gpu weights must be positive"),
])
def test_parse_weights_errors(text, message):
    with pytest.raises(ScoringError) as e:
        parse_weights(text)
    assert message in str(e.value)


@pytest.mark.parametrize("n, message", [
    ({"metadata": {}}, "node.metadata.name: expected the node's name (a string), got None"),
    ({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "four"}}},
     "node.status.allocatable.cpu: 'four' is not a resource quantity"),
    ({"metadata": {"name": "n", "labels": ["a"]}}, "node.metadata.labels: expected a mapping"),
])
def test_node_info_errors(n, message):
    with pytest.raises(ScoringError) as e:
        node_info(n)
    assert message in str(e.value)


# --- the cache's bookkeeping (its watch loops run against a real devcluster in tests/integration) ------------------

def bound_pod(uid, node_name, cpu="1", phase="Running"):
    return {"metadata": {"uid": uid, "name": uid, "namespace": "default"},
            "spec": {"nodeName": node_name, "containers": [{"resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase}}


def test_cache_tracks_usage_through_events():
    cache = ClusterCache()
    cache.replace_pods([bound_pod("a", "cpu-1"), bound_pod("b", "cpu-1", "500m"),
                        {"metadata": {"uid": "pending"}, "spec": {"containers": []}, "status": {"phase": "Pending"}}])
    assert cache.usage == {"cpu-1": {"cpu": D("1.5"), "pods": D(2)}}
    cache.apply_pod("ADDED", bound_pod("c", "cpu-2", "2"))
    cache.apply_pod("MODIFIED", bound_pod("a", "cpu-1", phase="Succeeded"))  # finished pods free their node
    assert cache.usage == {"cpu-1": {"cpu": D("0.5"), "pods": D(1)}, "cpu-2": {"cpu": D(2), "pods": D(1)}}
    cache.apply_pod("DELETED", bound_pod("b", "cpu-1", "500m"))
    assert cache.usage == {"cpu-2": {"cpu": D(2), "pods": D(1)}}
    cache.apply_pod("MODIFIED", bound_pod("c", "cpu-2", "2"))  # a repeated event does not double-count
    assert cache.usage == {"cpu-2": {"cpu": D(2), "pods": D(1)}}
    cache.replace_pods([])  # a re-list replaces everything
    assert cache.usage == {} and cache.pods_synced


def test_cache_counts_a_pod_with_bad_quantities_as_a_slot_only():
    cache = ClusterCache()
    cache.replace_pods([bound_pod("a", "cpu-1", cpu="lots")])
    assert cache.usage == {"cpu-1": {"pods": D(1)}}


def test_add_usage_round_trips():
    used = add_usage({}, {"cpu": D(1)})
    assert add_usage(used, {"cpu": D(1)}, sign=-1) == {"cpu": D(0), "pods": D(0)}


def test_batch_verdicts_equal_per_node_verdicts():
    """filter_nodes/prioritize share one evaluation between nodes of the same shape; the answers must equal the
    per-node functions' (same allocatable but a different GPU label, or pods bound, must not share)."""
    nodes = [node("a"), node("b"), node("c", cpu="8"),
             node_info({"metadata": {"name": "d", "labels": {"nvidia.com/gpu.present": "true"}},
                        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}),
             node("e"), node("g1", "8", "32Gi", gpus=2), node("g2", "8", "32Gi", gpus=2)]
    usage = {"b": {"cpu": D("3.8"), "pods": D(1)}, "e": {"cpu": D(2), "memory": D(2 ** 33), "pods": D(2)},
             "g2": {GPU: D(1), "pods": D(1)}}
    for requests in (req("500m", "1Gi"), req("1", "1Gi", gpus=1), req("3", "1Gi")):
        out = filter_nodes(requests, nodes, usage, POLICY)
        for n in nodes:
            why = node_failure(requests, n, usage.get(n.name, {}), POLICY)
            assert (n.name in out.feasible) == (why is None)
            assert {**out.failed, **out.unresolvable}.get(n.name) == (why and why[0])
        assert prioritize(requests, nodes, usage, POLICY) == [
            (n.name, score_node(requests, n, usage.get(n.name, {}), POLICY)) for n in nodes]
    assert "d" not in filter_nodes(req("1", "1Gi"), nodes, usage, POLICY).feasible
    assert "b" not in filter_nodes(req("500m", "1Gi"), nodes, usage, POLICY).feasible


def test_gpu_block_is_an_extender_option_and_a_bad_one_is_refused(capsys):
    from hubfleet.cli import build_parser
    parser = build_parser("scheduler-extender")
    assert parser.parse_args(["scheduler-extender", "--gpu-block", "4"]).gpu_block == 4
    assert parser.parse_args(["scheduler-extender"]).gpu_block == 2
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["scheduler-extender", "--gpu-block", "-1"])
    assert e.value.code == 2
    assert "--gpu-block: '-1' is not a number of GPUs" in capsys.readouterr().err
