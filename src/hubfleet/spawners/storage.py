"""Storage safety: hubfleet labels the PVCs it creates with their owner, and deletes a PVC only when it created it
for exactly this server and no other pod mounts it (KubeSpawner's ``delete_forever`` deletes whatever
``pvc_name`` names, also a PVC shared by several servers: kubespawner #880).

The labels and annotations (also read by ``hubfleet pvcs list|prune``) are built by :mod:`hubfleet.labels`, added to
KubeSpawner's own.
"""

from __future__ import annotations

import asyncio
from functools import partial

from jupyterhub.utils import exponential_backoff
from kubernetes_asyncio.client.rest import ApiException
from kubespawner.slugs import is_valid_label, safe_slug

from ..labels import pvc_annotations, pvc_labels


def owner_labels(user: str, server: str) -> dict[str, str]:
    """The labels that mark a PVC as created by hubfleet for ``user``'s server ``server``."""
    return pvc_labels(user_slug=safe_slug(user, is_valid=is_valid_label),
                      server_slug=safe_slug(server, is_valid=is_valid_label) if server else "")


def pods_mounting(pods, claim: str, *, exclude: str = "") -> list[str]:
    """Names of the live pods (not Succeeded/Failed) in ``pods`` (dicts) that mount PVC ``claim``."""
    names = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        if name == exclude or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if ((volume.get("persistentVolumeClaim") or {}).get("claimName")) == claim:
                names.append(name)
                break
    return names


class StorageSafety:
    """Mixin for KubeSpawner: owner labels on PVCs, and a ``delete_forever`` that deletes only what is safe."""

    def get_pvc_manifest(self):
        pvc = super().get_pvc_manifest()
        pvc.metadata.labels = {**(pvc.metadata.labels or {}), **owner_labels(self.user.name, self.name)}
        pvc.metadata.annotations = {**(pvc.metadata.annotations or {}),
                                    **pvc_annotations(username=self.user.name, servername=self.name)}
        return pvc

    async def _k8s(self, call, **kwargs):
        return await asyncio.wait_for(call(**kwargs), self.k8s_api_request_timeout)

    async def delete_forever(self):
        """Delete this server's PVC (JupyterHub calls it when a named server or the user is removed) only if
        hubfleet created it for this server and no other pod mounts it; otherwise keep it and say why."""
        who = f"{self.user.name}/{self.name}" if self.name else self.user.name
        if not self.delete_pvc:
            self.log.info("user:%s not deleting PVC %s (delete_pvc is off)", who, self.pvc_name)
            return
        try:
            pvc = await self._k8s(self.api.read_namespaced_persistent_volume_claim, name=self.pvc_name,
                                  namespace=self.namespace)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        labels = pvc.metadata.labels or {}
        expected = owner_labels(self.user.name, self.name)
        if any(labels.get(k) != v for k, v in expected.items()):
            self.log.warning("user:%s keeping PVC %s: hubfleet did not create it for this server (labels %s)",
                             who, self.pvc_name, {k: labels.get(k) for k in expected})
            return
        pods = await self._k8s(self.api.list_namespaced_pod, namespace=self.namespace)
        items = self.api.api_client.sanitize_for_serialization(pods).get("items") or []
        users = pods_mounting(items, self.pvc_name, exclude=self.pod_name)
        if users:
            self.log.warning("user:%s keeping PVC %s: still mounted by pod(s) %s", who, self.pvc_name,
                             ", ".join(users))
            return
        await exponential_backoff(
            partial(self._make_delete_pvc_request, self.pvc_name, self.k8s_api_request_timeout),
            f"Could not delete pvc {self.pvc_name}",
            timeout=self.k8s_api_request_retry_timeout,
        )
