"""The admin page's pure parts: who sees what, bounded UTF-8-safe log text, usage arithmetic, escaped HTML/SVG/CSV,
the server rows, the saved failures' table and the service entry."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from hubfleet.config.adminpage import admin_page_service
from hubfleet.db import Database
from hubfleet.services.adminpage import render
from hubfleet.services.adminpage.access import viewer
from hubfleet.services.adminpage.fleet import culler_notes, gpus_of, server_rows
from hubfleet.services.adminpage.logtext import LineSplitter, lines_of
from hubfleet.services.adminpage.usage import UsageInterval, aggregate
from hubfleet.services.culler.state import remember_cull
from hubfleet.spawners.failures_db import load_failures, save_failure

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
EVIL = "<script>alert(1)</script>"


@pytest.mark.parametrize("scopes, sees_all", [
    (["admin:servers"], True),
    (["custom:hubfleet-admin-page:view"], True),
    (["admin:servers!user=alice"], False),           # a filtered scope never widens the view
    (["custom:hubfleet-admin-page:view!user=alice"], False),
    (["read:servers", "access:services"], False),
    ([], False),
])
def test_viewer_scopes(scopes, sees_all):
    v = viewer({"name": "alice", "scopes": scopes})
    assert v.sees_all is sees_all
    assert v.may_see("alice") and v.may_see("bob") is sees_all


def test_log_lines_bounded_and_replaced():
    data = b"a\n\xff\xfe bad\nCR \rx\n" + b"y" * 10_000 + b"\n" + b"".join(b"l%d\n" % i for i in range(500))
    lines = lines_of(data, max_lines=1000, max_line=100)
    assert lines[:3] == ["a", "\ufffd\ufffd bad", "CR x"]
    assert lines[3] == "y" * 100 + " …[cut]"
    assert lines_of(data, max_lines=5) == ["l495", "l496", "l497", "l498", "l499"]


def test_line_splitter_across_chunks():
    s = LineSplitter(max_line=50)
    euro = "€".encode()
    assert s.feed(b"one\ntw" + euro[:1]) == ["one"]
    assert s.feed(euro[1:] + b"o\n\xff\n") == ["tw€o", "\ufffd"]
    assert s.feed(b"z" * 120) == ["z" * 50 + " …[cut]"]  # a partial line never grows without bound
    assert s.feed(b"tail\rend") == [] and s.flush() == ["tailend"]


def interval(user, start_h, end_h, *, gpus=0, groups=("g",), profile="small"):
    return UsageInterval(user, "", profile, groups, gpus, T0 + timedelta(hours=start_h),
                         None if end_h is None else T0 + timedelta(hours=end_h))


def test_usage_aggregate_clips_to_window_and_counts_groups():
    spans = [interval("alice", 0, 10), interval("bob", 5, None, gpus=2, groups=("g", "h"), profile="gpu"),
             interval("carol", 20, 30, groups=())]
    start, end, now = T0 + timedelta(hours=4), T0 + timedelta(hours=24), T0 + timedelta(hours=8)
    by_user = aggregate(spans, start=start, end=end, now=now, by="user")
    assert {k: (t.server_hours, t.gpu_hours) for k, t in by_user.items()} == {"alice": (4, 0), "bob": (3, 6)}
    by_group = aggregate(spans, start=start, end=end, now=now, by="group")
    assert {k: t.server_hours for k, t in by_group.items()} == {"g": 7, "h": 3}
    later = aggregate(spans, start=start, end=end, now=T0 + timedelta(hours=40), by="group")
    assert later["(no group)"].server_hours == 4  # carol's 20h-24h inside the window
    assert list(aggregate(spans, start=start, end=end, now=now, by="profile")) == ["small", "gpu"]
    with pytest.raises(ValueError, match="by must be one of user, group, profile"):
        aggregate(spans, start=start, end=end, now=now, by="node")


def test_render_escapes_everything():
    row = {"user": EVIL, "server": "s'\"", "profile": EVIL, "node": EVIL, "phase": "Running", "started": T0,
           "last_activity": T0, "culler": ""}
    html = render.servers_table([row], prefix="/p/", now=T0)
    assert "<script>" not in html and "&lt;script&gt;" in html and "s&#x27;&quot;" in html
    html = render.log_block(EVIL, [EVIL], follow_url="/p/logs?x=<b>", tail=10)
    assert "<script>" not in html and "x=&lt;b&gt;" in html
    svg = render.bar_chart(EVIL, {EVIL: 2.0, "b": 1.0}, unit="h")
    assert svg.startswith("<svg") and "<script>" not in svg and svg.count("<rect") == 2
    assert "no usage in this window" in render.bar_chart("t", {}, unit="h")


def test_usage_csv_quotes_formulas():
    from hubfleet.services.adminpage.usage import Totals
    text = render.usage_csv({"=cmd()": Totals(1.5, 0), "alice": Totals(2, 1)}, by="user")
    assert text.splitlines() == ["user,server_hours,gpu_hours", "'=cmd(),1.5000,0.0000", "alice,2.0000,1.0000"]


def test_server_rows_join_pods_by_annotation():
    users = [{"name": "alice", "groups": ["b", "a"], "servers": {
        "": {"started": "2026-12-01T00:00:00.000000Z", "last_activity": "2026-12-01T01:00:00Z", "ready": True,
             "user_options": {"profile": "from-options"}},
        "gpu": {"started": None, "pending": "spawn", "user_options": {"profile": "gpu"}}}}]
    pods = [
        {"metadata": {"name": "jupyter-alice", "labels": {"hubfleet.io/profile": "small"},
                      "annotations": {"hub.jupyter.org/username": "alice", "hub.jupyter.org/servername": ""}},
         "spec": {"nodeName": "cpu-1", "containers": [{"name": "notebook"}, {"name": "side"}]},
         "status": {"phase": "Running"}},
        {"metadata": {"name": "jupyter-mallory", "annotations": {"hub.jupyter.org/username": "mallory"}},
         "spec": {}, "status": {}},
    ]
    rows = server_rows(users, pods)
    assert [(r["server"], r["profile"], r["node"], r["pod"], r["phase"]) for r in rows] == [
        ("", "small", "cpu-1", "jupyter-alice", "Running"), ("gpu", "gpu", "", "", "pending")]
    assert rows[0]["containers"] == ["notebook", "side"] and rows[0]["groups"] == ("a", "b")
    assert server_rows(users, None)[0]["profile"] == "from-options"  # pods unknown: the hub's word
    assert gpus_of({"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}},
                                            {"resources": {"limits": {"amd.com/gpu": 1, "cpu": "4"}}}]}}) == 3


def test_failures_saved_bounded_and_read_back(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/hub.sqlite")

    async def go():
        await save_failure(db, user="alice", server="", profile="small", pod="jupyter-alice", reason="OOMKilled",
                           events=[{"reason": f"E{i}", "message": "m"} for i in range(80)],
                           logs={"notebook": b"x\xff\n" * 500 + b"z" * 5000}, max_line_chars=100)
        await save_failure(db, user="bob", reason="other")
        return await load_failures(db, user="alice")

    try:
        [f] = asyncio.run(go())
    finally:
        db.dispose()
    assert f.reason == "OOMKilled" and len(f.events) == 50 and f.events[-1]["reason"] == "E79"
    assert len(f.logs["notebook"]) == 200 and f.logs["notebook"][0] == "x\ufffd"
    assert f.logs["notebook"][-1] == "z" * 100 + "…"


def test_service_entry_and_roles():
    page = admin_page_service(port=10102, db_url="sqlite:///x.sqlite", viewer_groups=["support"])
    assert page.service["url"] == "http://127.0.0.1:10102" and page.service["display"] is True
    assert page.service["oauth_client_allowed_scopes"] == ["admin:servers", "custom:hubfleet-admin-page:view"]
    assert page.service["environment"]["HUBFLEET_DB_URL"] == "sqlite:///x.sqlite"
    roles = {r["name"]: r for r in page.roles}
    assert not {"admin:servers", "delete:servers", "tokens", "admin:users"} & set(roles["hubfleet-admin-page"]["scopes"])
    assert roles["hubfleet-admin-page-viewers"]["groups"] == ["support"]
    assert roles["user"]["scopes"] == ["self", "access:services!service=hubfleet-admin-page"]
    assert "custom:hubfleet-admin-page:view" in page.custom_scopes
    assert "user" not in {r["name"] for r in admin_page_service(all_users=False).roles}
    with pytest.raises(ValueError, match="port must be a TCP port"):
        admin_page_service(port=0)
    with pytest.raises(ValueError, match="view_scope must be a custom scope"):
        admin_page_service(view_scope="admin:servers")


def test_the_culler_column_says_the_warning_running_and_the_last_cull():
    culled = __import__("collections").OrderedDict()
    for i in range(5):  # the culler keeps a bounded number of culls, the latest
        remember_cull(culled, (f"u{i}", ""), at=T0, why="idle", reason=f"inactive {i}", keep=3)
    remember_cull(culled, ("u2", ""), at=T0 + timedelta(hours=1), why="budget", reason="budget used up", keep=3)
    assert list(culled) == [("u3", ""), ("u4", ""), ("u2", "")]
    state = {"warned": [{"user": "u2", "server": "", "warned_at": "2026-12-01T02:00:00Z",
                         "cull_after": "2026-12-01T02:10:00Z", "why": "budget", "reason": EVIL}],
             "culled": [{"user": u, "server": s, **c} for (u, s), c in culled.items()]}
    notes = culler_notes(state)
    assert notes[("u2", "")] == (f"warned 2026-12-01 02:00:00 UTC (budget), stopped after 2026-12-01 02:10:00 UTC: "
                                 f"{EVIL}; culled 2026-12-01 01:00:00 UTC (budget): budget used up")
    users = [{"name": "u2", "servers": {"": {"started": T0.isoformat()}}},
             {"name": "u9", "servers": {"": {"started": T0.isoformat()}}}]
    rows = server_rows(users, None, notes)
    assert [r["culler"] for r in rows] == [notes[("u2", "")], ""]
    html = render.servers_table(rows, prefix="/p/", now=T0)
    assert EVIL not in html and "&lt;script&gt;" in html and "<td>—</td><td><a" in html  # u9: no note


def test_queue_section_per_profile_escaped_and_absent_without_a_queue():
    at = T0.timestamp()
    listing = {"queues": ["gpu", EVIL], "queued": [
        {"user": "ann", "profile": "gpu", "server_name": "", "state": "admitted", "position": 0, "waiting": 2,
         "joined_at": at - 600, "start_by": at + 300, "expected": None, "at_latest": None},
        {"user": EVIL, "profile": "gpu", "server_name": EVIL, "state": "waiting", "position": 1, "waiting": 2,
         "joined_at": at - 90, "start_by": None, "expected": at + 3600, "at_latest": at + 86400},
        {"user": "bea", "profile": EVIL, "server_name": "", "state": "waiting", "position": 1, "waiting": 1,
         "joined_at": at - 30, "start_by": None, "expected": None, "at_latest": None},
    ]}
    html = render.queue_section(listing, now=T0)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<table class='queue'") == 2 and "Profile gpu: 2 waiting" in html
    assert ("<tr><td>—</td><td>ann</td><td>(default)</td><td>admitted, start by 2026-12-01 00:05 UTC</td>"
            "<td>2026-11-30 23:50 UTC (10m 0s ago)</td><td>—</td><td>—</td></tr>") in html
    assert ("<td>waiting</td><td>2026-11-30 23:58 UTC (1m 30s ago)</td><td>2026-12-01 01:00 UTC</td>"
            "<td>2026-12-02 00:00 UTC</td>") in html
    assert "Nobody is waiting." in render.queue_section({"queues": ["gpu"], "queued": []}, now=T0)
    assert render.queue_section(None, now=T0) == ""  # the hub has no queue (404): no section
    assert render.queue_section({"queues": [], "queued": []}, now=T0) == ""
