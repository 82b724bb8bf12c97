"""Pure rules of hubfleet.spawners.profiles and .form: parametrised tables, no sockets, no spawner."""

from __future__ import annotations

import copy
from importlib import resources

import pytest
import yaml

from hubfleet.spawners.form import (
    OTHER_IMAGE,
    build_cards,
    form_to_user_options,
    query_to_user_options,
    render_form,
)
from hubfleet.spawners.profiles import (
    AccessDenied,
    ChoiceError,
    ProfileConfigError,
    Quota,
    QuotaCounts,
    RunningServer,
    merge_overrides,
    overrides_for,
    parse_catalog,
    parse_profiles,
    quota_violation,
    validate_choice,
    visible_profiles,
)

IMG = "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0"

DOC = {
    "profiles": [
        {"slug": "small", "display_name": "Small", "default": True, "cpu": {"guarantee": "100m", "limit": 1},
         "memory": {"guarantee": "256M", "limit": "1G"}, "image": IMG},
        {"slug": "medium", "cpu": 2, "memory": "4Gi", "access": {"groups": ["researchers"]},
         "images": [{"slug": "sample", "image": IMG}, {"slug": "scipy", "image": "quay.io/jupyter/scipy-notebook:x"}],
         "other_image": {"pattern": r"quay\.io/jupyter/[a-z-]+:[a-z0-9.]+"}},
        {"slug": "gpu", "gpu": {"count": 1}, "image": IMG, "quota": {"max_servers": 2, "groups": {"class-a": 1}},
         "access": {"groups": ["class-a", "class-b"], "users": ["carol"]}},
        {"slug": "admin", "image": IMG, "access": {"admin_only": True}},
    ],
    "quotas": [{"group": "class-b", "profile": "gpu", "max_servers": 1}],
    "group_volumes": {"class-a": [{"name": "course", "claim": "course-data", "mount_path": "/home/jovyan/course",
                                   "read_only": True}]},
}
CATALOG = parse_catalog(DOC)
PROFILES = CATALOG.profiles


def test_demo_profiles_file_parses():
    text = resources.files("hubfleet.spawners").joinpath("demo_profiles.yaml").read_text()
    catalog = parse_catalog(yaml.safe_load(text))
    assert [p.slug for p in catalog.profiles] == ["small", "medium", "gpu"]
    gpu = catalog.profiles[2]
    assert gpu.gpu.count == 1 and gpu.gpu.resource == "nvidia.com/gpu"
    assert catalog.quotas == (Quota(2, profile="gpu"),)
    assert catalog.profiles[1].access.groups == {"demo-researchers"}
    assert all(i.image == IMG for p in catalog.profiles for i in p.images)


def test_parsed_values():
    small, medium, gpu, _ = PROFILES
    assert (small.cpu_guarantee, small.cpu_limit) == (0.1, 1.0)
    assert (small.mem_guarantee, small.mem_limit) == (256 * 2**20, 2**30)
    assert (medium.cpu_guarantee, medium.cpu_limit, medium.mem_limit) == (2.0, 2.0, 4 * 2**30)
    assert gpu.gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert gpu.gpu.tolerations[0] == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert set(CATALOG.quotas) == {Quota(2, "gpu"), Quota(1, "gpu", "class-a"), Quota(1, "gpu", "class-b")}
    assert parse_profiles(DOC["profiles"]) == list(PROFILES)


def test_parse_does_not_mutate_input():
    doc = copy.deepcopy(DOC)
    parse_catalog(doc)
    assert doc == DOC


