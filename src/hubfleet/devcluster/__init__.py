"""devcluster: a one-machine stand-in for Kubernetes, so hubfleet runs and is tested where no cluster exists.

- ``api.py``        the Kubernetes API over HTTPS (routing, auth, content, verbs, watch, pods/log), on
  ``store.py`` (objects + watch log), ``selectors.py``, ``validation.py``, ``patching.py``, ``schemas.py``,
  ``discovery.py`` (discovery + OpenAPI), ``tables.py``, ``protobuf.py``, ``faults.py``, ``tls.py``,
- ``nodes.py``      simulated nodes from a YAML file,
- ``scheduling.py`` pure placement logic (fit, reasons, scores), ``scheduler.py`` the loop (and extender client),
- ``kubelet.py``    the process kubelet (each pod a local process on its own 127.0.X.Y),
- ``app.py``        all of it in one process; ``hubfleet devcluster --state DIR`` runs it.
"""

from __future__ import annotations

import importlib

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "DevCluster": ".app",
    "kubeconfig_text": ".app",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
