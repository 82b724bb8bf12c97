"""Spawn progress in words: every rule of the table against a real event text, with the Kubernetes source that
writes it (kubernetes/kubernetes unless said otherwise; paths as of the 1.30-1.33 releases)."""

from __future__ import annotations

import pytest

from hubfleet.spawners import events as ev
from hubfleet.spawners.events import RuleError, compile_rules, context_for, describe, explain_failure

GPU_MSG = ("0/12 nodes are available: 3 Insufficient nvidia.com/gpu, 9 node(s) didn't match Pod's node "
           "affinity/selector. preemption: 0/12 nodes are available: 3 No preemption victims found for incoming "
           "pod, 9 Preemption is not helpful for scheduling.")
CTX = context_for(profile="Small", memory_limit=4 * 1024 ** 3, larger_profile="Large",
                  image="quay.io/jupyter/scipy-notebook:2024-12-09")

# rule name, reason, real message, source file, what the sentence must say, phase, level
CASES = [
    ("scheduled", "Scheduled", "Successfully assigned jhub/jupyter-alice to gke-hub-gpu-pool-8d1c",
     "pkg/scheduler/schedule_one.go", "place on node gke-hub-gpu-pool-8d1c", "scheduled", "info"),
    ("unschedulable-gpu", "FailedScheduling", GPU_MSG,
     "pkg/scheduler/framework/types.go (FitError), plugins/noderesources/fit.go, plugins/nodeaffinity",
     "waiting for a GPU node", "waiting", "info"),
    ("unschedulable-resources", "FailedScheduling",
     "0/4 nodes are available: 4 Insufficient cpu. preemption: 0/4 nodes are available: 4 No preemption victims "
     "found for incoming pod.", "pkg/scheduler/framework/plugins/noderesources/fit.go",
     "no node has enough cpu free for the Small profile", "waiting", "info"),
    ("unschedulable-volume", "FailedScheduling",
     "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are "
     "available: 3 Preemption is not helpful for scheduling.",
     "pkg/scheduler/framework/plugins/volumebinding/volume_binding.go", "storage volume to be bound", "waiting",
     "warning"),
    ("unschedulable", "FailedScheduling",
     "0/5 nodes are available: 5 node(s) had untolerated taint {hub.jupyter.org/dedicated: user}. preemption: "
     "0/5 nodes are available: 5 Preemption is not helpful for scheduling.",
     "pkg/scheduler/framework/plugins/tainttoleration/taint_toleration.go",
     "waiting for a node the Small profile may run on", "waiting", "info"),
    ("preempted", "Preempted", "Preempted by pod 5c1e0a55-2b1f-4a8f-9d0e-3f4c2a9b7e10 on node node-2",
     "pkg/scheduler/framework/preemption/preemption.go", "higher priority", "failed", "error"),
    ("scale-up", "TriggeredScaleUp",
     "pod triggered scale-up: [{https://www.googleapis.com/compute/v1/projects/hub/zones/europe-west4-a/"
     "instanceGroups/gke-hub-gpu-pool-grp 0->1 (max: 4)}]",
     "kubernetes/autoscaler cluster-autoscaler/processors/status/eventing_scale_up_processor.go",
     "A new node is being added", "waiting", "info"),
    ("no-scale-up", "NotTriggerScaleUp",
     "pod didn't trigger scale-up: 2 node(s) didn't match Pod's node affinity/selector, 1 max node group size "
     "reached", "kubernetes/autoscaler cluster-autoscaler/processors/status/eventing_scale_up_processor.go",
     "can be added to the cluster; ask your administrator", "waiting", "warning"),
    ("pulling", "Pulling", 'Pulling image "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09"',
     "pkg/kubelet/images/image_manager.go", "a first pull of a large image takes minutes", "pulling", "info"),
    ("pulled-present", "Pulled", 'Container image "quay.io/jupyter/base-notebook:latest" already present on machine',
     "pkg/kubelet/images/image_manager.go", "already on the node", "starting", "info"),
    ("pulled", "Pulled",
     'Successfully pulled image "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09" in 2m13.442s (2m13.442s '
     "including waiting). Image size: 4120349101 bytes.", "pkg/kubelet/images/image_manager.go",
     "in 2m13.442s", "starting", "info"),
    ("pull-backoff", "BackOff", 'Back-off pulling image "quay.io/jupyter/no-such-notebook:1.0"',
     "pkg/kubelet/images/image_manager.go", "no-such-notebook:1.0 cannot be fetched", "pulling", "error"),
    ("pull-failed", "Failed",
     'Failed to pull image "quay.io/jupyter/no-such-notebook:1.0": rpc error: code = NotFound desc = failed to '
     'pull and unpack image "quay.io/jupyter/no-such-notebook:1.0": failed to resolve reference '
     '"quay.io/jupyter/no-such-notebook:1.0": quay.io/jupyter/no-such-notebook:1.0: not found',
     "pkg/kubelet/images/image_manager.go", "no-such-notebook:1.0 cannot be fetched", "pulling", "error"),
    ("pull-error", "Failed", "Error: ErrImagePull", "pkg/kubelet/kuberuntime/kuberuntime_container.go "
     "(startContainer), pkg/kubelet/images/types.go", "cannot be fetched", "pulling", "error"),
    ("image-invalid", "InspectFailed",
     'Failed to apply default image tag "Quay.io/Bad Image": couldn\'t parse image reference "Quay.io/Bad Image": '
     "invalid reference format", "pkg/kubelet/images/image_manager.go", "is not valid", "failed", "error"),
    ("created", "Created", "Created container: notebook", "pkg/kubelet/kuberuntime/kuberuntime_container.go",
     "Created the container notebook", "starting", "info"),
    ("started", "Started", "Started container notebook", "pkg/kubelet/kuberuntime/kuberuntime_container.go",
     "waiting for it to answer", "starting", "info"),
    ("crash-backoff", "BackOff",
     "Back-off restarting failed container notebook in pod jupyter-alice_jhub(0b6f1ef4-9a4e-4a57-8f5e-1c1d0c8e2f11)",
     "pkg/kubelet/kuberuntime/kuberuntime_manager.go", "stopped right after starting", "", "error"),
    ("probe-unready", "Unhealthy",
     'Readiness probe failed: Get "http://10.0.3.7:8888/user/alice/api": dial tcp 10.0.3.7:8888: connect: '
     "connection refused", "pkg/kubelet/prober/prober.go", "does not answer yet", "starting", "info"),
    ("stopping", "Killing", "Stopping container notebook", "pkg/kubelet/kuberuntime/kuberuntime_container.go",
     "Stopping your server's container notebook", "", "info"),
    ("evicted", "Evicted",
     "The node was low on resource: memory. Threshold quantity: 100Mi, available: 91884Ki. Container notebook was "
     "using 3921436Ki, request is 1Gi, has larger consumption of memory.", "pkg/kubelet/eviction/helpers.go",
     "ran out of memory", "failed", "error"),
    ("attached", "SuccessfulAttachVolume",
     'AttachVolume.Attach succeeded for volume "pvc-7d3e2c1a-5b0f-4e47-a1d2-9c8b7a6f5e4d"',
     "pkg/volume/util/operationexecutor/operation_generator.go", "attached to the node", "scheduled", "info"),
    ("multi-attach", "FailedAttachVolume",
     'Multi-Attach error for volume "pvc-7d3e2c1a-5b0f-4e47-a1d2-9c8b7a6f5e4d" Volume is already exclusively '
     "attached to one node and can't be attached to another",
     "pkg/controller/volume/attachdetach/reconciler/reconciler.go", "still attached to another node",
     "scheduled", "warning"),
    ("attach-failed", "FailedAttachVolume",
     'AttachVolume.Attach failed for volume "pvc-7d3e2c1a-5b0f-4e47-a1d2-9c8b7a6f5e4d" : rpc error: code = '
     "DeadlineExceeded desc = context deadline exceeded",
     "pkg/volume/util/operationexecutor/operation_generator.go", "could not be attached", "scheduled", "warning"),
    ("mount-failed", "FailedMount",
     "Unable to attach or mount volumes: unmounted volumes=[home], unattached volumes=[], failed to process "
     "volumes=[]: timed out waiting for the condition", "pkg/kubelet/volumemanager/volume_manager.go",
     "could not be mounted yet", "scheduled", "warning"),
    # container states (pod status, no event of their own): the reason strings the kubelet and the CRI set
    ("oom-killed", "OOMKilled", "container notebook exited with code 137",
     "containerd internal/cri/server/events.go (reason OOMKilled); kubelet container status",
     "more than its 4 GiB memory limit", "failed", "error"),
    ("crash-loop", "CrashLoopBackOff",
     "back-off 40s restarting failed container=notebook pod=jupyter-alice_jhub(0b6f1ef4-9a4e-4a57-8f5e-1c1d0c8e2f11)",
     "pkg/kubelet/kuberuntime/kuberuntime_manager.go, pkg/kubelet/container/sync_result.go",
     "keeps stopping right after it starts", "", "error"),
    ("image-pull-state", "ErrImagePull",
     'rpc error: code = NotFound desc = failed to pull and unpack image "quay.io/jupyter/no-such-notebook:1.0"',
     "pkg/kubelet/images/types.go (ErrImagePull)", "cannot be fetched", "pulling", "error"),
    ("image-pull-backoff-state", "ImagePullBackOff", 'Back-off pulling image "quay.io/jupyter/no-such-notebook:1.0"',
     "pkg/kubelet/images/types.go (ErrImagePullBackOff)", "Kubernetes keeps retrying", "pulling", "error"),
    ("config-error", "CreateContainerConfigError", 'secret "hub-user-token" not found',
     "pkg/kubelet/kuberuntime/kuberuntime_container.go (ErrCreateContainerConfig)",
     'cannot be created: secret "hub-user-token" not found', "failed", "error"),
]


