"""Warnings before the cull through real notifiers (an aiosmtpd SMTP server, a local webhook, a hook), the sweep's
per-user isolation, the service surviving failed sweeps, --dry-run and /metrics, against the in-process HTTP hub of
test_culler_http.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import requests
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from jupyterhub_idle_culler import utcnow as real_utcnow
from prometheus_client.parser import text_string_to_metric_families

from hubfleet.services.culler import sweep as sweep_module
from hubfleet.services.culler.app import CullerApp
from hubfleet.services.culler.hub_api import HubAPI
from tests.integration.culler.test_culler_http import TOKEN, FakeHub, fake_hub, iso, make_users  # noqa: F401
from tests.notify_servers import smtp  # noqa: F401  (fixture)
from tests.procs import free_port, wait_for_async

HOOK_CALLS: list = []


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger="hubfleet.culler")


def record_hook(*, notice, user):
    """The hook notifier under test (imported by its import string)."""
    HOOK_CALLS.append((notice.user, notice.reason, sorted(user)))


def server_model(idle: float, profile: str = "warned", started: float = 3600) -> dict:
    return {"servers": {"": {"ready": True, "pending": None, "url": "/user/x/", "started": iso(started),
                             "last_activity": iso(idle), "user_options": {"profile": profile}}}}


@pytest.fixture
async def webhook():
    received: list = []

    class Hook(RequestHandler):
        def post(self):
            received.append(json.loads(self.request.body))
            self.set_status(204)

    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([(r"/warn", Hook)]))
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/warn", received
    server.stop()


def make_app(url: str, tmp_path, policies: str, *args: str) -> tuple[CullerApp, HubAPI]:
    f = tmp_path / "policies.yaml"
    f.write_text(policies)
    app = CullerApp()
    app.initialize([f"--url={url}", f"--policies-file={f}", *args])
    return app, HubAPI(url, TOKEN, max_clients=12, backoff=0.01, retries=1)


async def test_warned_first_culled_after_warn_before_and_activity_cancels(fake_hub, tmp_path, smtp, webhook,
                                                                          caplog, monkeypatch):
    controller, box = smtp
    hook_url, posts = webhook
    users = {"ann": {**server_model(idle=3), "auth_state": {"mail": "ann@uni.example"}},
             "bob": {**server_model(idle=3), "auth_state": {"oidc_claims": {"email": "bob@idp.example"}}},
             "cy": server_model(idle=3),  # no address anywhere: the warning cannot be mailed
             "dee": server_model(idle=0.5)}  # active
    hub = FakeHub(users, page_size=10)
    url = await fake_hub(hub)
    app, api = make_app(url, tmp_path, "profiles:\n  warned: {timeout: 4, warn_before: 2}\n",
                        f"--smtp-host={controller.hostname}", f"--SMTPNotifier.port={controller.port}",
                        "--SMTPNotifier.to_auth_state=mail", "--SMTPNotifier.to_auth_state=oidc_claims.email",
                        f"--webhook-url={hook_url}",
                        "--warn-hook=tests.integration.culler.test_culler_warnings.record_hook",
                        "--public-url=https://hub.example.org")
    HOOK_CALLS.clear()
    sweeper = app.make_sweeper(api)
    skew = timedelta(0)  # the sweep's clock; the notice period passes by moving it, not by waiting
    monkeypatch.setattr(sweep_module, "utcnow", lambda: real_utcnow() + skew)

    r1 = await sweeper.sweep()  # idle 3 s of a 4 s timeout with 2 s warning: warn ann, bob, cy
    assert (r1.warned, r1.culled) == (3, 0), r1.summary()
    assert sorted(rcpt[0] for rcpt, _ in box.messages) == ["ann@uni.example", "bob@idp.example"]
    mail = box.messages[0][1]
    assert mail["Subject"] == "Your JupyterHub server will be stopped soon"
    assert "will be stopped in about 1 minute(s)" in mail.get_payload() and "https://hub.example.org/user/x/" in \
        mail.get_payload()
    assert sorted(p["user"] for p in posts) == ["ann", "bob", "cy"]
    assert {p["warn_before"] for p in posts} == {2.0} and all(p["cull_after"].endswith("Z") for p in posts)
    assert sorted(c[0] for c in HOOK_CALLS) == ["ann", "bob", "cy"]
    assert "warn cy: not delivered: smtp: no address for cy" in caplog.text

    # bob works again: his warning is void
    hub.users["bob"]["servers"][""]["last_activity"] = iso(0)
    r2 = await sweeper.sweep()
    assert (r2.warned, r2.culled) == (0, 0), r2.summary()  # no cull before warn_before has passed
    assert "warning for bob cancelled" in caplog.text
    assert len(box.messages) == 2 and len(posts) == 3  # a warning is sent once; cy's mail is tried again only
    assert caplog.text.count("warn cy: not delivered") == 2

    skew = timedelta(seconds=2.5)  # warn_before (2 s) has passed since the first sweep's warnings
    hub.users["bob"]["servers"][""]["last_activity"] = iso(0)  # bob is still at work
    r3 = await sweeper.sweep()
    api.close()
    assert sorted(hub.deleted) == ["ann", "cy"], r3.summary()  # cy's undelivered mail lost no cull
    assert hub.users["bob"]["servers"] and hub.users["dee"]["servers"]
    cull = re.search(r"cull ann: inactive for 00:00:\d\d >= 00:00:04 \(profile warned\), warned 00:00:(\d\d) ago",
                     caplog.text)
    assert cull and int(cull[1]) >= 2, caplog.text  # no sooner than warn_before after the warning


async def test_a_bad_mail_address_skips_that_mail_only_and_adds_no_recipient(fake_hub, tmp_path, smtp, webhook,
                                                                            caplog):
    """Addresses come from identity-provider claims and user names: a line break, a list or a display name is
    refused for that one mail (logged, counted), while the user's other servers and notifiers are handled."""
    controller, box = smtp
    hook_url, posts = webhook

    def two_servers(mail):
        model = server_model(idle=3)
        model["servers"]["lab"] = {**model["servers"][""], "url": "/user/x/lab/"}
        return {**model, "auth_state": {"mail": mail}} if mail is not None else model

    users = {"crlf": two_servers("crlf@uni.example\r\nBcc: boss@uni.example"),
             "lf": two_servers("lf@uni.example\nX-Injected: 1"),
             "list": two_servers("list@uni.example, boss@uni.example"),
             "semi": two_servers(["semi@uni.example;boss@uni.example"]),
             "named": two_servers("Boss <boss@uni.example>"),
             "ok": two_servers("ok@uni.example"),
             "co,mma": two_servers(None)}  # no auth state: the `to` template with a name that makes a list
    hub = FakeHub(users, page_size=10)
    url = await fake_hub(hub)
    app, api = make_app(url, tmp_path, "profiles:\n  warned: {timeout: 4, warn_before: 2}\n",
                        f"--smtp-host={controller.hostname}", f"--SMTPNotifier.port={controller.port}",
                        "--SMTPNotifier.to_auth_state=mail", "--smtp-to={username}@uni.example",
                        f"--webhook-url={hook_url}")
    sweeper = app.make_sweeper(api)
    result = await sweeper.sweep()
    api.close()
    assert result.skipped == 0 and not result.errors, result.summary()
    assert result.warned == 2 * len(users), result.summary()  # both servers of every user
    assert [rcpt for rcpt, _ in box.messages] == [["ok@uni.example"], ["ok@uni.example"]]
    assert all(m["To"] == "ok@uni.example" and "Bcc" not in m and "X-Injected" not in m for _, m in box.messages)
    assert sorted(p["user"] for p in posts) == sorted(2 * list(users))  # the webhook still got every warning
    for user in ("crlf", "lf", "list", "semi", "named"):
        assert f"warn {user}: not delivered: smtp: {user}'s auth state mail is not one address" in caplog.text
        assert f"warn {user}/lab: not delivered" in caplog.text
    assert "warn co,mma: not delivered: smtp: the `to` template gives no address for user 'co,mma'" in caplog.text
    assert "\nBcc" not in caplog.text and "\nX-Injected" not in caplog.text  # quoted in the log, not injected
    metrics = sweeper.metrics.notify_failures.labels("smtp")._value.get()
    assert metrics == 2 * (len(users) - 1), metrics


