"""How many stops the culler keeps in flight, and how far apart it starts them: AIMD on the hub's answer time.

Pure (no I/O, no clock of its own): :mod:`.sweep` samples the hub's ``GET /hub/api/`` answer time every 0.1 s while
a sweep runs and feeds each sample to :meth:`AdaptiveLimit.observe` with the time it was taken.

- The signal is the ``quantile`` (the median by default) of the last ``window`` samples: one slow sample (another
  process took the CPU, the shared disk held a commit) is noise, not the queue we cause. A higher quantile tracks
  the hub's tail better, but where the hub's disk alone makes some answers slow (the hub commits sqlite on its
  event loop; on bench_culler's shared disk a commit took p50 4 ms, p90 21 ms, p99 166 ms) it holds the culler at
  one to three stops while the queue it causes is small: bench_culler's sweep with the 90th percentile of 2 s and a
  25 ms target took 108 s (the median of 0.5 s took 73 s before stops were paced).
- The bar is ``target``, or twice the floor when the machine is so busy that the hub answers slowly before the
  culler sends anything — else other tenants of the machine would hold the culler at one stop at a time while the
  queue it causes is nil. The floor is measured by :meth:`calibrate` with samples taken before the stops begin.
- A signal over the bar halves the limit, one under ``raise_below`` x the bar adds one; at most one change per
  ``cooldown``, never under ``minimum`` nor over ``maximum`` (``--concurrency``). No decision before the window
  holds ``settle`` samples, and a halving empties it: the next decision is taken on answers given after the
  halving (else the slow samples that caused it would halve the limit again and again, down to one).
- Pacing: the hub's work for a stop comes in two lumps, when the ``DELETE`` arrives and when the spawner's stop
  returns (its database commits). Stops started together end together, and a user's request that arrives behind
  ``limit`` such lumps waits for all of them. :meth:`spacing` spreads the starts evenly instead: ``limit`` stops in
  flight that each hold their slot ``d`` seconds (an average of :meth:`held`) are the same throughput as one start
  every ``d / limit`` seconds (Little's law), without the bursts.

The hub is one process with one event loop: every request we keep in flight is work queued in front of its users'
requests, so the answer time of its cheapest request is the queue we cause.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median

HISTORY = 256  # limit changes remembered (for the sweep's debug log and the tests)

def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of sorted samples by nearest rank; 0 for no samples."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


@dataclass
class AdaptiveLimit:
    maximum: int
    target: float = 0.025       # seconds: the hub answer time to stay under (at the quantile below)
    minimum: int = 1
    cooldown: float = 0.25      # seconds between two changes
    window: int = 10            # samples the quantile is taken over (1 s at 10 samples/s)
    quantile: float = 0.5       # of the window: the signal
    raise_below: float = 0.75   # add one while the signal is under this fraction of the bar
    settle: int = 5             # samples needed in the window before a decision (0.5 s at 10 samples/s)
    floor: float = 0.0          # the hub's answer time before the sweep's stops (see calibrate)
    limit: int = 0
    smoothing: float = 0.2      # weight of the newest hold time in the average that spacing() uses
    _changed_at: float = field(default=float("-inf"), repr=False)
    _samples: deque = field(default_factory=deque, repr=False)
    _held: float = field(default=0.0, repr=False)
    # (t, limit) at the latest changes: the service keeps one limiter for its lifetime, so the record is bounded
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY), repr=False)

    def __post_init__(self):
        if self.maximum < 1 or self.minimum < 1 or self.minimum > self.maximum:
            raise ValueError(f"limits: need 1 <= minimum <= maximum, got {self.minimum}..{self.maximum}")
        if not 0 < self.quantile <= 1:
            raise ValueError(f"quantile: need 0 < quantile <= 1, got {self.quantile}")
        if not self.limit:
            self.limit = max(self.minimum, min(self.maximum, 4))
        self._samples = deque(maxlen=max(1, self.window))

    def calibrate(self, samples: list[float]) -> None:
        """The hub's answer times with none of our stops in flight: their median is the floor."""
        self.floor = median(samples) if samples else 0.0

    @property
    def bar(self) -> float:
        return max(self.target, 2 * self.floor)

    @property
    def signal(self) -> float:
        """The ``quantile`` of the window's samples (nearest rank); 0 before the first sample."""
        return nearest_rank(sorted(self._samples), self.quantile)

    def observe(self, latency: float, now: float) -> int:
        """Feed one answer time (seconds) taken at ``now`` (monotonic seconds); returns the new limit."""
        self._samples.append(latency)
        if now - self._changed_at < self.cooldown or len(self._samples) < min(self.settle, self.window):
            return self.limit
        signal, bar = self.signal, self.bar
        new = self.limit
        if signal > bar:
            new = max(self.minimum, self.limit // 2)
        elif signal < bar * self.raise_below:
            new = min(self.maximum, self.limit + 1)
        if new < self.limit:
            self._samples.clear()
        if new != self.limit:
            self.limit, self._changed_at = new, now
            self.history.append((now, new))
        return self.limit

    def held(self, seconds: float) -> None:
        """One slot was held ``seconds`` (from its reservation to its release): feeds the average of :meth:`spacing`."""
        seconds = max(0.0, seconds)
        self._held = seconds if not self._held else self._held + self.smoothing * (seconds - self._held)

    def spacing(self) -> float:
        """Seconds between two starts: the average hold over the limit (0 until a slot has been released)."""
        return self._held / self.limit


__all__ = ["AdaptiveLimit", "nearest_rank"]
