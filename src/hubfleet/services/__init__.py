"""Services: a hub-managed idle-culler service built on jupyterhub-idle-culler, with per-profile cull policies (pods carry the ``hubfleet.io/profile`` label it will key on)."""
