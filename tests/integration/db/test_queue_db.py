"""The spawn queue and the usage records in the hub's database, on SQLite and on a real PostgreSQL server: joining
twice keeps the place, a request is admitted by exactly one of several admitters at once, the queue order and an
admission in flight survive a new process (a hub restart), and ``hubfleet usage`` reports the records."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hubfleet import cli
from hubfleet.db import Database, migrate
from hubfleet.spawners import queue_store as qs
from hubfleet.spawners.usage_cli import parse_window


def _open(url):
    db = Database(url, timeout=10)
    migrate(db, qs.QUEUE)
    return db


def _join(db, user, now, profile="gpu", options=None):
    return db.run(lambda c: qs.join(c, user=user, server_name="", profile=profile, group="g",
                                    user_options=options or {"profile": profile}, now=now), write=True)


def test_queue_order_and_admission_survive_a_restart(db_url):
    db = _open(db_url)
    for i, user in enumerate(["carol", "alice", "bob"]):
        _join(db, user, 100.0 + i)
    first, added = _join(db, "carol", 200.0, options={"profile": "gpu", "image": "other"})
    assert not added and first.joined_at == 100.0 and first.user_options == {"profile": "gpu"}  # same place
    alice = next(e for e in db.run(lambda c: qs.entries(c, profile="gpu")) if e.user == "alice")
    assert db.run(lambda c: qs.claim(c, alice.id, now=300.0), write=True)
    db.dispose()

    again = _open(db_url)  # a new process: the hub after a restart
    rows = again.run(lambda c: qs.entries(c, profile="gpu"))
    assert [(r.user, r.state) for r in rows] == [("carol", "waiting"), ("alice", "admitted"), ("bob", "waiting")]
    assert not again.run(lambda c: qs.claim(c, alice.id, now=301.0), write=True)  # never given twice
    assert again.run(lambda c: qs.leave(c, user="bob", profile="gpu"), write=True)
    assert [r.user for r in again.run(lambda c: qs.entries(c))] == ["carol", "alice"]
    again.dispose()


def test_exactly_one_of_concurrent_admitters_claims(db_url):
    db = _open(db_url)
    entry, _ = _join(db, "dave", 1.0)
    dbs = [Database(db_url, timeout=20) for _ in range(6)]  # six hub processes
    barrier = threading.Barrier(len(dbs))

    def claim(i):
        barrier.wait(timeout=30)
        return dbs[i].run(lambda c: qs.claim(c, entry.id, now=2.0), write=True)

    with ThreadPoolExecutor(len(dbs)) as pool:
        won = list(pool.map(claim, range(len(dbs)), timeout=120))
    assert won.count(True) == 1, won
    for d in dbs + [db]:
        d.dispose()


def test_usage_by_user_group_profile_and_the_cli(db_url, capsys):
    db = _open(db_url)
    day = 86400.0
    now = 10 * day

    def start(user, groups, profile, gpus, at):
        db.run(lambda c: qs.record_start(c, user=user, server_name="", profile=profile, groups=groups, gpus=gpus,
                                         cpu=2, memory=2**30, now=at), write=True)

    def stop(user, at):
        db.run(lambda c: qs.record_stop(c, user=user, server_name="", now=at), write=True)

    start("ann", ["physics"], "gpu", 1, now - 8 * day)  # 2 hours, 8 days ago: outside a 7-day window
    stop("ann", now - 8 * day + 7200)
    start("ann", ["physics"], "gpu", 2, now - 3600)  # 1 hour, still running, 2 GPUs
    start("ben", ["chemistry", "physics"], "small", 0, now - 2 * 3600)
    stop("ben", now - 3600)
    by_user = {r["key"]: r for r in db.run(lambda c: qs.usage(c, since=now - 7 * day, by="user", now=now))}
    assert by_user["ann"]["gpu_hours"] == pytest.approx(2.0) and by_user["ann"]["servers"] == 1
    assert by_user["ben"]["hours"] == pytest.approx(1.0) and by_user["ben"]["cpu_hours"] == pytest.approx(2.0)
    by_group = {r["key"]: r for r in db.run(lambda c: qs.usage(c, since=now - 7 * day, by="group", now=now))}
    assert by_group["physics"]["hours"] == pytest.approx(2.0) and by_group["chemistry"]["hours"] == pytest.approx(1.0)
    by_profile = [r["key"] for r in db.run(lambda c: qs.usage(c, since=now - 7 * day, by="profile", now=now))]
    assert by_profile == ["gpu", "small"]
    lengths = db.run(lambda c: qs.session_lengths(c, profile="gpu"))
    assert lengths == [7200.0]
    db.dispose()

    assert cli.main(["usage", "--since", "3650d", "--by", "profile", "--csv", "--db-url", db_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "profile,servers,hours,gpu_hours,cpu_hours"
    # the CLI's now is the real one: only the server still running reaches into the last 3650 days
    assert out[1].startswith("gpu,1,") and len(out) == 2
    assert cli.main(["usage", "--since", "seven days", "--db-url", db_url]) == 2
    assert "--since" in capsys.readouterr().err


def test_admin_page_counts_the_usage_records_stopped_servers_too(db_url):
    """The admin page's usage reads the same records as ``hubfleet usage`` and the budgets: a server that stopped
    within the window counts, one that stopped before it does not, and a viewer's own records are read alone."""
    import asyncio
    from datetime import datetime, timezone

    from hubfleet.services.adminpage.app import DurableUsageSource
    from hubfleet.services.adminpage.usage import aggregate

    db = _open(db_url)
    now = 100 * 86400.0
    for user, groups, gpus, started, stopped in (("ann", ["physics"], 1, now - 9 * 86400, now - 8 * 86400),
                                                 ("ann", ["physics"], 2, now - 3 * 3600, now - 3600),
                                                 ("ben", [], 0, now - 3600, None)):
        db.run(lambda c: qs.record_start(c, user=user, server_name="", profile="gpu" if gpus else "small",
                                         groups=groups, gpus=gpus, cpu=1, memory=0, now=started), write=True)
        if stopped is not None:
            db.run(lambda c: qs.record_stop(c, user=user, server_name="", now=stopped), write=True)
    at = datetime.fromtimestamp(now, timezone.utc)
    start = datetime.fromtimestamp(now - 7 * 86400, timezone.utc)
    source = DurableUsageSource(db)
    spans = asyncio.run(source.intervals(start, at))
    by_user = aggregate(spans, start=start, end=at, now=at, by="user")
    assert set(by_user) == {"ann", "ben"}
    assert by_user["ann"].server_hours == pytest.approx(2.0) and by_user["ann"].gpu_hours == pytest.approx(4.0)
    assert by_user["ben"].server_hours == pytest.approx(1.0) and by_user["ben"].gpu_hours == 0
    by_group = aggregate(spans, start=start, end=at, now=at, by="group")
    assert set(by_group) == {"physics", "(no group)"}
    mine = asyncio.run(source.intervals(start, at, user="ben"))
    assert [i.user for i in mine] == ["ben"] and mine[0].end is None
    db.dispose()


def test_windows_parse():
    assert parse_window("7d") == 7 * 86400 and parse_window("12h") == 43200 and parse_window("90") == 90
    for bad in ("", "0d", "-1h", "7 days", "1y"):
        with pytest.raises(ValueError):
            parse_window(bad)
