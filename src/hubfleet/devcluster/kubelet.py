"""The process kubelet: runs each bound pod's first container as a local process.

Each pod gets its own loopback address 127.0.X.Y (loopback is a whole /8), and its server listens there on the
container's declared port, so KubeSpawner's normal pod-IP URL works unchanged. What a container would see of its
own network namespace is translated: ``0.0.0.0`` in its env and args becomes the pod IP. Mounted paths are
translated too: a PersistentVolumeClaim is a directory under the state dir (kept across stop/start and devcluster
restarts), an emptyDir a directory of the pod's, configMap and secret volumes are written out as files. Any path in
the container's env, args or workingDir under a mount path is rewritten to the directory behind it.

Images are not pulled: an image maps to a local "image" entry (command, args, home directory, env) by a glob
pattern; an image with no mapping fails the pod with ``ErrImagePull`` and a message saying how to add one.

Limits: processes run as the devcluster's own user (the pod's runAsUser is recorded, not applied); cpu/memory limits
are not enforced; a container that exits is not restarted (the pod goes Succeeded/Failed).
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import ipaddress
import json
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .status import now_iso
from .store import Store
from .events import forget_events, record_event

log = logging.getLogger("hubfleet.devcluster.kubelet")
COMPONENT = "kubelet"


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


class AddressPool:
    """Loopback addresses for pods: 127.0.1.1 .. 127.0.254.254 (127.0.0.x is left to the host's servers)."""

    def __init__(self) -> None:
        self._free = (str(ipaddress.IPv4Address(f"127.0.{a}.{b}")) for a in range(1, 255) for b in range(1, 255))
        self._released: list[str] = []

    def take(self) -> str:
        return self._released.pop(0) if self._released else next(self._free)

    def give_back(self, ip: str) -> None:
        self._released.append(ip)


class PodFailure(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    ip: str | None = None
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task | None = None
    stopping: bool = False
    container: str = "container"  # the name of the container that runs (for the events)


class ProcessKubelet:
    def __init__(self, store: Store, state_dir: Path, images: tuple[ImageMapping, ...] = DEFAULT_IMAGES,
                 ready_timeout: float = 300.0):
        self.store = store
        self.state_dir = Path(state_dir)
        self.images = tuple(images)
        self.ready_timeout = ready_timeout
        self.pods: dict[str, RunningPod] = {}
        self.addresses = AddressPool()
        self._queue: asyncio.Queue = asyncio.Queue()
        store.listeners.append(lambda t, p, o: self._queue.put_nowait((t, o)) if p == "pods" else None)
        self._base_env = self._make_base_env()

    def _make_base_env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        if os.geteuid() == 0:
            # The singleuser server refuses to run as root; the pod's runAsUser cannot be applied by a process
            # kubelet that shares the machine's user, so the node-level Jupyter config allows it.
            cfg = self.state_dir / "node-jupyter-config"
            cfg.mkdir(parents=True, exist_ok=True)
            (cfg / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"allow_root": True}}))
            env["JUPYTER_CONFIG_PATH"] = str(cfg)
        return env

    # --- what pods/log reads ---------------------------------------------------------------------------------------

    def log_path(self, pod: dict, container: str, previous: bool) -> Path | None:
        meta = pod["metadata"]
        d = self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        return d / (f"{container}.previous.log" if previous else f"{container}.log")

    def running(self, pod: dict, container: str) -> bool:
        rp = self.pods.get(pod["metadata"]["uid"])
        return rp is not None and rp.proc is not None and rp.proc.returncode is None

    # --- main loop ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        for pod in self.store.list("pods"):
            self._queue.put_nowait(("ADDED", pod))
        while True:
            type_, pod = await self._queue.get()
            try:
                self._react(type_, pod)
            except Exception:
                log.exception("kubelet failed to react to %s %s", type_, pod["metadata"].get("name"))

    def _react(self, type_: str, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        running = self.pods.get(uid)
        if type_ == "DELETED":
            if running is not None and not running.stopping:
                running.stopping = True
                asyncio.ensure_future(self._kill(running, grace=0, remove=False))
            forget_events(self.store, pod)
            return
        if meta.get("deletionTimestamp"):
            if running is None:
                self._remove(pod)
            elif not running.stopping:
                running.stopping = True
                asyncio.ensure_future(self._kill(running, int(meta.get("deletionGracePeriodSeconds", 30)), True))
            return
        if running is None and (pod.get("spec") or {}).get("nodeName") and \
                (pod.get("status") or {}).get("phase", "Pending") == "Pending":
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            running = RunningPod(uid=uid, namespace=meta["namespace"], name=meta["name"],
                                 container=containers[0].get("name") or "container")
            self.pods[uid] = running
            running.task = asyncio.ensure_future(self._run_pod(running))

    def _current(self, rp: RunningPod) -> dict | None:
        pod = self.store.find("pods", rp.namespace, rp.name)
        return pod if pod is not None and pod["metadata"]["uid"] == rp.uid else None

    def _remove(self, pod: dict) -> None:
        meta = pod["metadata"]
        current = self.store.find("pods", meta["namespace"], meta["name"])
        if current is not None and current["metadata"]["uid"] == meta["uid"]:
            self.store.remove("pods", meta["namespace"], meta["name"])

    def _status(self, rp: RunningPod, status: dict) -> None:
        if self._current(rp) is not None:
            self.store.patch("pods", rp.namespace, rp.name, {"status": status}, "status")

    def _event(self, rp: RunningPod, type_: str, reason: str, message: str) -> None:
        pod = self._current(rp)
        if pod is not None:
            record_event(self.store, pod, type_, reason, message, COMPONENT)

    # --- running a pod ----------------------------------------------------------------------------------------------

    async def _run_pod(self, rp: RunningPod) -> None:
        pod = self._current(rp)
        if pod is None:
            return
        containers = (pod.get("spec") or {}).get("containers") or []
        cname = containers[0].get("name", "container") if containers else "container"
        try:
            if not containers:
                raise PodFailure("NoContainers", "the pod has no containers")
            container = containers[0]
            image = container.get("image") or ""
            self._event(rp, "Normal", "Pulling", f'Pulling image "{image}"')
            mapping = resolve_image(image, self.images)
            if mapping is None:
                raise PodFailure("ErrImagePull",
                                 f'Failed to pull image "{image}": the devcluster has no local mapping for it; add '
                                 "one with `hubfleet devcluster --images FILE`, FILE a YAML list such as "
                                 f'[{{pattern: "{image}", command: [...], args: [...]}}]')
            self._event(rp, "Normal", "Pulled", f'Container image "{image}" already present on machine')
            argv = self._argv(container, mapping)
            rp.ip = self.addresses.take()
            mounts = await self._prepare_volumes(rp, pod, container)
            env = self._env(rp, pod, container, mapping, mounts)
            argv = [_translate(a, rp.ip, mounts) for a in argv]
            argv[0] = _COMMAND_ALIASES.get(argv[0], argv[0])
            workdir = container.get("workingDir") or mapping.home
            cwd = _translate_path(workdir, mounts) if workdir else None
            if cwd is None or not Path(cwd).is_dir():
                cwd = env.get("HOME") if Path(env.get("HOME", "/nonexistent")).is_dir() else str(self._pod_dir(rp))
            self._event(rp, "Normal", "Created", f"Created container {cname}")
            logfile = open(self._pod_dir(rp) / f"{cname}.log", "ab")
            try:
                rp.proc = await asyncio.create_subprocess_exec(
                    *argv, env=env, cwd=cwd, stdout=logfile, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
            except (FileNotFoundError, PermissionError) as e:
                raise PodFailure("StartError", f"failed to start container {cname}: {argv[0]!r}: {e.strerror}")
            finally:
                logfile.close()
            if rp.stopping:  # deleted while the process was being created: _kill saw no process to stop
                _signal_group(rp.proc.pid, signal.SIGKILL)
                await rp.proc.wait()
                return
            started_at = now_iso()
            self._event(rp, "Normal", "Started", f"Started container {cname}")
            self._status(rp, {"podIP": rp.ip, "podIPs": [{"ip": rp.ip}], "hostIP": "127.0.0.1",
                              "startTime": started_at})
            ports = [p.get("containerPort") for p in container.get("ports") or [] if p.get("containerPort")]
            exited = asyncio.ensure_future(rp.proc.wait())
            if ports:
                ready = await self._wait_ready(rp, ports[0], exited)
            else:
                ready = not exited.done()
            if ready and not rp.stopping:
                self._status(rp, {
                    "phase": "Running",
                    "conditions": [{"type": t, "status": "True", "lastTransitionTime": now_iso()}
                                   for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                    "containerStatuses": [{"name": cname, "image": image, "imageID": f"local://{image}",
                                           "ready": True, "started": True, "restartCount": 0,
                                           "state": {"running": {"startedAt": started_at}}}]})
            code = await exited
            if not rp.stopping:
                reason = "Completed" if code == 0 else "Error"
                if code < 0:
                    code, reason = 128 - code, "Error"
                self._status(rp, {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                    "containerStatuses": [{"name": cname, "image": image, "ready": False, "restartCount": 0,
                                           "state": {"terminated": {"exitCode": code, "reason": reason,
                                                                    "startedAt": started_at,
                                                                    "finishedAt": now_iso()}}}]})
                if code != 0:
                    self._event(rp, "Warning", "BackOff", f"Container {cname} exited with code {code} ({reason}); "
                                f"its log is {self._pod_dir(rp) / (cname + '.log')}")
        except PodFailure as e:
            self._event(rp, "Warning", "Failed", e.message)
            self._status(rp, {"phase": "Failed", "reason": e.reason, "message": e.message,
                              "containerStatuses": [{"name": cname, "ready": False, "restartCount": 0,
                                                     "state": {"waiting": {"reason": e.reason,
                                                                           "message": e.message}}}]})
        finally:
            if rp.ip and not rp.stopping:
                self.addresses.give_back(rp.ip)
                rp.ip = None

    async def _wait_ready(self, rp: RunningPod, port: int, exited: asyncio.Future) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while loop.time() < deadline and not exited.done() and not rp.stopping:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(rp.ip, port), 1)
                writer.close()
                return True
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
        return False

    def _argv(self, container: dict, mapping: ImageMapping) -> list[str]:
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        if command:
            argv = command + args
        else:
            argv = list(mapping.command) + (args if args else list(mapping.args))
        if not argv:
            raise PodFailure("CreateContainerError", f"no command to run: the container sets no command/args and "
                             f"image mapping {mapping.pattern!r} has none")
        if not all(isinstance(a, str) for a in argv):
            raise PodFailure("CreateContainerError", f"the container's command and args must be strings, got "
                             f"{argv!r}")
        return argv

    def _pod_dir(self, rp: RunningPod) -> Path:
        d = self.state_dir / "pods" / f"{rp.namespace}_{rp.name}_{rp.uid[:8]}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    async def _prepare_volumes(self, rp: RunningPod, pod: dict, container: dict) -> list[tuple[str, Path]]:
        """Back each volume with a directory and return (mountPath, host dir) pairs, longest mount path first."""
        ns = rp.namespace
        dirs: dict[str, Path] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol.get("name")
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"].get("claimName")
                for _ in range(100):  # the claim may be created just after the pod
                    if self.store.find("persistentvolumeclaims", ns, claim) is not None:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise PodFailure("FailedMount", f'persistentvolumeclaim "{claim}" not found')
                d = self.state_dir / "volumes" / ns / claim
            elif "emptyDir" in vol:
                d = self._pod_dir(rp) / "volumes" / name
            elif "configMap" in vol or "secret" in vol:
                d = self._pod_dir(rp) / "volumes" / name
                d.mkdir(parents=True, exist_ok=True)
                if "configMap" in vol:
                    src = self.store.find("configmaps", ns, vol["configMap"].get("name"))
                    data = {k: v.encode() for k, v in ((src or {}).get("data") or {}).items()}
                else:
                    src = self.store.find("secrets", ns, vol["secret"].get("secretName"))
                    data = {k: base64.b64decode(v) for k, v in ((src or {}).get("data") or {}).items()}
                    data.update({k: v.encode() for k, v in ((src or {}).get("stringData") or {}).items()})
                if src is None and not (vol.get("configMap") or vol.get("secret") or {}).get("optional"):
                    raise PodFailure("FailedMount", f'volume "{name}": its source does not exist')
                for k, v in data.items():
                    (d / k).write_bytes(v)
            else:
                d = self._pod_dir(rp) / "volumes" / name  # other volume types: an empty directory stands in
            d.mkdir(parents=True, exist_ok=True)
            dirs[name] = d
        mounts = []
        for m in container.get("volumeMounts") or []:
            host = dirs.get(m.get("name"))
            if host is None:
                raise PodFailure("CreateContainerConfigError", f'volumeMount "{m.get("name")}" names no volume')
            if m.get("subPath"):
                host = host / m["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            mounts.append((m["mountPath"].rstrip("/") or "/", host))
        mounts.sort(key=lambda mp: len(mp[0]), reverse=True)
        return mounts

    def _env(self, rp: RunningPod, pod: dict, container: dict, mapping: ImageMapping,
             mounts: list[tuple[str, Path]]) -> dict[str, str]:
        ns = rp.namespace
        env = dict(self._base_env)
        env["HOSTNAME"] = rp.name
        if mapping.home:
            env["HOME"] = mapping.home
        env.update(mapping.env)
        for src in container.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                obj = self.store.find("configmaps", ns, src["configMapRef"].get("name")) or {}
                env.update({prefix + k: str(v) for k, v in (obj.get("data") or {}).items()})
            if "secretRef" in src:
                obj = self.store.find("secrets", ns, src["secretRef"].get("name")) or {}
                env.update({prefix + k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
        for item in container.get("env") or []:
            name = item.get("name")
            if "value" in item:
                env[name] = str(item["value"])
            elif "valueFrom" in item:
                value = self._value_from(rp, pod, item["valueFrom"])
                if value is not None:
                    env[name] = value
        env = {k: _expand(v, env) for k, v in env.items()}
        out = {k: _translate(v, rp.ip or "127.0.0.1", mounts) for k, v in env.items()}
        home = out.get("HOME")
        if not home or not Path(home).is_dir():  # an unmounted home: the pod's own scratch directory
            out["HOME"] = str(self._pod_dir(rp) / "home")
            Path(out["HOME"]).mkdir(exist_ok=True)
        return out

    def _value_from(self, rp: RunningPod, pod: dict, src: dict) -> str | None:
        ns = rp.namespace
        if "fieldRef" in src:
            path = src["fieldRef"].get("fieldPath", "")
            values = {"metadata.name": rp.name, "metadata.namespace": ns, "metadata.uid": rp.uid,
                      "spec.nodeName": pod["spec"].get("nodeName", ""), "status.podIP": rp.ip or "",
                      "status.hostIP": "127.0.0.1", "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "")}
            m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if m:
                return (pod["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
            return values.get(path, "")
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            obj = self.store.find("secrets", ns, ref.get("name"))
            if obj is None or ref.get("key") not in (obj.get("data") or {}):
                if ref.get("optional"):
                    return None
                raise PodFailure("CreateContainerConfigError", f'secret "{ref.get("name")}" key "{ref.get("key")}"'
                                 " not found")
            return base64.b64decode(obj["data"][ref["key"]]).decode()
        if "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            obj = self.store.find("configmaps", ns, ref.get("name"))
            if obj is None or ref.get("key") not in (obj.get("data") or {}):
                if ref.get("optional"):
                    return None
                raise PodFailure("CreateContainerConfigError", f'configmap "{ref.get("name")}" key '
                                 f'"{ref.get("key")}" not found')
            return str(obj["data"][ref["key"]])
        return None

    # --- stopping -----------------------------------------------------------------------------------------------------

    async def _kill(self, rp: RunningPod, grace: int, remove: bool) -> None:
        if rp.proc is not None and rp.proc.returncode is None:
            self._event(rp, "Normal", "Killing", f"Stopping container {rp.container}")
            _signal_group(rp.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(rp.proc.wait(), max(grace, 0) or 0.01)
            except asyncio.TimeoutError:
                pass
            _signal_group(rp.proc.pid, signal.SIGKILL)
            try:
                await asyncio.wait_for(rp.proc.wait(), 5)
            except asyncio.TimeoutError:
                log.error("pod %s/%s: process %s survived SIGKILL", rp.namespace, rp.name, rp.proc.pid)
        if rp.task is not None and not rp.task.done():
            rp.task.cancel()
        self.pods.pop(rp.uid, None)
        if rp.ip:
            self.addresses.give_back(rp.ip)
            rp.ip = None
        if remove:
            pod = self._current(rp)
            if pod is not None:
                self.store.remove("pods", rp.namespace, rp.name)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every pod's process (devcluster exit): SIGTERM, then SIGKILL after `grace` seconds."""
        procs = [rp.proc for rp in self.pods.values() if rp.proc is not None and rp.proc.returncode is None]
        for p in procs:
            _signal_group(p.pid, signal.SIGTERM)
        if procs:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=grace)
        for p in procs:
            _signal_group(p.pid, signal.SIGKILL)
        for rp in self.pods.values():
            if rp.task is not None:
                rp.task.cancel()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_VAR_RE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of env values."""
    return _VAR_RE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _translate_path(path: str, mounts: list[tuple[str, Path]]) -> str:
    for mount_path, host in mounts:
        if path == mount_path or path.startswith(mount_path + "/"):
            return str(host) + path[len(mount_path):]
    return path


def _translate(value: str, ip: str, mounts: list[tuple[str, Path]]) -> str:
    """What a value means inside the pod, made to mean the same outside: 0.0.0.0 -> pod IP, mount paths -> dirs."""
    value = value.replace("0.0.0.0", ip)
    for mount_path, host in mounts:
        if mount_path == "/":
            continue
        value = re.sub(rf"(?<![\w/.-]){re.escape(mount_path)}(?=/|$|[\s:;,'\"])", str(host), value)
    return value
