"""``hubfleet pvcs``: the pure decision, table by table. A PVC is an orphan only when the hub showed everything and
nothing ties it to a user or server; every doubt keeps it, with the reason."""

from __future__ import annotations

import pytest

from hubfleet.spawners.pvcs import REQUIRED_SCOPES, HubView, classify, judge, missing_scopes


def user(name, servers=None, *, state=True):
    """A user model as ``GET /hub/api/users?include_stopped_servers=1`` gives it; servers: name -> pvc_name."""
    model = {"kind": "user", "name": name}
    if servers is not None:
        model["servers"] = {s: ({"name": s, "state": {"pvc_name": pvc} if pvc else None} if state else {"name": s})
                            for s, pvc in servers.items()}
    return model


def pvc(name, user=None, server="", *, hubfleet=True, uid="u-1"):
    meta = {"name": name, "uid": uid, "labels": {}, "annotations": {}}
    if hubfleet:
        meta["labels"]["hubfleet.io/created-by"] = "hubfleet"
        if user is not None:
            meta["annotations"].update({"hubfleet.io/username": user, "hubfleet.io/servername": server})
    else:
        meta["labels"].update({"component": "singleuser-storage", "hub.jupyter.org/username": user})
    return {"metadata": meta}


def mounting(pod_name, claim, phase="Running"):
    return {"metadata": {"name": pod_name}, "status": {"phase": phase},
            "spec": {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}]}}


EVERYONE = [user("alice", {"": "claim-alice", "ws1": "claim-alice--ws1"}), user("carol", {"": "claim-carol"})]


@pytest.mark.parametrize(("users", "the_pvc", "pods", "owner", "orphan", "why"), [
    (EVERYONE, pvc("claim-alice", "alice"), [], "exists", False, "the hub's server alice/ records it as its volume"),
    (EVERYONE, pvc("claim-bob", "bob"), [], "user deleted", True,
     "the hub has no user 'bob' among its 2 users, no server records it, no pod mounts it"),
    (EVERYONE, pvc("claim-alice--ws9", "alice", "ws9"), [], "server deleted", True,
     "the hub has no server alice/ws9 among its 2 users, no server records it, no pod mounts it"),
    # a renamed user: her server's state still names the PVC made under her old name
    ([user("alice2", {"": "claim-alice"})], pvc("claim-alice", "alice"), [], "recorded by alice2/", False,
     "the hub's server alice2/ records it as its volume"),
    # mounted by a live pod: kept; by a finished one: not a mount
    (EVERYONE, pvc("claim-bob", "bob"), [mounting("p", "claim-bob")], "user deleted", False, "mounted by pod(s) p"),
    (EVERYONE, pvc("claim-bob", "bob"), [mounting("p", "claim-bob", "Succeeded")], "user deleted", True,
     "the hub has no user 'bob' among its 2 users, no server records it, no pod mounts it"),
    # doubts keep it
    (EVERYONE, pvc("claim-x"), [], "unknown", False, "no owner annotation: cannot tell whose it is"),
    ([user("alice")], pvc("claim-alice--ws1", "alice", "ws1"), [], "unknown", False,
     "the hub did not show alice's servers"),
    ([user("alice", {"ws1": None}, state=False)], pvc("claim-bob", "bob"), [], "user deleted", False,
     "the hub did not show every server's state (one may record this PVC)"),
    (EVERYONE, pvc("claim-bob", "bob", hubfleet=False), [], "user deleted", False, "hubfleet did not create it"),
])
def test_judge(users, the_pvc, pods, owner, orphan, why):
    [row] = classify([the_pvc], pods, HubView.from_users(users))
    assert (row.owner, row.orphan, row.why) == (owner, orphan, why)


def test_a_default_server_pvc_of_an_existing_user_is_kept_without_state():
    view = HubView.from_users([user("alice", {})])
    assert judge(user="alice", server="", created_by="hubfleet", mounted_by=(), claims=(), view=view) == (
        "exists", False, "its owner exists")


@pytest.mark.parametrize(("scopes", "missing"), [
    (["list:users", "read:users:name", "read:servers", "admin:server_state", "admin-ui"], []),
    (["list:users!group=staff", "read:users:name!group=staff", "read:servers", "admin:server_state"],
     ["list:users", "read:users:name"]),
    (["admin:users", "list:users", "read:users", "read:users:name"], ["read:servers", "admin:server_state"]),
    ([], list(REQUIRED_SCOPES)),
])
def test_missing_scopes_counts_only_unfiltered_ones(scopes, missing):
    assert missing_scopes(scopes) == missing
