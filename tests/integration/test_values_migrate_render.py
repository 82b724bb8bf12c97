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
for candidate in (REPO.parent / "shared" / "z2jh-4.4.0" / "chart",
                  REPO.parent.parent / "shared" / "z2jh-4.4.0" / "chart"):
    if candidate.is_dir():
        CHART = candidate
HUB_IMAGE = "registry.example.org/campus/k8s-hub-hubfleet:4.4.0-hubfleet0.1.0"

# Runs the chart's files/hub/jupyterhub_config.py as the hub pod would, once per rendered hub Secret + ConfigMap
# (each in a temp dir standing in for /usr/local/etc/jupyterhub), in one subprocess, and prints the resulting
# traitlets configs as JSON. The hub image's tornado.curl_httpclient needs pycurl, which is not in the test venv: it
# is stood in for by the simple client. Then the pod each profile choice gets, built by the spawner class the hub
# would load (its entry point resolved as JupyterHub resolves it) through the spawner's own load_user_options() and
# get_pod_manifest(); no cluster.
DRIVER = r"""
import asyncio, json, logging, sys, types
from pathlib import Path
import tornado.simple_httpclient
curl = types.ModuleType("tornado.curl_httpclient")
curl.CurlAsyncHTTPClient = tornado.simple_httpclient.SimpleAsyncHTTPClient
sys.modules["tornado.curl_httpclient"] = curl
from jupyterhub.spawner import Spawner
from jupyterhub.traitlets import EntryPointType
from kubernetes_asyncio.client import ApiClient
from traitlets import HasTraits
from traitlets.config import Config
logging.getLogger("asyncio").setLevel(logging.CRITICAL)

def hub_config(config_py):
    sys.modules.pop("z2jh", None)  # each render has its own z2jh.py (and its lru_caches)
    c = Config()
    exec(compile(config_py.read_text(), str(config_py), "exec"), {"get_config": lambda: c, "__file__": str(config_py)})
    return c

def plain(x):
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if callable(x):
        return f"<callable {getattr(x, '__qualname__', type(x).__name__)}>"
    return x if isinstance(x, (str, int, float, bool, type(None))) else repr(x)

class Resolve(HasTraits):
    cls = EntryPointType(default_value=Spawner, klass=Spawner, entry_point_group="jupyterhub.spawners")

class User:
    name, id, admin, groups, escaped_name, settings = "alice", 1, False, [], "alice", {}
    url = base_url = "/user/alice/"

class Hub:
    api_url, base_url, public_host, url = "http://hub:8081/hub/api", "/hub/", "", "http://hub:8081/hub/"

async def pods(c):
    cls = Resolve(cls=c.JupyterHub.spawner_class).cls
    profiles = c.KubeSpawner.profile_list if "profile_list" in c.KubeSpawner else []
    choices = {"": {}} if not profiles else {}  # user_options as KubeSpawner's form sends them
    for p in profiles:
        choices[p["slug"]] = {"profile": p["slug"]}
        for name, option in (p.get("profile_options") or {}).items():
            for key in option.get("choices") or {}:
                choices[f"{p['slug']}/{name}={key}"] = {"profile": p["slug"], name: key}
            if (option.get("unlisted_choice") or {}).get("enabled"):
                choices[f"{p['slug']}/{name}=(unlisted)"] = {
                    "profile": p["slug"], f"{name}--unlisted-choice": "quay.io/jupyter/julia-notebook:2025-01-06"}
    out = {}
    for label, user_options in choices.items():
        orm = types.SimpleNamespace(name="", server=None, display_name="", user_options=None)
        spawner = cls(user=User(), hub=Hub(), config=c, orm_spawner=orm)
        spawner.user_options = user_options
        await spawner.load_user_options()
        out[label] = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
    return {"class": f"{cls.__module__}.{cls.__name__}", "pods": out}

class ResolveAuth(HasTraits):
    cls = EntryPointType(klass="jupyterhub.auth.Authenticator", entry_point_group="jupyterhub.authenticators")

def authenticator(c):
    # the hub's authenticator, created as the hub creates it (its start-up checks run in __init__)
    try:
        cls = ResolveAuth(cls=c.JupyterHub.authenticator_class).cls
        auth = cls(config=c)
    except Exception as e:  # what the hub would die of
        return {"error": f"{type(e).__name__}: {e}"}
    traits = ("server_urls", "tls_strategy", "user_search_base", "username_attribute", "search_bind_dn",
              "allowed_groups", "group_search_base", "issuer", "client_id", "authorize_url", "token_url",
              "userdata_url", "username_claim", "auth_state_groups_key", "manage_groups", "admin_groups",
              "admin_users")
    return {"class": f"{cls.__module__}.{cls.__name__}",
            **{t: plain(sorted(v) if isinstance(v, set) else v) for t in traits if (v := getattr(auth, t, None))}}

results = {}
for path in sys.argv[1:]:
    c = hub_config(Path(path))
    results[path] = {**plain(c), "_pods": asyncio.run(pods(c)), "_authenticator": authenticator(c)}
print("\n@@RESULTS@@" + json.dumps(results))
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


def _hub_configs(renders: dict[str, dict], tmp: Path) -> dict[str, dict]:
    """label -> the traitlets config (plus ``_pods``) the chart's jupyterhub_config.py builds from that render."""
    roots = {}
    for label, rendered in renders.items():
        root = roots[label] = tmp / label / "etc-jupyterhub"
        for kind, manifest in (("secret", _manifest(rendered, "hub/secret.yaml")),
                               ("config", _manifest(rendered, "hub/configmap.yaml"))):
            (root / kind).mkdir(parents=True)
            for key, value in manifest["data"].items():
                data = base64.b64decode(value) if kind == "secret" else str(value).encode()
                (root / kind / key).write_bytes(data)
        for name in ("jupyterhub_config.py", "z2jh.py"):
            text = (CHART / "files" / "hub" / name).read_text().replace("/usr/local/etc/jupyterhub/", f"{root}/")
            (root / name).write_text(text)
    kubeconfig = tmp / "kubeconfig"  # KubeSpawner reads one when it is created; nothing connects to it
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}], "users": [{"name": "x", "user": {}}]}))
    env = {"PATH": "/usr/bin:/bin", "HUB_SERVICE_PORT": "8081", "PROXY_API_SERVICE_PORT": "8001",
           "POD_NAMESPACE": "jhub", "PYTHONPATH": ":".join(sys.path), "KUBECONFIG": str(kubeconfig)}
    paths = [str(root / "jupyterhub_config.py") for root in roots.values()]
    out = subprocess.run([sys.executable, "-c", DRIVER, *paths], capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp)
    assert out.returncode == 0 and "@@RESULTS@@" in out.stdout, (
        f"the chart's jupyterhub_config.py or a pod manifest failed on a render:\n{out.stdout[-3000:]}\n"
        f"{out.stderr[-3000:]}")
    results = json.loads(out.stdout.split("@@RESULTS@@", 1)[1])
    return {label: results[path] for label, path in zip(roots, paths, strict=True)}


