"""``hubfleet values migrate``: tables of stock z2jh values -> the hubfleet overlay and the report, and bad input.

The rendering of both files with the real chart is tests/integration/test_values_migrate_render.py.
"""

from __future__ import annotations

import argparse
import inspect
import io
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from hubfleet.config import migrate
from hubfleet.config.migrate import CULL_DEFAULTS, Z2JH_SCHEMA, MigrationError, migrate_values
from hubfleet.config.values import helm_merge

REPO = Path(__file__).resolve().parents[2]
SITES = REPO / "tests" / "data" / "z2jh-sites"
Z2JH = Path("/work/shared/z2jh-4.4.0")
for candidate in (REPO.parent / "shared" / "z2jh-4.4.0", REPO.parent.parent / "shared" / "z2jh-4.4.0"):
    if candidate.is_dir():
        Z2JH = candidate


def _classes(overlay):
    return (overlay.get("hub", {}).get("config", {}).get("JupyterHub", {}).get("authenticator_class"),
            overlay.get("hub", {}).get("config", {}).get("JupyterHub", {}).get("spawner_class"))


def _values(auth=None, spawner=None, **hub_config):
    jupyterhub = {k: v for k, v in (("authenticator_class", auth), ("spawner_class", spawner)) if v}
    return {"hub": {"config": {"JupyterHub": jupyterhub, **hub_config}}}


def _kinds(m, key):
    return [f.kind for f in m.findings if f.key == key]


@pytest.mark.parametrize(("given", "expected", "kind"), [
    ("ldapauthenticator.LDAPAuthenticator", "hubfleet-ldap", "translated"),
    ("ldapauthenticator.ldapauthenticator.LDAPAuthenticator", "hubfleet-ldap", "translated"),
    ("ldap", "hubfleet-ldap", "translated"),
    ("ldapauthenticator", "hubfleet-ldap", "translated"),
    ("generic-oauth", "hubfleet-oidc", "translated"),
    ("oauthenticator.generic.GenericOAuthenticator", "hubfleet-oidc", "translated"),
    ("oauthenticator.GenericOAuthenticator", "hubfleet-oidc", "translated"),
    ("hubfleet-ldap", None, "kept"),         # already hubfleet's: the overlay does not restate it
    ("hubfleet", None, "kept"),
    ("github", None, "decide"),              # no hubfleet equivalent: kept, reported
    ("oauthenticator.azuread.AzureAdOAuthenticator", None, "decide"),
    ("nativeauthenticator.NativeAuthenticator", None, "decide"),
    (None, None, "decide"),                  # the chart's default 'dummy'
])
def test_authenticator_class(given, expected, kind):
    m = migrate_values(_values(auth=given))
    assert _classes(m.overlay)[0] == expected
    assert _kinds(m, "hub.config.JupyterHub.authenticator_class") == [kind]


def test_untranslated_authenticator_is_named_in_the_report():
    m = migrate_values(_values(auth="oauthenticator.azuread.AzureAdOAuthenticator"))
    [finding] = [f for f in m.findings if f.key.endswith("authenticator_class")]
    assert "AzureAdOAuthenticator" in finding.text and "hubfleet-oidc" in finding.text


@pytest.mark.parametrize(("given", "expected", "kind"), [
    (None, "hubfleet", "translated"),        # z2jh's jupyterhub_config.py sets kubespawner.KubeSpawner
    ("kubespawner.KubeSpawner", "hubfleet", "translated"),
    ("kubespawner", "hubfleet", "translated"),
    ("hubfleet", None, "kept"),
    ("mysite.spawner.CampusSpawner", None, "decide"),
])
def test_spawner_class(given, expected, kind):
    m = migrate_values(_values(spawner=given))
    assert _classes(m.overlay)[1] == expected
    assert _kinds(m, "hub.config.JupyterHub.spawner_class") == [kind]


def _culler_args(m):
    command = m.overlay["hub"]["services"]["hubfleet-culler"]["command"]
    assert command[:3] == ["python3", "-m", "hubfleet.services.culler"]
    return command[3:]


