"""ProfileSpawner without a cluster: manifests through the real get_pod_manifest()/get_pvc_manifest(), validated
against the Kubernetes 1.37 OpenAPI schema (kubernetes-validate, strict); refusals before any Kubernetes call;
quota reservations under concurrency; hooks; the form callable. A minimal fake hub/user stands in for JupyterHub.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import types
from importlib import resources

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient
from tornado import web
from traitlets.config import Config

from hubfleet.spawners import ProfileSpawner, compat
from hubfleet.spawners.form import OTHER_IMAGE

from .test_profiles import FORM_REFUSED, REFUSED

K8S_VERSION = "1.37"
IMG = "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0"
DEMO_FILE = str(resources.files("hubfleet.spawners").joinpath("demo_profiles.yaml"))

TEST_DOC = {
    "profiles": [
        {"slug": "small", "display_name": "Small", "default": True, "image": IMG},
        {"slug": "medium", "image": IMG, "access": {"groups": ["researchers"]},
         "other_image": {"pattern": r"quay\.io/jupyter/[a-z-]+:[a-z0-9.]+"}},
        {"slug": "gpu", "gpu": {"count": 1}, "image": IMG, "quota": {"max_servers": 2, "groups": {"class-a": 1}},
         "access": {"groups": ["class-a", "class-b"], "users": ["carol"]}},
        {"slug": "admin", "image": IMG, "access": {"admin_only": True}},
    ],
    "quotas": [{"group": "class-b", "profile": "gpu", "max_servers": 1}],
}


class FakeGroup:
    def __init__(self, name):
        self.name = name


class FakeUser:
    def __init__(self, name, groups=(), admin=False):
        self.name, self.id, self.admin = name, abs(hash(name)) % 10000, admin
        self.url = self.base_url = f"/user/{name}/"
        self.groups = [FakeGroup(g) for g in groups]
        self.escaped_name = name
        self.settings = {}


class FakeHub:
    api_url = "http://127.0.0.1:8081/hub/api"
    base_url = "/hub/"
    public_host = ""
    url = "http://127.0.0.1:8081/hub/"


class NoKubernetes:
    """Stands in for the CoreV1Api: any call is recorded and fails the test."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f"unexpected Kubernetes call {name}")

        return call


class FakeRequest:
    def __init__(self, method, path, body=b"", query_arguments=None):
        self.method, self.path, self.body = method, path, body
        self.query_arguments = query_arguments or {}


class FakeHandler:
    """What JupyterHub hands the spawner as ``spawner.handler``: the request that asked for the spawn."""

    def __init__(self, method, path, body=None, query_arguments=None):
        self.request = FakeRequest(method, path, b"" if body is None else json.dumps(body).encode(), query_arguments)


def rest(spawner, options, shape="user_options"):
    """A ``POST /hub/api/users/<name>/server`` with ``options``, as the installed JupyterHub hands it over.

    ``shape="user_options"``: JupyterHub 6's body ``{"user_options": options}`` (6.x unwraps it; 5.5 passes the
    whole body as user_options); ``shape="plain"``: the 5.x body (the options themselves; 6.x still takes it).
    """
    body = {"user_options": options} if shape == "user_options" else options
    path = f"/hub/api/users/{spawner.user.name}/" + (f"servers/{spawner.name}" if spawner.name else "server")
    spawner.handler = FakeHandler("POST", path, body)
    spawner.user_options = options if (shape == "plain" or compat.JUPYTERHUB_VERSION >= (6, 0)) else body
    return spawner


async def submit(spawner, data, *, query=False):
    """What the hub does with a posted form (or a ``/hub/spawn?...`` query): ``await maybe_future(
    spawner.run_options_from_form(data))`` (``options_from_query``), then hand the options to the spawner and run
    ``apply_user_options`` before anything else of the spawn. Returns the options."""
    options = spawner.options_from_query(data) if query else spawner.run_options_from_form(data)
    if inspect.isawaitable(options):
        options = await options
    path = f"/hub/spawn/{spawner.user.name}"
    spawner.handler = (FakeHandler("GET", path, query_arguments={k: [v.encode() for v in vs] for k, vs in data.items()})
                       if query else FakeHandler("POST", path))
    spawner.user_options = options
    await spawner._run_apply_user_options(options)
    return options


