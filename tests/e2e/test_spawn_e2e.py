"""End to end: a real hub + configurable-http-proxy + devcluster, logging in over HTTP and spawning through
KubeSpawner; the singleuser server is a real jupyterhub-singleuser process on its pod IP."""

import time

import requests


def test_login_spawn_file_survives_restart(start_hub, devcluster):
    hub = start_hub()
    session = hub.login("alice")
    # spawn as the logged-in user (the browser path: POST /hub/spawn)
    r = session.post(f"{hub.url}/hub/spawn/alice", data={"_xsrf": session.cookies.get("_xsrf")}, timeout=30)
    assert r.status_code in (200, 302), r.text[:300]
    hub.wait_ready("alice")

    pods = devcluster.pods(selector="component=singleuser-server")
    assert [p["metadata"]["name"] for p in pods] == ["jupyter-alice"]
    pod_ip = pods[0]["status"]["podIP"]
    assert pod_ip.startswith("127.0.") and pod_ip != "127.0.0.1"

    token = hub.user_token("alice")
    auth = {"Authorization": f"token {token}"}
    r = requests.get(f"{hub.url}/user/alice/api/status", headers=auth, timeout=10)
    assert r.status_code == 200, r.text

    content = f"written at {time.time()}"
    r = requests.put(f"{hub.url}/user/alice/api/contents/notes.txt", headers=auth, timeout=10,
                     json={"type": "file", "format": "text", "content": content})
    assert r.status_code in (200, 201), r.text

    status, _ = hub.api("DELETE", "/users/alice/server")
    assert status in (202, 204)
    hub.wait_stopped("alice")
    deadline = time.monotonic() + 20
    while devcluster.pods() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert devcluster.pods() == [], "the pod is gone after stop"
    assert [p["metadata"]["name"] for p in devcluster.pvcs()] == ["claim-alice"], "the home PVC is kept"

    status, _ = hub.api("POST", "/users/alice/server")
    assert status in (201, 202)
    hub.wait_ready("alice")
    r = requests.get(f"{hub.url}/user/alice/api/contents/notes.txt", headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == content
