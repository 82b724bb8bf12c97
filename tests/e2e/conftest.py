"""The admin page's fleet, shared by its tests and the Grafana dashboard's: a real hub with ProfileSpawner on the
devcluster and the admin page as a hub-managed service behind the proxy. Alice runs a small server whose second
container ("noisy") writes many lines, then a tick every 0.2 s with, every tenth tick, HTML, bytes that are not UTF-8,
a carriage return and a 200,000-character line; Bob runs a GPU server. The culler runs too, its policy warning every GPU
server 10 s after its start of a stop at its maximum age of one day (the admin page's Culler column shows that). The
demo's GPU profile queues with a quota of one server here: Carol and Dave wait in its queue (the admin page's Queue)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import new_hub, start_chp, start_devcluster
from tests.procs import free_port

DEMO_FILE = str(resources.files("hubfleet.spawners").joinpath("demo_profiles.yaml"))
PAGE = "/services/hubfleet-admin-page/"
EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"
NOISY = r"""
import sys, time
out = sys.stdout.buffer
for i in range(20000):
    out.write(b"filler %d\n" % i)
for i in range(3000):
    if i % 10 == 0:
        out.write(b"EVIL <script>alert('x')</script><img src=x onerror=alert(1)>\n")
        out.write(b"BYTES \xff\xfe\xc3 not utf-8\n")
        out.write(b"CR \rdata: injected\n")
        out.write(b"HUGE " + b"y" * 200000 + b"\n")
    out.write(b"tick %d\n" % i)
    out.flush()
    time.sleep(0.2)
"""

CONFIG = """
import json
from hubfleet.config.adminpage import admin_page_service
from hubfleet.config.culler import culler_service
from hubfleet.config.queue import enable_queue
c.JupyterHub.spawner_class = "hubfleet"
c.ProfileSpawner.profiles_file = {demo!r}
enable_queue(c)
c.ProfileSpawner.queue_cull_policies_file = {policies!r}
c.ProfileSpawner.storage_capacity = "1Gi"
c.ProfileSpawner.extra_containers = [{{"name": "noisy", "image": "python:3.12",
                                      "command": ["python3", "-u", "-c", {noisy!r}],
                                      "securityContext": {{"runAsUser": 1000, "runAsGroup": 100,
                                                           "allowPrivilegeEscalation": False,
                                                           "capabilities": {{"drop": ["ALL"]}}}}}}]
culler, culler_role = culler_service(timeout=3600, policies_file={policies!r}, cull_every=2,
                                     metrics_port={culler_port})
c.JupyterHub.services.append(culler)
c.JupyterHub.load_roles.append(culler_role)
page = admin_page_service(port={port}, db_url=c.JupyterHub.db_url, viewer_groups=["support"],
                          culler_url="http://127.0.0.1:{culler_port}/services/hubfleet-culler/state")
c.JupyterHub.services.append(page.service)
c.JupyterHub.load_roles.extend(page.roles)
c.JupyterHub.custom_scopes = page.custom_scopes
"""
POLICIES = "profiles:\n  gpu: {never: true, max_age: 86400, warn_before: 86390}\n"


@pytest.fixture(scope="package")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("adminpage")
    dc = start_devcluster(root / "devcluster")
    chp = start_chp(root / "chp")
    hub = None
    try:
        policies = root / "culler-policies.yaml"
        policies.write_text(POLICIES)
        demo = yaml.safe_load(Path(DEMO_FILE).read_text())
        for profile in demo["profiles"]:
            if profile["slug"] == "gpu":
                profile["quota"] = {"max_servers": 1}  # bob's server fills it: the next GPU spawns queue
        (root / "profiles.yaml").write_text(yaml.safe_dump(demo))
        hub = new_hub(root / "hub", dc, chp, CONFIG.format(demo=str(root / "profiles.yaml"), noisy=NOISY,
                                                           port=free_port(),
                                                           policies=str(policies), culler_port=free_port()))
        hub.start()
        for name in ("alice", "bob", "sam", "carol", "dave"):
            hub.ensure_user(name)
        status, body = hub.api("POST", "/groups/support/users", json={"users": ["sam"]})  # the role made it
        assert status == 200, body
        for user, profile in (("alice", "small"), ("bob", "gpu")):
            status, body = hub.api("POST", f"/users/{user}/server", json={"user_options": {"profile": profile}}
                                   if _jh_major(hub) >= 6 else {"profile": profile})
            assert status in (201, 202), body
        for user in ("alice", "bob"):
            hub.wait_ready(user, timeout=90)
        for user in ("carol", "dave"):  # the GPU quota is full: they join its queue (429), no server
            status, body = hub.api("POST", f"/users/{user}/server", json={"user_options": {"profile": "gpu"}}
                                   if _jh_major(hub) >= 6 else {"profile": "gpu"})
            assert status == 429 and "Queued" in str(body), (user, status, body)
        yield hub, dc
    except BaseException:
        if hub is not None:
            print("--- hub log ---\n" + hub.log_tail(80))
        print("--- devcluster ---\n" + dc.describe())
        raise
    finally:
        if hub is not None:
            hub.stop()
        chp.proc.stop()
        dc.proc.stop()


def _jh_major(hub) -> int:
    return int(requests.get(hub.url + "/hub/api/", timeout=10).json()["version"].split(".")[0])
