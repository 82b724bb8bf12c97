"""chart-values/*.yaml: every overlay, and every sensible stack of them, merged over z2jh 4.4.0's values.yaml the
way Helm does, validates against the chart's values.schema.yaml; the values name only real hubfleet traits, carry no
literal secrets, and deliver a profiles document ProfileSpawner can parse.

The chart data is read from ../shared/z2jh-4.4.0/ (never copied into the repo); only the schema tests skip when
that folder is absent. The merge/validate helpers themselves are tested in test_chart_values_merge.py.
"""

from __future__ import annotations

import re
from functools import cache
import os
from pathlib import Path

import pytest
import yaml

from hubfleet.config.values import helm_merge, load_values, validate_values

REPO = Path(__file__).resolve().parents[2]
CHART_VALUES = REPO / "chart-values"
def _find_z2jh() -> Path:
    """The chart data beside the repo (../shared/z2jh-4.4.0), or where HUBFLEET_Z2JH_DIR says, or the team's shared
    folder when the repo is a clone elsewhere (CI)."""
    candidates = [os.environ.get("HUBFLEET_Z2JH_DIR", ""), REPO.parent / "shared" / "z2jh-4.4.0",
                  Path("/work/shared/z2jh-4.4.0")]
    for c in candidates:
        if c and (Path(c) / "values.schema.yaml").is_file():
            return Path(c)
    return REPO.parent / "shared" / "z2jh-4.4.0"


Z2JH = _find_z2jh()

BASE = "hubfleet-base.yaml"
AUTH = ("auth-ldap.yaml", "auth-oidc.yaml")
OVERLAYS = (BASE, *AUTH, "autohttps-hardened.yaml", "security-hardened.yaml")

# base + exactly one auth backend, optionally + autohttps and/or security: the stacks docs/chart-values.md documents
STACKS = [
    (BASE, auth, *extra)
    for auth in AUTH
    for extra in [(), ("autohttps-hardened.yaml",), ("security-hardened.yaml",),
                  ("autohttps-hardened.yaml", "security-hardened.yaml")]
]


@cache
def overlay(name: str) -> dict:
    return load_values(CHART_VALUES / name)


@cache
def chart() -> tuple[dict, dict]:
    if not (Z2JH / "values.yaml").is_file() or not (Z2JH / "values.schema.yaml").is_file():
        pytest.skip(
            f"z2jh 4.4.0 chart data not found at {Z2JH} (values.yaml + values.schema.yaml); "
            "the chart-values schema tests need it"
        )
    return load_values(Z2JH / "values.yaml"), load_values(Z2JH / "values.schema.yaml")


def merged(*names: str) -> dict:
    values, _ = chart()
    return helm_merge(values, *(overlay(n) for n in names))


def test_the_overlays_are_the_documented_ones():
    on_disk = sorted(p.name for p in CHART_VALUES.glob("*.yaml"))
    assert on_disk == sorted(OVERLAYS)
    docs = (REPO / "docs" / "chart-values.md").read_text()
    for name in OVERLAYS:
        assert f"chart-values/{name}" in docs, f"docs/chart-values.md does not describe {name}"


# ---------------------------------------------------------------------------------------------- chart schema


def test_the_chart_alone_validates():
    """Guards the merge/validation machinery: z2jh's own defaults must pass its own schema."""
    values, schema = chart()
    assert validate_values(values, schema) == []


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_overlay_validates_over_the_chart_defaults(name):
    _, schema = chart()
    assert validate_values(merged(name), schema) == []


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: "+".join(n.removesuffix(".yaml") for n in s))
def test_each_stack_validates(stack):
    _, schema = chart()
    values = merged(*stack)
    assert validate_values(values, schema) == []
    # the stack really is hubfleet (a later overlay did not reset what the base set)
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "hubfleet"
    assert values["hub"]["config"]["JupyterHub"]["spawner_class"] == "hubfleet"


_MISSING = object()


def chart_default_repeats(values: dict, defaults: dict, path: tuple = ()) -> list[str]:
    """Key paths in ``values`` whose value is exactly the chart's default (a setting that changes nothing)."""
    found = []
    for key, value in values.items():
        default = defaults.get(key, _MISSING) if isinstance(defaults, dict) else _MISSING
        if isinstance(value, dict) and isinstance(default, dict) and value != default:
            found += chart_default_repeats(value, default, (*path, key))
        elif value == default:
            found.append(".".join(map(str, (*path, key))))
    return found


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_overlay_setting_only_repeats_a_chart_default(name):
    """An overlay line that equals the chart's default reads like hardening but changes nothing (and hides which
    settings really matter); the overlays' comments say which defaults they rely on instead."""
    defaults, _ = chart()
    assert chart_default_repeats(overlay(name), defaults) == []


