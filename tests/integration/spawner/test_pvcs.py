"""Storage safety on the devcluster with a real hub: a named server's PVC is deleted only if hubfleet created it for
that server and no other pod mounts it; ``hubfleet pvcs list`` shows owners, ``hubfleet pvcs prune --orphaned``
removes only orphans, says why it keeps or deletes each PVC, prints what it would delete without ``--yes``, refuses
a token that cannot see every user and server, and keeps a renamed user's volumes."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

from tests.procs import ARTIFACTS, wait_for

from .test_profile_spawner import DEMO_FILE, hub_config, make_users, spawn, stop, stop_all


def pvc_names(devcluster):
    return {p["metadata"]["name"] for p in devcluster.pvcs()}


# Tokens that see less than everything: a role filtered to a group, and one without the servers' scopes. On the hub
# they are services (their tokens are fixed here); `hubfleet pvcs` must refuse both before reading anything.
STAFF_TOKEN, NO_SERVERS_TOKEN = "pvcs-staff-" + "0" * 20, "pvcs-noservers-" + "0" * 20
NARROW_TOKENS = f"""
c.JupyterHub.load_groups = {{"staff": {{"users": []}}}}
c.JupyterHub.services += [{{"name": "pruner-staff", "api_token": "{STAFF_TOKEN}"}},
                          {{"name": "pruner-noservers", "api_token": "{NO_SERVERS_TOKEN}"}}]
