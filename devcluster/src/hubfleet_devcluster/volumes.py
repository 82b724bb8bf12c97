"""A pod's volumes as the process kubelet backs them: a PersistentVolumeClaim is a directory under the state dir
(kept across stop/start), an emptyDir a directory of the pod's, a configMap or secret volume its keys written out
as files (all of them, or the ``items`` asked for, with ``defaultMode``/``mode``).

As on a kubelet, a volume whose object does not exist yet is not a failure: the pod waits in ContainerCreating
and a ``FailedMount`` warning is recorded (again every ``MOUNT_RETRY_EVENT`` seconds) until the object appears or
the pod is deleted. A ``subPath`` names a file or a directory inside its volume; a missing one is created as a
directory, as the kubelet does."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Callable

from .podenv import PodFailure
from .sandbox import Identity, prepare_volume
from .store import Store

MOUNT_RETRY_EVENT = 10.0  # seconds between repeated FailedMount warnings of one volume
POLL = 0.2


def _source(store: Store, ns: str, vol: dict) -> tuple[str, str, dict | None, dict[str, bytes]] | None:
    """(kind, name, object, files) of a configMap/secret volume; None for other volume types."""
    if "configMap" in vol:
        name = (vol["configMap"] or {}).get("name")
        obj = store.find("configmaps", ns, name)
        data = {k: v.encode() for k, v in ((obj or {}).get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in ((obj or {}).get("binaryData") or {}).items()})
        return "configmap", name, obj, data
    if "secret" in vol:
        name = (vol["secret"] or {}).get("secretName")
        obj = store.find("secrets", ns, name)
        data = {k: base64.b64decode(v) for k, v in ((obj or {}).get("data") or {}).items()}
        data.update({k: v.encode() for k, v in ((obj or {}).get("stringData") or {}).items()})
        return "secret", name, obj, data
    return None


def write_files(d: Path, vol_name: str, source: dict, data: dict[str, bytes]) -> None:
    """Write a configMap/secret volume's files into `d`: every key, or only `items` (key -> relative path)."""
    default_mode = source.get("defaultMode", 0o644)
    items = source.get("items")
    wanted = [(it.get("key"), it.get("path"), it.get("mode", default_mode)) for it in items] if items else \
        [(k, k, default_mode) for k in data]
    for key, rel, mode in wanted:
        if key not in data:
            if source.get("optional"):
                continue
            raise PodFailure("FailedMount", f'volume "{vol_name}": key "{key}" is not in its source')
        target = (d / rel).resolve()
        if not target.is_relative_to(d.resolve()) or (not items and "/" in rel):  # the API refuses these too
            raise PodFailure("FailedMount", f'volume "{vol_name}": path {rel!r} leaves the volume')
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])
        target.chmod(mode)


async def prepare(store: Store, pod: dict, pod_dir: Path, state_dir: Path, who: Identity,
                  warn: Callable[[str], None], stopping: Callable[[], bool]) -> dict[str, Path] | None:
    """Back each of the pod's volumes with a directory; waits (warning through `warn`) for a claim, configMap or
    secret that does not exist yet. None when the pod was deleted meanwhile."""
    ns = pod["metadata"]["namespace"]
    dirs: dict[str, Path] = {}
    loop = asyncio.get_running_loop()
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = vol.get("name")
        warned_at = None
        while True:
            missing = None
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"].get("claimName")
                if store.find("persistentvolumeclaims", ns, claim) is None:
                    missing = f'persistentvolumeclaim "{claim}" not found'
            else:
                src = _source(store, ns, vol)
                if src is not None and src[2] is None and not (vol.get("configMap") or vol.get("secret") or {}
                                                               ).get("optional"):
                    missing = f'{src[0]} "{src[1]}" not found'
            if missing is None:
                break
            if stopping():
                return None
            if warned_at is None or loop.time() - warned_at >= MOUNT_RETRY_EVENT:
                warn(f'MountVolume.SetUp failed for volume "{name}" : {missing}')
                warned_at = loop.time()
            await asyncio.sleep(POLL)
        if "persistentVolumeClaim" in vol:
            d = state_dir / "volumes" / ns / vol["persistentVolumeClaim"].get("claimName")
            d.mkdir(parents=True, exist_ok=True)
            prepare_volume(d, who)
        elif (src := _source(store, ns, vol)) is not None:
            d = pod_dir / "volumes" / name
            d.mkdir(parents=True, exist_ok=True)
            write_files(d, name, vol.get("configMap") or vol.get("secret") or {}, src[3])
        else:  # emptyDir and other types: an empty directory anyone in the pod may write
            d = pod_dir / "volumes" / name
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)
        dirs[name] = d
    return dirs


def mounts(container: dict, volumes: dict[str, Path]) -> list[tuple[str, Path, bool]]:
    """(mountPath, host file or directory, readOnly) for the container's volumeMounts, longest path first; a
    subPath stays inside its volume (the API refuses `..`; a symlink out of the volume is refused here)."""
    out = []
    for m in container.get("volumeMounts") or []:
        host = volumes.get(m.get("name"))
        if host is None:
            raise PodFailure("CreateContainerConfigError", f'volumeMount "{m.get("name")}" names no volume')
        if m.get("subPath"):
            target = (host / m["subPath"]).resolve()
            if not target.is_relative_to(host.resolve()):
                raise PodFailure("CreateContainerConfigError", f'subPath "{m["subPath"]}" leaves volume '
                                 f'"{m.get("name")}"')
            if not target.exists():
                target.mkdir(parents=True)
            host = target
        out.append((m["mountPath"].rstrip("/") or "/", host, bool(m.get("readOnly"))))
    out.sort(key=lambda mp: len(mp[0]), reverse=True)
    return out
