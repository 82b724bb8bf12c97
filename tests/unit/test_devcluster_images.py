"""What the devcluster's kubelet decides about pulling an image (pure): the default pull policy, the reference a
runtime resolves, which images exist, the back-off between failed pulls; and the missing_images fault knob."""

from __future__ import annotations

import pytest

from hubfleet_devcluster.api import APIError
from hubfleet_devcluster.cli import build_parser
from hubfleet_devcluster.faults import Faults
from hubfleet_devcluster.images import (DEFAULT_IMAGES, go_duration, image_exists, pull_backoff, pull_error,
                                        pull_policy, reference)


@pytest.mark.parametrize("container, expected", [
    ({"image": "busybox"}, "Always"),
    ({"image": "busybox:latest"}, "Always"),
    ({"image": "localhost:5000/lab/nb"}, "Always"),  # a registry port is not a tag
    ({"image": "localhost:5000/lab/nb:2"}, "IfNotPresent"),
    ({"image": "quay.io/jupyter/base-notebook:2024-12-09"}, "IfNotPresent"),
    ({"image": "busybox@sha256:abc"}, "IfNotPresent"),
    ({"image": "busybox", "imagePullPolicy": "Never"}, "Never"),
    ({"image": "busybox:1.36", "imagePullPolicy": "Always"}, "Always"),
])
def test_pull_policy_defaults_as_kube_apiserver(container, expected):
    assert pull_policy(container) == expected


@pytest.mark.parametrize("image, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("jupyter/base-notebook:x", "docker.io/jupyter/base-notebook:x"),
    ("quay.io/jupyter/base-notebook", "quay.io/jupyter/base-notebook:latest"),
    ("localhost:5000/nb:1", "localhost:5000/nb:1"),
    ("registry.example.org/team/app@sha256:abc", "registry.example.org/team/app@sha256:abc"),
])
def test_reference_as_a_runtime_resolves_it(image, expected):
    assert reference(image) == expected
    assert pull_error(image).endswith(f'failed to resolve reference "{expected}": {expected}: not found')


def test_an_image_exists_when_mapped_and_not_marked_missing():
    assert image_exists("quay.io/jupyter/base-notebook:2024-12-09", DEFAULT_IMAGES)
    assert not image_exists("registry.example.org/team/app:1.0", DEFAULT_IMAGES)
    assert not image_exists("quay.io/jupyter/base-notebook:no-such-tag", DEFAULT_IMAGES, ("*:no-such-tag",))
    assert image_exists("quay.io/jupyter/base-notebook:1", DEFAULT_IMAGES, ("*:no-such-tag",))


def test_pull_backoff_doubles_up_to_five_minutes():
    assert [pull_backoff(10, n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert pull_backoff(0.2, 3) == pytest.approx(0.8)


@pytest.mark.parametrize("seconds, expected", [(0.0042, "4ms"), (0.9999, "1000ms"), (1.25, "1.25s"), (62, "62s")])
def test_go_duration(seconds, expected):
    assert go_duration(seconds) == expected


def test_missing_images_fault():
    faults = Faults()
    faults.update({"missing_images": ["*:no-such-tag", "registry.example.org/*"]})
    assert faults.as_dict()["missing_images"] == ["*:no-such-tag", "registry.example.org/*"]
    for bad in ("*:no-such-tag", [""], [3]):
        with pytest.raises(APIError) as e:
            faults.update({"missing_images": bad, "error_rate": 0.5})
        assert e.value.code == 400 and "faults.missing_images" in e.value.message
    assert faults.as_dict()["missing_images"] == ["*:no-such-tag", "registry.example.org/*"]
    assert faults.error_rate == 0


def test_cli_pull_options():
    args = build_parser().parse_args(["--state", "s", "--missing-image", "a/*", "--missing-image", "b:*",
                                      "--image-pull-backoff", "0.5"])
    assert (args.missing_image, args.image_pull_backoff) == (["a/*", "b:*"], 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--state", "s", "--image-pull-backoff", "0"])
