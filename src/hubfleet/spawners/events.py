"""Spawn progress in plain words: Kubernetes events (and container states) of a spawn -> one sentence each, with
what happens next, an honest phase, and the one-sentence explanation of a failed spawn.

Pure: no I/O, no Kubernetes client. The table :data:`RULES` is data; an operator adds or replaces entries with
``ProfileSpawner.progress_rules`` (compiled by :func:`compile_rules`, which names a rule that does not compile).

A rule matches an event when the event's ``reason`` equals the rule's ``reason`` and its ``message`` matches the
rule's ``pattern`` (``re.search``); the first matching rule wins, operator rules first. Its ``text`` (shown while
the spawn runs) and ``advice`` (shown when the spawn fails with this as the cause) are ``str.format`` templates over
the pattern's named groups and :data:`CONTEXT_KEYS`.

Container states have no events of their own on a real kubelet (an ``OOMKilled`` container, a ``CrashLoopBackOff``
wait, an ``ErrImagePull`` wait are only in the pod's ``status.containerStatuses``): :func:`status_events` turns
them into events with the state's reason, so the same table covers them.

Levels: ``info`` (normal progress, also for Kubernetes ``Warning`` events that are part of a normal wait, such as
``FailedScheduling`` while the cluster autoscaler adds a node), ``warning`` (may still work out), ``error`` (will
not work out without a change).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import HubfleetError

PHASES = ("waiting", "scheduled", "pulling", "starting", "ready", "failed")
LEVELS = ("info", "warning", "error")

#: What a rule's ``text`` and ``advice`` may name besides its pattern's groups.
CONTEXT_KEYS = ("profile", "memory_limit", "its_memory_limit", "larger_profile", "image", "container", "node")


class RuleError(HubfleetError):
    """A progress rule that cannot be used (its pattern does not compile, a field is missing or wrong)."""


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str
    pattern: re.Pattern
    text: str
    phase: str = ""  # "" keeps the current phase
    level: str = "info"
    advice: str = ""  # the failure page's sentence when this is why the spawn failed ("" -> text)

    def matches(self, reason: str, message: str) -> re.Match | None:
        return self.pattern.search(message) if reason == self.reason else None


@dataclass(frozen=True)
class Progress:
    """One event in words."""

    message: str
    phase: str
    level: str
    rule: str  # "" when no rule matched (the event's own message is shown)
    advice: str = ""


_GPU = "waiting for a GPU node"
_LATER = "Your server starts as soon as one is free or the cluster autoscaler adds a node; you can keep this page open."

_IMAGE_ADVICE = ("The image {image} cannot be fetched (a wrong name or tag, or a registry this cluster may not read); "
                 "pick another image, or ask your administrator.")
_CRASH_ADVICE = ("Your server's program keeps stopping right after it starts; start it again with the default image, "
                 "and ask your administrator (who can read its saved log) if it keeps happening.")

# name, reason, pattern, text, phase, level, advice. Message texts as kube-scheduler, the kubelet and the cluster
# autoscaler write them; tests/unit/test_spawn_events.py has one real text per rule, with the source file it is from.
_TABLE: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    # ---- kube-scheduler
    ("scheduled", "Scheduled", r"^Successfully assigned (?P<namespace>[^/\s]+)/(?P<pod>\S+) to (?P<node>\S+)",
     "Your server has a place on node {node}; next, its image is fetched.", "scheduled", "info", ""),
    ("unschedulable-gpu", "FailedScheduling", r"Insufficient (?P<resource>[\w.-]+/gpu)\b",
     "Your server is " + _GPU + ": every GPU this profile may use is taken. " + _LATER, "waiting", "info",
     "No GPU node became free in time; try again later, or pick a profile without a GPU if you do not need one."),
    ("unschedulable-resources", "FailedScheduling", r"Insufficient (?P<resource>cpu|memory|ephemeral-storage|pods)\b",
     "Your server is waiting for room on a node: no node has enough {resource} free for the {profile} profile. "
     + _LATER, "waiting", "info",
     "No node had room for the {profile} profile in time; try again in a few minutes, or pick a smaller profile."),
    ("unschedulable-volume", "FailedScheduling",
     r"unbound immediate PersistentVolumeClaims|didn't find available persistent volumes|volume node affinity "
     r"conflict|had volume node affinity conflict",
     "Your server is waiting for its storage volume to be bound to a disk.", "waiting", "warning",
     "Your storage volume could not be bound to a disk; ask your administrator (the storage class may be "
     "missing or full)."),
    ("unschedulable", "FailedScheduling", r"nodes are available",
     "Your server is waiting for a node the {profile} profile may run on: none is free right now. " + _LATER,
     "waiting", "info",
     "No node the {profile} profile may run on became free in time; try again later or pick another profile, and "
     "ask your administrator if it keeps happening."),
    ("preempted", "Preempted", r"^Preempted by",
     "Your server was stopped to make room for a server with a higher priority.", "failed", "error",
     "Your server was stopped to make room for a server with a higher priority; start it again (it may wait for "
     "a free node)."),
    # ---- cluster-autoscaler
    ("scale-up", "TriggeredScaleUp", r"^pod triggered scale-up",
     "A new node is being added to the cluster for your server; this usually takes a few minutes.", "waiting",
     "info",
     "A new node was being added for your server but was not ready in time; try again in a few minutes, when it "
     "should be."),
    ("no-scale-up", "NotTriggerScaleUp", r"^pod didn't trigger scale-up",
     "No node of the kind the {profile} profile needs can be added to the cluster; ask your administrator.",
     "waiting", "warning",
     "No node of the kind the {profile} profile needs could be added to the cluster; ask your administrator, or "
     "pick another profile."),
    # ---- kubelet: images
    ("pulling", "Pulling", r'^Pulling image "(?P<image>[^"]+)"',
     "Fetching the image {image}; a first pull of a large image takes minutes, later starts on this node are "
     "quicker.", "pulling", "info", ""),
    ("pulled-present", "Pulled", r'^Container image "(?P<image>[^"]+)" already present on machine',
     "The image {image} is already on the node; starting your server.", "starting", "info", ""),
    ("pulled", "Pulled", r'^Successfully pulled image "(?P<image>[^"]+)" in (?P<took>[^\s(]+)',
     "Fetched the image {image} in {took}; starting your server.", "starting", "info", ""),
    ("pull-backoff", "BackOff", r'^Back-off pulling image "(?P<image>[^"]+)"',
     "The image {image} cannot be fetched; Kubernetes keeps retrying, but this usually needs a fix.", "pulling",
     "error", _IMAGE_ADVICE),
    ("pull-failed", "Failed", r'^Failed to pull image "(?P<image>[^"]+)"',
     "The image {image} cannot be fetched.", "pulling", "error", _IMAGE_ADVICE),
    ("pull-error", "Failed", r"^Error: (?P<state>ErrImagePull|ImagePullBackOff|ErrImageNeverPull)",
     "The image {image} cannot be fetched.", "pulling", "error",
     "The image {image} cannot be fetched; pick another image, or ask your administrator."),
    ("image-invalid", "InspectFailed", r'^Failed to apply default image tag "(?P<image>[^"]+)"',
     "The image name {image} is not valid.", "failed", "error",
     "The image name {image} is not valid; pick another image."),
    # ---- kubelet: containers
    ("created", "Created", r"^Created container:? (?P<container>\S+)",
     "Created the container {container}.", "starting", "info", ""),
    ("started", "Started", r"^Started container (?P<container>\S+)",
     "Your server's program started; waiting for it to answer.", "starting", "info", ""),
    ("crash-backoff", "BackOff", r"^Back-off restarting failed container (?P<container>\S+)",
     "Your server's program stopped right after starting; Kubernetes restarts it with growing pauses.",
     "", "error", _CRASH_ADVICE),
    ("probe-unready", "Unhealthy", r"^Readiness probe failed",
     "Your server is starting but does not answer yet.", "starting", "info", ""),
    ("stopping", "Killing", r"^Stopping container (?P<container>\S+)",
     "Stopping your server's container {container}.", "", "info", ""),
    ("evicted", "Evicted", r"^The node was low on resource: (?P<resource>[\w.-]+)",
     "The node ran out of {resource} and stopped your server.", "failed", "error",
     "The node ran out of {resource} and stopped your server; start it again."),
    # ---- kubelet: volumes
    ("attached", "SuccessfulAttachVolume", r"^AttachVolume\.Attach succeeded",
     "Your storage volume is attached to the node.", "scheduled", "info", ""),
    ("multi-attach", "FailedAttachVolume", r"^Multi-Attach error",
     "Your storage volume is still attached to another node (a previous server may still be stopping); "
     "Kubernetes retries until it is released.", "scheduled", "warning",
     "Your storage volume stayed attached to another node; wait a minute for the previous server to stop, then "
     "start again, and ask your administrator if it keeps happening."),
    ("attach-failed", "FailedAttachVolume", r"AttachVolume\.Attach failed",
     "Your storage volume could not be attached to the node yet; Kubernetes keeps trying.", "scheduled",
     "warning", "Your storage volume could not be attached; ask your administrator."),
    ("mount-failed", "FailedMount", r"(Unable to attach or mount volumes|MountVolume\.\w+ failed)",
     "A storage volume could not be mounted yet; Kubernetes keeps trying (it can take a minute when a disk moves "
     "between nodes).", "scheduled", "warning",
     "A storage volume could not be mounted; try again in a few minutes, and ask your administrator if it keeps "
     "happening."),
    # ---- container states (status_events)
    ("oom-killed", "OOMKilled", r"",
     "Your server used more than {its_memory_limit} and was stopped.", "failed", "error",
     "Your server used more than {its_memory_limit} while starting; pick {larger_profile} or load less at start, "
     "and ask your administrator for more memory if you need it."),
    ("crash-loop", "CrashLoopBackOff", r"",
     "Your server's program keeps stopping right after it starts.", "", "error", _CRASH_ADVICE),
    ("image-pull-state", "ErrImagePull", r"",
     "The image {image} cannot be fetched.", "pulling", "error", _IMAGE_ADVICE),
    ("image-pull-backoff-state", "ImagePullBackOff", r"",
     "The image {image} cannot be fetched; Kubernetes keeps retrying.", "pulling", "error", _IMAGE_ADVICE),
    ("config-error", "CreateContainerConfigError", r"",
     "Your server's container cannot be created: {message}", "failed", "error",
     "Your server's container cannot be created ({message}); ask your administrator."),
)

_FORMATTER = string.Formatter()


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in _FORMATTER.parse(template) if f is not None}


def make_rule(entry: Mapping, where: str = "") -> Rule:
    """A :class:`Rule` from a mapping (``name``, ``reason``, ``pattern``, ``text``, optional ``phase``, ``level``,
    ``advice``); :class:`RuleError` naming the rule and the fix otherwise."""
    name = entry.get("name") if isinstance(entry, Mapping) else None
    label = f"{where}{' ' if where else ''}rule {name!r}" if name else (where or "a progress rule")
    if not isinstance(entry, Mapping):
        raise RuleError(f"{label}: expected a mapping, got {entry!r}",
                        fix="write it as {name, reason, pattern, text}")
    unknown = sorted(set(entry) - {"name", "reason", "pattern", "text", "phase", "level", "advice"})
    if unknown:
        raise RuleError(f"{label}: unknown key(s) {unknown}",
                        fix="allowed: name, reason, pattern, text, phase, level, advice")
    for key in ("name", "reason", "text"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            raise RuleError(f"{label}: {key!r} must be a non-empty string, got {entry.get(key)!r}")
    pattern = entry.get("pattern", "")
    if not isinstance(pattern, str):
        raise RuleError(f"{label}: 'pattern' must be a regular expression string, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise RuleError(f"{label}: pattern {pattern!r} does not compile: {e}",
                        fix="fix the regular expression (Python re syntax)") from e
    phase, level = entry.get("phase", ""), entry.get("level", "info")
    if phase not in ("", *PHASES):
        raise RuleError(f"{label}: phase {phase!r} is not one of {', '.join(PHASES)}")
    if level not in LEVELS:
        raise RuleError(f"{label}: level {level!r} is not one of {', '.join(LEVELS)}")
    known = set(compiled.groupindex) | set(CONTEXT_KEYS) | {"message", "reason"}
    for key in ("text", "advice"):
        try:
            missing = sorted(_fields(entry.get(key) or "") - known)
        except ValueError as e:
            raise RuleError(f"{label}: {key} {entry.get(key)!r} is not a valid template: {e}",
                            fix="write {{ and }} for literal braces") from e
        if missing:
            raise RuleError(f"{label}: {key} names {missing}, which neither the pattern's groups nor the context "
                            "provide", fix=f"use a named group (?P<name>...) or one of {', '.join(CONTEXT_KEYS)}, "
                            "message, reason")
    return Rule(entry["name"], entry["reason"], compiled, entry["text"], phase, level, entry.get("advice") or "")


RULES: tuple[Rule, ...] = tuple(
    make_rule(dict(zip(("name", "reason", "pattern", "text", "phase", "level", "advice"), row))) for row in _TABLE)


def compile_rules(extra: Iterable[Mapping] = (), *, where: str = "ProfileSpawner.progress_rules") -> tuple[Rule, ...]:
    """The operator's rules first (an entry named like a built-in rule replaces it), then the built-in table."""
    own = []
    for i, entry in enumerate(extra or ()):
        own.append(make_rule(entry, f"{where}[{i}]"))
    names = [r.name for r in own]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuleError(f"{where}: rule name(s) {dupes} appear more than once", fix="give every rule its own name")
    replaced = set(names)
    return (*own, *(r for r in RULES if r.name not in replaced))


