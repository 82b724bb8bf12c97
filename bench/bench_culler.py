"""hubfleet's culler vs jupyterhub-idle-culler 2.0.0: one sweep each against the same real hub.

At the anchor's scale: one JupyterHub (real configurable-http-proxy, sqlite) with 10,000 users (``allowed_users``,
created at start-up) and 2,000 ready no-op servers (bench/culler_noop_spawner.py: no pods; ``stop`` optionally
waits, standing in for KubeSpawner waiting for a pod to go; the servers' URL is a small HTTP server that answers
``/api/status`` with one kernel and ``/api/kernels`` with an idle one). For each row, 1,000 of the servers are
back-dated 1 h idle (inside the hub: tests/integration/culler/backdate.py) and one culler process is started with
``--timeout=600 --concurrency=10`` and the hub's admin token:

- anchor: ``python -m jupyterhub_idle_culler --timeout=600 --cull-every=3600 --concurrency=10`` (it has no
  run-once mode: it is killed once its first sweep has culled all 1,000);
- hubfleet: ``python -m hubfleet.services.culler --once --timeout=600 --concurrency=10`` (the stops in flight adapt
  to the hub's answer time, ``--hub-latency-target``, at most 10);
- hubfleet with busy-kernel checks: the same with ``spare_busy_kernels`` for every server (``--server-url`` = the
  proxy): each server it would cull is asked ``/api/status`` and ``/api/kernels`` through the proxy first.

Sweep wall time runs from the process launch (both pay the interpreter start) until the hub lists exactly the 1,000
active servers as ready. The harness adds as little load as it can, the same for both: the no-op spawner reports
the end of each stop with one UDP datagram, and ``GET /users?state=ready`` (a count over 10,000 users, ~14 ms of
the hub's loop each) is polled every 50 ms only once all 1,000 stops have ended (polling it all along took a third
of the hub's loop). Meanwhile ``GET /hub/api/`` is polled every 20 ms for the hub's latency, and for 20 s before
the first row with no culler running (the machine's floor: the hub's sqlite commits wait for the shared disk).
Between rows the culled servers are started again. Rows: stops that return at once, and stops that take 100 ms. Results also go to test-artifacts/bench_culler.json. Not a test: it takes minutes.

``BENCH_CULLER_DB=postgres``: the hub's database on a real PostgreSQL server (tests/pg.py, on this machine, over
TCP) instead of sqlite (results in bench_culler-postgres.json). Each row also gives the hub process's CPU time per
stop (``hub cpu/stop``, from /proc: the hub's work on its event loop for one stop, not the time it waits for the
database, which the p99 shows).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from bench._common import LatencyProbe, pct, save_results
from tests.conftest import BASE_HUB_CONFIG, HubHandle, start_chp
from tests.integration.culler.backdate import hub_config as backdate_config
from tests.procs import REPO, Proc, free_port

# the anchor's scale; BENCH_CULLER_SCALE=0.1 gives a quick smoke run of the bench itself
_SCALE = float(os.environ.get("BENCH_CULLER_SCALE", "1"))
N_USERS = int(10000 * _SCALE)
N_SERVERS = int(2000 * _SCALE)
N_IDLE = int(1000 * _SCALE)
CONCURRENCY = 10
# BENCH_CULLER_DELAYS=0.1 runs the 100 ms rows only (each row culls 1,000 servers and starts them again: minutes)
STOP_DELAYS = [float(d) for d in os.environ.get("BENCH_CULLER_DELAYS", "0,0.1").split(",")]
ANCHOR = "idle-culler 2.0.0"
OURS = "hubfleet culler"
KERNELS = "hubfleet + kernels"
SWEEP_CAP = 400.0
WITH_ANCHOR = os.environ.get("BENCH_CULLER_ANCHOR", "1") != "0"  # 0: only hubfleet's rows (compare saved results)
EXTRA_TARGETS = [float(t) for t in os.environ.get("BENCH_CULLER_TARGETS", "").split(",") if t.strip()]
DB = os.environ.get("BENCH_CULLER_DB", "sqlite")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Dummy(BaseHTTPRequestHandler):
    """Every no-op server: one kernel, idle (the busy-kernel check's worst case: both requests are needed)."""

    def do_GET(self):
        if self.path.endswith("/api/status"):
            body = b'{"kernels": 1, "connections": 0, "last_activity": "2026-01-01T00:00:00Z"}'
        elif self.path.endswith("/api/kernels"):
            body = b'[{"id": "k0", "name": "python3", "execution_state": "idle"}]'
        else:
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    count = 0

    def log_message(self, *args):
        _Dummy.count += 1


class StopCounter:
    """Counts the UDP datagrams bench/culler_noop_spawner.py sends at the end of each stop (no load on the hub)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.count = 0
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._closed:
            try:
                self.sock.recv(256)
            except (TimeoutError, OSError):
                continue
            with self._cond:
                self.count += 1
                self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            self.count = 0

    def wait(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout=timeout)

    def close(self) -> None:
        self._closed = True


class Bench:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.stops = StopCounter()
        self.control = tmp / "stop-delay"
        self.control.write_text("0")
        self.dummy = ThreadingHTTPServer(("127.0.0.1", 0), _Dummy)
        threading.Thread(target=self.dummy.serve_forever, daemon=True).start()
        self.chp = start_chp(tmp / "chp")
        state = tmp / "hub"
        state.mkdir()
        hub_port = free_port()
        admin_token = secrets.token_hex(16)
        self.pg = None
        db_config = ""
        if DB == "postgres":
            from tests.pg import start_postgres  # noqa: PLC0415

            self.pg = start_postgres()
            db_config = f"c.JupyterHub.db_url = {self.pg.create_database('bench_culler')!r}\n"
        config = BASE_HUB_CONFIG.format(
            public_port=self.chp.public_port, hub_port=hub_port, state=state, chp_api=self.chp.api_url,
            chp_token=self.chp.token, password="x", admin_token=admin_token, image="none",
        ) + backdate_config(str(REPO)) + f"""
sys.path.insert(0, {str(REPO)!r})
c.JupyterHub.spawner_class = "bench.culler_noop_spawner.NoopSpawner"
c.JupyterHub.last_activity_interval = 0
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.log_level = "WARN"
c.Spawner.start_timeout = 60
c.Authenticator.allowed_users = {{f"u{{i:05d}}" for i in range({N_USERS})}}  # created at start-up, in one commit
""" + db_config
        env = {"BENCH_CULLER_DUMMY_URL": f"http://127.0.0.1:{self.dummy.server_address[1]}",
               "BENCH_CULLER_CONTROL": str(self.control),
               "BENCH_CULLER_NOTIFY": self.stops.address, "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
        self.hub = HubHandle("hub", state, config, env, self.chp, admin_token, "x", hub_port).start(timeout=600)
        self.api_url = f"http://127.0.0.1:{hub_port}/hub/api"
        self.users = [f"u{i:05d}" for i in range(N_USERS)]
        self.with_server = self.users[:N_SERVERS]
        self.idle = self.with_server[:N_IDLE]

    def api(self, method, path, **kw):
        status, body = self.hub.api(method, path, timeout=120, **kw)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {body}")
        return body

    def setup(self) -> None:
        n = self.count_users("")
        assert n >= N_USERS, f"the hub has {n} users, expected {N_USERS}"
        self.start_servers(self.with_server)

    def start_servers(self, users: list[str]) -> None:
        t0 = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda u: self.api("POST", f"/users/{u}/server"), users))
        self.wait_ready_count(N_SERVERS, timeout=600)
        print(f"  {len(users)} servers started in {time.monotonic() - t0:.1f}s", flush=True)

    def ready_count(self) -> int:
        return self.count_users("ready")

    def count_users(self, state: str) -> int:
        r = requests.get(f"{self.api_url}/users?limit=1" + (f"&state={state}" if state else ""), timeout=30,
                         headers={"Authorization": f"token {self.hub.admin_token}",
                                  "Accept": "application/jupyterhub-pagination+json"})
        r.raise_for_status()
        return r.json()["_pagination"]["total"]

    def wait_ready_count(self, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_count() == n:
                return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError(f"{n} ready servers not reached in {timeout}s (have {self.ready_count()})")

    def sweep(self, label: str, argv: list[str], delay: float, restart: bool = True) -> dict:
        self.control.write_text(str(delay))
        self.stops.reset()
        self.api("POST", "/test/backdate", json={"users": self.idle, "seconds": 3600})
        # the others active now: rows run minutes apart, and a server started at set-up would pass the 600 s timeout
        self.api("POST", "/test/backdate", json={"users": self.with_server[N_IDLE:], "seconds": 0})
        load = os.getloadavg()[0]
        probe = LatencyProbe(f"{self.api_url}/", timeout=30).start()
        t0 = time.monotonic()
        cpu0 = cpu_seconds(self.hub.proc.popen.pid)
        proc = Proc(label.replace(" ", "-").replace("+", ""), argv, self.tmp / "logs",
                    env={"JUPYTERHUB_API_URL": self.api_url, "JUPYTERHUB_API_TOKEN": self.hub.admin_token})
        try:
            # the spawner reports each stop over UDP: the hub is asked for its count only once all have ended, so
            # the harness adds no API load during the sweep (polling GET /users?state=ready every 50 ms did)
            if not self.stops.wait(N_IDLE, timeout=SWEEP_CAP):
                raise RuntimeError(f"{label}: {self.stops.count} of {N_IDLE} stops ended in {SWEEP_CAP:.0f}s "
                                   f"(culler log: {proc.log_tail(3).strip()[:300]})")
            t_end = self.wait_ready_count(N_SERVERS - N_IDLE, timeout=max(10.0, SWEEP_CAP - (time.monotonic() - t0)))
        finally:
            lat = probe.stop()
            proc.stop(timeout=2)
        hub_cpu = cpu_seconds(self.hub.proc.popen.pid) - cpu0
        wall = t_end - t0
        culled = N_SERVERS - self.ready_count()
        print(f"  {label:<18} stop {delay * 1000:>3.0f} ms: {culled} culled in {wall:.2f}s "
              f"(machine load before: {load:.1f}; culler log: {proc.log_tail(1).strip()[:110]})", flush=True)
        server_requests = self.dummy_requests()
        if restart:
            self.start_servers(self.idle)
        return {"culled": culled, "wall_s": wall, "culls_per_s": culled / wall, "api_p50_ms": pct(lat, .5) * 1e3,
                "api_p99_ms": pct(lat, .99) * 1e3, "api_max_ms": max(lat) * 1e3, "api_samples": len(lat),
                "load_before": load, "server_requests": server_requests, "hub_cpu_per_stop_ms": hub_cpu / culled * 1e3}

    def idle_latency(self, seconds: float = 20.0) -> dict:
        """The hub's ``GET /hub/api/`` answer times with no culler running: the machine's floor for the rows."""
        load = os.getloadavg()[0]
        probe = LatencyProbe(f"{self.api_url}/", timeout=30).start()
        time.sleep(seconds)
        lat = probe.stop()
        return {"seconds": seconds, "api_p50_ms": pct(lat, .5) * 1e3, "api_p99_ms": pct(lat, .99) * 1e3,
                "api_max_ms": max(lat) * 1e3, "api_samples": len(lat), "load_before": load}

    def dummy_requests(self) -> int:
        n, _Dummy.count = _Dummy.count, 0
        return n

    def close(self) -> None:
        self.hub.stop()
        self.chp.proc.stop()
        self.dummy.shutdown()
        self.stops.close()
        if self.pg is not None:
            self.pg.stop()


def format_table(results: dict) -> str:
    header = (f"{'server stop':<12} {'culler':<18} {'culls':>6} {'sweep':>8} {'culls/s':>8} {'api p50':>8} "
              f"{'api p99':>8} {'api max':>8} {'speed-up':>9} {'hub cpu/stop':>12}")
    lines = [header, "-" * len(header)]
    for (delay, label), r in results.items():
        anchor = results.get((delay, ANCHOR))
        ratio = anchor["wall_s"] / r["wall_s"] if anchor else float("nan")
        lines.append(f"{f'{delay * 1000:.0f} ms':<12} {label:<18} {r['culled']:>6} {r['wall_s']:>7.2f}s "
                     f"{r['culls_per_s']:>8.1f} {r['api_p50_ms']:>6.1f}ms {r['api_p99_ms']:>6.1f}ms "
                     f"{r['api_max_ms']:>6.0f}ms {ratio:>8.1f}x {r.get('hub_cpu_per_stop_ms', float('nan')):>10.1f}ms")
    last = STOP_DELAYS[-1]
    if (last, KERNELS) in results:
        cost = results[(last, KERNELS)]["wall_s"] / results[(last, OURS)]["wall_s"]
        lines.append(f"busy-kernel checks: sweep {cost:.2f}x the sweep without them "
                     f"({results[(last, KERNELS)]['server_requests']} requests to the servers)")
    lines += ["",
              f"hub database: {DB}; {N_USERS} users, {N_SERVERS} ready servers, {N_IDLE} back-dated 1 h idle; "
              f"--timeout=600 --concurrency={CONCURRENCY} for both; one sweep each, from process launch until the hub lists",
              f"{N_SERVERS - N_IDLE} ready servers. speed-up = anchor sweep time / this sweep time. 'server stop': how long "
              "the spawner's stop() takes (0: no-op; 100 ms: a stand-in for a pod deletion)."]
    return "\n".join(lines)


def main() -> None:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-culler-") as tmpdir:
        bench = Bench(Path(tmpdir))
        try:
            bench.setup()
            idle = bench.idle_latency()
            common = ["--timeout=600", f"--concurrency={CONCURRENCY}"]
            policies = Path(tmpdir) / "kernels.yaml"
            policies.write_text("default: {spare_busy_kernels: true}\n")
            ours = [sys.executable, "-m", "hubfleet.services.culler", *common, "--once"]
            for delay in STOP_DELAYS:
                if WITH_ANCHOR:
                    results[(delay, ANCHOR)] = bench.sweep(
                        ANCHOR, [sys.executable, "-m", "jupyterhub_idle_culler", *common, "--cull-every=3600"], delay)
                bench.dummy_requests()
                results[(delay, OURS)] = bench.sweep(OURS, ours, delay)

            results[(STOP_DELAYS[-1], KERNELS)] = bench.sweep(
                KERNELS, [*ours, f"--policies-file={policies}", f"--server-url={bench.chp.public_url}"],
                STOP_DELAYS[-1], restart=bool(EXTRA_TARGETS))
            for i, target in enumerate(EXTRA_TARGETS):  # the same culler, another --hub-latency-target (0: fixed)
                label = f"hubfleet {target * 1000:.0f}ms" if target else "hubfleet fixed"
                results[(STOP_DELAYS[-1], label)] = bench.sweep(
                    label, [*ours, f"--hub-latency-target={target}"], STOP_DELAYS[-1],
                    restart=i < len(EXTRA_TARGETS) - 1)
        finally:
            bench.close()
    print()
    print(format_table(results))
    print(f"hub with no culler running, {idle['seconds']:.0f} s (load {idle['load_before']:.1f} before): /hub/api/ p50 "
          f"{idle['api_p50_ms']:.1f} ms, p99 {idle['api_p99_ms']:.1f} ms, max {idle['api_max_ms']:.0f} ms")
    save_results("bench_culler" if DB == "sqlite" else f"bench_culler-{DB}", {"hub idle": idle, "db": DB,
                                  **{f"stop {d * 1000:.0f} ms | {label}": r for (d, label), r in results.items()}})


if __name__ == "__main__":
    main()
