"""KubeSpawner's ``profile_list`` accepted as it is (issue #9 item 1): every shape kubespawner 7.1 documents, read
into hubfleet's model, re-validated server-side, and producing the same pod manifest as stock KubeSpawner for the
same choice (both built in-process through the real ``get_pod_manifest()``, no cluster).

The profile lists are the examples of kubespawner's ``profile_list`` help text (list form and 7.1's dict form),
plus the documented variations: no slug (generated from display_name), no default (the first one), only an
unlisted choice, dict-valued overrides merged recursively with ``None`` removing a key, callables (sync and async).
"""

from __future__ import annotations

import copy
import types

import kubernetes_validate
import pytest
from kubespawner import KubeSpawner
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from hubfleet.spawners import ProfileSpawner
from hubfleet.spawners.profiles import ChoiceError, parse_catalog, validate_choice

from . import test_profiles_spawner
from .test_profiles_spawner import K8S_VERSION, FakeHub, FakeUser, NoKubernetes, as_dict, rest, submit

no_cluster = test_profiles_spawner.no_cluster  # the fixture: a fake pod reflector, no cluster

# kubespawner 7.1's list example, verbatim (spawner.py, profile_list help)
DOCS_LIST = [
    {
        "display_name": "Demo - profile_list entry 1",
        "description": "Demo description for profile_list entry 1, and it should look good even though it is a bit "
                       "lengthy.",
        "slug": "demo-1",
        "default": True,
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {"display_name": "jupyter/base-notebook:latest",
                             "kubespawner_override": {"image": "jupyter/base-notebook:latest"}},
                    "minimal": {"display_name": "jupyter/minimal-notebook:latest", "default": True,
                                "kubespawner_override": {"image": "jupyter/minimal-notebook:latest"}},
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "display_name_in_choices": "Enter image manually",
                    "validation_regex": "^jupyter/.+:.+$",
                    "validation_message": "Must be an image matching ^jupyter/<name>:<tag>$",
                    "kubespawner_override": {"image": "{value}"},
                },
            },
        },
        "kubespawner_override": {"default_url": "/lab"},
    },
    {
        "display_name": "Demo - profile_list entry 2",
        "slug": "demo-2",
        "kubespawner_override": {"extra_resource_guarantees": {"nvidia.com/gpu": "1"}},
    },
]

# kubespawner 7.1's dict form: keys order the profiles; the slug comes from the entry (or its display_name)
DOCS_DICT = {"b-second": copy.deepcopy(DOCS_LIST[1]), "a-first": copy.deepcopy(DOCS_LIST[0])}

