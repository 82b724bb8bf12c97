"""The spawn queue's claim window, "at the latest" and admission notices, in a real hub on the devcluster: a waiting
user is shown when a slot frees at the latest (the culler's ``max_age`` from its policies file); with a claim window
the admitted user is not started but told (page JSON, a real SMTP server, a real webhook) and the slot is theirs
alone until they start; an admission left unclaimed past its window passes to the next in line with a log line; a
notifier that fails is logged and the admission stands.

Run it on both stacks: ``../run-tests tests/integration/spawner/test_queue_claim.py`` and with ``VENV=.../.venv-hub``.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from hubfleet.db import Database
from hubfleet.spawners import queue_store as qs

from tests.procs import wait_for

from tests.notify_servers import mails_to, smtp, webhook  # noqa: F401  (fixtures)
from .test_profile_spawner import IMG, hub_config, make_users, spawn, stop, stop_all
from .test_queue import RES, my_queue, pod_exists

MAX_AGE = 2 * 3600
WINDOW = 120


def test_claim_window_at_the_latest_and_admission_notices(start_hub, devcluster, smtp, webhook, tmp_path):
    controller, box = smtp
    hook_url, posts = webhook
    policies = tmp_path / "culler-policies.yaml"
    policies.write_text(f"profiles:\n  qc: {{timeout: 1h, max_age: {MAX_AGE}}}\n")
    profiles = [{"slug": "small", "display_name": "Small", "default": True, "image": IMG, **RES},
                {"slug": "qc", "display_name": "Claimed", "image": IMG, "quota": 1, "queue": True,
                 "claim_window": "2m", "access": {"groups": ["gpu-users"]}, **RES}]
    hub = start_hub(hub_config(f"""
from hubfleet.config.queue import enable_queue
c.ProfileSpawner.profiles = {profiles!r}
enable_queue(c)
c.ProfileSpawner.queue_admit_interval = 1
c.ProfileSpawner.queue_order = "fifo"
c.ProfileSpawner.queue_cull_policies_file = {str(policies)!r}
c.ProfileSpawner.consecutive_failure_limit = 0
c.SMTPNotifier.host = "127.0.0.1"
c.SMTPNotifier.port = {controller.port}
c.SMTPNotifier.to = "{{username}}@uni.example"
c.WebhookNotifier.url = {hook_url!r}
"""))
    users = ["run1", "w1", "w2", "w3", "late"]
    make_users(hub, *users, groups={"gpu-users": users})
    hub.tokens = {u: hub.user_token(u) for u in users}
    db = Database(f"sqlite:///{hub.state}/jupyterhub.sqlite", timeout=10)

    assert spawn(hub, "run1", {"profile": "qc"})[0] in (201, 202)
    hub.wait_ready("run1", timeout=120)
    started = wait_for("run1's usage record", lambda: db.run(lambda c: qs.running(c, profile="qc")), timeout=30)[0][2]
    for i, user in enumerate(["w1", "w2", "w3"], start=1):
        status, body = spawn(hub, user, {"profile": "qc"})
        assert status == 429 and f"you are number {i} of {i} waiting" in body["message"], (user, status, body)

    # -- at the latest: run1's max_age deadline for the first in line; one max_age and one claim window more after
    w1, w2 = my_queue(hub, "w1")["qc"], my_queue(hub, "w2")["qc"]
    assert w1["at_latest"] == pytest.approx(started + MAX_AGE, abs=1), (w1, started)
    assert w2["at_latest"] == pytest.approx(started + 2 * MAX_AGE + WINDOW, abs=1), (w2, started)
    assert (w1["claim_window"], w1["start_by"]) == (WINDOW, None)

    # -- the slot frees: w1 is admitted with two minutes to start, told by mail and webhook, and not started
    stop(hub, "run1")
    claim = wait_for("w1 admitted with a start-by time", lambda: my_queue(hub, "w1")["qc"].get("start_by"),
                     timeout=60, seen=lambda: hub.log_tail(20))
    assert time.time() < claim <= time.time() + WINDOW
    mail = wait_for("the admission mail to w1", lambda: mails_to(box, "w1@uni.example"), timeout=30,
                    seen=lambda: hub.log_tail(20))[0]
    assert mail["Subject"] == "Your JupyterHub server is ready to start"
    assert "'Claimed' slot is free: your server is ready to start. Start it by " in mail.get_payload()
    assert "/hub/spawn/w1" in mail.get_payload()
    post = wait_for("the admission webhook for w1", lambda: [p for p in posts if p["user"] == "w1"], timeout=30)[0]
    assert (post["event"], post["profile"], bool(post["start_by"])) == ("queue_admitted", "qc", True)
    status, model = hub.api("GET", "/users/w1")
    assert status == 200 and not model["servers"], model  # told, not started for them
    assert my_queue(hub, "w1")["qc"]["state"] == "admitted"

    # -- the reserved slot: a direct spawn does not take it, and nobody else is admitted
    status, body = spawn(hub, "late", {"profile": "qc"})
    assert status == 429 and "number 3 of 3" in body["message"], body
    assert [my_queue(hub, u)["qc"]["state"] for u in ("w2", "w3")] == ["waiting", "waiting"]

    # -- w1 starts within the window: the claim is consumed
    assert spawn(hub, "w1", {"profile": "qc"})[0] in (201, 202)
    hub.wait_ready("w1", timeout=120)
    assert my_queue(hub, "w1") == {}

    # -- w2 is admitted next and lets the window pass (its admission is back-dated past the window, so the test
    #    waits for the next admission pass, not for two minutes): the slot passes to w3, with a log line
    stop(hub, "w1")
    wait_for("w2 admitted", lambda: my_queue(hub, "w2")["qc"].get("start_by"), timeout=60,
             seen=lambda: hub.log_tail(20))
    db.run(lambda c: c.execute(update(qs.queue_table).where(qs.queue_table.c.username == "w2")
                               .values(admitted_at=time.time() - WINDOW - 1)), write=True)
    wait_for("w3 admitted", lambda: my_queue(hub, "w3").get("qc", {}).get("start_by"), timeout=60,
             seen=lambda: hub.log_tail(20))
    log = hub.log_tail(400)
    assert "queue: w2 did not start 'qc' within 2 min of the admission: the slot passes to the next in line" in log
    assert my_queue(hub, "w2") == {} and not pod_exists(devcluster, "w2")

    # -- the webhook fails for w3: logged, the mail still goes, the admission stands
    wait_for("the failed webhook logged", lambda: "queue: notifying w3 of the admission to 'qc' by webhook "
             "failed: webhook " in hub.log_tail(400), timeout=30, seen=lambda: hub.log_tail(20))
    wait_for("the admission mail to w3", lambda: mails_to(box, "w3@uni.example"), timeout=30)
    assert my_queue(hub, "w3")["qc"]["state"] == "admitted"
    assert my_queue(hub, "late")["qc"]["position"] == 1
    db.dispose()
    stop_all(hub, devcluster)
