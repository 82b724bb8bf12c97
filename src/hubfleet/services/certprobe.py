"""The HTTPS certificate probe: connects to each public host the way a browser does (TLS with SNI), reads the
certificate the proxy serves and exports it with ``prometheus_client`` for the alert rules in
``deploy/prometheus/hubfleet-tls.rules.yaml``.

It runs inside an existing service (the culler, :mod:`hubfleet.services.culler.app`) on that service's metrics
endpoint; it is off until :attr:`CertificateProbe.hosts` names a host. Series are labelled by host only.

What it reports per host (all gauges):

- ``hubfleet_tls_certificate_not_after_seconds`` / ``..._not_before_seconds``: the served certificate's validity
  (Unix time), kept from the last handshake that returned a certificate;
- ``hubfleet_tls_certificate_default``: 1 when Traefik serves only its self-signed default certificate for the
  name (``TRAEFIK DEFAULT CERT``), or refuses the handshake for it (the chart's TLS options are ``sniStrict``:
  without a certificate for the name the handshake fails), i.e. no ACME certificate for the host;
- ``hubfleet_tls_certificate_valid``: 1 when the certificate verifies against the trust store and names the host;
- ``hubfleet_tls_probe_timestamp_seconds``: when the host was last probed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass

from traitlets import Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

log = logging.getLogger("hubfleet.certprobe")

TRAEFIK_DEFAULT_CN = "TRAEFIK DEFAULT CERT"  # the subject of Traefik's self-signed fallback certificate


@dataclass(frozen=True)
class ServedCertificate:
    """What one handshake with SNI ``host`` showed. ``serial`` is None when no certificate was served."""

    host: str
    serial: str | None = None  # hex
    not_before: float | None = None
    not_after: float | None = None
    default: bool = False
    valid: bool = False
    error: str = ""


def _peer_der(host: str, address: str, port: int, context: ssl.SSLContext, timeout: float) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


def describe(host: str, der: bytes, *, valid: bool, error: str = "") -> ServedCertificate:
    """The parts of a DER certificate the metrics need (pure)."""
    from cryptography import x509  # noqa: PLC0415  (only the probe needs it)
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    cert = x509.load_der_x509_certificate(der)
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return ServedCertificate(host=host, serial=f"{cert.serial_number:x}",
                             not_before=cert.not_valid_before_utc.timestamp(),
                             not_after=cert.not_valid_after_utc.timestamp(),
                             default=TRAEFIK_DEFAULT_CN in names, valid=valid, error=error)


def inspect(host: str, *, address: str = "", port: int = 443, cafile: str = "", timeout: float = 10) -> ServedCertificate:
    """Handshake with ``address`` (default: ``host``) on ``port`` sending SNI ``host``; blocking.

    First a verifying handshake (``cafile`` or the system's trust store, host name checked); when verification
    fails, a second one without verification reads what is served, so the metrics still say what it is."""
    address = address or host
    verifying = ssl.create_default_context(cafile=cafile or None)
    try:
        return describe(host, _peer_der(host, address, port, verifying, timeout), valid=True)
    except ssl.SSLCertVerificationError as e:
        error = f"does not verify: {e.verify_message or e}"
    except ssl.SSLError as e:  # sniStrict: no certificate for this name, only the withheld default one
        return ServedCertificate(host=host, default=True, error=f"handshake refused: {e.reason or e}")
    except OSError as e:
        return ServedCertificate(host=host, error=f"cannot connect to {address}:{port}: {e}")
    reading = ssl.create_default_context()
    reading.check_hostname = False
    reading.verify_mode = ssl.CERT_NONE
    try:
        der = _peer_der(host, address, port, reading, timeout)
    except (ssl.SSLError, OSError) as e:
        return ServedCertificate(host=host, error=f"{error}; then: {e}")
    return describe(host, der, valid=False, error=error)


class CertificateProbe(LoggingConfigurable):
    """Probes the hub's public HTTPS hosts and exports their certificates as Prometheus gauges."""

    hosts = List(Unicode(), help="""Host names to probe (the chart's `proxy.https.hosts`); empty: the probe is
        off.""").tag(config=True)
    address = Unicode("", help="""Where to connect instead of each host name, e.g. `proxy-public` (the chart's
        Service in front of Traefik) when the public name does not resolve or hairpin inside the cluster; the TLS
        handshake still sends the host name (SNI) and checks the certificate against it.""").tag(config=True)
    port = Int(443, help="Port to connect to.").tag(config=True)
    interval = Float(300.0, help="Seconds between probes of every host.").tag(config=True)
    timeout = Float(10.0, help="Seconds before a connection or handshake is given up.").tag(config=True)
    ca_file = Unicode("", help="""PEM bundle of the CAs a served certificate must chain to; empty: the system's
        trust store (which holds Let's Encrypt's roots).""").tag(config=True)

    def __init__(self, registry=None, **kwargs):
        super().__init__(**kwargs)
        from prometheus_client import CollectorRegistry, Gauge  # noqa: PLC0415

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.not_after = Gauge("hubfleet_tls_certificate_not_after_seconds", "NotAfter of the certificate served "
                               "for the host (Unix time).", ["host"], registry=r)
        self.not_before = Gauge("hubfleet_tls_certificate_not_before_seconds", "NotBefore of the certificate "
                                "served for the host (Unix time).", ["host"], registry=r)
        self.default = Gauge("hubfleet_tls_certificate_default", "1 when Traefik has no certificate of its own for "
                             "the host (its default certificate, or the handshake refused).", ["host"], registry=r)
        self.valid = Gauge("hubfleet_tls_certificate_valid", "1 when the served certificate verifies and names the "
                           "host.", ["host"], registry=r)
        self.probed = Gauge("hubfleet_tls_probe_timestamp_seconds", "When the host was last probed (Unix time).",
                            ["host"], registry=r)
        self.last: dict[str, ServedCertificate] = {}

    def record(self, served: ServedCertificate) -> None:
        host = served.host
        if served.not_after is not None:
            self.not_after.labels(host).set(served.not_after)
            self.not_before.labels(host).set(served.not_before)
        self.default.labels(host).set(int(served.default))
        self.valid.labels(host).set(int(served.valid))
        self.probed.labels(host).set_to_current_time()
        previous = self.last.get(host)
        if previous and previous.serial and served.serial and previous.serial != served.serial:
            log.info("host:%s certificate renewed: serial %s -> %s", host, previous.serial, served.serial)
        if served.error:
            log.warning("host:%s %s", host, served.error)
        self.last[host] = served

    async def probe(self) -> list[ServedCertificate]:
        """Probe every host once, at the same time (blocking handshakes in threads, off the event loop)."""
        results = await asyncio.gather(*(
            asyncio.to_thread(inspect, host, address=self.address, port=self.port, cafile=self.ca_file,
                              timeout=self.timeout) for host in self.hosts))
        for served in results:
            self.record(served)
        return list(results)

    async def run(self, stopping: asyncio.Event) -> None:
        """Probe every :attr:`interval` seconds until ``stopping`` is set; a failing probe never ends the loop."""
        while not stopping.is_set():
            try:
                await self.probe()
            except Exception:  # noqa: BLE001  (the service outlives any one probe)
                log.exception("certificate probe failed")
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.interval)
            except asyncio.TimeoutError:
                pass


__all__ = ["CertificateProbe", "ServedCertificate", "describe", "inspect"]