def test_the_repeat_check_sees_defaults_at_any_depth():
    defaults, _ = chart()
    repeated = {"cull": {"enabled": True, "timeout": 60}, "proxy": {"traefik": {"hsts": {"preload": False}}},
                "hub": {"podSecurityContext": defaults["hub"]["podSecurityContext"]}}
    assert chart_default_repeats(repeated, defaults) == ["cull.enabled", "proxy.traefik.hsts.preload",
                                                        "hub.podSecurityContext"]


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: "+".join(n.removesuffix(".yaml") for n in s))
def test_no_stack_runs_the_prepuller_hook(stack):
    """The hook makes `helm upgrade --install` wait for every image on every node: the CUDA image alone outlasts
    Helm's default 5-minute --timeout. The base turns it off; the continuous puller still pulls."""
    puller = merged(*stack)["prePuller"]
    assert puller["hook"]["enabled"] is False
    assert puller["continuous"]["enabled"] is True


def test_a_typo_in_an_overlay_is_reported_with_its_path():
    _, schema = chart()
    typo = {"proxy": {"htps": {"enabled": True}}, "singleuser": {"storage": {"capacty": "10Gi"}}}
    errors = validate_values(helm_merge(merged(BASE, "autohttps-hardened.yaml"), typo), schema)
    assert "proxy.htps: unknown key (not in the chart's schema); did you mean 'https'?" in errors
    assert "singleuser.storage.capacty: unknown key (not in the chart's schema); did you mean 'capacity'?" in errors
    assert len(errors) == 2


def test_a_wrong_type_is_reported_with_its_path():
    _, schema = chart()
    bad = {"proxy": {"https": {"letsencrypt": {"contactEmail": 42}}}, "hub": {"image": {"tag": 4.4}}}
    errors = validate_values(helm_merge(merged(BASE, "autohttps-hardened.yaml"), bad), schema)
    assert errors == [
        "hub.image.tag: 4.4 is not of type 'string'",
        "proxy.https.letsencrypt.contactEmail: 42 is not of type 'string', 'null'",
    ]


def test_null_in_a_later_file_removes_a_required_chart_key():
    """Helm semantics reach the schema: deleting a required key is caught."""
    _, schema = chart()
    errors = validate_values(merged(BASE) | {"singleuser": {"storage": {"type": "dynamic"}}}, schema)
    assert any(e.startswith("singleuser.storage:") and "homeMountPath" in e for e in errors), errors


# ---------------------------------------------------------------------------------------------- no literal secrets

SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|crypt_?key|api_?key|private_?key", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^(|<[^>]*>|\$\{[^}]*\}|(CHANGE|REPLACE)[-_ ]?ME.*|\.\.\.)$", re.IGNORECASE)
# Keys that reference a secret rather than hold one (Kubernetes secretKeyRef / secret names).
REFERENCE_KEYS = {"secretKeyRef", "secretRef", "existingSecret", "secretName"}


