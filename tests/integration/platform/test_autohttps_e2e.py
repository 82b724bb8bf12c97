"""autohttps end to end on one machine, the production chain: client -> real Traefik (the chart's rendered config,
caServer pointed at pebble) -> real configurable-http-proxy -> real JupyterHub with hubfleet's Authenticator and
ProfileSpawner -> a singleuser server on the devcluster. One chain for the whole module.

The client resolves the overlay's host (hub.example.org) to 127.0.0.1, as `curl --resolve` would; everything else
(the HTTP-01 challenge through Traefik's http entrypoint, certificate verification against pebble's root, TLS
versions, headers) is what a browser would meet."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import uuid

import pytest
import requests

from hubfleet.authenticators.local import hash_password, write_users_file
from tests.conftest import new_hub, start_chp, start_devcluster
from tests.integration.platform.acme import served_certificate, start_pebble, start_traefik, wait_for_certificate
from tests.integration.platform.conftest import rendered_container, traefik_files
from tests.procs import ARTIFACTS, free_port

STACK = ("hubfleet-base.yaml", "auth-ldap.yaml", "autohttps-hardened.yaml", "security-hardened.yaml")
HOST = "hub.example.org"  # the overlay's proxy.https.hosts
PASSWORD = "alice-password-1"

HUB_CONFIG = """
c.JupyterHub.authenticator_class = "hubfleet"
c.HubfleetAuthenticator.backends = [{{"kind": "local", "users_file": {users_file!r}}}]
c.JupyterHub.spawner_class = "hubfleet"
# every devcluster hands out pod addresses from 127.0.1.1 up: a port of our own keeps another suite's singleuser
# server (same address, port 8888) on this machine from answering for ours
c.KubeSpawner.port = {pod_port}
"""


class Chain:
    def __init__(self, **parts):
        self.__dict__.update(parts)
        self.https = f"https://{HOST}:{self.traefik.https_port}"
        self.http = f"http://{HOST}:{self.traefik.http_port}"

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment replaces `verify`
        s.verify = str(self.root)  # pebble's root only
        return s


@pytest.fixture(scope="module")
def resolve_host():
    """hub.example.org -> 127.0.0.1 for this process (pebble's mock DNS does the same for pebble)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host == HOST else host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(scope="module")
def chain(rendered, tmp_path_factory, resolve_host):
    tmp = tmp_path_factory.mktemp("autohttps")
    stop = []
    try:
        devcluster = start_devcluster(tmp / "devcluster")
        stop.append(devcluster.proc.stop)
        chp = start_chp(tmp / "chp")
        stop.append(chp.proc.stop)
        users_file = tmp / "users.yaml"
        write_users_file(users_file, {"users": {"alice": {"password_hash": hash_password(PASSWORD, rounds=4)}}})
        hub = new_hub(tmp / "hub", devcluster, chp, HUB_CONFIG.format(users_file=str(users_file),
                                                                                pod_port=free_port()))
        stop.append(hub.stop)
        hub.start()

        result = rendered(STACK)
        static, dynamic = traefik_files(result)
        http_port, https_port = free_port(), free_port()
        pebble = start_pebble(tmp / "pebble", http_port, https_port)
        stop.append(pebble.stop)
        traefik = start_traefik(static, dynamic, tmp / "traefik", backend=f"http://127.0.0.1:{chp.public_port}/",
                                ca_server=pebble.directory, ca_cert=pebble.api_cert, ports=(http_port, https_port),
                                acme_retry=rendered_container(result, "acme-retry", init=True))
        stop.append(traefik.stop)
        root = tmp / "pebble-root.pem"
        root.write_text(pebble.issuing_chain().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
        cert, seconds = wait_for_certificate(traefik, HOST, str(root))
        print(f"\nautohttps: Traefik start -> certificate for {HOST} from pebble: {seconds:.1f} s")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "autohttps.json").write_text(json.dumps({"traefik_start_to_certificate_s": round(seconds, 2),
                                                               "host": HOST, "stack": STACK}))
        yield Chain(devcluster=devcluster, chp=chp, hub=hub, pebble=pebble, traefik=traefik, root=root, cert=cert,
                    seconds=seconds, dynamic=dynamic)
    finally:
        for fn in reversed(stop):
            fn()


def test_http01_solved_through_traefik_and_certificate_issued_for_the_host(chain):
    subject_names = [value for kind, value in chain.cert["subjectAltName"] if kind == "DNS"]
    assert subject_names == [HOST]
    issuer = dict(field[0] for field in chain.cert["issuer"])
    assert issuer["commonName"].startswith("Pebble Intermediate CA"), issuer
    # pebble validated the HTTP-01 challenge by fetching it from Traefik's http entrypoint (its httpPort)
    log = chain.pebble.acme.log_path.read_text()
    challenge = f"Attempting to validate w/ HTTP: http://{HOST}:{chain.traefik.http_port}/.well-known/acme-challenge/"
    assert challenge in log and "set VALID by completed challenge" in log, log[-3000:]
    assert "Issued certificate serial" in log
    assert chain.traefik.error_lines() == [], chain.traefik.log()[-4000:]
    assert chain.seconds < 90


def test_the_hub_login_page_over_https_with_hsts_and_security_headers(chain):
    r = chain.session().get(f"{chain.https}/hub/login", timeout=30)
    assert r.status_code == 200 and 'name="username"' in r.text, r.text[:500]
    assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_http_is_answered_301_to_https(chain):
    r = requests.get(f"{chain.http}/hub/login?next=%2Fhub%2F", allow_redirects=False, timeout=10)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://{HOST}/hub/login?next=%2Fhub%2F"


def handshake(port: int, *, version: ssl.TLSVersion, ciphers: str | None = None, cafile=None) -> tuple[str, str]:
    """(negotiated protocol, cipher) of a handshake offering exactly ``version``; raises ssl.SSLError if refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile)
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    elif version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old protocols; the server must refuse
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            return tls.version(), tls.cipher()[0]


# Go's names (the chart's tls.options.default.cipherSuites) -> OpenSSL's, for the RSA key Traefik asks pebble for
GO_TO_OPENSSL = {
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}


def test_tls_1_0_and_1_1_refused_1_2_with_the_configured_suites_and_1_3_accepted(chain):
    port, root = chain.traefik.https_port, str(chain.root)
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(port, version=old, cafile=root)
        print(f"{old.name}: {refused.value}")
        assert "PROTOCOL_VERSION" in str(refused.value), refused.value  # the server's alert, not a local refusal
    configured = chain.dynamic["tls"]["options"]["default"]["cipherSuites"]
    accepted = {}
    for go_name, openssl_name in GO_TO_OPENSSL.items():
        assert go_name in configured
        accepted[go_name] = handshake(port, version=ssl.TLSVersion.TLSv1_2, ciphers=openssl_name, cafile=root)
    assert all(v == ("TLSv1.2", GO_TO_OPENSSL[k]) for k, v in accepted.items()), accepted
    for not_configured in ("ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA", "AES128-GCM-SHA256"):
        with pytest.raises(ssl.SSLError):  # CBC suites and RSA key exchange: not in the list, refused
            handshake(port, version=ssl.TLSVersion.TLSv1_2, ciphers=not_configured, cafile=root)
    assert handshake(port, version=ssl.TLSVersion.TLSv1_3, cafile=root)[0] == "TLSv1.3"
    # sniStrict: a client that does not name the host gets no certificate
    assert served_certificate("other.example.org", port, root) is None


async def run_in_kernel(ws_url: str, token: str, code: str, cafile: str, timeout: float = 60) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}, ca_certs=cafile,
                          validate_cert=True, connect_timeout=20, request_timeout=timeout)
    ws = await asyncio.wait_for(websocket_connect(request), timeout)
    try:
        msg_id = uuid.uuid4().hex
        await ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex,
                       "username": "alice", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), max(0.1, deadline - time.monotonic()))
            if raw is None:
                break
            msg = json.loads(raw)
            seen.append(msg.get("msg_type"))
            if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == "execute_result":
                return msg["content"]["data"]["text/plain"]
        raise AssertionError(f"no execute_result for {code!r} within {timeout}s; saw {seen}")
    finally:
        ws.close()


def test_login_spawn_and_a_kernel_over_https(chain):
    """Log in and spawn through Traefik, then run 1+1 in a kernel whose websocket goes client -> Traefik (TLS) ->
    CHP -> the singleuser server on the devcluster."""
    s = chain.session()
    s.get(f"{chain.https}/hub/login", timeout=30).raise_for_status()
    r = s.post(f"{chain.https}/hub/login?next=", data={"username": "alice", "password": PASSWORD,
                                                      "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False,
               timeout=30)
    assert r.status_code == 302, r.text[:500]
    assert any(c.secure for c in s.cookies if c.name.startswith("jupyterhub")), "hub cookies are Secure over https"
    r = s.post(f"{chain.https}/hub/spawn/alice", data={"_xsrf": s.cookies.get("_xsrf")}, timeout=60)
    assert r.status_code in (200, 302), r.text[:500]
    chain.hub.wait_ready("alice", timeout=120)

    token = chain.hub.user_token("alice")
    auth = {"Authorization": f"token {token}"}
    r = s.post(f"{chain.https}/user/alice/api/kernels", headers=auth, json={}, timeout=60)
    assert r.status_code == 201, r.text[:500]
    kernel = r.json()["id"]
    ws_url = f"wss://{HOST}:{chain.traefik.https_port}/user/alice/api/kernels/{kernel}/channels"
    assert asyncio.run(run_in_kernel(ws_url, token, "1+1", str(chain.root))) == "2"
    s.delete(f"{chain.https}/user/alice/api/kernels/{kernel}", headers=auth, timeout=30)
