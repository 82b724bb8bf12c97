"""How many stops the culler keeps in flight: additive increase, multiplicative decrease on the hub's answer time.

Pure (no I/O, no clock of its own): :mod:`.sweep` samples the hub's ``GET /hub/api/`` answer time every 0.1 s while
a sweep runs and feeds each sample to :meth:`AdaptiveLimit.observe` with the time it was taken. The signal is the
median of the last ``window`` samples (one slow sample — another process took the CPU — is noise, not the queue we
cause). The bar is ``target``, or twice the floor when the machine is so busy that the hub answers slowly before the culler
sends anything — else other tenants of the machine would hold the culler at one stop at a time while the queue it
causes is nil. The floor is measured by :meth:`calibrate` with samples taken before the sweep's stops begin. A signal over the bar halves the limit, one under
``raise_below`` x the bar adds one; at most one change per ``cooldown``, never under ``minimum`` nor over ``maximum``
(``--concurrency``). The hub is one process with one
event loop: every request we keep in flight is work queued in front of its users' requests, so the answer time of
its cheapest request is the queue we cause.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median


@dataclass
class AdaptiveLimit:
    maximum: int
    target: float = 0.025       # seconds: the hub answer time to stay under
    minimum: int = 1
    cooldown: float = 0.25      # seconds between two changes
    window: int = 5             # samples in the median
    raise_below: float = 0.75   # add one while the median is under this fraction of the target
    floor: float = 0.0          # the hub's answer time before the sweep's stops (see calibrate)
    limit: int = 0
    _changed_at: float = field(default=float("-inf"), repr=False)
    _samples: deque = field(default_factory=deque, repr=False)
    history: list = field(default_factory=list, repr=False)  # (t, limit) at every change

    def __post_init__(self):
        if self.maximum < 1 or self.minimum < 1 or self.minimum > self.maximum:
            raise ValueError(f"limits: need 1 <= minimum <= maximum, got {self.minimum}..{self.maximum}")
        if not self.limit:
            self.limit = max(self.minimum, min(self.maximum, 4))
        self._samples = deque(maxlen=max(1, self.window))

    def calibrate(self, samples: list[float]) -> None:
        """The hub's answer times with none of our stops in flight: their median is the floor."""
        self.floor = median(samples) if samples else 0.0

    @property
    def bar(self) -> float:
        return max(self.target, 2 * self.floor)

    def observe(self, latency: float, now: float) -> int:
        """Feed one answer time (seconds) taken at ``now`` (monotonic seconds); returns the new limit."""
        self._samples.append(latency)
        if now - self._changed_at < self.cooldown:
            return self.limit
        signal, bar = median(self._samples), self.bar
        new = self.limit
        if signal > bar:
            new = max(self.minimum, self.limit // 2)
        elif signal < bar * self.raise_below:
            new = min(self.maximum, self.limit + 1)
        if new != self.limit:
            self.limit, self._changed_at = new, now
            self.history.append((now, new))
        return self.limit


__all__ = ["AdaptiveLimit"]
