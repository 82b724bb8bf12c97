"""Spawners: ProfileSpawner, a profile-aware KubeSpawner subclass with group-restricted profiles, server-side
validation, quotas, per-user storage and hardened pods. (Issue #4.)

Public API:

- :class:`ProfileSpawner` — select it with ``c.JupyterHub.spawner_class = "hubfleet"`` (entry point
  ``jupyterhub.spawners: hubfleet``).
- :mod:`hubfleet.spawners.profiles` — the pure rules (parsing, access, validation, overrides, quotas).
"""

from .profiles import ProfileConfigError, ProfileError, parse_catalog, parse_profiles
from .spawner import ProfileSpawner

__all__ = ["ProfileSpawner", "ProfileError", "ProfileConfigError", "parse_catalog", "parse_profiles"]
