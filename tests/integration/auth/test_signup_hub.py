"""Self-service local accounts through a real hub (``hubfleet-local``, real configurable-http-proxy, an aiosmtpd
SMTP server), on SQLite and on a real PostgreSQL: sign-up with bad input, approval by an admin and by an e-mailed
confirmation link, lockout per account and per client address, a group that requires TOTP, NativeAuthenticator's
``users_info`` accounts signing in unchanged, ``hubfleet users accounts/approve/reset`` on the database, and a
restart in a fresh, empty working directory that keeps every account."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests

from hubfleet.authenticators import accounts_db as adb
from hubfleet.db import Database

from . import servers as S
from .signup_kit import (NATIVE_SECRET, code, hub_config, login, native_users_info, post_form, start_smtp,
                         text_of, users_file)

LOCKED = re.compile(r"^Too many failed sign-ins: try again in (\d+ min)?( ?\d+ s)?\.$")


@pytest.fixture(scope="module")
def smtp():
    controller, box = start_smtp()
    yield box, controller.port
    controller.stop()


class Site:
    def __init__(self, tmp, db, db_url, cfg, hub):
        self.tmp, self.db, self.db_url, self.cfg, self.hub = tmp, db, db_url, cfg, hub

    def accounts(self) -> dict[str, adb.Account]:
        store = adb.AccountStore(Database(self.db_url, timeout=10))
        try:
            return {a.name: a for a in store.run(adb.list_accounts)}
        finally:
            store.db.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, auth_tmp, smtp, postgres):
    db = request.param
    tmp = auth_tmp / f"signup-{db}"
    (tmp / "workdir-1").mkdir(parents=True)
    db_url = f"sqlite:///{tmp}/hub.sqlite" if db == "sqlite" else postgres.create_database("signup_hub")
    native_users_info(db_url)  # a NativeAuthenticator site's database, pointed at as it is
    cfg = hub_config(users_file(tmp / "users.yaml"), smtp[1], db_url)
    hub = S.start_hub(tmp, cfg, name=f"hub-signup-{db}", workdir=tmp / "workdir-1")
    s = Site(tmp, db, db_url, cfg, hub)
    yield s
    s.hub.stop()


@pytest.fixture(autouse=True)
def site_log_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "site" in request.fixturenames:
        print(f"--- hub log tail ---\n{request.getfixturevalue('site').hub.log_tail(80)}")


def signup(hub, username, password, email="x@other.example", repeat=None, host=""):
    r = post_form(requests.Session(), f"{hub.url}/hub/signup",
                  {"username": username, "password": password, "password2": password if repeat is None else repeat,
                   "email": email}, host=host)
    return r.status_code, text_of(r.text, "account_error") or text_of(r.text, "account_message")


def admin_session(hub) -> requests.Session:
    r = login(hub, "root", "root-password-1", ip="10.0.0.1")
    assert r.ok, (r.status, r.error)
    return r.session


def test_signup_refuses_bad_input_and_stores_nothing(site):
    before = site.accounts()
    cases = {
        "filer": ("good-password-77", "The username 'filer' is taken"),  # an account of the users file
        "nat-bob": ("good-password-77", "The username 'nat-bob' is taken"),  # imported from NativeAuthenticator
        "Bad Name!": ("good-password-77", "is not a valid username"),
        "newbie1": ("short-pw1", "at least 10 characters"),
        "newbie2": ("password1234", None),  # control: accepted below
        "newbie3": ("qwertyuiop", "list of common passwords"),
        "newbie4": ("é" * 40, "at most 72 bytes"),
    }
    for name, (password, why) in cases.items():
        if why is None:
            continue
        status, text = signup(site.hub, name, password)
        assert status == 400 and why in text, (name, status, text)
    assert signup(site.hub, "newbie5", "good-password-77", repeat="other-password-77") == (400, "The two passwords "
                                                                                                "differ.")
    assert signup(site.hub, "newbie6", "good-password-77", email="not an address")[0] == 400
    assert site.accounts().keys() == before.keys(), "a refused sign-up stored an account"


def test_signup_waits_for_an_admin_who_approves_then_first_login(site, smtp):
    box, _ = smtp
    name = f"pat-{site.db}"
    status, text = signup(site.hub, name, "pat-password-1", email=f"{name}@other.example")
    assert status == 200 and "waits for an administrator" in text, text
    mail = box.wait("admins@hub.example", name)
    assert "/hub/authorize" in mail.get_content()
    r = login(site.hub, name, "pat-password-1")
    assert r.status == 403 and "waiting for approval by an administrator" in r.error, (r.status, r.error)
    assert login(site.hub, name, "wrong-password-1").error == "Invalid username or password"  # no hint before

    # a signed-in user without admin:users may not see or use the page
    plain = login(site.hub, "filer", "filer-password-1", ip="10.0.0.2").session
    assert plain.get(f"{site.hub.url}/hub/authorize", timeout=10).status_code == 403
    admin = admin_session(site.hub)
    page = admin.get(f"{site.hub.url}/hub/authorize", timeout=10)
    assert page.status_code == 200 and f'id="approve-{name}"' in page.text
    r = post_form(admin, f"{site.hub.url}/hub/authorize", {"username": name, "action": "approve"})
    assert r.status_code == 200 and f"{name}: approved" in r.text
    assert "approved" in box.wait(f"{name}@other.example", "approved").get_content()
    r = login(site.hub, name, "pat-password-1")
    assert r.ok and S.whoami(r.session, site.hub.url) == name, (r.status, r.error)
    assert site.accounts()[name].status == "approved"


def test_signup_from_an_allowed_domain_approves_itself_with_the_mailed_link(site, smtp):
    box, _ = smtp
    name = f"uma-{site.db}"
    status, text = signup(site.hub, name, "uma-password-1", email=f"{name}@lab.uni.example", host="evil.example")
    assert status == 200 and "confirmation link" in text, text
    body = box.wait(f"{name}@lab.uni.example", "Confirm").get_content()
    link = re.search(r"http://\S+/hub/signup/confirm\?token=\S+", body).group(0)
    assert link.startswith(f"{site.hub.url}/hub/signup/confirm?token="), link  # public_url, not the Host header
    assert login(site.hub, name, "uma-password-1").error.startswith("Your account is waiting for approval: open")
    assert requests.get(link.replace("token=", "token=x"), timeout=10).status_code == 400
    assert requests.get(link, timeout=10).status_code == 200  # a mail scanner opening the link approves nothing
    assert site.accounts()[name].status == "confirming"
    r = post_form(requests.Session(), link, {})
    assert r.status_code == 200 and "is confirmed" in r.text
    assert requests.get(link, timeout=10).status_code == 400, "a confirmation link works once"
    assert post_form(requests.Session(), link, {}).status_code == 400, "a confirmation link works once"
    assert login(site.hub, name, "uma-password-1").ok


def test_lockout_is_the_same_for_a_known_and_an_unknown_name(site):
    """allowed_failed_logins = 3, seconds_before_next_try = 300: the third failure locks the name for 5 minutes;
    the right password is refused while locked; an unknown name gets the very same answers."""
    answers = {}
    for name, right in (("locky", "locky-password-1"), (f"ghost-{site.db}", None)):
        seen = []
        for i in range(4):
            r = login(site.hub, name, f"wrong-password-{i}", ip=f"10.1.{i}.{len(answers)}")
            seen.append((r.status, LOCKED.sub("LOCKED", r.error)))
        if right:
            r = login(site.hub, name, right, ip="10.1.9.9")
            assert r.status == 403 and LOCKED.match(r.error), f"the right password got in while locked: {r.error}"
            assert "4 min" in r.error or "5 min" in r.error, r.error
        answers[name] = seen
    known, unknown = answers.values()
    assert known == unknown == [(403, "Invalid username or password")] * 2 + [(403, "LOCKED")] * 2, answers


def test_lockout_per_client_address(site):
    """allowed_failed_logins_per_address = 6: six failures from one address, with six names, lock that address
    for every name; another address is not affected."""
    for i in range(6):
        r = login(site.hub, f"spray{i}-{site.db}", "wrong-password-1", ip="10.66.0.1")
    assert LOCKED.match(r.error), r.error
    r = login(site.hub, "filer", "filer-password-1", ip="10.66.0.1")
    assert r.status == 403 and LOCKED.match(r.error), r.error
    assert login(site.hub, "filer", "filer-password-1", ip="10.66.0.2").ok


def test_a_group_that_requires_totp(site):
    r = login(site.hub, "guard", "guard-password-1", ip="10.2.0.1")
    assert r.status == 403 and "requires a second factor" in r.error, r.error
    s = requests.Session()
    page = post_form(s, f"{site.hub.url}/hub/totp", {"step": "who", "username": "guard", "password": "wrong-pw-1"})
    assert page.status_code == 403
    page = post_form(s, f"{site.hub.url}/hub/totp", {"step": "who", "username": "guard",
                                                     "password": "guard-password-1"})
    secret = re.search(r'id="totp_secret"[^>]*>([A-Z2-7]+)<', page.text).group(1)
    assert post_form(s, f"{site.hub.url}/hub/totp", {"step": "code", "code": "000000"}).status_code == 400
    now = code(secret)
    assert "is set up" in post_form(s, f"{site.hub.url}/hub/totp", {"step": "code", "code": now}).text
    assert login(site.hub, "guard", "guard-password-1", ip="10.2.0.2").error == "Invalid username or password"
    later = code(secret, steps_ahead=1)
    assert login(site.hub, "guard", "guard-password-1", otp=later, ip="10.2.0.4").ok
    assert login(site.hub, "guard", "guard-password-1", otp=now, ip="10.2.0.3").status == 403, \
        "the code that turned TOTP on was accepted again"
    assert login(site.hub, "guard", "guard-password-1", otp=later, ip="10.2.0.5").status == 403, "a code worked twice"


def test_the_totp_page_is_no_way_round_the_lockout(site):
    """The TOTP page asks for a password too: its failures count, and a lock holds there and at the login form."""
    name, s = f"probe-{site.db}", requests.Session()
    answers = [post_form(s, f"{site.hub.url}/hub/totp", {"step": "who", "username": name,
                                                        "password": f"guess-{i}-password"}, ip="10.5.0.1")
               for i in range(4)]
    assert [r.status_code for r in answers] == [403] * 4
    assert LOCKED.match(text_of(answers[-1].text, "account_error")), answers[-1].text[-500:]
    assert LOCKED.match(login(site.hub, name, "guess-9-password", ip="10.5.0.2").error)


def test_nativeauthenticator_accounts_sign_in_unchanged(site):
    assert login(site.hub, "nat-bob", "nat-bob-pw", ip="10.3.0.1").ok
    assert login(site.hub, "nat-alice", "nat-alice-pw", ip="10.3.0.2").status == 403, "2FA was not asked"
    r = login(site.hub, "nat-alice", "nat-alice-pw", otp=code(NATIVE_SECRET), ip="10.3.0.3")
    assert r.ok and S.whoami(r.session, site.hub.url) == "nat-alice", (r.status, r.error)
    assert "waiting for approval" in login(site.hub, "nat-carol", "nat-carol-pw", ip="10.3.0.4").error
    got = site.accounts()
    assert (got["nat-alice"].source, got["nat-alice"].totp, got["nat-alice"].email) == (
        "nativeauthenticator", True, "na@x.example")


def _cli(site, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "hubfleet.authenticators.cli", "users", *args, "--db-url",
                           site.db_url], input=stdin, capture_output=True, text=True, timeout=60)


def test_restart_in_a_fresh_working_directory_keeps_every_account_and_the_cli_works_on_them(site):
    name = f"cli-{site.db}"
    assert signup(site.hub, name, "cli-password-1")[0] == 200
    site.hub.stop()
    out = _cli(site, "accounts", "--pending")
    assert out.returncode == 0 and f"{name}: x@other.example" in out.stdout and "nat-carol" in out.stdout, out
    assert _cli(site, "approve", name, "--group", "secure-not").returncode == 0
    out = _cli(site, "reset", "nat-bob", "--password-stdin", "--rounds", "4", stdin="new-bob-password\n")
    assert out.returncode == 0, out.stderr
    (site.tmp / "workdir-2").mkdir()
    site.hub = S.start_hub(site.tmp, site.cfg, name=f"hub-signup-{site.db}-2", workdir=site.tmp / "workdir-2")
    for who, password, otp in ((f"pat-{site.db}", "pat-password-1", ""), (name, "cli-password-1", ""),
                               ("nat-bob", "new-bob-password", ""), ("nat-alice", "nat-alice-pw",
                                                                      code(NATIVE_SECRET, steps_ahead=1))):
        r = login(site.hub, who, password, otp=otp, ip="10.4.0.1")
        assert r.ok, f"{who} lost after the restart: {r.status} {r.error}\n{site.hub.log_tail(30)}"
    left = {p.name for p in (site.tmp / "workdir-2").iterdir()} - {"jupyterhub-proxy.pid"}  # the running CHP's
    assert not left, f"the accounts need files in the working directory: {left}"


def test_database_unreachable_at_login_is_refused(auth_tmp, smtp):
    """The accounts' database does not answer: the login page says sign-in is unavailable (fail closed)."""
    tmp = auth_tmp / "signup-db-down"
    port, sock = S.hanging_listener()
    try:
        cfg = hub_config(users_file(tmp / "users.yaml"), smtp[1], None, extra=f"""
            c.HubfleetLocalAuthenticator.db_url = "postgresql+psycopg2://nobody@127.0.0.1:{port}/x"
            c.HubfleetLocalAuthenticator.db_timeout = 2.0
            """)
        hub = S.start_hub(tmp, cfg, name="hub-signup-dbdown")
        try:
            r = login(hub, "filer", "filer-password-1")
            assert r.status == 503 and "Sign-in is unavailable" in r.error, (r.status, r.error, hub.log_tail(20))
            assert S.whoami(r.session, hub.url) is None
        finally:
            hub.stop()
    finally:
        sock.close()
