"""The hub's ``/hub/api/`` latency with the admin page following 20 logs, against without.

One devcluster, proxy and hub with ProfileSpawner and the admin page as a hub-managed service (the fleet of
tests/e2e/conftest.py: alice's pod has a container that writes a line every 0.2 s and bursts of long lines). Phases,
each ``PHASE_SECONDS`` long while a probe GETs ``/hub/api/`` through the proxy every 20 ms: idle, 20 follows open
(an admin's browser would hold them: ``logs?...&follow=1`` event streams through the proxy to the page, which reads
``pods/log?follow=true``), idle again. Prints p50/p99 per phase; results in test-artifacts/bench_adminpage.json.
"""

from __future__ import annotations

import threading
import time

import requests

from bench._common import LatencyProbe, hub_on_devcluster, pct, save_results
from tests.e2e.conftest import CONFIG, DEMO_FILE, NOISY, PAGE
from tests.procs import free_port

FOLLOWS = 20
PHASE_SECONDS = 30


def _follow(session: requests.Session, url: str, stop: threading.Event, lines: list[int], i: int) -> None:
    with session.get(url, stream=True, timeout=60) as r:
        for raw in r.iter_lines():
            if raw.startswith(b"data:"):
                lines[i] += 1
            if stop.is_set():
                return


def _phase(hub, name: str) -> dict:
    probe = LatencyProbe(hub.url + "/hub/api/", interval=0.02).start()
    time.sleep(PHASE_SECONDS)
    lat = probe.stop()
    out = {"phase": name, "requests": len(lat), "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
           "max_ms": max(lat) * 1000}
    print(f"{name:>14}: {out['requests']} requests, p50 {out['p50_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms, "
          f"max {out['max_ms']:.1f} ms", flush=True)
    return out


def main() -> None:
    with hub_on_devcluster("adminpage", CONFIG.format(demo=DEMO_FILE, noisy=NOISY, port=free_port())) as (hub, _dc):
        hub.ensure_user("alice")
        status, body = hub.api("POST", "/users/alice/server", json={"user_options": {"profile": "small"}})
        assert status in (201, 202), body
        hub.wait_ready("alice", timeout=120)
        admin = hub.login("admin")
        assert admin.get(hub.url + PAGE, timeout=30).status_code == 200
        results = [_phase(hub, "idle")]
        stop, lines = threading.Event(), [0] * FOLLOWS
        url = hub.url + PAGE + "logs?user=alice&server=&container=noisy&follow=1"
        threads = [threading.Thread(target=_follow, args=(admin, url, stop, lines, i), daemon=True)
                   for i in range(FOLLOWS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while min(lines) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert min(lines) > 0, f"not every follow streams: {lines}"
        before = sum(lines)
        results.append(_phase(hub, f"{FOLLOWS} follows"))
        results[-1]["lines_streamed"] = sum(lines) - before
        print(f"{'':>14}  {sum(lines) - before} log lines streamed to the {FOLLOWS} followers meanwhile")
        stop.set()
        results.append(_phase(hub, "idle again"))
        save_results("bench_adminpage", results)

if __name__ == "__main__":
    main()
