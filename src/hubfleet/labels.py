"""The ``hubfleet.io/*`` labels and annotations: every key hubfleet writes on a Kubernetes object or reads back, and
the one place that builds them.

ProfileSpawner writes them (next to KubeSpawner's own ``hub.jupyter.org/*`` and ``component`` labels, which it
keeps); the quotas, the metrics, ``hubfleet pvcs`` and the scheduler extender read them. A part that uses a key
imports it from here.

On user pods:

- label ``hubfleet.io/profile``: the profile slug (quotas and metrics count by it, the extender groups by it);
- label ``hubfleet.io/strategy``: the profile's scheduling strategy, when it declares one (the extender's scoring);
- label ``hubfleet.io/user``: the user's safe slug (the extender's preemption picks victims among these pods);
- annotation ``hubfleet.io/username``: the name as it is (quotas per user; the extender's fallback for
  KubeSpawner's ``hub.jupyter.org/username``);
- annotation ``hubfleet.io/groups``: a JSON list of the user's groups at spawn time (per-group quotas);
- annotation ``hubfleet.io/last-activity``: RFC 3339, read by the extender's preemption (hubfleet does not write it
  on the pod; a deployment may).

On the PVCs ProfileSpawner creates (what ties a PVC to the server it was made for: ``delete_forever`` and
``hubfleet pvcs prune`` delete only a PVC that carries them):

- label ``hubfleet.io/created-by: hubfleet``;
- label ``hubfleet.io/user``: the user's safe slug; label ``hubfleet.io/server``: the named server's safe slug
  (empty for the default server);
- annotations ``hubfleet.io/username`` and ``hubfleet.io/servername``: the names as they are.

Pure: no framework import. Slugs are computed by the caller (KubeSpawner's ``safe_slug``), so that this module stays
importable without KubeSpawner.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

PROFILE_LABEL = "hubfleet.io/profile"
STRATEGY_LABEL = "hubfleet.io/strategy"
USER_LABEL = "hubfleet.io/user"
SERVER_LABEL = "hubfleet.io/server"
CREATED_BY_LABEL = "hubfleet.io/created-by"
USERNAME_ANNOTATION = "hubfleet.io/username"
SERVERNAME_ANNOTATION = "hubfleet.io/servername"
GROUPS_ANNOTATION = "hubfleet.io/groups"
LAST_ACTIVITY_ANNOTATION = "hubfleet.io/last-activity"

#: The value of ``hubfleet.io/created-by`` on the PVCs hubfleet created.
CREATED_BY = "hubfleet"


def pod_labels(*, profile: str, strategy: str | None, user_slug: str) -> dict[str, str]:
    """The ``hubfleet.io/*`` labels of a user pod."""
    labels = {PROFILE_LABEL: profile, USER_LABEL: user_slug}
    if strategy:
        labels[STRATEGY_LABEL] = strategy
    return labels


def pod_annotations(*, username: str, groups: Iterable[str]) -> dict[str, str]:
    """The ``hubfleet.io/*`` annotations of a user pod."""
    return {GROUPS_ANNOTATION: json.dumps(sorted(groups)), USERNAME_ANNOTATION: username}


def pvc_labels(*, user_slug: str, server_slug: str) -> dict[str, str]:
    """The ``hubfleet.io/*`` labels of a PVC hubfleet creates (``server_slug`` empty for the default server)."""
    return {CREATED_BY_LABEL: CREATED_BY, USER_LABEL: user_slug, SERVER_LABEL: server_slug}


def pvc_annotations(*, username: str, servername: str) -> dict[str, str]:
    """The ``hubfleet.io/*`` annotations of a PVC hubfleet creates."""
    return {USERNAME_ANNOTATION: username, SERVERNAME_ANNOTATION: servername}
