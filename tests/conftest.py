"""Shared fixtures: a real devcluster process, a real configurable-http-proxy, and a factory for real JupyterHub
processes wired to both (as z2jh wires them: the proxy runs on its own, the hub talks to its REST API).

Everything here is synchronous and talks HTTP to real processes; each server gets its own free port and temp dir and
is stopped by process group in a finaliser. When a test fails, the pods, their events and the log tails of every
process are printed with the failure.
"""

from __future__ import annotations

import json
import secrets
import textwrap
import time
from pathlib import Path

import pytest
import requests

from hubfleet_devcluster.pytest_plugin import DevClusterHandle, devcluster_token, start_devcluster  # noqa: F401
from tests.procs import ARTIFACTS, CHP_BIN, VENV_BIN, Proc, free_port

SINGLEUSER_IMAGE = "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


# --- where the time goes: seconds per test module (setup + call + teardown), printed and kept ----------------------
_module_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::", 1)[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    ranked = sorted(_module_seconds.items(), key=lambda kv: -kv[1])
    if not ranked:
        return
    (ARTIFACTS / "durations-by-module.json").write_text(json.dumps(dict(ranked), indent=1))
    terminalreporter.write_sep("=", f"slowest 20 of {len(ranked)} modules ({sum(_module_seconds.values()):.0f} s "
                                    "in tests)")
    for module, seconds in ranked[:20]:
        terminalreporter.write_line(f"{seconds:8.1f}s {module}")


def _failed(request) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


# --- devcluster -------------------------------------------------------------------------------------------------------
# The `devcluster` fixture comes from hubfleet-devcluster's pytest plugin (entry point pytest11); DevClusterHandle,
# devcluster_token and start_devcluster are imported from it above for the tests that start their own.


# --- PostgreSQL -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/pg.py); ``postgres.create_database(name)`` per test."""
    from tests.pg import start_postgres

    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres, request):
    """A fresh, empty PostgreSQL database of its own for this test."""
    import re

    return postgres.create_database("t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
                                    + f"_{len(postgres.created)}")


# --- configurable-http-proxy ------------------------------------------------------------------------------------------

class CHPHandle:
    def __init__(self, proc: Proc, public_port: int, api_port: int, token: str):
        self.proc = proc
        self.public_url = f"http://127.0.0.1:{public_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.public_port, self.api_port, self.token = public_port, api_port, token

    def routes(self) -> dict:
        r = requests.get(self.api_url + "/api/routes", headers={"Authorization": f"token {self.token}"}, timeout=5)
        r.raise_for_status()
        return r.json()


def start_chp(log_dir: Path) -> CHPHandle:
    if not CHP_BIN.exists():
        pytest.fail(f"configurable-http-proxy is not installed at {CHP_BIN}: run `make test` (it npm-installs it)")
    public, api = free_port(), free_port()
    token = secrets.token_hex(16)
    proc = Proc("chp", [CHP_BIN, "--ip", "127.0.0.1", "--port", public, "--api-ip", "127.0.0.1", "--api-port", api,
                        "--log-level", "warn"], log_dir, env={"CONFIGPROXY_AUTH_TOKEN": token})
    proc.wait_for_port("127.0.0.1", api, timeout=20)
    proc.wait_for_port("127.0.0.1", public, timeout=20)
    return CHPHandle(proc, public, api, token)


@pytest.fixture
def chp(tmp_path, request):
    handle = start_chp(tmp_path / "chp")
    yield handle
    if _failed(request):
        print("--- chp log ---\n" + handle.proc.log_tail(20))
    handle.proc.stop()


# --- JupyterHub -------------------------------------------------------------------------------------------------------

BASE_HUB_CONFIG = """
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.hub_connect_ip = "127.0.0.1"
c.JupyterHub.cleanup_servers = False
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{state}/jupyterhub.pid"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "{chp_api}"
c.ConfigurableHTTPProxy.auth_token = "{chp_token}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{password}"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"admin"}}
c.JupyterHub.services = [{{"name": "test-admin", "api_token": "{admin_token}"}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["test-admin"]}}]
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = "default"
c.KubeSpawner.image = "{image}"
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.start_timeout = 60
# a pod without a readiness probe is Ready as soon as its container runs (as on Kubernetes): the singleuser server's
# own start-up then counts against http_timeout: 90 s keeps the budget a spawn had (start 60 + http 30)
c.KubeSpawner.http_timeout = 90
c.KubeSpawner.cpu_guarantee = 0.1
c.KubeSpawner.mem_guarantee = "128M"
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.volumes = [{{"name": "home", "persistentVolumeClaim": {{"claimName": "{{pvc_name}}"}}}}]
c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
c.KubeSpawner.working_dir = "/home/jovyan"
c.KubeSpawner.delete_grace_period = 1
c.Spawner.default_url = "/lab"
"""


