"""The pure parts behind the devcluster's readiness probes, owner-reference garbage collection and pods/exec."""

from __future__ import annotations

import json

import pytest

from hubfleet_devcluster.exec import exit_status, frame
from hubfleet_devcluster.gc import orphans
from hubfleet_devcluster.probes import Readiness, probe_port


@pytest.mark.parametrize("results, success, failure, expected", [
    ([], 1, 3, [False]),                                             # not ready before the first success
    ([True], 1, 3, [True]),
    ([True, False, False], 1, 3, [True, True, True]),                # under failureThreshold: still ready
    ([True, False, False, False], 1, 3, [True, True, True, False]),
    ([True, False, True, False, False], 1, 2, [True, True, True, True, False]),  # failures must be in a row
    ([True, True, False, True, True], 2, 1, [False, True, False, False, True]),  # successes in a row, too
])
def test_readiness_counts_probe_results_in_a_row(results, success, failure, expected):
    state = Readiness(success, failure)
    seen = [state.record(ok) for ok in results] or [state.ready]
    assert seen == expected


def test_readiness_defaults_are_the_kubelets():
    state = Readiness.of({})
    assert (state.success_threshold, state.failure_threshold) == (1, 3)


def test_a_probe_port_may_name_a_container_port():
    container = {"ports": [{"name": "http", "containerPort": 8888}]}
    assert probe_port("http", container) == 8888
    assert probe_port(9000, container) == 9000 and probe_port("9000", container) == 9000
    assert probe_port("nosuch", container) is None


def _obj(uid, *owners, deleting=False):
    meta = {"uid": uid}
    if owners:
        meta["ownerReferences"] = [{"uid": o, "kind": "Pod", "name": o} for o in owners]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_orphans_are_objects_whose_owners_are_all_gone():
    objects = [
        ("pods", "default", "p", _obj("pod-uid")),
        ("services", "default", "kept", _obj("s1", "pod-uid")),
        ("services", "default", "gone", _obj("s2", "dead-uid")),
        ("secrets", "default", "one-owner-left", _obj("s3", "dead-uid", "pod-uid")),
        ("configmaps", "default", "unowned", _obj("c1")),
        ("pods", "default", "already-deleting", _obj("p2", "dead-uid", deleting=True)),
    ]
    assert orphans(objects) == [("services", "default", "gone")]


def test_the_exec_error_channel_carries_the_exit_code():
    assert frame(1, b"hi\n") == b"\x01hi\n"
    assert exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    failure = exit_status(["sh", "-c", "exit 3"], 3)
    assert failure["status"] == "Failure" and failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    json.dumps(failure)
