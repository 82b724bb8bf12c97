"""The preempt verb's hub activity source, pure part: a pod is matched to its hub server by KubeSpawner's annotations,
the hub's user list gives each ready server's activity, the pod annotation wins, and a list older than its
``max_age`` (or none) means "activity unknown": no victim."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hubfleet.scheduler_plugin.activity import HubActivity, parse_page, servers_activity
from hubfleet.scheduler_plugin.app import Extender
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.preemption import server_key
from hubfleet.scheduler_plugin.scoring import Policy

from .test_extender_policy import call, node, pod

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _ago(minutes: float | None) -> str | None:
    return None if minutes is None else (NOW - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def user_model(name, servers: dict, *, last=None) -> dict:
    """A JupyterHub REST API user model; `servers` = {server name: (last_activity minutes ago, started minutes
    ago, ready)}."""
    return {"kind": "user", "name": name, "last_activity": _ago(last), "servers": {
        s: {"name": s, "last_activity": _ago(a), "started": _ago(st), "ready": ready, "pending": None if ready
            else "spawn"} for s, (a, st, ready) in servers.items()}}


@pytest.mark.parametrize("annotations, expected", [
    ({"hub.jupyter.org/username": "Ana.María@x.org"}, ("Ana.María@x.org", "")),  # unescaped, default server
    ({"hub.jupyter.org/username": "bob", "hub.jupyter.org/servername": "gpu"}, ("bob", "gpu")),
    ({"hubfleet.io/username": "carol"}, ("carol", "")),  # hubfleet's own annotation as the fallback
    ({"hub.jupyter.org/username": "dave", "hubfleet.io/username": "other"}, ("dave", "")),
    ({"hubfleet.io/last-activity": "2026-12-01T11:00:00Z"}, None),
    ({"hub.jupyter.org/username": ""}, None),
    (None, None),
])
def test_pods_are_matched_by_the_hubs_annotations(annotations, expected):
    assert server_key(annotations) == expected


def test_server_activity_from_the_user_list():
    users = [user_model("alice", {"": (2, 60, True), "gpu": (None, 300, True)}, last=1),
             user_model("bob", {"": (None, None, True)}, last=200),  # server without times: the user's
             user_model("carol", {"": (600, 1, True)}),  # started a minute ago: active, whatever before
             user_model("dave", {"": (600, 700, False)}),  # still starting: never counted
             {"name": "eve", "servers": None}, "garbage", {"servers": {}}]
    got = {k: round((NOW.timestamp() - v) / 60) for k, v in servers_activity(users).items()}
    assert got == {("alice", ""): 2, ("alice", "gpu"): 300, ("bob", ""): 200, ("carol", ""): 1}


@pytest.mark.parametrize("body, expected", [
    ({"items": [1, 2], "_pagination": {"offset": 0, "limit": 2, "total": 5,
                                        "next": {"offset": 2, "limit": 2, "url": "http://x"}}}, ([1, 2], 2)),
    ({"items": [5], "_pagination": {"offset": 4, "limit": 2, "total": 5, "next": None}}, ([5], None)),
    ([1, 2, 3], ([1, 2, 3], None)),  # a hub that ignores the pagination media type
])
def test_pages_of_the_user_list(body, expected):
    assert parse_page(body) == expected


@pytest.mark.parametrize("body", [{"error": "x"}, "text", None, {"items": {}}])
def test_a_page_that_is_not_a_user_list_is_refused(body):
    with pytest.raises(ValueError, match="JupyterHub user list"):
        parse_page(body)


def test_stale_or_missing_hub_activity_means_unknown():
    now = NOW.timestamp()
    act = HubActivity(max_age=180)
    assert act.last_activity(("alice", ""), now) is None and act.age(now) is None  # never read
    act.update({("alice", ""): now - 3600}, now - 100)
    assert act.last_activity(("alice", ""), now) == now - 3600
    assert act.last_activity(("bob", ""), now) is None  # not listed (not ready): unknown
    assert act.last_activity(("alice", ""), now + 81) is None  # 181 s old: unknown


def _extender(bound, activity):
    cache = ClusterCache(clock=NOW.timestamp)
    cache.replace_nodes([node("n1", cpu="2"), node("n2", cpu="2")])
    cache.replace_pods(bound)
    return Extender(Policy(user_namespaces=("jhub",)), cache, clock=NOW.timestamp, hub_activity=activity)


def _hub_pod(name, node_name, user, server="", idle_minutes=None):
    p = pod(name, node_name=node_name, user=user, idle_minutes=idle_minutes)
    p["metadata"]["annotations"]["hub.jupyter.org/username"] = user
    if server:
        p["metadata"]["annotations"]["hub.jupyter.org/servername"] = server
    return p


def test_preempt_verb_reads_the_hub_and_the_annotation_wins():
    now = NOW.timestamp()
    bound = [_hub_pod("a", "n1", "alice"), _hub_pod("b", "n1", "bob", "gpu"),
             _hub_pod("c", "n2", "carol", idle_minutes=3), _hub_pod("d", "n2", "dave")]
    act = HubActivity(max_age=180)
    act.update({("alice", ""): now - 7200, ("bob", "gpu"): now - 3600, ("bob", ""): now - 99999,
                ("carol", ""): now - 99999, ("dave", ""): now - 60}, now - 30)
    ext = _extender(bound, act)
    args = {"Pod": pod("vip"), "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "b"}]},
                                                         "n2": {"Pods": [{"UID": "c"}, {"UID": "d"}]}}}
    # bob's gpu server (idle 1 h) is the only idle one: carol's annotation (3 min) wins over the hub's, dave is
    # active per the hub
    assert call(ext, "preempt", args) == {"NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "b"}],
                                                                           "NumPDBViolations": 0}}}
    text = ext.metrics.render().decode()
    assert "hubfleet_extender_hub_activity_age_seconds 30.0" in text
    act.fetched_at = now - 181  # the hub stopped answering 3 intervals ago: nobody
    assert call(ext, "preempt", args) == {"NodeNameToMetaVictims": {}}
