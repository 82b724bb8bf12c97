"""A running server that uses up its usage budget is warned and stopped ``warn_before`` later, by hubfleet's culler
as a hub-managed service of a real JupyterHub with ProfileSpawner servers on the devcluster.

Profile ``metered`` (1 CPU guaranteed) has a budget of 1 CPU-hour per hour. ann's use is filled up to a few
CPU-seconds short of it with a usage record written into the hub's database (as the queue tests do), so her running
server uses up the rest within seconds; bob's server of the same profile stays far under it. The culler sweeps every
second with ``warn_before`` 3 s and warns through a webhook.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hubfleet.config.culler import culler_service
from hubfleet.db import Database
from hubfleet.spawners import queue_store as qs
from tests.integration.spawner.test_profile_spawner import IMG, hub_config, make_users, spawn
from tests.procs import wait_for

RES = {"cpu": {"guarantee": 1, "limit": 1}, "memory": {"guarantee": "64M", "limit": "1G"}}
PROFILES = [{"slug": "small", "display_name": "Small", "default": True, "image": IMG, **RES},
            {"slug": "metered", "display_name": "Metered", "image": IMG, **RES}]
POLICIES = "profiles:\n  metered: {timeout: 1h, warn_before: 3}\n  small: {timeout: 1h}\n"
MESSAGE = "budget used up: you have used 1.0 of 1 CPU-hours in the last 1 hour"


class Webhook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Webhook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_server_that_uses_up_its_budget_is_warned_then_stopped(start_hub, devcluster, tmp_path):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    Webhook.received = []
    policies = tmp_path / "culler-policies.yaml"
    policies.write_text(POLICIES)
    token = secrets.token_hex(16)
    service, role = culler_service(timeout=3600, policies_file=str(policies), cull_every=1, api_token=token,
                                   cull_over_budget=True,
                                   extra_args=[f"--webhook-url=http://127.0.0.1:{hook.server_port}/warn"])
    hub = start_hub(hub_config(f"""
from hubfleet.config.queue import enable_queue
enable_queue(c)
c.ProfileSpawner.profiles = {PROFILES!r}
c.ProfileSpawner.budgets = [{{"cpu_hours": 1, "window": "1h", "profile": "metered"}}]
c.JupyterHub.services.append({service!r})
c.JupyterHub.load_roles.append({role!r})
"""))
    try:
        _run(hub, token, hook)
    finally:
        hook.shutdown()


def _run(hub, token, hook):
    seen = lambda: f"hub log:\n{hub.log_tail(60)}"  # noqa: E731
    make_users(hub, "ann", "bob")
    for user in ("ann", "bob"):
        assert spawn(hub, user, {"profile": "metered"})[0] in (201, 202)
    for user in ("ann", "bob"):
        hub.wait_ready(user, timeout=120)

    db = Database(f"sqlite:///{hub.state}/jupyterhub.sqlite", timeout=10)
    try:
        wait_for("ann's usage record", lambda: db.run(lambda c: qs.records(c, since=time.time(),
                                                                          until=time.time(), user="ann")), 30)
        now = time.time()
        (running,) = db.run(lambda c: qs.records(c, since=now, until=now, user="ann"))
        short = 3600 - (now - running.started) - 8  # CPU-seconds: 8 s of her 1-CPU server short of the budget
        db.run(lambda c: qs.record_start(c, user="ann", server_name="old", profile="metered", groups=[], gpus=0,
                                         cpu=10, memory=0, now=now - short / 10 - 1), write=True)
        db.run(lambda c: qs.record_stop(c, user="ann", server_name="old", now=now - 1), write=True)
    finally:
        db.dispose()

    # the hub tells the culler's token which running servers a budget applies to, and how much is used
    status, body = hub.api("GET", "/budgets", token=token)
    assert status == 200, body
    states = {s["user"]: s for s in body["servers"]}
    assert set(states) == {"ann", "bob"} and not states["bob"]["used_up"], body
    assert states["ann"]["budgets"][0]["used_hours"] < 1, body  # not used up yet: her server runs it out

    wait_for("ann's budget warning", lambda: f"warn ann: {MESSAGE}" in hub.log_tail(2000), 60, seen=seen)
    wait_for("ann's server to be stopped", lambda: hub.api("GET", "/users/ann")[1]["servers"] == {}, 60, seen=seen)
    log = hub.log_tail(2000)
    warn_line = next(line for line in log.splitlines() if "warn ann: budget" in line)
    assert "culled in 00:00:03 unless the budget frees up" in warn_line, warn_line
    cull = next(line for line in log.splitlines() if "hubfleet.culler] cull ann:" in line)
    assert f"cull ann: {MESSAGE}" in cull and "(profile metered), warned 00:00:0" in cull, cull
    assert int(cull.rsplit("warned 00:00:", 1)[1][:2]) >= 3, cull  # not before warn_before
    (notice,) = [n for n in Webhook.received if n["user"] == "ann"]
    assert notice["why"] == "budget" and notice["reason"].startswith(MESSAGE), notice
    assert "warn bob" not in log and "cull bob" not in log
    assert hub.api("GET", "/users/bob")[1]["servers"][""]["ready"]

    # another user's token sees only its own servers' budgets; a token without read:servers sees none
    status, body = hub.api("GET", "/budgets", token=hub.user_token("ann"))
    assert status == 200 and body == {"servers": []}, body
    bob = hub.user_token("bob")
    assert [s["user"] for s in hub.api("GET", "/budgets", token=bob)[1]["servers"]] == ["bob"]
    status, scoped = hub.api("POST", "/users/bob/tokens", json={"scopes": ["read:users:name!user=bob"]})
    assert status == 201, scoped
    assert hub.api("GET", "/budgets", token=scoped["token"])[1] == {"servers": []}
    assert hub.api("DELETE", "/users/bob/server")[0] in (202, 204)
    hub.wait_stopped("bob", timeout=60)
