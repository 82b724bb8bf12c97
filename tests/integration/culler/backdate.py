"""A test-only hub API handler that back-dates ``last_activity`` inside the hub (used by the culler tests and
bench/bench_culler.py): ``POST /hub/api/test/backdate {"users": [...], "seconds": N}`` with an ``admin:users`` token.

Why not edit ``jupyterhub.sqlite`` from outside: the hub's SQLAlchemy session uses ``expire_on_commit=False`` and keeps
every user and spawner row in its identity map, so ``GET /users`` may keep serving the cached ``last_activity`` until
something expires it (read from jupyterhub 6.1.1's orm.py; not measured here). Setting it through the hub's own
session and committing is what the hub then serves, with no doubt about caching. The
activity API (``POST /users/<u>/activity``) cannot do it: it only moves ``last_activity`` forward.
"""

from __future__ import annotations

import json
from datetime import timedelta

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.utils import utcnow
from tornado import web


class BackdateHandler(APIHandler):
    async def post(self):
        if "admin:users" not in self.expanded_scopes:
            raise web.HTTPError(403, "back-dating needs admin:users")
        body = json.loads(self.request.body)
        when = utcnow(with_tz=False) - timedelta(seconds=float(body["seconds"]))
        done = 0
        for name in body["users"]:
            user = self.find_user(name)
            if user is None:
                raise web.HTTPError(404, f"no user {name!r}")
            user.orm_user.last_activity = when
            for spawner in user.spawners.values():
                spawner.orm_spawner.last_activity = when
                if body.get("started"):
                    spawner.orm_spawner.started = when
            done += 1
        self.db.commit()
        self.write({"backdated": done})


def hub_config(repo: str) -> str:
    return (f"import sys\nsys.path.insert(0, {repo!r})\n"
            "from tests.integration.culler.backdate import BackdateHandler\n"
            "c.JupyterHub.extra_handlers = [(r'/api/test/backdate', BackdateHandler)]\n")