@pytest.mark.parametrize(
    "profile, message",
    [
        ({}, "profiles: profiles[0]: a profile needs a 'slug' (or KubeSpawner's 'display_name'"),
        ({"slug": "Big One"}, "profile 'Big One': slug: 'Big One' is not a valid slug (use lowercase letters"),
        ({"slug": "a", "cpus": 1}, "profile 'a': unknown key 'cpus'; known keys: access, claim_window, cpu,"),
        ({"slug": "a", "cpu": "lots"}, "profile 'a': cpu: expected a number of cores like 2, 0.5 or '500m', got 'lots' (write e.g. cpu: 2)"),
        ({"slug": "a", "cpu": {"guarantee": 4, "limit": 2}}, "profile 'a': cpu: guarantee 4 is more than limit 2"),
        ({"slug": "a", "memory": {"limit": "4 gallons"}}, "profile 'a': memory.limit: expected a size like 512M or 4G, got '4 gallons'"),
        ({"slug": "a", "gpu": {"count": 0}}, "profile 'a': gpu.count: 0 is less than the minimum of 1"),
        ({"slug": "a", "image": "x", "images": ["y"]}, "profile 'a': give either 'image' or 'images', not both"),
        ({"slug": "a", "images": [{"slug": "x", "image": "a"}, {"slug": "x", "image": "b"}]},
         "profile 'a': images[1].slug: duplicate image slug 'x'"),
        ({"slug": "a", "other_image": {"pattern": "("}}, "profile 'a': other_image.pattern: invalid regular expression '('"),
        ({"slug": "a", "other_image": {}}, "profile 'a': other_image: 'pattern' is required"),
        ({"slug": "a", "env": {"BAD NAME": "x"}}, "profile 'a': env: invalid environment variable name 'BAD NAME'"),
        ({"slug": "a", "access": {"groups": "class-a"}}, "profile 'a': access.groups: expected array, got str 'class-a'"),
        ({"slug": "a", "access": {"admin_only": "yes"}}, "profile 'a': access.admin_only: expected boolean, got str 'yes'"),
        ({"slug": "a", "volumes": [{"name": "v", "mount_path": "/x"}]},
         "profile 'a': volumes[0]: give exactly one of 'claim'"),
        ({"slug": "a", "volumes": [{"name": "v", "mount_path": "x", "claim": "c"}]},
         "profile 'a': volumes[0].mount_path: must be an absolute path, got 'x'"),
        ({"slug": "a", "tolerations": [{"key": "k", "operator": "Maybe"}]},
         "profile 'a': tolerations[0].operator: 'Maybe' is not one of: Equal, Exists"),
        ({"slug": "a", "quota": {"max_servers": -1}}, "profile 'a': quota.max_servers: -1 is less than the minimum of 0"),
    ],
)
def test_parse_errors_name_field_and_value(profile, message):
    with pytest.raises(ProfileConfigError) as e:
        parse_profiles([profile])
    assert message in str(e.value)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"profiles": [{"slug": "a"}, {"slug": "a"}]}, "profile 'a': duplicate profile slug (give every profile its own slug)"),
        ({"profiles": [{"slug": "a", "default": True}, {"slug": "b", "default": True}]},
         "more than one default profile: a, b"),
        ({"profiles": [{"slug": "a"}], "quotas": [{"profile": "gpu", "max_servers": 1}]},
         "quotas[0].profile: unknown profile 'gpu'; declared: a (name a declared profile's slug)"),
        ({"profiles": [{"slug": "a"}], "quotas": [{"group": "g"}]}, "quotas[0]: 'max_servers' is required"),
        ({"profile": []}, "document: unknown key 'profile'; known keys: group_rules, group_volumes, max_servers_per_user, profiles, quotas"),
    ],
)
def test_document_errors(doc, message):
    with pytest.raises(ProfileConfigError) as e:
        parse_catalog(doc)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "user, groups, admin, expected",
    [
        ("alice", [], False, ["small"]),
        ("alice", ["researchers"], False, ["small", "medium"]),
        ("bob", ["class-b"], False, ["small", "gpu"]),
        ("carol", [], False, ["small", "gpu"]),  # allowed by name
        ("root", [], True, ["small", "admin"]),  # admins are not exempt from group rules
        ("root", ["researchers", "class-a"], True, ["small", "medium", "gpu", "admin"]),
    ],
)
def test_visible_profiles(user, groups, admin, expected):
    assert [p.slug for p in visible_profiles(PROFILES, user, groups, admin)] == expected


@pytest.mark.parametrize(
    "options, user, groups, profile, image",
    [
        ({}, "alice", [], "small", IMG),
        (None, "alice", [], "small", IMG),
        ({"profile": "medium"}, "alice", ["researchers"], "medium", IMG),
        ({"profile": "medium", "image": "scipy"}, "alice", ["researchers"], "medium", "quay.io/jupyter/scipy-notebook:x"),
        ({"profile": "medium", "other_image": "quay.io/jupyter/r-notebook:1.2"}, "a", ["researchers"], "medium",
         "quay.io/jupyter/r-notebook:1.2"),
        ({"profile": "gpu", "image": ""}, "carol", [], "gpu", IMG),
    ],
)
def test_validate_choice_accepts(options, user, groups, profile, image):
    choice = validate_choice(PROFILES, options, user, groups, False)
    assert (choice.profile.slug, choice.image) == (profile, image)


