"""hubfleet's LDAP backend vs jupyterhub-ldapauthenticator 2.0.2, through real hubs, against the same real slapd.

For each authenticator and each network condition (slapd direct; every slapd reply delayed 200 ms by an asyncio TCP
proxy), one hub is started (real configurable-http-proxy, no --debug) and 200 logins are run through its login page,
20 at a time, cycling over 20 directory users. Meanwhile another thread polls ``GET /hub/api/`` every 20 ms.

Printed per row: logins/s, median login time, the hub's ``/hub/api/`` p50/p99/max latency during the logins, and
the throughput ratio. Goals: ratio >= 2x, hubfleet's ``/hub/api/`` p99 < 100 ms. A run is capped at
``TIME_CAP`` seconds (the anchor serialises logins: with a 200 ms delay, 200 logins would take ~4 minutes);
the row then says how many of the 200 logins completed. Both authenticators use StartTLS with the self-signed CA,
search for the user with the service account and check membership of ``jupyter-users``. hubfleet runs with its
defaults (8 executor threads, connection reuse); nested groups are off for both (the anchor has none).
Two more rows on the direct slapd put the /hub/api/ figures in context: hubfleet with its logins started at the
anchor's measured rate (equal login load), and JupyterHub's DummyAuthenticator (no directory at all: the hub's own
latency floor at full login rate). Results are also written to test-artifacts/bench_ldap.json.
"""

from __future__ import annotations

import statistics
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench._common import LatencyProbe, pct, save_results
from tests.integration.auth import servers as S

LOGINS = 200
CONCURRENCY = 20
TIME_CAP = {"direct": 60.0, "delayed": 30.0}
PACED_CAP = 20.0
DELAY = 0.2
USERS = [f"bench{i:02d}" for i in range(20)]
BASELINE = "no LDAP (hub floor)"
PACED = "hubfleet @ anchor's rate"
ANCHOR = "ldapauthenticator 2.0.2"
# JupyterHub's DummyAuthenticator: no directory at all. Same load, so its /hub/api/ latency is the hub's own floor
# (login handling: DB writes, cookies, auth_state encryption), which no authenticator can go below.
DUMMY_CONFIG = """
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
"""


