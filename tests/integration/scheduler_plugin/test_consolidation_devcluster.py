"""Consolidation on the devcluster: three CPU nodes, idle servers on the least used one warned and stopped by the
culler (its sweep in-process against test_culler_http.py's HTTP hub), the node marked at the real extender process
so that a new pod meanwhile lands on another node, the active user there never stopped, the mark gone once the node
has emptied."""

from __future__ import annotations

import logging
from datetime import timedelta

import requests

from jupyterhub_idle_culler import utcnow as real_utcnow

from hubfleet.services.culler import sweep as sweep_module
from tests.integration.culler.test_culler_consolidation import POLICIES, hub_server
from tests.integration.culler.test_culler_http import FakeHub, fake_hub, iso  # noqa: F401
from tests.integration.culler.test_culler_warnings import make_app, webhook  # noqa: F401
from tests.procs import free_port

from .conftest import create_pod, make_stack, pod_body, wait_bound, wait_for

USER_SERVER = {"component": "singleuser-server", "hubfleet.io/profile": "course"}


def user_server(user: str, cpu: str, node: str | None = None, strategy: str | None = None) -> dict:
    labels = {**USER_SERVER, **({"hubfleet.io/strategy": strategy} if strategy else {})}
    body = pod_body(f"jupyter-{user}", cpu=cpu, memory="256Mi", labels=labels,
                    scheduler=None if node else "hubfleet-scheduler",
                    node_selector={"kubernetes.io/hostname": node} if node else None)
    body["metadata"]["annotations"] = {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": ""}
    return body


async def test_idle_servers_on_the_least_used_node_stopped_a_new_pod_elsewhere_the_active_user_kept(
        tmp_path, fake_hub, webhook, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="hubfleet.culler")
    cport = free_port()
    stack = make_stack(tmp_path, "--user-namespace=default", f"--consolidation-port={cport}",
                       "--consolidation-host=127.0.0.1")
    ext_url = f"http://127.0.0.1:{cport}"
    try:
        def nodes() -> dict:
            r = requests.get(ext_url + "/nodes", timeout=5)
            return r.json()["nodes"] if r.status_code == 200 else {}

        # cpu-1 62.5 % requested, cpu-2 37.5 % (bea and bo active), cpu-3 (the least used) 25 %: ivy and ian
        # idle, cat active
        layout = {"bea": ("cpu-1", "2500m"), "bo": ("cpu-2", "1500m"), "ivy": ("cpu-3", "500m"),
                  "ian": ("cpu-3", "400m"), "cat": ("cpu-3", "100m")}
        for user, (node, cpu) in layout.items():
            create_pod(stack.cluster, user_server(user, cpu, node))
            assert wait_bound(stack.cluster, f"jupyter-{user}") == node
        wait_for("the extender to list the five servers",
                 lambda: sum(len(n["servers"]) for n in nodes().values()) == 5, seen=nodes)

        hook_url, posts = webhook
        hub = FakeHub({"bea": hub_server(0.1), "bo": hub_server(0.1), "ivy": hub_server(20), "ian": hub_server(15),
                       "cat": hub_server(0.1)}, page_size=10)
        app, api = make_app(await fake_hub(hub), tmp_path, POLICIES, f"--webhook-url={hook_url}",
                            f"--extender-url={ext_url}")
        sweeper = app.make_sweeper(api)
        skew = timedelta(0)
        monkeypatch.setattr(sweep_module, "utcnow", lambda: real_utcnow() + skew)

        def work(*users):
            for user in users:
                hub.users[user]["servers"][""]["last_activity"] = iso(-skew.total_seconds())

        r1 = await sweeper.sweep()
        assert sorted(p["user"] for p in posts) == ["ian", "ivy"], r1.summary()
        assert [n for n, v in nodes().items() if v["draining"]] == ["cpu-3"]

        # meanwhile a new server that spreads (least allocated first: cpu-3 without the mark) lands elsewhere
        create_pod(stack.cluster, user_server("new", "500m", strategy="spread"))
        landed = wait_bound(stack.cluster, "jupyter-new")
        assert landed == "cpu-2", landed

        skew = timedelta(minutes=10, seconds=5)
        work("bea", "bo", "cat")
        r2 = await sweeper.sweep()
        assert sorted(hub.deleted) == ["ian", "ivy"], r2.summary()
        for user in [*hub.deleted, "cat"]:  # the spawner deletes the stopped pods; cat stops her own server later
            r = stack.cluster.request("DELETE", f"/api/v1/namespaces/default/pods/jupyter-{user}")
            assert r.status_code in (200, 202), r.text
        wait_for("cpu-3 to empty and lose its mark",
                 lambda: not nodes()["cpu-3"]["servers"] and not nodes()["cpu-3"]["draining"], seen=nodes)
        assert sorted(p["user"] for p in posts) == ["ian", "ivy"]  # cat (active) was never warned nor stopped
        print("\nconsolidation on the devcluster: warned", sorted(p["user"] for p in posts), "stopped",
              sorted(hub.deleted), "new pod on", landed)
        api.close()
    finally:
        stack.extender.stop()
        stack.cluster.proc.stop()