#: (user_options, groups, error type, message) — every refused case, as the closing note lists them.
REFUSED = [
    ({"profile": "gpu"}, [], AccessDenied, "profile 'gpu' is not available to you; choose one of: small"),
    ({"profile": "medium"}, ["class-b"], AccessDenied, "profile 'medium' is not available to you; choose one of: small, gpu"),
    ({"profile": "admin"}, [], AccessDenied, "profile 'admin' is not available to you"),
    ({"profile": "gpu-xl"}, [], ChoiceError, "unknown profile 'gpu-xl'; choose one of: small"),
    ({"profile": "small", "image": "scipy"}, [], ChoiceError, "image 'scipy' is not offered by profile 'small'; choose one of: default"),
    ({"profile": "small", "other_image": "evil/miner:latest"}, [], AccessDenied, "profile 'small' does not allow another image"),
    ({"profile": "medium", "other_image": "docker.io/evil/miner:1"}, ["researchers"], AccessDenied,
     "image 'docker.io/evil/miner:1' is not allowed for profile 'medium': it must match"),
    ({"profile": "medium", "other_image": "quay.io/jupyter/x:1\nevil"}, ["researchers"], AccessDenied, "is not allowed"),
    ({"profile": "medium", "image": "sample", "other_image": "quay.io/jupyter/r:1"}, ["researchers"], ChoiceError,
     "give either 'image' or 'other_image', not both"),
    ({"profile": "small", "cpu_limit": 64}, [], ChoiceError, "unknown option 'cpu_limit'; allowed options: profile, image, other_image"),
    ({"profile": "small", "kubespawner_override": {"privileged": True}}, [], ChoiceError, "unknown option 'kubespawner_override'"),
    ({"profile": ["gpu"]}, [], ChoiceError, "option 'profile' must be a string, got list"),
    ({"profile": 3}, [], ChoiceError, "option 'profile' must be a string, got int"),
    ("gpu", [], ChoiceError, "user_options must be an object, got str"),
]


@pytest.mark.parametrize("options, groups, error, message", REFUSED)
def test_validate_choice_refuses(options, groups, error, message):
    with pytest.raises(error) as e:
        validate_choice(PROFILES, options, "alice", groups, False)
    assert message in str(e.value)
    assert e.value.status == (403 if error is AccessDenied else 400)


def test_no_visible_profile_is_refused():
    with pytest.raises(AccessDenied, match="no profile is available to you"):
        validate_choice(PROFILES[1:3], {}, "alice", [], False)


