"""The culler against an in-process HTTP hub (tornado, real sockets): pagination, concurrent stops, retries on
429/5xx, and SIGTERM of the real process mid-sweep. The in-process hub also mints tokens (``POST
/users/<u>/tokens``) and serves users' servers (``/user/<u>/api/status|kernels``) that accept only such a token, for
the busy-kernel checks. The real hub is in test_culler_hub.py."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, HTTPError, RequestHandler

from hubfleet.services.culler.app import CullerApp
from hubfleet.services.culler.hub_api import HubAPI, HubAPIError

TOKEN = "secret-culler-token"


def iso(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


class FakeHub:
    """Users with one default server each; DELETE takes ``stop_delay`` seconds; ``fail`` queues statuses."""

    def __init__(self, users: dict[str, dict], page_size=3, stop_delay=0.0):
        self.users, self.page_size, self.stop_delay = users, page_size, stop_delay
        self.fail: list[int] = []
        self.in_flight = self.max_in_flight = 0
        self.deleted: list[str] = []
        self.list_requests: list[str] = []
        self.auth_seen: set[str] = set()
        self.garbage = 0  # this many user lists answer HTML instead of JSON
        self.root_delay_per_stop = 0.0
        self.root_auth: set[str] = set()  # Authorization headers of GET /hub/api/ (the culler's probe)
        # users' servers behind the same port (/user/<name>/api/...): name -> what the server does
        self.server_behaviour: dict[str, str] = {}
        self.tokens: dict[str, tuple[str, str, list]] = {}  # live minted tokens: secret -> (user, id, scopes)
        self.tokens_minted = self.tokens_deleted = 0
        self.server_auth: list[str] = []  # Authorization headers users' servers received
        self.token_scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers", "tokens",
                             "read:tokens"]  # the culler's token's expanded scopes (GET /hub/api/user)
        self.budgets: list | None = None  # GET /hub/api/budgets's servers (hubfleet's queue_web); None: no such API

    def app(self):
        hub = self

        class Base(RequestHandler):
            def prepare(self):
                hub.auth_seen.add(self.request.headers.get("Authorization", ""))
                if hub.fail:
                    self.set_status(hub.fail.pop(0))
                    if self.get_status() == 429:
                        self.set_header("Retry-After", "0.05")
                    self.finish(json.dumps({"message": "try later"}))

        class Root(Base):
            async def get(self):
                hub.root_auth.add(self.request.headers.get("Authorization", ""))
                if hub.root_delay_per_stop:  # a hub that slows down with every stop in flight
                    await asyncio.sleep(hub.root_delay_per_stop * hub.in_flight)
                self.write({"version": "6.1.1"})

        class Users(Base):
            def get(self):
                hub.list_requests.append(self.request.uri)
                assert self.request.headers["Accept"] == "application/jupyterhub-pagination+json"
                state = self.get_argument("state")
                offset, limit = int(self.get_argument("offset", 0)), int(self.get_argument("limit", hub.page_size))
                names = sorted(n for n, u in hub.users.items() if (bool(u["servers"]) == (state == "ready")))
                page = names[offset:offset + limit]
                nxt = None
                if offset + limit < len(names):
                    nxt = {"offset": offset + limit, "limit": limit, "url": "http://wrong-host.invalid/next"}
                if hub.garbage:
                    hub.garbage -= 1
                    self.finish("<html>not json</html>")
                    return
                self.write({"items": [hub.model(n, auth_state=False) for n in page],
                            "_pagination": {"offset": offset, "limit": limit, "total": len(names), "next": nxt}})

        class User(Base):
            def get(self, name):
                if name not in hub.users:
                    self.set_status(404)
                    return
                self.write(hub.model(name, auth_state=True))

        class Server(Base):
            async def delete(self, name):
                hub.in_flight += 1
                hub.max_in_flight = max(hub.max_in_flight, hub.in_flight)
                try:
                    await asyncio.sleep(hub.stop_delay)
                finally:
                    hub.in_flight -= 1
                hub.users[name]["servers"] = {}
                hub.deleted.append(name)
                self.set_status(204)

        class Me(Base):
            def get(self):
                self.write({"kind": "service", "name": "culler", "scopes": hub.token_scopes})

        class Tokens(Base):
            def post(self, name):  # as JupyterHub: a token owned by the user, with the scopes asked for
                if self.request.headers.get("Authorization") != f"token {TOKEN}":
                    raise HTTPError(403)
                body = json.loads(self.request.body)
                hub.tokens_minted += 1
                secret, token_id = secrets.token_hex(16), f"a{hub.tokens_minted}"
                hub.tokens[secret] = (name, token_id, body["scopes"])
                self.set_status(201)
                self.write({"token": secret, "id": token_id, "scopes": body["scopes"], "note": body.get("note")})

        class Token(Base):
            def delete(self, name, token_id):
                for secret, (user, tid, _) in list(hub.tokens.items()):
                    if (user, tid) == (name, token_id):
                        del hub.tokens[secret]
                        hub.tokens_deleted += 1
                        self.set_status(204)
                        return
                self.set_status(404)

        class Budgets(Base):
            def get(self):
                if hub.budgets is None:
                    raise HTTPError(404)
                self.write({"servers": hub.budgets})

        class UserServer(RequestHandler):
            async def get(self, name, what):
                auth = self.request.headers.get("Authorization", "")
                hub.server_auth.append(auth)
                owner, _, scopes = hub.tokens.get(auth.removeprefix("token "), (None, None, []))
                if owner != name or scopes != [f"access:servers!server={name}/"]:
                    raise HTTPError(403)
                behaviour = hub.server_behaviour.get(name, "idle")
                if behaviour == "slow":  # never answers within the culler's timeout
                    await asyncio.sleep(30)
                elif behaviour == "huge":
                    self.finish(b"[" + b'{"execution_state": "busy"},' * 80_000 + b"{}]")
                elif behaviour == "garbage":
                    self.finish("<html>busy, honestly</html>")
                elif behaviour == "deep":
                    self.finish("[" * 100_000)
                elif behaviour == "reset":
                    self.request.connection.stream.close()
                elif what == "status":
                    self.write({"kernels": 0 if behaviour == "idle" else 1, "last_activity": iso(0)})
                else:
                    self.finish(json.dumps([{"id": "k", "execution_state": behaviour}]))

        return Application([(r"/hub/api/", Root), (r"/hub/api/users", Users), (r"/hub/api/user", Me),
                            (r"/hub/api/users/([^/]+)/server", Server), (r"/hub/api/users/([^/]+)/tokens", Tokens),
                            (r"/hub/api/users/([^/]+)/tokens/([^/]+)", Token), (r"/hub/api/users/([^/]+)", User),
                            (r"/hub/api/budgets", Budgets),
                            (r"/user/([^/]+)/api/(status|kernels)", UserServer)])

    def model(self, name: str, auth_state: bool) -> dict:
        """The user model the hub would send; auth state only in the single-user model (as JupyterHub)."""
        model = {"name": name, "admin": False, **self.users[name]}
        if not auth_state:
            model.pop("auth_state", None)
        return model


def make_users(n_idle: int, n_active: int, profile="gpu") -> dict:
    users = {}
    for i in range(n_idle):
        users[f"idle{i:03d}"] = {"servers": {"": {"ready": True, "pending": None, "url": "/u/", "started": iso(7200),
                                                  "last_activity": iso(3600), "user_options": {"profile": profile}}}}
    for i in range(n_active):
        users[f"busy{i:03d}"] = {"servers": {"": {"ready": True, "pending": None, "url": "/u/", "started": iso(7200),
                                                  "last_activity": iso(5), "user_options": {"profile": profile}}}}
    return users


@pytest.fixture
async def fake_hub():
    servers = []

    async def start(hub: FakeHub) -> str:
        server = HTTPServer(hub.app())
        sockets = __import__("tornado.netutil", fromlist=["bind_sockets"]).bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        servers.append(server)
        return f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hub/api"

    yield start
    for s in servers:
        s.stop()


def app_for(url: str, *args: str) -> tuple[CullerApp, HubAPI]:
    app = CullerApp()
    app.initialize([f"--url={url}", "--timeout=600", *args])
    return app, HubAPI(url, TOKEN, max_clients=app.concurrency + 2, backoff=0.01, retries=3)


async def test_stops_in_flight_shrink_when_the_hub_slows_down_under_them(fake_hub):
    hub = FakeHub(make_users(40, 0), page_size=50, stop_delay=0.3)
    hub.root_delay_per_stop = 0.03  # 30 ms more per stop in flight: over the 25 ms target with 1 in flight
    url = await fake_hub(hub)
    app, api = app_for(url, "--concurrency=10")
    sweeper = app.make_sweeper(api)
    result = await sweeper.sweep()
    api.close()
    assert result.culled == 40
    assert sweeper.limit.limit == 1, sweeper.limit.history
    limits = [lim for _, lim in sweeper.limit.history]
    assert 1 in limits and limits[-1] == 1, limits  # halved down to one stop at a time, and kept there
    assert hub.max_in_flight <= 5
    # the probe needs no token, and a token from the hub's config costs the hub a 16,384-round hash per request
    assert hub.root_auth == {""}, hub.root_auth
    assert f"token {TOKEN}" in hub.auth_seen


async def test_sweep_pages_culls_idle_in_parallel_and_keeps_active(fake_hub):
    hub = FakeHub(make_users(12, 5), page_size=4, stop_delay=0.3)
    url = await fake_hub(hub)
    app, api = app_for(url, "--concurrency=6", "--hub-latency-target=0", "--api-page-size=4")  # fixed width: see the next test
    t0 = time.monotonic()
    result = await app.sweep(api)
    wall = time.monotonic() - t0
    api.close()
    assert sorted(hub.deleted) == [f"idle{i:03d}" for i in range(12)]  # every idle one, across 5 pages
    assert all(hub.users[f"busy{i:03d}"]["servers"] for i in range(5))
    assert (result.users_listed, result.servers_seen, result.culled, result.errors) == (17, 17, 12, [])
    assert hub.max_in_flight == 6  # really concurrent, and bounded
    assert wall < 12 * 0.3 / 2, f"12 stops of 0.3 s, 6 at a time, took {wall:.2f}s"
    assert len(hub.list_requests) == 5 and all("wrong-host" not in r for r in hub.list_requests)
    assert hub.auth_seen == {f"token {TOKEN}"}


async def test_retries_429_and_503_then_succeeds(fake_hub, caplog):
    hub = FakeHub(make_users(2, 0))
    url = await fake_hub(hub)
    app, api = app_for(url)
    hub.fail = [503, 429, 502]
    with caplog.at_level("WARNING", logger="hubfleet.culler"):
        result = await app.sweep(api)
    api.close()
    assert result.culled == 2 and not result.errors and api.retried == 3
    assert "answered 503; retry 1/3" in caplog.text
    assert TOKEN not in caplog.text


async def test_gives_up_after_retries_with_a_clear_error(fake_hub):
    hub = FakeHub(make_users(1, 0))
    url = await fake_hub(hub)
    app, api = app_for(url)
    hub.fail = [500] * 10
    with pytest.raises(HubAPIError, match=r"GET /users\?state=ready&limit=50: 500 try later"):
        await app.sweep(api)
    api.close()
    assert api.requests == 4  # 1 + 3 retries


async def test_403_is_not_retried(fake_hub):
    hub = FakeHub(make_users(1, 0))
    url = await fake_hub(hub)
    _, api = app_for(url)
    hub.fail = [403]
    with pytest.raises(HubAPIError, match="403"):
        await api.stop_server("idle000")
    api.close()
    assert api.requests == 1


async def test_sigterm_mid_sweep_exits_at_once(fake_hub, tmp_path):
    hub = FakeHub(make_users(20, 0), page_size=50, stop_delay=30)  # every stop hangs
    url = await fake_hub(hub)
    log = tmp_path / "culler.log"
    env = {**os.environ, "JUPYTERHUB_API_URL": url, "JUPYTERHUB_API_TOKEN": TOKEN}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hubfleet.services.culler", "--timeout=60",
                                 "--concurrency=5"], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 30
            while hub.in_flight < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert hub.in_flight == 5, log.read_text()
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
        finally:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert took < 2, f"exit took {took:.1f}s after SIGTERM"
    assert "stopping: sweep cancelled" in text
    assert text.count("cull idle") == 5  # one line per cull with its reason
    assert "inactive for 01:00:0" in text and ">= 00:01:00 (profile gpu (no policy: default))" in text
    assert TOKEN not in text


async def test_a_hub_that_does_not_answer_is_retried_then_named():
    """Refused connections and timeouts are retried like a 5xx (tornado raises them rather than answering 599),
    then reported as the culler's own error, so a sweep fails cleanly and the service retries it."""
    from tests.procs import free_port

    api = HubAPI(f"http://127.0.0.1:{free_port()}/hub/api", TOKEN, retries=2, backoff=0.01, request_timeout=2)
    with pytest.raises(HubAPIError, match=r"GET /users: 599 no response: ConnectionRefusedError") as e:
        await api.call("GET", "/users")
    api.close()
    assert e.value.status == 599 and api.retried == 2 and api.requests == 3
