"""Headless Chromium walks the README path on `hubfleet-demo`: log in, pick a profile, see JupyterLab load.
The screenshot of JupyterLab is kept in test-artifacts/demo-jupyterlab.png."""

import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.demo_driver import Demo

pytestmark = pytest.mark.stack_independent  # `make demo` runs on the current stack only; the hub stack has its own e2e

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def test_browser_login_profile_jupyterlab(tmp_path, artifacts):
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing (/usr/bin/chromium): `make test` apt-installs it when run as root")
    demo = Demo(tmp_path / "demo-state").start()
    try:
        password = demo.logins()["bob"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{demo.url}/hub/login")
            page.fill("#username_input", "bob")
            page.fill("#password_input", password)
            t0 = time.monotonic()
            page.click("#login_submit")
            # the spawn form: profile cards; pick "small" and start
            page.wait_for_selector('input[name="profile"][value="small"]', timeout=30_000)
            page.screenshot(path=str(artifacts / "demo-spawn-form.png"), full_page=True)
            page.check('input[name="profile"][value="small"]')
            page.click('#spawn_form input[type="submit"], #spawn_form button[type="submit"]')
            page.wait_for_selector("#jp-main-dock-panel, .jp-LabShell", timeout=90_000)
            page.wait_for_selector(".jp-Launcher-section", timeout=60_000)  # the launcher has rendered
            elapsed = time.monotonic() - t0
            shot = artifacts / "demo-jupyterlab.png"
            page.screenshot(path=str(shot))
            assert "/user/bob/lab" in page.url
            browser.close()
        print(f"browser: login -> JupyterLab rendered in {elapsed:.1f}s; screenshot {shot}")
        assert shot.stat().st_size > 10_000
    finally:
        demo.stop()
