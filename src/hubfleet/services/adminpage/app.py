"""``AdminPageApp``: the admin page as a hub-managed service (JupyterHub OAuth), see docs/admin-page.md.

Routes under the service prefix (``/services/<name>/``): ``/`` the servers, the queue and usage, ``server?user=&server=``
one server's events, logs and saved failures, ``logs?user=&server=&container=[&follow=1]`` a log tail
(``text/plain``) or a bounded follow (``text/event-stream``), ``usage.csv?by=&days=``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode, urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from traitlets import Float, Int, Unicode, default
from traitlets.config import Application

from ...db import DatabaseUnavailable
from ..culler.hub_api import HubAPI, HubAPIError
from . import render
from .access import DEFAULT_VIEW_SCOPE, viewer
from .fleet import culler_notes, intervals, server_rows
from .kube import KubeReader, KubeUnavailable
from .logtext import LineSplitter, lines_of
from .usage import BY, LiveUsageSource, aggregate, from_records

log = logging.getLogger("hubfleet.adminpage")

CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'")


class AdminPageApp(Application):
    name = "hubfleet-admin-page"
    description = "hubfleet's admin page: servers, their events and logs, saved failures, usage."

    namespace = Unicode(help="""The user namespace (where the hub's server pods run). Default: $POD_NAMESPACE,
        else ``default``.""").tag(config=True)
    kube_config = Unicode("", help="""A kubeconfig file to use instead of the in-cluster service account (for
        development).""").tag(config=True)
    kube_timeout = Float(10.0, help="Seconds each Kubernetes API call may take.").tag(config=True)
    tail_lines = Int(200, help="Log lines shown per container (and replayed when a follow starts).").tag(config=True)
    max_log_bytes = Int(1024 * 1024, help="Bytes of a log tail read at most per container.").tag(config=True)
    follow_max_seconds = Float(600.0, help="""A follow ends after this many seconds (the page says so and the
        viewer can follow again).""").tag(config=True)
    follow_max_bytes = Int(8 * 1024 * 1024, help="A follow ends after this many bytes.").tag(config=True)
    max_follows = Int(50, help="Follows open at once, for the whole page; more answer 503.").tag(config=True)
    view_scope = Unicode(DEFAULT_VIEW_SCOPE, help="""The custom scope that lets a viewer see every server (admins,
        with ``admin:servers``, see every server anyway). Grant it to support staff through a role.""").tag(
        config=True)
    db_url = Unicode("", help="""The hub's database URL (``JupyterHub.db_url``), for saved failures of spawns and the
        usage records. Empty: from $HUBFLEET_DB_URL, else no saved failures are shown and usage counts only the
        servers running now.""").tag(config=True)
    hub_api_url = Unicode(help="The hub API URL. Default: $JUPYTERHUB_API_URL.").tag(config=True)
    culler_url = Unicode("", help="""The culler's state (its ``/state``, on its metrics port), e.g.
        http://127.0.0.1:10103/services/hubfleet-culler/state, for the Culler column (the warning running and the
        last cull of each server). Read with the page's token, which needs
        ``access:services!service=<the culler>`` (``admin_page_service(culler_url=...)`` grants it). Empty: the
        column shows nothing.""").tag(config=True)
    culler_timeout = Float(5.0, help="Seconds the culler's state may take to answer.").tag(config=True)
    port = Int(0, help="Port to listen on (on 127.0.0.1). Default: from $JUPYTERHUB_SERVICE_URL.").tag(config=True)

    aliases = {"namespace": "AdminPageApp.namespace", "kube-config": "AdminPageApp.kube_config",
               "port": "AdminPageApp.port", "db-url": "AdminPageApp.db_url", "tail-lines": "AdminPageApp.tail_lines",
               "view-scope": "AdminPageApp.view_scope", "culler-url": "AdminPageApp.culler_url",
               "log-level": "Application.log_level"}

    @default("namespace")
    def _namespace(self):
        return os.environ.get("POD_NAMESPACE", "default")

    @default("hub_api_url")
    def _hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("db_url")
    def _db_url(self):
        return os.environ.get("HUBFLEET_DB_URL", "")

    def init(self):
        self.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/hubfleet-admin-page/")
        self.hub = HubAPI(self.hub_api_url, os.environ.get("JUPYTERHUB_API_TOKEN", ""), request_timeout=15, retries=1)
        self.culler = HubAPI(self.culler_url, os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                             request_timeout=self.culler_timeout, retries=0) if self.culler_url else None
        self.kube = KubeReader(self.namespace, config_file=self.kube_config, timeout=self.kube_timeout)
        self.follows = 0
        self.db = None
        if self.db_url:
            from ...db import shared
            self.db = shared(self.db_url)
        self.usage_source = DurableUsageSource(self.db) if self.db is not None else LiveUsageSource(self._intervals)
        p = self.prefix
        handlers = [(p, MainHandler), (p + "server", ServerHandler), (p + "logs", LogsHandler),
                    (p + "usage.csv", UsageCSVHandler), (p + "follow.js", ScriptHandler),
                    (p + "oauth_callback", HubOAuthCallbackHandler)]
        self.web = web.Application(handlers, app=self, cookie_secret=os.urandom(32),
                                   xsrf_cookies=False)
        HubOAuth.instance(api_url=self.hub_api_url, cache_max_age=60)  # the handlers' and the callback's

    async def fleet(self, user: str | None = None) -> tuple[list[dict], str]:
        """The server rows (the hub's models joined with pods) of every user with a server, or of ``user`` only, and
        what could not be read ('' if all)."""
        if user is None:
            users = [u async for u in self.hub.iter_users(state="active")]
        else:
            resp = await self.hub.call("GET", f"/users/{quote(user, safe='')}", ok=(200, 404))
            users = [json.loads(resp.body)] if resp.code == 200 else []
        try:
            pods = await self.kube.pods()
            problem = ""
        except KubeUnavailable as e:
            pods, problem = None, f"The Kubernetes API cannot be reached, so pods, nodes, events and logs are " \
                                  f"not shown: {e}"
            log.warning("kubernetes: %s", e)
        culler, culler_problem = await self.culler_state()
        return server_rows(users, pods, culler), " ".join(p for p in (problem, culler_problem) if p)

    async def culler_state(self) -> tuple[dict | None, str]:
        """The culler's notes per server (:func:`.fleet.culler_notes`), and what could not be read ('' if all)."""
        if self.culler is None:
            return None, ""
        try:
            resp = await self.culler.call("GET", "")
            return culler_notes(json.loads(resp.body)), ""
        except (HubAPIError, ValueError, KeyError, TypeError) as e:
            log.warning("culler state: %s", e)
            return None, f"The culler's state cannot be read, so its warnings and culls are not shown: {e}"

    async def queue(self) -> tuple[dict | None, str]:
        """The hub's queue listing (``GET /hub/api/queue?all=1``: every queued request with its place, of the users
        the page's token may read), and what could not be read ('' if all). None without a queue on the hub (404)."""
        try:
            resp = await self.hub.call("GET", "/queue?all=1", ok=(200, 404))
            if resp.code == 404:
                return None, ""
            listing = json.loads(resp.body)
            return {"queues": list(listing["queues"]), "queued": list(listing["queued"])}, ""
        except (HubAPIError, ValueError, KeyError, TypeError) as e:
            log.warning("queue: %s", e)
            return None, f"The queue cannot be read, so queue positions are not shown: {e}"

    async def _intervals(self, user: str | None):
        rows, _ = await self.fleet(user)
        return intervals(rows)

    async def failures(self, user: str, server: str | None):
        if self.db is None:
            return []
        from ...spawners.failures_db import load_failures
        return await load_failures(self.db, user=user, server=server)

    def start(self):
        self.init()
        port = self.port or urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102")).port
        HTTPServer(self.web, xheaders=True).listen(port, "127.0.0.1")
        log.info("admin page on 127.0.0.1:%s%s (namespace %s)", port, self.prefix, self.namespace)
        loop = asyncio.get_event_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, loop.stop)
        loop.run_forever()
        log.info("admin page stopped")