def literal_secrets(node, path="") -> list[str]:
    """Paths of secret-looking keys holding literal values (scalars that are not placeholders)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if key in REFERENCE_KEYS:
                continue
            if SECRET_KEY.search(str(key)):
                if isinstance(value, dict) and "value" in value and "valueFrom" not in value:
                    found.append(f"{here}.value")  # an env var given a literal value
                elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    if ".extraConfig." in f".{here}" and "\n" in str(value):
                        pass  # python code, scanned line by line below
                    elif not PLACEHOLDER.match(str(value)):
                        found.append(here)
            found += literal_secrets(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict) and SECRET_KEY.search(str(item.get("name", ""))) and "value" in item:
                found.append(f"{path}[{i}].value")  # list-style env: {name: X_PASSWORD, value: ...}
            found += literal_secrets(item, f"{path}[{i}]")
    elif isinstance(node, str) and "\n" in node:  # python in hub.extraConfig
        for line in node.splitlines():
            m = re.match(r"\s*c\.\w+\.(\w+)\s*=\s*(['\"]).*\2\s*$", line)
            if m and SECRET_KEY.search(m.group(1)):
                found.append(f"{path}: {line.strip()}")
    return found


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_overlay_contains_a_literal_secret(name):
    assert literal_secrets(overlay(name)) == []


def test_the_secret_check_catches_literals():
    bad = {
        "hub": {
            "config": {"HubfleetLDAPAuthenticator": {"search_bind_password": "hunter2"},
                       "HubfleetOIDCAuthenticator": {"client_secret": "s3cr3t"}},
            "extraEnv": {"LDAP_BIND_PASSWORD": {"value": "hunter2"}, "OK": {"valueFrom": {"secretKeyRef": {}}}},
            "extraConfig": {"x": 'import os\nc.HubfleetLDAPAuthenticator.search_bind_password = "hunter2"\n'},
        },
        "proxy": {"secretToken": "0123abcd", "chp": {"extraEnv": [{"name": "API_TOKEN", "value": "abc"}]}},
        "imagePullSecret": {"password": "<set me>", "username": "bob"},
    }
    assert sorted(literal_secrets(bad)) == sorted([
        "hub.config.HubfleetLDAPAuthenticator.search_bind_password",
        "hub.config.HubfleetOIDCAuthenticator.client_secret",
        "hub.extraEnv.LDAP_BIND_PASSWORD.value",
        'hub.extraConfig.x: c.HubfleetLDAPAuthenticator.search_bind_password = "hunter2"',
        "proxy.secretToken",
        "proxy.chp.extraEnv[0].value",
    ])


@pytest.mark.parametrize(("name", "env"), [("auth-ldap.yaml", "LDAP_BIND_PASSWORD"),
                                           ("auth-oidc.yaml", "OAUTH_CLIENT_SECRET")])
def test_auth_secrets_come_from_a_kubernetes_secret(name, env):
    entry = overlay(name)["hub"]["extraEnv"][env]
    assert set(entry) == {"valueFrom"}
    assert set(entry["valueFrom"]["secretKeyRef"]) == {"name", "key"}


def test_the_ldap_bind_password_is_wired_from_the_environment():
    config_py = "\n".join(overlay("auth-ldap.yaml")["hub"]["extraConfig"].values())
    assert 'c.HubfleetLDAPAuthenticator.search_bind_password = os.environ["LDAP_BIND_PASSWORD"]' in config_py
    compile(config_py, "hub.extraConfig", "exec")


def test_the_oidc_client_secret_env_is_the_one_oauthenticator_reads(monkeypatch):
    from hubfleet.authenticators.oidc import HubfleetOIDCAuthenticator

    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "from-env")
    authenticator = HubfleetOIDCAuthenticator(issuer="https://sso.example.org", client_id="jupyterhub")
    assert authenticator.client_secret == "from-env"


# ---------------------------------------------------------------------------------------------- values vs code


def configurable_classes() -> dict:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from kubespawner import KubeSpawner

    from hubfleet.authenticators.base import HubfleetBaseAuthenticator
    from hubfleet.authenticators.composite import HubfleetAuthenticator
    from hubfleet.authenticators.ldap import HubfleetLDAPAuthenticator
    from hubfleet.authenticators.local import HubfleetLocalAuthenticator
    from hubfleet.authenticators.oidc import HubfleetOIDCAuthenticator
    from hubfleet.spawners import ProfileSpawner

    classes = [JupyterHub, Authenticator, KubeSpawner, HubfleetAuthenticator, HubfleetBaseAuthenticator,
               HubfleetLDAPAuthenticator, HubfleetLocalAuthenticator, HubfleetOIDCAuthenticator, ProfileSpawner]
    return {cls.__name__: cls for cls in classes}


BACKEND_CLASSES = {"ldap": "HubfleetLDAPAuthenticator", "local": "HubfleetLocalAuthenticator",
                   "oidc": "HubfleetOIDCAuthenticator"}


def unknown_traits(values: dict) -> list[str]:
    """hub.config sections/options, HubfleetAuthenticator.backends options and `c.X.y =` lines in hub.extraConfig
    that name no configurable trait of the class."""
    classes = configurable_classes()
    hub = values.get("hub", {})
    settings = [(section, option) for section, options in hub.get("config", {}).items() for option in options]
    for config_py in hub.get("extraConfig", {}).values():
        settings += re.findall(r"^\s*c\.(\w+)\.(\w+)\s*=", config_py, flags=re.MULTILINE)
    bad = []
    for section, option in settings:
        cls = classes.get(section)
        if cls is None:
            bad.append(f"{section}: not a class hubfleet's values configure ({', '.join(sorted(classes))})")
        elif option not in cls.class_trait_names(config=True):
            bad.append(f"{section}.{option}: not a configurable trait of {cls.__module__}.{cls.__name__}")
    for i, entry in enumerate(hub.get("config", {}).get("HubfleetAuthenticator", {}).get("backends", [])):
        spec = {"kind": entry} if isinstance(entry, str) else dict(entry)
        cls = classes[BACKEND_CLASSES[spec.pop("kind")]]
        spec.pop("name", None)
        bad += [f"HubfleetAuthenticator.backends[{i}].{k}: not an option of {cls.__name__}"
                for k in sorted(set(spec) - set(cls.class_trait_names(config=True)))]
    return bad


@pytest.mark.parametrize("name", OVERLAYS)
def test_hub_config_names_only_real_traits(name):
    assert unknown_traits(overlay(name)) == []


def test_the_trait_check_catches_drift():
    drifted = {"hub": {
        "config": {"ProfileSpawner": {"profile_file": "/x"}, "HubfleetLDAPAuthenticator": {"server_url": "x"},
                   "HubfleetAuthenticator": {"backends": ["ldap", {"kind": "oidc", "name": "a", "issuerr": "x"}]},
                   "NoSuchAuthenticator": {"x": 1}},
        "extraConfig": {"a": "c.HubfleetLDAPAuthenticator.bind_password = 'x'\n"},
    }}
    bad = unknown_traits(drifted)
    assert len(bad) == 5, bad
    assert any(b.startswith("ProfileSpawner.profile_file:") for b in bad)
    assert any(b.startswith("HubfleetLDAPAuthenticator.server_url:") for b in bad)
    assert any(b.startswith("HubfleetLDAPAuthenticator.bind_password:") for b in bad)
    assert "HubfleetAuthenticator.backends[1].issuerr: not an option of HubfleetOIDCAuthenticator" in bad
    assert any(b.startswith("NoSuchAuthenticator:") for b in bad)


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: "+".join(n.removesuffix(".yaml") for n in s))
def test_stacked_hub_config_loads_into_the_classes(stack):
    """The merged hub.config, loaded as traitlets config, gives values the traits accept."""
    from traitlets.config import Config

    values = helm_merge({}, *(overlay(n) for n in stack))
    config = Config(values["hub"]["config"])
    # what hub.extraConfig / hub.extraEnv supply at run time
    config.HubfleetLDAPAuthenticator.search_bind_password = "from-the-secret"
    classes = configurable_classes()
    for section in ("HubfleetLDAPAuthenticator", "HubfleetOIDCAuthenticator", "HubfleetAuthenticator"):
        if section in values["hub"]["config"]:
            obj = classes[section](config=config)
            for option, value in values["hub"]["config"][section].items():
                got = getattr(obj, option)
                if isinstance(got, set):
                    got, value = sorted(got), sorted(value)
                assert got == value, (section, option)


# ---------------------------------------------------------------------------------------------- profiles and storage


def profiles_file() -> dict:
    return overlay(BASE)["hub"]["extraFiles"]["hubfleet-profiles"]


def test_the_profiles_file_is_where_profilespawner_reads_it():
    assert profiles_file()["mountPath"] == overlay(BASE)["hub"]["config"]["ProfileSpawner"]["profiles_file"]
    assert profiles_file()["mountPath"].endswith(".yaml")  # z2jh renders `data` by the file extension


def test_the_profiles_document_parses():
    from hubfleet.spawners.profiles import parse_catalog

    # z2jh writes `data` out as YAML; round-trip it the same way before parsing
    catalog = parse_catalog(yaml.safe_load(yaml.safe_dump(profiles_file()["data"])))
    assert [p.slug for p in catalog.profiles] == ["small", "medium", "gpu"]
    small, medium, gpu = catalog.profiles
    assert small.default and not small.access.groups
    assert medium.access.groups == {"researchers"}
    assert gpu.gpu is not None and gpu.gpu.count == 1 and gpu.access.groups == {"gpu-users"}
    assert any(q.profile == "gpu" and q.max_servers == 4 for q in catalog.quotas)


def test_every_profile_image_is_prepulled():
    from hubfleet.spawners.profiles import parse_catalog

    catalog = parse_catalog(profiles_file()["data"])
    images = {choice.image for p in catalog.profiles for choice in p.images}
    pulled = {f"{i['name']}:{i['tag']}" for i in overlay(BASE)["prePuller"]["extraImages"].values()}
    assert images and images <= pulled, images - pulled


def test_singleuser_storage_matches_profilespawner():
    from kubespawner import KubeSpawner

    from hubfleet.spawners import ProfileSpawner

    storage = merged(*STACKS[-1])["singleuser"]["storage"]
    assert storage["type"] == "dynamic"
    assert storage["homeMountPath"] == ProfileSpawner.class_traits()["home_mount_path"].default_value
    assert storage["dynamic"]["pvcNameTemplate"] == KubeSpawner.class_traits()["pvc_name_template"].default_value
    assert "{user_server}" in storage["dynamic"]["pvcNameTemplate"]  # named servers get (and delete) their own PVC
    assert storage["capacity"] == ProfileSpawner._default_storage_capacity(None)
    assert storage["dynamic"]["storageAccessModes"] == ProfileSpawner._default_storage_access_modes(None)


def test_z2jh_culler_stays_on_until_hubfleets_replaces_it():
    for stack in STACKS:
        assert merged(*stack)["cull"]["enabled"] is True


# ---------------------------------------------------------------------------------------------- hardening


def test_autohttps_is_letsencrypt_with_hsts_tls12_and_headers():
    """What the overlay asks for, over the chart's defaults. That Traefik really does it: the rendered config run by
    the real Traefik, tests/integration/platform/test_traefik_config.py and test_autohttps_e2e.py."""
    proxy = merged("autohttps-hardened.yaml")["proxy"]
    https = proxy["https"]
    assert https["enabled"] is True and https["type"] == "letsencrypt" and https["hosts"]
    assert https["letsencrypt"]["contactEmail"]
    assert https["letsencrypt"]["acmeServer"] == "https://acme-v02.api.letsencrypt.org/directory"
    traefik = proxy["traefik"]
    dynamic = traefik["extraDynamicConfig"]
    headers = dynamic["http"]["middlewares"]["security-headers"]["headers"]
    # frameDeny (Traefik's name; `frameworkDeny` made Traefik drop the whole dynamic.yaml)
    assert headers["frameDeny"] is True and headers["customFrameOptionsValue"] == "SAMEORIGIN"
    assert headers["contentTypeNosniff"] and headers["referrerPolicy"]
    assert "frameworkDeny" not in headers
    assert traefik["extraStaticConfig"]["entryPoints"]["https"]["http"]["middlewares"] == ["security-headers@file"]
    assert dynamic["tls"]["options"]["default"]["curvePreferences"] == ["X25519", "CurveP256", "CurveP384"]
    assert traefik["hsts"]["maxAge"] >= 31536000
    assert traefik["resources"]["requests"] and traefik["resources"]["limits"]["memory"]
    for part in ("traefik", "chp"):
        assert proxy[part]["networkPolicy"]["enabled"] is True
        assert proxy[part]["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False
        csc = proxy[part]["containerSecurityContext"]
        assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"]["drop"] == ["ALL"]
        assert csc["readOnlyRootFilesystem"] is True and csc["runAsNonRoot"] is True
        assert proxy[part]["extraPodSpec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_security_hardening():
    values = merged(BASE, "auth-ldap.yaml", "security-hardened.yaml")
    su = values["singleuser"]
    assert (su["uid"], su["fsGid"], su["allowPrivilegeEscalation"]) == (1000, 100, False)
    psc = su["extraPodConfig"]["securityContext"]
    assert psc["runAsNonRoot"] and psc["fsGroup"] == 100 and psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = values["hub"]["config"]["ProfileSpawner"]["container_security_context"]
    assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    rules = su["networkPolicy"]["egressAllowRules"]
    assert not rules["cloudMetadataServer"] and not rules["privateIPs"] and not rules["nonPrivateIPs"]
    assert {p["port"] for rule in su["networkPolicy"]["egress"] for p in rule["ports"]} == {80, 443}
    assert su["cloudMetadata"]["ip"] == "169.254.169.254"  # merged from the chart, still required by the schema
    assert values["hub"]["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False
    assert values["scheduling"]["userPods"]["nodeAffinity"]["matchNodePurpose"] == "require"
    assert values["prePuller"]["hook"]["enabled"] is False and values["prePuller"]["continuous"]["enabled"] is True


def test_singleuser_security_context_is_a_valid_pod_security_context():
    """The extraPodConfig securityContext is a real Kubernetes PodSecurityContext (strict OpenAPI validation)."""
    kv = pytest.importorskip("kubernetes_validate")
    psc = overlay("security-hardened.yaml")["singleuser"]["extraPodConfig"]["securityContext"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"securityContext": psc, "containers": [{"name": "x", "image": "x",
                    "securityContext": overlay("security-hardened.yaml")["hub"]["config"]["ProfileSpawner"][
                        "container_security_context"]}]}}
    assert kv.validate(pod, "1.37", strict=True) == "1.37"  # the version test_profiles_spawner.py validates with
