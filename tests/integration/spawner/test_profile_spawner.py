"""ProfileSpawner in a real JupyterHub against the devcluster: demo profiles, group gating (form and REST API),
tamper refusals, quotas, storage across stop/start, named-server PVC deletion, 20 concurrent spawns against a quota
of 5, and a headless-Chromium screenshot of the spawn form."""

from __future__ import annotations

import contextlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import requests

from tests.procs import wait_for

IMG = "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0"
DEMO_FILE = str(resources.files("hubfleet.spawners").joinpath("demo_profiles.yaml"))

HUB_CONFIG = """
c.JupyterHub.spawner_class = "hubfleet"
c.JupyterHub.allow_named_servers = True
c.ProfileSpawner.pvc_name_template = "claim-{{user_server}}"
c.ProfileSpawner.storage_capacity = "1Gi"
{extra}
"""


def hub_config(extra: str) -> str:
    return HUB_CONFIG.format(extra=extra)


def make_users(hub, *names, groups: dict[str, list[str]] | None = None):
    status, body = hub.api("POST", "/users", json={"usernames": list(names)})
    assert status == 201, body
    for group, members in (groups or {}).items():
        status, body = hub.api("POST", f"/groups/{group}", json={"users": members})
        assert status == 201, body


def hub_version(hub) -> tuple[int, int]:
    """(major, minor) of the running hub, from ``GET /hub/api/``."""
    if not hasattr(hub, "version"):
        status, body = hub.api("GET", "/")
        assert status == 200, body
        hub.version = tuple(int(x) for x in re.findall(r"\d+", body["version"])[:2])
    return hub.version


def spawn(hub, user, options=None, server=""):
    """A REST spawn in the running hub's own body shape: ``{"user_options": ...}`` on JupyterHub 6, the options
    themselves on 5.x (which takes the whole body as user_options)."""
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    if options is None:
        return hub.api("POST", path)
    return hub.api("POST", path, json={"user_options": options} if hub_version(hub) >= (6, 0) else options)


def stop(hub, user, server="", remove=False):
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    status, body = hub.api("DELETE", path, json={"remove": True} if remove else None)
    assert status in (202, 204), body
    hub.wait_stopped(user, server)


def pod(devcluster, user, server=""):
    name = f"jupyter-{user}--{server}" if server else f"jupyter-{user}"
    return devcluster.get(f"/api/v1/namespaces/default/pods/{name}")


def user_pods(devcluster, user):
    return devcluster.pods(selector=f"hub.jupyter.org/username={user}")


def assert_hardened(p):
    spec, container = p["spec"], p["spec"]["containers"][0]
    assert spec["securityContext"]["fsGroup"] == 100 and spec["securityContext"]["runAsNonRoot"] is True
    csc = container["securityContext"]
    assert (csc["runAsUser"], csc["runAsGroup"]) == (1000, 100)
    assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    home = next(m for m in container["volumeMounts"] if m["mountPath"] == "/home/jovyan")
    claim = next(v for v in spec["volumes"] if v["name"] == home["name"])["persistentVolumeClaim"]["claimName"]
    assert claim.startswith("claim-")


def stop_all(hub, devcluster):
    """Stop every server (in parallel) so the devcluster shuts down at once instead of after its kill timeout."""
    _, users = hub.api("GET", "/users")
    targets = [(u["name"], name) for u in users for name in (u.get("servers") or {})]
    with ThreadPoolExecutor(max(len(targets), 1)) as pool:
        list(pool.map(lambda t: hub.api("DELETE", f"/users/{t[0]}/servers/{t[1]}" if t[1] else f"/users/{t[0]}/server"),
                      targets))
    wait_for("every pod to go", lambda: devcluster.pods() == [], timeout=60, seen=devcluster.pods)


def form_post(session, hub, data: dict) -> requests.Response:
    return session.post(f"{hub.url}/hub/spawn", data={**data, "_xsrf": session.cookies.get("_xsrf")}, timeout=30,
                        allow_redirects=False)


