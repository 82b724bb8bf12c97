"""What several benches share: a percentile, and a probe that measures the hub's API latency while a load runs."""

from __future__ import annotations

import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class LatencyProbe:
    """GETs `url` every `interval` seconds on a thread between start() and stop(); `latencies` holds the seconds
    each request took (a failed request counts with the time it took to fail)."""

    def __init__(self, url: str, interval: float = 0.02, timeout: float = 60):
        self.url, self.interval, self.timeout = url, interval, timeout
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        s = requests.Session()
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                s.get(self.url, timeout=self.timeout)
            except requests.RequestException:
                pass
            self.latencies.append(time.monotonic() - t0)
            self._stop.wait(self.interval)

    def start(self) -> "LatencyProbe":
        self._thread.start()
        return self

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(self.timeout)
        return self.latencies


def save_results(name: str, data: object) -> Path:
    """Write a bench's results to test-artifacts/<name>.json and say where."""
    import json

    from tests.procs import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{name}.json"
    out.write_text(json.dumps(data, indent=2))
    print(f"results: {out}")
    return out


@contextmanager
def hub_on_devcluster(name: str, config: str):
    """A devcluster, a proxy and a started hub with ``config`` (the tests' hub wiring) in a fresh temp directory:
    yields ``(hub, devcluster)``; all three stopped on the way out."""
    from tests.conftest import new_hub, start_chp, start_devcluster

    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    dc = start_devcluster(root / "dc")
    chp = start_chp(root / "chp")
    hub = new_hub(root / "hub", dc, chp, config)
    try:
        hub.start()
        yield hub, dc
    finally:
        hub.stop()
        chp.proc.stop()
        dc.proc.stop()
