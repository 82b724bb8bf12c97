"""The login page in headless Chromium (Playwright, the apt chromium): the form, the error message, the
"Sign in with ..." buttons, and a full OIDC round trip through oidc-provider-mock's authorize page."""

from __future__ import annotations

from pathlib import Path

import pytest


pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("hub_log_on_failure")]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing (/usr/bin/chromium); run `make install` (make test installs it)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_password_login_error_and_success(hub, browser):
    page = browser.new_context().new_page()
    page.goto(f"{hub.url}/hub/login?next=/hub/home", timeout=30_000)
    assert page.locator("#username_input").is_visible()
    assert page.get_by_role("button", name="Sign in with Mock IdP").is_visible()
    page.fill("#username_input", "alice")
    page.fill("#password_input", "not-alices-password")
    page.click("#login_submit")
    page.wait_for_selector(".login_error", timeout=15_000)
    assert page.inner_text(".login_error") == "Invalid username or password"
    page.fill("#password_input", "alice-pw")
    page.click("#login_submit")
    page.wait_for_url("**/hub/home", timeout=15_000)
    assert "alice" in page.content()
    page.context.close()


def test_oidc_button_round_trip(hub, browser):
    page = browser.new_context().new_page()
    page.goto(f"{hub.url}/hub/login?next=/hub/home", timeout=30_000)
    page.get_by_role("button", name="Sign in with Mock IdP").click()
    page.wait_for_selector('input[name="sub"]', timeout=15_000)  # the provider's authorize page
    page.fill('input[name="sub"]', "olivia")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url("**/hub/home", timeout=15_000)
    assert "olivia" in page.content()
    page.context.close()
