"""GPU servers judged by GPU use: a real Prometheus (Debian `prometheus`) scrapes a small DCGM-like exporter that the
test runs (prometheus_client), and the culler joins ``DCGM_FI_DEV_GPU_UTIL{namespace, pod}`` to each server through
the pod name in its KubeSpawner state. The hub is the in-process HTTP hub of test_culler_http.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from hubfleet.services.culler.app import CullerApp
from hubfleet.services.culler.hub_api import HubAPI
from tests.integration.culler.test_culler_http import TOKEN, FakeHub, fake_hub, iso  # noqa: F401
from tests.procs import free_port
from tests.prometheus import start_prometheus

TIMEOUT = 6  # the gpu profile's idle timeout, seconds


@pytest.fixture
def exporter():
    registry = CollectorRegistry()
    util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", ["gpu", "namespace", "pod"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, util
    server.shutdown()


@pytest.fixture
def prometheus(tmp_path, exporter):
    url, proc = start_prometheus(tmp_path, f"""\
  - job_name: dcgm
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{exporter[0]}"]}}]
""")
    try:
        yield url, proc
    finally:
        proc.stop()


def gpu_server(pod: str, idle: float) -> dict:
    return {"servers": {"": {"ready": True, "pending": None, "url": f"/user/{pod}/", "started": iso(3600),
                             "last_activity": iso(idle), "user_options": {"profile": "gpu"},
                             "state": {"pod_name": pod, "namespace": "default"}}}}


def query(prom_url: str, promql: str) -> dict:
    """``{pod: value}`` of an instant query."""
    r = requests.get(f"{prom_url}/api/v1/query", params={"query": promql}, timeout=5)
    return {item["metric"].get("pod"): float(item["value"][1]) for item in r.json()["data"]["result"]}


async def until_prometheus(prom_url: str, promql: str, predicate, what: str, prom, timeout: float = 30) -> None:
    """Wait until Prometheus's answer to ``promql`` satisfies ``predicate`` (the data the culler will read, not a
    number of wall-clock seconds); on timeout say what was awaited and what Prometheus last said."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(query, prom_url, promql)
        if predicate(last):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; {promql} last gave {last}; "
                         f"Prometheus log:\n{prom.log_tail(20)}")


async def test_gpu_servers_are_judged_by_gpu_use_not_by_the_browser(fake_hub, prometheus, exporter, tmp_path,
                                                                     caplog):
    caplog.set_level(logging.INFO, logger="hubfleet.culler")
    prom_url, prom = prometheus
    _, util = exporter
    util.labels("0", "default", "jupyter-tab-open").set(0)      # browser tab open (active now), GPU unused
    util.labels("1", "default", "jupyter-training").set(87)     # nobody at the browser, GPU busy training
    util.labels("2", "default", "jupyter-finishing").set(64)    # busy now, idle from the first sweep on
    hub = FakeHub({"tab-open": gpu_server("jupyter-tab-open", idle=1),
                   "training": gpu_server("jupyter-training", idle=3600),
                   "finishing": gpu_server("jupyter-finishing", idle=1),
                   "no-metric": gpu_server("jupyter-no-metric", idle=1)}, page_size=10)
    url = await fake_hub(hub)
    # Prometheus holds a whole window of each series: its first sample is at least TIMEOUT s old
    await until_prometheus(prom_url, f"time() - min_over_time(timestamp(DCGM_FI_DEV_GPU_UTIL)[{TIMEOUT * 3}s:1s])",
                           lambda ages: len(ages) == 3 and min(ages.values()) >= TIMEOUT,
                           f"{TIMEOUT} s of samples of the 3 GPU series", prom, timeout=60)
    policies = tmp_path / "p.yaml"
    policies.write_text(f"profiles:\n  gpu: {{timeout: {TIMEOUT}, gpu_idle_below: 5}}\n")
    app = CullerApp()
    app.initialize([f"--url={url}", f"--policies-file={policies}", f"--prometheus-url={prom_url}"])
    api = HubAPI(url, TOKEN, backoff=0.01, retries=1)
    sweeper = app.make_sweeper(api)

    def browser_active(*users):
        for user in users:
            hub.users[user]["servers"][""]["last_activity"] = iso(0)

    util.labels("2", "default", "jupyter-finishing").set(0)
    browser_active("tab-open", "finishing", "no-metric")
    first = await sweeper.sweep()
    assert hub.deleted == ["tab-open"], first.summary()  # idle by its GPU although its browser is active
    assert "cull tab-open: GPU under 5 % for 00:00:06 >= 00:00:06 (profile gpu)" in caplog.text
    assert "no GPU utilisation for pod default/jupyter-no-metric; judged by browser activity" in caplog.text

    # the finishing job's GPU has now been idle for a whole timeout, in the culler's own query
    await until_prometheus(prom_url, sweeper.gpu.query_for(TIMEOUT), lambda m: m.get("jupyter-finishing", 99) < 5,
                           "the finishing job's GPU to be idle for a whole window", prom)
    browser_active("finishing", "no-metric")
    second = await sweeper.sweep()
    api.close()
    assert sorted(hub.deleted) == ["finishing", "tab-open"], second.summary()
    assert hub.users["training"]["servers"], "a server whose GPU is busy was culled for browser idleness"
    assert hub.users["no-metric"]["servers"]
    assert sweeper.gpu.queries == 2  # one query per window and sweep, not one per server
