"""Refused spawns never make the hub exit: with ``c.Spawner.consecutive_failure_limit = 2`` (z2jh sets 5), refused
REST spawns (a profile the user may not use, a full quota) in a row leave the hub up and a permitted spawn then
works, on JupyterHub 5.5 (which counts every spawn that raised) as on 6 (which counts only errors); real failures
still count, across refusals, and the hub still exits at the limit.

Run it on both stacks: ``../run-tests tests/integration/spawner`` and ``VENV=/work/main/.venv-hub ../run-tests ...``.
"""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import wait_for

from .test_profile_spawner import IMG, hub_config, make_users, spawn, stop_all

_SIZE = {"cpu": {"guarantee": 0.01, "limit": 1}, "memory": {"guarantee": "64M", "limit": "1G"}}
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True, "image": IMG, **_SIZE},
    {"slug": "medium", "display_name": "Medium", "image": IMG, "access": {"groups": ["researchers"]}, **_SIZE},
    {"slug": "solo", "display_name": "Solo", "image": IMG, "quota": 1, **_SIZE},
    {"slug": "broken", "display_name": "Broken", "image": IMG, **_SIZE},
]
CONFIG = f"""
c.ProfileSpawner.profiles = {PROFILES!r}
c.Spawner.consecutive_failure_limit = 2
c.JupyterHub.concurrent_spawn_limit = 0

def fail_broken(*, spawner, choice):
    if choice.profile.slug == "broken":
        raise RuntimeError("the broken profile always fails")

c.ProfileSpawner.pre_spawn_hooks = [fail_broken]
"""


def failed_spawns(hub) -> float:
    """How many spawns the hub has counted as ended without success (its own spawn-duration metric, observed in
    the same callback that counts consecutive failures and decides to exit)."""
    r = requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.admin_token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return sum(s.value for family in text_string_to_metric_families(r.text) for s in family.samples
               if s.name == "jupyterhub_server_spawn_duration_seconds_count"
               and s.labels.get("status") in ("failure", "error"))


def refuse(hub, user, options, message_start, counted_before):
    status, body = spawn(hub, user, options)
    assert status == 403 and body["message"].startswith(message_start), (status, body)
    # the hub's failure callback has run for this spawn once its metric moved
    return wait_for(f"the hub to record {user}'s refused spawn",
                    lambda: (n := failed_spawns(hub)) > counted_before and n, timeout=30, seen=lambda: hub.log_tail(20))


def test_refused_spawns_in_a_row_do_not_make_the_hub_exit(start_hub, devcluster):
    hub = start_hub(hub_config(CONFIG))
    make_users(hub, "ann", "bob", "cat", "dan", groups={"researchers": ["ann"]})
    assert spawn(hub, "ann", {"profile": "solo"})[0] in (201, 202)
    hub.wait_ready("ann", timeout=120)

    counted = failed_spawns(hub)
    for _ in range(3):  # a profile bob may not use, three times in a row
        counted = refuse(hub, "bob", {"profile": "medium"}, "profile 'medium' is not available to you", counted)
    for _ in range(3):  # the solo quota is full (ann runs it), three times in a row
        counted = refuse(hub, "cat", {"profile": "solo"}, "Quota full: at most 1 'solo'", counted)

    log = hub.log_tail(400)
    assert "Aborting due to" not in log and "consecutive spawns failed" not in log, log
    assert hub.proc.popen.poll() is None, hub.log_tail(40)
    assert spawn(hub, "dan", {"profile": "small"})[0] in (201, 202)
    hub.wait_ready("dan", timeout=120)
    stop_all(hub, devcluster)

    # real failures still count, a refusal in between neither counts nor resets: the second one makes the hub exit
    counted = refuse(hub, "bob", {"profile": "medium"}, "profile 'medium' is not available to you", counted)
    assert spawn(hub, "dan", {"profile": "broken"})[0] >= 500
    wait_for("the first real failure to be counted", lambda: failed_spawns(hub) > counted, timeout=30)
    refuse(hub, "bob", {"profile": "medium"}, "profile 'medium' is not available to you", counted + 1)
    assert spawn(hub, "cat", {"profile": "broken"})[0] >= 500
    wait_for("the hub to exit after 2 consecutive real failures", lambda: hub.proc.popen.poll() is not None,
             timeout=60, seen=lambda: hub.log_tail(20))
    assert "Aborting due to 2 consecutive spawn failures" in hub.log_tail(400)
