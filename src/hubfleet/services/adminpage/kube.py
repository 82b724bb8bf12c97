"""What the admin page reads from Kubernetes, in the user namespace only: pods (by KubeSpawner's labels), a pod's
events, and a container's log (a bounded tail, or a bounded follow). Uses kubernetes_asyncio with the in-cluster
service account, else a kubeconfig; every call has a timeout and raises :class:`KubeUnavailable` when the API
cannot be reached or refuses, so the page can say so."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import AsyncIterator

from ...errors import HubfleetError

log = logging.getLogger("hubfleet.adminpage")

SERVER_SELECTOR = "component=singleuser-server"
USERNAME_ANNOTATION = "hub.jupyter.org/username"
SERVERNAME_ANNOTATION = "hub.jupyter.org/servername"


class KubeUnavailable(HubfleetError):
    """The Kubernetes API could not be reached, did not answer in time, or refused the request."""


class KubeReader:
    def __init__(self, namespace: str, *, config_file: str = "", timeout: float = 10.0):
        self.namespace, self.config_file, self.timeout = namespace, config_file, timeout
        self._api = None
        self._client = None
        self._lock = asyncio.Lock()

    async def _core(self):
        async with self._lock:
            if self._api is None:
                from kubernetes_asyncio import client, config
                try:
                    if self.config_file:
                        await config.load_kube_config(config_file=self.config_file)
                    else:
                        try:
                            config.load_incluster_config()
                        except config.ConfigException:
                            await config.load_kube_config()
                except Exception as e:  # noqa: BLE001 (any config error: the page says so)
                    raise KubeUnavailable(f"no Kubernetes configuration: {e}",
                                          fix="run in the cluster with a service account, or set KUBECONFIG") from e
                self._client = client.ApiClient()
                self._api = client.CoreV1Api(self._client)
            return self._api

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _json(self, method: str, *args, **kwargs):
        api = await self._core()
        try:
            resp = await asyncio.wait_for(getattr(api, method)(*args, _preload_content=False,
                                                               _request_timeout=self.timeout, **kwargs),
                                          self.timeout)
            body = await asyncio.wait_for(resp.read(), self.timeout)
            _check(resp, body)
            return json.loads(body)
        except Exception as e:  # noqa: BLE001 (ApiException, aiohttp errors, timeouts: one answer for the page)
            raise KubeUnavailable(f"Kubernetes API {method}: {_why(e)}") from e

    async def pods(self) -> list[dict]:
        """The hub's server pods in the namespace, as JSON dicts."""
        return (await self._json("list_namespaced_pod", self.namespace, label_selector=SERVER_SELECTOR))["items"]

    async def events(self, pod: str) -> list[dict]:
        """The pod's events, oldest first, as ``{type, reason, message, count, last}``."""
        items = (await self._json("list_namespaced_event", self.namespace,
                                  field_selector=f"involvedObject.name={pod}"))["items"]
        out = []
        for ev in items:
            last = ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get(
                "creationTimestamp") or ""
            out.append({"type": ev.get("type"), "reason": ev.get("reason"), "message": ev.get("message"),
                        "count": ev.get("count") or 1, "last": last})
        return sorted(out, key=lambda ev: ev["last"] or "")

    async def log_tail(self, pod: str, container: str, *, lines: int, max_bytes: int) -> bytes:
        """The container's last ``lines`` lines, in at most ``max_bytes`` bytes. Kubernetes' ``limitBytes`` keeps the
        *first* bytes of the tail, so when the last ``lines`` lines are longer than that, fewer lines are asked for
        (halving) until the newest ones fit: at most ``log2(lines) + 1`` bounded reads."""
        while True:
            data, cut = await self._read_log(pod, container, lines, max_bytes)
            if not cut or lines <= 1:
                return data
            lines //= 2

    async def _read_log(self, pod: str, container: str, lines: int, max_bytes: int) -> tuple[bytes, bool]:
        api = await self._core()
        try:
            resp = await asyncio.wait_for(api.read_namespaced_pod_log(
                pod, self.namespace, container=container, tail_lines=lines, limit_bytes=max_bytes + 1,
                _preload_content=False, _request_timeout=self.timeout), self.timeout)
            _check(resp)
            chunks, total = [], 0
            try:
                while total <= max_bytes:
                    chunk = await asyncio.wait_for(resp.content.read(max_bytes + 1 - total), self.timeout)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
            finally:
                resp.close()
            data = b"".join(chunks)
            return data[:max_bytes], len(data) > max_bytes
        except Exception as e:  # noqa: BLE001
            raise KubeUnavailable(f"Kubernetes API pods/log {pod}/{container}: {_why(e)}") from e

    async def follow(self, pod: str, container: str, *, tail: int, max_bytes: int,
                     max_seconds: float) -> AsyncIterator[bytes]:
        """Chunks of the container's log from its last ``tail`` lines on, until the container ends, ``max_bytes``
        were read or ``max_seconds`` passed (the caller then says why it stopped)."""
        api = await self._core()
        try:
            resp = await asyncio.wait_for(api.read_namespaced_pod_log(
                pod, self.namespace, container=container, follow=True, tail_lines=tail,
                _preload_content=False, _request_timeout=max_seconds + self.timeout), self.timeout)
            _check(resp)
        except Exception as e:  # noqa: BLE001
            raise KubeUnavailable(f"Kubernetes API pods/log {pod}/{container}: {_why(e)}") from e
        deadline, total = time.monotonic() + max_seconds, 0
        try:
            while total < max_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    chunk = await asyncio.wait_for(resp.content.readany(), left)
                except asyncio.TimeoutError:
                    return
                if not chunk:
                    return
                chunk = chunk[:max_bytes - total]
                total += len(chunk)
                yield chunk
        finally:
            resp.close()  # a follow never ends by itself: drop the connection


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.reason = status, message


def _check(resp, body: bytes | None = None) -> None:
    """Without preloading, kubernetes_asyncio hands back error answers as they are: raise for them."""
    if resp.status >= 400:
        message = ""
        try:
            message = json.loads(body or b"{}").get("message") or ""
        except ValueError:
            pass
        resp.close()
        raise _Refused(resp.status, message[:300])


def _why(e: BaseException) -> str:
    status = getattr(e, "status", None)
    if status:
        return f"HTTP {status} {getattr(e, 'reason', '')}".strip()
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