URL = "http://localhost:8081/hub/api"
CHART_DEFAULTS = {"timeout": 3600, "cull_every": 600, "concurrency": 10, "max_age": 0, "cull_users": False,
                  "remove_named_servers": False, "url": URL}


def _culler_settings(m) -> dict:
    """What hubfleet's culler makes of the command the migration wrote (its own option parser)."""
    from hubfleet.services.culler.app import CullerApp

    app = CullerApp()
    app.parse_command_line(_culler_args(m))
    settings = {name: getattr(app, name) for name in CHART_DEFAULTS}
    if app.cull_users:
        settings["cull_admin_users"] = app.cull_admin_users
    return settings


@pytest.mark.parametrize(("cull", "expected"), [
    # the chart's defaults (no cull: in the site file): what z2jh passed to jupyterhub-idle-culler
    ({}, {}),
    ({"timeout": 1800, "every": 60, "concurrency": 3}, {"timeout": 1800, "cull_every": 60, "concurrency": 3}),
    ({"maxAge": 604800, "removeNamedServers": True}, {"max_age": 604800, "remove_named_servers": True}),
    ({"users": True}, {"cull_users": True, "cull_admin_users": True}),  # z2jh's adminUsers default: true
    ({"users": True, "adminUsers": False}, {"cull_users": True, "cull_admin_users": False}),
    ({"adminUsers": False}, {}),  # only matters with users, in both cullers
    # 0 / null: z2jh passed nothing, so the stock culler's own defaults applied (timeout 600, every timeout/2)
    ({"timeout": 0, "every": 0, "concurrency": None, "maxAge": None}, {"timeout": 600, "cull_every": 0}),
])
def test_cull_settings_become_the_culler_service(cull, expected):
    m = migrate_values({"cull": cull})
    assert m.overlay["cull"] == {"enabled": False}
    assert _culler_settings(m) == {**CHART_DEFAULTS, **expected}
    role = m.overlay["hub"]["loadRoles"]["hubfleet-culler"]
    assert role["services"] == ["hubfleet-culler"]
    assert {"list:users", "read:users:activity", "read:servers", "delete:servers"} <= set(role["scopes"])
    assert ({"read:users", "delete:users"} <= set(role["scopes"])) == bool(cull.get("users"))
    assert "admin:users" not in role["scopes"]


def test_culler_url_follows_hub_base_url():
    m = migrate_values({"hub": {"baseUrl": "/jupyter/"}})
    assert _culler_settings(m)["url"] == "http://localhost:8081/jupyter/hub/api"


@pytest.mark.parametrize(("site", "pod_security_context", "decide"), [
    # z2jh's default: a root iptables init container blocks the metadata server -> no pod-level runAsNonRoot
    ({}, {}, set()),
    ({"singleuser": {"cloudMetadata": {"blockWithIptables": False}}}, None, set()),
    ({"hub": {"config": {"KubeSpawner": {"pod_security_context": {"fsGroup": 42}}}}}, None,
     {"hub.config.ProfileSpawner.pod_security_context"}),
    ({"singleuser": {"uid": 0, "cloudMetadata": {"blockWithIptables": False}}}, None, {"singleuser.uid"}),
    ({"singleuser": {"allowPrivilegeEscalation": True}}, {}, {"singleuser.allowPrivilegeEscalation"}),
    # not switched to ProfileSpawner: nothing to say about its pods
    ({"hub": {"config": {"JupyterHub": {"spawner_class": "mysite.Spawner"}}}}, None, set()),
])
def test_pod_security_differences(site, pod_security_context, decide):
    m = migrate_values(site)
    got = m.overlay.get("hub", {}).get("config", {}).get("ProfileSpawner", {}).get("pod_security_context")
    assert got == pod_security_context
    assert {f.key for f in m.of_kind("decide")} - {"hub.image", "hub.config.JupyterHub.authenticator_class",
                                                    "hub.config.JupyterHub.spawner_class"} == decide


def test_cull_disabled_adds_no_culler():
    m = migrate_values({"cull": {"enabled": False, "timeout": 60}})
    assert "cull" not in m.overlay and "services" not in m.overlay.get("hub", {})
    assert _kinds(m, "cull.enabled") == ["kept"]


