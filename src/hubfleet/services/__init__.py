"""Services: the hub-managed idle-culler service with per-profile cull policies (:mod:`.culler`) and the HTTPS
certificate probe it runs (:mod:`.certprobe`)."""