def _flags(args):
    """``--timeout=600``, ``--cull-users`` -> {"timeout": "600", "cull-users": "true"} (idle-culler's flags)."""
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


SITE_FILES = ["ldap-site.yaml", "keycloak-site.yaml"]


@pytest.fixture(scope="module")
def sites(chart, tmp_path_factory):
    """Every site, stock and migrated: values, renders, and the hub's config from one jupyterhub_config.py run."""
    out, renders = {}, {}
    for name in SITE_FILES:
        site = yaml.safe_load((SITES / name).read_text())
        migration = migrate_values(site, hub_image=HUB_IMAGE)
        migrated = helm_merge(site, migration.overlay)  # helm -f site.yaml -f hubfleet-values.yaml
        out[name] = {"name": name, "site": site, "migration": migration,
                     "stock": _render(chart, site), "migrated": _render(chart, migrated)}
        renders[f"{name}-stock"], renders[f"{name}-migrated"] = out[name]["stock"], out[name]["migrated"]
    configs = _hub_configs(renders, tmp_path_factory.mktemp("hub-config"))
    for name in SITE_FILES:
        out[name]["stock_config"] = configs[f"{name}-stock"]
        out[name]["migrated_config"] = configs[f"{name}-migrated"]
    return out


@pytest.fixture(params=SITE_FILES)
def site_pair(request, sites):
    return sites[request.param]


