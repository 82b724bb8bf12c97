"""The spawn-duration history in the hub's database (SQLite and a real PostgreSQL): the usual spawn time a profile
shows comes from it, survives a new process, and stays bounded."""

from __future__ import annotations

from hubfleet.db import Database, migrate
from hubfleet.spawners.events import usual_time
from hubfleet.spawners.history_db import COMPONENT, read_durations, record_duration


def test_durations_per_profile_survive_a_new_process_and_stay_bounded(db_url):
    db = Database(db_url)
    migrate(db, COMPONENT)
    for s in (20, 22, 25, 30, 31, 33, 40, 41, 45, 130):
        db.run(record_duration, "large", s, write=True)
    db.run(record_duration, "small", 3.5, write=True)
    db.dispose()

    again = Database(db_url)  # another hub process, or the hub after a restart
    migrate(again, COMPONENT)
    large = again.run(read_durations, "large")
    assert sorted(large) == [20, 22, 25, 30, 31, 33, 40, 41, 45, 130]
    assert usual_time("Large", large) == "Servers of the Large profile usually start in 31 s (9 in 10 within 45 s)."
    assert again.run(read_durations, "small") == [3.5]
    for s in range(7):
        again.run(lambda conn, s=s: record_duration(conn, "large", 100 + s, keep=5), write=True)
    assert again.run(read_durations, "large") == [106, 105, 104, 103, 102], "only the newest kept"
    again.dispose()


def test_a_failed_spawn_is_kept_bounded_with_bytes_that_are_not_utf8_replaced(tmp_path):
    from hubfleet.spawners.failures_db import COMPONENT as FAILURES, read_failures, record_failure

    db = Database(f"sqlite:///{tmp_path}/jupyterhub.sqlite")
    migrate(db, FAILURES)
    huge = b"".join(b"line %d \xff\xfe\n" % i for i in range(100_000)) + b"x" * 10_000
    events = [{"type": "Warning", "reason": "BackOff", "message": f"Back-off {i}", "count": 2} for i in range(80)]
    db.run(lambda conn: record_failure(conn, user="olga", profile="small", pod="jupyter-olga",
                                       reason="Your server used more than its 256 MiB memory limit while starting",
                                       events=events, logs={"notebook": huge}, max_events=30, max_lines=100),
           write=True)
    [kept] = db.run(lambda conn: read_failures(conn, user="olga"))
    assert [e["message"] for e in kept.events] == [f"Back-off {i}" for i in range(50, 80)]
    lines = kept.logs["notebook"]
    assert len(lines) == 100 and lines[-2] == "line 99999 \ufffd\ufffd"
    assert len(lines[-1]) <= 2001, "a line is cut too"
    assert db.run(lambda conn: read_failures(conn, user="someone-else")) == []
    db.dispose()
