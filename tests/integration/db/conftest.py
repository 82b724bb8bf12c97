"""The database every test here runs on: SQLite (the hub's default) and a real PostgreSQL server."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    return request.getfixturevalue("pg_url")
