"""Pure preemption policy of the extender's ``preempt`` verb: of the victims kube-scheduler proposes, keep the idlest
user servers that make room, never one active within ``Policy.protect_active`` seconds.

kube-scheduler proposes, per candidate node, a minimal set of lower-priority victims (its DefaultPreemption, after
"reprieving" the most important pods). The extender may only narrow that: it answers at most one node, the one whose
most recently active victim has been idle the longest, with the fewest of its proposed victims that still make room
(idlest first). Victims must be user servers: pods labelled ``component=singleuser-server`` (KubeSpawner's label on
every server it starts) in one of the user-pod namespaces the extender is given (``Policy.user_namespaces``,
``--user-namespace``), naming a user (label ``hubfleet.io/user`` or the hub's username annotation). Nothing is read
from any other pod: its annotations could say anything, and it is never a victim. A user server's last activity
(annotation ``hubfleet.io/last-activity``, RFC 3339) must be known and older than the protection window: a pod
without it is never chosen (fail closed). With ``--hub-api-url`` the activity of a pod without the annotation comes
from the hub's REST API (``activity.py``), matched by the hub's pod annotations (``server_key``). No node answered
means no preemption: the pod stays Pending and kube-scheduler retries it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from ..labels import USERNAME_ANNOTATION as HUBFLEET_USERNAME_ANNOTATION
from ..resources import Resources, add_usage, fits
from .scoring import LAST_ACTIVITY_ANNOTATION, USER_LABEL, NodeInfo

HUB_USERNAME_ANNOTATION = "hub.jupyter.org/username"  # KubeSpawner's, unescaped (its label is an escaped slug)
HUB_SERVERNAME_ANNOTATION = "hub.jupyter.org/servername"  # absent for the default server

COMPONENT_LABEL, USER_SERVER_COMPONENT = "component", "singleuser-server"  # KubeSpawner's label on user servers

ServerKey = tuple[str, str]  # (username, servername); "" is the default server


def server_key(annotations: object) -> ServerKey | None:
    """(username, servername) of a pod from its annotations; None when it carries no hub username."""
    if not isinstance(annotations, Mapping):
        return None
    user = annotations.get(HUB_USERNAME_ANNOTATION) or annotations.get(HUBFLEET_USERNAME_ANNOTATION)
    if not isinstance(user, str) or not user:
        return None
    server = annotations.get(HUB_SERVERNAME_ANNOTATION)
    return user, server if isinstance(server, str) else ""


@dataclass(frozen=True)
class VictimInfo:
    uid: str
    name: str
    requests: Resources
    user: str | None = None
    last_activity: float | None = None  # seconds since the epoch
    server: ServerKey | None = None  # the hub server it is, from its annotations
    namespace: str = ""
    user_server: bool = False  # labelled component=singleuser-server

    def trusted(self, namespaces: "frozenset[str] | tuple[str, ...]") -> bool:
        """A user server in one of the user-pod `namespaces`: the only pods whose labels and annotations are read
        as a user's and which may be victims."""
        return self.user_server and self.namespace in namespaces


def parse_time(text: object) -> float | None:
    """RFC 3339 (``2026-12-01T09:00:00Z``, with or without fractions/offset) -> epoch seconds; None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def victim_info(pod: Mapping, requests: Resources) -> VictimInfo:
    meta = pod.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    labels, annotations = meta.get("labels"), meta.get("annotations")
    user = labels.get(USER_LABEL) if isinstance(labels, Mapping) else None
    activity = annotations.get(LAST_ACTIVITY_ANNOTATION) if isinstance(annotations, Mapping) else None
    server = server_key(annotations)
    if not user and server is not None:  # a server KubeSpawner started without hubfleet's ProfileSpawner
        user = server[0]
    namespace = meta.get("namespace")
    component = labels.get(COMPONENT_LABEL) if isinstance(labels, Mapping) else None
    return VictimInfo(uid=str(meta.get("uid") or ""), name=f"{namespace}/{meta.get('name')}",
                      requests=requests, user=str(user) if user else None, last_activity=parse_time(activity),
                      server=server, namespace=namespace if isinstance(namespace, str) else "",
                      user_server=component == USER_SERVER_COMPONENT)


@dataclass(frozen=True)
class Decision:
    victims: dict[str, list[str]]  # {node: [uids]}: at most one node
    refused: dict[str, str]  # {node: why no victims there}


def narrow(requests: Resources, proposed: Mapping[str, list[str]], *, nodes: Mapping[str, NodeInfo],
           usage: Mapping[str, Resources], pods: Mapping[str, VictimInfo], now: float, protect_active: float,
           user_namespaces: "frozenset[str] | tuple[str, ...]") -> Decision:
    """The victims to answer (see the module docstring); only user servers in `user_namespaces` are considered."""
    refused: dict[str, str] = {}
    options = []
    for node_name, uids in proposed.items():
        node = nodes.get(node_name)
        if node is None:
            refused[node_name] = "node not in the extender's cache"
            continue
        unknown = [u for u in uids if u not in pods]
        if unknown:
            refused[node_name] = f"victim(s) not in the extender's cache: {', '.join(unknown)}"
            continue
        proposed_victims = [pods[u] for u in uids]
        servers = [v for v in proposed_victims if v.user and v.trusted(user_namespaces)]
        eligible = [v for v in servers if v.last_activity is not None and now - v.last_activity >= protect_active]
        if not eligible:
            refused[node_name] = ("no proposed victim is a user server idle for longer than the protection window"
                                  if servers else "no proposed victim is a user server (label component="
                                  f"{USER_SERVER_COMPONENT} in namespace(s) "
                                  f"{', '.join(sorted(user_namespaces)) or 'none given: --user-namespace'})")
            continue
        eligible.sort(key=lambda v: v.last_activity)  # idlest first
        used = usage.get(node_name, {})
        chosen: list[VictimInfo] = []
        for v in eligible:
            if fits(requests, used, node.allocatable):
                break
            chosen.append(v)
            used = add_usage(used, v.requests, sign=-1)
        if not fits(requests, used, node.allocatable):
            refused[node_name] = "the idle user servers among the proposed victims do not make enough room"
            continue
        for v in sorted(chosen, key=lambda v: -v.last_activity):  # reprieve the most recently active if not needed
            kept = add_usage(used, v.requests)
            if fits(requests, kept, node.allocatable):
                chosen.remove(v)
                used = kept
        if not chosen:  # room without any victim: kube-scheduler's view is behind; nothing to preempt here
            refused[node_name] = "the pod fits without preempting anyone"
            continue
        newest = max(v.last_activity for v in chosen)
        options.append((newest, len(chosen), node_name, [v.uid for v in chosen]))
    if not options:
        return Decision({}, refused)
    options.sort()
    _, _, best, uids = options[0]
    for _, _, other, _ in options[1:]:
        refused[other] = f"{best} has idler victims"
    return Decision({best: uids}, refused)


__all__ = ["COMPONENT_LABEL", "USER_SERVER_COMPONENT", "Decision", "ServerKey", "VictimInfo", "narrow", "parse_time",
           "server_key", "victim_info"]