def test_existing_hubfleet_culler_is_not_replaced():
    site = {"hub": {"services": {"hubfleet-culler": {"command": ["python3", "-m", "hubfleet.services.culler"]}}}}
    m = migrate_values(site)
    assert m.overlay["cull"] == {"enabled": False} and "services" not in m.overlay["hub"]
    assert _kinds(m, "hub.services.hubfleet-culler") == ["decide"]


def test_negative_cull_value_names_the_key():
    with pytest.raises(MigrationError, match=r"cull\.maxAge: -1 is negative"):
        migrate_values({"cull": {"maxAge": -1}})


def test_profiles_are_kept_as_they_are():
    site = yaml.safe_load((SITES / "ldap-site.yaml").read_text())
    m = migrate_values(site)
    assert "singleuser" not in m.overlay  # the overlay does not restate (or change) singleuser.profileList
    assert helm_merge(site, m.overlay)["singleuser"] == site["singleuser"]
    [kept] = [f for f in m.findings if f.key == "singleuser.profileList" and "as they are" in f.text]
    assert "3 profile(s)" in kept.text and "small, research, gpu" in kept.text


def test_ldap_site():
    site = yaml.safe_load((SITES / "ldap-site.yaml").read_text())
    m = migrate_values(site, hub_image="registry.campus.example.org/hub:4.4.0-hubfleet")
    assert _classes(m.overlay) == ("hubfleet-ldap", "hubfleet")
    assert m.overlay["hub"]["image"] == {"name": "registry.campus.example.org/hub", "tag": "4.4.0-hubfleet"}
    assert "LDAPAuthenticator" not in m.overlay["hub"]["config"]  # read through hubfleet-ldap's alias table
    assert _culler_settings(m) == {**CHART_DEFAULTS, "timeout": 7200, "concurrency": 5, "cull_every": 300,
                                   "max_age": 86400, "remove_named_servers": True,
                                   "url": "http://localhost:8081/jupyter/hub/api"}
    decide = {f.key for f in m.of_kind("decide")}
    assert decide == {"hub.extraConfig.00-announcement", "hub.extraConfig.10-pre-spawn",
                      "hub.config.LDAPAuthenticator.lookup_dn_search_password"}
    assert {f.key for f in m.of_kind("kept")} == {"hub.config.LDAPAuthenticator", "singleuser.profileList",
                                                  "hub.config.JupyterHub", "hub.config.Authenticator"}
    [authenticator] = [f for f in m.findings if f.key == "hub.config.Authenticator"]
    assert authenticator.text == "passed to the hub as before (admin_users, allow_all)"


def test_keycloak_site_gets_the_realm_as_issuer():
    site = yaml.safe_load((SITES / "keycloak-site.yaml").read_text())
    m = migrate_values(site)
    assert _classes(m.overlay) == ("hubfleet-oidc", "hubfleet")
    assert m.overlay["hub"]["config"]["HubfleetOIDCAuthenticator"] == {"issuer": "https://sso.example.org/realms/hub"}
    assert "GenericOAuthenticator" not in m.overlay["hub"]["config"]  # hubfleet-oidc is a GenericOAuthenticator


def test_oidc_issuer_not_derivable_is_a_decision():
    m = migrate_values(_values(auth="generic-oauth", GenericOAuthenticator={
        "authorize_url": "https://idp.example.org/oauth2/authorize", "token_url": "https://idp.example.org/token"}))
    assert "HubfleetOIDCAuthenticator" not in m.overlay["hub"]["config"]
    assert _kinds(m, "hub.config.HubfleetOIDCAuthenticator.issuer") == ["decide"]


def test_secrets_are_named_never_shown():
    site = yaml.safe_load((SITES / "keycloak-site.yaml").read_text())
    m = migrate_values(site)
    report = "\n".join(map(str, m.findings))
    assert "hub.config.GenericOAuthenticator.client_secret" in report
    assert "not-a-real-secret" not in report and "not-a-real-secret" not in migrate.render_overlay(m, source="x")


