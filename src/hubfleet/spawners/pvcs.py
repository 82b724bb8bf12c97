"""``hubfleet pvcs list`` and ``hubfleet pvcs prune --orphaned [--yes]``: users' PVCs, their owners, and removing
only the orphans.

A PVC is listed when hubfleet created it (labels ``hubfleet.io/created-by``, ``hubfleet.io/user``,
``hubfleet.io/server``, see :mod:`hubfleet.spawners.storage`) or KubeSpawner did (``component:
singleuser-storage``). Its owner is looked up in the hub's REST API (``--hub-url``, token from
``JUPYTERHUB_API_TOKEN``). An *orphan* is a PVC hubfleet created whose user or named server the hub has no more, that
no server's state names (KubeSpawner records ``pvc_name`` there, and it stays with a renamed user) and that no pod
mounts; ``prune`` deletes nothing else, and without ``--yes`` only prints what it would delete.

Fail closed: "the hub does not show it" only means "deleted" when the hub shows everything. The token's own scopes
are checked first (``GET /hub/api/user``): it needs :data:`REQUIRED_SCOPES` without filters, else both commands
refuse. Every user is then listed, stopped servers and their state included; anything the answers leave open
(a user without ``servers``, a server without ``state``, a PVC without owner annotation) keeps the PVC, and each
PVC's line says why it is kept or deleted. Talks to Kubernetes like kubectl: ``--kubeconfig`` or ``KUBECONFIG``,
``--namespace``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from ..errors import HubfleetError, explain
from ..labels import CREATED_BY_LABEL, SERVERNAME_ANNOTATION, USERNAME_ANNOTATION

TIMEOUT = 10
PAGE = 200

#: The scopes the token must hold unfiltered, and why: a user or server the token cannot see looks deleted.
REQUIRED_SCOPES = {
    "list:users": "list every user (one it cannot list would look deleted)",
    "read:users:name": "read every user's name",
    "read:servers": "see every server, stopped ones too (one it cannot see would look deleted)",
    "admin:server_state": "read which PVC each server records (it stays with a renamed user)",
}


def missing_scopes(scopes: Iterable[str]) -> list[str]:
    """Pure: the :data:`REQUIRED_SCOPES` not among ``scopes`` as they are (``read:servers!group=x`` does not count)."""
    held = set(scopes)
    return [scope for scope in REQUIRED_SCOPES if scope not in held]


@dataclass(frozen=True)
class HubView:
    """What the hub showed: every user's server names (None: not shown) and which servers' state names which PVC."""

    servers: Mapping[str, frozenset[str] | None]
    claims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # PVC name -> ("user/server", ...)
    states_complete: bool = True  # every server model carried its state

    @classmethod
    def from_users(cls, users: Iterable[Mapping]) -> "HubView":
        """Pure: from the hub's user models (``GET /hub/api/users?include_stopped_servers=1``)."""
        servers: dict[str, frozenset[str] | None] = {}
        claims: dict[str, list[str]] = {}
        complete = True
        for user in users:
            models = user.get("servers")
            servers[user["name"]] = None if not isinstance(models, Mapping) else frozenset(models)
            for name, model in (models or {}).items():
                if not isinstance(model, Mapping) or "state" not in model:
                    complete = False  # a server whose state we cannot read may name any PVC
                    continue
                state = model["state"]  # null for a server that never started
                pvc = state.get("pvc_name") if isinstance(state, Mapping) else None
                if pvc:
                    claims.setdefault(pvc, []).append(f"{user['name']}/{name}")
        return cls(servers, {k: tuple(sorted(v)) for k, v in claims.items()}, complete)


@dataclass(frozen=True)
class PVCInfo:
    name: str
    user: str | None
    server: str | None
    created_by: str  # "hubfleet", "kubespawner"
    owner: str  # "exists", "user deleted", "server deleted", "unknown", "recorded by <user>/<server>"
    mounted_by: tuple[str, ...]
    orphan: bool = False
    why: str = ""  # why it is kept or pruned
    uid: str = ""


def judge(*, user: str | None, server: str | None, created_by: str, mounted_by: tuple[str, ...], claims: tuple[str, ...],
          view: HubView) -> tuple[str, bool, str]:
    """Pure: ``(owner, orphan, why)`` for one PVC. Orphan only when everything the hub shows says so."""
    if user is None:
        return "unknown", False, "no owner annotation: cannot tell whose it is"
    known = user in view.servers
    names = view.servers.get(user)
    if claims:
        who = ", ".join(claims)
        owner = "exists" if f"{user}/{server or ''}" in claims else f"recorded by {who}"
        return owner, False, f"the hub's server {who} records it as its volume"
    if not known:
        owner = "user deleted"
    elif server is None or server == "":
        owner = "exists"
    elif names is None:
        return "unknown", False, f"the hub did not show {user}'s servers"
    else:
        owner = "exists" if server in names else "server deleted"
    if owner == "exists":
        return owner, False, "its owner exists"
    if mounted_by:
        return owner, False, f"mounted by pod(s) {', '.join(mounted_by)}"
    if created_by != "hubfleet":
        return owner, False, "hubfleet did not create it"
    if not view.states_complete:
        return owner, False, "the hub did not show every server's state (one may record this PVC)"
    gone = (f"the hub has no user {user!r}" if owner == "user deleted"
            else f"the hub has no server {user}/{server}")
    return owner, True, f"{gone} among its {len(view.servers)} users, no server records it, no pod mounts it"


