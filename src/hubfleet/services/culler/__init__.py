"""A hub-managed idle-culler service with per-profile policies, built on jupyterhub-idle-culler.

- :mod:`.arbiter` (pure): ``CullPolicy``, ``policies_from_config``, ``cull_decision``, ``user_cull_decision``.
- :mod:`.hub_api`: the hub REST API edge (pagination, bounded retries with backoff).
- :mod:`.app`: ``CullerApp`` (``hubfleet-culler``), run as ``python -m hubfleet.services.culler`` or
  ``hubfleet culler``.
- ``hubfleet.config.culler.culler_service()`` builds the ``c.JupyterHub.services`` and ``load_roles`` entries.
"""

from __future__ import annotations

import importlib

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "CullConfigError": ".arbiter",
    "CullPolicy": ".arbiter",
    "Decision": ".arbiter",
    "cull_decision": ".arbiter",
    "policies_from_config": ".arbiter",
    "user_cull_decision": ".arbiter",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
