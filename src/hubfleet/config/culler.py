"""``culler_service()``: the ``c.JupyterHub.services`` entry and least-privilege role for hubfleet's culler.

    from hubfleet.config.culler import culler_service
    service, role = culler_service(timeout=3600, policies_file="/usr/local/etc/jupyterhub/culler-policies.yaml")
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.append(role)

The role grants what a sweep uses and nothing more: ``list:users`` (``GET /users?state=...``),
``read:users:activity`` (``last_activity``), ``read:servers`` (server models, with ``user_options`` and
``started``), ``delete:servers`` (stop). With ``cull_users``: ``read:users`` (the user's ``created``) and
``delete:users`` — not ``admin:users``, which would also let the token create users, rename them, make them admins
and read their auth state.
"""

from __future__ import annotations

import sys

SERVER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
USER_SCOPES = ["read:users", "delete:users"]


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"culler_service: {name} must be an integer >= {minimum}, not {value!r}")
    return value


def culler_service(*, timeout: int = 3600, policies_file: str = "", cull_every: int = 0, concurrency: int = 10,
                   max_age: int = 0, cull_users: bool = False, cull_admin_users: bool = True,
                   remove_named_servers: bool = False, name: str = "hubfleet-culler", api_token: str | None = None,
                   python: str | None = None, extra_args: list[str] | tuple[str, ...] = (),
                   environment: dict | None = None) -> tuple[dict, dict]:
    """Return ``(services_entry, role_entry)`` for a hub-managed culler.

    ``api_token`` is only needed when something else must know the token (tests); the hub generates one for a
    managed service otherwise. ``python`` defaults to the hub's own interpreter.
    """
    _positive_int("timeout", timeout, 1)
    for opt, value in (("cull_every", cull_every), ("max_age", max_age)):
        _positive_int(opt, value, 0)
    _positive_int("concurrency", concurrency, 1)
    command = [python or sys.executable, "-m", "hubfleet.services.culler", f"--timeout={timeout}",
               f"--concurrency={concurrency}"]
    if cull_every:
        command.append(f"--cull-every={cull_every}")
    if max_age:
        command.append(f"--max-age={max_age}")
    if policies_file:
        command.append(f"--policies-file={policies_file}")
    if cull_users:
        command.append("--cull-users=True")
        if not cull_admin_users:
            command.append("--cull-admin-users=False")
    if remove_named_servers:
        command.append("--remove-named-servers=True")
    command.extend(extra_args)
    service = {"name": name, "command": command}
    if api_token:
        service["api_token"] = api_token
    if environment:
        service["environment"] = dict(environment)
    scopes = SERVER_SCOPES + (USER_SCOPES if cull_users else [])
    role = {"name": name, "description": "hubfleet idle culler: list users, read activity, stop servers"
            + (", delete users" if cull_users else ""), "scopes": scopes, "services": [name]}
    return service, role


__all__ = ["culler_service", "SERVER_SCOPES", "USER_SCOPES"]
