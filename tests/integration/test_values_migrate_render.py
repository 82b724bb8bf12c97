"""A stock z2jh site and its ``hubfleet values migrate`` overlay, both rendered with the real z2jh 4.4.0 chart
(helm_python: Helm v4's Go SDK), validated against the chart's schema, and then read the way the hub reads them:
the chart's own ``jupyterhub_config.py`` runs (in a subprocess) on each rendered hub Secret and ConfigMap. The
migrated hub must get the same profiles and authenticator options, hubfleet's classes, and hubfleet's culler with
the stock culler's settings (parsed by hubfleet's culler itself) instead of jupyterhub-idle-culler.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hubfleet.config.migrate import migrate_values
from hubfleet.config.values import helm_merge

REPO = Path(__file__).resolve().parents[2]
SITES = REPO / "tests" / "data" / "z2jh-sites"
CHART = Path("/work/shared/z2jh-4.4.0/chart")
for candidate in (REPO.parent / "shared" / "z2jh-4.4.0" / "chart", REPO.parent.parent / "shared" / "z2jh-4.4.0" / "chart"):
    if candidate.is_dir():
        CHART = candidate
HUB_IMAGE = "registry.example.org/campus/k8s-hub-hubfleet:4.4.0-hubfleet0.1.0"

# Runs the chart's files/hub/jupyterhub_config.py as the hub pod would, with /usr/local/etc/jupyterhub relocated to
# a temp dir holding the rendered Secret and ConfigMap, and prints the resulting traitlets config as JSON. The hub
# image's tornado.curl_httpclient needs pycurl, which is not in the test venv: it is stood in for by the simple client.
DRIVER = r"""
import json, os, sys, types
from pathlib import Path
import tornado.simple_httpclient
curl = types.ModuleType("tornado.curl_httpclient")
curl.CurlAsyncHTTPClient = tornado.simple_httpclient.SimpleAsyncHTTPClient
sys.modules["tornado.curl_httpclient"] = curl
from traitlets.config import Config
config_py = Path(sys.argv[1])
c = Config()
exec(compile(config_py.read_text(), str(config_py), "exec"), {"get_config": lambda: c, "__file__": str(config_py)})
def plain(x):
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if callable(x):
        return f"<callable {getattr(x, '__qualname__', type(x).__name__)}>"
    return x if isinstance(x, (str, int, float, bool, type(None))) else repr(x)
