"""ProfileSpawner vs stock KubeSpawner on one devcluster, in one run.

- single-spawn latency: two real hubs (one per spawner class, each behind its own proxy) on the same devcluster,
  spawns alternating between them; median of the ``POST /hub/api/users/<name>/server`` → ready times. Goal: ratio
  <= 1.05.
- 100 concurrent spawns: wall time from the first POST until all 100 servers are ready, per hub (run one hub at a
  time, 4 runs each in a balanced order; best and median). Goal: ProfileSpawner <= stock.
- profile resolution: ``visible_profiles`` + ``validate_choice`` for a user in 50 groups with 100 profiles. Goal:
  < 1 ms.

Servers are no-op HTTP servers (``python3 -m http.server`` on the pod IP; the devcluster maps ``python:*`` images to
the local python), so the numbers measure the spawn path, not jupyter-server start-up. ProfileSpawner runs with a
profile list, access rules and a quota on the profile used, so its validation and quota accounting are in the path.
Results are printed and written to test-artifacts/bench_spawner.json.
"""

from __future__ import annotations

import random
import secrets
import statistics
import tempfile
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._common import save_results
from hubfleet.spawners.profiles import parse_profiles, validate_choice, visible_profiles
from tests.conftest import BASE_HUB_CONFIG, HubHandle, start_chp, start_devcluster
from tests.procs import free_port

IMAGE = "python:3.11-slim"
NOOP_CMD = ["python3", "-m", "http.server", "8888", "--bind", "0.0.0.0"]
SINGLE_ROUNDS = 30
CONCURRENT = 100

COMMON = f"""
c.KubeSpawner.image = {IMAGE!r}
c.KubeSpawner.cmd = {NOOP_CMD!r}
c.KubeSpawner.http_timeout = 60
c.KubeSpawner.start_timeout = 120
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.last_activity_interval = 3600
"""

PROFILE_CONFIG = """
c.JupyterHub.spawner_class = "hubfleet"
c.ProfileSpawner.profiles = {profiles!r}
"""

BENCH_PROFILES = {
    "profiles": [
        {"slug": "bench", "display_name": "Bench", "default": True, "image": IMAGE,
         "cpu": {"guarantee": 0.1}, "memory": {"guarantee": "128M"}},
        {"slug": "restricted", "image": IMAGE, "access": {"groups": ["nobody"]}},
        {"slug": "gpu", "image": IMAGE, "gpu": 1, "quota": 2},
    ],
    "quotas": [{"profile": "bench", "max_servers": 1000}],
}


