"""One computation's result shared by every caller: those that arrive while it runs, and those within ``ttl``
seconds of its start (for the spawn queue's listing, which hundreds of waiting users' pages poll)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Coalesced:
    """``await c.get(compute, ttl)``: the result of the running or last ``compute()`` when it started less than
    ``ttl`` seconds ago and succeeded, else of a new one. :meth:`clear` after a change it must reflect."""

    def __init__(self) -> None:
        self._task: asyncio.Future | None = None
        self._started = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def clear(self) -> None:
        self._task = None

    def _stale(self, loop, ttl: float) -> bool:
        task = self._task
        if task is None or self._loop is not loop:
            return True
        if not task.done():
            return False
        return task.cancelled() or task.exception() is not None or time.monotonic() - self._started >= ttl

    async def get(self, compute: Callable[[], Awaitable], ttl: float):
        loop = asyncio.get_running_loop()
        if self._stale(loop, ttl):
            self._task, self._started, self._loop = asyncio.ensure_future(compute()), time.monotonic(), loop
        return await asyncio.shield(self._task)