print("\n@@CONFIG@@" + json.dumps(plain(c)))
"""


@pytest.fixture(scope="module")
def chart():
    helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk is a test dependency (pyproject [test])")
    assert (CHART / "Chart.yaml").is_file(), f"the renderable z2jh 4.4.0 chart is missing at {CHART}"
    return helm_python.Chart.load(str(CHART))


def _render(chart, values):
    chart.validate_schema(values)
    return {path: text for path, text in chart.render(values, name="jhub", namespace="jhub").items()
            if text.strip()}


def _manifest(rendered, template):
    return yaml.safe_load(rendered[f"jupyterhub/templates/{template}"])


def _hub_config(rendered, tmp: Path) -> dict:
    """The traitlets config the chart's jupyterhub_config.py builds from this render."""
    root = tmp / "etc-jupyterhub"
    for kind, manifest in (("secret", _manifest(rendered, "hub/secret.yaml")),
                           ("config", _manifest(rendered, "hub/configmap.yaml"))):
        (root / kind).mkdir(parents=True)
        for key, value in manifest["data"].items():
            data = base64.b64decode(value) if kind == "secret" else str(value).encode()
            (root / kind / key).write_bytes(data)
    for name in ("jupyterhub_config.py", "z2jh.py"):
        text = (CHART / "files" / "hub" / name).read_text().replace("/usr/local/etc/jupyterhub/", f"{root}/")
        (root / name).write_text(text)
    env = {"PATH": "/usr/bin:/bin", "HUB_SERVICE_PORT": "8081", "PROXY_API_SERVICE_PORT": "8001",
           "POD_NAMESPACE": "jhub", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root / "jupyterhub_config.py")], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp)
    assert out.returncode == 0 and "@@CONFIG@@" in out.stdout, (
        f"the chart's jupyterhub_config.py failed on the render:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.split("@@CONFIG@@", 1)[1])


def _flags(args):
    """``--timeout=600``, ``--cull-users`` -> {"timeout": "600", "cull-users": "true"} (jupyterhub-idle-culler's CLI)."""
    out = {}
    for arg in args:
        name, _, value = arg.removeprefix("--").partition("=")
        out[name] = (value or "true").lower()
    return out


def _culler_app(command):
    from hubfleet.services.culler.app import CullerApp

    assert command[:3] == ["python3", "-m", "hubfleet.services.culler"], command
    app = CullerApp()
    app.parse_command_line(command[3:])  # hubfleet's culler accepts every flag the migration wrote
    return app


@pytest.fixture(scope="module", params=["ldap-site.yaml", "keycloak-site.yaml"])
def site_pair(request, chart, tmp_path_factory):
    site = yaml.safe_load((SITES / request.param).read_text())
    migration = migrate_values(site, hub_image=HUB_IMAGE)
    migrated = helm_merge(site, migration.overlay)  # helm -f site.yaml -f hubfleet-values.yaml
    tmp = tmp_path_factory.mktemp(request.param.split(".")[0])
    stock_render, migrated_render = _render(chart, site), _render(chart, migrated)
    (tmp / "stock").mkdir()
    (tmp / "migrated").mkdir()
    return {"name": request.param, "site": site, "migration": migration,
            "stock": stock_render, "migrated": migrated_render,
            "stock_config": _hub_config(stock_render, tmp / "stock"),
            "migrated_config": _hub_config(migrated_render, tmp / "migrated")}


def test_both_render_and_validate(site_pair):
    for which in ("stock", "migrated"):
        assert "jupyterhub/templates/hub/deployment.yaml" in site_pair[which], which
    image = _manifest(site_pair["migrated"], "hub/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == HUB_IMAGE
    stock_image = _manifest(site_pair["stock"], "hub/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert stock_image["image"] == "quay.io/jupyterhub/k8s-hub:4.4.0"


def test_migrated_hub_gets_the_same_profiles(site_pair):
    stock, migrated = site_pair["stock_config"], site_pair["migrated_config"]
    assert migrated["KubeSpawner"].get("profile_list") == stock["KubeSpawner"].get("profile_list")
    assert migrated["KubeSpawner"].get("profile_list") == site_pair["site"].get("singleuser", {}).get("profileList", [])
    # everything else singleuser.* sets on KubeSpawner is the same too (ProfileSpawner is a KubeSpawner)
    assert {k: v for k, v in migrated["KubeSpawner"].items() if k != "image"} == {
        k: v for k, v in stock["KubeSpawner"].items() if k != "image"}
    secret_values = [yaml.safe_load(base64.b64decode(_manifest(site_pair[w], "hub/secret.yaml")["data"]["values.yaml"]))
                     for w in ("stock", "migrated")]
    assert secret_values[0]["singleuser"] == secret_values[1]["singleuser"]


def test_migrated_hub_runs_hubfleets_classes(site_pair):
    stock, migrated = site_pair["stock_config"], site_pair["migrated_config"]
    expected = {"ldap-site.yaml": ("ldapauthenticator.LDAPAuthenticator", "hubfleet-ldap"),
                "keycloak-site.yaml": ("generic-oauth", "hubfleet-oidc")}[site_pair["name"]]
    assert (stock["JupyterHub"]["authenticator_class"], migrated["JupyterHub"]["authenticator_class"]) == expected
    assert stock["JupyterHub"]["spawner_class"] == "kubespawner.KubeSpawner"
    assert migrated["JupyterHub"]["spawner_class"] == "hubfleet"
    # the authenticator's own options reach the hub unchanged (hubfleet-ldap / hubfleet-oidc read them)
    for section in ("Authenticator", "LDAPAuthenticator", "GenericOAuthenticator"):
        assert migrated.get(section) == stock.get(section), section


def test_migrated_hub_runs_hubfleets_culler_with_the_stock_settings(site_pair):
    stock, migrated = site_pair["stock_config"], site_pair["migrated_config"]
    [stock_culler] = [s for s in stock["JupyterHub"]["services"] if s["name"] == "jupyterhub-idle-culler"]
    assert [s["name"] for s in migrated["JupyterHub"]["services"]] == ["hubfleet-culler"]
    [culler] = migrated["JupyterHub"]["services"]
    assert culler["api_token"] and len(culler["api_token"]) >= 32  # the chart generated the service's token
    app = _culler_app(culler["command"])
    flags = _flags(stock_culler["command"][3:])
    assert app.url == flags["url"]
    assert app.timeout == int(flags.get("timeout", 600))
    assert app.cull_every == int(flags.get("cull-every", 0))
    assert app.concurrency == int(flags.get("concurrency", 10))
    assert app.max_age == int(flags.get("max-age", 0))
    assert app.cull_users == (flags.get("cull-users") == "true")
    assert app.remove_named_servers == (flags.get("remove-named-servers") == "true")
    [role] = [r for r in migrated["JupyterHub"]["load_roles"] if r["name"] == "hubfleet-culler"]
    assert role["services"] == ["hubfleet-culler"]
    assert set(role["scopes"]) >= {"list:users", "read:users:activity", "read:servers", "delete:servers"}
    assert not any(r["name"] == "jupyterhub-idle-culler" for r in migrated["JupyterHub"]["load_roles"])


def test_full_file_renders_the_same_hub(site_pair, chart, tmp_path):
    """``--full`` (one complete file) gives the hub exactly what site + overlay give."""
    from hubfleet.config.migrate import render_overlay

    full = yaml.safe_load(render_overlay(site_pair["migration"], source="site.yaml", site=site_pair["site"]))
    rendered = _render(chart, full)
    values = [yaml.safe_load(base64.b64decode(_manifest(r, "hub/secret.yaml")["data"]["values.yaml"]))
              for r in (rendered, site_pair["migrated"])]
    assert values[0] == values[1]


def _differing_lines(a: str, b: str) -> list[str]:
    import difflib

    return [line for line in difflib.unified_diff(a.splitlines(), b.splitlines(), n=0, lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_rollout_restarts_only_the_hub(site_pair):
    """Between stock and migrated, only the hub's Secret (values.yaml, the culler's token) and the hub Deployment
    (image, the Secret's checksum) change; the proxy Deployment differs only by the checksum of its own Secret,
    whose token an offline render generates anew each time (Helm's `lookup` keeps it on a real upgrade)."""
    stock, migrated = site_pair["stock"], site_pair["migrated"]
    changed = sorted(k for k in set(stock) | set(migrated) if stock.get(k) != migrated.get(k))
    assert set(changed) <= {"jupyterhub/templates/hub/secret.yaml", "jupyterhub/templates/hub/deployment.yaml",
                            "jupyterhub/templates/proxy/deployment.yaml"}, changed
    hub = _differing_lines(stock["jupyterhub/templates/hub/deployment.yaml"],
                           migrated["jupyterhub/templates/hub/deployment.yaml"])
    assert {line.split(":")[0].strip("+- ") for line in hub} == {"checksum/secret", "image"}, hub
    proxy = _differing_lines(stock["jupyterhub/templates/proxy/deployment.yaml"],
                             migrated["jupyterhub/templates/proxy/deployment.yaml"])
    assert {line.split(":")[0].strip("+- ") for line in proxy} <= {"checksum/auth-token"}, proxy


def test_home_directories_and_running_pods_keep_their_names():
    """ProfileSpawner names pods and PVCs as KubeSpawner does (z2jh sets neither template by default), so a running
    server and every user's home PVC are found again after the switch."""
    from kubespawner import KubeSpawner

    from hubfleet.spawners import ProfileSpawner

    for trait in ("pod_name_template", "pvc_name_template"):
        assert ProfileSpawner.class_traits()[trait] is KubeSpawner.class_traits()[trait], trait
        assert ProfileSpawner._trait_default_generators.get(trait) is KubeSpawner._trait_default_generators.get(
            trait), trait