def test_every_rule_has_a_case():
    assert sorted(c[0] for c in CASES) == sorted(r.name for r in ev.RULES)
    assert len(ev.RULES) == 30


@pytest.mark.parametrize("name,reason,message,source,says,phase,level", CASES, ids=[c[0] for c in CASES])
def test_rule_words_a_real_event(name, reason, message, source, says, phase, level):
    p = describe({"reason": reason, "message": message, "type": "Warning"}, CTX)
    assert p.rule == name, f"{source}: matched {p.rule!r}"
    assert says in p.message, p.message
    assert (p.phase, p.level) == (phase, level)
    assert "{" not in p.message.replace("{hub.jupyter.org", "") and "None" not in p.message


def test_normal_scale_up_waits_are_not_failures():
    """A FailedScheduling while a node is added is part of a normal wait: info, not a warning or an error."""
    seen = [describe({"type": "Warning", "reason": "FailedScheduling", "message": GPU_MSG}, CTX),
            describe({"type": "Normal", "reason": "TriggeredScaleUp", "message": "pod triggered scale-up: "
                      "[{gpu-pool 0->1 (max: 4)}]"}, CTX)]
    assert [p.level for p in seen] == ["info", "info"]
    assert "Insufficient" not in seen[0].message and "0/12" not in seen[0].message


