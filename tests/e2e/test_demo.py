"""The README contract: `make demo` starts the embedded default; a person logs in, picks a profile and lands in
JupyterLab; Ctrl-C stops everything with no orphan processes; a re-run keeps users' files."""

import json
import os
import subprocess

import pytest
import requests

from tests.conftest import devcluster_token
from tests.e2e.demo_driver import Demo, login, spawn_and_open_lab

pytestmark = pytest.mark.stack_independent  # `make demo` runs on the current stack only; the hub stack has its own e2e


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_demo_login_profile_lab_ctrl_c_and_rerun_keeps_files(tmp_path):
    state = tmp_path / "demo-state"
    demo = Demo(state).start()
    try:
        logins = demo.logins()
        assert set(logins) == {"admin", "alice", "bob"}, demo.output()
        s = login(demo.url, "bob", logins["bob"])
        # bob is in demo-researchers: the form offers him the restricted "medium" profile
        form = s.get(f"{demo.url}/hub/spawn/bob", timeout=30).text
        assert 'value="medium"' in form and 'value="small"' in form
        # alice is not: she does not see it
        s_alice = login(demo.url, "alice", logins["alice"])
        assert 'value="medium"' not in s_alice.get(f"{demo.url}/hub/spawn/alice", timeout=30).text
        # wrong password is refused
        r = requests.post(f"{demo.url}/hub/login", data={"username": "bob", "password": "nope"}, timeout=30,
                          allow_redirects=False)
        assert r.status_code != 302

        seconds = spawn_and_open_lab(s, demo.url, "bob", "small")
        print(f"bob: spawn form -> JupyterLab loaded in {seconds:.2f}s")
        # the pod was placed through hubfleet's scheduler extender (the devcluster binds such pods only through it)
        dc_info = json.loads((state / "devcluster" / "devcluster.json").read_text())
        dc_url = dc_info["url"]
        dc_auth = {"Authorization": f"Bearer {devcluster_token(state / 'devcluster' / 'kubeconfig')}"}
        pod = requests.get(f"{dc_url}/api/v1/namespaces/default/pods/jupyter-bob", headers=dc_auth, verify=dc_info["ca"], timeout=10).json()
        assert pod["spec"]["schedulerName"] == "hubfleet-scheduler" and pod["spec"]["nodeName"].startswith("cpu-")
        assert pod["metadata"]["labels"]["hubfleet.io/profile"] == "small"
        # the hardened security context is in force: bob's notebook runs as uid 1000 in /home/jovyan (his PVC)
        log = requests.get(f"{dc_url}/api/v1/namespaces/default/pods/jupyter-bob/log", headers=dc_auth,
                           verify=dc_info["ca"], timeout=10).text
        assert "Serving notebooks from local directory: /home/jovyan" in log, log[-2000:]
        if os.geteuid() == 0:  # the devcluster enforces users only as root (CI)
            uids = subprocess.run(["pgrep", "-u", "1000", "-f", "jupyterhub-singleuser"], capture_output=True,
                                  text=True).stdout.split()
            assert uids, "no jupyterhub-singleuser process runs as uid 1000"
        # alice's GPU server goes to the GPU node, through the extender too
        spawn_and_open_lab(s_alice, demo.url, "alice", "gpu")
        pod = requests.get(f"{dc_url}/api/v1/namespaces/default/pods/jupyter-alice", headers=dc_auth, verify=dc_info["ca"], timeout=10).json()
        assert pod["spec"]["nodeName"] == "gpu-1"
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)
        # the idle culler runs as a hub-managed service
        assert "Starting managed service hubfleet-culler" in demo.log_tail("hub", 100_000)  # whole log: polls fill it
        xsrf = s.cookies.get("_xsrf", path="/user/bob/") or ""
        r = s.put(f"{demo.url}/user/bob/api/contents/kept.txt", json={"type": "file", "format": "text",
                                                                      "content": "still here"},
                  headers={"X-XSRFToken": xsrf}, timeout=30)
        assert r.status_code in (200, 201), r.text
    finally:
        assert demo.stop() == 0, demo.output()[-2000:]
    # no orphans: nothing of this demo (hub, proxy, devcluster, singleuser servers) is still running
    assert _processes_mentioning(str(state)) == []

    demo2 = Demo(state).start()
    try:
        logins2 = demo2.logins()
        assert logins2 == logins, "re-running keeps the accounts"
        s = login(demo2.url, "bob", logins2["bob"])
        spawn_and_open_lab(s, demo2.url, "bob", "small")
        r = s.get(f"{demo2.url}/user/bob/api/contents/kept.txt", timeout=30)
        assert r.status_code == 200 and r.json()["content"] == "still here"
    finally:
        demo2.stop()
    assert _processes_mentioning(str(state)) == []
