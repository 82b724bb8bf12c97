"""The admin page as people use it (the ``fleet`` of tests/e2e/conftest.py: a real hub, ProfileSpawner on the
devcluster, the page behind the proxy, logins through JupyterHub's OAuth). Screenshots go to
test-artifacts/admin-page-*.png."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine

from hubfleet.spawners.failures_db import COMPONENT, record_failure
from tests.e2e.conftest import EVIL, PAGE


def page_session(hub, user: str) -> requests.Session:
    """Log in to the hub, then to the page (JupyterHub's OAuth, no confirmation)."""
    s = hub.login(user)
    r = s.get(hub.url + PAGE, timeout=30)
    assert r.status_code == 200, f"{user}: {r.status_code} {r.url}\n{r.text[:500]}"
    return s


def rows(html: str) -> set[tuple[str, str]]:
    """(user, profile) of each row of the servers table."""
    table = html.split("id='servers'", 1)[1].split("</table>", 1)[0]
    return {(m[0], m[2]) for m in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>", table)}


def wait_for(fn, what: str, timeout: float = 30):
    """Until ``fn()`` is true; else fail with what it last returned (a tuple saying what it saw)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = fn()
        if last is True or (last and not isinstance(last, tuple)):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {last!r}")


def test_who_sees_what(fleet):
    hub, _ = fleet
    admin = page_session(hub, "admin")
    assert rows(admin.get(hub.url + PAGE, timeout=30).text) == {("alice", "small"), ("bob", "gpu")}
    support = page_session(hub, "sam")  # the custom scope through the viewers' role (group "support")
    assert rows(support.get(hub.url + PAGE, timeout=30).text) == {("alice", "small"), ("bob", "gpu")}
    alice = page_session(hub, "alice")
    assert rows(alice.get(hub.url + PAGE, timeout=30).text) == {("alice", "small")}
    carol = page_session(hub, "carol")  # no server
    assert "No servers." in carol.get(hub.url + PAGE, timeout=30).text

    for path in ("server?user=bob&server=", "logs?user=bob&server=&container=notebook",
                 "logs?user=bob&server=&container=notebook&follow=1", "server?user=nobody&server="):
        r = alice.get(hub.url + PAGE + path, timeout=30)
        assert r.status_code == 403, (path, r.status_code)
        assert "tick" not in r.text and "filler" not in r.text
    for path in ("server?user=nobody&server=", "server?user=alice&server=other",
                 "logs?user=alice&server=&container=nosuch"):
        r = admin.get(hub.url + PAGE + path, timeout=30)
        assert r.status_code == 404, (path, r.status_code)
    # no login: the page sends the browser to the hub's login, never a log
    r = requests.get(hub.url + PAGE + "logs?user=alice&server=&container=noisy", timeout=30)
    assert "filler" not in r.text and r.url.split("?")[0].endswith("/hub/login")


def queue_rows(html: str) -> list[tuple[str, str, str, str]]:
    """(profile, position, user, state) of each row of the page's queue tables."""
    out = []
    for profile, table in re.findall(r"<table class='queue' data-profile='(.*?)'>(.*?)</table>", html):
        out += [(profile, *m) for m in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>.*?</td><td>(.*?)</td>",
                                                    table)]
    return out


def test_queue_positions(fleet):
    """Carol and Dave wait for the full GPU profile: the page lists them in the hub's order with the time a slot
    frees at the latest (bob's server's max_age); each viewer sees the requests they may see; the hub's listing
    answers a token only about users it may read."""
    hub, _ = fleet
    html = page_session(hub, "admin").get(hub.url + PAGE, timeout=30).text
    assert queue_rows(html) == [("gpu", "1", "carol", "waiting"), ("gpu", "2", "dave", "waiting")], html
    assert "Profile gpu: 2 waiting" in html
    latest = re.findall(r"<td>dave</td>(?:<td>.*?</td>){4}<td>(.*?)</td></tr>", html)
    assert latest and latest[0].endswith(" UTC"), f"at the latest for dave: {latest}"
    assert queue_rows(page_session(hub, "carol").get(hub.url + PAGE, timeout=30).text) == [
        ("gpu", "1", "carol", "waiting")]
    alice = page_session(hub, "alice").get(hub.url + PAGE, timeout=30).text
    assert queue_rows(alice) == [] and "Nobody is waiting." in alice

    status, body = hub.api("GET", "/queue?all=1")
    assert status == 200 and [(q["user"], q["position"]) for q in body["queued"]] == [("carol", 1), ("dave", 2)]
    assert body["queues"] == ["gpu"]
    status, body = hub.api("GET", "/queue?all=1", token=hub.user_token("carol"))
    assert status == 200 and [(q["user"], q["position"], q["waiting"]) for q in body["queued"]] == [
        ("carol", 1, 2)], body
    mine = hub.api("GET", "/queue", token=hub.user_token("dave"))[1]["queued"]
    assert [(q["position"], q["waiting"]) for q in mine] == [(2, 2)], "the user sees the place the page shows"


def test_logs_escaped_bounded_and_failures_saved(fleet):
    hub, _ = fleet
    engine = create_engine(f"sqlite:///{hub.state}/jupyterhub.sqlite")
    with engine.begin() as conn:
        from hubfleet.db.schema import schema_versions
        for step in COMPONENT.steps:
            step(conn)
        schema_versions.create(conn, checkfirst=True)
        record_failure(conn, user="alice", server="", profile="small", pod="jupyter-alice",
                       reason="Your server used more than its 1 GiB memory limit " + EVIL,
                       events=[{"type": "Warning", "reason": "OOMKilled", "message": EVIL}],
                       logs={"notebook": b"last words \xff " + EVIL.encode()})
    engine.dispose()
    admin = page_session(hub, "admin")
    def ticking():
        r = admin.get(hub.url + PAGE + "logs?user=alice&server=&container=noisy", timeout=30)
        ok = r.status_code == 200 and re.search(r"^tick \d+$", r.text, re.M)
        return True if ok else (False, r.status_code, r.text[-300:])

    wait_for(ticking, "alice's noisy container to tick")
    html = admin.get(hub.url + PAGE + "server?user=alice&server=", timeout=30).text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "BYTES \ufffd\ufffd\ufffd not utf-8" in html
    assert "Saved failures of spawns" in html and "OOMKilled" in html and "last words \ufffd" in html
    text = admin.get(hub.url + PAGE + "logs?user=alice&server=&container=noisy", timeout=30).text
    lines = text.splitlines()
    assert len(lines) <= 200 and max(len(x) for x in lines) <= 4010, "the tail is bounded"
    assert re.fullmatch(r"tick \d+", lines[-1]), f"the newest line is in the tail, not cut off: {lines[-1][:80]!r}"
    assert any(x.startswith("HUGE yyy") and x.endswith("…[cut]") for x in lines)
    assert "CR data: injected" in lines
    assert "<script>" not in html.split("<script src=")[0]


def test_follow_streams_new_lines(fleet):
    hub, _ = fleet
    admin = page_session(hub, "admin")
    url = hub.url + PAGE + "logs?user=alice&server=&container=noisy&follow=1"
    seen: list[str] = []
    with admin.get(url, stream=True, timeout=30) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        deadline = time.monotonic() + 30
        for raw in r.iter_lines():
            line = raw.decode("utf-8")
            if line.startswith("data: tick"):
                seen.append(line)
            if len(seen) >= 3 or time.monotonic() > deadline:
                break
    assert len(seen) >= 3, f"followed ticks: {seen}"
    numbers = [int(x.split()[-1]) for x in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_usage_chart_and_csv(fleet):
    hub, _ = fleet
    admin = page_session(hub, "admin")
    html = admin.get(hub.url + PAGE + "?by=profile&days=1", timeout=30).text
    assert html.count("<svg") == 2 and "Server-hours per profile" in html and "GPU-hours per profile" in html
    # the page has the hub's database: usage comes from the spawner's records (stopped servers count too)
    assert "stopped servers are not in these numbers" not in html and "Usage cannot be read" not in html
    r = admin.get(hub.url + PAGE + "usage.csv?by=user&days=1", timeout=30)
    assert r.headers["Content-Type"].startswith("text/csv")
    table = {row["user"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert set(table) == {"alice", "bob"}
    assert float(table["bob"]["gpu_hours"]) > 0 and float(table["alice"]["gpu_hours"]) == 0
    assert all(float(row["server_hours"]) > 0 for row in table.values())
    mine = page_session(hub, "alice").get(hub.url + PAGE + "usage.csv?by=user&days=1", timeout=30).text
    assert "bob" not in mine and "alice" in mine
    assert admin.get(hub.url + PAGE + "usage.csv?by=nope", timeout=30).status_code == 400


def test_kubernetes_unreachable_page_says_so_hub_unaffected(fleet):
    hub, dc = fleet
    admin = page_session(hub, "admin")
    dc.set_faults(error_rate=1.0, error_codes=[503])
    try:
        r = admin.get(hub.url + PAGE, timeout=60)
        assert r.status_code == 200 and "The Kubernetes API cannot be reached" in r.text
        assert ("alice", "small") in rows(r.text), "the hub's servers are still listed"
        assert requests.get(hub.url + "/hub/api/", timeout=10).status_code == 200
    finally:
        dc.set_faults(error_rate=0.0)


CHROMIUM = Path("/usr/bin/chromium")


def test_browser_admin_follows_logs_and_sees_usage(fleet, artifacts):
    """An admin finds the page in the hub's Services menu, opens alice's server, follows a log (new ticks
    appear, no script from the log runs) and reads the usage chart."""
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing (/usr/bin/chromium): `make test` apt-installs it when run as root")
    from playwright.sync_api import sync_playwright
    hub, _ = fleet
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "admin")
            page.fill("#password_input", hub.password)
            page.click("#login_submit")
            page.wait_for_load_state()
            page.goto(f"{hub.url}/hub/home")
            link = page.locator(f"a[href*='{PAGE}']").first  # the Services menu lists the page
            assert link.count() == 1, "the admin page is in the hub's Services menu"
            page.goto(hub.url + PAGE + "?by=profile&days=1")
            page.wait_for_selector("#servers")
            page.screenshot(path=str(artifacts / "admin-page-servers.png"), full_page=True)
            page.locator(".charts").screenshot(path=str(artifacts / "admin-page-usage-chart.png"))
            page.locator("#queue").screenshot(path=str(artifacts / "admin-page-queue.png"))
            assert "carol" in page.inner_text("#queue table.queue")
            assert "GPU-hours per profile" in page.inner_text(".charts")

            page.goto(hub.url + PAGE + "server?user=alice&server=")
            pre = page.locator("#log-noisy")
            before = [int(n) for n in re.findall(r"^tick (\d+)$", pre.inner_text(), re.M)]
            page.click("button[data-target='log-noisy']")
            try:
                page.wait_for_function(
                    "([n]) => [...document.getElementById('log-noisy').textContent.matchAll(/^tick (\\d+)$/gm)]"
                    ".some(m => Number(m[1]) > n + 2)", arg=[max(before or [0])], timeout=30_000)
            except Exception as e:
                page.screenshot(path=str(artifacts / "admin-page-follow-failed.png"), full_page=True)
                raise AssertionError(f"no new ticks after tick {max(before or [0])}; status "
                                     f"{page.inner_text('#log-noisy-status')!r}; console {console}; "
                                     f"log ends {pre.inner_text()[-300:]!r}") from e
            assert page.inner_text("#log-noisy-status") == "following"
            pre.evaluate("el => el.scrollIntoView()")
            page.screenshot(path=str(artifacts / "admin-page-logs-following.png"), full_page=False)
            assert page.locator("#log-noisy script, #log-noisy img").count() == 0
        finally:
            browser.close()
    assert dialogs == [], f"a log line ran script: {dialogs}"


def culler_cells(html: str) -> dict[str, str]:
    """user -> the text of the Culler column of the servers table."""
    table = html.split("id='servers'", 1)[1].split("</table>", 1)[0]
    return {m[0]: m[1] for m in re.findall(r"<tr><td>(.*?)</td>(?:<td>.*?</td>){6}<td>(.*?)</td>", table)}


def test_culler_column_shows_the_cullers_warnings(fleet, artifacts):
    """The culler warns bob's GPU server (its policy: a stop at one day old, warned from 10 s on); the page reads
    the culler's state with its own token and shows the warning in the Culler column, and "—" for alice. The state
    names users: through the proxy it answers only a token holding access to the culler's service."""
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing (/usr/bin/chromium): `make test` apt-installs it when run as root")
    from playwright.sync_api import sync_playwright
    hub, _ = fleet
    admin = page_session(hub, "admin")

    def bob_warned():
        cells = culler_cells(admin.get(hub.url + PAGE, timeout=30).text)
        return cells.get("bob", "").startswith("warned ") or ("bob's cell", cells)

    wait_for(bob_warned, "the culler's warning of bob's server in the Culler column", timeout=90)
    cells = culler_cells(admin.get(hub.url + PAGE, timeout=30).text)
    assert re.fullmatch(r"warned \S+ \S+ UTC \(max_age\), stopped after \S+ \S+ UTC: age \S+, culled at max_age "
                        r"24:00:00 in \S+ \(profile gpu\)", cells["bob"]), cells
    assert cells["alice"] == "—", cells

    state = hub.url + "/services/hubfleet-culler/state"
    assert requests.get(state, timeout=30).status_code == 403
    alice = hub.user_token("alice")
    assert requests.get(state, headers={"Authorization": f"token {alice}"}, timeout=30).status_code == 403
    r = requests.get(state, headers={"Authorization": f"token {hub.admin_token}"}, timeout=30)
    assert r.status_code == 200 and [w["user"] for w in r.json()["warned"]] == ["bob"], r.text

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 700})
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "admin")
            page.fill("#password_input", hub.password)
            page.click("#login_submit")
            page.wait_for_load_state()
            page.goto(hub.url + PAGE)
            table = page.locator("#servers")
            table.screenshot(path=str(artifacts / "admin-page-culler.png"))
            bob = table.locator("tr", has_text="bob")
            assert bob.locator("td").nth(7).inner_text().startswith("warned "), bob.inner_text()
            assert table.locator("th").nth(7).inner_text() == "Culler"
        finally:
            browser.close()
