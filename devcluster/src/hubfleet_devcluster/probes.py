"""Readiness probes as the kubelet runs them: ``httpGet`` (2xx/3xx is a success), ``tcpSocket`` (the port accepts)
and ``exec`` (exit code 0), every ``periodSeconds`` (10) after ``initialDelaySeconds`` (0), each bounded by
``timeoutSeconds`` (1). A container is not ready until ``successThreshold`` (1) successes in a row, and stops being
ready after ``failureThreshold`` (3) failures in a row. A container without a readiness probe is ready as soon as
it runs.

``Readiness`` (the counting) is pure; ``check`` runs one probe."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable


@dataclass
class Readiness:
    """The ready state that a sequence of probe results gives (kubelet's prober worker)."""

    success_threshold: int = 1
    failure_threshold: int = 3
    ready: bool = False
    _successes: int = 0
    _failures: int = 0

    @classmethod
    def of(cls, probe: dict) -> "Readiness":
        return cls(int(probe.get("successThreshold") or 1), int(probe.get("failureThreshold") or 3))

    def record(self, ok: bool) -> bool:
        """Count one result; returns the ready state after it."""
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if self._successes >= self.success_threshold:
                self.ready = True
        else:
            self._successes, self._failures = 0, self._failures + 1
            if self._failures >= self.failure_threshold:
                self.ready = False
        return self.ready


def probe_port(probe_port_value, container: dict) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(probe_port_value, int):
        return probe_port_value
    if isinstance(probe_port_value, str) and probe_port_value.isdigit():
        return int(probe_port_value)
    for p in container.get("ports") or []:
        if p.get("name") == probe_port_value:
            return p.get("containerPort")
    return None


async def _http_get(action: dict, ip: str, port: int) -> bool:
    scheme = (action.get("scheme") or "HTTP").upper()
    host = action.get("host") or ip
    context = None
    if scheme == "HTTPS":  # the kubelet does not verify the certificate
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.37", "Accept": "*/*",
                   "Connection": "close"}
        headers.update({h.get("name"): h.get("value", "") for h in action.get("httpHeaders") or []})
        path = action.get("path") or "/"
        writer.write((f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                      + "\r\n").encode())
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    finally:
        writer.close()


async def check(probe: dict, container: dict, ip: str, run: Callable[[list[str]], Awaitable[int]]) -> bool:
    """Run one probe against a container at `ip`; `run(command)` execs a command in the container (exit code)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            return await asyncio.wait_for(run(list((probe["exec"] or {}).get("command") or [])), timeout) == 0
        action = probe.get("httpGet") or probe.get("tcpSocket")
        if action is None:
            return False
        port = probe_port(action.get("port"), container)
        if port is None:
            return False
        if "httpGet" in probe:
            return await asyncio.wait_for(_http_get(action, ip, port), timeout)
        _, writer = await asyncio.wait_for(asyncio.open_connection(action.get("host") or ip, port), timeout)
        writer.close()
        return True
    except (OSError, asyncio.TimeoutError, ValueError):
        return False
