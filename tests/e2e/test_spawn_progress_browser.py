"""What a person reads while a spawn waits or fails: headless Chromium on the spawn-pending page of a real hub with
ProfileSpawner on the devcluster. Three spawns that do not start (a GPU nobody has free, an image that cannot be
pulled, a server killed for memory), each kept as a screenshot in test-artifacts/, and what the hub kept of them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.procs import wait_for

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]

PROFILES = """
c.JupyterHub.spawner_class = "hubfleet"
c.ProfileSpawner.start_timeout = 12
c.ProfileSpawner.http_timeout = 10
c.ProfileSpawner.profiles = [
    {"slug": "gpu", "display_name": "GPU", "gpu": {"count": 4}, "access": {"users": ["gina"]}},
    {"slug": "broken-image", "display_name": "Broken image", "image": "registry.example.org/lab/no-such-notebook:1.0",
     "access": {"users": ["ivan"]}},
    {"slug": "small", "display_name": "Small", "memory": {"limit": "256M"}, "access": {"users": ["olga"]},
     "kubespawner_override": {"cmd": ["python3", "-c",
        "import sys; print('loading the data set', flush=True); b = bytearray(1024 ** 3); print('never')"]}},
    {"slug": "large", "display_name": "Large", "memory": {"limit": "4G"}, "access": {"users": ["olga"]}},
]
"""


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing (/usr/bin/chromium): `make test` apt-installs it when run as root")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def _log_in(browser, hub, user):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_load_state()
    return page


def _wait_text(page, selector: str, text: str, timeout: float = 60):
    """Until the element's text contains ``text``; the failure says what the page showed."""
    try:
        page.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                               arg=[selector, text], timeout=timeout * 1000)
    except Exception as e:
        shown = page.evaluate("sel => document.querySelector(sel)?.innerText", selector)
        raise AssertionError(f"waited {timeout}s for {text!r} in {selector}; it shows: {shown!r}") from e


def _kept_failures(hub, user):
    db = sqlite3.connect(hub.state / "jupyterhub.sqlite")
    try:
        rows = db.execute("SELECT reason, events, logs FROM hubfleet_spawn_failures WHERE user = ?", (user,)).fetchall()
    finally:
        db.close()
    return [(r, json.loads(e), json.loads(lg)) for r, e, lg in rows]


def _wait_kept(hub, user, timeout=30):
    return wait_for(f"a failure kept for {user}", lambda: _kept_failures(hub, user), timeout=timeout, interval=0.3,
                    seen=lambda: hub.log_tail(30))


def test_three_failing_spawns_as_the_user_reads_them(start_hub, devcluster, browser, artifacts):
    hub = start_hub(PROFILES)
    devcluster.set_faults(autoscaler="scale-up")

    # 1. a GPU nobody has free: a wait in plain words (not a failure), the cluster autoscaler adding a node
    page = _log_in(browser, hub, "gina")
    page.goto(f"{hub.url}/hub/spawn/gina")
    page.evaluate("document.querySelector('#progress-details').open = true")
    _wait_text(page, "#progress-log", "waiting for a GPU node")
    _wait_text(page, "#progress-log", "A new node is being added to the cluster")
    log = page.inner_text("#progress-log")
    assert "Insufficient nvidia.com/gpu" not in log and "0/4 nodes are available" not in log, log
    assert "[waiting for a node]" in log
    assert "bg-danger" not in (page.get_attribute("#progress-bar", "class") or ""), "a wait is not a failure"
    page.screenshot(path=str(artifacts / "spawn-progress-gpu-wait.png"), full_page=True)
    _wait_text(page, "#progress-message", "Spawn failed:", timeout=60)
    # the autoscaler's node did not come: that is what the error page says
    assert ("A new node was being added for your server but was not ready in time"
            in page.inner_text("#progress-message")), page.inner_text("#progress-message")
    page.screenshot(path=str(artifacts / "spawn-failed-gpu-timeout.png"), full_page=True)

    # 2. an image that cannot be pulled: the devcluster's kubelet fails the pull as a kubelet does (ErrImagePull,
    # then ImagePullBackOff, retried); the page says so while Kubernetes retries, and the spawn ends at start_timeout
    devcluster.set_faults(autoscaler="")
    page = _log_in(browser, hub, "ivan")
    started = time.monotonic()
    page.goto(f"{hub.url}/hub/spawn/ivan")
    page.evaluate("document.querySelector('#progress-details').open = true")
    _wait_text(page, "#progress-log", "[fetching the image] The image registry.example.org/lab/no-such-notebook:1.0 "
               "cannot be fetched; Kubernetes keeps retrying")
    _wait_text(page, "#progress-message", "Spawn failed:", timeout=60)
    took = time.monotonic() - started
    message = page.inner_text("#progress-message")
    assert "The image registry.example.org/lab/no-such-notebook:1.0 cannot be fetched" in message, message
    assert "pick another image, or ask your administrator" in message
    assert took < 12 + 15, f"the spawn should end at its start_timeout (12 s), took {took:.0f} s"
    page.screenshot(path=str(artifacts / "spawn-failed-image-pull.png"), full_page=True)

    # 3. killed for memory: the profile's limit named, the larger profile proposed, the log kept
    page = _log_in(browser, hub, "olga")
    page.goto(f"{hub.url}/hub/spawn/olga?profile=small")
    _wait_text(page, "#progress-message", "Spawn failed:", timeout=60)
    message = page.inner_text("#progress-message")
    assert ("Your server used more than its 256 MiB memory limit while starting; pick the Large profile"
            in message), message
    page.screenshot(path=str(artifacts / "spawn-failed-oom.png"), full_page=True)

    kept = _wait_kept(hub, "olga")
    reason, events, logs = kept[0]
    assert reason.startswith("Your server used more than its 256 MiB memory limit")
    assert any(e["reason"] == "BackOff" for e in events), events
    assert any("loading the data set" in line for line in logs.get("notebook", [])), logs
    reason, events, logs = _wait_kept(hub, "ivan")[0]
    assert any("Failed to pull image" in e["message"] for e in events), events
    assert any(e["reason"] == "BackOff" and e["message"].startswith("Back-off pulling image") for e in events), events
    assert _wait_kept(hub, "gina")[0][0].startswith("A new node was being added")
