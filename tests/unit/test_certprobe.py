"""The certificate probe's pure parts: what a served certificate says (serial, validity, Traefik's default
certificate or not) and the gauges it becomes."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import generate_latest

from hubfleet.services.certprobe import CertificateProbe, ServedCertificate, describe

START = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def certificate(cn: str, days: int, serial: int = 0xABC) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(START).not_valid_after(START + dt.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_an_acme_certificate_is_described():
    served = describe("hub.example.org", certificate("hub.example.org", 90), valid=True)
    assert (served.serial, served.default, served.valid) == ("abc", False, True)
    assert served.not_before == START.timestamp()
    assert served.not_after == (START + dt.timedelta(days=90)).timestamp()


def test_traefiks_default_certificate_is_recognised():
    served = describe("hub.example.org", certificate("TRAEFIK DEFAULT CERT", 365), valid=False)
    assert served.default and not served.valid


def gauge(probe: CertificateProbe, name: str, host: str = "hub.example.org") -> float | None:
    value = probe.registry.get_sample_value(name, {"host": host})
    return value


def test_gauges_follow_the_served_certificate_and_keep_the_last_validity_when_none_is_served():
    probe = CertificateProbe(hosts=["hub.example.org"])
    probe.record(describe("hub.example.org", certificate("hub.example.org", 90), valid=True))
    not_after = (START + dt.timedelta(days=90)).timestamp()
    assert gauge(probe, "hubfleet_tls_certificate_not_after_seconds") == not_after
    assert gauge(probe, "hubfleet_tls_certificate_not_before_seconds") == START.timestamp()
    assert (gauge(probe, "hubfleet_tls_certificate_valid"), gauge(probe, "hubfleet_tls_certificate_default")) == (1, 0)
    # the handshake is refused (sniStrict, no certificate for the name): default 1, valid 0, NotAfter kept
    probe.record(ServedCertificate("hub.example.org", default=True, error="handshake refused"))
    assert (gauge(probe, "hubfleet_tls_certificate_valid"), gauge(probe, "hubfleet_tls_certificate_default")) == (0, 1)
    assert gauge(probe, "hubfleet_tls_certificate_not_after_seconds") == not_after
    assert "hubfleet_tls_probe_timestamp_seconds" in generate_latest(probe.registry).decode()


def test_the_probe_is_off_without_hosts():
    assert CertificateProbe().hosts == []
