"""The extender's side of consolidation: the node usage it gives the culler, the nodes the culler marks as being
emptied (scored 0, so new pods go elsewhere when they fit elsewhere) and when a mark goes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hubfleet.scheduler_plugin.cache import pins_node
from hubfleet.scheduler_plugin.scoring import Policy
from hubfleet.services.culler.activity import SourceError
from hubfleet.services.culler.nodes import node_view

from .test_extender_policy import call, extender, node, pod

POLICY = Policy(user_namespaces=("jhub",))


def server(name, node_name, cpu="500m", user=None, strategy=None):
    p = pod(name, node_name=node_name, cpu=cpu, user=user or name, strategy=strategy)
    p["metadata"]["annotations"]["hub.jupyter.org/username"] = user or name
    return p


def scores(ext, new, names=("a", "b", "c")):
    return {h["Host"]: h["Score"] for h in call(ext, "prioritize", {"Pod": new, "NodeNames": list(names)})}


def test_a_marked_node_scores_0_and_a_new_pod_goes_elsewhere_when_it_fits_elsewhere():
    ext = extender([node("a"), node("b"), node("c")], [server("u1", "a"), server("u2", "b", cpu="2")], POLICY)
    spread = pod("new", strategy="spread")
    assert max(scores(ext, spread).items(), key=lambda kv: (kv[1], kv[0] == "c"))[0] in ("a", "c")
    assert ext.cache.set_draining(["a", "c", "gone"]) == ["a", "c"]
    got = scores(ext, spread)
    assert got["a"] == got["c"] == 0 and got["b"] > 0, got
    packed = scores(ext, pod("new2"))  # pack (the score tables): marked nodes 0 as well
    assert packed["a"] == 0 and packed["b"] > 0, packed
    # the culler's next call replaces the set
    ext.cache.set_draining(["c"])
    assert scores(ext, spread)["a"] > 0


def test_the_mark_goes_when_a_new_pod_lands_there_anyway_or_its_last_user_server_goes():
    ext = extender([node("a"), node("b")], [server("u1", "a"), server("u2", "a"), server("u3", "b")], POLICY)
    cache = ext.cache
    cache.set_draining(["a"])
    cache.apply_pod("DELETED", server("u1", "a"))
    assert cache.draining == {"a"}  # u2 is still there
    cache.apply_pod("MODIFIED", server("u2", "a"))  # a status update of a pod already there: no new pod
    assert cache.draining == {"a"}
    cache.apply_pod("DELETED", server("u2", "a"))
    assert cache.draining == set() and not cache.nodes["a"].draining

    cache.set_draining(["b"])
    cache.apply_pod("ADDED", server("late", "b"))  # no other node fitted: it landed on the marked node
    assert cache.draining == set()
    assert scores(ext, pod("new", strategy="spread"), ("a", "b"))["b"] > 0


def test_a_mark_survives_a_node_update_and_a_relist():
    ext = extender([node("a"), node("b")], [server("u1", "a")], POLICY)
    ext.cache.set_draining(["a"])
    ext.cache.apply_node("MODIFIED", node("a"))
    assert ext.cache.nodes["a"].draining
    ext.cache.replace_nodes([node("a"), node("b")])
    assert ext.cache.nodes["a"].draining
    ext.cache.replace_nodes([node("b")])  # the node is gone
    assert ext.cache.draining == set()


def test_node_usage_lists_only_user_servers_of_the_user_namespaces_and_what_pins_a_node():
    forged = server("forged", "a", user="alice")
    forged["metadata"]["namespace"] = "elsewhere"  # a pod passing for alice's server outside the user namespace
    bare = pod("bare", node_name="b")  # no controller: the autoscaler would not move it
    daemon = pod("daemon", node_name="c")
    daemon["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "d", "controller": True}]
    ext = extender([node("a"), node("b"), node("c")], [server("alice", "c"), forged, bare, daemon], POLICY)
    usage = ext.cache.node_usage(POLICY.user_namespaces)["nodes"]
    assert [(s["user"], s["server"], s["pod"], Decimal(s["requests"]["cpu"])) for s in usage["c"]["servers"]] == [
        ("alice", "", "jhub/alice", Decimal("0.5"))]
    assert usage["a"]["servers"] == [] and usage["a"]["pinned"]  # the forged pod is a bare pod like any other
    assert usage["b"]["pinned"] and not usage["c"]["pinned"]
    assert Decimal(usage["c"]["requested"]["cpu"]) == Decimal("1.5")

    view = node_view(ext.cache.node_usage(POLICY.user_namespaces), pool_label="", pool_min_nodes={"": 2})
    assert view.where[("alice", "")][0] == "c"
    assert {n.name: n.requested["cpu"] for n in view.nodes} == {"a": Decimal("0.5"), "b": Decimal("1"),
                                                                  "c": Decimal("1.5")}
    assert [(p.name, p.nodes, p.min_nodes) for p in view.pools] == [("", 3, 2)]


@pytest.mark.parametrize("meta, pins", [
    ({}, True),
    ({"ownerReferences": [{"kind": "ReplicaSet", "controller": True}]}, False),
    ({"ownerReferences": [{"kind": "ReplicaSet", "controller": True}],
      "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}, True),
    ({"ownerReferences": [{"kind": "Node", "controller": True}]}, False),  # a static (mirror) pod
])
def test_pins_node(meta, pins):
    assert pins_node(meta) is pins


@pytest.mark.parametrize("doc", [None, {"nodes": {}}, {"synced": False, "nodes": {}}, {"synced": True, "nodes": []},
                                 {"synced": True, "nodes": {"a": {"requested": {"cpu": "lots"}, "allocatable": {}}}}])
def test_a_node_usage_answer_that_cannot_be_read_whole_is_unknown(doc):
    with pytest.raises(SourceError):
        node_view(doc, pool_label="", pool_min_nodes={})