class HubHandle:
    def __init__(self, name: str, state: Path, config_text: str, env: dict, chp: CHPHandle, admin_token: str,
                 password: str, hub_port: int):
        self.name, self.state, self.env, self.chp = name, state, env, chp
        self.config_path = state / "jupyterhub_config.py"
        self.config_path.write_text(config_text)
        self.admin_token, self.password, self.hub_port = admin_token, password, hub_port
        self.url = chp.public_url
        self.proc: Proc | None = None

    def start(self, timeout: float = 60) -> "HubHandle":
        self.proc = Proc(self.name, [VENV_BIN / "jupyterhub", "-f", self.config_path], self.state, env=self.env,
                         cwd=self.state)
        self.proc.wait_for_port("127.0.0.1", self.hub_port, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the hub is up once its route answers through the proxy
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"hub did not answer through the proxy at {self.url}:\n{self.proc.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=40)

    def restart(self) -> "HubHandle":
        self.stop()
        return self.start()

    def log_tail(self, n: int = 60) -> str:
        return self.proc.log_tail(n) if self.proc else ""

    def api(self, method: str, path: str, token: str | None = None, **kw) -> tuple[int, object]:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        r = requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=kw.pop("timeout", 30),
                             **kw)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        return r.status_code, body

    def login(self, user: str, password: str | None = None) -> requests.Session:
        s = requests.Session()
        r = s.get(f"{self.url}/hub/login", timeout=10)
        r.raise_for_status()
        r = s.post(f"{self.url}/hub/login?next=", data={"username": user, "password": password or self.password,
                                                        "_xsrf": s.cookies.get("_xsrf")}, timeout=30,
                   allow_redirects=False)
        if r.status_code != 302:
            raise AssertionError(f"login of {user!r} answered {r.status_code}, expected a 302 redirect")
        return s

    def ensure_user(self, user: str) -> None:
        status, body = self.api("POST", f"/users/{user}")
        assert status in (201, 409), body

    def user_token(self, user: str) -> str:
        status, body = self.api("POST", f"/users/{user}/tokens", json={"note": "test", "expires_in": 3600})
        assert status == 201, body
        return body["token"]

    def wait_ready(self, user: str, server: str = "", timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/users/{user}")
            last = body
            if status == 404:
                raise AssertionError(f"user {user!r} does not exist on the hub")
            srv = (body.get("servers") or {}).get(server) if isinstance(body, dict) else None
            if srv and srv.get("ready"):
                return srv
            time.sleep(0.2)
        raise AssertionError(f"server {user}/{server} not ready in {timeout}s; last user model: {last}\n"
                             f"hub log:\n{self.log_tail(30)}")

    def wait_stopped(self, user: str, server: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/users/{user}")
            if server not in (body.get("servers") or {}):
                return
            time.sleep(0.2)
        raise AssertionError(f"server {user}/{server} still there after {timeout}s: {body}")


def new_hub(state: Path, devcluster: DevClusterHandle | None, chp: CHPHandle, extra_config: str = "", *,
            name: str = "hub", password: str = "test-password") -> HubHandle:
    """A hub (not started yet) wired to the devcluster (None: none, for local-process spawners) and the proxy; also
    for module-scoped fixtures."""
    state.mkdir(parents=True, exist_ok=True)
    hub_port = free_port()
    admin_token = secrets.token_hex(16)
    config = BASE_HUB_CONFIG.format(
        public_port=chp.public_port, hub_port=hub_port, state=state, chp_api=chp.api_url, chp_token=chp.token,
        password=password, admin_token=admin_token, image=SINGLEUSER_IMAGE,
    ) + textwrap.dedent(extra_config)
    env = {"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
           **({"KUBECONFIG": str(devcluster.kubeconfig)} if devcluster is not None else {})}
    return HubHandle(name, state, config, env, chp, admin_token, password, hub_port)


@pytest.fixture
def start_hub(tmp_path, devcluster, chp, request):
    """Factory: start_hub(extra_config="", name="hub") -> HubHandle (started)."""
    hubs: list[HubHandle] = []

    def factory(extra_config: str = "", name: str = "hub", password: str = "test-password") -> HubHandle:
        hub = new_hub(tmp_path / name, devcluster, chp, extra_config, name=name, password=password)
        hubs.append(hub)
        return hub.start()

    yield factory
    if _failed(request):
        for hub in hubs:
            print(f"--- {hub.name} log ---\n" + hub.log_tail(60))
    for hub in hubs:
        hub.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

