"""A no-op Spawner for bench_culler (imported by the bench's hub): ``start`` points the hub at a shared dummy HTTP
server, ``poll`` says "running", ``stop`` waits the delay written in ``$BENCH_CULLER_CONTROL`` (seconds; 0 = none),
standing in for KubeSpawner's wait for a pod to go."""

import asyncio
import os

from jupyterhub.spawner import Spawner


class NoopSpawner(Spawner):
    async def start(self):
        return os.environ["BENCH_CULLER_DUMMY_URL"]

    async def poll(self):
        return None

    async def stop(self, now=False):
        try:
            with open(os.environ["BENCH_CULLER_CONTROL"]) as f:
                delay = float(f.read().strip() or 0)
        except (OSError, ValueError):
            delay = 0.0
        if delay:
            await asyncio.sleep(delay)
