"""``pods/exec`` over WebSocket, as kubectl 1.37 speaks it: the ``v5.channel.k8s.io`` subprotocol (``v4`` too),
binary messages whose first byte is the channel: 0 stdin, 1 stdout, 2 stderr, 3 the error channel (one
metav1.Status when the command ends: ``Success``, or ``NonZeroExitCode`` with the code in
``details.causes[ExitCode]``), 4 terminal resize, 255 (v5) the client's "close this channel" (its payload byte is
the channel; stdin then gets end-of-file). The command runs in the container as the kubelet runs it
(``ProcessKubelet.exec_process``). A request that is not a WebSocket upgrade (SPDY) answers 400 with a Status.

``frame`` and ``exit_status`` are pure."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import aiohttp.web

from .podenv import PodFailure
from .status import APIError

log = logging.getLogger("hubfleet_devcluster.exec")

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def exit_status(command: list[str], code: int) -> dict:
    """The Status the error channel carries when `command` exited with `code`."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command {command}, "
                       f"exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _flag(query, name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


async def serve_exec(raw: aiohttp.web.BaseRequest, pod: dict, kubelet) -> aiohttp.web.StreamResponse:
    q = raw.query
    command = q.getall("command", [])
    if not command:
        raise APIError(400, "BadRequest", "you must specify at least 1 command")
    if raw.headers.get("Upgrade", "").lower() != "websocket":
        raise APIError(400, "BadRequest", "pods/exec: the devcluster speaks the WebSocket protocols "
                       f"({', '.join(PROTOCOLS)}) only, not SPDY; use kubectl 1.30 or newer")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise APIError(400, "BadRequest", f"cannot exec into a container in a completed pod; current phase is {phase}")
    try:
        proc = await kubelet.exec_process(pod, q.get("container"), command, _flag(q, "stdin"))
    except PodFailure as e:
        raise APIError(400, "BadRequest", e.message) from e
    ws = aiohttp.web.WebSocketResponse(protocols=PROTOCOLS, heartbeat=None, max_msg_size=0)
    try:
        await ws.prepare(raw)
    except BaseException:
        _kill(proc)
        raise
    v5 = ws.ws_protocol == PROTOCOLS[0]

    async def pump(stream, channel: int) -> None:
        wanted = _flag(q, "stdout" if channel == STDOUT else "stderr")
        while chunk := await stream.read(65536):
            if wanted:
                await ws.send_bytes(frame(channel, chunk))

    async def feed() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == STDIN and proc.stdin is not None:
                proc.stdin.write(data)
                await proc.stdin.drain()
            elif channel == CLOSE and v5 and data[:1] == bytes([STDIN]) and proc.stdin is not None:
                proc.stdin.close()
        _kill(proc)  # the client went away

    reader = asyncio.ensure_future(feed())
    try:
        await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
        code = await proc.wait()
        code = 128 - code if code < 0 else code
        await ws.send_bytes(frame(ERROR, json.dumps(exit_status(command, code)).encode()))
    except (ConnectionResetError, aiohttp.ClientConnectionError) as e:
        log.info("exec %s in %s: the client went away (%s)", command, pod["metadata"]["name"], e)
        _kill(proc)
    finally:
        reader.cancel()
        await ws.close()
    return ws


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
