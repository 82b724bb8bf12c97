"""The pure modules import no I/O framework, also not through their package ``__init__``.

Each check runs in a fresh interpreter (``sys.modules`` of the test process already holds everything), imports the
module the way a user would (``import hubfleet.spawners.profiles`` runs ``hubfleet/__init__`` and
``hubfleet/spawners/__init__`` first) and lists the forbidden top-level packages that ended up loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("tornado", "aiohttp", "ldap3", "kubernetes", "kubernetes_asyncio", "kubespawner", "jupyterhub",
             "oauthenticator", "kmock", "requests", "httpx")

# Every module the project calls pure. A new pure module is added here.
PURE = [
    "hubfleet.errors",
    "hubfleet.files",
    "hubfleet.lazy",
    "hubfleet.db",
    "hubfleet.db.url",
    "hubfleet.quantity",
    "hubfleet.resources",
    "hubfleet.yamlfile",
    "hubfleet.authenticators.policy",
    "hubfleet.authenticators.ldap_compat",
    "hubfleet.spawners.profiles",
    "hubfleet.spawners.profiles.model",
    "hubfleet.spawners.profiles.schema",
    "hubfleet.spawners.profiles.parse",
    "hubfleet.spawners.profiles.choice",
    "hubfleet.spawners.profiles.overrides",
    "hubfleet.spawners.profiles.quota",
    "hubfleet.spawners.form",
    "hubfleet.spawners.events",
    "hubfleet.services.culler.arbiter",
    "hubfleet.services.culler.policies",
    "hubfleet.services.culler.limiter",
    "hubfleet.scheduler_plugin.scoring",
    "hubfleet.scheduler_plugin.wire",
    "hubfleet.scheduler_plugin.preemption",
    "hubfleet.scheduler_plugin.activity",
    "hubfleet.scheduler_plugin.tables",
    "hubfleet.devcluster.scheduling",
    "hubfleet.config.migrate",
    "hubfleet.config.migrate_checks",
    "hubfleet.devcluster.resources",
    "hubfleet.devcluster.selectors",
    "hubfleet.devcluster.patching",
    "hubfleet.devcluster.schemas",
    "hubfleet.devcluster.validation",
    "hubfleet.devcluster.tables",
    "hubfleet.devcluster.discovery",
    "hubfleet.devcluster.protobuf",
    "hubfleet.devcluster.images",
    "hubfleet.devcluster.podenv",
]

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_framework(module):
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"import {module} failed:\n{out.stderr}"
    loaded = set(json.loads(out.stdout))
    bad = sorted(loaded & set(FORBIDDEN))
    assert not bad, f"{module} (or its package __init__) imports {', '.join(bad)}; make the import lazy"


def test_probe_sees_a_framework_import():
    """The probe itself works: a module known to import tornado is reported."""
    out = subprocess.run([sys.executable, "-c", PROBE, "hubfleet.authenticators.base"], capture_output=True,
                         text=True, timeout=60)
    assert "tornado" in json.loads(out.stdout)