class DurableUsageSource:
    """Intervals from the usage records ProfileSpawner writes at every start and stop (``hubfleet_usage`` in the hub's
    database): the same records ``hubfleet usage`` and the budgets count."""

    durable = True

    def __init__(self, db):
        self._db = db

    async def intervals(self, start: datetime, end: datetime, *, user: str | None = None):
        from ...db import migrate
        from ...spawners import queue_store
        if queue_store.QUEUE.name not in self._db.migrated:
            await self._db.call_blocking(migrate, self._db, queue_store.QUEUE)
        return from_records(await self._db.call(lambda conn: queue_store.records(
            conn, since=start.timestamp(), until=end.timestamp(), user=user)))


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    @property
    def app(self) -> AdminPageApp:
        return self.settings["app"]

    def set_default_headers(self):
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "same-origin")

    @property
    def viewer(self):
        return viewer(self.current_user, self.app.view_scope)

    def write_error(self, status_code, **kwargs):
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render.page(f"{status_code}", f"<p>{render.e(reason)}</p>", prefix=self.app.prefix))

    async def server_row(self) -> tuple[dict, str]:
        """The row for ``?user=&server=``: 403 for another user's server (unless the viewer sees all, and
        whether it exists or not), 404 when the hub has no such server."""
        user, server = self.get_argument("user"), self.get_argument("server", "")
        if not self.viewer.may_see(user):
            raise web.HTTPError(403, "You can see your own servers only.")
        try:
            rows, problem = await self.app.fleet(user)
        except HubAPIError as e:
            raise web.HTTPError(503, f"The hub API did not answer: {e}") from e
        for row in rows:
            if row["user"] == user and row["server"] == server:
                return row, problem
        raise web.HTTPError(404, "No such server (it may have stopped).")

    async def prepare(self):
        self.now = datetime.now(timezone.utc)


