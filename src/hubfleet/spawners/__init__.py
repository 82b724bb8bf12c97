"""Spawners: ProfileSpawner, a profile-aware KubeSpawner subclass with group-restricted profiles, server-side
validation, quotas, per-user storage and hardened pods.

Public API:

- :class:`ProfileSpawner` — select it with ``c.JupyterHub.spawner_class = "hubfleet"`` (entry point
  ``jupyterhub.spawners: hubfleet``).
- :mod:`hubfleet.spawners.profiles` — the pure rules (parsing, access, validation, overrides, quotas).
"""

from __future__ import annotations

from ..lazy import lazy_exports

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "ProfileConfigError": ".profiles",
    "ProfileError": ".profiles",
    "ProfileSpawner": ".spawner",
    "parse_catalog": ".profiles",
    "parse_profiles": ".profiles",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