async def test_a_bad_record_is_skipped_not_the_sweep(fake_hub, tmp_path, caplog):
    users = make_users(3, 1)
    users["broken"] = {"servers": {"": {"ready": True, "started": "yesterday-ish", "last_activity": "??",
                                        "user_options": {"profile": "gpu"}}}}
    users["weird"] = {"servers": ["not", "a", "mapping"]}
    hub = FakeHub(users, page_size=50)
    url = await fake_hub(hub)
    app = CullerApp()
    app.initialize([f"--url={url}", "--timeout=600"])
    api = HubAPI(url, TOKEN, backoff=0.01, retries=1)
    result = await app.sweep(api)
    api.close()
    assert sorted(hub.deleted) == ["idle000", "idle001", "idle002"]
    assert result.skipped == 2, result.summary()
    assert "user broken: skipped this sweep: Invalid isoformat string: 'yesterday-ish'" in caplog.text
    assert "user weird: skipped this sweep" in caplog.text


def run_service(url: str, tmp_path, *args: str, timeout: float = 60) -> subprocess.Popen:
    env = {**os.environ, "JUPYTERHUB_API_URL": url, "JUPYTERHUB_API_TOKEN": TOKEN}
    log = open(tmp_path / "culler.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "hubfleet.services.culler", "--timeout=600", *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env)




async def test_the_service_outlives_failed_sweeps_and_serves_metrics(fake_hub, tmp_path):
    hub = FakeHub(make_users(4, 2), page_size=50)
    hub.fail = [500, 503]  # the first two sweeps: the hub is down
    hub.garbage = 1        # the third: it answers HTML
    url = await fake_hub(hub)
    port = free_port()
    proc = run_service(url, tmp_path, "--cull-every=1", "--retries=0", f"--metrics-port={port}")
    log_path = tmp_path / "culler.log"
    try:
        await wait_for_async("the four idle servers culled after the failures", lambda: len(hub.deleted) == 4, 40,
                             seen=lambda: f"culler log:\n{log_path.read_text()}")
        assert proc.poll() is None, log_path.read_text()

        def scrape():
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

        text = await asyncio.to_thread(scrape)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    log = log_path.read_text()
    assert log.count("sweep failed") == 3, log
    assert "sweep failed: GET /users?state=ready&limit=50: 500 try later; retrying in 1s" in log
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("hubfleet_culler_culls_total", (("profile", "gpu"), ("reason", "idle")))] == 4, text
    assert samples[("hubfleet_culler_sweep_failures_total", ())] == 3, text
    assert samples[("hubfleet_culler_hub_api_errors_total", (("request", "list"),))] == 2, text
    assert samples[("hubfleet_culler_sweep_duration_seconds_count", ())] >= 1, text
    assert TOKEN not in log


