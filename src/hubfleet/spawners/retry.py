"""Transient Kubernetes API answers are retried, not turned into a failed spawn.

KubeSpawner creates the PVC and the pod inside ``exponential_backoff`` (bounded by ``k8s_api_request_retry_timeout``)
but retries only timeouts: a 429 from API priority and fairness or a 5xx from an API server that is restarting
(a control-plane upgrade, an etcd leader change) ends the spawn with "Internal Server Error". These overrides hand
such answers back to that same back-off; every other error is raised as before.
"""

from __future__ import annotations

from kubernetes_asyncio.client.rest import ApiException

# answers a real API server gives while overloaded or restarting: worth another try within the back-off
TRANSIENT_API_STATUS = frozenset({429, 500, 502, 503, 504})


class TransientRetry:
    """Mixin for KubeSpawner: retry PVC and pod creation on transient API answers."""

    async def _retry_transient(self, create, what: str, obj, request_timeout):
        try:
            return await create(obj, request_timeout)
        except ApiException as e:
            if e.status in TRANSIENT_API_STATUS:
                self.log.warning("user:%s creating %s %s: the API answered %s; retrying", self.user.name, what,
                                 obj.metadata.name, e.status)
                return False
            raise

    async def _make_create_pvc_request(self, pvc, request_timeout):
        return await self._retry_transient(super()._make_create_pvc_request, "PVC", pvc, request_timeout)

    async def _make_create_pod_request(self, pod, request_timeout):
        return await self._retry_transient(super()._make_create_pod_request, "pod", pod, request_timeout)
