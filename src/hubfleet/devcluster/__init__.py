"""devcluster: a one-machine stand-in for Kubernetes, so hubfleet runs and is tested where no cluster exists.

- ``api.py``        the Kubernetes API (kmock's KubernetesEmulator + the gaps a real hub needs),
- ``nodes.py``      simulated nodes from a YAML file,
- ``scheduling.py`` pure placement logic (fit, reasons, scores), ``scheduler.py`` the loop (and extender client),
- ``kubelet.py``    the process kubelet (each pod a local process on its own 127.0.X.Y),
- ``app.py``        all of it in one process; ``hubfleet devcluster --state DIR`` runs it.
"""

from .app import DevCluster, kubeconfig_text

__all__ = ["DevCluster", "kubeconfig_text"]
