"""A hub-managed idle-culler service with per-profile policies, built on jupyterhub-idle-culler.

- :mod:`.arbiter` (pure): ``CullPolicy``, ``policies_from_config``, ``cull_decision``, ``user_cull_decision``.
- :mod:`.hub_api`: the hub REST API edge (pagination, bounded retries with backoff).
- :mod:`.app`: ``CullerApp`` (``hubfleet-culler``), run as ``python -m hubfleet.services.culler`` or
  ``hubfleet culler``.
- ``hubfleet.config.culler.culler_service()`` builds the ``c.JupyterHub.services`` and ``load_roles`` entries.
"""

from .arbiter import CullConfigError, CullPolicy, Decision, cull_decision, policies_from_config, user_cull_decision

__all__ = ["CullConfigError", "CullPolicy", "Decision", "cull_decision", "policies_from_config",
           "user_cull_decision"]
