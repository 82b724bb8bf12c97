"""Image pulls as a kubelet does them, before each container start: ``imagePullPolicy`` against the images each node
already has, the events (``Pulling``, ``Pulled``, ``Failed``, ``BackOff``, ``ErrImageNeverPull``) and the container's
``waiting`` reason (``ErrImagePull``, then ``ImagePullBackOff`` until the next try, the pause doubling from the base
to 300 s). Which images exist is decided in `images.py`; nothing is downloaded."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from .faults import Faults
from .images import ImageMapping, go_duration, image_exists, pull_backoff, pull_error, pull_policy, resolve_image

log = logging.getLogger("hubfleet_devcluster.kubelet")

Event = Callable[[str, str, str], None]  # (type, reason, message)
Waiting = Callable[[str, str], None]  # (reason, message): the container's state.waiting


class ImagePuller:
    """The images of every node (pulled since the devcluster started), and the pull loop of one container."""

    def __init__(self, images: tuple[ImageMapping, ...], faults: Faults, backoff: float = 10.0):
        self.images = images
        self.faults = faults
        self.backoff = backoff  # kubelet's first image back-off (10 s)
        self.present: set[tuple[str, str]] = set()  # (node, image)
        self._hinted: set[str] = set()

    async def ensure(self, node: str, container: dict, event: Event, waiting: Waiting) -> None:
        """Return once ``container``'s image is on ``node``, pulling it as its ``imagePullPolicy`` says; until then
        keep trying, with the container waiting in ``ErrImagePull`` / ``ImagePullBackOff`` (or
        ``ErrImageNeverPull``). The caller cancels the task to give up (the pod is deleted)."""
        image = container.get("image") or ""
        policy = pull_policy(container)
        failures = 0
        while True:
            present = (node, image) in self.present
            if present and policy != "Always":
                event("Normal", "Pulled", f'Container image "{image}" already present on machine')
                return
            if policy == "Never":
                message = f'Container image "{image}" is not present with pull policy of Never'
                event("Warning", "ErrImageNeverPull", message)
                event("Warning", "Failed", "Error: ErrImageNeverPull")
                waiting("ErrImageNeverPull", message)
                await asyncio.sleep(self.backoff)  # the pod worker's resync: another pod may pull it meanwhile
                continue
            event("Normal", "Pulling", f'Pulling image "{image}"')
            started = time.monotonic()
            if image_exists(image, self.images, tuple(self.faults.missing_images)):
                self.present.add((node, image))
                took = go_duration(time.monotonic() - started)
                event("Normal", "Pulled", f'Successfully pulled image "{image}" in {took} ({took} including '
                      "waiting)")
                return
            failures += 1
            self._hint(image)
            error = pull_error(image)
            event("Warning", "Failed", f'Failed to pull image "{image}": {error}')
            event("Warning", "Failed", "Error: ErrImagePull")
            waiting("ErrImagePull", error)
            delay = pull_backoff(self.backoff, failures)
            # ErrImagePull until the kubelet's next sync of the pod (half the first step), then ImagePullBackOff
            # for the rest of the pause
            shown = min(self.backoff / 2, delay)
            await asyncio.sleep(shown)
            message = f'Back-off pulling image "{image}"'
            event("Normal", "BackOff", message)
            event("Warning", "Failed", "Error: ImagePullBackOff")
            waiting("ImagePullBackOff", message)
            await asyncio.sleep(delay - shown)

    def _hint(self, image: str) -> None:
        """Once per image, say in the devcluster's log how to make an unmapped image exist."""
        if image in self._hinted or resolve_image(image, self.images) is not None:
            return
        self._hinted.add(image)
        log.warning("image %r has no local mapping, so pulls of it fail as 'not found'; add one with "
                    "`hubfleet-devcluster --images FILE`, FILE a YAML list such as "
                    "[{pattern: %r, command: [...], args: [...]}]", image, image)