# ---------------------------------------------------------------------------------------------------- formatting

class _Values(dict):
    def __missing__(self, key):  # a group that did not take part in the match
        return ""


def _render(template: str, values: Mapping) -> str:
    return _FORMATTER.vformat(template, (), _Values(values)).strip()


def context_for(*, profile: str = "", memory_limit: int | None = None, larger_profile: str = "",
                image: str = "") -> dict[str, str]:
    """The context values rules may name, from what the spawner knows about this spawn."""
    limit = format_bytes(memory_limit) if memory_limit else ""
    return {
        "profile": profile or "chosen",
        "memory_limit": limit,
        "its_memory_limit": f"its {limit} memory limit" if limit else "its memory limit",
        "larger_profile": f"the {larger_profile} profile" if larger_profile else "a profile with more memory",
        "image": image,
    }


def format_bytes(n: int | float) -> str:
    """``4294967296`` -> ``"4 GiB"``, ``536870912`` -> ``"512 MiB"``, ``1610612736`` -> ``"1.5 GiB"``."""
    n = float(n)
    for unit, size in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            value = n / size
            text = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
            return f"{text} {unit}"
    return f"{n:.0f} bytes"


def match(event: Mapping, rules: Iterable[Rule] = RULES) -> tuple[Rule, re.Match] | None:
    reason, message = str(event.get("reason") or ""), str(event.get("message") or "")
    for rule in rules:
        m = rule.matches(reason, message)
        if m is not None:
            return rule, m
    return None


