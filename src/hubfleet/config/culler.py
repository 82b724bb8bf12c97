"""``culler_service()``: the ``c.JupyterHub.services`` entry and least-privilege role for hubfleet's culler.

    from hubfleet.config.culler import culler_service
    service, role = culler_service(timeout=3600, policies_file="/usr/local/etc/jupyterhub/culler-policies.yaml")
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.append(role)

The role grants what a sweep uses and nothing more: ``list:users`` (``GET /users?state=...``),
``read:users:activity`` (``last_activity``), ``read:servers`` (server models, with ``user_options`` and
``started``), ``delete:servers`` (stop). Each feature adds only its own scope, and only when it is configured:

- ``cull_users``: ``read:users`` (the user's ``created``) and ``delete:users`` — not ``admin:users``, which would
  also let the token create users, rename them, make them admins and read their auth state;
- ``server_url`` (busy kernels): ``tokens``, to have the hub mint, for each check, a token owned by the server's
  user that reaches only that server (``access:servers!server=<name>/<server>``, a minute at most) and to delete it
  after the check: the culler's own token never goes to a user's server. ``tokens`` lets this token create tokens
  for any user within that user's own rights, so keep it as secret as the hub's own (a hub-managed service's is in
  the hub's pod anyway);
- ``prometheus_url`` (GPU use): ``admin:server_state`` (the pod name KubeSpawner keeps in the server's state);
- ``profiles_file`` (resolving a server that names no profile): ``read:users:groups``;
- ``mail_from_auth_state`` (SMTP addresses from LDAP ``mail`` / OIDC ``email``): ``admin:auth_state``.
"""

from __future__ import annotations

import sys

SERVER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
USER_SCOPES = ["read:users", "delete:users"]
KERNEL_SCOPES = ["tokens"]
GPU_SCOPES = ["admin:server_state"]
PROFILE_SCOPES = ["read:users:groups"]
AUTH_STATE_SCOPES = ["admin:auth_state"]


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"culler_service: {name} must be an integer >= {minimum}, not {value!r}")
    return value


def culler_service(*, timeout: int = 3600, policies_file: str = "", cull_every: int = 0, concurrency: int = 10,
                   max_age: int = 0, cull_users: bool = False, cull_admin_users: bool = False,
                   remove_named_servers: bool = False, name: str = "hubfleet-culler", api_token: str | None = None,
                   python: str | None = None, extra_args: list[str] | tuple[str, ...] = (),
                   environment: dict | None = None, profiles_file: str = "", server_url: str = "",
                   prometheus_url: str = "", mail_from_auth_state: bool = False,
                   metrics_port: int | None = None, extender_url: str = "",
                   cull_over_budget: bool = False) -> tuple[dict, dict]:
    """Return ``(services_entry, role_entry)`` for a hub-managed culler.

    ``cull_users=True`` DELETES users whose servers were culled, and with KubeSpawner's default
    ``delete_pvc = True`` their home volumes; ``cull_admin_users`` (False, unlike z2jh) lets it delete admins too.
    ``api_token`` is only needed when something else must know the token (tests); the hub generates one for a
    managed service otherwise. ``python`` defaults to the hub's own interpreter. ``metrics_port``: serve
    ``/services/<name>/metrics`` from this port on 127.0.0.1 (the entry gets a ``url``). ``extender_url``: the
    scheduler extender's consolidation listener, for policies with ``consolidate`` (no hub scope needed).
    ``cull_over_budget``: stop servers whose usage budget is used up (``GET /hub/api/budgets``, which
    ``enable_queue`` registers, answers with ``read:servers``, a scope the role has anyway).
    """
    _positive_int("timeout", timeout, 1)
    for opt, value in (("cull_every", cull_every), ("max_age", max_age)):
        _positive_int(opt, value, 0)
    _positive_int("concurrency", concurrency, 1)
    command = [python or sys.executable, "-m", "hubfleet.services.culler", f"--timeout={timeout}",
               f"--concurrency={concurrency}"]
    command += [f"--{flag}={value}" for flag, value in (
        ("cull-every", cull_every), ("max-age", max_age), ("policies-file", policies_file),
        ("profiles-file", profiles_file), ("server-url", server_url), ("prometheus-url", prometheus_url),
        ("extender-url", extender_url)) if value]
    if cull_users:
        command.append("--cull-users=True")
        if cull_admin_users:
            command.append("--cull-admin-users=True")
    if remove_named_servers:
        command.append("--remove-named-servers=True")
    if cull_over_budget:
        command.append("--cull-over-budget=True")
    command.extend(extra_args)
    service = {"name": name, "command": command}
    if metrics_port is not None:
        if _positive_int("metrics_port", metrics_port, 1) > 65535:
            raise ValueError(f"culler_service: metrics_port must be a TCP port (1-65535), not {metrics_port!r}")
        service["url"] = f"http://127.0.0.1:{metrics_port}"
    if api_token:
        service["api_token"] = api_token
    if environment:
        service["environment"] = dict(environment)
    scopes = list(SERVER_SCOPES)
    for wanted, extra in ((cull_users, USER_SCOPES), (server_url, KERNEL_SCOPES), (prometheus_url, GPU_SCOPES),
                          (profiles_file, PROFILE_SCOPES), (mail_from_auth_state, AUTH_STATE_SCOPES)):
        if wanted:
            scopes += extra
    role = {"name": name, "description": "hubfleet idle culler: list users, read activity, stop servers"
            + (", delete users" if cull_users else ""), "scopes": scopes, "services": [name]}
    return service, role


__all__ = ["culler_service", "SERVER_SCOPES", "USER_SCOPES", "KERNEL_SCOPES", "GPU_SCOPES", "PROFILE_SCOPES",
           "AUTH_STATE_SCOPES"]
