"""Stale saved choices, the resolved choice recorded for every spawn, per-user limits, declarative pod parts and the
metrics, through ProfileSpawner's real hooks and the real ``get_pod_manifest()`` (no cluster)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from prometheus_client import REGISTRY
from tornado import web

from hubfleet.spawners import ProfileSpawner, metrics

from . import test_profiles_spawner
from .test_profiles_spawner import (
    IMG,
    K8S_VERSION,
    as_dict,
    live_pod,
    make_spawner,
    rest,
    saved,
    submit,
)

no_cluster = test_profiles_spawner.no_cluster  # the fixture: a fake pod reflector, no cluster

# --- stale saved choices ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, why", [
    ({"profile": "gpu"}, "profile 'gpu' is not available to you"),           # no longer allowed
    ({"profile": "retired"}, "unknown profile 'retired'"),                     # removed from the file
    ({"profile": "small", "image": "old-image"}, "image 'old-image' is not offered by profile 'small'"),
])
async def test_a_stale_saved_choice_falls_back_to_the_default_with_a_message(options, why):
    spawner = saved(make_spawner(events_enabled=False), options)
    await spawner.load_user_options()
    assert spawner.choice.profile.slug == "small" and spawner.image == IMG
    assert spawner.choice.fallback.startswith(f"Your last choice (profile {options['profile']!r}) is no longer "
                                              f"available ({why}")
    assert spawner.choice.fallback.endswith("starting the default profile 'Small' instead.")
    assert spawner.user_options == spawner.orm_spawner.user_options == {"profile": "small", "image": "default"}
    spawner._start_future = _done()
    messages = [event["message"] async for event in spawner.progress()]
    assert messages == [spawner.choice.fallback]


async def test_an_explicit_request_for_the_same_choice_is_still_refused():
    spawner = rest(make_spawner(), {"profile": "gpu"})
    with pytest.raises(web.HTTPError) as e:
        await spawner.load_user_options()
    assert e.value.status_code == 403 and "profile 'gpu' is not available to you" in e.value.log_message
    form = make_spawner()
    with pytest.raises(web.HTTPError, match="profile 'gpu' is not available"):
        await submit(form, {"profile": ["gpu"]})
    with pytest.raises(web.HTTPError, match="profile 'gpu' is not available"):
        await submit(form, {"opt-profile": ["gpu"]}, query=True)


async def test_the_form_preselects_the_default_and_shows_the_note():
    spawner = make_spawner(groups=["researchers"])
    spawner.user_options = {"profile": "gpu"}  # saved by an earlier spawn; alice lost access since
    html = await spawner.get_options_form()
    assert "Your last choice (profile &#39;gpu&#39;) is no longer available" in html
    assert "the default profile &#39;Small&#39; is selected." in html
    assert "checked" in html[html.index('id="hf-profile-small"'):].split(">")[0]
    spawner.user_options = {"profile": "medium"}  # still valid: preselected, no note
    html = await spawner.get_options_form()
    assert "no longer available" not in html
    assert "checked" in html[html.index('value="medium"'):].split(">")[0]


def _done():
    import asyncio

    future = asyncio.get_event_loop().create_future()
    future.set_result(None)
    return future


# --- the resolved choice is recorded ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["user_options", "plain"])
async def test_a_default_profile_spawn_records_the_profile(shape):
    spawner = rest(make_spawner(), {}, shape=shape)
    await spawner.load_user_options()
    assert spawner.user_options == {"profile": "small", "image": "default"}
    assert spawner.orm_spawner.user_options == {"profile": "small", "image": "default"}
    state = spawner.get_state()
    assert state["hubfleet"] == {"profile": "small", "image": IMG, "user_options": {"profile": "small",
                                                                                    "image": "default"}}
    again = make_spawner()
    again.load_state(state)
    assert again.get_state()["hubfleet"]["profile"] == "small"


# --- per-user limits ----------------------------------------------------------------------------------------------


PER_USER_DOC = {
    "profiles": [{"slug": "small", "default": True, "image": IMG},
                 {"slug": "gpu", "image": IMG, "gpu": 1, "max_per_user": 1, "quota": 10}],
    "max_servers_per_user": 2,
}


async def test_per_user_limits_count_live_pods_and_reservations(no_cluster):
    no_cluster.pods["default/jupyter-alice--a"] = live_pod("default/jupyter-alice--a", "gpu", user="alice")
    gpu = rest(make_spawner(user="alice", server="b", profiles=PER_USER_DOC), {"profile": "gpu"})
    with pytest.raises(web.HTTPError) as e:
        await gpu.load_user_options()
    assert e.value.status_code == 403
    assert e.value.log_message == ("Quota full: each user may run at most 1 'gpu' servers at once (you have 1 "
                                   "running). Stop one or pick another profile.")
    # another user is not affected; alice may still start a small server (2 per user in all)
    await rest(make_spawner(user="bob", profiles=PER_USER_DOC), {"profile": "gpu"}).load_user_options()
    await rest(make_spawner(user="alice", server="c", profiles=PER_USER_DOC), {"profile": "small"}).load_user_options()
    third = rest(make_spawner(user="alice", server="d", profiles=PER_USER_DOC), {"profile": "small"})
    with pytest.raises(web.HTTPError, match=r"each user may run at most 2 servers at once \(you have 2 running\)"):
        await third.load_user_options()  # one live pod + one reservation
    assert sorted(ProfileSpawner._reservations) == ["default/jupyter-alice--c", "default/jupyter-bob"]


async def test_the_form_disables_a_profile_at_the_users_limit(no_cluster):
    no_cluster.pods["default/jupyter-alice--a"] = live_pod("default/jupyter-alice--a", "gpu", user="alice")
    html = await make_spawner(user="alice", server="b", profiles=PER_USER_DOC).get_options_form()
    gpu_card = html[html.index('data-profile="gpu"'):]
    assert "disabled" in gpu_card.split("</label>")[0]
    assert "each user may run at most 1 &#39;gpu&#39; servers at once (you have 1 running)" in gpu_card
    html = await make_spawner(user="bob", profiles=PER_USER_DOC).get_options_form()
    assert "disabled" not in html[html.index('data-profile="gpu"'):].split("</label>")[0]


# --- declarative pod parts ----------------------------------------------------------------------------------------

PARTS_DOC = {
    "profiles": [{
        "slug": "setup", "image": IMG, "image_pull_policy": "Always", "scheduling_strategy": "pack",
        "priority_class_name": "research-high",
        "init_containers": [{"name": "fetch-course", "image": "busybox:1.36",
                             "command": ["sh", "-c", "cp -r /course /home/jovyan/"]}],
        "extra_containers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.1",
                              "args": ["-i", "tail", "-p", "path=/var/log/x", "-o", "stdout"]}],
    }, {"slug": "plain", "image": IMG}],
    "group_rules": [{"group": "staff", "priority_class_name": "staff-high"}],
}


async def test_pod_parts_are_merged_without_mutating_config_and_validate():
    configured_init = [{"name": "site-init", "image": "busybox:1.36", "command": ["true"]}]
    spawner = rest(make_spawner(profiles=PARTS_DOC, init_containers=configured_init), {"profile": "setup"})
    snapshot = copy.deepcopy(configured_init)
    await spawner.load_user_options()
    pod = as_dict(await spawner.get_pod_manifest())
    assert kubernetes_validate.validate(pod, K8S_VERSION, strict=True) == K8S_VERSION
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["site-init", "fetch-course"]
    assert [c["name"] for c in spec["containers"]] == ["notebook", "log-shipper"]
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    assert spec["priorityClassName"] == "research-high"
    assert pod["metadata"]["labels"]["hubfleet.io/strategy"] == "pack"
    assert configured_init == snapshot and spawner.config.ProfileSpawner.init_containers == snapshot
    assert len((await spawner.load_catalog()).profiles[0].init_containers) == 1

    # the next start with another profile begins from the configured values again
    rest(spawner, {"profile": "plain"})
    await spawner.load_user_options()
    pod = as_dict(await spawner.get_pod_manifest())
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["site-init"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["notebook"]
    assert "priorityClassName" not in pod["spec"] or not pod["spec"]["priorityClassName"]
    assert "hubfleet.io/strategy" not in pod["metadata"]["labels"]


async def test_priority_class_from_a_group_rule():
    spawner = rest(make_spawner(groups=["staff"], profiles=PARTS_DOC), {"profile": "plain"})
    await spawner.load_user_options()
    assert as_dict(await spawner.get_pod_manifest())["spec"]["priorityClassName"] == "staff-high"


# --- metrics ------------------------------------------------------------------------------------------------------


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


async def test_metrics_in_the_hubs_registry(no_cluster):
    from jupyterhub import orm
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine("sqlite://")
    orm.Base.metadata.create_all(engine)
    db = sessionmaker(bind=engine)()
    alice = orm.User(name="alice")
    db.add_all([alice, orm.User(name="bob"), orm.Group(name="researchers", users=[alice])])
    db.commit()
    metrics.install(ProfileSpawner, db, user_groups=True)

    before = _sample("hubfleet_spawn_refusals_total", reason="disallowed", profile="gpu")
    with pytest.raises(web.HTTPError):
        await rest(make_spawner(), {"profile": "gpu"}).load_user_options()
    assert _sample("hubfleet_spawn_refusals_total", reason="disallowed", profile="gpu") == before + 1

    no_cluster.pods["default/jupyter-x"] = live_pod("default/jupyter-x", "gpu")
    no_cluster.pods["default/jupyter-y"] = live_pod("default/jupyter-y", "small")
    no_cluster.pods["default/jupyter-z"] = live_pod("default/jupyter-z", "small", phase="Succeeded")
    assert _sample("hubfleet_running_servers", profile="gpu") == 1
    assert _sample("hubfleet_running_servers", profile="small") == 1
    assert _sample("jupyterhub_user_group_info", username="alice", usergroup="researchers") == 1
    assert _sample("jupyterhub_user_group_info", username="bob", usergroup="researchers") == 0
    metrics.install(ProfileSpawner, db)  # the default: no user names on /hub/metrics
    assert _sample("jupyterhub_user_group_info", username="alice", usergroup="researchers") == 0
    assert _sample("hubfleet_running_servers", profile="gpu") == 1
    metrics._COLLECTOR.db = None
    db.close()
