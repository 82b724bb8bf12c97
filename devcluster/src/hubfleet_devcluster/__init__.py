"""devcluster: a one-machine stand-in for Kubernetes, so hubfleet runs and is tested where no cluster exists.

- ``api.py``        the Kubernetes API over HTTPS (routing, auth, content, verbs, watch, pods/log), on
  ``store.py`` (objects + watch log), ``selectors.py``, ``validation.py``, ``patching.py``, ``schemas.py``,
  ``discovery.py`` (discovery + OpenAPI), ``tables.py``, ``protobuf.py``, ``faults.py``, ``tls.py``,
- ``nodes.py``      simulated nodes from a YAML file,
- ``scheduling.py`` pure placement logic (fit, reasons, scores), ``scheduler.py`` the loop (and extender client),
- ``kubelet.py``    the process kubelet (each pod a local process on its own 127.0.X.Y),
- ``app.py``        all of it in one process; ``hubfleet-devcluster --state DIR`` runs it.
"""

from __future__ import annotations

from hubfleet.lazy import lazy_exports

# name -> submodule; imported on first use so that importing a pure submodule (or this package) stays
# free of KubeSpawner, tornado, aiohttp, kubernetes and ldap3 (tests/unit/test_purity.py checks it).
_LAZY = {
    "DevCluster": ".app",
    "kubeconfig_text": ".app",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
