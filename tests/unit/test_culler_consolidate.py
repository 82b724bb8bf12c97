"""Consolidation (hubfleet.services.culler.consolidate): which idle servers on nearly empty nodes are warned and
stopped, and the policy's bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hubfleet.services.culler.consolidate import (ConsolidatePolicy, Node, Pool, Server, consolidate_policy_from_mapping,
                                                  consolidation_plan, requested_percent)
from hubfleet.services.culler.policies import CullConfigError, CullPolicy

M = 60.0
ALLOC = {"cpu": Decimal(16), "memory": Decimal(64 * 2**30), "nvidia.com/gpu": Decimal(4)}
SMALL = {"cpu": Decimal("0.5"), "memory": Decimal(2 * 2**30)}  # 3.1 % of a node (memory)
BIG = {"cpu": Decimal(8), "memory": Decimal(8 * 2**30)}  # 50 % (cpu)
GPU = {"cpu": Decimal(4), "memory": Decimal(16 * 2**30), "nvidia.com/gpu": Decimal(1)}  # 25 %
POLICY = ConsolidatePolicy(idle_after=10 * M, node_requests_below=25, warn_before=10 * M)
POLICIES = {"small": POLICY, "gpu": POLICY}


def server(key, node="n1", idle=30 * M, requests=SMALL, profile="small", **kw) -> Server:
    return Server(key, node, profile, idle, requests, **kw)


def node(name, *servers, pool="cpu", **kw) -> Node:
    total: dict = {}
    for s in servers:
        for r, q in s.requests.items():
            total[r] = total.get(r, Decimal(0)) + q
    return Node(name, total, ALLOC, pool, **kw)


def plan(servers, nodes=None, pools=(), now=100 * M, policies=POLICIES):
    nodes = nodes if nodes is not None else [node("n1", *[s for s in servers if s.node == "n1"])]
    p = consolidation_plan(now=now, servers=servers, nodes=nodes, pools=pools, policies=policies)
    return sorted((s.action, s.key) for s in p.steps), p.draining


@pytest.mark.parametrize("servers, expected, draining", [
    # two idle servers on a nearly empty node: both warned, the node marked
    ([server("a"), server("b")], [("warn", "a"), ("warn", "b")], {"n1"}),
    # idle, but not for idle_after yet: nothing
    ([server("a", idle=9 * M), server("b")], [("warn", "b")], {"n1"}),
    # an active small server stays (3 % < 25 %): the idle one is still stopped, the node drains
    ([server("a", idle=0), server("b")], [("warn", "b")], {"n1"}),
    # an active big server stays (50 % >= 25 %): the node does not empty; nobody is stopped for nothing
    ([server("a", idle=0, requests=BIG), server("b")], [], set()),
    # a busy kernel is activity when the policy spares busy kernels
    ([server("a", busy_kernels=1)], [], set()),
    # a GPU server whose GPU is in use is never stopped; idle GPU: stopped
    ([server("g", requests=GPU, profile="gpu", gpu_in_use=True)], [], set()),
    ([server("g", requests=GPU, profile="gpu", gpu_in_use=False)], [("warn", "g")], {"n1"}),
    # a profile without consolidation keeps its server (and, 50 % staying, the node)
    ([server("m", profile="medium", requests=BIG), server("b")], [], set()),
    # unknown idle time: not stopped
    ([server("a", idle=None), server("b")], [("warn", "b")], {"n1"}),
    # warned 10 min ago and still idle since: stopped; warned 5 min ago: waits
    ([server("a", warned_at=90 * M), server("b", warned_at=95 * M)], [("stop", "a")], {"n1"}),
    # active after the warning (idle 3 min, warned 8 min ago) and not idle_after again: the warning is withdrawn
    ([server("a", idle=3 * M, warned_at=92 * M)], [("cancel", "a")], set()),
    # active after the warning and idle_after again since: warned anew, not stopped
    ([server("a", idle=11 * M, warned_at=80 * M)], [("warn", "a")], {"n1"}),
    # a new big pod landed on the node after the warning: the warning is withdrawn
    ([server("a", warned_at=95 * M), server("new", idle=0, requests=BIG)], [("cancel", "a")], set()),
])
def test_plan(servers, expected, draining):
    steps, drains = plan(servers)
    assert steps == expected
    assert drains == draining


def test_a_server_whose_policy_threshold_is_lower_than_what_stays_is_kept():
    strict = ConsolidatePolicy(idle_after=10 * M, node_requests_below=2, warn_before=10 * M)
    servers = [server("a", idle=0), server("b"), server("s", profile="strict")]
    steps, _ = plan(servers, policies={**POLICIES, "strict": strict})
    assert steps == [("warn", "b")]  # a's 3 % stays, above strict's 2 %: s stays too, b (25 %) goes
    servers = [server("b"), server("s", profile="strict")]
    steps, _ = plan(servers, policies={**POLICIES, "strict": strict})
    assert steps == [("warn", "b"), ("warn", "s")]  # nothing stays: both go


def test_unknown_node_usage_and_pinned_nodes_fail_closed():
    servers = [server("a", warned_at=90 * M)]
    steps, drains = plan(servers, nodes=[Node("n1", None, ALLOC, "cpu")])
    assert steps == [("cancel", "a")] and not drains
    steps, drains = plan(servers, nodes=[node("n1", *servers, pinned=True)])
    assert steps == [("cancel", "a")] and not drains
    steps, drains = plan(servers, nodes=[])  # the node is gone from the view
    assert steps == [("cancel", "a")] and not drains


def test_the_pool_stays_at_its_minimum_least_loaded_nodes_first():
    servers = [server("a", node="n1"), server("b", node="n2"), server("c", node="n2"), server("d", node="n3")]
    nodes = [node(n, *[s for s in servers if s.node == n]) for n in ("n1", "n2", "n3")]
    steps, drains = plan(servers, nodes=nodes, pools=[Pool("cpu", 3, 2)])
    assert drains == {"n1"} and steps == [("warn", "a")]  # n1 and n3 tie at 3 %: by name
    steps, drains = plan(servers, nodes=nodes, pools=[Pool("cpu", 3, 0)])
    assert drains == {"n1", "n2", "n3"}
    steps, drains = plan(servers, nodes=nodes, pools=[Pool("cpu", 2, 2)])
    assert not drains and not steps
    steps, drains = plan(servers, nodes=nodes, pools=[Pool("cpu", 3, None)])  # minimum unknown: no limit
    assert drains == {"n1", "n2", "n3"}


def test_the_reason_says_why():
    p = consolidation_plan(now=100 * M, servers=[server("a")], nodes=[node("n1", server("a"))], policies=POLICIES)
    assert p.steps[0].reason == ("idle 00:30:00 on node n1, 0 % of which stays requested, to let an almost empty "
                                 "node shut down; stopped in 00:10:00 unless active; files are kept")


def test_requested_percent_is_the_largest_share():
    assert requested_percent(requested={"cpu": Decimal(4), "memory": Decimal(32 * 2**30)},
                             allocatable=ALLOC) == pytest.approx(50)
    assert requested_percent(requested={}, allocatable=ALLOC) == 0


CULL = CullPolicy(timeout=3600, warn_before=600, spare_busy_kernels=False)


@pytest.mark.parametrize("data, expected", [
    (None, None),
    ({"idle_after": "10m", "node_requests_below": 25}, ConsolidatePolicy(600, 25, 600, False)),
    ({"idle_after": 900, "node_requests_below": "40%"}, ConsolidatePolicy(900, 40, 600, False)),
])
def test_policy_from_mapping(data, expected):
    assert consolidate_policy_from_mapping(data, field="profiles.small.consolidate", cull=CULL) == expected


@pytest.mark.parametrize("data, cull, message", [
    ({"idle_after": "10m", "node_requests_below": 0}, CULL,
     "profiles.small.consolidate.node_requests_below: expected a percentage in (0, 100] like 25 or '25%', got 0"),
    ({"idle_after": "10m", "node_requests_below": "120%"}, CULL,
     "node_requests_below: expected a percentage in (0, 100] like 25 or '25%', got '120%'"),
    ({"idle_after": "10m", "node_requests_below": "lots"}, CULL, "got 'lots'"),
    ({"idle_after": "soon", "node_requests_below": 25}, CULL,
     "profiles.small.consolidate.idle_after: expected a duration like 1800, '30m', '8h' or '7d', got 'soon'"),
    ({"idle_after": "2h", "node_requests_below": 25}, CULL,
     "profiles.small.consolidate.idle_after: 02:00:00 is not shorter than the profile's timeout 01:00:00"),
    ({"idle_after": "10m"}, CULL, "profiles.small.consolidate.node_requests_below: missing"),
    ({"idle_after": "10m", "node_requests_below": 25, "below": 3}, CULL,
     "profiles.small.consolidate.below: unknown key; expected: idle_after, node_requests_below"),
    ({"idle_after": "10m", "node_requests_below": 25}, CullPolicy(timeout=3600),
     "profiles.small.consolidate: consolidation warns the user first; give the profile a warn_before"),
    ("10m", CULL, "profiles.small.consolidate: expected a mapping {idle_after, node_requests_below}, got '10m'"),
])
def test_bad_policy_names_the_key(data, cull, message):
    with pytest.raises(CullConfigError) as e:
        consolidate_policy_from_mapping(data, field="profiles.small.consolidate", cull=cull)
    assert message in str(e.value)
