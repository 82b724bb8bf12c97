"""deploy/prometheus/: the HTTPS certificate alert rules pass `promtool check rules`, their unit tests pass
`promtool test rules` (Debian's `prometheus` ships promtool; `make test` installs it), they can fail, and they use
only series the certificate probe exports."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from hubfleet.services.certprobe import CertificateProbe
from tests.procs import REPO

pytestmark = pytest.mark.stack_independent

RULES_DIR = REPO / "deploy" / "prometheus"
RULES = RULES_DIR / "hubfleet-tls.rules.yaml"
TESTS = sorted(RULES_DIR.glob("*.test.yaml"))


def promtool(*args, cwd=RULES_DIR) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if not binary:
        pytest.fail("promtool is missing: `make install` apt-installs `prometheus`, which ships it")
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules():
    proc = promtool("check", "rules", RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def test_promtool_test_rules():
    assert [t.name for t in TESTS] == ["hubfleet-tls-for.test.yaml", "hubfleet-tls.test.yaml"]
    proc = promtool("test", "rules", *TESTS)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(TESTS)


def test_the_unit_tests_fail_when_a_threshold_is_wrong(tmp_path):
    """Renewal not seen at half the lifetime (too early) makes the test at 59 days, 31 days left, fail."""
    for f in [RULES, *TESTS]:
        shutil.copy(f, tmp_path / f.name)
    rules = tmp_path / RULES.name
    rules.write_text(rules.read_text().replace("* 11 / 36", "/ 2"))
    proc = promtool("test", "rules", "hubfleet-tls.test.yaml", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "HubTLSCertificateRenewalNotSeen, time: 59d" in out, out


def test_the_rules_use_only_series_the_probe_exports():
    exported = {m.name for m in CertificateProbe().registry.collect()}
    used = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"hubfleet_[a-z_]+", rule["expr"]))
    assert used and used <= exported, used - exported
