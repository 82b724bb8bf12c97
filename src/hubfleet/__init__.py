"""hubfleet: the plugin suite for JupyterHub on Kubernetes (Zero-to-JupyterHub).

Subpackages:

- ``hubfleet.authenticators``   — one Authenticator composing LDAP/AD, OIDC and local-account backends.
- ``hubfleet.spawners``         — ProfileSpawner, a profile-aware KubeSpawner subclass.
- ``hubfleet.services``         — hub-managed services (the per-profile idle culler).
- ``hubfleet.scheduler_plugin`` — a kube-scheduler extender webhook (filter/prioritize).
- ``hubfleet.config``           — helpers for ``jupyterhub_config.py``.
"""

__version__ = "0.1.0"
