"""hubfleet.scheduler_plugin: a kube-scheduler extender webhook for JupyterHub user pods.

- ``wire.py``       kube-scheduler's extender wire types (Go field names, decoded case-insensitively),
- ``scoring.py``    the pure policy: resource/GPU-reservation/autoscaler filter, pack (MostAllocated + lifetime +
                    GPU fit keeping free pairs) or spread (LeastAllocated + zones) scores 0..10,
- ``preemption.py`` the pure preempt policy: the idlest user servers among kube-scheduler's proposed victims,
- ``tables.py``     verdicts and scores kept per request shape, answers per candidate list,
- ``cache.py``      what is bound where, from paged pods and nodes lists + watches,
- ``metrics.py``    Prometheus metrics (prometheus_client),
- ``app.py``        the aiohttp server (``POST /filter``, ``/prioritize``, ``/preempt``, ``GET /healthz``,
                    ``/metrics``, ``/cache``),
- ``cli.py``        ``hubfleet scheduler-extender``.

Deploy it beside a kube-scheduler as ``deploy/scheduler-extender/`` shows; see docs/scheduler-extender.md.
"""

from __future__ import annotations

from ..lazy import lazy_exports

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "Policy": ".scoring",
    "Weights": ".scoring",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
