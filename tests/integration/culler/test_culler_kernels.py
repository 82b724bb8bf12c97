"""The culler as a managed service of one real JupyterHub (module-scoped) with ProfileSpawner servers on the
devcluster, real jupyterhub-singleuser servers and real ipykernel kernels:

- busy kernels: a kernel running ``time.sleep(600)`` is spared, an idle one is culled, a busy one over the profile's
  ``max_age`` is culled with its reason logged;
- a server spawned on the default profile (REST ``{}``) is culled under that profile's policy;
- the service's metrics are reachable through the hub's proxy at ``/services/<name>/metrics``.

Servers are made idle by back-dating inside the hub (backdate.py). Policies are short (5 min idle, 1 h age) and the
sweep runs every 2 s, so the module takes well under a minute once the servers are up.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

from hubfleet.config.culler import culler_service
from tests.conftest import new_hub, start_chp, start_devcluster
from tests.integration.culler.backdate import hub_config as backdate_config
from tests.procs import REPO, free_port, wait_for

PROFILES = """\
profiles:
  - {slug: gpu, display_name: GPU, default: true}
  - {slug: small, display_name: Small}
"""
POLICIES = """\
default: {timeout: 1h}
profiles:
  gpu: {timeout: 5m}
  small: {timeout: 5m, max_age: 1h, spare_busy_kernels: true}
