"""oauthenticator's own GitHubOAuthenticator and GoogleOAuthenticator as backends of the composite, beside LDAP
(real slapd) and local accounts, through a real hub running the docs' example (``<!-- example: oauth-backends -->``
in docs/authenticators.md): GitHub against a GitHub Enterprise protocol emulator (github_emulator.py), Google
against oidc-provider-mock. Teams and organisations go through hubfleet's policy; the binding is to GitHub's
numeric id, so a renamed account keeps its hub user and an account taking the old login is refused; a provider
that fails leaves the page saying the sign-in service is unavailable and creates no user, and a token endpoint that
answers an error instead of a token for this hub's client leaves it saying so (what to do) and logs the reason. A screenshot of the login
page goes to test-artifacts/. (The start-up errors are in tests/unit/test_auth_config.py.)
"""

from __future__ import annotations


import pytest
from tests.procs import ARTIFACTS, REPO, wait_for

from . import servers as S
from .conftest import LOCAL_USERS
from .github_emulator import OTHER_APP


DOC = REPO / "docs" / "authenticators.md"
SECRETS = {"LDAP_BIND_PASSWORD": S.SVC_PW, "GITHUB_CLIENT_SECRET": "gh-secret", "GOOGLE_CLIENT_SECRET": "g-secret"}
GINA, GABE, THIEF, OUTSIDER = 4242, 4243, 5151, 6161


def doc_example(swaps: dict[str, str] | None = None) -> str:
    return S.doc_example(DOC, "oauth-backends", swaps or {})


@pytest.fixture(scope="module")
def site(auth_tmp, slapd, oidc_mock, users_file, postgres):
    tmp = auth_tmp / "oauth-backends"
    # hubfleet's tables in PostgreSQL behind a proxy the database-down test stops
    db = postgres.create_database("oauth_backends_bindings")
    db_proxy = S.TcpProxy("127.0.0.1", postgres.port)
    gh = S.start_github_emulator(tmp / "github", "hub-client", "gh-secret")
    gh.set_account(GINA, "gina", name="Gina", email="gina@example.org", teams=["example-org:data-science"],
                   orgs=["example-org"])
    gh.set_account(GABE, "gabe", teams=["example-org:hub-admins", "example-org:data-science"], orgs=["example-org"])
    gh.set_account(OUTSIDER, "olaf", teams=["other-org:data-science"], orgs=["other-org"])
    oidc_mock.set_user("google-sub-gwen", {"email": "gwen@example.org", "email_verified": True, "hd": "example.org"})
    oidc_mock.set_user("google-sub-eve", {"email": "eve@elsewhere.org", "email_verified": True, "hd": "elsewhere.org"})
    swaps = {
        '"ldap://ldap.example.org"': repr(slapd.url),
        "dc=example,dc=org": S.BASE_DN,
        "/srv/jupyterhub/users.yaml": str(users_file),
        "https://github.example.org": gh.url,
        '"https://hub.example.org/"': "c.JupyterHub.bind_url",
    }
    example = doc_example(swaps)
    cfg = example + "\n".join([
        "",
        f"c.HubfleetLDAPAuthenticator.tls_ca_file = {str(slapd.ca_file)!r}",
        f"c.GoogleOAuthenticator.authorize_url = '{oidc_mock.issuer}/oauth2/authorize'",
        f"c.GoogleOAuthenticator.token_url = '{oidc_mock.issuer}/oauth2/token'",
        f"c.GoogleOAuthenticator.userdata_url = '{oidc_mock.issuer}/userinfo'",
        # the session's oidc-provider-mock insists on a nonce (Google does not ask for one)
        "c.GoogleOAuthenticator.extra_authorize_params = {'nonce': 'n-0'}",
        "c.HubfleetAuthenticator.login_timeout = 4",
        f"c.HubfleetAuthenticator.db_url = {db.replace(f':{postgres.port}/', f':{db_proxy.port}/')!r}",
        "c.HubfleetAuthenticator.db_timeout = 2",
        "c.HubfleetAuthenticator.auth_refresh_age = 1",
        "",
    ])
    hub = S.start_hub(tmp / "hub", cfg, name="hub-oauth-backends", extra_env=SECRETS)
    hub.extra.update(github=gh, db_proxy=db_proxy)
    yield hub
    hub.stop()
    gh.stop()
    db_proxy.stop()


def _login(site, backend, account):
    r = S.oidc_login(site.url, backend, sub=str(account))
    return r, S.whoami(r.session, site.url)


def test_the_login_page_offers_github_google_ldap_and_local_sign_in(site):
    page = S.requests.get(f"{site.url}/hub/login", timeout=10).text
    assert "Sign in with GitHub" in page and "Sign in with Google" in page
    assert 'name="password"' in page
    for who, password in (("alice", "alice-pw"), ("localadmin", LOCAL_USERS["localadmin"][0])):
        r = S.form_login(site.url, who, password)
        assert r.ok, f"{who}: {r.status} {r.error}"
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    shot = ARTIFACTS / "login-github-google-ldap-local.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{site.url}/hub/login", timeout=30_000)
        assert page.get_by_text("Sign in with GitHub").is_visible()
        assert page.get_by_text("Sign in with Google").is_visible()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 0


def test_github_teams_and_organisations_go_through_the_policy(site):
    r, who = _login(site, "github", GINA)
    assert who == "gina", r.text[:500]
    gina = site.user("gina")
    assert "jupyter-users" in gina["groups"] and not gina["admin"]
    r, who = _login(site, "github", GABE)
    assert who == "gabe", r.text[:500]
    assert site.user("gabe")["admin"] is True  # example-org:hub-admins -> jupyter-admins, the entry's admin group
    r, who = _login(site, "github", OUTSIDER)  # neither an allowed organisation nor an allowed group
    assert who is None and site.user("olaf") is None