def test_demo_profiles_gating_quota_and_tampering(start_hub, devcluster, artifacts, tmp_path):
    unqueued = tmp_path / "profiles.yaml"  # the demo's profiles, its GPU profile refusing instead of queueing
    unqueued.write_text(Path(DEMO_FILE).read_text().replace("    queue: true", "    queue: false"))
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles_file = {str(unqueued)!r}"))
    make_users(hub, "alice", "rita", "bob", "carol", "dave", groups={"demo-researchers": ["rita"]})

    # -- each demo profile spawns, and its pod holds the declared resources, security context, volumes, placement
    assert spawn(hub, "alice", {"profile": "small"})[0] in (201, 202)
    assert spawn(hub, "rita", {"profile": "medium", "other_image": IMG})[0] in (201, 202)  # allow-listed
    assert spawn(hub, "bob", {"profile": "gpu"})[0] in (201, 202)
    for user in ("alice", "rita", "bob"):
        hub.wait_ready(user)
    small, medium, gpu = pod(devcluster, "alice"), pod(devcluster, "rita"), pod(devcluster, "bob")
    for p, slug in ((small, "small"), (medium, "medium"), (gpu, "gpu")):
        assert p["metadata"]["labels"]["hubfleet.io/profile"] == slug
        assert p["status"]["phase"] == "Running"
        assert_hardened(p)
    res = small["spec"]["containers"][0]["resources"]
    assert (res["requests"]["cpu"], res["limits"]["cpu"]) == (0.1, 1.0)
    assert small["spec"]["nodeSelector"] == {"hub.jupyter.org/node-purpose": "user"}
    assert small["spec"]["nodeName"].startswith("cpu-")
    assert medium["spec"]["containers"][0]["resources"]["limits"]["cpu"] == 2.0
    assert json.loads(medium["metadata"]["annotations"]["hubfleet.io/groups"]) == ["demo-researchers"]
    assert gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["spec"]["tolerations"]
    assert gpu["spec"]["nodeName"] == "gpu-1"

    # -- group gating and tampering in the REST API: clear error, no pod
    refused = [
        ({"profile": "medium"}, 403, "profile 'medium' is not available to you; choose one of: small, gpu"),
        ({"profile": "gpu-xl"}, 400, "unknown profile 'gpu-xl'; choose one of: small, gpu"),
        ({"profile": "small", "image": "scipy"}, 400, "image 'scipy' is not offered by profile 'small'"),
        ({"profile": "small", "other_image": "docker.io/evil/miner:1"}, 403,
         "profile 'small' does not allow another image"),
        ({"profile": "small", "cpu_limit": "64"}, 400, "unknown option 'cpu_limit'"),
        ({"profile": "small", "kubespawner_override": {"privileged": True}}, 400,
         "unknown option 'kubespawner_override'"),
    ]
    for options, status, message in refused:
        got, body = spawn(hub, "dave", options)
        assert (got, message in str(body)) == (status, True), (options, got, body)
        hub.wait_stopped("dave")
    got, body = spawn(hub, "rita", {"profile": "medium", "other_image": "docker.io/evil/miner:1"}, server="x")
    assert got == 403 and "is not allowed for profile 'medium': it must match" in body["message"], body
    assert user_pods(devcluster, "dave") == [] and len(user_pods(devcluster, "rita")) == 1

    # -- group gating and tampering in the form
    session = hub.login("dave")
    page = session.get(f"{hub.url}/hub/spawn", timeout=30).text
    assert 'id="hf-profile-small"' in page and 'id="hf-profile-gpu"' in page
    assert 'id="hf-profile-medium"' not in page
    for data, message in [
        ({"profile": "medium"}, "profile &#39;medium&#39; is not available to you"),
        ({"profile": "small", "image--small": "__other__", "other_image--small": "evil/x:1"},
         "profile &#39;small&#39; does not allow another image"),
        ({"profile": "small", "cpu_limit": "64"}, "unknown form field &#39;cpu_limit&#39;"),
    ]:
        r = form_post(session, hub, data)
        assert r.status_code in (400, 403) and message in r.text, (data, r.status_code, r.text[-2000:])
    assert user_pods(devcluster, "dave") == []

    # -- quota: gpu may run 2 at once; the third gets a clear error, the form shows it disabled with the reason
    assert spawn(hub, "carol", {"profile": "gpu"})[0] in (201, 202)
    hub.wait_ready("carol")
    got, body = spawn(hub, "dave", {"profile": "gpu"})
    full = "Quota full: at most 2 'gpu' servers may run at once (2 running). Stop one or pick another profile."
    assert (got, body.get("message")) == (403, full), body
    hub.wait_stopped("dave")
    page = session.get(f"{hub.url}/hub/spawn", timeout=30).text
    gpu_card = page[page.index('data-profile="gpu"'):]
    assert re.search(r'value="gpu"[^>]*disabled', gpu_card.split("</label>")[0]), gpu_card[:500]
    assert "Quota full: at most 2 &#39;gpu&#39; servers may run at once (2 running)" in gpu_card
    r = form_post(session, hub, {"profile": "gpu"})
    assert r.status_code == 403 and "Quota full: at most 2" in r.text

    # the screenshot: rita sees all three cards, the GPU one disabled by the full quota
    shot = artifacts / "spawner-form.png"
    screenshot_spawn_form(hub, "rita", shot)
    assert shot.stat().st_size > 10_000

    # stopping one frees the slot
    stop(hub, "carol")
    assert spawn(hub, "dave", {"profile": "gpu"})[0] in (201, 202)
    hub.wait_ready("dave")
    assert pod(devcluster, "dave")["spec"]["nodeName"] == "gpu-1"
    stop_all(hub, devcluster)


