"""The self-service pages in headless Chromium, through the composite (``hubfleet`` with a ``local`` backend):
sign-up -> approval by an admin -> first login -> password change -> TOTP set-up -> login with the code.
Screenshots go to test-artifacts/signup-*.png."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hubfleet.authenticators.local import hash_password, write_users_file

from . import servers as S
from .signup_kit import code

pytestmark = [pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def composite_hub(auth_tmp):
    tmp = auth_tmp / "signup-browser"
    users = tmp / "users.yaml"
    write_users_file(users, {"users": {"root": {"password_hash": hash_password("root-password-1", rounds=4),
                                                "admin": True}}})
    entry = {"kind": "local", "users_file": str(users), "bcrypt_rounds": 4, "enable_signup": True,
             "allow_2fa": True, "minimum_password_length": 10, "check_common_password": True}
    hub = S.start_hub(tmp, textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet"
        c.HubfleetAuthenticator.allow_all = True
        c.HubfleetAuthenticator.backends = [{entry!r}]
        """), name="hub-signup-browser")
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing (/usr/bin/chromium); run `make install`", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _login(page, url, name, password, otp=""):
    page.goto(f"{url}/hub/login?next=/hub/home", timeout=30_000)
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    if otp:
        page.fill("#otp_input", otp)
    page.click("#login_submit")


def _sign_up(page, password: str, answer: str) -> str:
    """Submit the sign-up form with ``password`` twice; the text of the ``answer`` element it shows."""
    page.fill("#password_input", password)
    page.fill("#password2_input", password)
    page.click("#signup_submit")
    page.wait_for_selector(answer, timeout=15_000)
    return page.inner_text(answer)


def test_signup_approval_first_login_password_change_totp(composite_hub, browser, artifacts):
    url, name = composite_hub.url, "newton"
    shot = lambda page, n, what: page.screenshot(path=str(artifacts / f"signup-{n}-{what}.png"), full_page=True)  # noqa: E731
    user = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    try:
        user.goto(f"{url}/hub/login", timeout=30_000)
        assert user.locator("#otp_input").is_visible()
        shot(user, 1, "login-page")
        user.click("#signup_link")
        user.wait_for_selector("#signup_form", timeout=15_000)
        user.fill("#username_input", name)
        assert "at least 10 characters" in _sign_up(user, "password", "#account_error")
        shot(user, 2, "refused-password")
        assert "waits for an administrator's approval" in _sign_up(user, "apple-tree-falls", "#account_message")
        shot(user, 3, "waiting-for-approval")

        admin = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
        _login(admin, url, "root", "root-password-1")
        admin.wait_for_url("**/hub/home", timeout=15_000)
        admin.goto(f"{url}/hub/authorize", timeout=30_000)
        shot(admin, 4, "admin-pending")
        admin.click(f"#approve-{name}")
        admin.wait_for_selector("#account_message", timeout=15_000)
        assert f"{name}: approved" in admin.inner_text("#account_message")
        shot(admin, 5, "admin-approved")
        admin.context.close()

        _login(user, url, name, "apple-tree-falls")
        user.wait_for_url("**/hub/home", timeout=15_000)
        shot(user, 6, "first-login")

        user.goto(f"{url}/hub/change-password", timeout=30_000)
        user.fill("#old_password_input", "apple-tree-falls")
        user.fill("#password_input", "gravity-is-universal")
        user.fill("#password2_input", "gravity-is-universal")
        user.click("#password_submit")
        user.wait_for_selector("#account_message", timeout=15_000)
        shot(user, 7, "password-changed")

        user.goto(f"{url}/hub/totp", timeout=30_000)
        secret = user.inner_text("#totp_secret").strip()
        shot(user, 8, "totp-setup")
        user.fill("#code_input", code(secret))
        user.click("#totp_code_submit")
        user.wait_for_selector("#account_message", timeout=15_000)
        assert "is set up" in user.inner_text("#account_message")
        shot(user, 9, "totp-on")

        user.context.clear_cookies()
        _login(user, url, name, "gravity-is-universal")  # no code
        user.wait_for_selector(".login_error", timeout=15_000)
        assert user.inner_text(".login_error") == "Invalid username or password"
        _login(user, url, name, "apple-tree-falls", otp=code(secret))  # the old password
        user.wait_for_selector(".login_error", timeout=15_000)
        shot(user, 10, "login-refused")
        _login(user, url, name, "gravity-is-universal", otp=code(secret, steps_ahead=1))  # the set-up's is used
        user.wait_for_url("**/hub/home", timeout=15_000)
        assert name in user.content()
        shot(user, 11, "login-with-code")
    except Exception:
        print(composite_hub.log_tail(60))
        raise
    finally:
        user.context.close()