def test_a_renamed_github_account_keeps_its_hub_user_and_its_old_login_cannot_be_taken(site):
    gh = site.extra["github"]
    r, who = _login(site, "github", GINA)
    assert who == "gina", r.text[:500]
    gh.set_account(GINA, "gina-renamed", teams=["example-org:data-science"], orgs=["example-org"])
    gh.set_account(THIEF, "gina", teams=["example-org:data-science"], orgs=["example-org"])
    r, who = _login(site, "github", GINA)
    assert who == "gina", f"the renamed account signed in as {who!r}: {r.text[:500]}"
    assert site.user("gina-renamed") is None
    r, who = _login(site, "github", THIEF)
    assert who is None, "another GitHub account that took the login 'gina' got the hub user"
    assert "Sign-in refused" in r.text and "belongs to" in r.text, r.text[:800]
    gh.set_account(GINA, "gina", teams=["example-org:data-science"], orgs=["example-org"])
    gh.set_account(THIEF, "thief")


def test_refresh_asks_github_again_and_syncs_the_groups_through_the_policy(site):
    gh = site.extra["github"]
    r, who = _login(site, "github", GINA)
    assert who == "gina" and "jupyter-users" in site.user("gina")["groups"]
    gh.set_account(GINA, "gina", teams=[], orgs=["example-org"])  # still allowed: a member of example-org
    try:
        groups = wait_for("gina's refresh (auth_refresh_age = 1) to drop jupyter-users",
                          lambda: S.whoami(r.session, site.url) == "gina"
                          and "jupyter-users" not in site.user("gina")["groups"] and site.user("gina")["groups"],
                          timeout=20, interval=0.3, seen=lambda: site.log_tail(20))
        assert groups == ["example-org"]
    finally:
        gh.set_account(GINA, "gina", teams=["example-org:data-science"], orgs=["example-org"])


def test_the_database_unreachable_at_a_github_login_refuses_it(site):
    proxy = site.extra["db_proxy"]
    _login(site, "github", GABE)  # bound before the outage
    site.extra["github"].set_account(7100, "newbie", teams=["example-org:data-science"], orgs=["example-org"])
    proxy.set_mode("hang")
    try:
        for account in (GABE, 7100):
            r, who = _login(site, "github", account)
            assert who is None and "Sign-in is unavailable" in r.text, r.text[:800]
        assert site.user("newbie") is None
    finally:
        proxy.set_mode("forward")
    r, who = _login(site, "github", GABE)
    assert who == "gabe", r.text[:500]


def test_google_signs_in_by_sub_within_its_hosted_domain(site):
    r, who = _login(site, "google", "google-sub-gwen")
    assert who == "gwen", r.text[:500]
    state = site.api("GET", "/users/gwen").json()
    assert state["name"] == "gwen"
    r, who = _login(site, "google", "google-sub-eve")  # not in hosted_domain: Google's own block still holds
    assert who is None and site.user("eve") is None


def test_a_code_github_issued_to_another_app_ends_the_sign_in_with_a_clear_message(site):
    """A code GitHub issued to another OAuth app, brought to the hub's callback with the hub's own state (what a
    code-injection attempt does): GitHub will not exchange it for the hub's client (``bad_verification_code``); the
    user is told what happened and what to do, the admin's log has GitHub's reason, and nobody signs in."""
    site.extra["github"].set_account(7200, "injected", teams=["example-org:data-science"], orgs=["example-org"])
    s = S.requests.Session()
    r = s.get(f"{site.url}/hub/oauth_login/github", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "client_id=hub-client" in r.headers["Location"], r.headers
    authorize = r.headers["Location"].replace("client_id=hub-client", f"client_id={OTHER_APP[0]}")
    r = s.post(authorize, data={"sub": "7200"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=30)
    assert r.status_code == 403 and "An access token was not returned" not in r.text, (r.status_code, r.text[:800])
    assert "Sign-in with GitHub failed: GitHub did not give this hub a token for your sign-in" in r.text, r.text[:800]
    assert S.whoami(s, site.url) is None and site.user("injected") is None
    assert ("github (GitHub): no token for client 'hub-client': An access token was not returned: The code passed "
            "is incorrect or expired." in site.log_tail(200)), site.log_tail(20)


@pytest.mark.parametrize("mode", ["500", "html", "hang", "other-client"])
def test_a_failing_provider_says_so_and_creates_no_user(site, mode):
    gh = site.extra["github"]
    gh.set_account(7000, f"new-{mode}", teams=["example-org:data-science"], orgs=["example-org"])
    gh.set_mode(mode)
    try:
        r, who = _login(site, "github", 7000)
    finally:
        gh.set_mode("ok")
    assert who is None and site.user(f"new-{mode}") is None
    if mode == "other-client":  # the token endpoint answers an error instead of a token for this hub's client
        assert r.status == 403 and "An access token was not returned" not in r.text, r.text[:800]
        assert ("Sign-in with GitHub failed: GitHub did not give this hub a token for your sign-in" in r.text
                and "Start again from the login page" in r.text), r.text[:800]
        assert ("github (GitHub): no token for client 'hub-client': An access token was not returned: The "
                "client_id and/or client_secret passed are incorrect." in site.log_tail(200)), site.log_tail(20)
    else:
        assert "The login service (GitHub) is unavailable right now" in r.text, r.text[:800]
