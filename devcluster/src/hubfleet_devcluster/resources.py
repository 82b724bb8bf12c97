"""The resource types the devcluster serves: group, version, kind, names and verbs, as discovery announces them.
Pure (no I/O): the store, discovery, the OpenAPI documents and the Table printers all read this one table."""

from __future__ import annotations

from dataclasses import dataclass

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    plural: str
    kind: str
    namespaced: bool
    group: str = ""
    version: str = "v1"
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_prefix(self) -> str:
        """`/api/v1` or `/apis/GROUP/VERSION`."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def definition(self) -> str:
        """The OpenAPI definition name of the kind (io.k8s.api.core.v1.Pod)."""
        package = {"": "core", "rbac.authorization.k8s.io": "rbac"}.get(self.group, self.group.split(".")[0])
        return f"io.k8s.api.{package}.{self.version}.{self.kind}"


_ALL = (
    ResourceType("namespaces", "Namespace", False, short_names=("ns",), subresources=("status", "finalize")),
    ResourceType("nodes", "Node", False, short_names=("no",), subresources=("status",)),
    ResourceType("pods", "Pod", True, short_names=("po",), subresources=("status", "log", "binding", "exec"),
                 categories=("all",)),
    ResourceType("events", "Event", True, short_names=("ev",)),
    ResourceType("persistentvolumeclaims", "PersistentVolumeClaim", True, short_names=("pvc",),
                 subresources=("status",)),
    ResourceType("services", "Service", True, short_names=("svc",), subresources=("status",), categories=("all",)),
    ResourceType("secrets", "Secret", True),
    ResourceType("configmaps", "ConfigMap", True, short_names=("cm",)),
    ResourceType("serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
    ResourceType("endpoints", "Endpoints", True, short_names=("ep",)),
    ResourceType("deployments", "Deployment", True, "apps", short_names=("deploy",), subresources=("status",),
                 categories=("all",)),
    ResourceType("replicasets", "ReplicaSet", True, "apps", short_names=("rs",), subresources=("status",),
                 categories=("all",)),
    ResourceType("statefulsets", "StatefulSet", True, "apps", short_names=("sts",), subresources=("status",),
                 categories=("all",)),
    ResourceType("daemonsets", "DaemonSet", True, "apps", short_names=("ds",), subresources=("status",),
                 categories=("all",)),
    ResourceType("roles", "Role", True, "rbac.authorization.k8s.io"),
    ResourceType("rolebindings", "RoleBinding", True, "rbac.authorization.k8s.io"),
    ResourceType("clusterroles", "ClusterRole", False, "rbac.authorization.k8s.io"),
    ResourceType("clusterrolebindings", "ClusterRoleBinding", False, "rbac.authorization.k8s.io"),
    # stored and served (deploy/scheduler-extender/ applies them); nothing acts on them: no eviction API, and the
    # scheduler takes a pod's priority from spec.priority, as kube-scheduler does after admission
    ResourceType("poddisruptionbudgets", "PodDisruptionBudget", True, "policy", short_names=("pdb",),
                 subresources=("status",)),
    ResourceType("priorityclasses", "PriorityClass", False, "scheduling.k8s.io", short_names=("pc",)),
    # stored and served (deploy/ and the chart apply them); not enforced: pods talk over loopback
    ResourceType("networkpolicies", "NetworkPolicy", True, "networking.k8s.io", short_names=("netpol",)),
)
RESOURCES: dict[str, ResourceType] = {r.plural: r for r in _ALL}
GROUPS: dict[str, list[ResourceType]] = {}
for _r in _ALL:
    GROUPS.setdefault(_r.group_version, []).append(_r)

# Review-only resources (create answers at once, nothing is stored).
REVIEWS = {
    ("authorization.k8s.io", "selfsubjectaccessreviews"): "SelfSubjectAccessReview",
    ("authorization.k8s.io", "selfsubjectrulesreviews"): "SelfSubjectRulesReview",
    ("authentication.k8s.io", "selfsubjectreviews"): "SelfSubjectReview",
}


def resource_for(group: str, version: str, plural: str) -> ResourceType | None:
    r = RESOURCES.get(plural)
    return r if r is not None and r.group == group and r.version == version else None


def is_namespaced(plural: str) -> bool:
    return RESOURCES[plural].namespaced