def _window(handler) -> tuple[str, float]:
    by = handler.get_argument("by", "user")
    if by not in BY:
        raise web.HTTPError(400, f"by must be one of {', '.join(BY)}")
    try:
        days = float(handler.get_argument("days", "7"))
    except ValueError:
        raise web.HTTPError(400, "days must be a number") from None
    if not 0 < days <= 3660:
        raise web.HTTPError(400, "days must be between 0 and 3660")
    return by, days


class MainHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        v = self.viewer
        by, days = _window(self)
        start, only = self.now - timedelta(days=days), None if v.sees_all else v.name
        note = "" if getattr(self.app.usage_source, "durable", True) else \
            "Counted from the servers running now: stopped servers are not in these numbers yet."
        try:
            rows, problem = await self.app.fleet(only)
            spans = await self.app.usage_source.intervals(start, self.now, user=only)
        except HubAPIError as e:
            raise web.HTTPError(503, f"The hub API did not answer: {e}") from e
        except DatabaseUnavailable as e:
            spans, note = [], f"Usage cannot be read: {e}"
        rows = [r for r in rows if v.may_see(r["user"])]
        spans = [i for i in spans if v.may_see(i.user)]
        queue, queue_problem = await self.app.queue()
        if queue is not None:
            queue["queued"] = [q for q in queue["queued"] if v.may_see(q.get("user"))]
        totals = aggregate(spans, start=start, end=self.now, now=self.now, by=by)
        scope = "every server" if v.sees_all else "your servers"
        body = (render.banner(problem) + f"<p>Signed in as {render.e(v.name)}; showing {scope}.</p>"
                + "<h2>Servers</h2>" + render.servers_table(rows, prefix=self.app.prefix, now=self.now)
                + ("<h2>Queue</h2>" + render.banner(queue_problem) if queue_problem
                   else render.queue_section(queue, now=self.now))
                + "<h2>Usage</h2>" + render.usage_section(totals, by=by, days=days, prefix=self.app.prefix,
                                                          note=note))
        self.finish(render.page("Servers", body, prefix=self.app.prefix))


class ServerHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        row, problem = await self.server_row()
        parts = [render.banner(problem), render.servers_table([row], prefix=self.app.prefix, now=self.now)]
        kube = self.app.kube
        xsrf = self.xsrf_token
        xsrf = xsrf.decode() if isinstance(xsrf, bytes) else xsrf
        if row["pod"] and not problem:
            try:
                parts.append("<h2>Events</h2>" + render.events_table(await kube.events(row["pod"])))
                for container in row["containers"]:
                    data = await kube.log_tail(row["pod"], container, lines=self.app.tail_lines,
                                               max_bytes=self.app.max_log_bytes)
                    # the event stream is not a navigation: JupyterHub's cookie auth wants the xsrf token with it
                    q = urlencode({"user": row["user"], "server": row["server"], "container": container,
                                   "follow": 1, "_xsrf": xsrf})
                    lines = lines_of(data, max_lines=self.app.tail_lines)
                    parts.append(render.log_block(container, lines, follow_url=f"{self.app.prefix}logs?{q}",
                                                  tail=len(lines)))
            except KubeUnavailable as e:
                parts.append(render.banner(f"The Kubernetes API cannot be reached: {e}"))
        elif not row["pod"] and not problem:
            parts.append("<p class='muted'>No pod for this server right now.</p>")
        try:
            failures = await self.app.failures(row["user"], row["server"])
            parts.append("<h2>Saved failures of spawns</h2>" + render.failures_section(failures))
        except Exception as e:  # noqa: BLE001 (DatabaseUnavailable and friends: say so, keep the page)
            parts.append(render.banner(f"Saved failures cannot be read: {e}"))
        parts.append(f"<script src='{render.e(self.app.prefix)}follow.js'></script>")
        title = f"{row['user']} / {row['server'] or '(default)'}"
        self.finish(render.page(title, "".join(parts), prefix=self.app.prefix))


class LogsHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        row, problem = await self.server_row()
        container = self.get_argument("container")
        if container not in row["containers"]:
            raise web.HTTPError(404, "No such container in this server's pod.")
        app = self.app
        if self.get_argument("follow", "") not in ("1", "true"):
            try:
                data = await app.kube.log_tail(row["pod"], container, lines=app.tail_lines,
                                               max_bytes=app.max_log_bytes)
            except KubeUnavailable as e:
                raise web.HTTPError(503, f"The Kubernetes API cannot be reached: {e}") from e
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("\n".join(lines_of(data, max_lines=app.tail_lines)) + "\n")
            return
        if app.follows >= app.max_follows:
            raise web.HTTPError(503, f"{app.max_follows} logs are followed already; try again later.")
        app.follows += 1
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")
        split, sent, t0 = LineSplitter(), 0, time.monotonic()
        try:
            async for chunk in app.kube.follow(row["pod"], container, tail=0, max_bytes=app.follow_max_bytes,
                                               max_seconds=app.follow_max_seconds):
                sent += len(chunk)
                lines = split.feed(chunk)
                if lines:
                    self.write("".join(f"data: {line}\n\n" for line in lines))
                    await self.flush()
            if sent >= app.follow_max_bytes:
                why = f"stopped after {sent} bytes; press Follow to go on"
            elif time.monotonic() - t0 >= app.follow_max_seconds:
                why = f"stopped after {app.follow_max_seconds:g} s; press Follow to go on"
            else:
                why = "the log ended (the container stopped)"
        except KubeUnavailable as e:
            why = f"The Kubernetes API cannot be reached: {e}"
        except StreamClosedError:
            return
        finally:
            app.follows -= 1
        try:
            self.write("".join(f"data: {line}\n\n" for line in split.flush()))
            self.write(f"event: end\ndata: {why}\n\n")
            self.finish()
        except StreamClosedError:
            pass


class UsageCSVHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        by, days = _window(self)
        v = self.viewer
        start = self.now - timedelta(days=days)
        try:
            spans = await self.app.usage_source.intervals(start, self.now, user=None if v.sees_all else v.name)
        except HubAPIError as e:
            raise web.HTTPError(503, f"The hub API did not answer: {e}") from e
        except DatabaseUnavailable as e:
            raise web.HTTPError(503, f"Usage cannot be read: {e}") from e
        spans = [i for i in spans if v.may_see(i.user)]
        totals = aggregate(spans, start=start, end=self.now, now=self.now, by=by)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="usage-by-{by}-{days:g}d.csv"')
        self.finish(render.usage_csv(totals, by=by))


class ScriptHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/javascript; charset=utf-8")
        self.set_header("Cache-Control", "max-age=300")
        self.finish(render.FOLLOW_JS)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    app = AdminPageApp.instance()
    app.initialize(argv)
    app.start()
    return 0
