"""The spawn queue in a real hub on the devcluster: a spawn over a ``queue: true`` profile's quota joins the queue
(429 "Queued", not a pending spawn); joining twice keeps the place; the order survives a hub restart; when the
running server stops, the next request is admitted and its server starts with the options it was queued with,
without its user doing anything, and the user is told (a real webhook); a direct spawn does not overtake; a user deleted while waiting is dropped; the
database unreachable refuses the queued profile and leaves the others alone.

Run it on both stacks: ``../run-tests tests/integration/spawner/test_queue.py`` and with ``VENV=.../.venv-hub``.
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from hubfleet.db import Database
from hubfleet.spawners import queue_store as qs

from tests.procs import wait_for

from tests.notify_servers import webhook  # noqa: F401  (fixture)
from .test_profile_spawner import IMG, hub_config, make_users, pod, spawn, stop, stop_all

RES = {"cpu": {"guarantee": 0.01, "limit": 1}, "memory": {"guarantee": "64M", "limit": "1G"}}
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True, "image": IMG, **RES},
    {"slug": "q", "display_name": "Queued", "image": IMG, "quota": 1, "queue": True,
     "access": {"groups": ["gpu-users"]}, "env": {"QUEUED_WITH": "yes"}, **RES},
]


def queue_config(token: str, extra: str = "") -> str:
    return hub_config(f"""
