"""``hubfleet users`` in a z2jh hub pod finds the hub's database the way the chart's jupyterhub_config.py does."""

from __future__ import annotations

import pytest
import yaml

from hubfleet.db import z2jh_db_url
from hubfleet.errors import HubfleetError


def _mount(root, values: dict, password: str | None = None, source: str = "secret"):
    d = root / source
    d.mkdir(parents=True, exist_ok=True)
    (d / "values.yaml").write_text(yaml.safe_dump(values))
    if password is not None:
        (d / "hub.db.password").write_text(password)


def test_not_in_a_hub_pod(tmp_path):
    assert z2jh_db_url(tmp_path) is None


@pytest.mark.parametrize("values, expected", [
    ({}, "sqlite:///jupyterhub.sqlite"),  # the chart's default: sqlite-pvc, the hub's cwd /srv/jupyterhub
    ({"hub": {"db": {"type": "sqlite-pvc"}}}, "sqlite:///jupyterhub.sqlite"),
    ({"hub": {"db": {"type": "postgres", "url": "postgresql+psycopg2://hub@db:5432/jupyterhub"}}},
     "postgresql+psycopg2://hub@db:5432/jupyterhub"),
])
def test_the_url_the_chart_gives_the_hub(tmp_path, values, expected):
    _mount(tmp_path, values)
    assert z2jh_db_url(tmp_path) == (expected, {})


def test_password_and_existing_secret(tmp_path):
    _mount(tmp_path, {"hub": {"db": {"type": "postgres", "url": "postgresql://hub@db/jupyterhub"}}}, "s3cret")
    _mount(tmp_path, {"hub": {"db": {"url": "postgresql://hub@other/jupyterhub"}}}, "other-pw", "existing-secret")
    assert z2jh_db_url(tmp_path) == ("postgresql://hub@other/jupyterhub", {"PGPASSWORD": "other-pw"})


@pytest.mark.parametrize("db, message", [({"type": "sqlite-memory"}, "sqlite-memory"),
                                         ({"type": "postgres"}, "hub.db.url is not set")])
def test_what_cannot_be_reached_says_why(tmp_path, db, message):
    _mount(tmp_path, {"hub": {"db": db}})
    with pytest.raises(HubfleetError, match=message):
        z2jh_db_url(tmp_path)


@pytest.mark.parametrize("text", ["hub: [unclosed", "- a list\n- of values\n", "hub: 3\n", "hub:\n  db: [1, 2]\n"])
def test_unreadable_values_say_which_file(tmp_path, text):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "values.yaml").write_text(text)
    with pytest.raises(HubfleetError, match=r"secret/values.yaml: not the chart's values") as e:
        z2jh_db_url(tmp_path)
    assert "--db-url" in str(e.value)
