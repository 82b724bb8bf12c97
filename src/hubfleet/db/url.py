"""The database URL a z2jh hub uses, read the way the chart's ``jupyterhub_config.py`` reads it (for CLIs run in
the hub pod, e.g. ``kubectl exec deploy/hub -- hubfleet users bindings``)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..errors import HubfleetError

Z2JH_CONFIG_DIR = Path("/usr/local/etc/jupyterhub")
HUB_DEFAULT_URL = "sqlite:///jupyterhub.sqlite"  # JupyterHub's default and z2jh's sqlite-pvc (cwd /srv/jupyterhub)


def z2jh_db_url(config_dir: str | os.PathLike = Z2JH_CONFIG_DIR) -> tuple[str, dict[str, str]] | None:
    """``(db_url, environment)`` from the chart's mounted values (``secret/values.yaml``, then
    ``existing-secret/values.yaml``) and ``hub.db.password``; the environment holds ``PGPASSWORD``/``MYSQL_PWD`` as
    the chart sets it. None when no values are mounted (not in a z2jh hub pod)."""
    root = Path(config_dir)
    db: dict = {}
    found = False
    for source in ("secret", "existing-secret"):
        path = root / source / "values.yaml"
        if path.exists():
            found = True
            try:
                values = yaml.safe_load(path.read_text()) or {}
                section = (values.get("hub") or {}).get("db") or {}
                db.update(section)
            except (yaml.YAMLError, AttributeError, TypeError, ValueError) as e:
                raise HubfleetError(f"{path}: not the chart's values (hub.db unreadable: {type(e).__name__})",
                                    fix="pass --db-url") from e
    if not found:
        return None
    kind = db.get("type") or "sqlite-pvc"
    if kind == "sqlite-memory":
        raise HubfleetError("hub.db.type is sqlite-memory: the hub's database lives in the hub process only",
                            fix="nothing outside the hub can read it; use sqlite-pvc or postgres")
    url = HUB_DEFAULT_URL if kind == "sqlite-pvc" else db.get("url")
    if not url:
        raise HubfleetError(f"hub.db.type is {kind} but hub.db.url is not set", fix="pass --db-url")
    env = {}
    for source in ("existing-secret", "secret"):
        path = root / source / "hub.db.password"
        if path.exists():
            password = path.read_text()
            if kind == "postgres":
                env["PGPASSWORD"] = password
            elif kind == "mysql":
                env["MYSQL_PWD"] = password
            break
    return url, env
