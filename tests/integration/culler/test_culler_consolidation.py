"""Consolidation through the culler's sweep: idle servers on a nearly empty node warned (webhook), stopped once the
warning ran out, the node marked at the scheduler extender (its real consolidation listener over HTTP, fed from its
watch cache) and the mark gone when the node empties; an active user, a busy node and an unknown node usage stop
nobody. The hub is test_culler_http.py's in-process HTTP hub; the clock moves instead of waiting."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from aiohttp import web

from jupyterhub_idle_culler import utcnow as real_utcnow

from hubfleet.scheduler_plugin.app import Extender, build_consolidation_app
from hubfleet.scheduler_plugin.cache import ClusterCache
from hubfleet.scheduler_plugin.scoring import Policy
from hubfleet.services.culler import sweep as sweep_module
from tests.integration.culler.test_culler_http import FakeHub, fake_hub, iso  # noqa: F401
from tests.integration.culler.test_culler_warnings import make_app, webhook  # noqa: F401
from tests.procs import free_port

POLICIES = """profiles:
  course: {timeout: 1h, warn_before: 10m, consolidate: {idle_after: 10m, node_requests_below: 25%}}
  plain: {timeout: 1h}
"""


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger="hubfleet.culler")


def k8s_node(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"pool": "cpu"}},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}


def user_pod(user: str, node: str, cpu: str) -> dict:
    return {"metadata": {"name": f"jupyter-{user}", "namespace": "jhub", "uid": user,
                         "labels": {"component": "singleuser-server", "hubfleet.io/profile": "course"},
                         "annotations": {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": ""}},
            "spec": {"nodeName": node, "containers": [{"name": "notebook", "resources": {
                "requests": {"cpu": cpu, "memory": "1Gi"}}}]},
            "status": {"phase": "Running"}}


def hub_server(idle_minutes: float, profile: str = "course") -> dict:
    return {"servers": {"": {"ready": True, "pending": None, "url": "/u/", "started": iso(3 * 3600),
                             "last_activity": iso(60 * idle_minutes), "user_options": {"profile": profile}}}}


@pytest.fixture
async def extender():
    """The extender's consolidation listener on a watch cache that the test feeds as the API server's watch
    would."""
    cache = ClusterCache()
    cache.replace_nodes([k8s_node(n) for n in ("a", "b", "c")])
    cache.replace_pods([])
    ext = Extender(Policy(user_namespaces=("jhub",)), cache)
    runner = web.AppRunner(build_consolidation_app(ext))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield cache, f"http://127.0.0.1:{port}", runner
    await runner.cleanup()


async def test_idle_servers_on_a_nearly_empty_node_are_warned_then_stopped_and_the_node_empties(
        fake_hub, extender, webhook, tmp_path, caplog, monkeypatch):
    cache, ext_url, _ = extender
    hook_url, posts = webhook
    placement = {"ivy": ("c", "500m"), "ian": ("c", "400m"),  # idle on c: 22.5 % requested
                 "cat": ("b", "100m"),  # active on b, 2.5 %
                 "bea": ("a", "500m"), "bo": ("a", "1500m")}  # idle on a, but a is 50 % requested
    for user, (node, cpu) in placement.items():
        cache.apply_pod("ADDED", user_pod(user, node, cpu))
    hub = FakeHub({"ivy": hub_server(20), "ian": hub_server(15), "cat": hub_server(0.1), "bea": hub_server(30),
                   "bo": hub_server(0.1)}, page_size=10)
    url = await fake_hub(hub)
    app, api = make_app(url, tmp_path, POLICIES, f"--webhook-url={hook_url}", f"--extender-url={ext_url}",
                        "--CullerApp.pool_label=pool")
    sweeper = app.make_sweeper(api)
    skew = timedelta(0)
    monkeypatch.setattr(sweep_module, "utcnow", lambda: real_utcnow() + skew)

    def work(*users):  # activity now, on the sweep's clock
        for user in users:
            hub.users[user]["servers"][""]["last_activity"] = iso(-skew.total_seconds())

    r1 = await sweeper.sweep()
    assert (r1.warned, r1.culled) == (2, 0), r1.summary()
    assert sorted(p["user"] for p in posts) == ["ian", "ivy"]
    assert all("to let an almost empty node shut down" in p["reason"] and "files are kept" in p["reason"]
               for p in posts), posts
    assert cache.draining == {"c"}  # new pods go elsewhere meanwhile

    skew = timedelta(minutes=5)  # within the warning: nobody stopped
    work("cat", "bo")
    r2 = await sweeper.sweep()
    assert (r2.warned, r2.culled) == (0, 0), r2.summary()

    skew = timedelta(minutes=10, seconds=5)
    work("cat", "bo")
    r3 = await sweeper.sweep()
    assert sorted(hub.deleted) == ["ian", "ivy"], r3.summary()
    assert "cull ivy: idle 00:30:0" in caplog.text and "to let an almost empty node shut down" in caplog.text
    for user in hub.deleted:  # their pods go, as KubeSpawner deletes them
        cache.apply_pod("DELETED", user_pod(user, *placement[user]))
    assert cache.draining == set()  # the node emptied: its mark is gone
    assert hub.users["cat"]["servers"] and hub.users["bea"]["servers"]  # active; on a busy node
    assert sorted(p["user"] for p in posts) == ["ian", "ivy"]
    api.close()


async def test_the_culler_does_not_mark_or_stop_when_node_usage_is_unknown(fake_hub, extender, webhook, tmp_path,
                                                                           caplog, monkeypatch):
    cache, ext_url, runner = extender
    hook_url, posts = webhook
    cache.apply_pod("ADDED", user_pod("ivy", "c", "500m"))
    hub = FakeHub({"ivy": hub_server(20)}, page_size=10)
    url = await fake_hub(hub)
    app, api = make_app(url, tmp_path, POLICIES, f"--webhook-url={hook_url}", f"--extender-url={ext_url}")
    sweeper = app.make_sweeper(api)
    skew = timedelta(0)
    monkeypatch.setattr(sweep_module, "utcnow", lambda: real_utcnow() + skew)
    assert (await sweeper.sweep()).warned == 1

    cache.pods_synced = False  # the extender re-lists: it cannot tell
    skew = timedelta(minutes=11)
    r = await sweeper.sweep()
    assert r.culled == 0 and not hub.deleted, r.summary()
    assert "node usage unknown (GET " in caplog.text and "answered 503" in caplog.text
    assert "no consolidation warning or stop this sweep" in caplog.text

    await runner.cleanup()  # the extender is down
    r = await sweeper.sweep()
    assert r.culled == 0 and not hub.deleted, r.summary()
    assert "no answer" in caplog.text
    api.close()


def test_bad_consolidation_input_is_a_start_up_error_naming_the_key(tmp_path):
    from hubfleet.services.culler.app import CullerApp
    from hubfleet.services.culler.policies import CullConfigError

    cases = {
        "{idle_after: 10m, node_requests_below: 120%}": "profiles.course.consolidate.node_requests_below",
        "{idle_after: 10m, node_requests_below: -5}": "profiles.course.consolidate.node_requests_below",
        "{idle_after: soon, node_requests_below: 25}": "profiles.course.consolidate.idle_after",
        "{idle_after: 2h, node_requests_below: 25}": "profiles.course.consolidate.idle_after",
    }
    for value, key in cases.items():
        f = tmp_path / "p.yaml"
        f.write_text(f"profiles:\n  course: {{timeout: 1h, warn_before: 5m, consolidate: {value}}}\n")
        app = CullerApp()
        with pytest.raises(CullConfigError, match=key.replace(".", r"\.")):
            app.initialize([f"--policies-file={f}", "--extender-url=http://x"])
    f.write_text("profiles:\n  course: {timeout: 1h, warn_before: 5m, consolidate: "
                 "{idle_after: 10m, node_requests_below: 25}}\n")
    with pytest.raises(CullConfigError, match="--extender-url is not set"):
        CullerApp().initialize([f"--policies-file={f}"])


async def test_the_draining_listener_refuses_bad_input_and_marks_only_known_nodes(extender):
    """``PUT /draining`` is reachable by whatever the NetworkPolicy admits: anything but ``{"nodes": [names]}``
    within 1 MiB is refused with a clear answer and changes nothing; names not in the cache are reported, not
    marked."""
    from aiohttp import ClientSession

    cache, ext_url, _ = extender
    cache.set_draining(["a"])
    async with ClientSession() as s:
        for body in (b"not json", b"[" * 100_000, b'{"nodes": "c"}', b'{"nodes": ["c", 1]}', b"\xff\xfe",
                     b'["c"]'):
            async with s.put(ext_url + "/draining", data=body) as r:
                assert r.status == 400, (body[:20], r.status, await r.text())
                assert (await r.json())["error"] == 'expected {"nodes": [node names]}'
        async with s.put(ext_url + "/draining", data=b'{"nodes": ["' + b"c" * (2 << 20) + b'"]}') as r:
            assert r.status == 413, r.status
        assert cache.draining == {"a"}  # nothing refused changed the marks
        async with s.put(ext_url + "/draining", json={"nodes": ["c", "nowhere"]}) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"draining": ["c"], "unknown": ["nowhere"]}
        assert cache.draining == {"c"}
        cache.pods_synced = False
        async with s.put(ext_url + "/draining", json={"nodes": []}) as r:
            assert r.status == 503 and "not synced yet" in (await r.json())["error"], r.status
        assert cache.draining == {"c"}
