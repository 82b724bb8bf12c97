"""Coalesced: the queue listing computed once for the callers that arrive while it runs and within its ttl; again
after a change (clear) or a failure."""

from __future__ import annotations

import asyncio

import pytest

from hubfleet.spawners.coalesce import Coalesced


async def test_callers_share_one_computation_until_the_ttl_or_a_clear():
    calls = []
    gate = asyncio.Event()

    async def compute():
        calls.append(len(calls))
        await gate.wait()
        return len(calls)

    shared = Coalesced()
    waiting = [asyncio.ensure_future(shared.get(compute, ttl=60)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1] * 50 and len(calls) == 1
    assert await shared.get(compute, ttl=60) == 1  # within the ttl: the last result
    assert await shared.get(compute, ttl=0) == 2   # past it: computed again
    shared.clear()
    assert await shared.get(compute, ttl=60) == 3  # after a change: computed again


async def test_a_failure_is_not_kept():
    outcomes = iter([RuntimeError("database down"), "listing"])

    async def compute():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = Coalesced()
    with pytest.raises(RuntimeError, match="database down"):
        await shared.get(compute, ttl=60)
    assert await shared.get(compute, ttl=60) == "listing"