def describe(event: Mapping, context: Mapping | None = None, rules: Iterable[Rule] = RULES) -> Progress:
    """One Kubernetes event (``reason``, ``message``, ``type``) in words. An event no rule knows keeps its own
    message (a ``Warning`` one at level ``warning``)."""
    found = match(event, rules)
    message = str(event.get("message") or "")
    if found is None:
        level = "warning" if event.get("type") == "Warning" else "info"
        return Progress(message, "", level, "")
    rule, m = found
    values = {**(context or {}), "message": message, "reason": str(event.get("reason") or ""),
              **{k: v for k, v in m.groupdict().items() if v is not None}}
    return Progress(_render(rule.text, values), rule.phase, rule.level, rule.name,
                    _render(rule.advice or rule.text, values))


# ---------------------------------------------------------------------------------------------------- pod status

def status_events(pod: Mapping | None) -> list[dict]:
    """The pod's container states that explain a failure, as events: an ``OOMKilled`` termination (current or
    last), a waiting reason (``CrashLoopBackOff``, ``ErrImagePull``, ...)."""
    status = (pod or {}).get("status") or {}
    out = []
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        name = cs.get("name") or ""
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                out.append({"reason": "OOMKilled", "type": "Warning", "container": name,
                            "message": f"container {name} exited with code {terminated.get('exitCode', 137)}"})
                break
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            out.append({"reason": waiting["reason"], "type": "Warning", "container": name,
                        "message": str(waiting.get("message") or ""), "image": cs.get("image") or ""})
    return out


