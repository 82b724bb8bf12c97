"""What a user's server gets from the culler's busy-kernel check, on a real hub: a user server that records every
header it receives and replays each credential against another user's real server and the hub API
(header_thief.py). It must get nothing beyond its own server, and its "busy" answers must not keep it past max_age.

Servers are local processes (SimpleLocalProcessSpawner): the thief for ``mallory``, a real jupyterhub-singleuser for
``victim``. The culler is the managed service ``culler_service()`` builds, sweeping every 2 s.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from hubfleet.config.culler import culler_service
from tests.conftest import new_hub, start_chp
from tests.integration.culler.backdate import hub_config as backdate_config
from tests.procs import REPO, wait_for

THIEF = Path(__file__).with_name("header_thief.py")
POLICIES = "default: {timeout: 1h, max_age: 4h, spare_busy_kernels: true}\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("culler-probe-token")
    chp = start_chp(tmp / "chp")
    (tmp / "policies.yaml").write_text(POLICIES)
    record = tmp / "thief.jsonl"
    token = secrets.token_hex(16)
    service, role = culler_service(timeout=3600, policies_file=str(tmp / "policies.yaml"), cull_every=2,
                                   api_token=token, name="culler", server_url=chp.public_url)
    config = textwrap.dedent(f"""
        c.JupyterHub.spawner_class = "simple"
        c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp / "home-{username}")!r}
        c.Spawner.args = ["--allow-root"]
        c.Spawner.default_url = "/tree"
        c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "0"}}
        c.JupyterHub.last_activity_interval = 0

        def _mallory_runs_the_thief(spawner):
            import os
            os.makedirs(spawner.home_dir, exist_ok=True)
            if spawner.user.name == "mallory":
                spawner.cmd = [{sys.executable!r}, {str(THIEF)!r}]
                spawner.environment = {{**spawner.environment, "THIEF_RECORD": {str(record)!r},
                                        "THIEF_PROXY": {chp.public_url!r}, "THIEF_VICTIM": "victim"}}

        c.Spawner.pre_spawn_hook = _mallory_runs_the_thief
        c.JupyterHub.services.append({service!r})
        c.JupyterHub.load_roles.append({role!r})
        """) + backdate_config(str(REPO))
    hub = new_hub(tmp / "hub", None, chp, config, password="pw").start()
    try:
        yield hub, token, record
    finally:
        hub.stop()
        chp.proc.stop()


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_probe_gives_a_user_server_nothing_beyond_itself_and_busy_ends_at_max_age(env):
    hub, culler_token, record = env
    status, body = hub.api("POST", "/users", json={"usernames": ["mallory", "victim"]})
    assert status == 201, body
    for user in ("victim", "mallory"):
        assert hub.api("POST", f"/users/{user}/server")[0] in (201, 202)
        hub.wait_ready(user, timeout=60)
    victim = requests.get(f"{hub.url}/user/victim/api/status", timeout=10,
                          headers={"Authorization": f"token {hub.admin_token}"})
    assert victim.status_code == 200, victim.text[:300]  # the victim's server is real and answers its owner

    # mallory idle for 2 h (over the 1 h timeout, under the 4 h max_age): the culler asks her server first
    assert hub.api("POST", "/test/backdate", json={"users": ["mallory"], "seconds": 7200})[0] == 200
    wait_for("the culler to spare mallory's 'busy' server", lambda: "spare mallory: spared: 1 busy kernel(s)"
             in hub.log_tail(400), timeout=60, interval=0.3, seen=lambda: hub.log_tail(40))
    probes = [r for r in records(record) if r["path"].endswith(("/api/status", "/api/kernels"))]
    assert probes, records(record)
    print("\nheaders the user's server saw from the culler:")
    for r in probes:
        print(f"  {r['method']} {r['path']}: {json.dumps(r['headers'])}")
    replayed = next(r["replayed"] for r in probes if "replayed" in r)
    print("what it got by replaying them:")
    for what, answer in replayed.items():
        print(f"  {what}: {answer['status']} {answer['body'][:120]!r}")

    auth = {k.lower(): v for k, v in probes[0]["headers"].items()}["authorization"]  # the proxy lower-cases
    assert culler_token not in json.dumps(records(record)), "the culler's own token reached a user's server"
    assert re.fullmatch(r"token \S+", auth), auth
    stolen = auth.split()[1]
    # nothing beyond her own server: another user's server, the hub's user list, tokens, stopping servers
    for what in ("GET /user/victim/api/status", "GET /user/victim/api/kernels", "GET /hub/api/users",
                 "POST /hub/api/users/mallory/tokens", "POST /hub/api/users/victim/tokens",
                 "DELETE /hub/api/users/victim/server"):
        assert replayed[what]["status"] == 403, (what, replayed[what])
    assert replayed["GET /hub/api/users/victim"]["status"] in (403, 404), replayed["GET /hub/api/users/victim"]
    me = json.loads(replayed["GET /hub/api/user"]["body"])  # it only tells whose it is: mallory's own
    assert me["name"] == "mallory" and me.get("kind") == "user" and not me.get("admin"), me
    assert "access:servers!server=mallory/" in me["scopes"], me
    assert all(s.endswith(("!user=mallory", "!server=mallory/")) for s in me["scopes"]), me  # herself only
    assert hub.api("GET", "/users/victim")[1]["servers"][""]["ready"]

    # the probe's token is deleted after the check, and was good for under a minute anyway
    wait_for("the probe token to be deleted", lambda: requests.get(
        f"{hub.url}/hub/api/user", headers={"Authorization": f"token {stolen}"}, timeout=10).status_code == 403,
        timeout=30, interval=0.3)
    tokens = hub.api("GET", "/users/mallory/tokens")[1]["api_tokens"]
    assert not [t for t in tokens if "hubfleet-culler" in (t.get("note") or "")], tokens

    # "busy" at every sweep does not keep the server past max_age
    assert hub.api("POST", "/test/backdate", json={"users": ["mallory"], "seconds": 5 * 3600,
                                                  "started": True})[0] == 200
    wait_for("mallory's server to be culled at max_age", lambda: re.search(
        r"cull mallory: age 0[45]:\d\d:\d\d >= max_age 04:00:00 \(inactive for 00:00:00, 1 busy kernel\(s\)",
        hub.log_tail(400)), timeout=60, interval=0.3, seen=lambda: hub.log_tail(40))
    hub.wait_stopped("mallory", timeout=60)
    assert culler_token not in hub.log_tail(2000)
    assert hub.api("DELETE", "/users/victim/server")[0] in (202, 204)
