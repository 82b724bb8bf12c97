"""``admin_page_service()``: the ``c.JupyterHub.services`` entry, roles and custom scope for hubfleet's admin page.

    from hubfleet.config.adminpage import admin_page_service
    page = admin_page_service(port=10102, db_url=c.JupyterHub.db_url)
    c.JupyterHub.services.append(page.service)
    c.JupyterHub.load_roles.extend(page.roles)
    c.JupyterHub.custom_scopes.update(page.custom_scopes)

The page's own token (``page.roles[0]``) reads what the page lists: ``list:users``, ``read:users:name``,
``read:users:groups`` (usage per group), ``read:users:activity``, ``read:servers`` (server models with
``started`` and ``user_options``), and with ``culler_url`` ``access:services!service=<culler_name>`` (the culler's
warnings and culls, from its ``/state``). It cannot start, stop or change anything in the hub.

A viewer's OAuth token is asked for ``admin:servers`` and the page's custom scope; JupyterHub grants each only to a
viewer who holds it, so the page sees admins and support staff (a role with the custom scope) as allowed to see
every server, and everyone else as allowed to see their own. Reaching the page at all needs
``access:services!service=<name>``: admins hold it already (JupyterHub's ``admin`` role has ``access:services``), ``page.roles`` grants it to the
viewers' role and, with
``all_users=True``, to every user (through JupyterHub's ``user`` role, whose scopes it sets to
``self`` plus that access). Support staff: add them (or their group) to the role ``<name>-viewers``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ..services.adminpage.access import ADMIN_SCOPE, DEFAULT_VIEW_SCOPE

KUBE_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG", "POD_NAMESPACE")
PAGE_SCOPES = ["list:users", "read:users:name", "read:users:groups", "read:users:activity", "read:servers"]


@dataclass(frozen=True)
class AdminPage:
    service: dict
    roles: list
    custom_scopes: dict


def admin_page_service(*, port: int = 10102, name: str = "hubfleet-admin-page", namespace: str = "",
                       db_url: str = "", view_scope: str = DEFAULT_VIEW_SCOPE, all_users: bool = True,
                       viewer_groups: list[str] | tuple[str, ...] = (), python: str | None = None,
                       extra_args: list[str] | tuple[str, ...] = (), environment: dict | None = None,
                       api_token: str | None = None, display: bool = True, culler_url: str = "",
                       culler_name: str = "hubfleet-culler") -> AdminPage:
    """The service entry (``display`` puts it in the hub's Services menu), its roles and the custom scope.
    ``culler_url``: the culler's ``/state`` (on its ``metrics_port``) for the Culler column; the page's role then
    gets ``access:services!service=<culler_name>``, which the culler asks of a reader."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"admin_page_service: port must be a TCP port (1-65535), not {port!r}")
    if not view_scope.startswith("custom:"):
        raise ValueError(f"admin_page_service: view_scope must be a custom scope (custom:...), not {view_scope!r}")
    command = [python or sys.executable, "-m", "hubfleet.services.adminpage", f"--view-scope={view_scope}"]
    if namespace:
        command.append(f"--namespace={namespace}")
    if culler_url:
        command.append(f"--culler-url={culler_url}")
    command.extend(extra_args)
    # a managed service gets only the environment it is given: pass on what finds the Kubernetes API
    env = {k: os.environ[k] for k in KUBE_ENV if k in os.environ}
    env.update(environment or {})
    if db_url:
        env["HUBFLEET_DB_URL"] = db_url
    access = f"access:services!service={name}"
    service = {"name": name, "url": f"http://127.0.0.1:{port}", "command": command, "display": display,
               "oauth_no_confirm": True, "oauth_client_allowed_scopes": [ADMIN_SCOPE, view_scope]}
    if env:
        service["environment"] = env
    if api_token:
        service["api_token"] = api_token
    roles = [
        {"name": name, "description": "hubfleet admin page: list users and servers (read only)",
         "scopes": list(PAGE_SCOPES) + ([f"access:services!service={culler_name}"] if culler_url else []),
         "services": [name]},
        {"name": f"{name}-viewers", "description": "see every server on hubfleet's admin page (logs, events)",
         "scopes": [view_scope, access], "groups": list(viewer_groups)},
    ]
    if all_users:
        roles.append({"name": "user", "description": "Standard user privileges, and hubfleet's admin page "
                      "(own servers only)", "scopes": ["self", access]})
    custom = {view_scope: {"description": "See every server on hubfleet's admin page: pods, events, logs, saved "
                           "failures and usage of all users."}}
    return AdminPage(service, roles, custom)


__all__ = ["AdminPage", "PAGE_SCOPES", "admin_page_service"]
