"""hubfleet's culler as a hub-managed service of a real JupyterHub with ProfileSpawner servers on the devcluster.

Profiles ``gpu`` (idle timeout 60 s) and ``small`` (1 h). Servers are made idle by back-dating ``last_activity``
inside the hub (backdate.py says why not in sqlite from outside). The culler runs from ``culler_service()``'s
entries with its least-privilege role and a 2 s sweep.
"""

from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from hubfleet.config.culler import culler_service
from tests.integration.culler.backdate import hub_config as backdate_config
from tests.procs import REPO, wait_for

PROFILES = [{"slug": "small", "display_name": "Small", "default": True},
            {"slug": "gpu", "display_name": "GPU"}]
POLICIES = "profiles:\n  gpu: {timeout: 60}\n  small: {timeout: 1h}\n"


def hub_log(hub):
    return lambda: f"hub log:\n{hub.log_tail(40)}"


def sweeps(hub) -> int:
    return len(re.findall(r"hubfleet.culler\] sweep: ", hub.log_tail(2000)))


def test_per_profile_culling_on_a_real_hub(start_hub, devcluster, tmp_path):
    policies = tmp_path / "culler-policies.yaml"
    policies.write_text(POLICIES)
    token = secrets.token_hex(16)
    service, role = culler_service(timeout=3600, policies_file=str(policies), cull_every=2, api_token=token)
    hub = start_hub(f"""
c.JupyterHub.spawner_class = "hubfleet"
c.JupyterHub.last_activity_interval = 0
c.ProfileSpawner.profiles = {PROFILES!r}
c.ProfileSpawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "0"}}  # the server must not post activity itself
c.JupyterHub.services.append({service!r})
c.JupyterHub.load_roles.append({role!r})
{backdate_config(str(REPO))}
""")
    servers = {"gpu-idle": "gpu", "small-idle": "small", "gpu-busy": "gpu"}
    status, body = hub.api("POST", "/users", json={"usernames": list(servers)})
    assert status == 201, body
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda u: hub.api("POST", f"/users/{u}/server", json={"profile": servers[u]}),
                                servers))
    assert all(s in (201, 202) for s, _ in results), results
    for user, profile in servers.items():
        model = hub.wait_ready(user, timeout=90)
        assert model["user_options"] == {"profile": profile}
    pods = {p["metadata"]["labels"]["hubfleet.io/user"]: p["metadata"]["labels"]["hubfleet.io/profile"]
            for p in devcluster.pods()}
    assert pods == servers

    # gpu-busy: 50 s idle (under gpu's 60 s, so no sweep can take it meanwhile), then it shows activity now
    status, body = hub.api("POST", "/test/backdate", json={"users": ["gpu-busy"], "seconds": 50})
    assert status == 200, body
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    status, body = hub.api("POST", "/users/gpu-busy/activity",
                           json={"last_activity": now, "servers": {"": {"last_activity": now}}})
    assert status == 200, body
    # the other two: 10 minutes idle
    status, body = hub.api("POST", "/test/backdate", json={"users": ["gpu-idle", "small-idle"], "seconds": 600})
    assert status == 200, body
    t0, n0 = time.monotonic(), sweeps(hub)
    wait_for("the idle gpu server to be culled",
             lambda: "" not in (hub.api("GET", "/users/gpu-idle")[1].get("servers") or {}), 30, seen=hub_log(hub))
    culled_after, sweeps_to_cull = time.monotonic() - t0, sweeps(hub) - n0
    n = sweeps(hub)
    wait_for("two more sweeps", lambda: sweeps(hub) >= n + 2, 20, seen=hub_log(hub))

    for user in ("small-idle", "gpu-busy"):
        status, model = hub.api("GET", f"/users/{user}")
        assert model["servers"][""]["ready"], f"{user}'s server was culled: {model}"
    assert hub.api("GET", "/users/gpu-idle")[1]["servers"] == {}
    wait_for("the culled server's pod to go", lambda: {p["metadata"]["labels"]["hubfleet.io/user"]
                                                      for p in devcluster.pods()} == {"small-idle", "gpu-busy"},
             30, seen=hub_log(hub))
    log = hub.log_tail(2000)
    culls = re.findall(r"hubfleet.culler\] cull (\S+): (.*)", log)
    assert len(culls) == 1 and re.fullmatch(r"inactive for \S+ >= 00:01:00 \(profile gpu\)", culls[0][1]) and \
        culls[0][0] == "gpu-idle", culls
    assert token not in log
    # the sweep running at back-dating may have read the users before; the next one culls (counted in sweeps, not
    # seconds: on a loaded machine a sweep of a real hub takes longer than its 2 s interval)
    assert sweeps_to_cull <= 2, f"culled {sweeps_to_cull} sweeps ({culled_after:.1f}s) after back-dating"

    # the culler's token can do what its role says, and nothing more
    assert hub.api("GET", "/users?state=ready", token=token)[0] == 200
    for method, path, body in [("POST", "/users", {"usernames": ["mallory"]}),
                               ("POST", "/users/mallory2", None),
                               ("POST", "/users/gpu-idle/server", {"profile": "gpu"}),
                               ("PATCH", "/users/small-idle", {"admin": True}),
                               ("DELETE", "/users/gpu-idle", None),
                               ("POST", "/users/small-idle/tokens", {"note": "steal"}),
                               ("GET", "/services", None)]:
        status, resp = hub.api(method, path, token=token, json=body)
        assert status in (403, 404), f"{method} {path} with the culler's token answered {status}: {resp}"
        assert status == 403 or method == "GET", (method, path, status, resp)
    assert hub.api("GET", "/users/mallory")[0] == 404
    assert hub.api("GET", "/users/small-idle")[1]["admin"] is False

    # stop the servers we left, then the hub: with the managed culler it must not hang on the service's shutdown
    for user in ("small-idle", "gpu-busy"):
        assert hub.api("DELETE", f"/users/{user}/server")[0] in (202, 204)
    t0 = time.monotonic()
    hub.stop()
    took = time.monotonic() - t0
    assert took < 10, f"hub shutdown took {took:.1f}s with the culler service"
