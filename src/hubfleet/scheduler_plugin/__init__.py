"""hubfleet.scheduler_plugin: a kube-scheduler extender webhook for JupyterHub user pods.

- ``wire.py``    kube-scheduler's extender wire types (Go field names, decoded case-insensitively),
- ``scoring.py`` the pure policy: resource/GPU-reservation filter, bin-packing + GPU best-fit scores (0..10),
- ``cache.py``   what is bound where, from a pods (and nodes) list+watch,
- ``app.py``     the aiohttp server (``POST /filter``, ``POST /prioritize``, ``GET /healthz``, ``GET /metrics``),
- ``cli.py``     ``hubfleet scheduler-extender``.

Deploy it beside a kube-scheduler as ``deploy/scheduler-extender/`` shows; see docs/scheduler-extender.md.
"""

from __future__ import annotations

import importlib

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "Policy": ".scoring",
    "Weights": ".scoring",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