def hubfleet_config(url: str, ca: Path) -> str:
    return textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet-ldap"
        c.HubfleetLDAPAuthenticator.server_urls = [{url!r}]
        c.HubfleetLDAPAuthenticator.tls_ca_file = {str(ca)!r}
        c.HubfleetLDAPAuthenticator.user_search_base = {S.PEOPLE!r}
        c.HubfleetLDAPAuthenticator.search_bind_dn = {S.SVC_DN!r}
        c.HubfleetLDAPAuthenticator.search_bind_password = {S.SVC_PW!r}
        c.HubfleetLDAPAuthenticator.group_search_base = {S.GROUPS!r}
        c.HubfleetLDAPAuthenticator.allowed_groups = {{"jupyter-users"}}
        """)


def ldapauthenticator_config(port: int, ca: Path) -> str:
    return textwrap.dedent(f"""
        import ssl
        c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
        c.LDAPAuthenticator.server_address = "localhost"
        c.LDAPAuthenticator.server_port = {port}
        c.LDAPAuthenticator.tls_strategy = "before_bind"
        c.LDAPAuthenticator.tls_kwargs = {{"ca_certs_file": {str(ca)!r}, "validate": ssl.CERT_REQUIRED}}
        c.LDAPAuthenticator.lookup_dn = True
        c.LDAPAuthenticator.lookup_dn_search_user = {S.SVC_DN!r}
        c.LDAPAuthenticator.lookup_dn_search_password = {S.SVC_PW!r}
        c.LDAPAuthenticator.user_search_base = {S.PEOPLE!r}
        c.LDAPAuthenticator.user_attribute = "uid"
        c.LDAPAuthenticator.lookup_dn_user_dn_attribute = "uid"
        c.LDAPAuthenticator.bind_dn_template = ["uid={{username}},{S.PEOPLE}"]
        c.LDAPAuthenticator.allowed_groups = ["cn=jupyter-users,{S.GROUPS}"]
        """)


def run_logins(hub: S.Hub, *, cap: float, rate: float | None = None) -> dict:
    """200 form logins, 20 at a time (or started at ``rate`` per second), stopping new ones after ``cap`` s."""
    # warm-up: one login per authenticator (imports, first connections), not counted
    S.form_login(hub.url, USERS[0], f"{USERS[0]}-pw", timeout=120)
    deadline = time.monotonic() + cap
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(i: int):
        if time.monotonic() > deadline:
            return
        name = USERS[i % len(USERS)]
        try:
            r = S.form_login(hub.url, name, f"{name}-pw", timeout=120)
            ok = r.ok
        except requests.RequestException as e:
            ok, r = False, None
            failures.append(f"{name}: {e}")
        with lock:
            if ok:
                times.append(r.seconds)
            elif r is not None:
                failures.append(f"{name}: {r.status} {r.error}")

    probe = LatencyProbe(f"{hub.url}/hub/api/").start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        if rate is None:
            list(pool.map(one, range(LOGINS)))
        else:  # open loop: one login every 1/rate seconds
            futures = []
            for i in range(LOGINS):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() > deadline:
                    break
                futures.append(pool.submit(one, i))
            for f in futures:
                f.result()
    wall = time.monotonic() - t0
    api_lat = probe.stop()
    return {
        "completed": len(times),
        "failed": len(failures),
        "failures": failures[:5],
        "wall_s": wall,
        "logins_per_s": len(times) / wall if wall else 0.0,
        "login_median_s": statistics.median(times) if times else float("nan"),
        "api_p50_ms": pct(api_lat, 0.50) * 1000,
        "api_p99_ms": pct(api_lat, 0.99) * 1000,
        "api_max_ms": max(api_lat) * 1000 if api_lat else float("nan"),
        "api_samples": len(api_lat),
    }


def format_table(results: dict) -> str:
    """The side-by-side table; ``results`` maps (scenario, row label) to a :func:`run_logins` result."""
    header = (f"{'slapd':<9} {'authenticator':<25} {'logins':>10} {'logins/s':>9} {'median':>8} "
              f"{'api p50':>8} {'api p99':>9} {'api max':>9} {'ratio':>7}")
    lines = [header, "-" * len(header)]
    for scenario in dict.fromkeys(s for s, _ in results):
        anchor = results.get((scenario, ANCHOR), {}).get("logins_per_s") or float("nan")
        for label in ("hubfleet", ANCHOR, PACED, BASELINE):
            if (scenario, label) not in results:
                continue
            r = results[(scenario, label)]
            ratio = f"{r['logins_per_s'] / anchor:>6.1f}x" if label in ("hubfleet", ANCHOR) else f"{'-':>7}"
            if label == PACED:
                done = f"{r['completed']} in {PACED_CAP:.0f}s"
            else:
                done = f"{r['completed']}/{LOGINS}" + ("*" if r["completed"] < LOGINS else "")
            lines.append(
                f"{scenario:<9} {label:<25} {done:>10} {r['logins_per_s']:>9.1f} {r['login_median_s'] * 1000:>6.0f}ms "
                f"{r['api_p50_ms']:>6.1f}ms {r['api_p99_ms']:>7.1f}ms {r['api_max_ms']:>7.0f}ms {ratio}"
            )
    lines += [
        "",
        f"* stopped at the time cap ({TIME_CAP['direct']:.0f} s direct, {TIME_CAP['delayed']:.0f} s delayed).",
        f"ratio = logins/s relative to {ANCHOR} on the same slapd. Goals: ratio >= 2x; hubfleet /hub/api/ p99 < 100 ms.",
        f"'{PACED}': hubfleet logins started at {ANCHOR}'s measured rate for {PACED_CAP:.0f} s (equal login load).",
        f"'{BASELINE}': JupyterHub's DummyAuthenticator, no directory: the hub's own /hub/api/ latency at full",
        "login rate (20 concurrent form logins on this 2-core machine), which no authenticator can go below.",
    ]
    return "\n".join(lines)


def main() -> None:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-ldap-") as tmpdir:
        tmp = Path(tmpdir)
        slapd = S.start_slapd(tmp / "slapd")
        proxy = S.TcpProxy("127.0.0.1", slapd.port, delay=DELAY)
        try:
            for scenario, port in [("direct", slapd.port), (f"+{int(DELAY * 1000)} ms", proxy.port)]:
                url = f"ldap://localhost:{port}"
                rows = [
                    ("hubfleet", hubfleet_config(url, slapd.ca_file)),
                    ("ldapauthenticator 2.0.2", ldapauthenticator_config(port, slapd.ca_file)),
                ]
                if scenario == "direct":
                    rows.append((BASELINE, DUMMY_CONFIG))
                for label, cfg in rows:
                    hub = S.start_hub(tmp / f"hub-{scenario}-{label.split()[0]}".replace(" ", ""), cfg, debug=False)
                    try:
                        cap = TIME_CAP["direct" if scenario == "direct" else "delayed"]
                        results[(scenario, label)] = run_logins(hub, cap=cap)
                        if label == "hubfleet" and scenario == "direct":
                            pending_paced = hub  # measured after the anchor, at the anchor's rate
                            hub = None
                    finally:
                        if hub is not None:
                            hub.stop()
                    if label == "ldapauthenticator 2.0.2" and scenario == "direct":
                        anchor_rate = results[(scenario, label)]["logins_per_s"]
                        try:
                            results[(scenario, PACED)] = run_logins(pending_paced, cap=PACED_CAP, rate=anchor_rate)
                        finally:
                            pending_paced.stop()
                        r = results[(scenario, PACED)]
                        print(f"  {scenario:>8} {PACED:<24} {r['completed']:>3}/{LOGINS} logins in {r['wall_s']:.1f}s",
                              flush=True)
                    r = results[(scenario, label)]
                    print(f"  {scenario:>8} {label:<24} {r['completed']:>3}/{LOGINS} logins in {r['wall_s']:.1f}s",
                          flush=True)
        finally:
            proxy.stop()
            slapd.stop()

    print()
    print(format_table(results))
    save_results("bench_ldap", {f"{s} | {a}": r for (s, a), r in results.items()})


if __name__ == "__main__":
    main()
