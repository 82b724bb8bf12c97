"""Preemption with the server activity read from the JupyterHub REST API (``--hub-api-url``), the whole path on the
devcluster: the pods carry only KubeSpawner's annotations (``hub.jupyter.org/username``, ``/servername``), no
``hubfleet.io/last-activity``. The hub is a small aiohttp server in the test speaking the hub's protocol for
``GET /hub/api/users?state=ready``: a token check (403 without it), ``offset``/``limit`` pagination with the
``application/jupyterhub-pagination+json`` media type, and a page limit of 2 so the extender must follow the pages."""

from __future__ import annotations

import asyncio
import math
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import free_port

from .conftest import create_pod, make_stack, pod_body, wait_bound, wait_for
from .test_preemption import NODES, _pod, assert_nobody_preempted, user_pod

TOKEN = "s3cret-hub-token-for-the-extender"
PAGE_MAX = 2


def _ago(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class FakeHub:
    """`users`: [(name, {server name: idle minutes})], all servers ready."""

    def __init__(self, users: list[tuple[str, dict[str, float]]]):
        self.users = users
        self.pages = []  # (offset, limit, authorized) of each request
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hub/api"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "fake hub did not start in 10s"

    def _model(self, name, servers):
        return {"kind": "user", "name": name, "admin": False, "last_activity": _ago(min(servers.values())),
                "servers": {s: {"name": s, "last_activity": _ago(m), "started": _ago(m + 60), "ready": True,
                                "pending": None, "stopped": False} for s, m in servers.items()}}

    async def users_handler(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        ok = auth in (f"token {TOKEN}", f"Bearer {TOKEN}")
        offset, limit = int(request.query.get("offset", 0)), min(int(request.query.get("limit", PAGE_MAX)),
                                                                  PAGE_MAX)
        self.pages.append((offset, limit, ok))
        if not ok:
            return web.json_response({"status": 403, "message": "Missing or invalid credentials."}, status=403)
        if request.query.get("state") != "ready":
            return web.json_response({"status": 400, "message": "expected state=ready"}, status=400)
        items = [self._model(n, s) for n, s in self.users[offset:offset + limit]]
        if "application/jupyterhub-pagination+json" not in request.headers.get("Accept", ""):
            return web.json_response([self._model(n, s) for n, s in self.users])
        nxt = offset + limit
        return web.json_response({"items": items, "_pagination": {
            "offset": offset, "limit": limit, "total": len(self.users),
            "next": {"offset": nxt, "limit": limit, "url": f"{self.url}/users?offset={nxt}"}
            if nxt < len(self.users) else None}}, content_type="application/jupyterhub-pagination+json")

    def _run(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/hub/api/users", self.users_handler)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def hub_pod(name: str, node: str, priority: int, username: str, servername: str = "") -> dict:
    """A user server with only the annotations KubeSpawner writes (the username unescaped)."""
    body = user_pod(name, node, priority, None)
    body["metadata"]["annotations"] = {"hub.jupyter.org/username": username,
                                       **({"hub.jupyter.org/servername": servername} if servername else {})}
    return body


def _age(stack) -> float | None:
    text = requests.get(stack.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "hubfleet_extender_hub_activity_age_seconds":
            return family.samples[0].value
    return None


@pytest.fixture
def hub_stack(tmp_path, request, monkeypatch):
    hub = FakeHub([("alice", {"": 2}), ("bob", {"gpu": 120, "": 600}), ("zed", {"": 900}),
                   ("carol", {"": 50}), ("Dave.Smith@example.org", {"": 180})])
    url = f"http://127.0.0.1:{free_port()}/hub/api" if request.param == "unreachable" else hub.url
    # the extender's environment, as from deploy/'s Secret
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "not-the-token" if request.param == "forbidden" else TOKEN)
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(NODES))
    stack = make_stack(tmp_path, "--protect-active", "45m", "--user-namespace", "default", "--hub-api-url", url,
                       "--hub-activity-interval", "1s",
                       devcluster_args=("--nodes", str(nodes)))
    stack.hub = hub
    yield stack
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        print("\n--- devcluster state ---\n" + stack.cluster.describe())
        print("--- extender log ---\n" + stack.extender.log_tail(40))
        print(f"--- fake hub requests (offset, limit, authorized) ---\n{hub.pages[-20:]}")
    stack.extender.stop()
    stack.cluster.proc.stop()
    hub.stop()


def _servers(stack):
    # n1: alice (active 2 min ago per the hub, priority 100), bob's named server "gpu" (idle 2 h, 200);
    # n2: carol (idle 50 min, 500), Dave.Smith@example.org (idle 3 h, 400). kube-scheduler proposes alice on n1
    # and dave on n2, and alone would preempt alice (the lowest-priority victim).
    for body in (hub_pod("srv-alice", "n1", 100, "alice"), hub_pod("srv-bob", "n1", 200, "bob", "gpu"),
                 hub_pod("srv-carol", "n2", 500, "carol"), hub_pod("srv-dave", "n2", 400, "Dave.Smith@example.org")):
        create_pod(stack.cluster, body)
        wait_bound(stack.cluster, body["metadata"]["name"])
    wait_for("the extender's cache to hold the 4 servers", lambda: stack.cache()["pods"] == 4, seen=stack.cache)
    vip = pod_body("vip", cpu="1")
    vip["spec"]["priority"] = 1000
    create_pod(stack.cluster, vip)


@pytest.mark.parametrize("hub_stack", ["reachable"], indirect=True)
def test_preemption_takes_the_idlest_server_by_hub_activity(hub_stack):
    stack = hub_stack
    age = wait_for("the extender to have read the hub's user list", lambda: (a := _age(stack)) is not None
                   and not math.isnan(a) and a <= 3, seen=lambda: stack.extender.log_tail(10))
    assert age <= 3
    assert {(o, ok) for o, _, ok in stack.hub.pages} >= {(0, True), (2, True), (4, True)}  # every page, with token
    _servers(stack)

    def preempted():
        return [e["message"] for e in stack.cluster.events("srv-dave") if e["reason"] == "Preempted"]
    assert wait_for("a Preempted event on srv-dave", preempted, timeout=20,
                    seen=lambda: stack.extender.log_tail(10)) == ["Preempted by pod default/vip on node n2"]
    assert wait_bound(stack.cluster, "vip", timeout=40) == "n2"
    for name in ("srv-alice", "srv-bob", "srv-carol"):  # alice, active within the window, is spared
        pod = _pod(stack, name)
        assert pod["spec"]["nodeName"] and not pod["metadata"].get("deletionTimestamp"), name
    assert "preempt pod:default/vip: on n2, victims default/srv-dave" in stack.extender.log_tail(50)
    assert TOKEN not in stack.extender.log_tail(200)


@pytest.mark.parametrize("hub_stack", ["unreachable", "forbidden"], indirect=True)
def test_no_preemption_while_the_hub_cannot_be_read(hub_stack, request):
    stack = hub_stack
    wait_for("the extender to log that hub activity is unknown", lambda: "hub activity unknown" in
             stack.extender.log_tail(50), seen=lambda: stack.extender.log_tail(10))
    _servers(stack)
    assert_nobody_preempted(stack, ("srv-alice", "srv-bob", "srv-carol", "srv-dave"))
    assert math.isnan(_age(stack))
    log = stack.extender.log_tail(200)
    assert log.count("hub activity unknown") == 1  # once per state change, not once per poll
    assert TOKEN not in log and "not-the-token" not in log
    if request.node.callspec.params["hub_stack"] == "forbidden":
        assert "answered HTTP 403" in log and "check JUPYTERHUB_API_TOKEN and its scopes" in log
        assert stack.hub.pages and not any(ok for _, _, ok in stack.hub.pages)
