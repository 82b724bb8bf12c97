"""The spawn queue on a real hub and the devcluster: admission latency, and the hub's API while 500 users poll.

Two measurements, one devcluster, proxy and hub (ProfileSpawner with the queue on, the profile ``q`` with quota 1):

1. **Admission latency**: from a queued profile's running server gone (its pod deleted) to the next queued user's
   pod created, over ``ADMISSIONS`` admissions (``ADMISSIONS + 1`` users queued, admission by the stop hook, the
   periodic pass set to 60 s so it cannot help). Goal: p95 <= 2 s.
2. **500 waiting users polling**: ``/hub/api/`` p50/p99 through the proxy, probed every 20 ms for ``PHASE_SECONDS``,
   first with nobody queued, then while ``WAITERS`` queued users each GET ``/hub/api/queue`` with their own token
   every 3 s (what the spawn page does while it shows the position), the polls spread evenly.

Results in test-artifacts/bench_queue.json.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench._common import LatencyProbe, hub_on_devcluster, pct, save_results
from tests.integration.spawner.test_profile_spawner import make_users, spawn
from tests.integration.spawner.test_queue import pod_exists, queue_config
from tests.procs import wait_for

ADMISSIONS = 20
WAITERS = 500
POLL_EVERY = 3.0  # the spawn page's poll interval (queueing.py)
PHASE_SECONDS = 30


def _admissions(hub, dc) -> dict:
    users = [f"b{i:02d}" for i in range(ADMISSIONS + 1)]
    make_users(hub, *users, groups={"gpu-users": users})
    assert spawn(hub, users[0], {"profile": "q"})[0] in (201, 202)
    hub.wait_ready(users[0], timeout=120)
    for user in users[1:]:
        assert spawn(hub, user, {"profile": "q"})[0] == 429
    latencies = []
    for running, nxt in zip(users, users[1:]):
        assert hub.api("DELETE", f"/users/{running}/server")[0] in (202, 204)
        wait_for(f"{running}'s pod to go", lambda: not pod_exists(dc, running), timeout=60, interval=0.02)
        gone = time.monotonic()
        wait_for(f"{nxt}'s pod to be created", lambda: pod_exists(dc, nxt), timeout=60, interval=0.02)
        latencies.append(time.monotonic() - gone)
        hub.wait_ready(nxt, timeout=120)
    out = {"admissions": len(latencies), "p50_s": statistics.median(latencies),
           "p95_s": statistics.quantiles(latencies, n=20)[18], "max_s": max(latencies)}
    print(f"admission latency over {out['admissions']} admissions: p50 {out['p50_s']:.2f} s, "
          f"p95 {out['p95_s']:.2f} s, max {out['max_s']:.2f} s (goal p95 <= 2 s)", flush=True)
    return out


def _phase(hub, name: str, extra: dict | None = None) -> dict:
    probe = LatencyProbe(hub.url + "/hub/api/", interval=0.02).start()
    time.sleep(PHASE_SECONDS)
    lat = probe.stop()
    out = {"phase": name, "requests": len(lat), "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
           "max_ms": max(lat) * 1000, **(extra or {})}
    print(f"{name:>28}: /hub/api/ {out['requests']} requests, p50 {out['p50_ms']:.1f} ms, "
          f"p99 {out['p99_ms']:.1f} ms, max {out['max_ms']:.1f} ms", flush=True)
    return out


class Pollers:
    """``len(tokens)`` users each GET /hub/api/queue every POLL_EVERY seconds, spread evenly, on a few threads."""

    def __init__(self, url: str, tokens: list[str], threads: int = 16):
        self.url, self.tokens = url, tokens
        self.latencies: list[float] = []
        self.errors = 0
        self.positions: set[int] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(tokens[i::threads], i / threads), daemon=True)
                         for i in range(threads)]

    def _run(self, tokens: list[str], offset: float) -> None:
        s = requests.Session()
        step = POLL_EVERY / max(len(tokens), 1)
        next_at = time.monotonic() + offset * step
        while not self._stop.is_set():
            for token in tokens:
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                if self._stop.is_set():
                    return
                next_at += step
                t0 = time.monotonic()
                try:
                    r = s.get(self.url, headers={"Authorization": f"token {token}"}, timeout=60)
                    ok = r.status_code == 200
                    if ok:
                        self.positions.update(q["position"] for q in r.json()["queued"])
                except (requests.RequestException, ValueError):
                    ok = False
                self.latencies.append(time.monotonic() - t0)
                self.errors += not ok

    def start(self) -> "Pollers":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def _pollers(hub) -> list[dict]:
    results = [_phase(hub, "nobody queued")]
    users = [f"w{i:03d}" for i in range(WAITERS)]
    for i in range(0, WAITERS, 100):
        make_users(hub, *users[i:i + 100])
    hub.api("POST", "/groups/gpu-users/users", json={"users": users})
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda u: spawn(hub, u, {"profile": "q"})[0], users))
        tokens = list(pool.map(hub.user_token, users))
    assert codes.count(429) == WAITERS, f"not all queued: {sorted(set(codes))}"
    pollers = Pollers(hub.url + "/hub/api/queue", tokens).start()
    try:
        time.sleep(POLL_EVERY)  # every poller under way before the probe starts
        lat_before = len(pollers.latencies)
        result = _phase(hub, f"{WAITERS} queued, polling")
        polls = pollers.latencies[lat_before:]
        result.update({"polls": len(polls), "poll_p50_ms": pct(polls, 0.5) * 1000,
                       "poll_p99_ms": pct(polls, 0.99) * 1000, "poll_errors": pollers.errors})
        print(f"{'':>28}  {len(polls)} polls of /hub/api/queue ({len(polls) / PHASE_SECONDS:.0f}/s): p50 "
              f"{result['poll_p50_ms']:.1f} ms, p99 {result['poll_p99_ms']:.1f} ms, {pollers.errors} errors; "
              f"positions seen 1..{max(pollers.positions, default=0)}", flush=True)
    finally:
        pollers.stop()
    results.append(result)
    ratio = result["p99_ms"] / results[0]["p99_ms"]
    print(f"{'':>28}  /hub/api/ p99 with {WAITERS} polling: {ratio:.2f}x the hub with nobody queued", flush=True)
    return results


def main() -> None:
    config = queue_config(secrets.token_hex(32), "c.ProfileSpawner.queue_admit_interval = 60")
    with hub_on_devcluster("queue", config) as (hub, dc):
        admission = _admissions(hub, dc)
        polling = _pollers(hub)
        save_results("bench_queue", {"admission": admission, "polling": polling})

if __name__ == "__main__":
    main()
