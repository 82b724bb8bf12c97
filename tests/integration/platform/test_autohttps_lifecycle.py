"""HTTPS that stays up: the autohttps pod as the chart renders it with the overlay (Traefik, the acme-retry sidecar,
z2jh's own secret-sync script), run for real against pebble (Let's Encrypt's test CA):

- renewal by Traefik alone (short-lived certificates, ``certificatesDuration: 1``) under a client loop that sees no
  failed request, then the ACME server gone: Traefik keeps the certificate it has, the probe reports it;
- a failed first certificate (the name points elsewhere) served without a restart once the name is fixed;
- the certificate kept across a restart by secret-sync (``watch-save`` beside Traefik, ``load`` as the init
  container) against the devcluster's API: the same certificate, no new order;
- two hosts, each with its own certificate, chosen by SNI; TLS-ALPN-01 with port 80 closed.

One mock DNS, one pair of ports: each "pod" listens on its own loopback address (127.0.0.1x) and the DNS points its
host names there, so pebble validates every name on the same http/https ports. Every pod starts with the module
(Traefik's renewal check comes once a minute; secret-sync saves every 30 s) and each test waits for its events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from hubfleet.services.certprobe import CertificateProbe, inspect
from tests.conftest import start_devcluster
from tests.integration.platform.acme import (MockDNS, Pebble, Traefik, start_acme_retry, start_dns, start_pebble,
                                             start_traefik, wait_for_certificate)
from tests.integration.platform.conftest import render_only, rendered_container, traefik_files
from tests.procs import ARTIFACTS, REPO, VENV_BIN, Proc, free_port, wait_for
from tests.unit.test_chart_values import Z2JH

pytestmark = pytest.mark.stack_independent

STACK = ("hubfleet-base.yaml", "auth-ldap.yaml", "autohttps-hardened.yaml")
NOWHERE = "127.0.0.3"  # where the late host points before it is fixed: nothing listens there
# pebble's certificates for the renewal: 15 minutes, under the 20 minutes Traefik renews within when
# certificatesDuration is 1 hour, so its first per-minute check after the order renews (getCertificateRenewDurations)
SHORT_VALIDITY = 900


def secret_sync_script() -> Path:
    """z2jh 4.4.0's own acme-secret-sync.py (the k8s-secret-sync image's program), run as the real component."""
    script = Z2JH / "images" / "secret-sync" / "acme-secret-sync.py"
    if not script.is_file():
        pytest.fail(f"z2jh's secret-sync script is not at {script} (../shared/z2jh-4.4.0/images/secret-sync)")
    return script


def ports_free_on(addresses) -> tuple[int, int]:
    """An (http, https) pair of ports free on every address."""
    for _ in range(50):
        pair = free_port(), free_port()
        try:
            for address in addresses:
                for port in pair:
                    with socket.socket() as s:
                        s.bind((address, port))
        except OSError:
            continue
        return pair
    raise AssertionError(f"no pair of ports free on all of {addresses}")


@dataclass
class Pod:
    """The autohttps pod's processes: Traefik with its acme-retry sidecar, optionally secret-sync."""

    traefik: Traefik
    rendered: object
    tmp: Path
    sync: Proc | None = None

    def stop(self) -> None:
        if self.sync is not None:
            self.sync.stop()
        self.traefik.stop()