def test_an_unknown_event_keeps_its_own_message():
    p = describe({"type": "Warning", "reason": "FailedCreatePodSandBox", "message": "Failed to create pod sandbox: x"})
    assert (p.message, p.rule, p.level, p.phase) == ("Failed to create pod sandbox: x", "", "warning", "")


def _pod(**container):
    return {"status": {"phase": "Running", "containerStatuses": [{"name": "notebook", "image": "img:1", **container}]}}


def test_oom_killed_explained_with_the_profiles_memory_limit():
    pod = _pod(state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed"}},
               lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}})
    events = [{"reason": "Started", "message": "Started container notebook"},
              {"reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container notebook in "
               "pod jupyter-alice_jhub(0b6f)"}]
    why = explain_failure(events, pod, CTX)
    assert why.rule == "oom-killed"
    assert why.sentence == ("Your server used more than its 4 GiB memory limit while starting; pick the Large profile "
                            "or load less at start, and ask your administrator for more memory if you need it.")


def test_oom_without_a_known_limit_or_larger_profile_still_reads_well():
    why = explain_failure([], _pod(state={"terminated": {"reason": "OOMKilled", "exitCode": 137}}),
                          context_for(profile="Small"))
    assert why.sentence.startswith("Your server used more than its memory limit while starting; pick a profile "
                                   "with more memory")


