"""The extender's newer policy, as tables: per-profile strategies (pack, spread across zones), cluster-autoscaler
taints, the preempt verb's choice of victims, the score tables kept per request shape (they must answer exactly what
the per-call computation answers), and the Prometheus metrics."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hubfleet.resources import parse_resources
from hubfleet.scheduler_plugin import wire
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.preemption import VictimInfo, narrow, parse_time, victim_info
from hubfleet.scheduler_plugin.scoring import (NodeInfo, Policy, ScoringError, View, node_failure, node_info, pod_info,
                                               prioritize, score_node)
from hubfleet.scheduler_plugin.wire import WireError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def node(name, zone="", taints=(), cpu="4", memory="16Gi") -> dict:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return {"metadata": {"name": name, "labels": labels, "resourceVersion": "1"},
            "spec": {"taints": [{"key": k, "effect": e} for k, e in taints]},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


def pod(name, *, node_name=None, cpu="1", profile="small", strategy=None, user=None, idle_minutes=None,
        created_minutes_ago=60, uid=None) -> dict:
    labels = {"hubfleet.io/profile": profile}
    if strategy:
        labels["hubfleet.io/strategy"] = strategy
    if user:
        labels["hubfleet.io/user"] = user
        labels["component"] = "singleuser-server"  # KubeSpawner's label on a user server
    annotations = {}
    if idle_minutes is not None:
        annotations["hubfleet.io/last-activity"] = (NOW - timedelta(minutes=idle_minutes)).isoformat().replace(
            "+00:00", "Z")
    p = {"metadata": {"name": name, "namespace": "jhub", "uid": uid or name, "labels": labels,
                      "annotations": annotations,
                      "creationTimestamp": (NOW - timedelta(minutes=created_minutes_ago)).isoformat()},
         "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
         "status": {"phase": "Running" if node_name else "Pending"}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    return p


def extender(nodes, pods, policy=Policy()) -> Extender:
    cache = ClusterCache(clock=NOW.timestamp)
    cache.replace_nodes(nodes)
    cache.replace_pods(pods)
    return Extender(policy, cache, clock=NOW.timestamp)


def call(ext, verb, payload):
    return json.loads(getattr(ext, f"{verb}_body")(wire.dumps(payload)))


# --- strategies -------------------------------------------------------------------------------------------------------

def test_pack_and_spread_choose_opposite_nodes():
    nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")]
    bound = [pod("p1", node_name="a"), pod("p2", node_name="a")]
    ext = extender(nodes, bound)
    names = ["a", "b", "c"]
    packed = dict((h["Host"], h["Score"]) for h in call(ext, "prioritize", {"Pod": pod("new"), "NodeNames": names}))
    assert max(packed, key=packed.get) == "a"
    spread = dict((h["Host"], h["Score"]) for h in call(ext, "prioritize", {
        "Pod": pod("new", strategy="spread"), "NodeNames": names}))
    # the emptiest node in the zone without pods of the profile
    assert max(spread, key=spread.get) == "c" and spread["c"] > spread["b"] > spread["a"], spread


def test_an_unknown_strategy_is_a_400_naming_the_label():
    ext = extender([node("a")], [])
    with pytest.raises(WireError) as e:
        ext.filter_body(wire.dumps({"Pod": pod("new", strategy="random"), "NodeNames": ["a"]}))
    assert e.value.field == "Pod.metadata.labels.hubfleet.io/strategy"
    assert "'random' is not a scheduling strategy; choose one of: pack, spread" in str(e.value)


def test_autoscaler_taints_are_avoided():
    doomed = node_info(node("d", taints=[("ToBeDeletedByClusterAutoscaler", "NoSchedule")]))
    candidate = node_info(node("c", taints=[("DeletionCandidateOfClusterAutoscaler", "PreferNoSchedule")]))
    plain = node_info(node("p"))
    requests = parse_resources({"cpu": "1"}, "r")
    assert node_failure(requests, doomed, {}, Policy()) == ("node(s) being removed by the cluster autoscaler", True)
    assert node_failure(requests, candidate, {}, Policy()) is None
    busy = {"cpu": Decimal(3), "pods": Decimal(1)}
    assert score_node(requests, candidate, busy, Policy()) == 0 < score_node(requests, plain, busy, Policy())


def test_lifetime_term_prefers_nodes_that_stay_longer():
    policy = Policy()
    new = pod_info(pod("new"))
    nodes = [NodeInfo("short", parse_resources({"cpu": "4", "memory": "16Gi"}, "n")),
             NodeInfo("long", parse_resources({"cpu": "4", "memory": "16Gi"}, "n"))]
    used = {"cpu": Decimal(1), "memory": Decimal(2**30), "pods": Decimal(1)}
    view = View(now=0, drain_at={"short": 600, "long": 4 * 3600}, expected_stay=lambda profile: 3600)
    scores = dict(prioritize(new.requests, nodes, {"short": used, "long": used}, policy, pod=new, view=view))
    assert scores["long"] > scores["short"], scores


# --- the score tables -------------------------------------------------------------------------------------------------

def test_tables_answer_what_the_per_call_path_answers_as_pods_come_and_go():
    nodes = [node(f"n{i}", cpu="4") for i in range(6)] + [
        node("g", taints=[("ToBeDeletedByClusterAutoscaler", "NoSchedule")])]
    ext = extender(nodes, [pod("b1", node_name="n1", cpu="3")])
    names = [f"n{i}" for i in range(6)] + ["g", "ghost"]
    args = {"Pod": pod("new", cpu="2"), "NodeNames": names}

    def per_call():
        fresh = Extender(ext.policy, ext.cache, clock=NOW.timestamp)
        as_list = {"Pod": args["Pod"], "Nodes": {"items": [n for n in nodes if n["metadata"]["name"] in names]}}
        f = call(fresh, "filter", as_list)
        p = call(fresh, "prioritize", as_list)
        return ([n["metadata"]["name"] for n in f["Nodes"]["items"]], {**f["FailedNodes"]},
                f["FailedAndUnresolvableNodes"], p)

    for change in (None, ("ADDED", pod("b2", node_name="n2", cpu="1")), ("DELETED", pod("b1", node_name="n1")),
                   ("ADDED", pod("b3", node_name="n2", cpu="2"))):
        if change:
            ext.cache.apply_pod(*change)
        f = call(ext, "filter", args)
        p = call(ext, "prioritize", args)
        feasible, failed, unresolvable, scores = per_call()
        assert f["NodeNames"] == feasible
        assert f["FailedNodes"] == {**failed, "ghost": "node ghost is not (yet) in the extender's node cache"}
        assert f["FailedAndUnresolvableNodes"] == unresolvable
        assert p[:-1] == scores and p[-1] == {"Host": "ghost", "Score": 0}


# --- preemption -------------------------------------------------------------------------------------------------------

def victim(uid, idle_minutes, *, user="u", cpu="1", namespace="jhub", user_server=True):
    last = None if idle_minutes is None else (NOW - timedelta(minutes=idle_minutes)).timestamp()
    return VictimInfo(uid, uid, parse_resources({"cpu": cpu}, "v"), user=user, last_activity=last,
                      namespace=namespace, user_server=user_server)


NODES2 = {"n1": NodeInfo("n1", parse_resources({"cpu": "2", "pods": "110"}, "n")),
          "n2": NodeInfo("n2", parse_resources({"cpu": "2", "pods": "110"}, "n"))}
FULL = {"n1": parse_resources({"cpu": "2", "pods": "2"}, "u"), "n2": parse_resources({"cpu": "2", "pods": "2"}, "u")}


@pytest.mark.parametrize("proposed, pods, expected", [
    # the idlest of the proposed victims, across nodes
    ({"n1": ["a"], "n2": ["b"]}, [victim("a", 120), victim("b", 180)], {"n2": ["b"]}),
    ({"n1": ["a"], "n2": ["b"]}, [victim("a", 120), victim("b", 30)], {"n1": ["a"]}),
    # never a server active within the window (15 min), nor one whose activity is unknown, nor a non-user pod
    ({"n1": ["a"]}, [victim("a", 5)], {}),
    ({"n1": ["a"]}, [victim("a", None)], {}),
    ({"n1": ["a"]}, [victim("a", 600, user=None)], {}),
    ({"n1": ["a"], "n2": ["b"]}, [victim("a", 5), victim("b", 20)], {"n2": ["b"]}),
    # of several proposed on one node, only as many as make room, idlest first
    ({"n1": ["a", "b"]}, [victim("a", 60), victim("b", 90)], {"n1": ["b"]}),
    # not enough room without an active one: no preemption there
    ({"n1": ["a", "b"]}, [victim("a", 60, cpu="0.5"), victim("b", 1)], {}),
    # unknown victims or nodes: refused (fail closed)
    ({"n1": ["zz"]}, [], {}),
    ({"n9": ["a"]}, [victim("a", 60)], {}),
    # only user servers (component=singleuser-server) in the user-pod namespaces: whatever another pod's
    # annotations say, it is never a victim
    ({"n1": ["a"]}, [victim("a", 600, namespace="other")], {}),
    ({"n1": ["a"]}, [victim("a", 600, user_server=False)], {}),
    ({"n1": ["a"], "n2": ["b"]}, [victim("a", 600, namespace="other"), victim("b", 20)], {"n2": ["b"]}),
    ({"n1": ["a", "b"]}, [victim("a", 600, user_server=False, cpu="0.5"), victim("b", 60, cpu="0.5")], {}),
])
def test_preempt_narrows_to_the_idlest_user_servers(proposed, pods, expected):
    decision = narrow(parse_resources({"cpu": "1"}, "r"), proposed, nodes=NODES2, usage=FULL,
                      pods={v.uid: v for v in pods}, now=NOW.timestamp(), protect_active=900,
                      user_namespaces=("jhub",))
    assert decision.victims == expected
    assert set(decision.refused) | set(expected) == set(proposed)


def test_preempt_without_user_namespaces_chooses_nobody():
    decision = narrow(parse_resources({"cpu": "1"}, "r"), {"n1": ["a"]}, nodes=NODES2, usage=FULL,
                      pods={"a": victim("a", 600)}, now=NOW.timestamp(), protect_active=900, user_namespaces=())
    assert decision.victims == {}
    assert "none given: --user-namespace" in decision.refused["n1"]


@pytest.mark.parametrize("namespace, labels, trusted", [
    ("jhub", {"component": "singleuser-server"}, True),
    ("other", {"component": "singleuser-server"}, False),  # a forged server in a namespace users may write to
    ("jhub", {"component": "hub"}, False),
    ("jhub", {}, False),
])
def test_victim_info_trusts_only_user_servers_in_the_user_namespaces(namespace, labels, trusted):
    body = {"metadata": {"uid": "u1", "name": "x", "namespace": namespace, "labels": labels,
                         "annotations": {"hub.jupyter.org/username": "alice",
                                         "hubfleet.io/last-activity": "2026-12-01T09:00:00Z"}}}
    info = victim_info(body, {})
    assert info.trusted(("jhub",)) is trusted
    assert not info.trusted(())


def test_preempt_verb_over_meta_victims_reads_activity_from_the_cache():
    nodes = [node("n1", cpu="2"), node("n2", cpu="2")]
    bound = [pod("a", node_name="n1", user="alice", idle_minutes=3), pod("b", node_name="n1", user="bob",
                                                                         idle_minutes=240),
             pod("c", node_name="n2", user="carol", idle_minutes=60), pod("d", node_name="n2", user="dave",
                                                                          idle_minutes=20)]
    ext = extender(nodes, bound, Policy(user_namespaces=("jhub",)))
    out = call(ext, "preempt", {"Pod": pod("vip"), "NodeNameToMetaVictims": {
        "n1": {"Pods": [{"UID": "a"}], "NumPDBViolations": 0}, "n2": {"Pods": [{"UID": "c"}, {"UID": "d"}]}}})
    assert out == {"NodeNameToMetaVictims": {"n2": {"Pods": [{"UID": "c"}], "NumPDBViolations": 0}}}
    # full Pods (nodeCacheCapable: false): read from the request
    out = call(ext, "preempt", {"Pod": pod("vip"), "NodeNameToVictims": {"n1": {"Pods": [bound[1]]}}})
    assert out == {"NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "b"}], "NumPDBViolations": 0}}}
    text = ext.metrics.render().decode()
    assert 'hubfleet_extender_decisions_total{outcome="victims",verb="preempt"} 2.0' in text
    assert "hubfleet_extender_preemption_victims_total 2.0" in text


@pytest.mark.parametrize("payload, field, message", [
    ([], "", "expected an ExtenderPreemptionArgs object"),
    ({"NodeNameToMetaVictims": {}}, "Pod", "expected the preemptor Pod object, got null"),
    ({"Pod": {}}, "NodeNameToMetaVictims", "neither NodeNameToMetaVictims nor NodeNameToVictims given"),
    ({"Pod": {}, "NodeNameToMetaVictims": []}, "NodeNameToMetaVictims", "expected an object mapping node names"),
    ({"Pod": {}, "NodeNameToMetaVictims": {"n1": 3}}, "NodeNameToMetaVictims.n1", "expected a MetaVictims object"),
    ({"Pod": {}, "NodeNameToMetaVictims": {"n1": {"Pods": {}}}}, "NodeNameToMetaVictims.n1.Pods",
     "expected an array"),
    ({"Pod": {}, "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": 7}]}}}, "NodeNameToMetaVictims.n1.Pods[0].UID",
     "expected the victim pod's UID (a string), got 7"),
    ({"Pod": {}, "NodeNameToMetaVictims": {"n1": {"Pods": [], "NumPDBViolations": "x"}}},
     "NodeNameToMetaVictims.n1.NumPDBViolations", "expected a non-negative integer"),
    ({"Pod": {}, "NodeNameToVictims": {"n1": {"Pods": [{"metadata": {}}]}}},
     "NodeNameToVictims.n1.Pods[0].metadata.uid", "expected the victim pod's uid"),
    ({"Pod": {"spec": {"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}},
      "NodeNameToMetaVictims": {}}, "Pod.spec.containers[0].resources.requests.cpu", "'lots' is not a resource"),
])
def test_malformed_preempt_payloads_name_the_field(payload, field, message):
    ext = extender([node("n1")], [])
    with pytest.raises(WireError) as e:
        ext.preempt_body(wire.dumps(payload))
    assert e.value.field == field and message in str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T12:00:00Z", NOW.timestamp()),
    ("2026-12-01T12:00:00.250000Z", NOW.timestamp() + 0.25),
    ("2026-12-01T13:00:00+01:00", NOW.timestamp()),
    ("yesterday", None), ("", None), (None, None), (17, None),
])
def test_last_activity_annotation_is_rfc3339(text, expected):
    assert parse_time(text) == expected


# --- metrics ----------------------------------------------------------------------------------------------------------

def test_metrics_are_prometheus_exposition_with_latency_by_verb_and_cache_age():
    ext = extender([node("n1")], [])
    for verb in ("filter", "prioritize", "preempt"):
        ext.metrics.observe(verb, 200, 0.0007)
    ext.metrics.observe("filter", 400, 0.0001)
    families = {f.name: f for f in text_string_to_metric_families(ext.metrics.render().decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("hubfleet_extender_requests_total", (("code", "400"), ("verb", "filter")))] == 1
    for verb in ("filter", "prioritize", "preempt"):
        assert samples[("hubfleet_extender_request_duration_seconds_bucket", (("le", "0.001"), ("verb", verb)))] >= 1
    assert samples[("hubfleet_extender_cache_age_seconds", (("kind", "pods"),))] >= 0
    assert samples[("hubfleet_extender_cache_synced", ())] == 1


def test_a_bad_strategy_in_scoring_is_a_scoring_error():
    with pytest.raises(ScoringError):
        pod_info(pod("x", strategy="PACK"))


# --- bad input never escapes as anything but a WireError (HTTP 400) -----------------------------------------------

def _mutations(value, rng, depth=0):
    """Yield copies of `value` with one part replaced by a value of another type."""
    import copy
    junk = [None, 7, -1, "x", "", [], {}, [1], {"a": 1}, True, 1e308, "9" * 50]
    if isinstance(value, dict):
        for k in list(value):
            for j in junk:
                out = copy.deepcopy(value)
                out[k] = j
                yield out
            if depth < 6:
                for sub in _mutations(value[k], rng, depth + 1):
                    out = copy.deepcopy(value)
                    out[k] = sub
                    yield out
    elif isinstance(value, list) and value:
        for j in junk:
            yield [j] + value[1:]
        if depth < 6:
            for sub in _mutations(value[0], rng, depth + 1):
                yield [sub] + value[1:]


@pytest.mark.parametrize("verb, payload", [
    ("filter", {"Pod": pod("new", strategy="pack"), "NodeNames": ["n1", "n2"]}),
    ("filter", {"Pod": pod("new", strategy="spread"), "Nodes": {"items": [node("n1", "za")]}}),
    ("prioritize", {"Pod": pod("new"), "NodeNames": ["n1", "n2"]}),
    ("prioritize", {"Pod": pod("new", strategy="spread"), "NodeNames": ["n1"]}),
    ("preempt", {"Pod": pod("new"), "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "a"}],
                                                                     "NumPDBViolations": 0}}}),
    ("preempt", {"Pod": pod("new"), "NodeNameToVictims": {"n1": {"Pods": [pod("a", node_name="n1", user="a",
                                                                              idle_minutes=60)]}}}),
])
def test_mutated_payloads_are_answered_or_refused_with_a_wire_error(verb, payload):
    import random
    rng = random.Random(13)
    ext = extender([node("n1", "za"), node("n2", "zb")], [pod("a", node_name="n1", user="a", idle_minutes=60)])
    n = 0
    for bad in _mutations(payload, rng):
        n += 1
        try:
            json.loads(getattr(ext, f"{verb}_body")(wire.dumps(bad)))
        except WireError:
            pass
    assert n > 50


def test_a_list_seen_before_is_answered_from_its_bytes_and_only_when_it_is_the_top_level_list():
    nodes = [node(f"n{i}") for i in range(4)]
    ext = extender(nodes, [pod("b1", node_name="n1", cpu="3")])
    names = [f"n{i}" for i in range(4)]
    first = ext.filter_body(wire.dumps({"Pod": pod("new", cpu="2"), "NodeNames": names}))
    again = wire.dumps({"Pod": pod("other", cpu="2"), "NodeNames": names})  # same shape, another pod
    request = ext.decode("filter", again)
    assert request.span is not None and request.args.node_names == []  # the names not decoded
    table = ext.tables.get(ext._pod(request.args), ext.cache, NOW.timestamp())
    assert table.respond_segment("filter", again, *request.span) == first == ext.filter_body(again)
    # a pod bound meanwhile: the kept answer is patched, as the full computation would answer
    ext.cache.apply_pod("ADDED", pod("b2", node_name="n2", cpu="3"))
    assert json.loads(ext.filter_body(again))["NodeNames"] == ["n0", "n3"]
    # the same bytes nested inside the Pod, the real (top-level) list empty: answered for the empty list
    crafted = pod("new", cpu="2")
    crafted["metadata"]["annotations"] = {}
    crafted["spec"]["extra"] = {"NodeNames": names}
    body = b'{"NodeNames":[],' + wire.dumps({"Pod": crafted})[1:]
    assert json.loads(ext.filter_body(body))["NodeNames"] == []
    # NodeNames not last, or a ']' inside a name: the plain path, same answers
    reordered = b'{"NodeNames":' + wire.dumps(names) + b"," + wire.dumps({"Pod": pod("x", cpu="2")})[1:]
    assert ext.decode("filter", reordered).span is None
    assert json.loads(ext.filter_body(reordered))["NodeNames"] == ["n0", "n3"]
    odd = wire.dumps({"Pod": pod("x", cpu="2"), "NodeNames": ["n0", "n]1"]})
    assert json.loads(ext.filter_body(odd))["NodeNames"] == ["n0"]
    assert json.loads(ext.filter_body(odd))["FailedNodes"]["n]1"].startswith("node n]1 is not")
