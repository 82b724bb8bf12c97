"""One builder for the Pod bodies tests send to the devcluster or feed to the pure scheduling code."""

from __future__ import annotations


def pod(name: str = "p", *, image: str = "busybox:1.36", command: list[str] | None = None, port: int | None = None,
        requests: dict | None = None, limits: dict | None = None, node_selector: dict | None = None,
        affinity: dict | None = None, tolerations: list | None = None, scheduler_name: str | None = None,
        volumes: list | None = None, mounts: list | None = None, init: list | None = None,
        labels: dict | None = None, namespace: str | None = None, grace: int | None = None) -> dict:
    """A Pod with one container named "main"; every argument left out stays out of the body."""
    container: dict = {"name": "main", "image": image}
    if command is not None:
        container["command"] = command
    if port:
        container["ports"] = [{"containerPort": port, "name": "http"}]
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    if resources:
        container["resources"] = resources
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict = {"containers": [container]}
    optional = {"terminationGracePeriodSeconds": grace, "nodeSelector": node_selector, "affinity": affinity,
                "tolerations": tolerations, "schedulerName": scheduler_name, "volumes": volumes,
                "initContainers": init}
    spec.update({k: v for k, v in optional.items() if v is not None and v != [] and v != {}})
    metadata: dict = {"name": name, "labels": labels or {}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
