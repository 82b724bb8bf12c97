"""Which log a failed spawn keeps for each container: the run that explains the failure."""

from __future__ import annotations

import types

import pytest

from hubfleet.spawners.progress import SpawnProgress

OOM = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
RUNNING = {"running": {"startedAt": "2026-12-06T10:00:00Z"}}


def logs_of(state: dict, last_state: dict, current: str, previous: str):
    async def read_log(container, prev):
        return (previous if prev else current), True

    spawner = types.SimpleNamespace(failure_log_lines=20, _read_log=read_log)
    pod = {"status": {"containerStatuses": [{"name": "notebook", "state": state, "lastState": last_state}]}}
    return SpawnProgress._container_logs(spawner, pod)


@pytest.mark.parametrize("state, last_state, current, expected", [
    ({"waiting": {"reason": "CrashLoopBackOff"}}, OOM, "", "loading the data set\n"),  # waiting: the last run's
    (RUNNING, OOM, "", "loading the data set\n"),  # running again, nothing written yet: the last run's
    (RUNNING, OOM, "second run\n", "second run\n"),  # running again and writing: this run's
    (RUNNING, {}, "", ""),  # never restarted: this run's, even empty
], ids=["waiting", "restarted-silent", "restarted-writing", "first-run"])
async def test_the_kept_log_is_the_run_that_explains_the_failure(state, last_state, current, expected):
    coro = logs_of(state, last_state, current, "loading the data set\n")
    assert await coro == {"notebook": expected}