# no slugs, no default: slugs generated from display_name, the first profile is the default
NO_SLUGS = [
    {"display_name": "Small Machine", "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"}},
    {"display_name": "Big Machine", "kubespawner_override": {
        "cpu_limit": 4, "cpu_guarantee": 2, "mem_limit": "8G", "mem_guarantee": "4G",
        "environment": {"SIZE": "big", "REMOVE_ME": None},
        "node_selector": {"node-purpose": "big"},
        "tolerations": [{"key": "big", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "volume_mounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "image": "quay.io/jupyter/scipy-notebook:2025-01-01",
    }},
]

# several options, one with only a free-text choice, formatted into several traits
OPTIONS = [
    {
        "display_name": "Pick",
        "slug": "pick",
        "kubespawner_override": {"environment": {"A": "profile", "B": "profile"}},
        "profile_options": {
            "size": {"display_name": "Size", "choices": {
                "s": {"display_name": "S", "kubespawner_override": {"mem_limit": "1G", "environment": {"B": "s"}}},
                "l": {"display_name": "L", "kubespawner_override": {"mem_limit": "4G", "environment": {"B": "l"}}},
            }},
            "tag": {"display_name": "Tag", "unlisted_choice": {
                "enabled": True, "display_name": "Image tag", "validation_regex": "^[0-9a-z.-]+$",
                "validation_message": "a tag like 2025-01-01",
                "kubespawner_override": {"image": "quay.io/jupyter/base-notebook:{value}",
                                         "extra_labels": {"image-tag": "{value}"}},
            }},
        },
    },
]

#: (profile_list, user_options) pairs compared with stock KubeSpawner
CASES = [
    ("list-default", DOCS_LIST, {}),
    ("list-profile", DOCS_LIST, {"profile": "demo-2"}),
    ("list-choice", DOCS_LIST, {"profile": "demo-1", "image": "base"}),
    ("list-unlisted", DOCS_LIST, {"profile": "demo-1", "image--unlisted-choice": "jupyter/datascience-notebook:x"}),
    ("dict-default", DOCS_DICT, {}),
    ("dict-choice", DOCS_DICT, {"profile": "demo-1", "image": "minimal"}),
    ("dict-profile", DOCS_DICT, {"profile": "demo-2"}),
    ("no-slugs-default", NO_SLUGS, {}),
    ("no-slugs-merge", NO_SLUGS, {"profile": "big-machine"}),
    ("options", OPTIONS, {"profile": "pick", "size": "l", "tag--unlisted-choice": "2025-01-01"}),
    ("options-other-choice", OPTIONS, {"profile": "pick", "size": "s", "tag--unlisted-choice": "latest"}),
]

#: configured the same for both classes, so the comparison shows what the profile does
SHARED = {
    "namespace": "default", "cmd": ["jupyterhub-singleuser"], "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",
    "uid": 1000, "gid": 100, "fs_gid": 100, "environment": {"REMOVE_ME": "x", "KEEP": "1"},
    "container_security_context": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    "pod_security_context": {"runAsNonRoot": True},
    "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
    "volume_mounts": [{"name": "home", "mountPath": "/home/jovyan"}],
}


def build(cls, profile_list, user="alice"):
    c = Config()
    for key, value in SHARED.items():
        setattr(c.KubeSpawner, key, copy.deepcopy(value))
    try:
        c[cls.__name__].profile_list = copy.deepcopy(profile_list)
        orm = types.SimpleNamespace(name="", server=None, display_name="", user_options=None)
        spawner = cls(user=FakeUser(user), hub=FakeHub(), config=c, orm_spawner=orm)
    except TraitError:  # kubespawner 7.0 has no dict form: give stock KubeSpawner the list it would sort it into
        c[cls.__name__].profile_list = [copy.deepcopy(profile_list[k]) for k in sorted(profile_list)]
        orm = types.SimpleNamespace(name="", server=None, display_name="", user_options=None)
        spawner = cls(user=FakeUser(user), hub=FakeHub(), config=c, orm_spawner=orm)
    spawner.api = NoKubernetes()

    async def watched(replace=False):
        return None

    spawner._start_watching_pods = watched
    return spawner


def without_hubfleet_parts(pod: dict) -> dict:
    """The manifest minus what ProfileSpawner adds on purpose (its labels and annotations)."""
    pod = copy.deepcopy(pod)
    for key in ("labels", "annotations"):
        pod["metadata"][key] = {k: v for k, v in (pod["metadata"].get(key) or {}).items()
                                if not k.startswith("hubfleet.io/")}
    return pod


@pytest.mark.parametrize("name, profile_list, options", CASES, ids=[c[0] for c in CASES])
async def test_same_pod_manifest_as_stock_kubespawner(name, profile_list, options):
    stock = build(KubeSpawner, profile_list)
    stock.user_options = copy.deepcopy(options)
    await stock.load_user_options()
    expected = as_dict(await stock.get_pod_manifest())

    ours = rest(build(ProfileSpawner, profile_list), copy.deepcopy(options))
    await ours.load_user_options()
    got = as_dict(await ours.get_pod_manifest())
    assert kubernetes_validate.validate(got, K8S_VERSION, strict=True) == K8S_VERSION

    mine, theirs = without_hubfleet_parts(got), without_hubfleet_parts(expected)
    container, stock_container = mine["spec"]["containers"][0], theirs["spec"]["containers"][0]
    for key in ("image", "resources", "env", "volumeMounts"):  # what the issue names, first, for a clear diff
        assert container.get(key) == stock_container.get(key), key
    assert mine["spec"].get("volumes") == theirs["spec"].get("volumes")
    assert mine == theirs  # and everything else in the manifest
    assert got["metadata"]["labels"]["hubfleet.io/profile"] == ours.user_options["profile"]
    # the resolved choice is recorded (profile and each option's choice or value) and validates to itself again
    profiles = parse_catalog([], profile_list=profile_list).profiles
    assert validate_choice(profiles, ours.user_options, "alice", [], False).user_options() == ours.user_options


@pytest.mark.parametrize("profile_list", [DOCS_LIST, DOCS_DICT], ids=["list", "dict"])
@pytest.mark.parametrize("options, message", [
    ({"profile": "demo-1", "image": "huge"}, "'huge' is not a choice of option 'image' of profile 'demo-1'; "
                                             "choose one of: base, minimal"),
    ({"profile": "demo-1", "image--unlisted-choice": "evil/miner:1"},
     "'evil/miner:1' is not allowed for option 'image' of profile 'demo-1': "
     "Must be an image matching ^jupyter/<name>:<tag>$"),
    ({"profile": "demo-1", "image--unlisted-choice": "jupyter/x:1\nevil"}, "is not allowed for option 'image'"),
    ({"profile": "demo-2", "image": "base"}, "image 'base' is not offered by profile 'demo-2'; choose one of: (none)"),
    ({"profile": "demo-3"}, "unknown profile 'demo-3'; choose one of: demo-1, demo-2"),
    ({"profile": "demo-1", "mem_limit": "64G"}, "unknown option 'mem_limit'"),
])
async def test_profile_list_choices_are_revalidated_server_side(profile_list, options, message):
    ours = rest(build(ProfileSpawner, profile_list), options)
    with pytest.raises(web.HTTPError) as e:
        await ours.load_user_options()
    assert message in e.value.log_message
    assert ours.api.calls == []


def test_demo_2_has_no_image_option_so_image_is_refused_there():
    profiles = parse_catalog([], profile_list=DOCS_LIST).profiles
    with pytest.raises(ChoiceError):
        validate_choice(profiles, {"profile": "demo-2", "image": "base"}, "a", [], False)


async def test_only_unlisted_option_needs_a_value():
    ours = rest(build(ProfileSpawner, OPTIONS), {"profile": "pick"})
    with pytest.raises(web.HTTPError, match="option 'tag' of profile 'pick' needs a value \\(a tag like 2025-01-01\\)"):
        await ours.load_user_options()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_callable_profile_list(kind):
    seen = []

    def sync(spawner):
        seen.append(spawner.user.name)
        return copy.deepcopy(DOCS_LIST)

    async def async_(spawner):
        return sync(spawner)

    ours = rest(build(ProfileSpawner, sync if kind == "sync" else async_), {"profile": "demo-2"})
    await ours.load_user_options()
    assert ours.extra_resource_guarantees == {"nvidia.com/gpu": "1"} and seen == ["alice"]
    html = await ours.get_options_form()
    assert "Demo - profile_list entry 1" in html and "Enter image manually" in html


async def test_form_offers_profile_options_like_kubespawner_and_posts_back():
    ours = build(ProfileSpawner, DOCS_LIST)
    html = await ours.get_options_form()
    assert 'name="profile-option-demo-1--image"' in html
    assert '<option value="minimal" selected>' in html  # the default choice
    assert 'name="profile-option-demo-1--image--unlisted-choice"' in html and 'pattern="^jupyter/.+:.+$"' in html
    assert "Must be an image matching" in html
    form = {"profile": ["demo-1"], "profile-option-demo-1--image": ["unlisted-choice"],
            "profile-option-demo-1--image--unlisted-choice": ["jupyter/r-notebook:1"]}
    assert await submit(ours, form) == {"profile": "demo-1", "image--unlisted-choice": "jupyter/r-notebook:1"}
    with pytest.raises(web.HTTPError, match="is not allowed for option 'image'"):
        await submit(ours, {**form, "profile-option-demo-1--image--unlisted-choice": ["evil/x:1"]})


async def test_hubfleet_keys_on_profile_list_entries():
    entries = copy.deepcopy(DOCS_LIST)
    entries[1].update({"access": {"groups": ["gpu-users"]}, "max_per_user": 1, "priority_class_name": "gpu-high",
                       "scheduling_strategy": "spread"})
    ours = rest(build(ProfileSpawner, entries), {"profile": "demo-2"})
    with pytest.raises(web.HTTPError, match="profile 'demo-2' is not available to you; choose one of: demo-1"):
        await ours.load_user_options()
    ours.user.groups = [types.SimpleNamespace(name="gpu-users")]
    await ours.load_user_options()
    pod = as_dict(await ours.get_pod_manifest())
    assert pod["spec"]["priorityClassName"] == "gpu-high"
    assert pod["metadata"]["labels"]["hubfleet.io/strategy"] == "spread"


def test_a_profile_list_entry_kubespawner_would_reject_is_a_clear_error():
    from hubfleet.spawners.profiles import ProfileConfigError

    for bad, message in [
        ([{"description": "no name"}], "profiles[0]: a profile needs a 'slug' (or KubeSpawner's 'display_name'"),
        ([{"display_name": "X", "profile_options": {"o": {"choices": {"a": {"kubespawner_overide": {}}}}}}],
         "profile 'X': profile_options.o.choices.a: unknown key 'kubespawner_overide'"),
        ([{"display_name": "X", "profile_options": {"o": {"display_name": "O"}}}],
         "profile 'x': profile_options.o: has no choices and no enabled unlisted_choice"),
        ({"k": {"display_name": "X", "kubespawner_override": "image=x"}},
         "profile 'X': kubespawner_override: expected object, got str"),
    ]:
        with pytest.raises(ProfileConfigError) as e:
            parse_catalog([], profile_list=bad)
        assert message in str(e.value), str(e.value)
        assert str(e.value).startswith("KubeSpawner.profile_list: ")
