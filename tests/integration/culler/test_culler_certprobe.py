"""The culler service runs the HTTPS certificate probe when its config names hosts: the real process, a TLS server
with a certificate for the host, the probe's gauges on the culler's /metrics."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.integration.culler.test_culler_http import TOKEN, FakeHub, fake_hub  # noqa: F401  (fixture)
from tests.procs import free_port

HOST = "hub.example.org"


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for HOST; yields (port, cert path)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", key, "-out", cert], check=True,
                   capture_output=True, timeout=60)

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert
    server.shutdown()


async def test_the_culler_exports_the_served_certificate(fake_hub, tls_server, tmp_path):  # noqa: F811
    from cryptography import x509

    port, cert = tls_server
    not_after = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()
    url = await fake_hub(FakeHub({}))
    config = tmp_path / "culler_config.py"
    config.write_text(f"c.CertificateProbe.hosts = [{HOST!r}]\nc.CertificateProbe.address = '127.0.0.1'\n"
                      f"c.CertificateProbe.port = {port}\nc.CertificateProbe.ca_file = {str(cert)!r}\n")
    metrics_port = free_port()
    log = tmp_path / "culler.log"
    env = {**os.environ, "JUPYTERHUB_API_URL": url, "JUPYTERHUB_API_TOKEN": TOKEN}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hubfleet.services.culler", "--timeout=60",
                                 f"--config={config}", f"--metrics-port={metrics_port}"], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        try:
            client, text, deadline = AsyncHTTPClient(), "", time.monotonic() + 30
            sample = f'hubfleet_tls_certificate_valid{{host="{HOST}"}}'
            while time.monotonic() < deadline and sample not in text:
                try:
                    text = (await client.fetch(f"http://127.0.0.1:{metrics_port}/metrics")).body.decode()
                except OSError:
                    pass
                await asyncio.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("hubfleet_tls_"))
    assert float(lines[f'hubfleet_tls_certificate_not_after_seconds{{host="{HOST}"}}']) == not_after, log.read_text()
    assert float(lines[f'hubfleet_tls_certificate_valid{{host="{HOST}"}}']) == 1
    assert float(lines[f'hubfleet_tls_certificate_default{{host="{HOST}"}}']) == 0