from hubfleet.config.queue import enable_queue
c.ProfileSpawner.profiles = {PROFILES!r}
enable_queue(c, api_token={token!r})
c.ProfileSpawner.queue_admit_interval = 2
c.ProfileSpawner.queue_order = "fifo"
c.ProfileSpawner.consecutive_failure_limit = 3  # joining a queue is no failure: four joins in a row keep the hub up
c.ProfileSpawner.budgets = [{{"cpu_hours": 1, "window": "7d", "profile": "small"}}]
{extra}
""")


def my_queue(hub, user):
    r = requests.get(f"{hub.url}/hub/api/queue", headers={"Authorization": f"token {hub.tokens[user]}"}, timeout=30)
    assert r.status_code == 200, r.text
    return {q["profile"]: q for q in r.json()["queued"]}


def pod_exists(devcluster, user):
    return bool(devcluster.pods(selector=f"hub.jupyter.org/username={user}"))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_queue_admission_order_restart_and_drops(start_hub, devcluster, database, request, webhook):
    token = secrets.token_hex(32)
    pg = request.getfixturevalue("pg_url") if database == "postgresql" else None
    hook_url, posts = webhook
    hub = start_hub(queue_config(token, (f"c.JupyterHub.db_url = {pg!r}\n" if pg else "")
                                 + f"c.WebhookNotifier.url = {hook_url!r}"))
    db_url = pg or f"sqlite:///{hub.state}/jupyterhub.sqlite"
    users = ["run1", "w1", "w2", "w3", "late"]
    make_users(hub, *users, "outsider", groups={"gpu-users": users})
    hub.tokens = {u: hub.user_token(u) for u in users}

    assert spawn(hub, "run1", {"profile": "q"})[0] in (201, 202)
    hub.wait_ready("run1", timeout=120)
    for i, user in enumerate(["w1", "w2", "w3"], start=1):
        status, body = spawn(hub, user, {"profile": "q"})
        assert status == 429 and f"you are number {i} of {i} waiting" in body["message"], (user, status, body)
        hub.wait_stopped(user)  # not a pending spawn
    status, body = spawn(hub, "w1", {"profile": "q"})  # joining twice: the same place
    assert status == 429 and "you are number 1 of 3" in body["message"], body
    status, body = spawn(hub, "outsider", {"profile": "q"})  # may not use the profile: 403 as without a queue
    assert status == 403, body
    assert [my_queue(hub, u)["q"]["position"] for u in ("w1", "w2", "w3")] == [1, 2, 3]

    # -- a budget: 1 CPU-hour of 'small' per 7 days, used up by a record of 1 CPU for an hour, ended 2 hours ago
    db = Database(db_url, timeout=10)
    now = time.time()
    db.run(lambda c: qs.record_start(c, user="late", server_name="x", profile="small", groups=["gpu-users"], gpus=0,
                                     cpu=1, memory=0, now=now - 3 * 3600), write=True)
    db.run(lambda c: qs.record_stop(c, user="late", server_name="x", now=now - 2 * 3600), write=True)
    db.dispose()
    status, body = spawn(hub, "late", {"profile": "small"})
    assert status == 403 and body["message"].startswith(
        "Budget used up: You have used 1.0 of 1 CPU-hours in the last 7 days; 0.5 CPU-hours free up on "), body
    hub.wait_stopped("late")
    budget = requests.get(f"{hub.url}/hub/api/queue", headers={"Authorization": f"token {hub.tokens['late']}"},
                          timeout=30).json()["budgets"]
    assert [(b["used_hours"], b["budget_hours"], b["ok"]) for b in budget] == [(pytest.approx(1.0), 1.0, False)]

    # -- a hub restart keeps the order (and the running server)
    hub.restart()
    assert [(my_queue(hub, u)["q"]["position"], my_queue(hub, u)["q"]["waiting"]) for u in ("w1", "w2", "w3")] \
        == [(1, 3), (2, 3), (3, 3)]

    # -- the slot frees: w1 is admitted and started with its queued options, nobody else
    stop(hub, "run1")
    model = hub.wait_ready("w1", timeout=120)
    assert model["user_options"]["profile"] == "q"
    env = {e["name"]: e.get("value") for e in pod(devcluster, "w1")["spec"]["containers"][0]["env"]}
    assert env.get("QUEUED_WITH") == "yes"
    assert not pod_exists(devcluster, "w2") and my_queue(hub, "w2")["q"]["position"] == 1
    post = wait_for("the admission webhook for w1", lambda: [p for p in posts if p["user"] == "w1"], timeout=30)[0]
    assert (post["event"], post["profile"], post["start_by"]) == ("queue_admitted", "q", "")  # started for them
    # -- a direct spawn does not overtake
    status, body = spawn(hub, "late", {"profile": "q"})
    assert status == 429 and "number 3 of 3" in body["message"], body

    # -- w2 deleted while waiting: dropped with a log line, never admitted; w3 is next
    assert hub.api("DELETE", "/users/w2")[0] == 204
    stop(hub, "w1")
    hub.wait_ready("w3", timeout=120)
    assert "dropping w2's request for 'q'" in hub.log_tail(400)
    assert my_queue(hub, "late")["q"]["position"] == 1
    status, body = hub.api("POST", "/users/late/tokens", json={"scopes": ["read:servers!user=late"]})
    assert status == 201, body
    r = requests.delete(f"{hub.url}/hub/api/queue/q", headers={"Authorization": f"token {body['token']}"},
                        timeout=30)  # a read-only token may not leave the queue
    assert r.status_code == 403 and my_queue(hub, "late")["q"]["position"] == 1, r.text
    r = requests.delete(f"{hub.url}/hub/api/queue/q", headers={"Authorization": f"token {hub.tokens['late']}"},
                        timeout=30)
    assert r.status_code == 204 and my_queue(hub, "late") == {}
    stop_all(hub, devcluster)


def test_database_down_refuses_queued_profile_only(start_hub, devcluster):
    """Fail closed: the queued (and budgeted) profile is refused with a message, the listing of the queue answers
    503; 'small', with no queue and no budget, starts."""
    hub = start_hub(queue_config(secrets.token_hex(32), """
c.ProfileSpawner.db_url = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
c.ProfileSpawner.db_timeout = 2
c.ProfileSpawner.budgets = [{"cpu_hours": 1, "window": "7d", "profile": "q"}]
"""))
    make_users(hub, "dana", "eve", groups={"gpu-users": ["dana", "eve"]})
    status, body = spawn(hub, "dana", {"profile": "q"})  # the quota has room, but whether anyone waits is unknown
    assert status == 503 and "the hub's database cannot be reached" in body["message"], body
    hub.wait_stopped("dana")
    status, body = hub.api("GET", "/queue?all=1")  # the admin page's listing: says so, never an empty queue
    assert status == 503 and "the queue is unavailable" in body["message"], body
    assert spawn(hub, "eve", {"profile": "small"})[0] in (201, 202)
    hub.wait_ready("eve", timeout=120)
    stop_all(hub, devcluster)