@pytest.mark.parametrize(("code", "hint"), [
    ('c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"', "overrides hub.config"),
    ("c.KubeSpawner.profile_list = make_profiles()", "ProfileSpawner reads KubeSpawner's profile_list"),
    ("c.KubeSpawner.modify_pod_hook = f", "KubeSpawner hook"),
    ("c.JupyterHub.services.append({'name': 'cull'})", "second idle culler"),
    ("import os\nprint(os.getcwd())", "check it against hubfleet"),
])
def test_extra_config_is_reported_with_what_to_check(code, hint):
    m = migrate_values({"hub": {"extraConfig": {"site": code}}})
    [finding] = [f for f in m.findings if f.key == "hub.extraConfig.site"]
    assert finding.kind == "decide" and hint in finding.text


def test_report_in_the_overlay_cannot_inject_yaml():
    """A site key with a newline becomes one escaped comment line, not YAML of its own."""
    m = migrate_values({"hub": {"extraConfig": {"x\ncull: {enabled: true}": "pass"}}})
    text = migrate.render_overlay(m, source="site.yaml")
    assert yaml.safe_load(text)["cull"] == {"enabled": False}
    assert "#   decide: hub.extraConfig.x\\ncull: {enabled: true}: Python" in text


def test_existing_secret_is_a_decision():
    m = migrate_values({"hub": {"existingSecret": "hub-secrets"}})
    [finding] = [f for f in m.findings if f.key == "hub.existingSecret"]
    assert finding.kind == "decide" and "'hub-secrets'" in finding.text and "values.yaml" in finding.text


def test_migrating_twice_changes_nothing_more():
    site = yaml.safe_load((SITES / "ldap-site.yaml").read_text())
    first = migrate_values(site)
    merged = helm_merge(site, first.overlay)
    second = migrate_values(merged)
    assert second.overlay == {}
    assert {f.key for f in second.of_kind("translated")} == set()


def test_emitted_classes_are_hubfleets_entry_points():
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert set(migrate.AUTHENTICATORS.values()) | set(migrate.HUBFLEET_AUTHENTICATORS) <= set(
        entry_points["jupyterhub.authenticators"])
    assert "hubfleet" in entry_points["jupyterhub.spawners"]


# ---- pre-flight checks through the parts' own validators ---------------------------------------------------------

def _has_ldap_compat():
    try:
        from hubfleet.authenticators import ldap_compat  # noqa: F401
    except ImportError:
        return False
    return True


def _parses_profile_list():
    from hubfleet.spawners.profiles import parse_catalog

    return "profile_list" in inspect.signature(parse_catalog).parameters


LDAP = {"hub": {"config": {"JupyterHub": {"authenticator_class": "ldapauthenticator.LDAPAuthenticator"},
                           "LDAPAuthenticator": {"server_address": "ldap.example.org", "lookup_dn": True,
                                                 "user_search_base": "ou=people,dc=example,dc=org",
                                                 "user_attribute": "uid", "admin_users": ["root"]}}}}
NEEDS_AUTH = "needs hubfleet.authenticators.ldap_compat (the auth helper's branch, issue 9 item 2)"
NEEDS_SPAWNER = "needs parse_catalog(profile_list=...) (the spawner helper's branch, issue 9 item 1)"


@pytest.mark.skipif(not _has_ldap_compat(), reason=NEEDS_AUTH)
def test_ldap_options_are_read_through_hubfleet_ldaps_table():
    m = migrate_values(LDAP, authenticator_options=["admin_users", "allowed_users"])
    notes = [f.text for f in m.findings if f.key == "hub.config.LDAPAuthenticator" and f.kind == "kept"]
    assert "ldapauthenticator's user_attribute is read as username_attribute" in notes
    assert not m.of_kind("decide") or all(f.key != "hub.config.LDAPAuthenticator" for f in m.of_kind("decide"))


