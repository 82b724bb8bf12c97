"""culler_service() entries and the culler application's options (no sockets)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hubfleet.cli import build_parser
from hubfleet.config.culler import culler_service
from hubfleet.services.culler.app import CullerApp, main
from hubfleet.services.culler.arbiter import CullPolicy


def test_service_and_least_privilege_role():
    service, role = culler_service(timeout=1800, policies_file="/etc/p.yaml", concurrency=20, cull_every=60)
    assert service["name"] == role["name"] == "hubfleet-culler"
    assert service["command"][1:] == ["-m", "hubfleet.services.culler", "--timeout=1800", "--concurrency=20",
                                      "--cull-every=60", "--policies-file=/etc/p.yaml"]
    assert "api_token" not in service  # the hub generates one
    assert role["services"] == ["hubfleet-culler"]
    assert role["scopes"] == ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def test_user_culling_adds_only_user_deletion_scopes():
    service, role = culler_service(cull_users=True, api_token="t0k")
    assert set(role["scopes"]) == {"list:users", "read:users:activity", "read:servers", "delete:servers",
                                   "read:users", "delete:users"}
    assert "admin:users" not in role["scopes"]
    assert "--cull-users=True" in service["command"] and "--cull-admin-users=True" not in service["command"]
    assert service["api_token"] == "t0k"
    service, _ = culler_service(cull_users=True, cull_admin_users=True)
    assert "--cull-admin-users=True" in service["command"]


@pytest.mark.parametrize("kwargs, extra", [
    ({"server_url": "http://proxy-public"}, ["tokens"]),
    ({"prometheus_url": "http://prometheus"}, ["admin:server_state"]),
    ({"profiles_file": "/etc/profiles.yaml"}, ["read:users:groups"]),
    ({"mail_from_auth_state": True}, ["admin:auth_state"]),
    ({}, []),
])
def test_each_feature_asks_only_for_its_own_scope(kwargs, extra, tmp_path):
    if "profiles_file" in kwargs:
        kwargs["profiles_file"] = str(tmp_path / "profiles.yaml")
        (tmp_path / "profiles.yaml").write_text("- {slug: small, display_name: Small}\n")
    service, role = culler_service(**kwargs)
    assert role["scopes"] == ["list:users", "read:users:activity", "read:servers", "delete:servers", *extra]
    app = CullerApp()
    app.initialize(service["command"][3:])  # the command parses


def test_admin_users_are_not_deleted_by_default_and_help_says_what_cull_users_deletes():
    app = CullerApp()
    app.initialize([])
    assert app.cull_admin_users is False
    help_text = " ".join(CullerApp.cull_users.help.split())
    assert "DELETE users" in help_text and "delete_pvc = True" in help_text and "home volume" in help_text
    assert "unlike jupyterhub-idle-culler and z2jh" in " ".join(CullerApp.cull_admin_users.help.split())


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout": 0}, "culler_service: timeout must be an integer >= 1, not 0"),
    ({"concurrency": 0}, "culler_service: concurrency must be an integer >= 1, not 0"),
    ({"max_age": -1}, "culler_service: max_age must be an integer >= 0, not -1"),
    ({"cull_every": "5m"}, "culler_service: cull_every must be an integer >= 0, not '5m'"),
    ({"metrics_port": 70000}, r"culler_service: metrics_port must be a TCP port \(1-65535\), not 70000"),
])
def test_service_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        culler_service(**kwargs)


def test_service_command_parses_in_the_app():
    service, _ = culler_service(timeout=1800, concurrency=7, max_age=86400, cull_users=True,
                                remove_named_servers=True)
    app = CullerApp()
    app.initialize(service["command"][3:])
    assert (app.timeout, app.concurrency, app.max_age, app.cull_users, app.remove_named_servers) == \
        (1800, 7, 86400, True, True)
    assert app.default_policy == CullPolicy(timeout=1800, max_age=86400, cull_users=True)


def test_policies_file_and_default_cull_every(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("profiles:\n  gpu: {timeout: 30m}\n  lr: {never: true, max_age: 7d}\n")
    app = CullerApp()
    app.initialize([f"--policies-file={f}", "--timeout=28800"])
    assert app.policies["gpu"].timeout == 1800 and app.default_policy.timeout == 28800
    assert app.effective_cull_every() == 600  # half the shortest timeout (900), capped at 600
    app2 = CullerApp()
    app2.initialize(["--timeout=60"])
    assert app2.effective_cull_every() == 30


@pytest.mark.parametrize("argv, env, message", [
    (["--policies-file=/nonexistent/p.yaml"], {"JUPYTERHUB_API_URL": "http://h/hub/api", "JUPYTERHUB_API_TOKEN": "x"},
     "--policies-file /nonexistent/p.yaml: no such file"),
    ([], {"JUPYTERHUB_API_TOKEN": "x"}, "--url: the hub API URL is not set"),
    ([], {"JUPYTERHUB_API_URL": "http://h/hub/api"}, "JUPYTERHUB_API_TOKEN is not set"),
])
def test_main_errors_name_the_option(argv, env, message, monkeypatch, capsys):
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_policies_file_names_file_field_and_value(tmp_path, monkeypatch, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("profiles:\n  gpu: {timeout: soon}\n")
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://h/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    assert main([f"--policies-file={f}"]) == 2
    err = capsys.readouterr().err
    assert f"--policies-file {f}: profiles.gpu.timeout: expected a duration like 1800, '30m', '8h' or '7d', " \
           "got 'soon'" in err


@pytest.mark.parametrize("arg, message", [
    ("--concurrency=0", "--concurrency must be at least 1, not 0"),
    ("--timeout=0", "--timeout must be at least 1 second, not 0"),
    ("--max-age=-1", "--max-age must be 0 or more, not -1"),
    ("--cull-every=-5", "--cull-every must be 0 or more, not -5"),
])
def test_bad_options_are_refused_with_their_value(arg, message):
    r = subprocess.run([sys.executable, "-m", "hubfleet.services.culler", arg], capture_output=True, text=True,
                       timeout=60, env={"JUPYTERHUB_API_URL": "http://h/hub/api", "JUPYTERHUB_API_TOKEN": "x"})
    assert r.returncode != 0
    assert message in r.stderr


def test_every_option_has_help():
    for name, trait in CullerApp.class_traits(config=True).items():
        if trait.this_class is CullerApp:
            assert trait.help and len(trait.help) > 20, name


def test_hubfleet_culler_subcommand_passes_options_through():
    args = build_parser("culler").parse_args(["culler", "--timeout=5", "--once", "--concurrency", "3"])
    assert args.culler_args == ["--timeout=5", "--once", "--concurrency", "3"]
    assert callable(args.func)