def test_both_render_and_validate(site_pair):
    for which in ("stock", "migrated"):
        assert "jupyterhub/templates/hub/deployment.yaml" in site_pair[which], which
    hub = _manifest(site_pair["migrated"], "hub/deployment.yaml")
    image = hub["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == HUB_IMAGE
    stock_image = _manifest(site_pair["stock"], "hub/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert stock_image["image"] == "quay.io/jupyterhub/k8s-hub:4.4.0"


def test_migrated_hub_gets_the_same_profiles(site_pair):
    stock, migrated = site_pair["stock_config"], site_pair["migrated_config"]
    assert migrated["KubeSpawner"].get("profile_list") == stock["KubeSpawner"].get("profile_list")
    assert migrated["KubeSpawner"].get("profile_list") == site_pair["site"].get("singleuser", {}).get("profileList", [])
    # everything else singleuser.* sets on KubeSpawner is the same too (ProfileSpawner is a KubeSpawner)
    assert {k: v for k, v in migrated["KubeSpawner"].items() if k != "pre_spawn_hook"} == {
        k: v for k, v in stock["KubeSpawner"].items() if k != "pre_spawn_hook"}
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


def _unstartable(pod: dict) -> list[str]:
    """Containers the kubelet refuses: runAsNonRoot in force (container, else pod level) with runAsUser 0."""
    pod_context = pod["spec"].get("securityContext") or {}
    bad = []
    for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        if non_root and user == 0:
            bad.append(container["name"])
    return bad


def _essentials(pod: dict) -> dict:
    """What a profile decides about a pod: name, images, resources, placement, volumes, env, init containers."""
    spec = pod["spec"]
    [notebook] = [c for c in spec["containers"] if c["name"] == "notebook"]
    return {
        "name": pod["metadata"]["name"],
        "image": notebook["image"],
        "resources": notebook.get("resources"),
        "nodeSelector": spec.get("nodeSelector"),
        "tolerations": spec.get("tolerations"),
        "volumes": spec.get("volumes"),
        "volumeMounts": notebook.get("volumeMounts"),
        "env": {e["name"]: e.get("value") for e in notebook.get("env", []) if not e["name"].startswith("HUBFLEET_")},
        "initContainers": spec.get("initContainers"),
        "affinity": spec.get("affinity"),
    }


def test_every_profile_gives_the_same_pod_and_it_can_start(site_pair):
    """Each profile and each of its choices (listed and unlisted), chosen by user_options as the spawn form sends
    it, through the class the hub loads: the migrated pod has the stock pod's image, resources, placement, volumes,
    env and init containers, and the kubelet would start every container (z2jh's root iptables init container
    included)."""
    stock, migrated = site_pair["stock_config"]["_pods"], site_pair["migrated_config"]["_pods"]
    assert stock["class"] == "kubespawner.spawner.KubeSpawner"
    assert migrated["class"] == "hubfleet.spawners.spawner.ProfileSpawner"
    assert list(migrated["pods"]) == list(stock["pods"])
    if site_pair["name"] == "ldap-site.yaml":
        assert list(stock["pods"]) == ["small", "research", "research/image=r",  # Helm sorts the choices' keys
                                       "research/image=scipy", "research/image=(unlisted)", "gpu"]
        images = {label: _essentials(pod)["image"] for label, pod in migrated["pods"].items()}
        assert images["research/image=r"] == "quay.io/jupyter/r-notebook:2025-01-06"
        assert images["research/image=(unlisted)"] == "quay.io/jupyter/julia-notebook:2025-01-06"
    for slug, pod in migrated["pods"].items():
        assert _essentials(pod) == _essentials(stock["pods"][slug]), slug
        assert not _unstartable(pod), f"profile {slug!r}: {_unstartable(pod)} would not start"
        assert pod["spec"]["initContainers"][0]["name"] == "block-cloud-metadata"  # z2jh's default, kept
        [notebook] = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
        assert notebook["securityContext"]["runAsNonRoot"] is True  # hubfleet's hardening, kept where it can be
    # and with ProfileSpawner's own pod_security_context (what the overlay sets aside) the same pods would not start
    from hubfleet.spawners import ProfileSpawner

    default = ProfileSpawner._trait_default_generators["pod_security_context"](ProfileSpawner)
    pod = next(iter(migrated["pods"].values()))
    hardened = {**pod, "spec": {**pod["spec"], "securityContext": {**default, "fsGroup": 100}}}
    assert _unstartable(hardened) == ["block-cloud-metadata"], default


def test_the_next_step_values_check_passes(site_pair, tmp_path):
    """What the command prints as the next step, ``hubfleet values check --chart ... -f site -f overlay``, passes:
    schema, lint, and every rendered manifest valid for Kubernetes (kubernetes-validate, strict)."""
    from hubfleet.config.migrate import render_overlay
    from hubfleet.config.values import check_values

    overlay = tmp_path / "hubfleet-values.yaml"
    overlay.write_text(render_overlay(site_pair["migration"], source=site_pair["name"]))
    result = check_values(CHART, [SITES / site_pair["name"], overlay])
    assert not result.problems, "\n".join(result.problems)
    assert result.objects


def test_migrated_hub_creates_its_authenticator_from_the_stock_options(site_pair):
    """The hub's authenticator class, created from the migrated hub's config as the hub creates it: its start-up
    checks pass, and the stock options took effect (LDAP: through hubfleet-ldap's alias table)."""
    auth = site_pair["migrated_config"]["_authenticator"]
    assert "error" not in auth, auth["error"]
    if site_pair["name"] == "ldap-site.yaml":
        assert auth["class"] == "hubfleet.authenticators.ldap.HubfleetLDAPAuthenticator"
        assert auth["server_urls"] == ["ldap://ldap.campus.example.org:389"]
        assert auth["tls_strategy"] == "starttls"  # ldapauthenticator's before_bind
        assert auth["search_bind_dn"] == "cn=jupyterhub,ou=services,dc=campus,dc=example,dc=org"
        assert auth["username_attribute"] == "uid"
        assert auth["allowed_groups"] == ["jupyter-users", "researchers"]  # the group DNs' names
        assert auth["group_search_base"] == "ou=groups,dc=campus,dc=example,dc=org"
        assert auth["admin_users"] == ["hubadmin"]
    else:
        assert auth["class"] == "hubfleet.authenticators.oidc.HubfleetOIDCAuthenticator"
        assert auth["issuer"] == "https://sso.example.org/realms/hub"  # from the overlay
        assert auth["authorize_url"] == "https://sso.example.org/realms/hub/protocol/openid-connect/auth"
        assert auth["client_id"] == "jupyterhub" and auth["username_claim"] == "preferred_username"
        assert auth["allowed_groups"] == ["jupyter-users"] and auth["admin_groups"] == ["jupyter-admins"]