def saved(spawner, options):
    """A spawn that names no options (REST POST without a body): JupyterHub reuses the saved ones."""
    spawner.handler = FakeHandler("POST", f"/hub/api/users/{spawner.user.name}/server")
    spawner.user_options = options
    return spawner


class FakeReflector:
    def __init__(self):
        self.pods: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def no_cluster(tmp_path, monkeypatch):
    """A dummy kubeconfig for KubeSpawner.__init__, a fake pod reflector, clean class-level tables."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}], "users": [{"name": "x", "user": {}}],
    }))
    import kubernetes_asyncio.config.kube_config as kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    reflector = FakeReflector()
    saved = dict(ProfileSpawner.reflectors)
    ProfileSpawner.reflectors.clear()
    ProfileSpawner.reflectors[("pods", "default")] = reflector
    ProfileSpawner._reservations.clear()
    yield reflector
    ProfileSpawner.reflectors.clear()
    ProfileSpawner.reflectors.update(saved)
    ProfileSpawner._reservations.clear()


def make_spawner(user="alice", groups=(), admin=False, server="", **config) -> ProfileSpawner:
    c = Config()
    c.ProfileSpawner.namespace = "default"
    c.ProfileSpawner.cmd = ["jupyterhub-singleuser"]
    for key, value in config.items():
        setattr(c.ProfileSpawner, key, value)
    if "profiles" not in config and "profiles_file" not in config:
        c.ProfileSpawner.profiles = TEST_DOC
    orm_spawner = types.SimpleNamespace(name=server, server=None, display_name=server, user_options=None)
    spawner = ProfileSpawner(user=FakeUser(user, groups, admin), hub=FakeHub(), config=c, orm_spawner=orm_spawner)
    spawner.api = NoKubernetes()

    async def watched(replace=False):
        await asyncio.sleep(0)  # yield, as the real (already started) reflector does

    spawner._start_watching_pods = watched
    return spawner


def as_dict(obj) -> dict:
    return ApiClient().sanitize_for_serialization(obj)


def live_pod(key: str, profile: str, groups=(), phase="Running", user="") -> dict:
    namespace, name = key.split("/")
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"hubfleet.io/profile": profile},
                     "annotations": {"hubfleet.io/groups": json.dumps(sorted(groups)), "hubfleet.io/username": user}},
        "status": {"phase": phase},
    }


# --- manifests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["small", "medium", "gpu"])
async def test_demo_pod_manifests_validate_and_carry_the_profile(profile, tmp_path):
    # the demo's gpu profile queues: the queue's database (no hub here to take it from)
    spawner = make_spawner(groups=["demo-researchers"], profiles_file=DEMO_FILE,
                           db_url=f"sqlite:///{tmp_path}/jupyterhub.sqlite")
    rest(spawner, {"profile": profile})
    await spawner.load_user_options()
    pod = as_dict(await spawner.get_pod_manifest())
    assert kubernetes_validate.validate(pod, K8S_VERSION, strict=True) == K8S_VERSION

    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["hubfleet.io/profile"] == profile
    assert pod["metadata"]["labels"]["hubfleet.io/user"] == "alice"
    assert json.loads(pod["metadata"]["annotations"]["hubfleet.io/groups"]) == ["demo-researchers"]
    assert container["image"] == IMG
    assert spec["securityContext"] == {"fsGroup": 100, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {
        "runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["volumes"] == [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}]
    assert container["volumeMounts"] == [{"name": "home", "mountPath": "/home/jovyan"}]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    if profile == "gpu":
        assert limits["nvidia.com/gpu"] == "1"
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert (requests["cpu"], limits["cpu"]) == (1.0, 4.0)
    else:
        assert "nvidia.com/gpu" not in limits
        assert spec["nodeSelector"] == {"hub.jupyter.org/node-purpose": "user"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "HUBFLEET_PROFILE" not in env


@pytest.mark.parametrize("server, claim", [("", "claim-alice"), ("ws1", "claim-alice--ws1")])
async def test_pvc_manifest_validates(server, claim):
    spawner = make_spawner(server=server)
    pvc = as_dict(spawner.get_pvc_manifest())
    assert kubernetes_validate.validate(pvc, K8S_VERSION, strict=True) == K8S_VERSION
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


async def test_group_volumes_and_profile_volumes_validate():
    spawner = make_spawner(
        groups=["class-a"],
        profiles=[{"slug": "p", "image": IMG, "volumes": [{"name": "scratch", "source": {"emptyDir": {}},
                                                          "mount_path": "/scratch"}]}],
        group_volumes={"class-a": [{"name": "course", "claim": "course-data", "mount_path": "/home/jovyan/course",
                                    "read_only": True}],
                       "class-b": [{"name": "other", "claim": "other", "mount_path": "/other"}]},
    )
    await spawner.load_user_options()
    pod = as_dict(await spawner.get_pod_manifest())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["home", "scratch", "course"]
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["course"] == {"name": "course", "mountPath": "/home/jovyan/course", "readOnly": True}
    assert mounts["scratch"]["readOnly"] is False


async def test_a_new_choice_starts_from_the_configured_values():
    spawner = make_spawner(user="carol", environment={"KEEP": "1"})
    rest(spawner, {"profile": "gpu"})
    await spawner.load_user_options()
    assert spawner.extra_resource_limits == {"nvidia.com/gpu": "1"}
    rest(spawner, {"profile": "small"})
    await spawner.load_user_options()
    assert spawner.extra_resource_limits == {}
    assert spawner.node_selector == {} and spawner.tolerations == []
    assert spawner.environment == {"KEEP": "1"}


# --- refusals: before any Kubernetes call -------------------------------------------------------------------------


@pytest.mark.parametrize("options, groups, error, message", [r for r in REFUSED if isinstance(r[0], dict)])
async def test_load_user_options_refuses_before_any_kubernetes_call(options, groups, error, message):
    spawner = make_spawner(groups=groups)
    rest(spawner, options)
    with pytest.raises(web.HTTPError) as e:
        await spawner.load_user_options()
    assert e.value.status_code == error.status
    assert message in e.value.log_message and message in e.value.jupyterhub_message
    await spawner.stop()  # JupyterHub stops a spawner whose start failed: still no Kubernetes call
    assert spawner.api.calls == []
    assert ProfileSpawner._reservations == {}


async def test_jupyterhub_apply_user_options_refuses_before_pre_spawn_hook():
    spawner = rest(make_spawner(), {"profile": "gpu"})
    with pytest.raises(web.HTTPError) as e:
        await spawner._run_apply_user_options(spawner.user_options)  # what User.spawn calls first
    assert e.value.status_code == 403 and "profile 'gpu' is not available to you" in e.value.jupyterhub_message
    await spawner._run_apply_user_options(rest(spawner, {"profile": "small"}).user_options)
    assert spawner.api.calls == []


@pytest.mark.parametrize("formdata, message", FORM_REFUSED + [
    ({"profile": ["gpu"]}, "profile 'gpu' is not available to you; choose one of: small"),
    ({"profile": ["nope"]}, "unknown profile 'nope'"),
    ({"profile": ["small"], "image--small": ["other"]}, "image 'other' is not offered by profile 'small'"),
    ({"profile": ["small"], "image--small": [OTHER_IMAGE], "other_image--small": ["evil/x:1"]},
     "profile 'small' does not allow another image"),
    ({"profile": ["medium"]}, "profile 'medium' is not available to you"),
])
async def test_a_tampered_form_is_refused_before_the_spawn(formdata, message):
    spawner = make_spawner()
    with pytest.raises(web.HTTPError) as e:
        await submit(spawner, formdata)
    assert e.value.status_code in (400, 403)
    assert message in e.value.jupyterhub_message
    assert spawner.user_options == {}  # refused before JupyterHub hands the options over and starts a spawn
    assert spawner.api.calls == []


async def test_options_from_form_returns_the_options_as_kubespawners_does():
    spawner = make_spawner()
    assert spawner.options_from_form({"profile": ["gpu"]}) == {"profile": "gpu"}  # a dict, checked later
    with pytest.raises(web.HTTPError, match="unknown form field 'cpu_limit'"):
        spawner.options_from_form({"profile": ["small"], "cpu_limit": ["64"]})
    with pytest.raises(web.HTTPError, match="profile 'gpu' is not available to you"):
        await spawner.run_options_from_form({"profile": ["gpu"]})  # what JupyterHub awaits: checked there


async def test_a_query_string_is_checked_like_the_form():
    spawner = make_spawner(groups=["researchers"])
    assert await submit(spawner, {"profile": ["medium"]}, query=True) == {"profile": "medium"}
    with pytest.raises(web.HTTPError, match="profile 'gpu' is not available to you"):
        await submit(spawner, {"profile": ["gpu"]}, query=True)


async def test_options_from_form_accepts_a_valid_form():
    spawner = make_spawner(groups=["researchers"])
    formdata = {"profile": ["medium"], "image--medium": [OTHER_IMAGE], "other_image--medium": ["quay.io/jupyter/r:1"],
                "image--small": ["default"]}
    assert await submit(spawner, formdata) == {"profile": "medium", "other_image": "quay.io/jupyter/r:1"}


async def test_invalid_configuration_is_a_500_naming_the_field():
    spawner = make_spawner(profiles=[{"slug": "x", "cpu": "lots"}])
    with pytest.raises(web.HTTPError) as e:
        await spawner.load_user_options()
    assert e.value.status_code == 500
    assert "ProfileSpawner.profiles: profile 'x': cpu: expected a number of cores" in e.value.log_message


# --- quotas -------------------------------------------------------------------------------------------------------


async def test_quota_counts_live_pods_and_names_the_full_quota(no_cluster):
    no_cluster.pods["default/jupyter-x"] = live_pod("default/jupyter-x", "gpu", ["class-a"])
    no_cluster.pods["default/jupyter-done"] = live_pod("default/jupyter-done", "gpu", ["class-a"], phase="Succeeded")
    spawner = make_spawner(groups=["class-a"])
    rest(spawner, {"profile": "gpu"})
    with pytest.raises(web.HTTPError) as e:
        await spawner.load_user_options()
    assert e.value.status_code == 403
    assert e.value.log_message == (
        "Quota full: group class-a may run at most 1 'gpu' servers (1 running). Stop one or pick another profile."
    )
    # a member of class-b only hits the profile-wide quota of 2 (1 running): allowed, and reserves a slot
    other = make_spawner(user="bob", groups=["class-b"])
    rest(other, {"profile": "gpu"})
    await other.load_user_options()
    assert list(ProfileSpawner._reservations) == ["default/jupyter-bob"]
    third = make_spawner(user="carol")
    rest(third, {"profile": "gpu"})
    with pytest.raises(web.HTTPError, match="at most 2 'gpu' servers may run at once \\(2 running\\)"):
        await third.load_user_options()
    # the pod going away frees the slot
    del no_cluster.pods["default/jupyter-x"]
    await third.load_user_options()


async def test_twenty_concurrent_spawns_against_a_quota_of_five_reserve_exactly_five():
    profiles = [{"slug": "gpu", "image": IMG, "gpu": 1, "quota": 5}]
    spawners = [make_spawner(user=f"user{i}", profiles=profiles) for i in range(20)]
    results = await asyncio.gather(*(s.load_user_options() for s in spawners), return_exceptions=True)
    refused = [r for r in results if isinstance(r, web.HTTPError)]
    assert len(refused) == 15 and len(ProfileSpawner._reservations) == 5
    assert all("at most 5 'gpu' servers may run at once (5 running)" in r.log_message for r in refused)
    # a start that ends (either way) frees its reservation; the live pod, if any, counts from then on
    started = [s for s, r in zip(spawners, results) if r is None]
    started[0]._release_quota()
    assert len(ProfileSpawner._reservations) == 4


async def test_a_stale_pod_of_the_same_server_does_not_count_against_itself(no_cluster):
    no_cluster.pods["default/jupyter-carol"] = live_pod("default/jupyter-carol", "gpu", [])
    no_cluster.pods["default/jupyter-dave"] = live_pod("default/jupyter-dave", "gpu", [])
    spawner = make_spawner(user="carol")
    rest(spawner, {"profile": "gpu"})
    await spawner.load_user_options()  # 1 other running, quota 2: no QuotaExceeded although 2 gpu pods exist
    assert spawner.choice.profile.slug == "gpu"


# --- hooks --------------------------------------------------------------------------------------------------------


def sync_hook(*, spawner, choice, **kwargs):
    return {"environment": {"SYNC_HOOK": choice.profile.slug}}


async def test_pre_spawn_and_post_stop_hooks_compose():
    seen = []

    async def async_hook(*, spawner, choice, **kwargs):
        seen.append(("pre", spawner.environment.get("SYNC_HOOK")))
        return None

    def post(*, spawner, choice, **kwargs):
        seen.append(("post", choice.profile.slug))

    async def broken(**kwargs):
        raise RuntimeError("post-stop hooks only log")

    spawner = make_spawner(
        pre_spawn_hooks=[f"{__name__}:sync_hook", async_hook],
        post_stop_hooks=[broken, post],
        post_stop_hook=lambda s: seen.append(("single-post", s.user.name)),
    )
    await spawner.load_user_options()
    assert spawner.environment["SYNC_HOOK"] == "small"
    await spawner.run_post_stop_hook()
    assert seen == [("pre", "small"), ("single-post", "alice"), ("post", "small")]


async def test_a_failing_pre_spawn_hook_releases_the_quota_slot():
    def deny(**kwargs):
        raise web.HTTPError(403, "no GPUs on Sundays")

    spawner = make_spawner(user="carol", pre_spawn_hooks=[deny])
    rest(spawner, {"profile": "gpu"})
    with pytest.raises(web.HTTPError, match="no GPUs on Sundays"):
        await spawner.load_user_options()
    assert ProfileSpawner._reservations == {}
    await spawner.stop()
    assert spawner.api.calls == []


# --- the form -----------------------------------------------------------------------------------------------------


async def test_form_lists_only_usable_profiles_and_disables_full_ones(no_cluster):
    no_cluster.pods["default/jupyter-x"] = live_pod("default/jupyter-x", "gpu", ["class-a"])
    spawner = make_spawner(groups=["class-a"])
    html = await spawner.get_options_form()
    assert 'id="hf-profile-small"' in html and 'id="hf-profile-gpu"' in html
    assert 'id="hf-profile-medium"' not in html and 'id="hf-profile-admin"' not in html
    gpu_card = html[html.index('data-profile="gpu"'):]
    assert "disabled" in gpu_card.split("</label>")[0]
    assert "Quota full: group class-a may run at most 1 &#39;gpu&#39; servers (1 running)" in gpu_card


async def test_no_form_when_there_is_nothing_to_choose():
    spawner = make_spawner(profiles=[{"slug": "only", "image": IMG}])
    assert await spawner.get_options_form() == ""


async def test_without_profiles_it_is_a_hardened_kubespawner():
    spawner = make_spawner(profiles=[])
    assert await spawner.get_options_form() == ""
    await spawner.load_user_options()
    pod = as_dict(await spawner.get_pod_manifest())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    legacy = make_spawner(profiles=[], hide_form_for_single_choice=False,
                          profile_list=[{"display_name": "Legacy", "slug": "legacy",
                                         "kubespawner_override": {"image": "x/y:1"}}])
    assert "Legacy" in await legacy.get_options_form()
    rest(legacy, {"profile": "legacy"})
    await legacy.load_user_options()
    assert legacy.image == "x/y:1"


# --- the user objects code other than JupyterHub hands over ------------------------------------------------------


@pytest.mark.parametrize("groups, usable", [
    ("absent", ["small"]),  # no ``groups`` attribute at all
    (None, ["small"]),
    (["researchers"], ["small", "medium"]),  # group names as plain strings
    ([FakeGroup("researchers")], ["small", "medium"]),  # JupyterHub's group objects
], ids=["no-attribute", "none", "names", "objects"])
async def test_any_user_object_a_kubespawner_takes(groups, usable):
    spawner = make_spawner()
    if groups == "absent":
        del spawner.user.groups
    else:
        spawner.user.groups = groups
    assert [p.slug for p in await spawner.visible_profiles()] == usable
    rest(spawner, {"profile": usable[-1]})
    await spawner.load_user_options()
    assert spawner.choice.profile.slug == usable[-1]


async def test_a_form_parsed_by_one_spawner_object_and_spawned_by_another_is_still_refused():
    """JupyterHub replaces a spawner whose last spawn failed with a new object for the form, and spawns with yet
    another: whether the request named a choice is read from the request, not remembered by an object."""
    parser, spawner = make_spawner(), make_spawner()
    options = parser.options_from_form({"profile": ["gpu"]})
    spawner.handler = FakeHandler("POST", "/hub/spawn/alice")
    spawner.user_options = options
    with pytest.raises(web.HTTPError, match="profile 'gpu' is not available to you"):
        await spawner._run_apply_user_options(options)


@pytest.mark.parametrize("method, path, body, query, named", [
    ("POST", "/hub/spawn", None, {}, True),  # the form
    ("POST", "/prefix/hub/spawn/alice/ws1", None, {}, True),
    ("GET", "/hub/spawn", None, {"profile": [b"gpu"]}, True),
    ("GET", "/hub/spawn/alice", None, {"opt-profile": [b"gpu"], "next": [b"/x"]}, True),
    ("GET", "/hub/spawn", None, {"next": [b"/x"], "display_name": [b"X"]}, False),  # no options in the query
    ("GET", "/hub/spawn-pending/alice", None, {"profile": [b"gpu"]}, False),
    ("POST", "/hub/api/users/alice/server", {"user_options": {"profile": "gpu"}}, {}, True),  # JupyterHub 6
    ("POST", "/hub/api/users/alice/server", {"profile": "gpu"}, {}, True),  # JupyterHub 5
    ("POST", "/hub/api/users/alice/server", {"display_name": "x"}, {}, False),
    ("POST", "/hub/api/users/alice/server", {}, {}, False),
    ("POST", "/hub/api/users/alice/server", None, {}, False),  # the admin panel's start button
    ("GET", "/user/alice/lab", None, {}, False),
], ids=["form", "form-named", "query", "opt-query", "no-query", "pending-page", "rest6", "rest5", "rest6-none",
        "rest-empty", "rest-nobody", "other"])
def test_which_requests_name_their_options(method, path, body, query, named):
    assert compat.names_options(FakeRequest(method, path, b"" if body is None else json.dumps(body).encode(),
                                            query)) is named
    assert compat.names_options(None) is False


# --- JupyterHub 5.5 and 6.x ---------------------------------------------------------------------------------------


async def test_refusals_are_the_installed_jupyterhubs_kind():
    spawner = rest(make_spawner(), {"profile": "gpu"})
    with pytest.raises(web.HTTPError) as e:
        await spawner.load_user_options()
    if compat.JUPYTERHUB_VERSION >= (6, 0):
        from jupyterhub.spawner import SpawnException

        assert isinstance(e.value, SpawnException) and e.value.reason == "disallowed"
        assert e.value.message == e.value.jupyterhub_message
    else:
        assert type(e.value) is web.HTTPError and e.value.reason_label == "disallowed"
    assert e.value.status_code == 403
    assert e.value.jupyterhub_message == "profile 'gpu' is not available to you; choose one of: small"


@pytest.mark.parametrize("shape", ["user_options", "plain"])
async def test_both_rest_body_shapes_resolve_the_same(shape):
    spawner = rest(make_spawner(groups=["researchers"]), {"profile": "medium"}, shape=shape)
    await spawner.load_user_options()
    assert spawner.choice.profile.slug == "medium" and spawner.user_options == {"profile": "medium",
                                                                                "image": "default"}


@pytest.mark.parametrize("query, expected", [
    ({"opt-profile": ["medium"]}, {"profile": "medium"}),
    ({"profile": ["medium"]}, {"profile": "medium"}),
    ({"opt-profile": ["medium"], "profile": ["gpu"]}, {"profile": "medium"}),  # JupyterHub 6: prefixed ones win
    ({"opt-profile": ["medium"], "next": ["/x"], "display_name": ["X"]}, {"profile": "medium"}),
])
async def test_query_strings_in_both_spellings(query, expected):
    assert await submit(make_spawner(groups=["researchers"]), query, query=True) == expected


@pytest.mark.parametrize("name, ok", [("ws-1", True), ("a", True), ("x" * 30, True), ("Bad_Name", False),
                                      ("1st", False), ("a--b", False), ("a-", False), ("x" * 31, False)])
async def test_named_server_names_follow_jupyterhub_6s_rule(name, ok):
    spawner = rest(make_spawner(server=name), {})
    if ok:
        await spawner.load_user_options()
    else:
        with pytest.raises(web.HTTPError) as e:
            await spawner.load_user_options()
        assert e.value.status_code == 400
        assert e.value.log_message == (f"invalid server name {name!r}: a server name must be 1-30 characters: "
                                       "lowercase letters, digits and single hyphens, starting with a letter and "
                                       "ending with a letter or digit")
