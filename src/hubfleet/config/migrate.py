"""``hubfleet values migrate``: the overlay that switches a stock z2jh 4.4.0 site to hubfleet.

    hubfleet values migrate site-values.yaml > hubfleet-values.yaml
    helm upgrade jhub jupyterhub/jupyterhub --version 4.4.0 -f site-values.yaml -f hubfleet-values.yaml

The overlay changes only what must change and leaves the site's file as it is (rolling back is the same
``helm upgrade`` without the second ``-f``):

- ``hub.config.JupyterHub.authenticator_class``: ldapauthenticator -> ``hubfleet-ldap`` (which reads
  ``hub.config.LDAPAuthenticator`` through its alias table), GenericOAuthenticator -> ``hubfleet-oidc`` (a
  GenericOAuthenticator, so ``hub.config.GenericOAuthenticator`` applies); other authenticators are kept and
  reported;
- ``hub.config.JupyterHub.spawner_class``: KubeSpawner -> ``hubfleet`` (ProfileSpawner, a KubeSpawner that reads
  ``singleuser.profileList`` unchanged, so the profiles are not restated);
- ``cull.*``: z2jh's jupyterhub-idle-culler off (``cull.enabled: false``) and hubfleet's culler as a hub service
  (``hub.services`` + ``hub.loadRoles``) with the same settings, built by :func:`hubfleet.config.culler.culler_service`;
- ``hub.image``: an image with hubfleet installed (``--hub-image``, else a placeholder to replace).

Everything else (``hub.extraConfig``, options with no hubfleet meaning, authenticators it cannot translate) is
reported as needing a decision. :func:`migrate_values` is pure (a mapping in, an overlay and findings out); the CLI
part below reads the file with :mod:`hubfleet.yamlfile` against the z2jh 4.4.0 schema subset it relies on.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import HubfleetError, explain
from ..files import write_private
from ..yamlfile import load_yaml, validate
from .culler import culler_service
from .migrate_checks import check_ldap_options, check_profile_list
from .values import helm_merge

__all__ = ["Finding", "Migration", "MigrationError", "Z2JH_SCHEMA", "add_parser", "main", "migrate_values",
           "render_overlay"]

Z2JH_VERSION = "4.4.0"
DOCS = "docs/migrating.md"

# z2jh 4.4.0 values.yaml `cull:` (the chart's defaults; tests/unit/test_values_migrate.py checks them).
CULL_DEFAULTS = {"enabled": True, "users": False, "adminUsers": True, "removeNamedServers": False, "timeout": 3600,
                 "every": 600, "concurrency": 10, "maxAge": 0}
# z2jh passes a cull.* value to jupyterhub-idle-culler only when it is truthy; these are then the culler's own.
IDLE_CULLER_DEFAULTS = {"timeout": 600, "concurrency": 10}
CULLER_NAME = "hubfleet-culler"
# hubfleet-base.yaml's placeholder: the stock hub image has no hubfleet in it.
PLACEHOLDER_IMAGE = {"name": "registry.example.org/your-org/k8s-hub-hubfleet", "tag": f"4.4.0-hubfleet{__version__}"}

# hub.config.JupyterHub.authenticator_class spellings -> hubfleet entry point (pyproject's jupyterhub.authenticators)
LDAP_CLASSES = ("ldap", "ldapauthenticator", "ldapauthenticator.LDAPAuthenticator",
                "ldapauthenticator.ldapauthenticator.LDAPAuthenticator")
GENERIC_CLASSES = ("generic-oauth", "generic", "oauthenticator.generic.GenericOAuthenticator",
                   "oauthenticator.GenericOAuthenticator")
AUTHENTICATORS = {**dict.fromkeys(LDAP_CLASSES, "hubfleet-ldap"), **dict.fromkeys(GENERIC_CLASSES, "hubfleet-oidc")}
# what keeps configuring the translated class, and where its option table is
AUTH_SECTIONS = {
    "hubfleet-ldap": (("LDAPAuthenticator",), "docs/authenticators.md#ldapauthenticator-compatibility"),
    "hubfleet-oidc": (("GenericOAuthenticator", "OAuthenticator"),
                      "docs/authenticators.md#genericoauthenticator-options"),
}
HUBFLEET_AUTHENTICATORS = ("hubfleet", "hubfleet-ldap", "hubfleet-oidc", "hubfleet-local")
# oauthenticator providers that speak OpenID Connect: hubfleet-oidc could replace them, but not by renaming
OIDC_PROVIDERS = ("azuread", "auth0", "cilogon", "google", "globus", "oauthenticator.azuread.AzureAdOAuthenticator",
                  "oauthenticator.auth0.Auth0OAuthenticator", "oauthenticator.cilogon.CILogonOAuthenticator",
                  "oauthenticator.google.GoogleOAuthenticator", "oauthenticator.globus.GlobusOAuthenticator")
KUBESPAWNER_CLASSES = ("kubespawner", "kubespawner.KubeSpawner", "kubespawner.spawner.KubeSpawner")
HUBFLEET_SPAWNERS = ("hubfleet", "hubfleet.spawners.ProfileSpawner", "hubfleet.spawners.spawner.ProfileSpawner")
# Keycloak's endpoints are <issuer>/protocol/openid-connect/<auth|token|userinfo>
KEYCLOAK_ENDPOINT = re.compile(r"^(https?://.+/realms/[^/]+)/protocol/openid-connect/(auth|token|userinfo)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SECRET_OPTION = re.compile(r"(password|secret|token)$", re.IGNORECASE)
# (pattern in hub.extraConfig Python, what the operator must check)
EXTRA_CONFIG_HINTS = (
    (re.compile(r"authenticator_class"), "it sets authenticator_class, which overrides hub.config (extraConfig runs "
                                         "last): set hubfleet's class there, or remove it"),
    (re.compile(r"spawner_class"), "it sets spawner_class, which overrides hub.config: use 'hubfleet' there"),
    (re.compile(r"profile_list"), "it builds profile_list in Python; ProfileSpawner reads KubeSpawner's "
                                  "profile_list too, so it should keep working"),
    (re.compile(r"\b(pre_spawn_hook|modify_pod_hook|options_form|options_from_form)\b"),
     "it sets a KubeSpawner hook or form; ProfileSpawner builds and validates the form itself: check it still "
     "applies"),
    (re.compile(r"\b(services|load_roles)\b|idle.?cull", re.IGNORECASE),
     "it adds services or roles: make sure none is a second idle culler"),
    (re.compile(r"LDAPAuthenticator|GenericOAuthenticator|OAuthenticator"),
     "it configures the authenticator in Python; hubfleet's classes read those options too"),
)

_TOP_KEYS = ("enabled", "fullnameOverride", "nameOverride", "imagePullSecret", "imagePullSecrets", "hub", "proxy",
             "singleuser", "scheduling", "ingress", "httpRoute", "prePuller", "custom", "cull", "debug", "rbac",
             "global")
_HUB_KEYS = ("revisionHistoryLimit", "config", "extraFiles", "baseUrl", "command", "args", "cookieSecret", "image",
             "networkPolicy", "db", "labels", "initContainers", "extraEnv", "extraConfig", "fsGid", "service", "pdb",
             "existingSecret", "nodeSelector", "tolerations", "activeServerLimit", "allowNamedServers",
             "annotations", "authenticatePrometheus", "concurrentSpawnLimit", "consecutiveFailureLimit",
             "podSecurityContext", "containerSecurityContext", "deploymentStrategy", "extraContainers",
             "extraVolumeMounts", "extraVolumes", "livenessProbe", "readinessProbe", "namedServerLimitPerUser",
             "redirectToServer", "resources", "lifecycle", "services", "loadRoles", "shutdownOnLogout",
             "templatePaths", "templateVars", "serviceAccount", "extraPodSpec")
_OBJECT = {"type": "object"}
_NULLABLE = {"integer": {"type": ["integer", "null"]}, "boolean": {"type": ["boolean", "null"]}}

# The part of z2jh 4.4.0's values.schema.yaml a site file is read against: every top-level and hub.* key (an
# unknown one is not z2jh's), and the exact types of what the migration reads. The tests check it against the chart.
Z2JH_SCHEMA: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{key: {} for key in _TOP_KEYS},
        "hub": {"type": "object", "additionalProperties": False, "properties": {
            **{key: {} for key in _HUB_KEYS},
            "config": {"type": "object", "additionalProperties": False,
                       "patternProperties": {"^[A-Z].*$": {"type": "object"}}},
            "extraConfig": {"type": "object", "additionalProperties": {"type": "string"}},
            "services": {"type": "object", "additionalProperties": _OBJECT},
            "loadRoles": {"type": "object", "additionalProperties": _OBJECT},
            "baseUrl": {"type": "string"},
            "image": _OBJECT,
        }},
        "singleuser": {"type": "object", "properties": {"profileList": {"type": "array", "items": _OBJECT}}},
        "cull": {"type": "object", "additionalProperties": False, "properties": {
            "enabled": {"type": "boolean"},
            **{key: _NULLABLE["boolean"] for key in ("users", "adminUsers", "removeNamedServers")},
            **{key: _NULLABLE["integer"] for key in ("timeout", "every", "concurrency", "maxAge")},
        }},
    },
}


class MigrationError(HubfleetError):
    """A values file the migration cannot translate (not z2jh's, or not a mapping)."""


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``kind`` is ``translated``, ``kept`` or ``decide``; ``key`` the values key."""

    kind: str
    key: str
    text: str

    def __str__(self) -> str:
        """One line, also as a YAML comment: control characters from the site's keys are escaped."""
        return _CONTROL.sub(lambda c: repr(c.group())[1:-1], f"{self.kind}: {self.key}: {self.text}")


@dataclass
class Migration:
    overlay: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def add(self, kind: str, key: str, text: str) -> None:
        self.findings.append(Finding(kind, key, text))

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def put(self, path: str, value: Any) -> None:
        """Set a dotted ``path`` (``hub.config.JupyterHub.spawner_class``) in the overlay."""
        *parents, last = path.split(".")
        node = self.overlay
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value


def _get(values: Mapping, path: str, default: Any = None) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


def migrate_values(values: Mapping, *, hub_image: str | None = None,
                   authenticator_options: Iterable[str] | None = None) -> Migration:
    """Translate a stock z2jh values mapping (already read against :data:`Z2JH_SCHEMA`) into the hubfleet overlay.

    ``hub_image`` is ``name:tag`` of a hub image with hubfleet installed. ``authenticator_options``: JupyterHub's
    Authenticator option names, for the check of an LDAPAuthenticator section (see :mod:`.migrate_checks`).
    Returns the overlay and the findings; raises :class:`MigrationError` for a document that is not a mapping or
    a ``cull.*`` value no culler takes.
    """
    if not isinstance(values, Mapping):
        raise MigrationError(f"a z2jh values file holds a mapping at the top, not {type(values).__name__}")
    m = Migration()
    _hub_image(values, m, hub_image)
    _authenticator(values, m, authenticator_options)
    _spawner(values, m)
    _culler(values, m)
    _extra_config(values, m)
    if _get(values, "hub.existingSecret"):
        m.add("decide", "hub.existingSecret", f"{values['hub']['existingSecret']!r}: the hub also merges that "
                                              "Secret's values.yaml, which the migration has not seen; pass it as "
                                              "one more file (kubectl get secret ... -o jsonpath='{.data.values\\."
                                              "yaml}' | base64 -d)")
    _other_config(values, m)
    _secrets_in_values(values, m)
    return m


def _hub_image(values: Mapping, m: Migration, hub_image: str | None) -> None:
    current = _get(values, "hub.image", {})
    if hub_image:
        name, sep, tag = hub_image.rpartition(":")
        if not sep or not name or "/" in tag:
            raise MigrationError(f"--hub-image {hub_image!r}: expected NAME:TAG, e.g. "
                                 f"registry.example.org/k8s-hub-hubfleet:4.4.0-hubfleet{__version__}")
        m.put("hub.image", {"name": name, "tag": tag})
        m.add("translated", "hub.image", f"{hub_image} (a hub image with hubfleet installed)")
    elif current.get("name"):
        m.add("decide", "hub.image", f"your own image {current['name']}:{current.get('tag', '')} is kept: make sure "
                                     f"it has `pip install hubfleet=={__version__}` (else the hub cannot load "
                                     f"hubfleet's classes)")
    else:
        m.put("hub.image", dict(PLACEHOLDER_IMAGE))
        m.add("decide", "hub.image", "the stock hub image has no hubfleet: build FROM quay.io/jupyterhub/k8s-hub:"
                                     f"{Z2JH_VERSION} with `pip install hubfleet=={__version__}` and replace the "
                                     "placeholder (or pass --hub-image NAME:TAG)")


def _authenticator(values: Mapping, m: Migration, authenticator_options: Iterable[str] | None) -> None:
    key = "hub.config.JupyterHub.authenticator_class"
    config = _get(values, "hub.config", {})
    current = _get(values, key)
    if current is None:
        m.add("decide", key, "not set: the chart's default 'dummy' (any password) stays; choose one of "
                             f"{', '.join(HUBFLEET_AUTHENTICATORS)} ({DOCS})")
        return
    if not isinstance(current, str):
        m.add("decide", key, f"{type(current).__name__} value, not a class name: kept; set one of "
                             f"{', '.join(HUBFLEET_AUTHENTICATORS)}")
        return
    if current in HUBFLEET_AUTHENTICATORS or current.startswith("hubfleet."):
        m.add("kept", key, f"{current!r} is already hubfleet's")
        return
    target = AUTHENTICATORS.get(current)
    if target is None:
        hint = ("it speaks OpenID Connect: hubfleet-oidc can replace it (set its issuer; " f"{DOCS})"
                if current in OIDC_PROVIDERS else
                "hubfleet has no equivalent; hubfleet's spawner and culler work with it as it is")
        m.add("decide", key, f"{current!r} is kept: {hint}")
        return
    m.put(key, target)
    m.add("translated", key, f"{current!r} -> {target!r}")
    sections, doc = AUTH_SECTIONS[target]
    for section in sections:
        if section in config:
            names = ", ".join(sorted(config[section])) or "no options"
            m.add("kept", f"hub.config.{section}", f"read by {target} as it is ({names}); option table: {doc}")
    if target == "hubfleet-ldap" and config.get("LDAPAuthenticator"):
        check_ldap_options(config["LDAPAuthenticator"], m.add, authenticator_options=authenticator_options)
    if target == "hubfleet-oidc":
        _oidc_issuer(config, m)


def _oidc_issuer(config: Mapping, m: Migration) -> None:
    """hubfleet-oidc verifies the id_token against the issuer's JWKS; a Keycloak site's issuer follows from its URLs."""
    key = "hub.config.HubfleetOIDCAuthenticator.issuer"
    options = {**(config.get("OAuthenticator") or {}), **(config.get("GenericOAuthenticator") or {})}
    if options.get("issuer") or (config.get("HubfleetOIDCAuthenticator") or {}).get("issuer"):
        return
    issuers = {match.group(1) for opt in ("authorize_url", "token_url", "userdata_url")
               if isinstance(options.get(opt), str) and (match := KEYCLOAK_ENDPOINT.match(options[opt]))}
    if len(issuers) == 1:
        issuer = issuers.pop()
        m.put(key, issuer)
        m.add("translated", key, f"{issuer} (Keycloak realm of authorize_url/token_url): enables discovery and "
                                 "id_token verification; the explicit *_url options still win")
    else:
        m.add("decide", key, "not set and not derivable from authorize_url/token_url: set the provider's issuer "
                             "URL so hubfleet-oidc verifies id_tokens against its JWKS (without it, the explicit "
                             "endpoints are used as before)")


def _spawner(values: Mapping, m: Migration) -> None:
    key = "hub.config.JupyterHub.spawner_class"
    current = _get(values, key)
    profiles = _get(values, "singleuser.profileList", [])
    config_profiles = _get(values, "hub.config.KubeSpawner.profile_list")
    if current is None or current in KUBESPAWNER_CLASSES:
        m.put(key, "hubfleet")
        m.add("translated", key, f"{current or 'kubespawner.KubeSpawner (the chart default)'} -> 'hubfleet' "
                                 "(ProfileSpawner, a KubeSpawner: singleuser.* still applies)")
    elif isinstance(current, str) and current in HUBFLEET_SPAWNERS:
        m.add("kept", key, f"{current!r} is already hubfleet's")
    else:
        m.add("decide", key, f"{current!r} is kept: not KubeSpawner, so not translated; if it subclasses "
                             "KubeSpawner, move its changes to hooks and use 'hubfleet'")
        return
    if current != "hubfleet" and current not in HUBFLEET_SPAWNERS:
        _pod_security(values, m)
    if profiles:
        names = ", ".join(str(p.get("slug") or p.get("display_name", "?")) for p in profiles)
        m.add("kept", "singleuser.profileList", f"{len(profiles)} profile(s) as they are ({names}): ProfileSpawner "
                                                "reads KubeSpawner's profile_list; hubfleet's extra keys (access, "
                                                "quota, ...) can be added to the entries")
        check_profile_list(profiles, m.add)
    if config_profiles is not None:
        m.add("kept", "hub.config.KubeSpawner.profile_list", "read by ProfileSpawner as it is")


def _pod_security(values: Mapping, m: Migration) -> None:
    """ProfileSpawner's pods run as non-root (pod and container security contexts); where the stock pod relied on
    root, say so, and keep z2jh's root iptables init container able to start."""
    spawner_config = {**_get(values, "hub.config.KubeSpawner", {}), **_get(values, "hub.config.ProfileSpawner", {})}
    if _get(values, "singleuser.cloudMetadata.blockWithIptables", True):
        key = "hub.config.ProfileSpawner.pod_security_context"
        if "pod_security_context" in spawner_config:
            m.add("decide", key, "set by the site: z2jh's iptables init container (singleuser.cloudMetadata."
                                 "blockWithIptables) runs as root, so it must not require runAsNonRoot")
        else:
            m.put(key, {})
            m.add("translated", key, "{} (as stock KubeSpawner): z2jh's iptables init container that blocks the cloud "
                                     "metadata server runs as root, which ProfileSpawner's pod-level runAsNonRoot "
                                     "would refuse; the notebook container keeps hubfleet's hardened context. Or "
                                     "block it with singleuser.networkPolicy and blockWithIptables: false "
                                     "(chart-values/security-hardened.yaml)")
    uid = spawner_config.get("uid", _get(values, "singleuser.uid"))
    if uid == 0:
        m.add("decide", "singleuser.uid", "0 (root): ProfileSpawner's container_security_context has runAsNonRoot, so "
                                          "the server would not start; run as a user, or set hub.config.ProfileSpawner."
                                          "container_security_context yourself")
    if _get(values, "singleuser.allowPrivilegeEscalation") is True:
        m.add("decide", "singleuser.allowPrivilegeEscalation", "true: ProfileSpawner's container_security_context "
                                                               "sets it false (sudo in the image stops working); set "
                                                               "hub.config.ProfileSpawner.container_security_context "
                                                               "to keep it")


def _culler(values: Mapping, m: Migration) -> None:
    site = _get(values, "cull", {})
    cull = {**CULL_DEFAULTS, **{k: v for k, v in site.items() if v is not None}}
    services = _get(values, "hub.services", {})
    if not cull["enabled"]:
        m.add("kept", "cull.enabled", "false: no idle culler before, none added (hubfleet's: docs/culler.md)")
        return
    if CULLER_NAME in services:
        m.put("cull.enabled", False)
        m.add("decide", f"hub.services.{CULLER_NAME}", "already there: kept as it is; z2jh's culler turned off")
        return
    for option in ("timeout", "every", "concurrency", "maxAge"):
        if cull[option] < 0:
            raise MigrationError(f"cull.{option}: {cull[option]} is negative", fix="use whole seconds >= 0")
    timeout = cull["timeout"] or IDLE_CULLER_DEFAULTS["timeout"]
    concurrency = cull["concurrency"] or IDLE_CULLER_DEFAULTS["concurrency"]
    base_url = _get(values, "hub.baseUrl", "/")
    # the stock culler's --url: the hub's own port inside the hub pod (z2jh's jupyterhub_config.py)
    url = "http://localhost:8081" + "/" + "/".join(p for p in (*base_url.split("/"), "hub", "api") if p)
    service, role = culler_service(
        timeout=timeout, cull_every=cull["every"], concurrency=concurrency, max_age=cull["maxAge"],
        cull_users=bool(cull["users"]), cull_admin_users=bool(cull["adminUsers"]),
        remove_named_servers=bool(cull["removeNamedServers"]), name=CULLER_NAME, python="python3",
        extra_args=[f"--url={url}"])
    m.put("cull.enabled", False)
    m.put(f"hub.services.{CULLER_NAME}", {"command": service["command"]})
    m.put(f"hub.loadRoles.{CULLER_NAME}", {k: v for k, v in role.items() if k != "name"})
    args = " ".join(service["command"][3:])
    m.add("translated", "cull.*", f"z2jh's jupyterhub-idle-culler off (cull.enabled: false); hub.services."
                                  f"{CULLER_NAME}: {args}")
    if not cull["timeout"]:
        m.add("translated", "cull.timeout", f"{cull['timeout']!r}: the stock culler then used its own default, "
                                            f"{timeout} s; kept explicit")
    if not cull["every"]:
        m.add("translated", "cull.every", "0: hubfleet's culler sweeps every half of the timeout (1-600 s), the "
                                          "stock culler every half of the timeout")
    if cull["users"]:
        m.add("translated", "cull.users", f"true: the role gets {', '.join(role['scopes'][-2:])} instead of the "
                                          "stock culler's admin:users")


def _extra_config(values: Mapping, m: Migration) -> None:
    for name, code in sorted(_get(values, "hub.extraConfig", {}).items()):
        hints = [text for pattern, text in EXTRA_CONFIG_HINTS if pattern.search(code or "")]
        m.add("decide", f"hub.extraConfig.{name}", "Python, not read by the migration; it still runs after "
                                                   "hub.config: " + ("; ".join(hints) or "check it against hubfleet"))


def _other_config(values: Mapping, m: Migration) -> None:
    """Every other hub.config section is passed to the hub as before: say so, so that nothing goes unmentioned."""
    reported = {f.key for f in m.findings}
    for section, options in _get(values, "hub.config", {}).items():
        names = sorted(set(options) - ({"authenticator_class", "spawner_class"} if section == "JupyterHub" else set()))
        if f"hub.config.{section}" not in reported and names:
            m.add("kept", f"hub.config.{section}", f"passed to the hub as before ({', '.join(names)})")


def _secrets_in_values(values: Mapping, m: Migration) -> None:
    for section, options in sorted(_get(values, "hub.config", {}).items()):
        if section in ("CryptKeeper", "ConfigurableHTTPProxy") or not isinstance(options, Mapping):
            continue  # the chart seeds and keeps those in its own Secret
        for option in sorted(options):
            if SECRET_OPTION.search(option) and options[option] and option != "cookie_secret":
                m.add("decide", f"hub.config.{section}.{option}", "a secret in the values file (value not shown): "
                                                                  "better from a Kubernetes Secret via hub.extraEnv "
                                                                  f"or hub.existingSecret ({DOCS})")


# ---- output ---------------------------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (``hub.extraConfig``) as ``|`` literals."""


def _str(dumper: yaml.SafeDumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def render_overlay(migration: Migration, *, source: str | Sequence[str], site: Mapping | None = None) -> str:
    """The YAML text to write: the overlay with a header saying how to apply it after the site's file(s)
    ``source``, or (``site`` given) the site's values with the overlay merged in as Helm would (one complete file)."""
    sources = [_CONTROL.sub("?", name) for name in ([source] if isinstance(source, str) else source)]
    if site is not None:
        body = helm_merge(site, migration.overlay)
        head = [f"# {' + '.join(sources)} switched to hubfleet by `hubfleet values migrate --full` "
                f"(hubfleet {__version__}).",
                "# The site's comments are not carried over; deploy with this file alone."]
    else:
        body = migration.overlay
        stack = " ".join(f"-f {name}" for name in sources)
        head = [f"# hubfleet overlay for {' + '.join(sources)}, written by `hubfleet values migrate` "
                f"(hubfleet {__version__}).",
                f"# Apply after the site's values:  helm upgrade jhub jupyterhub/jupyterhub --version {Z2JH_VERSION} "
                f"{stack} -f <this file>",
                "# Roll back: the same command without this file."]
    head += ["#", "# What it did, and what needs a decision (never a secret's value):"]
    head += [f"#   {finding}" for finding in migration.findings] or ["#   nothing to change"]
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110, allow_unicode=True)
    return "\n".join(head) + "\n" + ("" if body == {} else text)


# ---- command line ---------------------------------------------------------------------------------------------

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``migrate`` on the ``hubfleet values`` subparsers; ``func`` returns the exit code."""
    parser = subparsers.add_parser(
        "migrate", help="write the hubfleet overlay for a stock z2jh values file",
        description="Read a stock z2jh 4.4.0 values file and write the hubfleet overlay (authenticator and spawner "
                    "classes, hubfleet's culler with the cull.* settings, z2jh's culler off) to stdout; report on "
                    "stderr what was translated and what needs a decision. Exit status 2 if the file is not z2jh "
                    f"values. Step by step: {DOCS}.")
    parser.add_argument("values_files", nargs="+", metavar="SITE_VALUES.yaml",
                        help="the site's z2jh values file(s), in `helm -f` order (merged as Helm merges them)")
    parser.add_argument("--hub-image", metavar="NAME:TAG",
                        help="the hub image with hubfleet installed (default: a placeholder to replace)")
    parser.add_argument("--full", action="store_true",
                        help="write the site's values with the overlay merged in (one file) instead of the overlay")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout (only on success)")
    parser.set_defaults(func=run)
    return parser


def _authenticator_options() -> list[str] | None:
    """JupyterHub's Authenticator option names (they keep their names in an LDAPAuthenticator section)."""
    try:
        from jupyterhub.auth import Authenticator  # noqa: PLC0415  (the command line only)
    except ImportError:
        return None
    return Authenticator.class_trait_names(config=True)


def run(args: argparse.Namespace, *, stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    current = args.values_files[0]
    try:
        files = []
        for current in args.values_files:
            doc = load_yaml(current, empty={}, what="values file")
            if not isinstance(doc, Mapping):
                raise MigrationError(f"{current}: holds a {type(doc).__name__} at the top, not a mapping of z2jh "
                                     f"keys (hub, singleuser, cull, ...)")
            files.append(validate(doc, Z2JH_SCHEMA, source=current))
        values = helm_merge(*files)
        migration = migrate_values(values, hub_image=args.hub_image, authenticator_options=_authenticator_options())
        text = render_overlay(migration, source=[Path(f).name for f in args.values_files],
                              site=values if args.full else None)
        if args.output:
            write_private(args.output, text)  # --full carries the site's secrets: 0600 from the first byte
        else:
            stdout.write(text)
    except HubfleetError as e:
        print(f"hubfleet values migrate: error: {explain(e)}", file=stderr)
        if getattr(e, "key_path", ""):
            print(f"  {current} is not z2jh {Z2JH_VERSION} values (chart schema: values.schema.yaml)", file=stderr)
        return 2
    except OSError as e:
        print(f"hubfleet values migrate: error: cannot write {args.output}: {e.strerror or e}", file=stderr)
        return 2
    for finding in migration.findings:
        print(finding, file=stderr)
    counts = {kind: len(migration.of_kind(kind)) for kind in ("translated", "kept", "decide")}
    written = args.output or "<this output>"
    stack = " ".join(f"-f {name}" for name in ([] if args.full else args.values_files) + [written])
    print(f"{counts['translated']} translated, {counts['kept']} kept, {counts['decide']} need a decision "
          f"({DOCS}); next: hubfleet values check --chart <chart dir> {stack}", file=stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubfleet values")
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(["migrate", *argv])
    return args.func(args)


if __name__ == "__main__":  # python -m hubfleet.config.migrate SITE_VALUES.yaml [MORE.yaml ...]
    sys.exit(main())
