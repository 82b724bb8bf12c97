"""deploy/grafana/hubfleet-dashboard.json against a real Prometheus (Debian ``prometheus``) scraping a real hub
with hubfleet (the admin page's fleet: two servers spawned, one spawn refused here), a real scheduler extender
(sent filter and prioritize requests here) and the culler's metrics registry: every panel's query must parse and
return at least one series."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests
from prometheus_client import start_http_server

from hubfleet.services.culler.metrics import Metrics as CullerMetrics
from tests.e2e.conftest import _jh_major
from tests.integration.scheduler_plugin.conftest import pod_body, start_extender
from tests.procs import free_port
from tests.prometheus import start_prometheus

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hubfleet-dashboard.json"
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def panel_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def test_every_panel_query_parses_and_returns_series(fleet, tmp_path):
    hub, dc = fleet
    # a refused spawn: carol may not use the demo's "medium" profile
    options = {"profile": "medium"}
    status, body = hub.api("POST", "/users/carol/server",
                           json={"user_options": options} if _jh_major(hub) >= 6 else options)
    assert status in (400, 403), (status, body)

    # the culler's registry with what one sweep records when it warns and culls
    culler = CullerMetrics()
    culler.warnings.labels("gpu", "gpu_idle").inc()
    culler.culls.labels("small", "idle").inc()
    culler.sweep_seconds.observe(0.05)
    culler_port = free_port()
    culler_server, _ = start_http_server(culler_port, addr="127.0.0.1", registry=culler.registry)

    ext_port = free_port()
    extender = start_extender(tmp_path / "ext", dc.kubeconfig, ext_port)
    hub_target = hub.url.split("://", 1)[1]
    prom_url, prom = start_prometheus(tmp_path, f"""\
  - job_name: jupyterhub
    metrics_path: /hub/metrics
    authorization: {{credentials: "{hub.admin_token}"}}
    static_configs: [{{targets: ["{hub_target}"]}}]
  - job_name: culler
    static_configs: [{{targets: ["127.0.0.1:{culler_port}"]}}]
  - job_name: extender
    static_configs: [{{targets: ["127.0.0.1:{ext_port}"]}}]
""")
    try:
        url = f"{prom_url}/api/v1/query"
        queries = panel_queries()
        found: dict[str, int] = {}
        deadline = time.monotonic() + 90
        pending = dict(queries)
        while pending and time.monotonic() < deadline:
            for verb in ("filter", "prioritize"):  # extender traffic while Prometheus scrapes it
                r = requests.post(f"http://127.0.0.1:{ext_port}/{verb}", timeout=10,
                                  data=json.dumps({"Pod": pod_body("p"), "NodeNames": ["cpu-1", "gpu-1"]}))
                assert r.status_code == 200, r.text
            for name, expr in list(pending.items()):
                answer = requests.get(url, params={"query": expr}, timeout=10).json()
                if answer.get("status") != "success":
                    raise AssertionError(f"panel {name}: {expr!r} does not parse: {answer.get('error')}")
                if answer["data"]["result"]:
                    del pending[name]
                    found[name] = len(answer["data"]["result"])
            time.sleep(1)  # one scrape interval between rounds
        assert not pending, ("panels whose query returned no series within 90 s:\n"
                             + "\n".join(f"  {n}: {e}" for n, e in pending.items())
                             + f"\nPrometheus targets: {requests.get(url.replace('query', 'targets'), timeout=5).text[:2000]}")
        print(f"grafana: {len(queries)} panel queries checked, series found: "
              + "; ".join(f"{n}: {k}" for n, k in found.items()))
    finally:
        prom.stop()
        extender.stop()
        culler_server.shutdown()

