"""The queue's hub API: ``GET /hub/api/queue`` (the caller's queued requests and budgets, JSON; scope
``read:servers`` on the caller), ``GET /hub/api/queue?all=1`` (every queued request with its place, of the users on
whom the caller holds ``read:servers``: the admin page's token holds it on all), ``DELETE /hub/api/queue/<profile>`` (leave that queue; scope ``servers``) and
``GET /hub/api/budgets`` (the running servers a usage budget applies to, with each budget's use; of the users on
whom the caller holds ``read:servers``: the culler, which stops servers whose budget is used up, holds it on all).

Registered in the hub process with ``c.JupyterHub.extra_handlers = hubfleet.spawners.queue_web.handlers()``: on
JupyterHub 5.5 and 6.1 alike these are hub API handlers, authenticated as every ``/hub/api/`` request (a token,
or the hub's cookie with its XSRF check for a browser), and they answer from the same process and database as
the spawner, so what they show is what the admitter decides. JupyterHub logs that ``extra_handlers`` is
deprecated (in favour of services); a service would need its own process, its own OAuth client and its own copy
of the profiles, for two small endpoints.
"""

from __future__ import annotations

import json

from jupyterhub import orm

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from ..db import DatabaseUnavailable
from . import queue_store


class QueueAPIHandler(APIHandler):
    """The calling user's queued requests (only their own)."""

    def _spawner(self, scope: str):
        """The caller's (a user's) spawner, when the request holds ``scope`` on that user (``read:servers`` to read,
        ``servers`` to leave: the scopes of the user's own servers, which the queued requests stand for)."""
        user = self.current_user
        if user is None or not hasattr(user, "spawner"):
            raise web.HTTPError(403, "only users have queued requests")
        if not self.has_scope(f"{scope}!user={user.name}"):
            raise web.HTTPError(403, f"this token lacks the scope {scope} on user {user.name}")
        spawner = user.spawner
        if not hasattr(spawner, "queue_status"):
            raise web.HTTPError(404, "this hub's spawner has no queue")
        return user, spawner

    async def get(self, profile=None):
        if profile is None and self.get_argument("all", "") not in ("", "0"):
            return await self._get_all()
        user, spawner = self._spawner("read:servers")
        try:
            status = await spawner.queue_status(user.name)
        except DatabaseUnavailable as e:
            raise web.HTTPError(503, f"the queue is unavailable: {e}") from e
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(status))

    async def _get_all(self):
        """``{"queues": [slugs of profiles with queue: true], "queued": [...]}``: every queued request
        (:meth:`.queueing.SpawnQueue.queue_listing`: the places its user sees) of the users on whom the caller
        holds ``read:servers``. Any spawner computes it (the queue and the profiles are the hub's, not a user's)."""
        if self.current_user is None:
            raise web.HTTPError(403, "a token is needed")
        if not hasattr(self.settings.get("spawner_class"), "queue_listing"):
            raise web.HTTPError(404, "this hub's spawner has no queue")
        orm_spawner = self.db.query(orm.Spawner).order_by(orm.Spawner.id).first()
        queues, queued = [], []
        if orm_spawner is not None and orm_spawner.user is not None:  # nobody has spawned: nobody is queued
            spawner = self.users[orm_spawner.user].spawners[orm_spawner.name]
            try:
                queues = [p.slug for p in (await spawner.load_catalog()).profiles if p.queue]
                queued = [q for q in await spawner.queue_listing()
                          if self.has_scope(f"read:servers!user={q['user']}")]
            except DatabaseUnavailable as e:
                raise web.HTTPError(503, f"the queue is unavailable: {e}") from e
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps({"queues": queues, "queued": queued}))

    async def delete(self, profile):
        user, spawner = self._spawner("servers")
        try:
            left = await spawner._queue_call(queue_store.leave, user=user.name, profile=profile, write=True)
        except DatabaseUnavailable as e:
            raise web.HTTPError(503, f"the queue is unavailable: {e}") from e
        if not left:
            raise web.HTTPError(404, f"you are not in the queue of {profile!r}")
        self.log.info("user:%s left the queue of %s", user.name, profile)
        self.set_status(204)


class BudgetsAPIHandler(APIHandler):
    """``{"servers": [{"user", "server", "profile", "used_up", "budgets": [...]}]}``: each running server that a
    budget applies to, with the use of each (:meth:`.budgets.UsageBudgets.server_budget_status`, the arithmetic of
    the spawn gate), of the users whose servers the caller may read. 503 when the usage records cannot be read."""

    async def get(self):
        if self.current_user is None:
            raise web.HTTPError(403, "a token is needed")
        out = []
        for orm_spawner in self.db.query(orm.Spawner).filter(orm.Spawner.server != None):  # noqa: E711
            orm_user = orm_spawner.user
            if orm_user is None or not self.has_scope(f"read:servers!user={orm_user.name}"):
                continue
            spawner = self.users[orm_user].spawners[orm_spawner.name]
            if not hasattr(spawner, "server_budget_status"):
                continue
            try:
                budgets = await spawner.server_budget_status()
            except DatabaseUnavailable as e:
                raise web.HTTPError(503, f"the usage records are unavailable: {e}") from e
            if budgets:
                out.append({"user": orm_user.name, "server": orm_spawner.name,
                            "profile": (spawner.user_options or {}).get("profile"),
                            "used_up": any(not b["ok"] for b in budgets), "budgets": budgets})
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps({"servers": out}))


def handlers() -> list:
    """The handlers for ``c.JupyterHub.extra_handlers`` (the hub adds its ``/hub`` prefix)."""
    return [(r"/api/queue", QueueAPIHandler), (r"/api/queue/([^/]+)", QueueAPIHandler),
            (r"/api/budgets", BudgetsAPIHandler)]