async def test_a_changed_policies_file_is_read_again_and_a_broken_one_keeps_the_last_good(fake_hub, tmp_path):
    hub = FakeHub(make_users(3, 1), page_size=50)  # idle for 1 h
    url = await fake_hub(hub)
    policies = tmp_path / "policies.yaml"
    policies.write_text("profiles:\n  gpu: {timeout: 1d}\n")
    proc = run_service(url, tmp_path, "--cull-every=1", f"--policies-file={policies}")
    log_path = tmp_path / "culler.log"

    def sweeps() -> int:
        return log_path.read_text().count("] sweep: ")

    def rewrite(text: str) -> None:  # a new mtime for certain, whatever the filesystem's resolution
        before = policies.stat().st_mtime_ns
        policies.write_text(text)
        os.utime(policies, ns=(before + 10**9, before + 10**9))

    seen = lambda: f"culler log:\n{log_path.read_text()}"  # noqa: E731
    try:
        await wait_for_async("two sweeps under the first policies", lambda: sweeps() >= 2, 40, seen=seen)
        assert hub.deleted == [], "idle 1 h is not past 1 d"
        rewrite("profiles:\n  gpu: {timeout: [not a duration}\n")
        await wait_for_async("the broken policies file to be refused", lambda: "keeping the last good policies"
                             in log_path.read_text(), 40, seen=seen)
        n = sweeps()
        await wait_for_async("a sweep after the refusal", lambda: sweeps() > n, 40, seen=seen)
        assert hub.deleted == [], "the last good policies (1 d) are still in force"
        rewrite("profiles:\n  gpu: {timeout: 30m}\n")
        await wait_for_async("the idle servers culled under the new policies", lambda: len(hub.deleted) == 3, 40,
                             seen=seen)
        assert "policies reloaded from" in log_path.read_text()
        assert sorted(hub.deleted) == ["idle000", "idle001", "idle002"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_dry_run_prints_what_it_would_do_and_stops_nothing(fake_hub, tmp_path):
    users = make_users(2, 1)
    users["old"] = server_model(idle=1, profile="gpu", started=3 * 86400)
    users["plain"] = server_model(idle=3600, profile="small")
    hub = FakeHub(users, page_size=50)
    url = await fake_hub(hub)
    f = tmp_path / "p.yaml"
    f.write_text("profiles:\n  gpu: {timeout: 10m, max_age: 1d, warn_before: 5m}\n  small: {timeout: 10m}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubfleet.services.culler", "--dry-run", "--once", f"--policies-file={f}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "JUPYTERHUB_API_URL": url, "JUPYTERHUB_API_TOKEN": TOKEN})
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    lines = sorted(out.decode().splitlines())
    expected = [
        r"would cull plain: inactive for 01:00:\d\d >= 00:10:00 \(profile small\)",
        r"would warn idle000: inactive for 01:00:\d\d >= 00:10:00 \(profile gpu\); culled in 00:05:00 unless active",
        r"would warn idle001: inactive for 01:00:\d\d >= 00:10:00 \(profile gpu\); culled in 00:05:00 unless active",
        r"would warn old: age 72:00:\d\d >= max_age 24:00:00 \(inactive for 00:00:\d\d, profile gpu\); culled in "
        r"00:05:00 unless active",
    ]
    assert len(lines) == 4 and all(re.fullmatch(e, line) for e, line in zip(expected, lines)), out.decode()
    assert hub.deleted == []


def test_unreachable_notifier_config_and_bad_hook_are_start_up_errors(tmp_path, capsys, monkeypatch):
    from hubfleet.services.culler.app import main

    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://h/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    assert main(["--warn-hook=no.such.module.hook"]) == 2
    assert "HookNotifier.hook 'no.such.module.hook': cannot import it" in capsys.readouterr().err
    f = tmp_path / "p.yaml"
    f.write_text("profiles:\n  small: {timeout: 8h, spare_busy_kernels: true}\n")
    assert main([f"--policies-file={f}"]) == 2
    assert "a policy sets spare_busy_kernels but --server-url is not set" in capsys.readouterr().err
    f.write_text("profiles:\n  gpu: {timeout: 30m, gpu_idle_below: 5}\n")
    assert main([f"--policies-file={f}"]) == 2
    assert "a policy sets gpu_idle_below but --prometheus-url is not set" in capsys.readouterr().err
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  - {slug: small, display_name: Small}\n")
    f.write_text("profiles:\n  gpu: {timeout: 30m}\n")
    assert main([f"--policies-file={f}", f"--profiles-file={profiles}"]) == 2
    assert "profiles.gpu: unknown profile 'gpu'; the spawner's profiles are: small" in capsys.readouterr().err


def test_notice_deadline_is_utc():
    from hubfleet.services.culler.notify import Notice

    n = Notice(user="a", server="", profile="p", reason="r", cull_after="2026-12-01T10:00:00Z", warn_before=900)
    assert "about 15 minute(s)" in n.text() and datetime.now(timezone.utc) - timedelta(days=1) < datetime.now(
        timezone.utc)


def budget_of(user: str, used_up: bool) -> dict:
    """A server of ``GET /hub/api/budgets`` (hubfleet.spawners.queue_web) with one GPU budget."""
    text = f"you have used {20.1 if used_up else 3.0} of 20 GPU-hours in the last 7 days"
    return {"user": user, "server": "", "profile": "warned", "used_up": used_up,
            "budgets": [{"resource": "gpu_hours", "used_hours": 20.1 if used_up else 3.0, "budget_hours": 20,
                         "window": "7 days", "ok": not used_up, "frees_at": None, "text": text}]}


async def test_a_used_up_budget_is_warned_then_culled_unless_unknown_or_freed(fake_hub, tmp_path, webhook, caplog,
                                                                             monkeypatch):
    """ann's budget stays used up, cy's frees up after the warning; dee is within hers. While the hub cannot
    tell (no budgets API), nobody is culled for a budget."""
    hook_url, posts = webhook
    users = {name: server_model(idle=0.5) for name in ("ann", "cy", "dee")}  # all active: idleness culls nobody
    hub = FakeHub(users, page_size=10)
    hub.budgets = [budget_of("ann", True), budget_of("cy", True), budget_of("dee", False)]
    url = await fake_hub(hub)
    app, api = make_app(url, tmp_path, "profiles:\n  warned: {timeout: 1h, warn_before: 2}\n",
                        "--cull-over-budget=True", f"--webhook-url={hook_url}")
    sweeper = app.make_sweeper(api)
    skew = timedelta(0)
    monkeypatch.setattr(sweep_module, "utcnow", lambda: real_utcnow() + skew)

    r1 = await sweeper.sweep()
    assert (r1.warned, r1.culled) == (2, 0), r1.summary()
    assert sorted(p["user"] for p in posts) == ["ann", "cy"]
    assert {p["why"] for p in posts} == {"budget"}
    assert posts[0]["reason"].startswith("budget used up: you have used 20.1 of 20 GPU-hours in the last 7 days "
                                         "(profile warned); culled in 00:00:02 unless the budget frees up")
    assert [w["user"] for w in sweeper.state()["warned"]] == ["ann", "cy"]

    skew = timedelta(seconds=2.5)  # warn_before has passed, but the hub cannot tell now
    hub.budgets = None
    r2 = await sweeper.sweep()
    assert (r2.warned, r2.culled, hub.deleted) == (0, 0, []), r2.summary()
    assert "budgets unknown this sweep" in caplog.text and "queue_web.handlers()" in caplog.text

    hub.budgets = [budget_of("ann", True), budget_of("cy", False), budget_of("dee", False)]
    r3 = await sweeper.sweep()
    api.close()
    assert hub.deleted == ["ann"], r3.summary()
    assert "warning for cy cancelled" in caplog.text
    assert re.search(r"cull ann: budget used up: you have used 20.1 of 20 GPU-hours in the last 7 days \(profile "
                     r"warned\), warned 00:00:0\d ago", caplog.text), caplog.text
    state = sweeper.state()
    assert state["warned"] == [] and [(c["user"], c["why"]) for c in state["culled"]] == [("ann", "budget")]
    assert sweeper.metrics.culls.labels("warned", "budget")._value.get() == 1