@pytest.mark.skipif(not _has_ldap_compat(), reason=NEEDS_AUTH)
@pytest.mark.parametrize(("option", "value", "message"), [
    ("server_adress", "ldap.example.org", "server_adress is not an ldapauthenticator 2.0 option"),
    ("tls_strategy", "sometimes", "tls_strategy 'sometimes' is not one of"),
])
def test_ldap_option_hubfleet_would_refuse_is_a_decision(option, value, message):
    site = {"hub": {"config": {**LDAP["hub"]["config"],
                               "LDAPAuthenticator": {**LDAP["hub"]["config"]["LDAPAuthenticator"], option: value}}}}
    m = migrate_values(site, authenticator_options=["admin_users"])
    [decide] = [f for f in m.of_kind("decide") if f.key == "hub.config.LDAPAuthenticator"]
    assert "hubfleet-ldap would not start" in decide.text and message in decide.text


def test_without_ldap_compat_the_report_says_the_hub_checks(monkeypatch):
    import hubfleet.authenticators

    monkeypatch.setitem(sys.modules, "hubfleet.authenticators.ldap_compat", None)  # import fails
    monkeypatch.delattr(hubfleet.authenticators, "ldap_compat", raising=False)
    m = migrate_values(LDAP)
    assert any(f.key == "hub.config.LDAPAuthenticator" and "checks the options when the hub starts" in f.text
               for f in m.findings)


@pytest.mark.skipif(not _parses_profile_list(), reason=NEEDS_SPAWNER)
@pytest.mark.parametrize(("entry", "message"), [
    ({"display_name": "A", "kubespawner_overide": {}}, "unknown key 'kubespawner_overide'"),
    ({"display_name": "A", "default": "yes"}, "default: expected boolean"),
    ({"display_name": "A", "profile_options": {"image": {"display_name": "Image", "unlisted_choice": {
        "enabled": True, "validation_regex": "(["}}}}, "invalid regular expression"),
])
def test_profile_entry_profilespawner_would_refuse_is_a_decision(entry, message):
    m = migrate_values({"singleuser": {"profileList": [entry]}})
    [decide] = [f for f in m.of_kind("decide") if f.key == "singleuser.profileList"]
    assert "ProfileSpawner would refuse it" in decide.text and message in decide.text


@pytest.mark.skipif(not _parses_profile_list(), reason=NEEDS_SPAWNER)
def test_stock_profile_list_parses():
    site = yaml.safe_load((SITES / "ldap-site.yaml").read_text())
    m = migrate_values(site)
    assert "checked: 3 profile(s) parse as ProfileSpawner parses them" in [
        f.text for f in m.findings if f.key == "singleuser.profileList"]


def test_without_the_profile_list_parser_the_report_says_so(monkeypatch):
    import hubfleet.spawners

    monkeypatch.setitem(sys.modules, "hubfleet.spawners.profiles", None)  # import fails
    monkeypatch.delattr(hubfleet.spawners, "profiles", raising=False)
    m = migrate_values({"singleuser": {"profileList": [{"display_name": "A"}]}})
    assert any(f.key == "singleuser.profileList" and f.text.startswith("not checked here") for f in m.findings)


# ---- the chart facts the module carries ------------------------------------------------------------------------

def _chart(name):
    path = Z2JH / name
    assert path.is_file(), f"z2jh 4.4.0 chart data missing at {path} (see /work/shared/z2jh-4.4.0/README.md)"
    return yaml.safe_load(path.read_text())


def test_cull_defaults_are_the_charts():
    assert _chart("values.yaml")["cull"] == CULL_DEFAULTS


def test_schema_subset_is_the_charts():
    chart = _chart("values.schema.yaml")
    assert set(Z2JH_SCHEMA["properties"]) == set(chart["properties"])
    assert set(Z2JH_SCHEMA["properties"]["hub"]["properties"]) == set(chart["properties"]["hub"]["properties"])
    ours, theirs = Z2JH_SCHEMA["properties"]["cull"], chart["properties"]["cull"]
    assert {k: v["type"] for k, v in ours["properties"].items()} == {
        k: v["type"] for k, v in theirs["properties"].items()}
    assert ours["additionalProperties"] is theirs["additionalProperties"] is False
    assert chart["properties"]["hub"]["properties"]["config"]["patternProperties"].keys() == \
        Z2JH_SCHEMA["properties"]["hub"]["properties"]["config"]["patternProperties"].keys()