def _start_hub(name: str, devcluster, chp, extra: str, state_root: Path) -> HubHandle:
    state = state_root / name
    state.mkdir(parents=True)
    hub_port, token = free_port(), secrets.token_hex(16)
    config = BASE_HUB_CONFIG.format(
        public_port=chp.public_port, hub_port=hub_port, state=state, chp_api=chp.api_url, chp_token=chp.token,
        password="bench", admin_token=token, image=IMAGE,
    ) + COMMON + extra
    env = {"KUBECONFIG": str(devcluster.kubeconfig), "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
    return HubHandle(name, state, config, env, chp, token, "bench", hub_port).start()


def _wait(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"bench: timed out after {timeout}s waiting for {what}")


def _ready(hub: HubHandle, user: str) -> bool:
    _, body = hub.api("GET", f"/users/{user}")
    server = (body.get("servers") or {}).get("") if isinstance(body, dict) else None
    return bool(server and server.get("ready"))


def _spawn_latency(hub: HubHandle, user: str) -> float:
    t0 = time.perf_counter()
    status, body = hub.api("POST", f"/users/{user}/server", timeout=120)
    if status not in (201, 202):
        raise RuntimeError(f"bench: spawn of {user} on {hub.name} answered {status}: {body}\n{hub.log_tail(20)}")
    if status == 202:
        _wait(lambda: _ready(hub, user), f"{user} ready on {hub.name}", 120)
    return time.perf_counter() - t0


def _ready_count(hub: HubHandle) -> int:
    _, body = hub.api("GET", "/users", params={"state": "ready", "limit": 1000})
    return len(body) if isinstance(body, list) else 0


def _concurrent_wall_time(hub: HubHandle, users: list[str], devcluster) -> float:
    with ThreadPoolExecutor(len(users)) as pool:
        t0 = time.perf_counter()
        results = list(pool.map(lambda u: hub.api("POST", f"/users/{u}/server", timeout=300), users))
        bad = [(u, r) for u, r in zip(users, results) if r[0] not in (201, 202)]
        if bad:
            raise RuntimeError(f"bench: {len(bad)} spawns failed on {hub.name}, e.g. {bad[0]}\n{hub.log_tail(20)}")
        _wait(lambda: _ready_count(hub) >= len(users), f"{len(users)} servers ready on {hub.name}", 300)
        wall = time.perf_counter() - t0
        list(pool.map(lambda u: hub.api("DELETE", f"/users/{u}/server", timeout=300), users))
    _wait(lambda: _ready_count(hub) == 0 and not devcluster.pods(selector="component=singleuser-server"),
          f"servers of {hub.name} to stop", 300)
    return wall


def bench_resolution() -> dict:
    rng = random.Random(4)
    all_groups = [f"group-{i:03d}" for i in range(200)]
    user_groups = frozenset(rng.sample(all_groups, 50))
    profiles = parse_profiles([
        {"slug": f"p{i:03d}", "image": IMAGE, "cpu": {"limit": 1},
         **({"access": {"groups": rng.sample(all_groups, 3)}} if i % 4 else {})}
        for i in range(100)
    ])
    visible = visible_profiles(profiles, "alice", user_groups, False)
    n = 2000
    per_visible = min(timeit.repeat(lambda: visible_profiles(profiles, "alice", user_groups, False), number=n,
                                    repeat=5)) / n
    wanted = {"profile": visible[-1].slug}
    per_validate = min(timeit.repeat(lambda: validate_choice(profiles, wanted, "alice", user_groups, False),
                                     number=n, repeat=5)) / n
    return {"profiles": len(profiles), "groups": len(user_groups), "visible": len(visible),
            "visible_profiles_ms": per_visible * 1e3, "validate_choice_ms": per_validate * 1e3}


def bench_catalog() -> dict:
    """The profiles file as the form sees it: unchanged (a stat in a worker thread, the parsed catalog reused) vs
    changed (read and parsed in a worker thread); the event loop never reads the file."""
    import asyncio
    import os
    import types

    import yaml

    from hubfleet.spawners.catalog import CatalogSource

    tmp = Path(tempfile.mkdtemp(prefix="bench-catalog-")) / "profiles.yaml"
    tmp.write_text(yaml.safe_dump({"profiles": [{"slug": f"p{i:03d}", "image": IMAGE, "cpu": {"limit": 1},
                                                 "access": {"groups": [f"g{i}"]}} for i in range(100)]}))
    spawner = types.SimpleNamespace(profiles_file=str(tmp), profile_list=[], profiles=[], quotas=[],
                                    group_volumes={}, max_servers_per_user=None)
    source = CatalogSource()

    async def run(n: int, touch: bool) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            if touch:
                os.utime(tmp, ns=(i + 1, i + 1))
            await source.get(spawner)
        return (time.perf_counter() - t0) / n

    unchanged = asyncio.run(run(200, False))
    changed = asyncio.run(run(20, True))
    return {"profiles": 100, "unchanged_ms": unchanged * 1e3, "changed_ms": changed * 1e3}


def main() -> None:
    results: dict = {"resolution": bench_resolution(), "catalog": bench_catalog()}
    r = results["resolution"]
    print(f"profile resolution ({r['profiles']} profiles, user in {r['groups']} groups, {r['visible']} visible): "
          f"visible_profiles {r['visible_profiles_ms']:.4f} ms, validate_choice {r['validate_choice_ms']:.4f} ms "
          f"(goal < 1 ms)", flush=True)
    c = results["catalog"]
    print(f"profiles file ({c['profiles']} profiles) per form render: unchanged {c['unchanged_ms']:.3f} ms (stat off "
          f"the loop, cached catalog), changed {c['changed_ms']:.1f} ms (read + parse off the loop)", flush=True)

    root = Path(tempfile.mkdtemp(prefix="bench-spawner-"))
    devcluster = start_devcluster(root / "devcluster")
    chps, hubs = [], {}
    try:
        chps = [start_chp(root / "chp-stock"), start_chp(root / "chp-profile")]
        hubs["stock"] = _start_hub("stock", devcluster, chps[0], "", root)
        hubs["profile"] = _start_hub("profile", devcluster, chps[1], PROFILE_CONFIG.format(profiles=BENCH_PROFILES),
                                     root)
        for kind, hub in hubs.items():
            users = [f"{kind}-s{i}" for i in range(SINGLE_ROUNDS + 1)] + [f"{kind}-c{i:03d}" for i in range(CONCURRENT)]
            status, body = hub.api("POST", "/users", json={"usernames": users}, timeout=120)
            assert status == 201, body

        # single-spawn latency, alternating; round 0 of each warms up its hub and is not counted
        latency: dict[str, list[float]] = {"stock": [], "profile": []}
        for i in range(SINGLE_ROUNDS + 1):
            order = ("stock", "profile") if i % 2 == 0 else ("profile", "stock")
            for kind in order:
                t = _spawn_latency(hubs[kind], f"{kind}-s{i}")
                if i:
                    latency[kind].append(t)
        for kind, hub in hubs.items():
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: hub.api("DELETE", f"/users/{kind}-s{i}/server"), range(SINGLE_ROUNDS + 1)))
        _wait(lambda: not devcluster.pods(selector="component=singleuser-server"), "single-spawn pods to go", 120)
        med = {k: statistics.median(v) for k, v in latency.items()}
        results["single_spawn_s"] = {"stock": latency["stock"], "profile": latency["profile"], "median": med,
                                     "ratio": med["profile"] / med["stock"]}
        print(f"single-spawn latency (median of {SINGLE_ROUNDS}): stock {med['stock'] * 1e3:.0f} ms, "
              f"ProfileSpawner {med['profile'] * 1e3:.0f} ms, ratio {med['profile'] / med['stock']:.3f} "
              f"(goal <= 1.05)", flush=True)

        # 100 concurrent spawns, one hub at a time, in a balanced order (each kind gets positions summing to 18)
        walls: dict[str, list[float]] = {"stock": [], "profile": []}
        order = ("stock", "profile", "profile", "stock", "profile", "stock", "stock", "profile")
        for run, kind in enumerate(order):
            users = [f"{kind}-c{i:03d}" for i in range(CONCURRENT)]
            walls[kind].append(_concurrent_wall_time(hubs[kind], users, devcluster))
            print(f"  {CONCURRENT} concurrent spawns, run {run + 1}: {kind} {walls[kind][-1]:.2f} s", flush=True)
        best = {k: min(v) for k, v in walls.items()}
        med = {k: statistics.median(v) for k, v in walls.items()}
        results["concurrent_100_s"] = {**walls, "best": best, "median": med,
                                       "ratio_best": best["profile"] / best["stock"],
                                       "ratio_median": med["profile"] / med["stock"]}
        runs = len(order) // 2
        print(f"{CONCURRENT} concurrent spawns, wall time over {runs} runs each: "
              f"best stock {best['stock']:.2f} s / ProfileSpawner {best['profile']:.2f} s "
              f"(ratio {best['profile'] / best['stock']:.3f}); median stock {med['stock']:.2f} s / "
              f"ProfileSpawner {med['profile']:.2f} s (ratio {med['profile'] / med['stock']:.3f}) (goal <= 1.0)",
              flush=True)
    finally:
        for hub in hubs.values():
            hub.stop()
        for chp in chps:
            chp.proc.stop()
        devcluster.proc.stop()
    save_results("bench_spawner", results)


if __name__ == "__main__":
    main()
