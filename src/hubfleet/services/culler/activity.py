"""Activity sources beyond the hub's ``last_activity``: busy kernels (the user's server) and GPU use (Prometheus).

- :class:`KernelProbe`: ``GET <server>/api/status`` and, when it reports kernels, ``<server>/api/kernels`` through
  the proxy. A kernel whose ``execution_state`` is ``busy`` is running a computation (``time.sleep(600)`` sends no
  message for ten minutes, so ``last_activity`` looks idle). Only servers the culler would otherwise warn or cull are
  asked, so the check costs nothing for active ones. The culler's own token never goes to a user's server (its owner
  controls everything the server receives): for each check the hub mints a token owned by the server's user, scoped
  to that one server (``access:servers!server=<user>/<server>``) and expiring within a minute, which is deleted after
  the check. Whatever the server answers is untrusted: bounded in size and time, and anything but the expected JSON
  is "unknown".
- :class:`PrometheusGPU`: one instant query per distinct window and sweep,
  ``max by (namespace, pod) (max_over_time(DCGM_FI_DEV_GPU_UTIL[<window>s]))``, joined to a server by the pod name
  and namespace KubeSpawner keeps in the server's ``state`` (readable with ``admin:server_state``). A pod whose
  maximum over the window stays under the profile's ``gpu_idle_below`` has been GPU-idle for that window.

Both raise :class:`SourceError` when they cannot tell (no answer, a bad answer, no metric for the pod); the sweep then
judges by the hub's ``last_activity`` and logs why. A busy server is still culled at its policy's ``max_age``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ...errors import HubfleetError
from .hub_api import HubAPIError

log = logging.getLogger("hubfleet.culler")


class SourceError(HubfleetError):
    """An activity source did not answer usefully (the message names the URL and what came back)."""


# the largest answer read from a user's server (1,000 kernels' models are ~0.5 MB); larger is a bad answer
MAX_SERVER_ANSWER = 1 << 20


async def _get_json(client, url: str, *, headers: dict | None, timeout: float):
    where = f"GET {url.split('?')[0]}"
    req = HTTPRequest(url, headers=headers or {}, request_timeout=timeout, connect_timeout=min(timeout, 10),
                      follow_redirects=False)
    try:
        resp = await client.fetch(req, raise_error=False)
    except (OSError, HTTPClientError) as e:  # no answer in time, refused, reset, too large: raised, not returned
        raise SourceError(f"{where}: no answer ({type(e).__name__}: {str(e)[:200]})") from e
    if resp.code != 200:
        why = f"no answer ({resp.error})" if resp.code == 599 else f"answered {resp.code}"
        raise SourceError(f"{where}: {why}")
    try:
        return json.loads(resp.body)
    except (ValueError, RecursionError) as e:
        raise SourceError(f"{where}: not JSON") from e


class KernelProbe:
    """Busy kernels of users' servers, asked with a token the hub mints for that one server.

    ``tokens``: the hub API (:class:`.hub_api.HubAPI`: ``server_token`` and ``delete_token``); ``base_url``: the
    proxy's URL through which servers are reached.
    """

    def __init__(self, base_url: str, tokens, *, timeout: float = 10.0, max_clients: int = 20,
                 max_answer: int = MAX_SERVER_ANSWER):
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.timeout = timeout
        self._client = AsyncHTTPClient(force_instance=True, max_clients=max_clients, max_body_size=max_answer,
                                       max_buffer_size=max_answer)
        self.requests = 0

    def close(self) -> None:
        self._client.close()

    @property
    def token_lifetime(self) -> int:
        """Seconds the minted token lives: both requests' time and a margin (it is deleted as soon as they end)."""
        return int(2 * self.timeout) + 30

    async def busy_kernels(self, user: str, server_name: str, server_url: str) -> int:
        """Kernels in ``execution_state: busy`` on ``user``'s server ``server_name`` (``""``: the default one) at
        ``server_url`` (a path like ``/user/alice/``). Raises :class:`SourceError` when that cannot be told."""
        try:
            token, token_id = await self.tokens.server_token(user, server_name, expires_in=self.token_lifetime)
        except HubAPIError as e:
            raise SourceError(f"no token for {user}/{server_name} from the hub: {e}") from e
        try:
            return await self._ask(server_url, {"Authorization": f"token {token}"})
        finally:
            try:
                await self.tokens.delete_token(user, token_id)
            except HubAPIError as e:  # it expires on its own within token_lifetime
                log.warning("server %s/%s: its probe token %s was not deleted (%s); it expires in %ds", user,
                            server_name, token_id, e, self.token_lifetime)

    async def _ask(self, server_url: str, headers: dict) -> int:
        base = self.base_url + "/" + server_url.strip("/") + "/"
        self.requests += 1
        status = await _get_json(self._client, base + "api/status", headers=headers, timeout=self.timeout)
        if not isinstance(status, Mapping):
            raise SourceError(f"GET {base}api/status: expected an object, got {type(status).__name__}")
        if status.get("kernels") == 0:
            return 0
        self.requests += 1
        kernels = await _get_json(self._client, base + "api/kernels", headers=headers, timeout=self.timeout)
        if not isinstance(kernels, list):
            raise SourceError(f"GET {base}api/kernels: expected a list, got {type(kernels).__name__}")
        return sum(1 for k in kernels if isinstance(k, Mapping) and k.get("execution_state") == "busy")


