"""A no-op Spawner for bench_culler (imported by the bench's hub): ``start`` points the hub at a shared dummy HTTP
server, ``poll`` says "running", ``stop`` waits the delay written in ``$BENCH_CULLER_CONTROL`` (seconds; 0 = none),
standing in for KubeSpawner's wait for a pod to go, then sends one UDP datagram (the user's name) to
``$BENCH_CULLER_NOTIFY`` (``host:port``) so that the bench learns of each stop without polling the hub's API."""

import asyncio
import os
import socket

from jupyterhub.spawner import Spawner

_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_sock.setblocking(False)


def _notify(name: str) -> None:
    where = os.environ.get("BENCH_CULLER_NOTIFY", "")
    if where:
        host, _, port = where.rpartition(":")
        try:
            _sock.sendto(name.encode(), (host, int(port)))
        except OSError:  # the bench then falls back on its count of ready servers
            pass


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
        _notify(self.user.name)