def test_overrides_for_gpu_profile_builds_new_values():
    base = {
        "environment": {"A": "1"},
        "node_selector": {"zone": "a"},
        "tolerations": [{"key": "x", "operator": "Exists"}],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
        "volume_mounts": [{"name": "home", "mountPath": "/home/jovyan"}],
        "extra_labels": {"team": "t"},
        "extra_resource_limits": {},
    }
    frozen = copy.deepcopy(base)
    choice = validate_choice(PROFILES, {"profile": "gpu"}, "alice", ["class-a"], False)
    out = overrides_for(choice, base=base, group_volumes=CATALOG.group_volumes, user_slug="alice")
    assert base == frozen  # nothing mutated in place
    assert out["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert out["node_selector"] == {"zone": "a", "nvidia.com/gpu.present": "true"}
    assert out["tolerations"] == [
        {"key": "x", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    assert out["environment"] == {"A": "1"}
    assert out["extra_labels"] == {"team": "t", "hubfleet.io/profile": "gpu", "hubfleet.io/user": "alice"}
    assert out["volumes"][1] == {"name": "course", "persistentVolumeClaim": {"claimName": "course-data", "readOnly": True}}
    assert out["volume_mounts"][1] == {"name": "course", "mountPath": "/home/jovyan/course", "readOnly": True}
    # a second call gives equal but distinct objects
    again = overrides_for(choice, base=base, group_volumes=CATALOG.group_volumes, user_slug="alice")
    assert again == out and again["environment"] is not out["environment"]
    out["environment"]["B"] = "2"
    assert "B" not in PROFILES[2].env and "B" not in base["environment"]


def test_overrides_for_resources_and_kubespawner_override():
    profile = parse_profiles(
        [{"slug": "k", "cpu": {"guarantee": 0.5, "limit": 2}, "memory": {"limit": "2G"}, "image": IMG,
          "env": {"X": "y"}, "kubespawner_override": {"environment": {"Z": "z", "X": None}, "start_timeout": 5}}]
    )
    choice = validate_choice(profile, {}, "u", [], False)
    out = overrides_for(choice, base={"environment": {"A": "1"}}, user_slug="u")
    assert (out["cpu_guarantee"], out["cpu_limit"], out["mem_limit"]) == (0.5, 2.0, 2 * 2**30)
    assert "mem_guarantee" not in out
    assert out["image"] == IMG and out["start_timeout"] == 5
    assert out["environment"] == {"A": "1", "Z": "z"}  # None removes X
    named = overrides_for(choice, base={"environment": {"A": "1"}}, user_slug="u",
                          profile_environment_variable="HUBFLEET_PROFILE")
    assert named["environment"] == {"A": "1", "HUBFLEET_PROFILE": "k", "Z": "z"}


def test_overrides_for_keeps_configured_and_profile_labels_and_annotations():
    profile = parse_profiles([{"slug": "k", "image": IMG, "scheduling_strategy": "spread", "kubespawner_override": {
        "extra_labels": {"profile-label": "p", "hubfleet.io/user": "spoofed"},
        "extra_annotations": {"profile-note": "{username}", "hubfleet.io/groups": "[]"},
    }}])
    choice = validate_choice(profile, {}, "b{o}b", ["g{1}"], False)
    base = {"extra_labels": {"global-label": "g"}, "extra_annotations": {"global-note": "n"}}
    frozen = copy.deepcopy(base)
    out = overrides_for(choice, base=base, user_slug="bob-1234")
    assert base == frozen
    assert out["extra_labels"] == {"global-label": "g", "profile-label": "p", "hubfleet.io/profile": "k",
                                   "hubfleet.io/strategy": "spread", "hubfleet.io/user": "bob-1234"}
    # the profile's own stay templates (KubeSpawner formats them); hubfleet's values are kept literal
    assert out["extra_annotations"] == {"global-note": "n", "profile-note": "{username}",
                                        "hubfleet.io/groups": '["g{{1}}"]', "hubfleet.io/username": "b{{o}}b"}


def test_merge_overrides_never_touches_arguments():
    base = {"environment": {"A": {"deep": 1}}}
    overrides = {"environment": {"A": {"more": 2}}, "image": "x"}
    snapshot = copy.deepcopy((base, overrides))
    out = merge_overrides(base, overrides)
    assert out == {"environment": {"A": {"deep": 1, "more": 2}}, "image": "x"}
    assert (base, overrides) == snapshot


def _servers(*specs):
    return [RunningServer(f"ns/p{i}", profile, frozenset(groups)) for i, (profile, groups) in enumerate(specs)]


@pytest.mark.parametrize(
    "running, profile, groups, message",
    [
        ([], "gpu", ["class-a"], None),
        ([("gpu", ["class-b"])], "gpu", ["class-a"], None),
        ([("gpu", ["class-a"])], "gpu", ["class-a"],
         "Quota full: group class-a may run at most 1 'gpu' servers (1 running). Stop one or pick another profile."),
        ([("gpu", ["class-b"])], "gpu", ["class-b", "x"], "Quota full: group class-b may run at most 1 'gpu' servers (1 running)."),
        ([("gpu", []), ("gpu", ["x"])], "gpu", [], "Quota full: at most 2 'gpu' servers may run at once (2 running)."),
        ([("small", []), ("small", [])], "gpu", [], None),
        ([("gpu", ["class-a"])], "small", ["class-a"], None),
    ],
)
def test_quota_violation(running, profile, groups, message):
    result = quota_violation(CATALOG.quotas, _servers(*running), profile=profile, groups=groups)
    if message is None:
        assert result is None
    else:
        assert result is not None and result.startswith(message), result


def test_quota_counts_each_pod_once_and_group_only_and_global_quotas():
    running = _servers(("a", ["g"]), ("b", ["g"])) + [RunningServer("ns/p0", "a", frozenset({"g"}))]
    counts = QuotaCounts(running)
    assert counts.total == 2
    assert counts.count(Quota(5, group="g")) == 2
    assert counts.count(Quota(5)) == 2
    assert quota_violation([Quota(2, group="g")], counts, profile="c", groups=["g"]) == (
        "Quota full: group g may run at most 2 servers (2 running). Stop one or pick another profile."
    )
    assert quota_violation([Quota(0, profile="c")], [], profile="c", groups=[]).startswith("Quota full")


# --- the form -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formdata, expected",
    [
        ({}, {}),
        ({"profile": ["small"]}, {"profile": "small"}),
        ({"profile": ["medium"], "image--medium": ["scipy"], "image--small": ["default"]},
         {"profile": "medium", "image": "scipy"}),
        ({"profile": ["medium"], "image--medium": [OTHER_IMAGE], "other_image--medium": [" quay.io/jupyter/r:1 "]},
         {"profile": "medium", "other_image": "quay.io/jupyter/r:1"}),
        ({"profile": ["medium"], "image--medium": ["sample"], "other_image--medium": ["ignored"]},
         {"profile": "medium", "image": "sample"}),
        ({"profile": ["small"], "_xsrf": ["token"]}, {"profile": "small"}),
    ],
)
def test_form_to_user_options(formdata, expected):
    assert form_to_user_options(formdata) == expected


#: Tampered form posts refused before validation even sees them (the rest are refused by validate_choice).
FORM_REFUSED = [
    ({"profile": ["small"], "cpu_limit": ["64"]}, "unknown form field 'cpu_limit'"),
    ({"profile": ["small", "gpu"]}, "form field 'profile' must have exactly one value, got 2"),
    ({"profile": ["medium"], "image--medium": [OTHER_IMAGE], "other_image--medium": [""]},
     "you chose 'Other image' but left the image field empty"),
]


@pytest.mark.parametrize("formdata, message", FORM_REFUSED)
def test_form_to_user_options_refuses(formdata, message):
    with pytest.raises(ChoiceError, match=message):
        form_to_user_options(formdata)


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"profile": ["medium"], "image": ["scipy"]}, {"profile": "medium", "image": "scipy"}),
        ({"profile": ["medium"], "image--medium": ["scipy"]}, {"profile": "medium", "image": "scipy"}),
        ({"profile": ["m"], "cpu": ["9"]}, {"profile": "m", "cpu": "9"}),  # validate_choice refuses 'cpu'
        ({"profile": ["small"], "profile-option-small--image": ["x"]}, {"profile": "small", "image": "x"}),
        ({"profile": ["a", "b"]}, "form field 'profile' must have exactly one value, got 2"),
    ],
)
def test_query_to_user_options(query, expected):
    if isinstance(expected, dict):
        assert query_to_user_options(query) == expected
    else:
        with pytest.raises(ChoiceError, match=expected):
            query_to_user_options(query)


