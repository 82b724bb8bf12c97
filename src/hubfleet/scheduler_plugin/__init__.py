"""hubfleet.scheduler_plugin: a kube-scheduler extender webhook for JupyterHub user pods.

- ``wire.py``    kube-scheduler's extender wire types (Go field names, decoded case-insensitively),
- ``scoring.py`` the pure policy: resource/GPU-reservation filter, bin-packing + GPU best-fit scores (0..10),
- ``cache.py``   what is bound where, from a pods (and nodes) list+watch,
- ``app.py``     the aiohttp server (``POST /filter``, ``POST /prioritize``, ``GET /healthz``, ``GET /metrics``),
- ``cli.py``     ``hubfleet scheduler-extender``.

Deploy it beside a kube-scheduler as ``deploy/scheduler-extender/`` shows; see docs/scheduler-extender.md.
"""

from .scoring import Policy, Weights

__all__ = ["Policy", "Weights"]