# ---- the command: add_parser, python -m, bad input --------------------------------------------------------------

def _run(tmp_path, text, *args):
    path = tmp_path / "site-values.yaml"
    path.write_text(text)
    parser = argparse.ArgumentParser(prog="hubfleet values")
    migrate.add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["migrate", str(path), *args])
    out, err = io.StringIO(), io.StringIO()
    code = ns.func(ns, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_command_writes_the_overlay_and_reports_on_stderr(tmp_path):
    code, out, err = _run(tmp_path, (SITES / "ldap-site.yaml").read_text(), "--hub-image", "reg.example.org/h:1")
    assert code == 0
    overlay = yaml.safe_load(out)
    assert _classes(overlay) == ("hubfleet-ldap", "hubfleet") and overlay["cull"] == {"enabled": False}
    assert out.startswith("# hubfleet overlay for site-values.yaml")
    assert "translated: hub.config.JupyterHub.authenticator_class: 'ldapauthenticator.LDAPAuthenticator'" in err
    assert "decide: hub.extraConfig.10-pre-spawn" in err
    assert re.match(r"5 translated, \d+ kept, 3 need a decision", err.rstrip().splitlines()[-1])


def test_several_site_files_are_merged_as_helm_merges_them(tmp_path):
    """A site deployed with `-f base.yaml -f secrets.yaml`: the overlay is for both, in that order."""
    base = tmp_path / "base.yaml"
    base.write_text("hub:\n  config:\n    JupyterHub:\n      authenticator_class: ldap\ncull:\n  timeout: 60\n")
    code, out, err = _run(tmp_path, "cull:\n  timeout: 120\n  every: 30\n", str(base))
    assert code == 0, err
    overlay = yaml.safe_load(out)
    assert _classes(overlay) == ("hubfleet-ldap", "hubfleet")
    # the later file wins, as with helm -f site-values.yaml -f base.yaml
    assert "--timeout=60" in overlay["hub"]["services"]["hubfleet-culler"]["command"]
    assert "-f site-values.yaml -f base.yaml -f <this file>" in out.splitlines()[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("hubx: {}\n")
    code, _, err = _run(tmp_path, "{}\n", str(bad))
    assert code == 2 and "unknown key 'hubx'" in err and f"{bad} is not z2jh 4.4.0 values" in err


def test_full_writes_one_complete_file(tmp_path):
    site = (SITES / "ldap-site.yaml").read_text()
    code, out, _ = _run(tmp_path, site, "--full")
    assert code == 0
    full = yaml.safe_load(out)
    assert full == helm_merge(yaml.safe_load(site), migrate_values(yaml.safe_load(site)).overlay)
    assert "|" in out.split("extraConfig:")[1].splitlines()[1]  # multi-line Python stays a block literal


def test_output_file_is_written_only_on_success(tmp_path):
    target = tmp_path / "out.yaml"
    code, out, _ = _run(tmp_path, "cull: {timeout: 60}\n", "-o", str(target))
    assert code == 0 and out == "" and yaml.safe_load(target.read_text())["cull"] == {"enabled": False}
    target.unlink()
    code, _, err = _run(tmp_path, "hubb: {}\n", "-o", str(target))
    assert code == 2 and not target.exists()


class _DirWatch:
    """Looks at every file in a directory each time the process raises an audit event (open, chmod, rename, ...):
    any step of a write that creates a file and later narrows its mode, or renames a readable file into place, is
    seen with the file's mode at that step. Installed once per process (audit hooks cannot be removed)."""

    current: "_DirWatch | None" = None

    def __init__(self, directory: Path):
        self.directory, self.seen, self.loose, self._busy = directory, set(), [], False

    @classmethod
    def hook(cls, event, args):
        watch = cls.current
        if watch is None or watch._busy:
            return
        watch._busy = True  # os.scandir raises an audit event itself
        try:
            for entry in os.scandir(watch.directory):
                if entry.is_symlink():
                    continue
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                watch.seen.add(entry.name)
                if mode & 0o077:
                    watch.loose.append(f"{entry.name} {oct(mode)} at {event}")
        finally:
            watch._busy = False


sys.addaudithook(_DirWatch.hook)


def test_full_output_holds_the_sites_secrets_and_is_never_readable_by_others(tmp_path):
    """--full writes the site's values, secrets included: with the usual umask 022, every file the command makes in
    the output directory is 0600 at every step of the write (not only once renamed), and the result is 0600."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "hubfleet-values.yaml"
    old_umask = os.umask(0o022)
    _DirWatch.current = watch = _DirWatch(out_dir)
    try:
        code, _, err = _run(tmp_path, (SITES / "ldap-site.yaml").read_text(), "--full", "-o", str(target))
    finally:
        _DirWatch.current = None
        os.umask(old_umask)
    assert code == 0, err
    assert "not-a-real-password" in target.read_text()  # the secret really is in the file
    assert watch.loose == []
    assert watch.seen, "no file was observed while the command wrote (the check would prove nothing)"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in out_dir.iterdir()] == [target.name]  # no temporary file left behind


def test_output_does_not_follow_a_prepared_temporary_name(tmp_path):
    """Someone who can write the output directory and prepared ``FILE.tmp`` as a symlink gets nothing."""
    target = tmp_path / "hubfleet-values.yaml"
    elsewhere = tmp_path / "elsewhere.yaml"
    (tmp_path / "hubfleet-values.yaml.tmp").symlink_to(elsewhere)
    code, _, err = _run(tmp_path, (SITES / "ldap-site.yaml").read_text(), "--full", "-o", str(target))
    assert code == 0, err
    assert not elsewhere.exists()
    assert not target.is_symlink() and "not-a-real-password" in target.read_text()


@pytest.mark.parametrize(("text", "message"), [
    ("- hub\n- cull\n", "holds a list at the top, not a mapping of z2jh keys"),
    ("just a string\n", "holds a str at the top"),
    ("hub: {}\nculler: {timeout: 60}\n", "(top level): unknown key 'culler'; known keys: cull, custom"),
    ("hub:\n  confg: {}\n", "hub: unknown key 'confg'"),
    ("hub:\n  config:\n    loadRoles: {}\n", "hub.config: unknown key 'loadRoles'"),
    ("cull:\n  timout: 60\n", "cull: unknown key 'timout'"),
    ("cull:\n  timeout: 1h\n", "cull.timeout: expected integer or null, got str '1h'"),
    ("singleuser:\n  profileList: {small: {}}\n", "singleuser.profileList: expected array"),
    ("hub:\n  extraConfig:\n    a: 42\n", "hub.extraConfig.a: expected string"),
    ("hub: [1, 2\n", "not valid YAML"),
    ("cull: {maxAge: -5}\n", "cull.maxAge: -5 is negative"),
])
def test_bad_input_is_one_clear_line(tmp_path, text, message):
    code, out, err = _run(tmp_path, text)
    assert code == 2 and out == ""
    assert message in err, err
    assert "Traceback" not in err


def test_bad_hub_image(tmp_path):
    code, _, err = _run(tmp_path, "{}\n", "--hub-image", "no-tag")
    assert code == 2 and "--hub-image 'no-tag': expected NAME:TAG" in err


def test_python_dash_m(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hubfleet: {}\n")
    env_cmd = [sys.executable, "-m", "hubfleet.config.migrate"]
    ok = subprocess.run([*env_cmd, str(SITES / "keycloak-site.yaml")], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert _classes(yaml.safe_load(ok.stdout)) == ("hubfleet-oidc", "hubfleet")
    fail = subprocess.run([*env_cmd, str(bad)], capture_output=True, text=True, timeout=60)
    assert fail.returncode == 2 and fail.stdout == ""
    assert "unknown key 'hubfleet'" in fail.stderr and "is not z2jh 4.4.0 values" in fail.stderr
    assert "Traceback" not in fail.stderr
    missing = subprocess.run([*env_cmd, str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
