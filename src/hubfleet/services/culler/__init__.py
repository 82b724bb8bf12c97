"""A hub-managed idle-culler service with per-profile policies (its own sweep; from jupyterhub-idle-culler it takes
``make_ssl_context`` and ``utcnow``, and :func:`.arbiter.idle_culler_hook` plugs its policies into that culler's hook).

- :mod:`.policies` (pure): ``CullPolicy`` and the policies file (JSON Schema, ``hubfleet.yamlfile``).
- :mod:`.arbiter` (pure): ``cull_decision`` (cull, warn, wait or keep), ``resolve_policy``, ``user_cull_decision``.
- :mod:`.limiter` (pure): ``AdaptiveLimit``, stops in flight adapted to the hub's answer times.
- :mod:`.sweep`: one sweep (per-user isolation, warnings, activity sources, stops through the adaptive gate).
- :mod:`.notify`: SMTP, webhook and hook notifiers; :mod:`.activity`: busy kernels and GPU use (Prometheus);
  :mod:`.metrics`: prometheus_client metrics; :mod:`.hub_api`: the hub REST API edge (pagination, retries).
- :mod:`.app`: ``CullerApp`` (``hubfleet-culler``), run as ``python -m hubfleet.services.culler`` or
  ``hubfleet culler``.
- ``hubfleet.config.culler.culler_service()`` builds the ``c.JupyterHub.services`` and ``load_roles`` entries.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "Activity": ".arbiter",
    "AdaptiveLimit": ".limiter",
    "Warned": ".arbiter",
    "resolve_policy": ".arbiter",
    "CullConfigError": ".arbiter",
    "CullPolicy": ".arbiter",
    "Decision": ".arbiter",
    "cull_decision": ".arbiter",
    "policies_from_config": ".arbiter",
    "user_cull_decision": ".arbiter",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
