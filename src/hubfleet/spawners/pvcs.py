"""``hubfleet pvcs list`` and ``hubfleet pvcs prune --orphaned [--yes]``: users' PVCs, their owners, and removing
only the orphans.

A PVC is listed when hubfleet created it (labels ``hubfleet.io/created-by``, ``hubfleet.io/user``,
``hubfleet.io/server``, see :mod:`hubfleet.spawners.storage`) or KubeSpawner did (``component:
singleuser-storage``). Its owner is looked up in the hub's REST API (``--hub-url``, token from
``JUPYTERHUB_API_TOKEN``, needs the ``admin:users`` and ``read:servers`` scopes). An *orphan* is a PVC hubfleet created
whose user or named server no longer exists and that no pod mounts; ``prune`` deletes nothing else, and without
``--yes`` only prints what it would delete. Talks to Kubernetes like kubectl: ``--kubeconfig`` or ``KUBECONFIG``,
``--namespace``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from urllib.parse import quote

from ..errors import HubfleetError, explain
from .profiles.model import CREATED_BY_LABEL, SERVERNAME_ANNOTATION, USERNAME_ANNOTATION

TIMEOUT = 10


@dataclass(frozen=True)
class PVCInfo:
    name: str
    user: str | None
    server: str | None
    created_by: str  # "hubfleet", "kubespawner"
    owner: str  # "exists", "user deleted", "server deleted", "unknown"
    mounted_by: tuple[str, ...]

    @property
    def orphan(self) -> bool:
        return self.created_by == "hubfleet" and self.owner in ("user deleted", "server deleted") and not (
            self.mounted_by)


def classify(pvcs: list[dict], pods: list[dict], owners) -> list[PVCInfo]:
    """Pure: PVC and pod dicts (as the API returns them) and ``owners(user, server) -> str`` -> one row per user
    PVC."""
    mounts: dict[str, list[str]] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                mounts.setdefault(claim, []).append(pod["metadata"]["name"])
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
        owner = owners(user, server) if user else "unknown"
        rows.append(PVCInfo(meta["name"], user, server, created_by, owner, tuple(sorted(mounts.get(meta["name"], ())))))
    return sorted(rows, key=lambda r: r.name)


class _Hub:
    """Owner lookups in the hub's REST API, one request per user."""

    def __init__(self, url: str, token: str):
        self.url, self.token, self._users = url.rstrip("/"), token, {}

    def _user(self, name: str):
        if name not in self._users:
            import requests  # noqa: PLC0415

            try:
                r = requests.get(f"{self.url}/hub/api/users/{quote(name, safe='')}?include_stopped_servers=1",
                                 headers={"Authorization": f"token {self.token}"}, timeout=TIMEOUT)
            except requests.RequestException as e:
                raise HubfleetError(f"hub {self.url}: {e}", fix="check --hub-url") from e
            if r.status_code in (401, 403):
                raise HubfleetError(f"hub {self.url}: answered {r.status_code} for user {name!r}",
                                    fix="JUPYTERHUB_API_TOKEN needs the admin:users and read:servers scopes")
            if r.status_code not in (200, 404):
                raise HubfleetError(f"hub {self.url}: answered {r.status_code} for user {name!r}")
            self._users[name] = r.json() if r.status_code == 200 else None
        return self._users[name]

    def __call__(self, user: str, server: str | None) -> str:
        model = self._user(user)
        if model is None:
            return "user deleted"
        if server and server not in (model.get("servers") or {}):
            return "server deleted"
        return "exists"


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

    async def read(api, api_client):
        return await _read(api, api_client, args.namespace)

    pvcs, pods = asyncio.run(_kube(args, read))
    return classify(pvcs, pods, hub)


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


def _prune(args) -> int:
    if not args.orphaned:
        print("hubfleet pvcs prune: say what to prune: --orphaned", file=sys.stderr)
        return 2
    try:
        orphans = [r for r in _rows(args) if r.orphan]
        if not orphans:
            print("no orphaned PVCs")
            return 0
        for r in orphans:
            what = f"{r.user}/{r.server}" if r.server else str(r.user)
            print(f"{'deleting' if args.yes else 'would delete'} PVC {r.name} ({what}: {r.owner}, not mounted)")
        if not args.yes:
            print(f"{len(orphans)} orphaned PVC(s); run again with --yes to delete them")
            return 0

        async def delete(api, api_client):
            for r in orphans:
                await asyncio.wait_for(api.delete_namespaced_persistent_volume_claim(r.name, args.namespace),
                                       TIMEOUT)

        asyncio.run(_kube(args, delete))
        print(f"deleted {len(orphans)} PVC(s)")
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