def mounts(pods: list[dict]) -> dict[str, list[str]]:
    """Pure: PVC name -> the live pods (not Succeeded/Failed) that mount it."""
    found: dict[str, list[str]] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                found.setdefault(claim, []).append(pod["metadata"]["name"])
    return found


def classify(pvcs: list[dict], pods: list[dict], view: HubView) -> list[PVCInfo]:
    """Pure: PVC and pod dicts (as the API returns them) and what the hub showed -> one row per user PVC."""
    mounted = mounts(pods)
    rows = []
    for pvc in pvcs:
        meta = pvc.get("metadata") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if labels.get(CREATED_BY_LABEL) == "hubfleet":
            created_by = "hubfleet"
            user, server = annotations.get(USERNAME_ANNOTATION), annotations.get(SERVERNAME_ANNOTATION, "")
        elif labels.get("component") == "singleuser-storage":
            created_by = "kubespawner"
            user, server = labels.get("hub.jupyter.org/username"), None
        else:
            continue
        mounted_by = tuple(sorted(mounted.get(meta["name"], ())))
        owner, orphan, why = judge(user=user, server=server, created_by=created_by, mounted_by=mounted_by,
                                   claims=view.claims.get(meta["name"], ()), view=view)
        rows.append(PVCInfo(meta["name"], user, server, created_by, owner, mounted_by, orphan, why,
                            meta.get("uid") or ""))
    return sorted(rows, key=lambda r: r.name)


class _Hub:
    """The hub's REST API: the token's scopes, then every user with every server and its state."""

    def __init__(self, url: str, token: str):
        import requests  # noqa: PLC0415

        self.url, self._requests = url.rstrip("/"), requests
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def _get(self, path: str, *, missing_ok: bool = False, **kwargs):
        try:
            r = self.session.get(f"{self.url}/hub/api{path}", timeout=TIMEOUT, **kwargs)
        except self._requests.RequestException as e:
            raise HubfleetError(f"hub {self.url}: {e}", fix="check --hub-url") from e
        if r.status_code == 404 and missing_ok:
            return None
        if r.status_code in (401, 403):
            raise HubfleetError(f"hub {self.url}: answered {r.status_code} to GET /hub/api{path}",
                                fix="set JUPYTERHUB_API_TOKEN to a valid token with the scopes "
                                    + ", ".join(REQUIRED_SCOPES))
        if r.status_code != 200:
            raise HubfleetError(f"hub {self.url}: answered {r.status_code} to GET /hub/api{path}: {r.text[:200]}")
        try:
            return r.json()
        except ValueError as e:
            raise HubfleetError(f"hub {self.url}: GET /hub/api{path} did not answer JSON", fix="check --hub-url") from e

    def check_scopes(self) -> None:
        scopes = self._get("/user").get("scopes")
        if not isinstance(scopes, list):
            raise HubfleetError(f"hub {self.url}: GET /hub/api/user shows no scopes for the token",
                                fix="JupyterHub 2 or later is needed")
        missing = missing_scopes(scopes)
        if missing:
            why = "; ".join(f"{s}: {REQUIRED_SCOPES[s]}" for s in missing)
            raise HubfleetError(
                f"the token lacks the scope(s) {', '.join(missing)} (without filters such as !group=), so a user or "
                f"server it cannot see would look deleted ({why}); nothing was read or deleted",
                fix="use an admin's token, or a service whose role has the scopes " + ", ".join(REQUIRED_SCOPES))

    def view(self) -> HubView:
        users, offset, total = [], 0, None
        while True:
            page = self._get("/users", params={"include_stopped_servers": "1", "offset": offset, "limit": PAGE},
                             headers={"Accept": "application/jupyterhub-pagination+json"})
            items, info = page.get("items"), page.get("_pagination") or {}
            if not isinstance(items, list) or "total" not in info:
                raise HubfleetError(f"hub {self.url}: GET /hub/api/users answered without pagination",
                                    fix="JupyterHub 2 or later is needed")
            total = info["total"] if total is None else total
            if info["total"] != total:
                raise HubfleetError(f"hub {self.url}: users were added or removed while listing them",
                                    fix="run the command again")
            users += items
            offset += len(items)
            if not items or offset >= total:
                break
        names = [u.get("name") for u in users]
        if len(users) != total or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
            raise HubfleetError(f"hub {self.url}: listed {len(users)} users of {total} (duplicates or gaps)",
                                fix="run the command again")
        return HubView.from_users(users)

    def confirm(self, row: PVCInfo) -> PVCInfo:
        """Ask again about one orphan's owner (the listing may have changed under it): still an orphan only if the
        hub answers 404 for the user, or shows the user with servers but not this one."""
        model = self._get(f"/users/{quote(row.user or '', safe='')}", missing_ok=True,
                          params={"include_stopped_servers": "1"})
        if model is None:
            return row
        servers = model.get("servers")
        if row.owner == "server deleted" and isinstance(servers, Mapping) and row.server not in servers:
            return row
        return dataclasses.replace(row, orphan=False, why=f"the hub shows {row.user} again when asked alone (its "
                                                          f"users changed while they were read)")


