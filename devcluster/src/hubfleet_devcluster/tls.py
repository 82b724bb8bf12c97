"""The API's TLS: a private CA and a server certificate for the API's address, made once per state directory.

kubectl (client-go 1.37) sends no bearer token to an ``http://`` server, so the API serves HTTPS; the kubeconfig
carries the CA (``certificate-authority-data``), so every client verifies the server as it would a real cluster's."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from hubfleet.files import write_private  # the project's one writer of secret files; re-exported for app/demo


def ensure_certificates(pki: Path, host: str) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key) under `pki`, made when missing or not for `host`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, crt, key = pki / "ca.crt", pki / "server.crt", pki / "server.key"
    marker = pki / "host"
    if ca_crt.exists() and crt.exists() and key.exists() and marker.exists() and marker.read_text() == host:
        return ca_crt, crt, key
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devcluster-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devcluster-apiserver")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
              .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
              .sign(ca_key, hashes.SHA256()))
    write_private(key, server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    crt.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    marker.write_text(host)
    return ca_crt, crt, key


def server_context(crt: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(crt, key)
    return ctx