class Lab:
    def __init__(self, tmp: Path, dns: MockDNS, ports: tuple[int, int], backend: str):
        self.tmp, self.dns, self.ports, self.backend = tmp, dns, ports, backend
        self.stops = []

    def pebble(self, name: str, **kw) -> Pebble:
        pebble = start_pebble(self.tmp / name, *self.ports, dns=self.dns, name=name, **kw)
        self.stops.append(pebble.stop)
        pebble.chain = self.tmp / name / "chain.pem"
        pebble.chain.write_text(pebble.issuing_chain())
        return pebble

    def pod(self, name: str, site: dict, pebble: Pebble, address: str, *, retry_env: dict | None = None,
            acme_dir: Path | None = None, ports: tuple[int, int] | None = None, point_dns: bool = True,
            debug: bool = False) -> Pod:
        """Render the overlay stack with ``site``, start its acme-retry sidecar (the rendered command, local
        paths) and its Traefik (the rendered config) on ``address``; the DNS points the site's hosts there unless
        ``point_dns`` is false. ``debug``: Traefik logs at DEBUG (what its ACME resolver decided)."""
        result = render_only(STACK, extra=(site,))
        static, dynamic = traefik_files(result)
        tmp = acme_dir or self.tmp / name
        tmp.mkdir(parents=True, exist_ok=True)
        for host in site["proxy"]["https"]["hosts"] if point_dns else ():
            self.dns.set_a(host, address)
        if debug:
            static["log"]["level"] = "DEBUG"
        traefik = start_traefik(static, dynamic, tmp, backend=self.backend, ca_server=pebble.directory,
                                ca_cert=pebble.api_cert, name=f"{name}-traefik", ports=ports or self.ports,
                                address=address, acme_retry=rendered_container(result, "acme-retry", init=True),
                                retry_env=retry_env)
        self.stops.append(traefik.stop)
        return Pod(traefik, result, tmp)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("autohttps-lifecycle")
    dns = start_dns(tmp / "dns")
    root = tmp / "backend"
    root.mkdir()
    (root / "index.html").write_text("backend ok\n")
    port = free_port()
    backend = Proc("backend", [VENV_BIN / "python", "-m", "http.server", "--bind", "127.0.0.1", str(port)], root,
                   cwd=root)
    backend.wait_for_port("127.0.0.1", port, timeout=20)
    lab = Lab(tmp, dns, ports_free_on([f"127.0.0.{i}" for i in range(11, 17)]), f"http://127.0.0.1:{port}/")
    try:
        yield lab
    finally:
        for stop in reversed(lab.stops):
            stop()
        backend.stop()
        dns.stop()


def site(*hosts: str, static: dict | None = None) -> dict:
    values = {"proxy": {"https": {"hosts": list(hosts)}}}
    if static:
        values["proxy"]["traefik"] = {"extraStaticConfig": static}
    return values


# --------------------------------------------------------------------------------------------- the pods (started together)

RENEW_HOST, RENEW_ADDRESS = "renew.example.org", "127.0.0.11"