def test_image_pull_failure_explained_with_the_image():
    pod = _pod(state={"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "img:1"'}})
    why = explain_failure([{"reason": "Pulling", "message": 'Pulling image "img:1"'}], pod, CTX)
    assert why.rule == "image-pull-backoff-state"
    assert why.sentence.startswith("The image img:1 cannot be fetched")
    assert "pick another image, or ask your administrator" in why.sentence


def test_a_timeout_while_waiting_for_a_gpu_is_explained():
    events = [{"type": "Warning", "reason": "FailedScheduling", "message": GPU_MSG}]
    why = explain_failure(events, {"status": {"phase": "Pending"}}, CTX)
    assert why.rule == "unschedulable-gpu"
    assert why.sentence.startswith("No GPU node became free in time; try again later")


def test_no_scale_up_outranks_the_waits_before_it():
    events = [{"type": "Warning", "reason": "FailedScheduling", "message": GPU_MSG},
              {"type": "Normal", "reason": "NotTriggerScaleUp", "message": "pod didn't trigger scale-up: 1 max node "
               "group size reached"},
              {"type": "Warning", "reason": "FailedScheduling", "message": GPU_MSG}]
    assert explain_failure(events, None, CTX).rule == "no-scale-up"


def test_nothing_known_explains_nothing():
    assert explain_failure([{"reason": "Created", "message": "Created container notebook"}], None, CTX) is None


# ---- operator rules

def test_an_operator_rule_overrides_a_builtin_by_name_and_adds_its_own_first():
    rules = compile_rules([
        {"name": "unschedulable-gpu", "reason": "FailedScheduling", "pattern": r"Insufficient nvidia\.com/gpu",
         "text": "All A100s are busy (class of {profile}); the queue page shows your place.", "phase": "waiting"},
        {"name": "site-quota", "reason": "FailedCreate", "pattern": r"exceeded quota: (?P<quota>\S+)",
         "text": "The project quota {quota} is full.", "level": "error", "advice": "Stop a server first."},
    ])
    assert [r.name for r in rules[:2]] == ["unschedulable-gpu", "site-quota"]
    assert len(rules) == len(ev.RULES) + 1
    p = describe({"reason": "FailedScheduling", "message": GPU_MSG}, CTX, rules)
    assert p.message == "All A100s are busy (class of Small); the queue page shows your place."
    p = describe({"reason": "FailedCreate", "message": "exceeded quota: compute-resources, requested: cpu=2"}, CTX,
                 rules)
    assert (p.message, p.level, p.advice) == ("The project quota compute-resources, is full.", "error",
                                              "Stop a server first.")


@pytest.mark.parametrize("entry,says", [
    ({"name": "bad", "reason": "X", "pattern": "(unclosed", "text": "t"},
     "ProfileSpawner.progress_rules[0] rule 'bad': pattern '(unclosed' does not compile"),
    ({"name": "bad", "reason": "X", "pattern": "x", "text": "{nope}"}, "text names ['nope']"),
    ({"name": "bad", "reason": "X", "pattern": "x", "text": "t", "phase": "booting"}, "phase 'booting' is not one"),
    ({"name": "bad", "reason": "X", "pattern": "x", "text": "t", "colour": "red"}, "unknown key(s) ['colour']"),
    ({"reason": "X", "pattern": "x", "text": "t"}, "'name' must be a non-empty string"),
])
def test_a_bad_operator_rule_is_refused_naming_it(entry, says):
    with pytest.raises(RuleError) as e:
        compile_rules([entry])
    assert says in str(e.value)


# ---- spawn times

def test_usual_time_from_the_profiles_history():
    durations = [20, 22, 25, 30, 31, 33, 40, 41, 45, 130]
    assert ev.percentile(durations, 50) == 31 and ev.percentile(durations, 90) == 45
    assert ev.usual_time("Large", durations) == "Servers of the Large profile usually start in 31 s (9 in 10 within 45 s)."
    assert ev.usual_time("Large", [130, 140, 600, 610, 620]) == \
        "Servers of the Large profile usually start in 10 min (9 in 10 within 10 min 20 s)."
    assert ev.usual_time("Large", [20, 30]) == "", "too few spawns to say"


@pytest.mark.parametrize("n,text", [(4 * 1024 ** 3, "4 GiB"), (512 * 1024 ** 2, "512 MiB"),
                                    (int(1.5 * 1024 ** 3), "1.5 GiB"), (1000, "1000 bytes")])
def test_format_bytes(n, text):
    assert ev.format_bytes(n) == text
