"""The culler's HTTP edge: JupyterHub's REST API through tornado's AsyncHTTPClient.

- ``iter_users``: the paginated ``GET /users?state=...`` (``Accept: application/jupyterhub-pagination+json``),
  following ``_pagination.next``; the next page is requested while the caller works on this one.
- ``server_token`` / ``delete_token``: ``POST /users/<u>/tokens`` for a token owned by the user and scoped to one
  of its servers (``access:servers!server=<u>/<name>``), short-lived, for the busy-kernel check
  (:class:`.activity.KernelProbe`), and its ``DELETE`` after the check;
- ``stop_server`` / ``delete_user``: ``DELETE /users/<u>/server``, ``/users/<u>/servers/<name>`` (optionally with
  ``{"remove": true}``), ``/users/<u>``.
- Every request is bounded by ``request_timeout`` and retried with exponential backoff (honouring ``Retry-After``)
  on 429, 5xx and connection errors; anything else raises :class:`HubAPIError` naming the method, path and status.

The concurrency limit is not here: :mod:`.app` runs at most ``concurrency`` stops at once with a pool of workers
(idle-culler 2.0.0 also has a semaphore around its fetches, but awaits its per-user coroutines one after another,
so its stops never overlap). The token is sent in the ``Authorization`` header and never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from ...errors import HubfleetError

log = logging.getLogger("hubfleet.culler")

PAGINATION = "application/jupyterhub-pagination+json"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504, 599})


class HubAPIError(HubfleetError):
    """A hub API request failed for good (after retries, or with a status that is not worth retrying)."""

    def __init__(self, method: str, path: str, status: int, message: str):
        self.method, self.path, self.status = method, path, status
        super().__init__(f"{method} {path}: {status} {message}")


@dataclass(frozen=True)
class StopResult:
    status: int  # 204: stopped; 202: still stopping (the hub answered before the spawner finished); 404: gone

    @property
    def stopped(self) -> bool:
        return self.status in (200, 204, 404)


class HubAPI:
    def __init__(self, url: str, token: str, *, request_timeout: float = 60.0, retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 10.0, max_clients: int = 20,
                 ssl_options=None):
        if not url:
            raise ValueError("url: the hub API URL is empty; set --url or JUPYTERHUB_API_URL "
                             "(e.g. http://hub:8081/hub/api)")
        if not token:
            raise ValueError("JUPYTERHUB_API_TOKEN is not set: the culler needs the token of its service")
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"token {token}"}
        self.request_timeout, self.retries = request_timeout, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.ssl_options = ssl_options
        # our own client: the shared instance would cap us at tornado's default of 10 connections
        self._client = AsyncHTTPClient(force_instance=True, max_clients=max_clients)
        self._probe_client = None  # its own connection: a probe must not queue behind our stops
        self.requests = 0
        self.retried = 0

    def close(self) -> None:
        self._client.close()
        if self._probe_client is not None:
            self._probe_client.close()

    async def ping(self) -> float:
        """Seconds the hub takes to answer ``GET /hub/api/`` (its cheapest request), or the timeout.

        Sent without the token: the request needs none, and a service token from the hub's config costs the hub a
        16,384-round SHA-512 on every request that carries it (about 1.5 ms of its event loop here)."""
        if self._probe_client is None:
            self._probe_client = AsyncHTTPClient(force_instance=True, max_clients=1)
        req = HTTPRequest(f"{self.url}/", request_timeout=min(self.request_timeout, 10),
                          ssl_options=self.ssl_options)
        t0 = time.monotonic()
        await self._probe_client.fetch(req, raise_error=False)
        return time.monotonic() - t0

    async def request(self, method: str, path: str, *, body=None, headers: dict | None = None,
                      absolute_url: str | None = None):
        """One attempt; the tornado response whatever its code (599: no response within the timeout)."""
        req = HTTPRequest(absolute_url or f"{self.url}{path}", method=method,
                          headers={**self._headers, **(headers or {})},
                          body=json.dumps(body) if body is not None else None,
                          request_timeout=self.request_timeout, connect_timeout=min(self.request_timeout, 20),
                          allow_nonstandard_methods=True, ssl_options=self.ssl_options)
        self.requests += 1
        return await self._client.fetch(req, raise_error=False)

    async def call(self, method: str, path: str, *, body=None, headers: dict | None = None, ok=(200,),
                   absolute_url: str | None = None):
        """One request with retries; returns the tornado response when its code is in ``ok``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self.request(method, path, body=body, headers=headers, absolute_url=absolute_url)
            except (OSError, HTTPClientError) as e:  # refused, reset, timed out: tornado raises these, whatever
                resp = _NoResponse(e)               # raise_error says; retried like a 5xx
            if resp.code in ok:
                return resp
            if resp.code in RETRY_STATUS and attempt <= self.retries:
                delay = self._delay(attempt, resp.headers.get("Retry-After") if resp.headers else None)
                self.retried += 1
                log.warning("hub API %s %s answered %s; retry %d/%d in %.1fs", method, path,
                            _status_text(resp), attempt, self.retries, delay)
                await asyncio.sleep(delay)
                continue
            raise HubAPIError(method, path, resp.code, _message(resp))

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return base * (0.5 + random.random() / 2)  # jitter: many cullers must not retry in lockstep

    async def version(self) -> str:
        resp = await self.call("GET", "/")
        return json.loads(resp.body)["version"]

    async def iter_users(self, state: str = "ready", page_size: int = 0) -> AsyncIterator[dict]:
        """Every user model of ``GET /users?state=...``, page by page (the next page is fetched meanwhile)."""
        params = {"state": state} if state else {}
        if page_size:
            params["limit"] = str(page_size)
        headers = {"Accept": PAGINATION}
        path = "/users" + (f"?{urlencode(params)}" if params else "")
        pending = asyncio.ensure_future(self.call("GET", path, headers=headers))
        try:
            while pending is not None:
                resp = await pending
                pending = None
                model = json.loads(resp.body)
                if isinstance(model, list):  # a hub without pagination
                    items = model
                else:
                    items = model["items"]
                    nxt = (model.get("_pagination") or {}).get("next")
                    if nxt:  # rebuilt on our own base URL: the hub builds next.url from the Host it was asked
                        params.update(offset=str(nxt["offset"]), limit=str(nxt["limit"]))
                        pending = asyncio.ensure_future(
                            self.call("GET", f"/users?{urlencode(params)}", headers=headers))
                for item in items:
                    yield item
        finally:
            if pending is not None:
                pending.cancel()

    async def whoami(self) -> dict:
        """The token's own model (``GET /user``), with its expanded ``scopes``."""
        resp = await self.call("GET", "/user")
        return json.loads(resp.body)

    async def budgets(self) -> list[dict]:
        """The running servers a usage budget applies to (``GET /hub/api/budgets``, which
        :mod:`hubfleet.spawners.queue_web` adds to the hub): ``[{"user", "server", "used_up", "budgets"}]``."""
        resp = await self.call("GET", "/budgets")
        servers = json.loads(resp.body).get("servers")
        if not isinstance(servers, list):
            raise ValueError("GET /budgets: no list of servers in the answer")
        return servers

    async def get_user(self, user: str) -> dict:
        """One user's model (``GET /users/<u>``; with ``admin:auth_state`` it carries the auth state)."""
        resp = await self.call("GET", f"/users/{quote(user, safe='')}")
        return json.loads(resp.body)

    async def server_token(self, user: str, server: str = "", *, expires_in: int = 60) -> tuple[str, str]:
        """``(token, token id)``: a new token owned by ``user`` that can reach its server ``server`` and nothing
        else, expiring in ``expires_in`` seconds (needs the ``tokens`` scope). The hub refuses scopes the user does
        not hold itself, so the token can never do more than the server's owner."""
        body = {"scopes": [f"access:servers!server={user}/{server}"], "expires_in": int(expires_in),
                "note": "hubfleet-culler: busy-kernel check"}
        resp = await self.call("POST", f"/users/{quote(user, safe='')}/tokens", body=body, ok=(200, 201))
        model = json.loads(resp.body)
        return model["token"], model["id"]

    async def delete_token(self, user: str, token_id: str) -> None:
        await self.call("DELETE", f"/users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}", ok=(204, 404))

    async def stop_server(self, user: str, server: str = "", *, remove: bool = False) -> StopResult:
        if server:
            path = f"/users/{quote(user, safe='')}/servers/{quote(server, safe='')}"
            body = {"remove": True} if remove else None
        else:
            path, body = f"/users/{quote(user, safe='')}/server", None
        resp = await self.call("DELETE", path, body=body, ok=(202, 204, 404))
        return StopResult(resp.code)

    async def delete_user(self, user: str) -> int:
        resp = await self.call("DELETE", f"/users/{quote(user, safe='')}", ok=(204, 404))
        return resp.code


class _NoResponse:
    """What :meth:`HubAPI.call` makes of a request that got no response: code 599, like tornado's own."""

    code, headers, body, reason = 599, None, b"", ""

    def __init__(self, error: Exception):
        self.error = f"{type(error).__name__}: {error}"


def _status_text(resp) -> str:
    if resp.code == 599:
        return f"no response ({resp.error})"
    return str(resp.code)


def _message(resp) -> str:
    if resp.code == 599:
        return f"no response: {resp.error}"
    try:
        return json.loads(resp.body).get("message") or resp.reason
    except (ValueError, TypeError, AttributeError):
        return resp.reason or ""


__all__ = ["HubAPI", "HubAPIError", "StopResult"]
