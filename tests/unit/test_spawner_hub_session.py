"""ProfileSpawner leaves no change pending in the hub's database session when it gives the event loop away.

JupyterHub commits before every await: its one session is shared by every request, so a change left pending is
flushed by the next query of any other request. On SQLite that flush takes the database's write lock and keeps it
until some later commit, and every writer, hubfleet's own tables included (a queue join), waits it out. A real
JupyterHub ORM on an SQLite file shows it: once the spawn has resolved the choice (the first step of KubeSpawner's
start), another request's read must not leave the database locked, and the recorded choice must be in the database
for every reader."""

from __future__ import annotations

import sqlite3

from jupyterhub import orm
from traitlets.config import Config

from hubfleet.spawners import ProfileSpawner

from .test_profiles_spawner import IMG, FakeHub, FakeUser, NoKubernetes, no_cluster, submit  # noqa: F401

PROFILES = {"profiles": [{"slug": "small", "display_name": "Small", "default": True, "image": IMG},
                         {"slug": "large", "display_name": "Large", "image": IMG}]}


async def test_a_submitted_form_leaves_the_hub_database_unlocked_and_the_choice_recorded(tmp_path):
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    session = orm.new_session_factory(url)()
    orm_user = orm.User(name="alice")
    session.add(orm_user)
    session.commit()
    orm_spawner = orm.Spawner(user=orm_user, name="")
    session.add(orm_spawner)
    session.commit()

    c = Config()
    c.ProfileSpawner.namespace = "default"
    c.ProfileSpawner.profiles = PROFILES
    spawner = ProfileSpawner(user=FakeUser("alice"), hub=FakeHub(), config=c, orm_spawner=orm_spawner)
    spawner.api = NoKubernetes()
    await submit(spawner, {"profile": ["large"]})
    await spawner.load_user_options()  # what KubeSpawner's start runs first, after the hub's last commit

    session.query(orm.User).all()  # another request reads while the spawn goes on
    other = sqlite3.connect(tmp_path / "jupyterhub.sqlite", timeout=0.2, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # hubfleet's writers start so; "database is locked" if the hub holds it
        other.execute("ROLLBACK")
        (options,) = other.execute("SELECT user_options FROM spawners WHERE id = ?", (orm_spawner.id,)).fetchone()
    finally:
        other.close()
        session.close()
    assert '"profile": "large"' in options
