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
    "hubfleet.labels",
    "hubfleet.lazy",
    "hubfleet.db",
    "hubfleet.db.url",
    "hubfleet.quantity",
    "hubfleet.resources",
    "hubfleet.yamlfile",
    "hubfleet.authenticators.policy",
    "hubfleet.authenticators.ldap_compat",
    "hubfleet.authenticators.accounts",
    "hubfleet.mail",
    "hubfleet.spawners.profiles",
    "hubfleet.spawners.profiles.model",
    "hubfleet.spawners.profiles.schema",
    "hubfleet.spawners.profiles.parse",
    "hubfleet.spawners.profiles.choice",
    "hubfleet.spawners.profiles.overrides",
    "hubfleet.spawners.profiles.quota",
    "hubfleet.spawners.form",
    "hubfleet.spawners.queue_policy",
    "hubfleet.spawners.events",
    "hubfleet.services.culler.arbiter",
    "hubfleet.services.adminpage.access",
    "hubfleet.services.adminpage.fleet",
    "hubfleet.services.adminpage.logtext",
    "hubfleet.services.adminpage.render",
    "hubfleet.services.adminpage.usage",
    "hubfleet.config.adminpage",
    "hubfleet.services.culler.policies",
    "hubfleet.cullpolicies",
    "hubfleet.services.culler.limiter",
    "hubfleet.services.culler.consolidate",
    "hubfleet.scheduler_plugin.scoring",
    "hubfleet.scheduler_plugin.wire",
    "hubfleet.scheduler_plugin.preemption",
    "hubfleet.scheduler_plugin.activity",
    "hubfleet.scheduler_plugin.tables",
    "hubfleet_devcluster.scheduling",
    "hubfleet.config.migrate",
    "hubfleet.config.migrate_checks",
    "hubfleet_devcluster.resources",
    "hubfleet_devcluster.selectors",
    "hubfleet_devcluster.patching",
    "hubfleet_devcluster.schemas",
    "hubfleet_devcluster.validation",
    "hubfleet_devcluster.tables",
    "hubfleet_devcluster.discovery",
    "hubfleet_devcluster.protobuf",
    "hubfleet_devcluster.images",
    "hubfleet_devcluster.podenv",
    "hubfleet_devcluster.probes",
    "hubfleet_devcluster.gc",
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


def _devcluster_references(root) -> list[str]:
    """Every import of hubfleet_devcluster, and every string naming it (importlib, entry points), under `root`."""
    import ast
    from pathlib import Path

    found = []
    for path in sorted(Path(root).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if "hubfleet_devcluster" in node.value else []
            found += [f"{path.relative_to(root)}:{node.lineno}: {n}" for n in names
                      if n.split(".")[0] == "hubfleet_devcluster" or "hubfleet_devcluster" in n]
    return found


def test_the_product_never_imports_the_devcluster():
    """hubfleet-devcluster depends on hubfleet, never the reverse: the hub image installs hubfleet alone."""
    from pathlib import Path

    import hubfleet

    assert _devcluster_references(Path(hubfleet.__file__).parent) == []


def test_the_reference_scan_sees_an_import(tmp_path):
    (tmp_path / "m.py").write_text("import os\nfrom hubfleet_devcluster.api import x\nimportlib.import_module("
                                   "'hubfleet_devcluster.cli')\n")
    assert len(_devcluster_references(tmp_path)) == 2