def test_cards_disable_full_profiles_and_render():
    visible = visible_profiles(PROFILES, "alice", ["class-a", "researchers"], False)
    counts = QuotaCounts(_servers(("gpu", ["class-a"])))
    cards = build_cards(visible, quotas=CATALOG.quotas, counts=counts, groups=["class-a", "researchers"],
                        user_options={"profile": "gpu"})
    by_slug = {c.slug: c for c in cards}
    assert by_slug["gpu"].disabled_reason.startswith("Quota full: group class-a may run at most 1 'gpu' servers")
    assert not by_slug["gpu"].checked and by_slug["small"].checked  # a full profile is never pre-selected
    assert by_slug["gpu"].gpu == "1 × GPU"
    html = render_form(cards)
    assert 'value="gpu" id="hf-profile-gpu"' in html and "disabled" in html
    assert "Quota full: group class-a may run at most 1" in html
    assert 'name="other_image--medium"' in html and "admin" not in html
    assert "<style>" in html and ".hf-card" in html


def test_form_escapes_profile_text():
    profile = parse_profiles([{"slug": "x", "display_name": "<script>alert(1)</script>", "description": "{{ 7*7 }}"}])
    html = render_form(build_cards(profile))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_cli_profiles_check(tmp_path, capsys):
    from hubfleet.cli import main

    demo = resources.files("hubfleet.spawners").joinpath("demo_profiles.yaml")
    assert main(["profiles", "check", str(demo)]) == 0
    out = capsys.readouterr().out
    assert "3 profiles, 1 quotas" in out and "medium: " in out and "for groups demo-researchers" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  - slug: x\n    memory: {limit: 4 gallons}\n")
    assert main(["profiles", "check", str(bad)]) == 1
    assert f"{bad}: profile 'x': memory.limit: expected a size like 512M or 4G, got '4 gallons'" in (
        capsys.readouterr().err)
    assert main(["profiles", "check", str(tmp_path / "missing.yaml")]) == 2
