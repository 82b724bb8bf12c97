"""A container's environment as the devcluster's kubelet builds it (envFrom, env, valueFrom, $(VAR)), from objects
in the devcluster's own store, and the kubelet's refusals for references that do not resolve."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from hubfleet_devcluster.podenv import PodFailure, container_env, expand, translate, translate_path
from hubfleet_devcluster.store import Store

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def store():
    s = Store()
    s.create("namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "jhub"}})
    s.create("configmaps", "jhub", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                                    "data": {"MODE": "lab", "LEVEL": "3"}})
    s.create("secrets", "jhub", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
                                 "data": {"TOKEN": _b64("s3cret")}})
    return s


POD = {"metadata": {"name": "jupyter-alice", "namespace": "jhub", "uid": "u-1",
                    "labels": {"hub.jupyter.org/username": "alice"}},
       "spec": {"nodeName": "node-1", "serviceAccountName": "default"}}


def test_env_from_value_from_and_later_entries_win(store):
    container = {"envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}, "prefix": "X_"}],
                 "env": [{"name": "LEVEL", "value": 4},
                         {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "USER", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.labels['hub.jupyter.org/username']"}}},
                         {"name": "TOK", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "TOKEN"}}},
                         {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                         {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "K",
                                                                         "optional": True}}}]}
    env = container_env(store, POD, container, ip="127.0.3.4")
    assert env == {"MODE": "lab", "LEVEL": "4", "X_TOKEN": "s3cret", "POD": "jupyter-alice", "IP": "127.0.3.4",
                   "USER": "alice", "TOK": "s3cret", "M": "lab"}


@pytest.mark.parametrize("ref, message", [
    ({"secretKeyRef": {"name": "sec", "key": "MISSING"}}, 'secret "sec" key "MISSING" not found'),
    ({"configMapKeyRef": {"name": "nope", "key": "MODE"}}, 'configmap "nope" key "MODE" not found'),
])
def test_a_reference_that_does_not_resolve_fails_the_pod_as_a_kubelet_does(store, ref, message):
    with pytest.raises(PodFailure) as e:
        container_env(store, POD, {"env": [{"name": "V", "valueFrom": ref}]}, ip=None)
    assert e.value.reason == "CreateContainerConfigError" and e.value.message == message


def test_expansion_and_translation():
    assert expand("$(HOME)/x:$(UNSET)", {"HOME": "/home/jovyan"}) == "/home/jovyan/x:$(UNSET)"
    mounts = [("/home/jovyan", Path("/srv/pvc/alice"))]
    assert translate("--ip=0.0.0.0 --notebook-dir=/home/jovyan/work", "127.0.3.4", mounts) == \
        "--ip=127.0.3.4 --notebook-dir=/srv/pvc/alice/work"
    assert translate("/home/jovyanx", "127.0.3.4", mounts) == "/home/jovyanx"  # not under the mount
    assert translate_path("/home/jovyan/a", mounts) == "/srv/pvc/alice/a" and translate_path("/tmp", mounts) == "/tmp"
