"""A real Prometheus (Debian's ``prometheus``) for a test: started on a free port with a scrape config, returned once it
is ready (its port opens before its storage is, and until then every query answers 503)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.procs import Proc, free_port, wait_for

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def start_prometheus(tmp_path: Path, scrape_configs: str) -> tuple[str, Proc]:
    """(base URL, process) of a Prometheus scraping every second with ``scrape_configs`` (YAML list items)."""
    if not shutil.which(PROMETHEUS):
        pytest.fail("Prometheus is not installed: `apt-get install prometheus` (make test installs it)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + scrape_configs)
    proc = Proc("prometheus", [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_port("127.0.0.1", port, timeout=30)
        wait_for("Prometheus to be ready", lambda: _status(f"{url}/-/ready") == 200, timeout=60,
                 seen=lambda: proc.log_tail(10))
    except BaseException:
        proc.stop()
        raise
    return url, proc


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None
