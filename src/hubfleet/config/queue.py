"""Hub configuration for ProfileSpawner's spawn queue: the admitter's service account and the queue's API.

``jupyterhub_config.py``::

    from hubfleet.config.queue import enable_queue
    enable_queue(c)

The admitter runs inside the hub (in ProfileSpawner); it starts admitted servers through the hub's REST API with
the token of an *external* service ``hubfleet-queue`` (no process, no URL) whose role has the one scope ``servers``
(start and stop any user's servers; it cannot read tokens, change users or groups, or act as a user).
``/hub/api/queue`` is registered with ``JupyterHub.extra_handlers`` (see :mod:`hubfleet.spawners.queue_web`).
"""

from __future__ import annotations

import secrets

SERVICE = "hubfleet-queue"
SCOPES = ["servers"]


def queue_service(api_token: str, *, name: str = SERVICE) -> tuple[dict, dict]:
    """``(services_entry, role_entry)``: the admitter's service account and its least-privilege role."""
    if len(api_token) < 32:
        raise ValueError("queue api_token: expected at least 32 characters (e.g. secrets.token_hex(16))")
    return {"name": name, "api_token": api_token}, {"name": name, "scopes": list(SCOPES), "services": [name]}


def enable_queue(c, *, api_token: str | None = None) -> str:
    """Wire the queue into a hub config ``c``: the service and role (appended to ``JupyterHub.services`` /
    ``load_roles``), ``ProfileSpawner.queue_api_token`` and the ``/hub/api/queue`` handlers. A fresh token at every
    hub start unless ``api_token`` is given; returns the token."""
    from ..spawners import queue_web  # noqa: PLC0415

    token = api_token or secrets.token_hex(32)
    service, role = queue_service(token)
    hub = c.JupyterHub

    def existing(key):
        return list(hub[key]) if key in hub and isinstance(hub[key], list) else []

    hub.services = [*existing("services"), service]
    hub.load_roles = [*existing("load_roles"), role]
    hub.extra_handlers = [*existing("extra_handlers"), *queue_web.handlers()]
    c.ProfileSpawner.queue_api_token = token
    return token
