"""The extender's fast path over NodeNames: answers kept per request shape and per candidate list (``tables.py``) must
answer exactly what the per-call computation answers, over lists longer than one block, as pods and nodes come and
go; plus what keeps requests short (the refresh task's slices, the PodInfo memo) and the GC-pause metric."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hubfleet.scheduler_plugin import tables, wire
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cli import loop_factory
from hubfleet.scheduler_plugin.metrics import Metrics

from .test_extender_policy import NOW, call, extender, node, pod

N = 3 * tables.BLOCK + 17  # several blocks and a partial one


def _nodes():
    out = [node(f"n{i:03d}", cpu="2" if i % 7 == 0 else "4") for i in range(N)]
    gpu = node("g0", cpu="8")
    gpu["metadata"]["labels"]["nvidia.com/gpu.present"] = "true"
    return out + [gpu]


def _per_call(ext, nodes, names, new_pod):
    """filter + prioritize computed per call (a NodeList request, no table) for the names the cache knows."""
    fresh = Extender(ext.policy, ext.cache, clock=NOW.timestamp)
    known = {n["metadata"]["name"]: n for n in nodes if n["metadata"]["name"] in ext.cache.nodes}
    as_list = {"Pod": new_pod, "Nodes": {"items": [known[n] for n in names if n in known]}}
    f = call(fresh, "filter", as_list)
    p = call(fresh, "prioritize", as_list)
    return [n["metadata"]["name"] for n in f["Nodes"]["items"]], f["FailedNodes"], f["FailedAndUnresolvableNodes"], p


def _check(ext, nodes, names, new_pod, body=None):
    body = body or wire.dumps({"Pod": new_pod, "Nodes": None, "NodeNames": names})
    f = json.loads(ext.filter_body(body))
    p = json.loads(ext.prioritize_body(body))
    feasible, failed, unresolvable, scores = _per_call(ext, nodes, names, new_pod)
    unknown = [n for n in names if n not in ext.cache.nodes]
    assert f["NodeNames"] == feasible
    assert f["FailedNodes"] == {**failed, **{n: f"node {n} is not (yet) in the extender's node cache"
                                            for n in unknown}}
    assert f["FailedAndUnresolvableNodes"] == unresolvable
    assert [h for h in p if h["Host"] not in unknown] == scores
    assert [h for h in p if h["Host"] in unknown] == [{"Host": n, "Score": 0} for n in unknown]
    return f, p


def test_kept_answers_over_several_blocks_match_the_per_call_path_as_the_cluster_changes():
    nodes = _nodes()
    ext = extender(nodes, [pod(f"b{i}", node_name=f"n{i * 5:03d}", cpu="1") for i in range(40)])
    rng = random.Random(13)
    names = [n["metadata"]["name"] for n in nodes] + ["ghost"]
    rng.shuffle(names)
    new_pod = pod("new", cpu="2")
    body = wire.dumps({"Pod": new_pod, "Nodes": None, "NodeNames": names})
    first = _check(ext, nodes, names, new_pod, body)
    assert first == _check(ext, nodes, names, new_pod, body)  # the kept answer, by its bytes
    spaced = body.replace(b'"NodeNames":[', b'"NodeNames": [')  # same list, other bytes: found by the list
    _check(ext, nodes, names, new_pod, spaced)
    k = 0
    for step in range(12):  # binds and ends on nodes of every block, a node filled up, a node gone and back
        name = names[rng.randrange(len(names))]
        if name == "ghost":
            continue
        if step == 5:
            ext.cache.apply_node("DELETED", next(n for n in nodes if n["metadata"]["name"] == name))
        elif step == 8:
            ext.cache.apply_node("ADDED", next(n for n in nodes if n["metadata"]["name"] == name))
        else:
            k += 1
            ext.cache.apply_pod("ADDED", pod(f"c{k}", node_name=name, cpu=rng.choice(["1", "2", "3"])))
            if k % 3 == 0:
                ext.cache.apply_pod("DELETED", pod(f"b{k}", node_name=f"n{k * 5:03d}"))
        _check(ext, nodes, names, new_pod, body)
        _check(ext, nodes, names[: len(names) // 2], new_pod)  # another list: a join over its names


def test_the_refresh_task_catches_up_in_slices_and_requests_see_every_change():
    nodes = _nodes()
    ext = extender(nodes, [])
    names = [n["metadata"]["name"] for n in nodes]
    new_pod = pod("new", cpu="3")
    _check(ext, nodes, names, new_pod)
    for i in range(60):
        ext.cache.apply_pod("ADDED", pod(f"x{i}", node_name=names[i * 3], cpu="2"))
    slices = 0
    while ext.tables.refresh_some(ext.cache, NOW.timestamp(), 8):
        slices += 1
        assert slices < 100
    assert slices >= 60 // 8 - 1  # 8 changed nodes at a time, not all at once
    _check(ext, nodes, names, new_pod)
    ext.cache.apply_pod("ADDED", pod("late", node_name=names[1], cpu="2"))  # not refreshed yet: the request syncs
    f, _ = _check(ext, nodes, names, new_pod)
    assert names[1] in f["FailedNodes"]


def test_pods_of_one_profile_with_other_requests_get_their_own_answers_and_bad_ones_a_400():
    nodes = [node("a", cpu="4"), node("b", cpu="4")]
    ext = extender(nodes, [pod("x", node_name="a", cpu="2")])
    body = lambda p: wire.dumps({"Pod": p, "Nodes": None, "NodeNames": ["a", "b"]})  # noqa: E731
    assert json.loads(ext.filter_body(body(pod("p1", cpu="1"))))["NodeNames"] == ["a", "b"]
    assert json.loads(ext.filter_body(body(pod("p2", cpu="3"))))["NodeNames"] == ["b"]
    assert json.loads(ext.filter_body(body(pod("p3", cpu="1"))))["NodeNames"] == ["a", "b"]
    bad = pod("p4", cpu="1")
    bad["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    with pytest.raises(wire.WireError, match=r"Pod\.spec\.containers\[0\]\.resources\.requests\.cpu"):
        ext.filter_body(body(bad))
    bad["spec"]["containers"] = ["not a container"]
    with pytest.raises(wire.WireError, match=r"Pod\.spec\.containers\[0\]"):
        ext.filter_body(body(bad))


def test_gc_pauses_are_a_histogram_by_generation():
    m = Metrics(extender([node("a")], []).cache)
    stop = m.track_gc()
    try:
        gc.collect()
    finally:
        stop()
    gc.collect()  # no longer tracked
    samples = {(s.name, s.labels.get("generation")): s.value
               for f in text_string_to_metric_families(m.render().decode()) for s in f.samples}
    assert samples[("hubfleet_extender_gc_pause_seconds_count", "2")] == 1
    assert samples[("hubfleet_extender_gc_pause_seconds_sum", "2")] > 0


def test_event_loop_choice(monkeypatch):
    assert loop_factory("asyncio") is asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        assert loop_factory("auto") is asyncio.new_event_loop
    else:
        assert loop_factory("auto") is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed
    assert loop_factory("auto") is asyncio.new_event_loop
    assert "uvloop is not installed" in loop_factory("uvloop")


def test_a_status_update_of_a_bound_pod_changes_no_score_but_its_activity_is_kept():
    ext = extender([node("a"), node("b")], [pod("x", node_name="a", cpu="2", idle_minutes=60)])
    before = len(ext.cache.changes)
    ext.cache.apply_pod("MODIFIED", pod("x", node_name="a", cpu="2", idle_minutes=5))
    assert len(ext.cache.changes) == before  # nothing for the score tables to recompute
    assert ext.cache.pods["x"].last_activity == (NOW.timestamp() - 5 * 60)
    ext.cache.apply_pod("MODIFIED", pod("x", node_name="a", cpu="3", idle_minutes=5))  # (resized in place)
    assert ext.cache.usage["a"]["cpu"] == 3 and len(ext.cache.changes) > before


def test_after_a_relist_tables_are_rebuilt_aside_in_slices_and_a_request_finishes_the_rebuild():
    nodes = _nodes()
    pods = [pod(f"b{i}", node_name=f"n{i * 3:03d}", cpu="1") for i in range(30)]
    ext = extender(nodes, pods)
    names = [n["metadata"]["name"] for n in nodes]
    new_pod = pod("new", cpu="3")
    _check(ext, nodes, names, new_pod)
    [table] = ext.tables.tables.values()
    ext.cache.replace_pods(pods + [pod("late", node_name="n001", cpu="2")])  # a re-list: a new epoch
    assert ext.tables.refresh_some(ext.cache, NOW.timestamp(), 8)  # one slice: still building
    assert table.epoch != ext.cache.epoch and table._next is not None
    ext.cache.apply_pod("ADDED", pod("during", node_name="n002", cpu="2"))  # a watch event meanwhile
    for _ in range(3):
        ext.tables.refresh_some(ext.cache, NOW.timestamp(), 8)
    f, _ = _check(ext, nodes, names, new_pod)  # the request finishes the rebuild, then syncs the event
    assert {"n001", "n002"} <= set(f["FailedNodes"])
    assert table.epoch == ext.cache.epoch and table._next is None
    while ext.tables.refresh_some(ext.cache, NOW.timestamp(), 8):
        pass
    ext.cache.replace_nodes(nodes)  # another re-list, rebuilt entirely by the refresh task
    slices = 1
    while ext.tables.refresh_some(ext.cache, NOW.timestamp(), 8):
        slices += 1
    assert slices >= len(nodes) // 8 and table.epoch == ext.cache.epoch
    _check(ext, nodes, names, new_pod)


async def test_the_low_level_server_answers_as_the_application_does():
    import aiohttp
    from aiohttp import web

    from hubfleet.scheduler_plugin.app import build_app, build_server

    ext = extender([node("a"), node("b")], [pod("x", node_name="a", cpu="2")])
    good = wire.dumps({"Pod": pod("p", cpu="1"), "NodeNames": ["a", "b"]})
    runners, seen = [], []
    try:
        for runner in (web.AppRunner(build_app(ext, max_body_bytes=4096)),
                       web.ServerRunner(build_server(ext, max_body_bytes=4096))):
            runners.append(runner)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            answers = []
            async with aiohttp.ClientSession() as s:
                for method, path, body in (("POST", "/filter", good), ("POST", "/prioritize", good),
                                           ("POST", "/filter", b'{"Pod": 7}'), ("POST", "/filter", b"x" * 5000),
                                           ("GET", "/filter", None), ("GET", "/nowhere", None),
                                           ("GET", "/healthz", None), ("HEAD", "/healthz", None)):
                    async with s.request(method, url + path, data=body) as r:
                        text = await r.read()
                        answers.append((method, path, r.status, r.content_type,
                                        json.loads(text) if text and path != "/healthz" else None))
            seen.append(answers)
    finally:
        for runner in runners:
            await runner.cleanup()
    app_answers, server_answers = seen
    assert server_answers == app_answers
    assert [a[2] for a in server_answers] == [200, 200, 400, 413, 405, 404, 200, 200]
    assert all(a[3] == "application/json" for a in server_answers[:6])