class ClientLoop(threading.Thread):
    """HTTPS requests one after the other, each on a new connection (so each sees the certificate served then),
    verifying against pebble's chain, until stopped; records (ok, serial or error)."""

    def __init__(self, host: str, address: str, port: int, cafile: Path):
        super().__init__(daemon=True)
        self.host, self.address, self.port = host, address, port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.results: list[tuple[bool, str]] = []
        self.stopping = threading.Event()

    def request(self) -> tuple[bool, str]:
        from cryptography import x509

        try:
            with socket.create_connection((self.address, self.port), timeout=10) as raw:
                with self.context.wrap_socket(raw, server_hostname=self.host) as tls:
                    serial = f"{x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number:x}"
                    tls.sendall(f"GET / HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
                    status = tls.recv(64).split(b"\r\n")[0]
            return (status.startswith(b"HTTP/1.1 200"), serial if status.startswith(b"HTTP/1.1 200") else
                    status.decode(errors="replace"))
        except (OSError, ssl.SSLError) as e:
            return False, repr(e)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.results.append(self.request())
            self.stopping.wait(0.2)

    def serials(self) -> list[str]:
        seen = []
        for ok, serial in self.results:
            if ok and (not seen or seen[-1] != serial):
                seen.append(serial)
        return seen


LATE_HOST, LATE_ADDRESS = "late.example.org", "127.0.0.12"
KEEP_HOST, KEEP_ADDRESS = "keep.example.org", "127.0.0.13"
TWO_HOSTS, TWO_ADDRESS = ("one.example.org", "two.example.org"), "127.0.0.14"
ALPN_HOST, ALPN_ADDRESS = "alpn.example.org", "127.0.0.15"
STUCK_HOST, STUCK_ADDRESS = "stuck.example.org", "127.0.0.16"
ONE_HOUR = {"certificatesResolvers": {"default": {"acme": {"certificatesDuration": 1}}}}


@pytest.fixture(scope="module")
def pods(lab):
    """Every scenario's pod, started at once so their waits overlap:

    - renew: pebble issuing 15-minute certificates (each renewal a fresh challenge), certificatesDuration 1, and a
      client loop from the first certificate on;
    - stuck: the same, but its pebble stops after the first certificate (an ACME server that refuses orders);
    - late: its name points nowhere at first (retry delays shortened from 120 s / 3600 s to 3 s / 6 s);
    - keep: secret-sync's watch-save beside Traefik, against the devcluster;
    - two: two hosts; alpn: the TLS-ALPN-01 site file, nothing on the http port pebble would validate HTTP-01 on.
    """
    started = time.monotonic()
    short = {"validity": SHORT_VALIDITY, "env": {"PEBBLE_AUTHZREUSE": "0"}}
    renew_pebble, stuck_pebble = lab.pebble("pebble-renew", **short), lab.pebble("pebble-stuck", **short)
    shared, keep_pebble = lab.pebble("pebble-shared"), lab.pebble("pebble-keep")
    renew = lab.pod("renew", site(RENEW_HOST, static=ONE_HOUR), renew_pebble, RENEW_ADDRESS)
    stuck = lab.pod("stuck", site(STUCK_HOST, static=ONE_HOUR), stuck_pebble, STUCK_ADDRESS)
    lab.dns.set_a(LATE_HOST, NOWHERE)
    late = lab.pod("late", site(LATE_HOST), shared, LATE_ADDRESS, point_dns=False,
                   retry_env={"RETRY_FIRST_SECONDS": "3", "RETRY_MAX_SECONDS": "6"})
    two = lab.pod("two", site(*TWO_HOSTS), shared, TWO_ADDRESS)
    alpn_site = yaml.safe_load((REPO / "chart-values" / "examples" / "tls-alpn-01.yaml").read_text())
    alpn_site["proxy"]["https"] = {"hosts": [ALPN_HOST]}
    alpn = lab.pod("alpn", alpn_site, shared, ALPN_ADDRESS, ports=(free_port(), lab.ports[1]), debug=True)

    devcluster = start_devcluster(lab.tmp / "devcluster")
    lab.stops.append(devcluster.proc.stop)
    keep = lab.pod("keep", site(KEEP_HOST), keep_pebble, KEEP_ADDRESS, acme_dir=lab.tmp / "keep-1")
    sync = rendered_container(keep.rendered, "secret-sync")
    assert sync["args"][0] == "watch-save" and sync["args"][-2:] == ["acme.json", "/etc/acme/acme.json"]
    keep.sync = Proc("secret-sync", [VENV_BIN / "python", secret_sync_script(), "--namespace", "default",
                                     *[str(keep.tmp / "acme.json") if a == "/etc/acme/acme.json" else a
                                       for a in sync["args"]]], keep.tmp,
                     env={"KUBECONFIG": str(devcluster.kubeconfig)})
    lab.stops.append(keep.sync.stop)

    wait_for_certificate(stuck.traefik, STUCK_HOST, str(stuck_pebble.chain))
    stuck_pebble.acme.stop()
    wait_for_certificate(renew.traefik, RENEW_HOST, str(renew_pebble.chain))
    first = inspect(RENEW_HOST, address=RENEW_ADDRESS, port=lab.ports[1], cafile=str(renew_pebble.chain))
    loop = ClientLoop(RENEW_HOST, RENEW_ADDRESS, lab.ports[1], renew_pebble.chain)
    loop.start()
    yield {"renew": renew, "renew_pebble": renew_pebble, "first": first, "loop": loop, "stuck": stuck,
           "stuck_pebble": stuck_pebble, "late": late, "shared": shared, "two": two, "alpn": alpn, "keep": keep,
           "keep_pebble": keep_pebble, "devcluster": devcluster, "started": started}
    loop.stopping.set()


# --------------------------------------------------------------------------------------------- a failed first order


def test_a_failed_first_certificate_is_served_without_a_restart_once_the_name_is_fixed(lab, pods):
    """The name points at an address where nothing answers (a load balancer not ready yet): pebble's HTTP-01
    validation fails and Traefik serves no certificate for the host. Then the DNS is fixed and nothing else is done:
    the acme-retry sidecar makes the same Traefik process order again."""
    pod, pebble = pods["late"], pods["shared"]
    def failed_orders():
        return [e for e in pod.traefik.error_lines() if "Unable to obtain ACME certificate" in e]

    wait_for("Traefik's failed first order", failed_orders, timeout=60, seen=pod.traefik.log)
    before = inspect(LATE_HOST, address=LATE_ADDRESS, port=lab.ports[1], cafile=str(pebble.chain))
    assert before.default and not before.valid, before  # sniStrict: no certificate for the name at all
    wait_for("a second order by the same Traefik (a retry), failing too", lambda: len(failed_orders()) >= 2,
             timeout=30, seen=lambda: pod.traefik.log()[-2000:])
    pid = pod.traefik.proc.popen.pid
    lab.dns.set_a(LATE_HOST, LATE_ADDRESS)
    fixed = time.monotonic()
    wait_for("a valid certificate after the fix",
             lambda: inspect(LATE_HOST, address=LATE_ADDRESS, port=lab.ports[1], cafile=str(pebble.chain)).valid,
             timeout=60, interval=0.5, seen=lambda: pod.traefik.log()[-3000:])
    seconds = time.monotonic() - fixed
    print(f"\nfixed challenge path -> valid certificate: {seconds:.1f} s (retry delays 3-6 s, Traefik polls the "
          f"sidecar every 10 s); sidecar: {pod.traefik.retry.log_tail(3)}")
    assert pod.traefik.proc.popen.poll() is None and pod.traefik.proc.popen.pid == pid  # never restarted
    assert seconds < 6 + 10 + 20  # one retry delay + one poll + the order
    record("late", {"fix_to_valid_certificate_s": round(seconds, 1)})


def test_the_acme_retry_sidecar_says_when_it_cannot_tell_and_keeps_checking(tmp_path):
    """A dynamic.yaml the sidecar cannot read (here a domain without `main`) is reported in its log, every check,
    and the checks go on: once the file is good, a host without a certificate makes Traefik order again."""
    container = rendered_container(render_only(STACK, extra=(site(LATE_HOST),)), "acme-retry", init=True)
    dynamic = tmp_path / "dynamic.yaml"
    dynamic.write_text(yaml.safe_dump({"http": {"routers": {"default": {"tls": {
        "certResolver": "default", "domains": [{"sans": [LATE_HOST]}]}}}}}))
    static = {"providers": {"http": {}}}
    retry = start_acme_retry(container, static, tmp_path, name="acme-retry",
                             env={"RETRY_FIRST_SECONDS": "0.05", "RETRY_MAX_SECONDS": "0.1"})
    endpoint = static["providers"]["http"]["endpoint"]

    def retries() -> int:
        served = requests.get(endpoint, timeout=5).json()
        return int(served["http"]["middlewares"]["acme-retry"]["headers"]["customRequestHeaders"]["X-Acme-Retry"])

    try:
        wait_for("two reports that the sidecar cannot tell which hosts lack a certificate",
                 lambda: retry.log_tail(40).count("cannot tell which hosts lack a certificate (KeyError") >= 2,
                 timeout=20, seen=lambda: retry.log_tail(20))
        assert str(dynamic) in retry.log_tail(1) and retries() == 0
        dynamic.write_text(yaml.safe_dump({"http": {"routers": {"default": {"tls": {
            "certResolver": "default", "domains": [{"main": LATE_HOST}]}}}}}))
        wait_for("a retry once dynamic.yaml names the host (no acme.json: no certificate)", lambda: retries() >= 1,
                 timeout=20, seen=lambda: retry.log_tail(20))
        assert retry.popen.poll() is None
    finally:
        retry.stop()


# --------------------------------------------------------------------------------------------- two hosts, TLS-ALPN-01


def test_two_hosts_each_get_their_certificate_served_by_sni(lab, pods):
    pod, pebble = pods["two"], pods["shared"]
    assert [d["main"] for d in pod.traefik.dynamic["http"]["routers"]["default"]["tls"]["domains"]] \
        == list(TWO_HOSTS)
    served = {}
    for host in TWO_HOSTS:
        wait_for_certificate(pod.traefik, host, str(pebble.chain))
        served[host] = inspect(host, address=TWO_ADDRESS, port=lab.ports[1], cafile=str(pebble.chain))
        assert served[host].valid and not served[host].default  # verified with the host name checked
    assert served[TWO_HOSTS[0]].serial != served[TWO_HOSTS[1]].serial
    print("\ntwo hosts: " + ", ".join(f"{h} serial {s.serial}" for h, s in served.items()))
    record("two_hosts", {h: s.serial for h, s in served.items()})


def test_tls_alpn_01_with_port_80_closed(lab, pods):
    """The documented site file for TLS-ALPN-01 (chart-values/examples/tls-alpn-01.yaml); nothing answers on the
    http port pebble validates HTTP-01 on, so only TLS-ALPN-01 on the https port can succeed."""
    pod, pebble = pods["alpn"], pods["shared"]
    assert pod.traefik.dynamic["http"]["routers"]["default"]["tls"]["certResolver"] == "tlsalpn"
    wait_for_certificate(pod.traefik, ALPN_HOST, str(pebble.chain))
    served = inspect(ALPN_HOST, address=ALPN_ADDRESS, port=lab.ports[1], cafile=str(pebble.chain))
    assert served.valid
    log = pod.traefik.log()
    solver = [line for line in log.splitlines() if "tls-alpn-01" in line and ALPN_HOST in line]
    assert solver and "http-01" not in log, log[-3000:]
    assert f"http://{ALPN_HOST}" not in pebble.log()
    assert pod.traefik.error_lines() == [], log[-3000:]
    print(f"\nTLS-ALPN-01: {ALPN_HOST} serial {served.serial}; Traefik: {solver[0][:200]}")
    record("tls_alpn", {"serial": served.serial})


# --------------------------------------------------------------------------------------------- renewal


def test_renewed_by_traefik_alone_with_no_failed_request(lab, pods):
    loop, pod, pebble, first = pods["loop"], pods["renew"], pods["renew_pebble"], pods["first"]
    assert first.valid and first.not_after - first.not_before <= SHORT_VALIDITY
    wait_for("Traefik to renew on its own (a new serial served)", lambda: len(loop.serials()) >= 2, timeout=150,
             interval=0.5, seen=lambda: pod.traefik.log()[-3000:])
    count = len(loop.results)
    wait_for("requests after the renewal", lambda: len(loop.results) >= count + 5, timeout=30)
    renewed = inspect(RENEW_HOST, address=RENEW_ADDRESS, port=lab.ports[1], cafile=str(pebble.chain))
    loop.stopping.set()
    loop.join(timeout=30)
    failures = [r for r in loop.results if not r[0]]
    seconds = time.monotonic() - pods["started"]
    print(f"\nrenewal: serial {first.serial} (NotAfter {time.ctime(first.not_after)}) -> {renewed.serial} "
          f"(NotAfter {time.ctime(renewed.not_after)}); {len(loop.results)} requests, {len(failures)} failed; "
          f"{seconds:.0f} s from the pods' start")
    assert failures == [], failures[:5]
    assert loop.serials()[:2] == [first.serial, renewed.serial]
    assert renewed.valid and renewed.not_after > first.not_after
    # by Traefik alone: the same process, a second order at pebble with its own challenge (no authz reuse)
    assert pod.traefik.proc.popen.poll() is None
    log = pebble.log()
    issued = [int(serial, 16) for serial in re.findall(r"Issued certificate serial ([0-9a-f]+) ", log)]
    # compared as numbers: pebble writes whole bytes (0a17...), a served serial's hex has no leading zero (a17...)
    assert int(renewed.serial, 16) in issued and log.count("set VALID by completed challenge") >= 2, issued
    record("renewal", {"old_serial": first.serial, "old_not_after": first.not_after, "new_serial": renewed.serial,
                       "new_not_after": renewed.not_after, "requests": len(loop.results),
                       "failures": len(failures)})


def test_a_refused_renewal_keeps_the_certificate_and_the_probe_reports_it(lab, pods):
    """The stuck pod's pebble stopped after the first certificate (as when the CA refuses orders: rate limit):
    Traefik's renewal check fails, it goes on serving the certificate it has, and the probe exports that
    certificate's NotAfter (the alert rules' unit tests take it from there)."""
    pod, pebble = pods["stuck"], pods["stuck_pebble"]
    errors = wait_for("Traefik's failed renewal with the CA gone",
                      lambda: [e for e in pod.traefik.error_lines() if "Error renewing ACME certificate" in e],
                      timeout=120, interval=0.5, seen=lambda: pod.traefik.log()[-3000:])
    probe = CertificateProbe(hosts=[STUCK_HOST], address=STUCK_ADDRESS, port=lab.ports[1], ca_file=str(pebble.chain))
    [kept] = asyncio.run(probe.probe())
    assert kept.valid and not kept.default
    assert kept.not_after - time.time() < SHORT_VALIDITY  # the first certificate, not a new one
    gauge = probe.registry.get_sample_value
    assert gauge("hubfleet_tls_certificate_not_after_seconds", {"host": STUCK_HOST}) == kept.not_after
    assert gauge("hubfleet_tls_certificate_not_before_seconds", {"host": STUCK_HOST}) == kept.not_before
    assert (gauge("hubfleet_tls_certificate_valid", {"host": STUCK_HOST}),
            gauge("hubfleet_tls_certificate_default", {"host": STUCK_HOST})) == (1, 0)
    print(f"\nCA gone: {errors[0][:160]}...; still served: serial {kept.serial}, NotAfter {time.ctime(kept.not_after)}")


# --------------------------------------------------------------------------------------------- restart with secret-sync
# (last: secret-sync saves every 30 s, as in the chart; the other scenarios' waits overlap that)


def test_the_certificate_survives_a_restart_through_secret_sync_without_a_new_order(lab, pods):
    """z2jh's secret-sync script as the chart runs it, against the devcluster's API: `watch-save` beside Traefik
    saves acme.json into the Secret; a new pod (fresh emptyDir) runs `load` as its init container and its Traefik
    serves the same certificate; pebble sees no second order."""
    pod, pebble, devcluster = pods["keep"], pods["keep_pebble"], pods["devcluster"]
    secret_name = rendered_container(pod.rendered, "secret-sync")["args"][-3]
    wait_for_certificate(pod.traefik, KEEP_HOST, str(pebble.chain))
    served = inspect(KEEP_HOST, address=KEEP_ADDRESS, port=lab.ports[1], cafile=str(pebble.chain))
    assert served.valid

    def saved():
        r = devcluster.request("GET", f"/api/v1/namespaces/default/secrets/{secret_name}")
        if r.status_code != 200:
            return None
        data = json.loads(base64.b64decode(r.json().get("data", {}).get("acme.json", "") or b"e30="))
        return data if any(s.get("Certificates") for s in data.values()) else None

    saved_acme = wait_for(f"secret-sync to save acme.json into Secret {secret_name}", saved, timeout=45,
                          interval=0.5, seen=lambda: pod.sync.log_tail(10))
    assert saved_acme == json.loads((pod.tmp / "acme.json").read_text())
    pod.stop()
    orders = pebble.orders()
    assert orders == 1, pebble.log()[-2000:]

    second_dir = lab.tmp / "keep-2"  # a new pod: a fresh emptyDir
    second_dir.mkdir()
    load = rendered_container(pod.rendered, "load-acme", init=True)
    assert load["args"] == ["load", secret_name, "acme.json", "/etc/acme/acme.json"]
    loader = Proc("load-acme", [VENV_BIN / "python", secret_sync_script(), "--namespace", "default",
                                *load["args"][:3], second_dir / "acme.json"], second_dir,
                  env={"KUBECONFIG": str(devcluster.kubeconfig)})
    assert loader.popen.wait(timeout=60) == 0, loader.log_tail(20)
    restarted = lab.pod("keep-2", site(KEEP_HOST), pebble, KEEP_ADDRESS, acme_dir=second_dir, debug=True)
    again = wait_for("the restarted Traefik to serve a valid certificate",
                     lambda: (s := inspect(KEEP_HOST, address=KEEP_ADDRESS, port=lab.ports[1],
                                           cafile=str(pebble.chain))).valid and s,
                     timeout=30, interval=0.3, seen=restarted.traefik.log)
    assert (again.serial, again.not_after) == (served.serial, served.not_after)
    wait_for("Traefik's ACME resolver to decide about the host", lambda: "No ACME certificate generation required"
             in restarted.traefik.log() or pebble.orders() > orders, timeout=30, seen=restarted.traefik.log)
    assert pebble.orders() == orders, pebble.log()[-2000:]
    assert restarted.traefik.error_lines() == [], restarted.traefik.log()[-3000:]
    print(f"\nrestart with the saved acme.json: serial {served.serial} before and after, pebble orders "
          f"{orders} -> {pebble.orders()}")
    record("restart", {"serial": served.serial, "orders_before": orders, "orders_after": pebble.orders()})


def record(name: str, data: dict) -> None:
    path = ARTIFACTS / "autohttps-lifecycle.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    found[name] = data
    path.write_text(json.dumps(found, indent=1))
