"""Quota accounting for ProfileSpawner: live hubfleet pods (from KubeSpawner's pod reflector) plus the slots
reserved by spawns whose pods are not visible yet, shared by every spawner of the hub."""

from __future__ import annotations

import json
from typing import ClassVar

from ..labels import GROUPS_ANNOTATION, PROFILE_LABEL, USERNAME_ANNOTATION
from .profiles import QuotaExceeded, ResolvedChoice, RunningServer, quota_violation


class QuotaAccounting:
    """Mixin for ProfileSpawner (needs ``pod_reflector``, ``namespace``, ``pod_name`` and ``_refusal``)."""

    # Quota slots reserved by spawns whose pods the reflector may not show yet; shared by every instance in the hub.
    _reservations: ClassVar[dict[str, RunningServer]] = {}

    def _reserve_quota(self, choice: ResolvedChoice, quotas: list) -> None:
        """Check the quotas against live pods plus pending reservations and reserve a slot.

        Race-free within one hub: there is no ``await`` between counting and recording the reservation, so no other
        spawn on the event loop can interleave (an asyncio lock around this would never be contended).
        """
        key = self._pod_key()
        message = quota_violation(
            quotas, self._running_servers(exclude=key), profile=choice.profile.slug, groups=choice.groups,
            user=choice.user,
        )
        if message:
            self._refused = True
            raise self._refusal(QuotaExceeded(message), choice.profile.slug)
        QuotaAccounting._reservations[key] = RunningServer(key, choice.profile.slug, choice.groups, choice.user)

    def _pod_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    def _release_quota(self) -> None:
        QuotaAccounting._reservations.pop(self._pod_key(), None)

    def _running_servers(self, exclude: str | None = None) -> list[RunningServer]:
        """Servers that count against quotas: live hubfleet pods (not finished) plus reservations, once per pod."""
        servers: dict[str, RunningServer] = {}
        reflector = self.pod_reflector
        for key, pod in list(reflector.pods.items()) if reflector is not None else ():
            metadata = pod.get("metadata") or {}
            profile = (metadata.get("labels") or {}).get(PROFILE_LABEL)
            if not profile or key == exclude:
                continue
            if ((pod.get("status") or {}).get("phase")) in ("Succeeded", "Failed"):
                continue
            annotations = metadata.get("annotations") or {}
            try:
                groups = frozenset(json.loads(annotations.get(GROUPS_ANNOTATION, "[]")))
            except (TypeError, ValueError):
                groups = frozenset()
            servers[key] = RunningServer(key, profile, groups, annotations.get(USERNAME_ANNOTATION, ""))
        for key, server in QuotaAccounting._reservations.items():
            if key != exclude:
                servers.setdefault(key, server)
        return list(servers.values())
