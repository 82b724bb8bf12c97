"""Images without a registry: an image maps to what it means locally by a glob pattern (Docker's ENTRYPOINT as
`command`, CMD as `args`, HOME and extra env); an image with no mapping, or one a test marks missing, does not exist.
What a kubelet decides about pulling (``imagePullPolicy``, its default, the back-off between failed pulls) and the
words it uses. Pure."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageMapping:
    """What an image means locally: Docker's ENTRYPOINT (`command`) and CMD (`args`), HOME and extra env."""
    pattern: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    home: str | None = None
    env: dict = field(default_factory=dict)


# Images of the Jupyter stacks and z2jh run the local jupyterhub-singleuser (CMD of those images).
DEFAULT_IMAGES = (
    ImageMapping("quay.io/jupyterhub/k8s-singleuser-sample*", args=("jupyterhub-singleuser",), home="/home/jovyan"),
    ImageMapping("jupyterhub/k8s-singleuser-sample*", args=("jupyterhub-singleuser",), home="/home/jovyan"),
    ImageMapping("quay.io/jupyter/*", args=("start-notebook.py",), home="/home/jovyan"),
    ImageMapping("jupyter/*", args=("start-notebook.py",), home="/home/jovyan"),
    ImageMapping("quay.io/jupyterhub/singleuser*", args=("jupyterhub-singleuser",), home="/home/jovyan"),
    ImageMapping("jupyterhub/singleuser*", args=("jupyterhub-singleuser",), home="/home/jovyan"),
    ImageMapping("busybox*", args=("sh",)),
    ImageMapping("python*", args=("python3",)),
)
# Executables an image would have on its PATH, provided by the devcluster's environment.
_COMMAND_ALIASES = {"start-notebook.py": "jupyterhub-singleuser", "start-notebook.sh": "jupyterhub-singleuser",
                    "start-singleuser.sh": "jupyterhub-singleuser", "start-singleuser.py": "jupyterhub-singleuser"}


def resolve_image(image: str, mappings: tuple[ImageMapping, ...]) -> ImageMapping | None:
    for m in mappings:
        if fnmatch.fnmatchcase(image, m.pattern):
            return m
    return None


# --- pulling, as a kubelet decides it -----------------------------------------------------------------------------

MAX_PULL_BACKOFF = 300.0  # kubelet's MaxContainerBackOff: the image back-off doubles up to it


def pull_policy(container: dict) -> str:
    """The container's ``imagePullPolicy``, or kube-apiserver's default: ``Always`` for an image without a tag or
    tagged ``:latest`` (and no digest), ``IfNotPresent`` otherwise."""
    explicit = container.get("imagePullPolicy")
    if explicit:
        return explicit
    image = container.get("image") or ""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def reference(image: str) -> str:
    """The fully qualified name a container runtime resolves: ``busybox`` is ``docker.io/library/busybox:latest``."""
    name, _, digest = image.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    if not digest and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return f"{name}@{digest}" if digest else name


def image_exists(image: str, mappings: tuple[ImageMapping, ...], missing: tuple[str, ...] = ()) -> bool:
    """An image exists when a mapping says what it runs and no ``missing`` glob pattern names it."""
    return resolve_image(image, mappings) is not None and \
        not any(fnmatch.fnmatchcase(image, p) for p in missing)


def pull_backoff(base: float, failures: int) -> float:
    """Seconds before the next pull after ``failures`` failed pulls in a row: base, 2 x base, 4 x base, ... capped
    at 300 s (kubelet: base 10 s)."""
    return min(base * 2 ** max(failures - 1, 0), MAX_PULL_BACKOFF)


def pull_error(image: str) -> str:
    """containerd's answer for an image its registry does not have (the kubelet's ``Failed`` event quotes it)."""
    ref = reference(image)
    return (f"rpc error: code = NotFound desc = failed to pull and unpack image \"{ref}\": failed to resolve "
            f"reference \"{ref}\": {ref}: not found")


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, to the millisecond: ``5ms``, ``1.25s``."""
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)}ms"
    return f"{round(seconds, 3):g}s"