@contextlib.contextmanager
def logged_in_page(hub, user, width=1100, height=900):
    """A headless-Chromium page logged in to the hub as ``user``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{hub.url}/hub/login", timeout=30_000)
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", hub.password)
            page.click("input[type=submit], button[type=submit]")
            page.wait_for_load_state()
            yield page
        finally:
            browser.close()


def screenshot_spawn_form(hub, user, path):
    with logged_in_page(hub, user) as page:
        # rita's default server runs; the named-server spawn page shows the same form
        page.goto(f"{hub.url}/hub/spawn/{user}/screenshot", timeout=30_000)
        page.wait_for_selector(".hf-card", timeout=30_000)
        assert page.locator(".hf-card").count() == 3
        assert page.locator("#hf-profile-gpu").is_disabled()
        page.screenshot(path=str(path), full_page=True)


def test_home_survives_stop_start_and_named_server_pvc_is_deleted(start_hub, devcluster):
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles_file = {DEMO_FILE!r}"))
    make_users(hub, "alice")
    assert spawn(hub, "alice", {"profile": "small"})[0] in (201, 202)
    hub.wait_ready("alice")
    auth = {"Authorization": f"token {hub.user_token('alice')}"}
    content = f"written at {time.time()}"
    r = requests.put(f"{hub.url}/user/alice/api/contents/notes.txt", headers=auth, timeout=10,
                     json={"type": "file", "format": "text", "content": content})
    assert r.status_code in (200, 201), r.text
    stop(hub, "alice")
    wait_for("alice's pod to go", lambda: user_pods(devcluster, "alice") == [], 30)
    assert [p["metadata"]["name"] for p in devcluster.pvcs()] == ["claim-alice"], "the home PVC is kept on stop"
    # no user_options: the last choice is reused, and re-validated
    assert spawn(hub, "alice")[0] in (201, 202)
    hub.wait_ready("alice")
    r = requests.get(f"{hub.url}/user/alice/api/contents/notes.txt", headers=auth, timeout=10)
    assert r.status_code == 200 and r.json()["content"] == content, r.text

    assert spawn(hub, "alice", {"profile": "small"}, server="ws1")[0] in (201, 202)
    hub.wait_ready("alice", "ws1")
    ws_pod = pod(devcluster, "alice", "ws1")
    claims = [v["persistentVolumeClaim"]["claimName"] for v in ws_pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["claim-alice--ws1"]
    assert {p["metadata"]["name"] for p in devcluster.pvcs()} == {"claim-alice", "claim-alice--ws1"}
    stop(hub, "alice", "ws1")
    assert {p["metadata"]["name"] for p in devcluster.pvcs()} == {"claim-alice", "claim-alice--ws1"}
    status, body = hub.api("DELETE", "/users/alice/servers/ws1", json={"remove": True})
    assert status in (202, 204), body
    wait_for("the named server's PVC to be deleted (and the home PVC kept)",
             lambda: {p["metadata"]["name"] for p in devcluster.pvcs()} == {"claim-alice"}, 30)
    stop_all(hub, devcluster)


def test_twenty_concurrent_spawns_against_a_quota_of_five_start_exactly_five(start_hub, devcluster):
    profiles = [{"slug": "tiny", "display_name": "Tiny", "image": IMG, "quota": 5,
                 "cpu": {"guarantee": 0.01, "limit": 1}, "memory": {"guarantee": "64M", "limit": "1G"}}]
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles = {profiles!r}\nc.JupyterHub.concurrent_spawn_limit = 0"))
    users = [f"user{i:02d}" for i in range(20)]
    make_users(hub, *users)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda u: spawn(hub, u, {"profile": "tiny"}), users))
    started = [u for u, (status, _) in zip(users, results) if status in (201, 202)]
    refused = [body for status, body in results if status == 403]
    assert len(started) == 5 and len(refused) == 15, results
    assert all(b["message"].startswith("Quota full: at most 5 'tiny' servers may run at once") for b in refused)
    for user in started:
        hub.wait_ready(user, timeout=90)
    running = devcluster.pods(selector="hubfleet.io/profile=tiny")
    assert sorted(p["metadata"]["labels"]["hubfleet.io/user"] for p in running) == sorted(started)
    # a stop frees exactly one slot
    stop(hub, started[0])
    waiting = [u for u in users if u not in started]
    assert spawn(hub, waiting[0], {"profile": "tiny"})[0] in (201, 202)
    assert spawn(hub, waiting[1], {"profile": "tiny"})[0] == 403
    stop_all(hub, devcluster)