async def _kube(args, action):
    from kubernetes_asyncio import client, config  # noqa: PLC0415

    try:
        await config.load_kube_config(config_file=args.kubeconfig or os.environ.get("KUBECONFIG"))
    except Exception as e:
        raise HubfleetError(f"cannot load the kubeconfig: {e}", fix="pass --kubeconfig or set KUBECONFIG") from e
    async with client.ApiClient() as api_client:
        return await action(client.CoreV1Api(api_client), api_client)


async def _read(api, api_client, namespace):
    pvcs = await asyncio.wait_for(api.list_namespaced_persistent_volume_claim(namespace), TIMEOUT)
    pods = await asyncio.wait_for(api.list_namespaced_pod(namespace), TIMEOUT)
    as_dict = api_client.sanitize_for_serialization
    return as_dict(pvcs).get("items") or [], as_dict(pods).get("items") or []


def _rows(args):
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not args.hub_url or not token:
        raise HubfleetError("the hub is needed to tell whether an owner still exists",
                            fix="pass --hub-url (or set JUPYTERHUB_URL) and set JUPYTERHUB_API_TOKEN")
    hub = _Hub(args.hub_url, token)
    hub.check_scopes()  # before anything is read: a token that cannot see everything proves nothing

    async def read(api, api_client):
        return await _read(api, api_client, args.namespace)

    # the PVCs first, then the hub: a PVC made after the hub was read could not be matched to its new owner
    pvcs, pods = asyncio.run(_kube(args, read))
    return [hub.confirm(r) if r.orphan else r for r in classify(pvcs, pods, hub.view())]


def _print_rows(rows) -> None:
    table = [("NAME", "USER", "SERVER", "CREATED-BY", "OWNER", "MOUNTED-BY")] + [
        (r.name, r.user or "?", "(default)" if r.server == "" else (r.server or "?"), r.created_by, r.owner,
         ",".join(r.mounted_by) or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _list(args) -> int:
    try:
        _print_rows(_rows(args))
    except HubfleetError as e:
        print(f"hubfleet pvcs list: {explain(e)}", file=sys.stderr)
        return 1
    return 0


def _what(r: PVCInfo) -> str:
    return f"{r.user}/{r.server}" if r.server else str(r.user or "?")


def _prune(args) -> int:
    if not args.orphaned:
        print("hubfleet pvcs prune: say what to prune: --orphaned", file=sys.stderr)
        return 2
    try:
        rows = [r for r in _rows(args) if r.created_by == "hubfleet"]
        for r in rows:
            verb = ("deleting" if args.yes else "would delete") if r.orphan else "keeping"
            print(f"{verb} PVC {r.name} ({_what(r)}: {r.why})")
        orphans = [r for r in rows if r.orphan]
        if not orphans:
            print("no orphaned PVCs")
            return 0
        if not args.yes:
            print(f"{len(orphans)} orphaned PVC(s); run again with --yes to delete them")
            return 0

        async def delete(api, api_client):
            deleted = 0
            mounted = mounts(api_client.sanitize_for_serialization(
                await asyncio.wait_for(api.list_namespaced_pod(args.namespace), TIMEOUT)).get("items") or [])
            for r in orphans:
                if r.name in mounted:
                    print(f"keeping PVC {r.name}: mounted by pod(s) {', '.join(mounted[r.name])} since it was judged")
                    continue
                # only the PVC that was judged: not one re-created under the same name since
                await asyncio.wait_for(api.delete_namespaced_persistent_volume_claim(
                    r.name, args.namespace, body={"preconditions": {"uid": r.uid}} if r.uid else None), TIMEOUT)
                deleted += 1
            return deleted

        print(f"deleted {asyncio.run(_kube(args, delete))} PVC(s)")
    except HubfleetError as e:
        print(f"hubfleet pvcs prune: {explain(e)}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pvcs", help="list or prune users' PVCs", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="pvcs_command", metavar="SUBCOMMAND")
    for name, func, help_text in (("list", _list, "list home and named-server PVCs with their owners"),
                                  ("prune", _prune, "delete PVCs whose owner is gone (dry-run without --yes)")):
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("--namespace", "-n", default="default", help="namespace of the users' PVCs")
        s.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
        s.add_argument("--hub-url", default=os.environ.get("JUPYTERHUB_URL", ""),
                       help="the hub's public URL, e.g. https://hub.example.org (token: JUPYTERHUB_API_TOKEN)")
        if name == "prune":
            s.add_argument("--orphaned", action="store_true", help="PVCs whose user or named server is gone")
            s.add_argument("--yes", action="store_true", help="really delete (without it: print what would go)")
        s.set_defaults(func=func)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
