"""Images without a registry: an image maps to what it means locally by a glob pattern (Docker's ENTRYPOINT as
`command`, CMD as `args`, HOME and extra env). Pure."""

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