c.JupyterHub.load_roles += [
    {{"name": "pruner-staff", "services": ["pruner-staff"],
      "scopes": ["list:users!group=staff", "read:users!group=staff", "read:servers!group=staff",
                 "admin:server_state!group=staff"]}},
    {{"name": "pruner-noservers", "services": ["pruner-noservers"], "scopes": ["admin:users"]}},
]
"""


def hubfleet(hub, devcluster, *args, token=None):
    env = {**os.environ, "KUBECONFIG": str(devcluster.kubeconfig), "JUPYTERHUB_API_TOKEN": token or hub.admin_token}
    out = subprocess.run([sys.executable, "-m", "hubfleet.cli", "pvcs", *args, "--hub-url", hub.url],
                         capture_output=True, text=True, timeout=60, env=env)
    return out.returncode, out.stdout, out.stderr


def test_pvc_deleted_only_when_safe_and_prune_removes_only_orphans(start_hub, devcluster):
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles_file = {DEMO_FILE!r}\n{NARROW_TOKENS}"))
    make_users(hub, "alice", "bob")
    servers = (("alice", ""), ("alice", "ws1"), ("bob", "ws2"))
    for user, server in servers:
        assert spawn(hub, user, {"profile": "small"}, server=server)[0] in (201, 202)
    for user, server in servers:
        hub.wait_ready(user, server, timeout=120)
    for user, server in servers:
        stop(hub, user, server)
    assert pvc_names(devcluster) == {"claim-alice", "claim-alice--ws1", "claim-bob--ws2"}
    pvc = devcluster.get("/api/v1/namespaces/default/persistentvolumeclaims/claim-alice--ws1")
    assert {k: v for k, v in pvc["metadata"]["labels"].items() if k.startswith("hubfleet.io/")} == {
        "hubfleet.io/created-by": "hubfleet", "hubfleet.io/user": "alice", "hubfleet.io/server": "ws1"}

    # tokens that cannot see every user (alice and bob are not in `staff`) or every server: refused before anything
    # is read, and every PVC of these existing users and servers is still there
    before = pvc_names(devcluster)
    for token, missing in ((STAFF_TOKEN, "list:users, read:users:name, read:servers, admin:server_state"),
                           (NO_SERVERS_TOKEN, "read:servers, admin:server_state")):
        for command in (("prune", "--orphaned", "--yes"), ("list",)):
            code, out, err = hubfleet(hub, devcluster, *command, token=token)
            assert pvc_names(devcluster) == before, (command, out, err)
            assert code == 1 and out == "", (command, out, err)
            assert f"the token lacks the scope(s) {missing} (without filters" in err, err

    # another pod mounts alice's ws1 volume (a shared PVC): removing the server keeps it
    sharer = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sharer", "namespace": "default"},
              "spec": {"nodeSelector": {"no-such-node": "x"},  # stays Pending: it only has to mount the claim
                       "containers": [{"name": "c", "image": "busybox:1.36"}],
                       "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "claim-alice--ws1"}}]}}
    r = devcluster.request("POST", "/api/v1/namespaces/default/pods", json=sharer)
    assert r.status_code == 201, r.text
    # a PVC hubfleet did not create, in the named-server naming scheme: never deleted, never pruned
    foreign = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "claim-bob--ws3", "namespace": "default",
                            "labels": {"component": "singleuser-storage", "hub.jupyter.org/username": "bob"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    r = devcluster.request("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json=foreign)
    assert r.status_code == 201, r.text

    for user, server in (("alice", "ws1"), ("bob", "ws2")):
        status, body = hub.api("DELETE", f"/users/{user}/servers/{server}", json={"remove": True})
        assert status in (202, 204), body
    wait_for("bob's unshared ws2 PVC to be deleted", lambda: "claim-bob--ws2" not in pvc_names(devcluster), 30)
    assert "claim-alice--ws1" in pvc_names(devcluster), "a PVC another pod mounts is kept"
    assert "keeping PVC claim-alice--ws1: still mounted by pod(s) sharer" in hub.log_tail(400)

    code, listed, err = hubfleet(hub, devcluster, "list")
    assert code == 0, err
    lines = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
    assert lines["claim-alice"][1:5] == ["alice", "(default)", "hubfleet", "exists"]
    assert lines["claim-alice--ws1"][1:] == ["alice", "ws1", "hubfleet", "server", "deleted", "sharer"]
    assert lines["claim-bob--ws3"][1:4] == ["bob", "?", "kubespawner"]

    # still mounted: not an orphan yet
    code, out, err = hubfleet(hub, devcluster, "prune", "--orphaned")
    assert code == 0 and out.splitlines()[-1] == "no orphaned PVCs", (out, err)
    assert "keeping PVC claim-alice--ws1 (alice/ws1: mounted by pod(s) sharer)" in out.splitlines(), out
    assert devcluster.request("DELETE", "/api/v1/namespaces/default/pods/sharer").status_code == 200
    wait_for("the sharer pod to go", lambda: not any(p["metadata"]["name"] == "sharer" for p in devcluster.pods()), 30)

    code, dry, err = hubfleet(hub, devcluster, "prune", "--orphaned")
    assert code == 0, err
    assert dry.splitlines() == [
        "keeping PVC claim-alice (alice: the hub's server alice/ records it as its volume)",
        "would delete PVC claim-alice--ws1 (alice/ws1: the hub has no server alice/ws1 among its 3 users, no server "
        "records it, no pod mounts it)",
        "1 orphaned PVC(s); run again with --yes to delete them"], dry
    assert "claim-alice--ws1" in pvc_names(devcluster), "a dry run deletes nothing"

    code, done, err = hubfleet(hub, devcluster, "prune", "--orphaned", "--yes")
    assert code == 0, err
    assert done.splitlines()[-1] == "deleted 1 PVC(s)"
    wait_for("only the orphan to be deleted", lambda: pvc_names(devcluster) == {"claim-alice", "claim-bob--ws3"}, 30,
             seen=lambda: pvc_names(devcluster))

    # a renamed user keeps her volume: the hub's server state still names it under the new name
    status, body = hub.api("PATCH", "/users/alice", json={"name": "alice2"})
    assert status == 200, body
    code, renamed, err = hubfleet(hub, devcluster, "prune", "--orphaned", "--yes")
    assert code == 0, err
    assert renamed.splitlines() == [
        "keeping PVC claim-alice (alice: the hub's server alice2/ records it as its volume)",
        "no orphaned PVCs"], renamed
    code, listed_after, err = hubfleet(hub, devcluster, "list")
    assert "recorded by alice2/" in listed_after, listed_after
    assert pvc_names(devcluster) == {"claim-alice", "claim-bob--ws3"}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "spawner-pvcs.txt").write_text(
        f"$ hubfleet pvcs list\n{listed}\n$ hubfleet pvcs prune --orphaned\n{dry}\n"
        f"$ hubfleet pvcs prune --orphaned --yes\n{done}\n$ (alice renamed to alice2) hubfleet pvcs prune --orphaned "
        f"--yes\n{renamed}")
    stop_all(hub, devcluster)


def test_an_orphans_owner_is_asked_for_again_before_it_counts_as_gone():
    """The users can change while they are listed page by page (one deleted before the page that held another, one
    added): an owner the listing missed but the hub shows when asked alone keeps the PVC. The hub's REST answers are
    emulated for the two requests this is about."""
    from hubfleet.spawners.pvcs import PVCInfo, _Hub

    models = {"/hub/api/users/bob": {"name": "bob", "servers": {"": {}}},
              "/hub/api/users/carol": {"name": "carol", "servers": {"": {}}}}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            model = models.get(self.path.split("?")[0])
            body = json.dumps(model or {"status": 404}).encode()
            self.send_response(200 if model else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hub = _Hub(f"http://127.0.0.1:{server.server_port}", "token")
        row = PVCInfo("claim-bob", "bob", "", "hubfleet", "user deleted", (), True, "listed without bob")
        kept = hub.confirm(row)
        assert (kept.orphan, kept.why) == (False, "the hub shows bob again when asked alone (its users changed "
                                                  "while they were read)")
        gone = PVCInfo("claim-dave", "dave", "", "hubfleet", "user deleted", (), True, "listed without dave")
        assert hub.confirm(gone) == gone  # 404: still an orphan
        named = PVCInfo("claim-carol--ws1", "carol", "ws1", "hubfleet", "server deleted", (), True, "no ws1")
        assert hub.confirm(named) == named  # carol is there, without ws1
        models["/hub/api/users/carol"]["servers"]["ws1"] = {}
        assert hub.confirm(named).orphan is False
    finally:
        server.shutdown()
        server.server_close()