"""
SERVICE = "culler"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("culler-kernels")
    devcluster = start_devcluster(tmp / "devcluster")
    chp = start_chp(tmp / "chp")
    (tmp / "profiles.yaml").write_text(PROFILES)
    (tmp / "policies.yaml").write_text(POLICIES)
    token = secrets.token_hex(16)
    metrics_port = free_port()
    service, role = culler_service(timeout=3600, policies_file=str(tmp / "policies.yaml"), cull_every=2,
                                   api_token=token, name=SERVICE, profiles_file=str(tmp / "profiles.yaml"),
                                   server_url=chp.public_url, metrics_port=metrics_port)
    config = textwrap.dedent(f"""
        c.JupyterHub.spawner_class = "hubfleet"
        c.JupyterHub.last_activity_interval = 0
        c.ProfileSpawner.profiles_file = {str(tmp / "profiles.yaml")!r}
        c.ProfileSpawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "0"}}
        c.JupyterHub.services.append({service!r})
        c.JupyterHub.load_roles.append({role!r})
        """) + backdate_config(str(REPO))
    hub = new_hub(tmp / "hub", devcluster, chp, config, password="pw").start()
    try:
        yield hub, devcluster, chp, token
    finally:
        hub.stop()
        chp.proc.stop()
        devcluster.proc.stop()


def culls(hub) -> dict:
    return dict(re.findall(r"hubfleet.culler\] cull (\S+): (.*)", hub.log_tail(4000)))


def spawn(hub, users: dict) -> None:
    status, body = hub.api("POST", "/users", json={"usernames": list(users)})
    assert status == 201, body
    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(lambda u: hub.api("POST", f"/users/{u}/server", json=users[u]), users))
    assert all(s in (201, 202) for s, _ in results), results
    for user in users:
        hub.wait_ready(user, timeout=120)
        for _ in range(3):
            # another devcluster on this machine may already serve the pod address the kubelet picked (pod IPs are
            # handed out from 127.0.1.1 on by every devcluster): the hub then sees "ready" before this pod's server
            # is up, or this pod's server cannot listen at all and a restarted pod may get another address
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not own_server_answers(hub, user):
                time.sleep(0.5)
            if own_server_answers(hub, user):
                break
            assert hub.api("DELETE", f"/users/{user}/server")[0] in (202, 204)
            hub.wait_stopped(user, timeout=60)
            assert hub.api("POST", f"/users/{user}/server", json=users[user])[0] in (201, 202)
            hub.wait_ready(user, timeout=120)
        else:
            raise AssertionError(f"{user}'s server never answered its own /api/status")


def own_server_answers(hub, user: str) -> bool:
    r = requests.get(f"{hub.url}/user/{user}/api/status", timeout=10,
                     headers={"Authorization": f"token {hub.admin_token}"})
    try:
        return r.status_code == 200 and "last_activity" in r.json()
    except ValueError:
        return False


def server_api(hub, user: str, method: str, path: str, **kw):
    r = requests.request(method, f"{hub.url}/user/{user}/api{path}", timeout=30,
                         headers={"Authorization": f"token {hub.admin_token}"}, **kw)
    assert r.status_code < 300, f"{method} /user/{user}/api{path}: {r.status_code} {r.text[:500]}"
    return r.json() if r.content else None


async def _execute(hub, user: str, kernel_id: str, code: str) -> None:
    url = f"{hub.url.replace('http', 'ws', 1)}/user/{user}/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {hub.admin_token}"},
                                             connect_timeout=20, request_timeout=30))
    msg = {"header": {"msg_id": uuid.uuid4().hex, "username": user, "session": uuid.uuid4().hex,
                      "msg_type": "execute_request", "version": "5.3"},
           "parent_header": {}, "metadata": {}, "channel": "shell",
           "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}}
    await ws.write_message(json.dumps(msg))
    ws.close()


def start_kernel(hub, user: str, code: str, expect: str) -> str:
    """Start a kernel, run ``code`` in it over its websocket (as JupyterLab does) and wait for ``expect``."""
    kernel = server_api(hub, user, "POST", "/kernels", json={"name": "python3"})
    IOLoop.current().run_sync(lambda: _execute(hub, user, kernel["id"], code), timeout=60)
    state = lambda: server_api(hub, user, "GET", f"/kernels/{kernel['id']}")["execution_state"]  # noqa: E731
    wait_for(f"{user}'s kernel to be {expect}", lambda: state() == expect, timeout=60, interval=0.3,
             seen=lambda: f"state {state()}; hub log:\n{hub.log_tail(20)}")
    return kernel["id"]


def over(hms: str, limit: float) -> bool:
    """Whether a logged duration ``HH:MM:SS`` is at least ``limit`` seconds: what a cull claims. (Not the back-dated
    amount to the second: the sweep reads its clock before it lists the users, so a server back-dated 600 s just
    then reads 09:59.)"""
    h, m, sec = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + sec >= limit


def backdate(hub, users: list[str], seconds: float, started: bool = False) -> None:
    status, body = hub.api("POST", "/test/backdate", json={"users": users, "seconds": seconds, "started": started})
    assert status == 200, body


def test_busy_kernel_spared_idle_culled_and_max_age_wins(env):
    hub, devcluster, chp, token = env
    spawn(hub, {"k-busy": {"profile": "small"}, "k-idle": {"profile": "small"}, "k-old": {"profile": "small"}})
    start_kernel(hub, "k-busy", "import time; time.sleep(600)", "busy")
    start_kernel(hub, "k-idle", "x = 1", "idle")
    start_kernel(hub, "k-old", "import time; time.sleep(600)", "busy")
    backdate(hub, ["k-busy", "k-idle"], 600)
    backdate(hub, ["k-old"], 7200, started=True)  # idle 2 h and started 2 h ago: over the 1 h max_age

    wait_for("the idle and the old server to be culled", lambda: {"k-idle", "k-old"} <= set(culls(hub)),
             timeout=60, interval=0.5, seen=lambda: hub.log_tail(40))
    sweeps_then = hub.log_tail(4000).count("hubfleet.culler] sweep: ")
    wait_for("two more sweeps", lambda: hub.log_tail(4000).count("hubfleet.culler] sweep: ") >= sweeps_then + 2,
             timeout=30, interval=0.5)
    log = hub.log_tail(4000)
    found = culls(hub)
    assert "k-busy" not in found, found
    assert hub.api("GET", "/users/k-busy")[1]["servers"][""]["ready"]
    spared = re.search(r"spare k-busy: spared: 1 busy kernel\(s\), inactive for (\S+) >= 00:05:00 \(profile small\)",
                       log)
    assert spared and over(spared[1], 300), log
    idle = re.fullmatch(r"inactive for (\S+) >= 00:05:00 \(profile small\)", found["k-idle"])
    assert idle and over(idle[1], 300), found
    old = re.fullmatch(r"age (\S+) >= max_age 01:00:00 \(inactive for 00:00:00, 1 busy kernel\(s\), profile small\)",
                       found["k-old"])
    assert old and over(old[1], 3600), found
    assert token not in log

    metrics = requests.get(f"{chp.public_url}/services/{SERVICE}/metrics", timeout=10)
    assert metrics.status_code == 200, metrics.text[:300]
    text = metrics.text
    assert 'hubfleet_culler_culls_total{profile="small",reason="idle"} 1.0' in text
    assert 'hubfleet_culler_culls_total{profile="small",reason="max_age"} 1.0' in text
    assert re.search(r'hubfleet_culler_spared_busy_total\{profile="small"\} [1-9]', text), text
    assert hub.api("DELETE", "/users/k-busy/server")[0] in (202, 204)


def test_default_profile_spawn_is_culled_under_its_profiles_policy(env):
    """REST ``{}`` starts the default profile (gpu, 5 min); the culler's own default policy is 1 h."""
    hub, *_ = env
    spawn(hub, {"d-rest": {}})
    backdate(hub, ["d-rest"], 600)
    wait_for("the default-profile server to be culled", lambda: "d-rest" in culls(hub), timeout=60, interval=0.5,
             seen=lambda: hub.log_tail(40))
    found = re.match(r"inactive for (\S+) >= 00:05:00 \(profile gpu", culls(hub)["d-rest"])
    assert found and over(found[1], 300), culls(hub)  # under gpu's 5 min, not the culler's default 1 h


def test_default_profile_spawn_records_the_profile_the_culler_keys_on(env):
    hub, *_ = env
    spawn(hub, {"d-record": {}})
    model = hub.api("GET", "/users/d-record")[1]["servers"][""]
    try:
        assert model["user_options"].get("profile") == "gpu", model["user_options"]
        backdate(hub, ["d-record"], 600)
        wait_for("the server to be culled", lambda: "d-record" in culls(hub), timeout=60, interval=0.5)
        assert culls(hub)["d-record"].endswith("(profile gpu)"), culls(hub)
    finally:
        hub.api("DELETE", "/users/d-record/server")
