"""The spawn page of a queued user in headless Chromium, in a real hub on the devcluster: the position and the
budget appear, and when the running server stops the page itself (no reload) says the server was admitted; with a
claim window it offers the start instead.
Screenshots: test-artifacts/queue-position.png, queue-admitted.png, queue-claim.png."""

from __future__ import annotations

import re
import secrets
import time

from hubfleet.db import Database, migrate
from hubfleet.spawners import queue_store as qs

from tests.integration.spawner.test_profile_spawner import logged_in_page, make_users, spawn, stop, stop_all
from tests.integration.spawner.test_queue import queue_config


def test_spawn_page_shows_position_budget_and_admission(start_hub, devcluster, artifacts):
    hub = start_hub(queue_config(secrets.token_hex(32)))
    make_users(hub, "runner", "wanda", groups={"gpu-users": ["runner", "wanda"]})
    db = Database(f"sqlite:///{hub.state}/jupyterhub.sqlite", timeout=10)
    migrate(db, qs.QUEUE)
    now = time.time()
    db.run(lambda c: qs.record_start(c, user="wanda", server_name="x", profile="small", groups=[], gpus=0, cpu=1,
                                     memory=0, now=now - 3 * 3600), write=True)
    db.run(lambda c: qs.record_stop(c, user="wanda", server_name="x", now=now - 2 * 3600), write=True)
    db.dispose()
    assert spawn(hub, "runner", {"profile": "q"})[0] in (201, 202)
    hub.wait_ready("runner", timeout=120)
    status, body = spawn(hub, "wanda", {"profile": "q"})
    assert status == 429, body
    hub.wait_stopped("wanda")

    with logged_in_page(hub, "wanda") as page:
        page.goto(f"{hub.url}/hub/spawn", timeout=30_000)
        entry = page.locator(".hubfleet-queue-entry")
        entry.wait_for(timeout=30_000)
        assert "You are number 1 of 1 waiting for 'q'" in entry.inner_text()
        budget = page.locator(".hubfleet-budget").inner_text()
        assert "you have used 1.0 of 1 CPU-hours in the last 7 days; 0.5 CPU-hours free up on" in budget, budget
        assert page.locator(".hubfleet-queue-leave").is_visible()
        page.screenshot(path=str(artifacts / "queue-position.png"), full_page=True)

        stop(hub, "runner")  # the slot frees: wanda is admitted; the open page notices by itself
        admitted = page.locator(".hubfleet-queue-admitted")
        admitted.wait_for(timeout=60_000)
        assert "was admitted from the queue and is starting" in admitted.inner_text()
        page.screenshot(path=str(artifacts / "queue-admitted.png"), full_page=True)
    hub.wait_ready("wanda", timeout=120)
    stop_all(hub, devcluster)


def test_spawn_page_with_a_claim_window_offers_the_start(start_hub, devcluster, artifacts):
    """With a claim window the admitted user's page says "ready to start: admitted, start by HH:MM" and its "Start
    now" button starts the server with the queued options; while waiting, no culler max_age: "no upper bound".
    Screenshot: test-artifacts/queue-claim.png."""
    hub = start_hub(queue_config(secrets.token_hex(32), 'c.ProfileSpawner.queue_claim_window = "10m"\n'
                                                        "c.ProfileSpawner.budgets = []"))
    make_users(hub, "runner", "cleo", groups={"gpu-users": ["runner", "cleo"]})
    assert spawn(hub, "runner", {"profile": "q"})[0] in (201, 202)
    hub.wait_ready("runner", timeout=120)
    assert spawn(hub, "cleo", {"profile": "q"})[0] == 429
    hub.wait_stopped("cleo")

    with logged_in_page(hub, "cleo") as page:
        page.goto(f"{hub.url}/hub/spawn", timeout=30_000)
        entry = page.locator(".hubfleet-queue-entry")
        entry.wait_for(timeout=30_000)
        text = entry.inner_text()
        assert "at the latest: no upper bound" in text and "you have 10 min to start" in text, text
        stop(hub, "runner")
        claim = page.locator(".hubfleet-queue-claim")
        claim.wait_for(timeout=60_000)
        assert "Your 'q' server is ready to start: admitted, start by " in claim.inner_text()
        page.screenshot(path=str(artifacts / "queue-claim.png"), full_page=True)
        page.locator(".hubfleet-queue-start").click()
        page.wait_for_url(re.compile(r"/(hub/spawn-pending/cleo|user/cleo/)"), timeout=60_000)  # pending, or ready
    model = hub.wait_ready("cleo", timeout=120)
    assert model["user_options"]["profile"] == "q"
    stop_all(hub, devcluster)
