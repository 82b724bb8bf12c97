"""How many stops the culler keeps in flight: additive increase, multiplicative decrease on the hub's answer time.

Pure (no I/O, no clock of its own): :mod:`.sweep` samples the hub's ``GET /hub/api/`` answer time while stops are
in flight and feeds each sample to :meth:`AdaptiveLimit.observe` with the time it was taken. A sample over
``target`` halves the limit (at most once per ``cooldown``, so one slow burst does not drive it to the floor); a
sample under half the target raises it by one (at most once per ``cooldown``), never above ``maximum``
(``--concurrency``). The hub is one process with one event loop: every request we keep in flight is work queued in
front of its users' requests, so the answer time of a trivial request is the queue we cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdaptiveLimit:
    maximum: int
    target: float = 0.02        # seconds: the hub answer time to stay under
    minimum: int = 1
    cooldown: float = 0.25      # seconds between two changes
    limit: int = 0
    _changed_at: float = field(default=float("-inf"), repr=False)
    history: list = field(default_factory=list, repr=False)  # (t, limit) at every change, for the bench

    def __post_init__(self):
        if self.maximum < 1 or self.minimum < 1 or self.minimum > self.maximum:
            raise ValueError(f"limits: need 1 <= minimum <= maximum, got {self.minimum}..{self.maximum}")
        if not self.limit:
            self.limit = max(self.minimum, min(self.maximum, 4))

    def observe(self, latency: float, now: float) -> int:
        """Feed one answer time (seconds) taken at ``now`` (monotonic seconds); returns the new limit."""
        if now - self._changed_at < self.cooldown:
            return self.limit
        new = self.limit
        if latency > self.target:
            new = max(self.minimum, self.limit // 2)
        elif latency < self.target / 2:
            new = min(self.maximum, self.limit + 1)
        if new != self.limit:
            self.limit, self._changed_at = new, now
            self.history.append((now, new))
        return self.limit


__all__ = ["AdaptiveLimit"]
