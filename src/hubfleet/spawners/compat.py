"""The one place where JupyterHub 5.5 and 6.x differ for ProfileSpawner.

- Refusals: JupyterHub 6 has ``jupyterhub.spawner.SpawnException`` (a policy refusal: no traceback logged, the
  ``reason`` label in the spawn metrics, the message shown on the spawn page and in the REST answer). JupyterHub
  5.5 has no such class; the equivalent is a ``tornado.web.HTTPError`` with ``jupyterhub_message`` set, which 5.5
  shows on the spawn page and returns from the REST API the same way.
- REST bodies: JupyterHub 6 takes ``{"user_options": {...}, "display_name": ...}`` (and still a plain options
  dict); 5.5 passes the whole body as ``user_options``, so a 6.x-shaped body reaches 5.5 wrapped. Both shapes are
  unwrapped here, so a client written for either version works on both.
- Query strings: JupyterHub 6 strips the ``opt-`` prefix (``/hub/spawn?opt-profile=gpu``); 5.5 passes the keys as
  they are. Both spellings are accepted.
- Named servers: JupyterHub 6 refuses new names that are not 1-30 characters of ``[a-z0-9-]`` (starting with a
  letter, no ``--``); 5.5 does not, so the spawner applies the same rule, stating it.
"""

from __future__ import annotations

import json
import re

import jupyterhub
from tornado import web

try:  # JupyterHub >= 6
    from jupyterhub.spawner import SpawnException
except ImportError:  # JupyterHub 5.x
    SpawnException = None

JUPYTERHUB_VERSION = tuple(int(x) for x in re.findall(r"\d+", jupyterhub.__version__)[:2])
HAS_SPAWN_EXCEPTION = SpawnException is not None

#: JupyterHub 6's rule for new named-server names (``jupyterhub.slugs.is_valid_safe_slug``).
SERVER_NAME_RULE = ("1-30 characters: lowercase letters, digits and single hyphens, starting with a letter and "
                    "ending with a letter or digit")
_SERVER_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

_BODY_KEYS = frozenset({"user_options", "display_name"})
_RESERVED_QUERY_KEYS = ("next", "display_name")
_SPAWN_PAGE = re.compile(r"/hub/spawn(?:/|$)")


def refusal(status: int, message: str, reason: str) -> web.HTTPError:
    """The exception that refuses a spawn with ``message`` shown to the user (spawn page and REST answer)."""
    if SpawnException is not None:
        exc = SpawnException(message, reason=reason, status_code=status)
    else:
        exc = web.HTTPError(status, message)
        exc.reason_label = reason
    exc.jupyterhub_message = message  # both versions show this as-is on the spawn page and in the API error
    return exc


def unwrap_options(user_options):
    """``user_options`` as the client meant them, whichever version's REST body shape it used."""
    if isinstance(user_options, dict) and "user_options" in user_options and set(user_options) <= _BODY_KEYS:
        inner = user_options.get("user_options")
        return dict(inner) if isinstance(inner, dict) else ({} if inner is None else inner)
    return user_options


def strip_query_prefix(query: dict) -> dict:
    """``opt-profile`` -> ``profile`` (JupyterHub 6 spelling, on 5.5 where the hub does not strip it); when both
    spellings are mixed, JupyterHub 6 uses only the prefixed ones, and so does this."""
    query = {k: v for k, v in query.items() if k not in _RESERVED_QUERY_KEYS}
    prefixed = {k[4:]: v for k, v in query.items() if k.startswith("opt-") and k[4:]}
    return prefixed if prefixed else query


def names_options(request) -> bool:
    """Whether the request that started a spawn named its ``user_options`` (an explicit choice, refused when not
    allowed) rather than letting the hub reuse the last spawn's (a saved choice, replaced by the default when no
    longer allowed). Named: a posted spawn form, ``/hub/spawn?...`` with options, a REST body carrying options (either
    version's shape). Not named: a REST POST without options (the admin panel's start button), the spawn page without
    options, no request at all. Decided from the request alone, since JupyterHub may parse a form with one spawner
    object and spawn with another."""
    if request is None:
        return False
    if _SPAWN_PAGE.search(request.path):
        if request.method == "POST":
            return True
        query = getattr(request, "query_arguments", None) or {}
        return any(key not in _RESERVED_QUERY_KEYS for key in query)
    if request.method != "POST" or "/api/users/" not in request.path:
        return False
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return False
    if isinstance(body, dict) and set(body) & _BODY_KEYS:
        return body.get("user_options") is not None
    return bool(body)


def server_name_problem(name: str) -> str | None:
    """Why ``name`` may not name a new server (JupyterHub 6's rule, stated), or None."""
    if not name or (len(name) <= 30 and _SERVER_NAME.match(name)):
        return None
    return f"invalid server name {name!r}: a server name must be {SERVER_NAME_RULE}"


def uncount_refusal(spawner) -> None:
    """JupyterHub 5.5 counts every spawn that raises towards ``consecutive_failure_limit`` (z2jh's
    ``hub.consecutiveFailureLimit``), and exits when it is reached; JupyterHub 6 does not count a
    ``SpawnException``. A spawn that ends by joining a queue is the normal path, so on 5.5 the count this refusal is
    about to add is taken back beforehand (the hub's handler adds one when the spawn's future fails)."""
    if HAS_SPAWN_EXCEPTION:
        return
    settings = getattr(getattr(spawner, "handler", None), "settings", None)
    if isinstance(settings, dict):
        settings["failure_count"] = settings.get("failure_count", 0) - 1