@dataclass(frozen=True)
class Explanation:
    """Why a spawn failed, in one sentence that says what to do; ``rule`` names the table entry."""

    sentence: str
    rule: str
    level: str


_STATE_ORDER = ("OOMKilled", "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")


def explain_failure(events: Iterable[Mapping], pod: Mapping | None = None, context: Mapping | None = None,
                    rules: Iterable[Rule] = RULES) -> Explanation | None:
    """The most telling cause of a failed spawn: a container state (out of memory first), else the last ``error``
    event, else the last ``warning`` event, else the last event a rule explains (a spawn that timed out while
    waiting for a node). None when nothing is known."""
    rules = tuple(rules)
    ctx = dict(context or {})
    states = sorted(status_events(pod), key=lambda e: _STATE_ORDER.index(e["reason"])
                    if e["reason"] in _STATE_ORDER else len(_STATE_ORDER))
    for ev in states:
        p = describe(ev, {**ctx, "image": ev.get("image") or ctx.get("image", ""), "container": ev["container"]},
                     rules)
        if p.rule and p.level == "error":
            return Explanation(p.advice, p.rule, p.level)
    described = [describe(ev, ctx, rules) for ev in events]
    for level in ("error", "warning", "info"):
        for p in reversed(described):
            if p.rule and p.level == level and (level != "info" or p.phase == "waiting"):
                return Explanation(p.advice, p.rule, p.level)
    return None


