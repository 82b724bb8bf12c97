"""What a queued user and the admin page are shown of the spawn queue: one place arithmetic (the order of admission,
fair share here) for a user's own status (``/hub/api/queue``) and the listing of every request
(``/hub/api/queue?all=1``), from real queue rows in a SQLite database."""

from __future__ import annotations

import time

from hubfleet.db import Database, migrate
from hubfleet.spawners import queue_store as qs

from .test_profiles_spawner import IMG, make_spawner, no_cluster  # noqa: F401  (no_cluster: an autouse fixture)

PROFILES = {"profiles": [
    {"slug": "small", "default": True, "image": IMG},
    {"slug": "q", "image": IMG, "quota": 1, "queue": True},
]}


async def test_status_and_listing_show_the_fair_share_places(tmp_path):
    url = f"sqlite:///{tmp_path}/hub.sqlite"
    db = Database(url)
    migrate(db, qs.QUEUE)
    now = time.time()

    def fill(conn):
        # the group "heavy" used a GPU for 10 h this week, "light" nothing: light's request goes first
        qs.record_start(conn, user="old", server_name="", profile="q", groups=["heavy"], gpus=1, cpu=1, memory=0,
                        now=now - 11 * 3600)
        qs.record_stop(conn, user="old", server_name="", now=now - 3600)
        for n, (user, group) in enumerate([("adm", "heavy"), ("h1", "heavy"), ("l1", "light"), ("h2", "heavy")]):
            qs.join(conn, user=user, server_name="", profile="q", group=group, user_options={"profile": "q"},
                    now=now - 100 + n)
        first = qs.entries(conn, user="adm")[0]
        qs.claim(conn, first.id, now=now)

    db.run(fill, write=True)
    db.dispose()
    spawner = make_spawner("h1", db_url=url, profiles=PROFILES)
    listing = await spawner.queue_listing()
    assert [(q["user"], q["state"], q["position"], q["waiting"]) for q in listing] == [
        ("adm", "admitted", 0, 3), ("l1", "waiting", 1, 3), ("h1", "waiting", 2, 3), ("h2", "waiting", 3, 3)]
    status = await spawner.queue_status("h1")
    assert [(q["user"], q["position"], q["waiting"]) for q in status["queued"]] == [("h1", 2, 3)]
    assert status["queued"][0] == listing[2], "the user's own status is their row of the listing"
    assert await spawner.queue_listing("nobody") == []