def pod_of(server: Mapping) -> tuple[str, str] | None:
    """``(namespace, pod name)`` from a server model's KubeSpawner ``state``; None without it."""
    state = server.get("state") or {}
    pod, namespace = state.get("pod_name"), state.get("namespace")
    if isinstance(pod, str) and pod and isinstance(namespace, str) and namespace:
        return namespace, pod
    return None


class PrometheusGPU:
    def __init__(self, url: str, *, metric: str = "DCGM_FI_DEV_GPU_UTIL", pod_label: str = "pod",
                 namespace_label: str = "namespace", timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.metric, self.pod_label, self.namespace_label = metric, pod_label, namespace_label
        self.timeout = timeout
        self._client = AsyncHTTPClient(force_instance=True, max_clients=4)
        self.queries = 0

    def close(self) -> None:
        self._client.close()

    def query_for(self, window: float) -> str:
        return (f"max by ({self.namespace_label}, {self.pod_label}) "
                f"(max_over_time({self.metric}[{max(int(window), 1)}s]))")

    async def max_util(self, window: float) -> dict[tuple[str, str], float]:
        """``{(namespace, pod): maximum utilisation over the last window seconds}``."""
        url = f"{self.url}/api/v1/query?{urlencode({'query': self.query_for(window)})}"
        self.queries += 1
        doc = await _get_json(self._client, url, headers=None, timeout=self.timeout)
        if not isinstance(doc, Mapping) or doc.get("status") != "success":
            raise SourceError(f"Prometheus {self.url}: query failed: {(doc or {}).get('error', doc)!r}"[:300])
        out = {}
        for item in (doc.get("data") or {}).get("result") or []:
            labels = item.get("metric") or {}
            key = (labels.get(self.namespace_label), labels.get(self.pod_label))
            try:
                out[key] = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        return out

    async def idle_for(self, needs: Iterable[tuple[float, Iterable[float]]]) -> dict:
        """For each ``(threshold, windows)`` a map ``{(namespace, pod): seconds GPU-idle, at least}``: the longest
        window over which the pod's utilisation stayed under the threshold (0: in use within the shortest)."""
        needs = [(t, sorted(set(ws), reverse=True)) for t, ws in needs]
        windows = sorted({w for _, ws in needs for w in ws})
        maxima = {w: await self.max_util(w) for w in windows}
        result: dict = {}
        for threshold, ws in needs:
            per_pod: dict = {}
            for pod in {p for w in ws for p in maxima[w]}:
                per_pod[pod] = next((w for w in ws if pod in maxima[w] and maxima[w][pod] < threshold), 0.0)
            result[threshold, tuple(ws)] = per_pod
        return result


__all__ = ["KernelProbe", "PrometheusGPU", "SourceError", "pod_of"]
