"""Poll the JupyterHub REST API for the last activity of every ready server (``--hub-api-url``), into a
``HubActivity`` (``activity.py``) that the ``preempt`` verb reads.

Every ``interval`` seconds: ``GET {hub}/users?state=ready`` page by page (``offset``/``limit`` with the
``application/jupyterhub-pagination+json`` media type of JupyterHub >= 2, a plain list from a hub that ignores it),
each request bounded by ``timeout``, with ``Authorization: token <JUPYTERHUB_API_TOKEN>``. Scopes needed:
``list:users``, ``read:users:activity``, ``read:servers``. A failed poll keeps the previous list, which stops counting
once older than ``HubActivity.max_age``; state changes (ok, failing, stale) are logged once each. The token is
never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import aiohttp

from .activity import PAGINATION_MEDIA_TYPE, HubActivity, parse_page, servers_activity
from ..errors import HubfleetError

log = logging.getLogger("hubfleet.scheduler_plugin")

PAGE_LIMIT = 200  # JupyterHub's default api_page_max_limit
MAX_PAGES = 10_000


class HubPollError(HubfleetError):
    """The hub's user list could not be read (the message says why)."""


class HubPoller:
    def __init__(self, url: str, token: str, activity: HubActivity, *, interval: float, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time):
        self.url = url.rstrip("/")
        self._token = token
        self.activity = activity
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.state = "starting"

    async def fetch(self, session: aiohttp.ClientSession) -> dict:
        users: list = []
        offset: int | None = 0
        for _ in range(MAX_PAGES):
            try:
                async with session.get(f"{self.url}/users", params={"state": "ready", "offset": str(offset),
                                                                     "limit": str(PAGE_LIMIT)}) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:200]
                        raise HubPollError(f"GET {self.url}/users answered HTTP {resp.status}: {text}",
                                           fix="check JUPYTERHUB_API_TOKEN and its scopes (list:users, "
                                               "read:users:activity, read:servers)" if resp.status in (401, 403)
                                           else None)
                    body = await resp.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
                if isinstance(e, HubPollError):
                    raise
                raise HubPollError(f"GET {self.url}/users failed: {type(e).__name__}: {e}") from e
            try:
                page, nxt = parse_page(body)
            except ValueError as e:
                raise HubPollError(f"GET {self.url}/users: {e}") from e
            users.extend(page)
            if nxt is None or nxt <= offset:
                return servers_activity(users)
            offset = nxt
        raise HubPollError(f"GET {self.url}/users: more than {MAX_PAGES} pages")

    def _set_state(self, state: str, detail: str = "") -> None:
        if state == self.state:
            return
        self.state = state
        if state == "ok":
            log.info("hub activity: reading server activity from %s (%d ready servers)", self.url,
                     len(self.activity.servers))
        elif state == "failing":
            log.warning("hub activity: %s; keeping the list of %.0fs ago until it is %.0fs old", detail,
                        self.activity.age(self.clock()) or 0, self.activity.max_age)
        else:
            log.warning("hub activity unknown (%s): no server without a hubfleet.io/last-activity annotation is a "
                        "preemption victim until the hub answers", detail)

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        try:
            servers = await self.fetch(session)
        except HubPollError as e:
            fresh = self.activity.fresh(self.clock())
            self._set_state("failing" if fresh else "stale", str(e))
            return
        self.activity.update(servers, self.clock())
        self._set_state("ok")

    async def run(self) -> None:
        headers = {"Authorization": f"token {self._token}", "Accept": PAGINATION_MEDIA_TYPE}
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)) as s:
            while True:
                try:
                    await self.poll_once(s)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a bug here must not stop the server; activity goes stale
                    log.exception("hub activity: polling failed")
                await asyncio.sleep(self.interval)


__all__ = ["HubPollError", "HubPoller"]
