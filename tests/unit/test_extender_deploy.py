"""deploy/scheduler-extender/: every manifest is valid Kubernetes 1.31 (strict schema), and the
KubeSchedulerConfiguration's extender points at what the extender serves."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from hubfleet.scheduler_plugin.cli import add_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scheduler-extender"


def _objects() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


OBJECTS = _objects()


def _one(kind: str, name: str | None = None) -> dict:
    found = [o for _, o in OBJECTS if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {DEPLOY}, found {len(found)}"
    return found[0]


def test_the_expected_objects_are_there():
    kinds = sorted(o["kind"] for _, o in OBJECTS)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "ClusterRoleBinding", "ConfigMap",
                     "Deployment", "PodDisruptionBudget", "PriorityClass", "PriorityClass", "PriorityClass", "Role",
                     "RoleBinding", "Secret", "ServiceAccount", "ServiceAccount"]


@pytest.mark.parametrize("name, obj", OBJECTS, ids=[n for n, _ in OBJECTS])
def test_manifest_validates_against_kubernetes_1_31(name, obj):
    kubernetes_validate.validate(obj, "1.31", strict=True)  # raises ValidationError naming the path at fault


def test_strict_validation_would_catch_a_typo():
    """(So the test above can fail.)"""
    bad = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    bad["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.31", strict=True)


def _scheduler_config() -> dict:
    return yaml.safe_load(_one("ConfigMap")["data"]["config.yaml"])


def test_scheduler_configuration_calls_the_extender_verbs():
    from hubfleet.scheduler_plugin.app import VERBS, Extender, build_app
    from hubfleet.scheduler_plugin.cache import ClusterCache
    from hubfleet.scheduler_plugin.scoring import Policy

    config = _scheduler_config()
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert [p["schedulerName"] for p in config["profiles"]] == ["hubfleet-scheduler"]
    # kube-scheduler reads `ignorable` per entry: filter and prioritize are ignorable (the extender is never the reason
    # a pod does not start), preempt is not (a failed call means no preemption, never kube-scheduler's own victims)
    ext, pre = config["extenders"]
    assert ext["urlPrefix"] == pre["urlPrefix"] == "http://127.0.0.1:8888"
    assert ext["ignorable"] is True and ext["nodeCacheCapable"] is True and ext["weight"] >= 1
    assert "preemptVerb" not in ext
    assert pre["ignorable"] is False and pre["nodeCacheCapable"] is True
    assert "filterVerb" not in pre and "prioritizeVerb" not in pre
    served = {r.resource.canonical for r in build_app(Extender(Policy(), ClusterCache())).router.routes()
              if r.method == "POST"}
    verbs = {f"/{e[v + 'Verb']}" for e in (ext, pre) for v in VERBS if v + "Verb" in e}
    assert verbs == served == {f"/{v}" for v in VERBS}
    # managedResources would make kube-scheduler skip the extender for every pod requesting no GPU, i.e. no bin
    # packing of CPU pods and no keeping them off GPU nodes (and no narrowing of their victims)
    assert "managedResources" not in ext and "managedResources" not in pre
    # packing looks at every feasible node, not kube-scheduler's adaptive sample (~10 % at 5,000 nodes)
    assert config["percentageOfNodesToScore"] == 100


def test_deployment_runs_kube_scheduler_and_the_extender_on_the_configured_port():
    config = _scheduler_config()
    dep = _one("Deployment")
    pod = dep["spec"]["template"]["spec"]
    sched, ext = pod["containers"]
    assert sched["image"].startswith("registry.k8s.io/kube-scheduler:v1.31.")
    assert "--config=/etc/hubfleet-scheduler/config.yaml" in sched["command"]
    assert pod["serviceAccountName"] == _one("ServiceAccount", "hubfleet-scheduler")["metadata"]["name"]
    assert ext["command"][:2] == ["hubfleet", "scheduler-extender"]
    import argparse
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(ext["command"][1:])  # the container's arguments parse with the real CLI
    assert f"http://{args.host}:{args.port}" == config["extenders"][0]["urlPrefix"]
    assert args.user_namespace == [dep["metadata"]["namespace"]]  # preemption's victims: the release's user pods
    assert config["leaderElection"]["resourceName"] in _one("Role")["rules"][1]["resourceNames"]
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_two_replicas_with_leader_election_and_a_disruption_budget():
    dep, pdb = _one("Deployment"), _one("PodDisruptionBudget")
    assert dep["spec"]["replicas"] >= 2
    assert _scheduler_config()["leaderElection"]["leaderElect"] is True
    assert pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] == 1 and pdb["metadata"]["namespace"] == dep["metadata"]["namespace"]


def test_priority_classes_order_user_servers():
    classes = {o["metadata"]["name"]: o for _, o in OBJECTS if o["kind"] == "PriorityClass"}
    low, standard, high = (classes[f"hubfleet-user-{n}"] for n in ("low", "standard", "high"))
    assert low["value"] < standard["value"] < high["value"] < 1_000_000_000  # below system-cluster-critical
    assert low["preemptionPolicy"] == "Never" and not any(c["globalDefault"] for c in classes.values())


def _bound_to(account: str) -> list[str]:
    return sorted(o["roleRef"]["name"] for _, o in OBJECTS if o["kind"] in ("ClusterRoleBinding", "RoleBinding")
                  and any(s["kind"] == "ServiceAccount" and s["name"] == account for s in o["subjects"]))


def test_rbac_binds_the_scheduler_roles_to_kube_scheduler_only():
    assert _bound_to("hubfleet-scheduler") == ["hubfleet-scheduler-lease", "system:kube-scheduler",
                                               "system:volume-scheduler"]


def test_the_extender_has_its_own_token_that_can_only_list_and_watch_pods_and_nodes():
    """What the extender's code calls (cache.CacheWatcher: list_pod_for_all_namespaces and list_node, each listed
    then watched), and nothing more; kube-scheduler's token never reaches its container."""
    assert _bound_to("hubfleet-scheduler-extender") == ["hubfleet-scheduler-extender"]
    role = _one("ClusterRole", "hubfleet-scheduler-extender")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["list", "watch"]}]
    secret = _one("Secret", "hubfleet-scheduler-extender-token")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "hubfleet-scheduler-extender"}
    assert _one("ServiceAccount", "hubfleet-scheduler-extender")["automountServiceAccountToken"] is False
    pod = _one("Deployment")["spec"]["template"]["spec"]
    sched, ext = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"  # a mount here keeps the pod's token out
    [mount] = [m for m in ext["volumeMounts"] if m["mountPath"] == token_path]
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"] and mount["readOnly"]
    assert not any(volumes[m["name"]].get("secret") for m in sched.get("volumeMounts", []))
    import inspect

    from hubfleet.scheduler_plugin.cache import CacheWatcher
    called = set(re.findall(r"self\.core\.(\w+)", inspect.getsource(CacheWatcher)))
    assert called == {"list_pod_for_all_namespaces", "list_node"}  # list, and watch=True: the role's two verbs


def test_the_scheduler_pod_may_reach_the_hub_under_z2jh_network_policies():
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"


def test_the_hub_token_comes_from_a_secret_never_the_command_line():
    ext = _one("Deployment")["spec"]["template"]["spec"]["containers"][1]
    import argparse
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(ext["command"][1:])
    assert args.hub_api_url == "http://hub:8081/hub/api" and args.hub_activity_interval == 60
    env = {e["name"]: e for e in ext["env"]}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hubfleet-scheduler-hub-token",
                                                                        "key": "token"}
    assert not any("token" in a.lower() for a in ext["command"])
