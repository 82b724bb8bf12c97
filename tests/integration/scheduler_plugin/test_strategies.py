"""Per-profile strategies through the real extender on the devcluster: `hubfleet.io/strategy: spread` pods go to
different zones, `pack` pods (the default) to one node; a node the cluster autoscaler is deleting gets none."""

from __future__ import annotations

import pytest
import yaml

from .conftest import create_pod, make_stack, pod_body, wait_bound, wait_for

NODES = {"nodes": [
    {"name": f"{zone}-{i}", "labels": {"topology.kubernetes.io/zone": zone},
     "allocatable": {"cpu": "8", "memory": "32Gi", "pods": 110}} for zone in ("za", "zb", "zc") for i in (1, 2)]
    + [{"name": "doomed", "labels": {"topology.kubernetes.io/zone": "za"},
        "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}],
        "allocatable": {"cpu": "8", "memory": "32Gi", "pods": 110}}]}
# the autoscaler's taint is tolerated here on purpose, so only the extender keeps pods off that node
TOLERATE_ALL = [{"operator": "Exists"}]


@pytest.fixture
def zoned(tmp_path, request):
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(NODES))
    stack = make_stack(tmp_path, devcluster_args=("--nodes", str(nodes)))
    yield stack
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        print("\n--- devcluster state ---\n" + stack.cluster.describe())
        print("--- extender log ---\n" + stack.extender.log_tail(30))
    stack.extender.stop()
    stack.cluster.proc.stop()


def _place(stack, name: str, strategy: str | None, count: int) -> str:
    labels = {"hubfleet.io/profile": "course"}
    if strategy:
        labels["hubfleet.io/strategy"] = strategy
    create_pod(stack.cluster, pod_body(name, labels=labels, tolerations=TOLERATE_ALL))
    node = wait_bound(stack.cluster, name)
    wait_for(f"the extender's cache to count {count} pods", lambda: stack.cache()["pods"] == count, seen=stack.cache)
    return node


def test_spread_balances_zones_pack_fills_one_node_and_the_doomed_node_gets_none(zoned):
    spread = [_place(zoned, f"spread-{i}", "spread", i + 1) for i in range(3)]
    zones = sorted(n.split("-")[0] for n in spread)
    assert zones == ["za", "zb", "zc"], spread
    packed = [_place(zoned, f"pack-{i}", None, 4 + i) for i in range(4)]
    assert len(set(packed)) == 1, packed
    assert "doomed" not in spread + packed
