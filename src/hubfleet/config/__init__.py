"""Config helpers for ``jupyterhub_config.py`` (service and role entries, wiring hubfleet components into a z2jh hub)."""