# ---------------------------------------------------------------------------------------------------- spawn times

def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100); None for no values."""
    data = sorted(float(v) for v in values)
    if not data:
        return None
    k = max(1, math.ceil(q / 100 * len(data)))
    return data[k - 1]


def format_seconds(s: float) -> str:
    """``42`` -> ``"42 s"``, ``130`` -> ``"2 min 10 s"``, ``600`` -> ``"10 min"``."""
    s = int(round(s))
    if s < 60:
        return f"{max(s, 1)} s"
    m, rest = divmod(s, 60)
    return f"{m} min {rest} s" if rest else f"{m} min"


MIN_SAMPLES = 5


def usual_time(profile: str, durations: Iterable[float], *, min_samples: int = MIN_SAMPLES) -> str:
    """``"Servers of the Large profile usually start in 40 s (9 in 10 within 2 min 10 s)."``, from the profile's
    successful spawn durations; ``""`` with fewer than ``min_samples``."""
    data = list(durations)
    if len(data) < min_samples:
        return ""
    p50, p90 = percentile(data, 50), percentile(data, 90)
    return (f"Servers of the {profile} profile usually start in {format_seconds(p50)} "
            f"(9 in 10 within {format_seconds(p90)}).")


PHASE_WORDS = {"waiting": "waiting for a node", "scheduled": "scheduled", "pulling": "fetching the image",
               "starting": "starting", "ready": "ready", "failed": "failed"}


def phase_line(phase: str) -> str:
    """The honest phase as the page shows it, e.g. ``"Phase: fetching the image"``."""
    return f"Phase: {PHASE_WORDS.get(phase, phase)}" if phase else ""
