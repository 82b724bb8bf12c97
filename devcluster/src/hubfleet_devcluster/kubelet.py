"""The process kubelet: runs each bound pod's containers as local processes.

Each pod gets its own loopback address 127.0.X.Y (loopback is a whole /8), and its servers listen there on the
containers' declared ports, so KubeSpawner's normal pod-IP URL works unchanged (``0.0.0.0`` in env and args becomes
the pod IP). Init containers run one by one to completion, then every container (sidecars too), each restarted as
``restartPolicy`` says with kubelet's back-off, each with its own log for ``pods/log``.

Volumes are directories (`volumes.py`), waited for until their object exists. A container runs (phase Running) and
is ready at once, or once its readinessProbe passes (`probes.py`); `exec_process` runs a command inside a running
container (``kubectl exec``, exec probes). As root the
container runs in its own mount namespace where they appear at their mountPaths, as its user, under cgroup limits
(`sandbox.py`); otherwise paths in env, args and workingDir under a mount path are rewritten to the directories.

Images are pulled as a kubelet pulls them, without downloading anything (`pulls.py`): an image with no mapping, or
one a test marks missing, keeps its container waiting in ``ErrImagePull`` / ``ImagePullBackOff``, retried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .status import now_iso
from .store import Store
from .events import forget_events, record_event
from .faults import Faults
from .images import _COMMAND_ALIASES, DEFAULT_IMAGES, ImageMapping, resolve_image  # noqa: F401
from .probes import Readiness, check
from .pulls import ImagePuller
from .podenv import PodFailure, container_env, expand, translate, translate_path
from .sandbox import Cgroup, Sandbox, identity, limits
from .volumes import mounts as volume_mounts, prepare as prepare_volumes

log = logging.getLogger("hubfleet_devcluster.kubelet")
COMPONENT = "kubelet"


class AddressPool:
    """Loopback addresses for pods: 127.0.1.1 .. 127.0.254.254 (127.0.0.x is left to the host's servers).

    Several devclusters may run on one machine (parallel test runs): each starts at its own place in the range, and
    an address where one of the pod's ports is already taken is skipped, so a pod never answers for another's."""

    def __init__(self) -> None:
        start = random.randrange(254 * 254)
        order = [(a, b) for a in range(1, 255) for b in range(1, 255)]
        self._free = iter([str(ipaddress.IPv4Address(f"127.0.{a}.{b}")) for a, b in order[start:] + order[:start]])
        self._released: list[str] = []

    def take(self, ports: tuple[int, ...] = ()) -> str:
        while True:
            ip = self._released.pop(0) if self._released else next(self._free)
            if all(_port_free(ip, p) for p in ports):
                return ip

    def give_back(self, ip: str) -> None:
        self._released.append(ip)


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


@dataclass
class Launch:
    env: dict
    cwd: str | None
    who: object
    isolated: bool


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    ip: str | None = None
    procs: dict = field(default_factory=dict)  # container name -> asyncio.subprocess.Process
    task: asyncio.Task | None = None
    tasks: list = field(default_factory=list)  # one per running container
    launched: dict = field(default_factory=dict)  # container name -> Launch (what an exec runs with)
    stopping: bool = False


class ProcessKubelet:
    def __init__(self, store: Store, state_dir: Path, images: tuple[ImageMapping, ...] = DEFAULT_IMAGES,
                 backoff: float = 10.0, faults: Faults | None = None, pull_backoff: float = 10.0):
        self.store = store
        self.state_dir = Path(state_dir)
        self.images = tuple(images)
        self.backoff = backoff  # kubelet's first crash back-off (10 s), doubled per restart up to 300 s
        self.puller = ImagePuller(self.images, faults or Faults(), pull_backoff)
        self.sandbox = Sandbox(self.state_dir)
        if self.sandbox.missing:
            log.warning("pods run as plain processes; NOT enforced here: %s", "; ".join(self.sandbox.missing))
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
        return rp is not None and container in rp.procs and rp.procs[container].returncode is None

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
            running = RunningPod(uid=uid, namespace=meta["namespace"], name=meta["name"])
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
        """Init containers one by one to completion, then every container (sidecars too), each restarted as the
        pod's restartPolicy says, with kubelet's back-off."""
        pod = self._current(rp)
        if pod is None:
            return
        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []
        first = containers[0].get("name", "container") if containers else "container"
        try:
            if not containers:
                raise PodFailure("NoContainers", "the pod has no containers")
            rp.ip = self.addresses.take(tuple(p.get("containerPort") for c in containers for p in c.get("ports") or []
                                              if isinstance(p.get("containerPort"), int)))
            self._container_status(rp, pod, first, {
                "name": first, "image": containers[0].get("image") or "", "imageID": "", "ready": False,
                "started": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}, False)
            volumes = await prepare_volumes(self.store, pod, self._pod_dir(rp), self.state_dir, identity(pod, {}),
                                            lambda message: self._event(rp, "Warning", "FailedMount", message),
                                            lambda: rp.stopping)
            if volumes is None:
                return
            self._status(rp, {"podIP": rp.ip, "podIPs": [{"ip": rp.ip}], "hostIP": "127.0.0.1",
                              "startTime": now_iso()})
            policy = spec.get("restartPolicy", "Always")
            for i, init in enumerate(spec.get("initContainers") or []):
                if init.get("restartPolicy") == "Always":  # a sidecar: started, and kept running
                    rp.tasks.append(asyncio.ensure_future(self._keep_running(rp, pod, init, volumes, "Always",
                                                                            init=True)))
                    continue
                code = await self._keep_running(rp, pod, init, volumes, "OnFailure" if policy != "Never"
                                                else "Never", init=True)
                if rp.stopping:
                    return
                if code != 0:
                    self._status(rp, {"phase": "Failed", "reason": "InitContainerFailed",
                                      "message": f"init container {init.get('name')} exited with {code}"})
                    return
            mains = [asyncio.ensure_future(self._keep_running(rp, pod, c, volumes, policy)) for c in containers]
            rp.tasks += mains
            codes = await asyncio.gather(*mains)
            if not rp.stopping:
                failed = any(c != 0 for c in codes)
                self._status(rp, {"phase": "Failed" if failed else "Succeeded",
                                  "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]})
        except PodFailure as e:
            self._event(rp, "Warning", "Failed", e.message)
            self._status(rp, {"phase": "Failed", "reason": e.reason, "message": e.message,
                              # image and imageID ("" until pulled) are always there on a real kubelet:
                              # the Python clients' models refuse a status without them
                              "containerStatuses": [{"name": first, "ready": False, "restartCount": 0,
                                                     "image": (containers[0].get("image") or "") if containers
                                                     else "", "imageID": "",
                                                     "state": {"waiting": {"reason": e.reason,
                                                                           "message": e.message}}}]})
        except Exception as e:  # a kubelet bug must still show on the pod, never leave it Pending in silence
            log.exception("pod %s/%s failed in the kubelet", rp.namespace, rp.name)
            message = f"the devcluster's kubelet failed: {type(e).__name__}: {e}"
            self._event(rp, "Warning", "Failed", message)
            self._status(rp, {"phase": "Failed", "reason": "KubeletError", "message": message})
        finally:
            for t in rp.tasks:
                t.cancel()
            if rp.ip and not rp.stopping:
                self.addresses.give_back(rp.ip)
                rp.ip = None

    def _container_status(self, rp: RunningPod, pod: dict, name: str, status: dict, init: bool) -> None:
        """Post one container's status, and the pod's phase and conditions that follow from all of them."""
        current = self._current(rp)
        if current is None:
            return
        key = "initContainerStatuses" if init else "containerStatuses"
        st = current.get("status") or {}
        statuses = [s for s in st.get(key) or [] if s.get("name") != name] + [status]
        order = [c.get("name") for c in (pod["spec"].get("initContainers" if init else "containers") or [])]
        statuses.sort(key=lambda s: order.index(s["name"]) if s["name"] in order else 99)
        patch: dict = {key: statuses}
        if not init:
            mains = pod["spec"].get("containers") or []
            ready = len(statuses) == len(mains) and all(s.get("ready") for s in statuses)
            started = any((s.get("state") or {}).get("running") for s in statuses)
            now = now_iso()
            patch["conditions"] = [{"type": t, "status": "True" if ok else "False", "lastTransitionTime": now}
                                   for t, ok in (("PodScheduled", True), ("Initialized", True),
                                                 ("ContainersReady", ready), ("Ready", ready))]
            if started and st.get("phase") in (None, "Pending"):  # Running once a container runs; Ready is apart
                patch["phase"] = "Running"
        self._status(rp, patch)

    async def _keep_running(self, rp: RunningPod, pod: dict, container: dict, volumes: dict[str, Path],
                            policy: str, init: bool = False) -> int:
        """Run `container` until the restart policy lets it rest; returns its last exit code."""
        name = container.get("name", "container")
        image = container.get("image") or ""
        restarts, last_state = 0, None
        while True:
            code, reason, started_at = await self._run_container(rp, pod, container, volumes, restarts,
                                                                 last_state, init)
            if rp.stopping:
                return code
            terminated = {"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": now_iso()}
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self._container_status(rp, pod, name, {
                    "name": name, "image": image, "imageID": f"local://{image}", "ready": False, "started": False,
                    "restartCount": restarts, "state": {"terminated": terminated},
                    **({"lastState": last_state} if last_state else {})}, init)
                if code != 0:
                    self._event(rp, "Warning", "BackOff", f"Container {name} exited with code {code} ({reason}); "
                                f"see `kubectl logs {rp.name} -c {name}`")
                return code
            delay = min(self.backoff * 2 ** restarts, 300.0)
            last_state = {"terminated": terminated}
            message = f"back-off {delay:g}s restarting failed container={name} pod={rp.name}_{rp.namespace}" \
                      f"({rp.uid})"
            self._container_status(rp, pod, name, {
                "name": name, "image": image, "imageID": f"local://{image}", "ready": False, "started": False,
                "restartCount": restarts, "lastState": last_state,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}}}, init)
            self._event(rp, "Warning", "BackOff", f"Back-off restarting failed container {name} in pod "
                        f"{rp.name}_{rp.namespace}({rp.uid})")
            await asyncio.sleep(delay)
            if rp.stopping:
                return code
            restarts += 1
            log_file = self._pod_dir(rp) / f"{name}.log"
            if log_file.exists():
                os.replace(log_file, self._pod_dir(rp) / f"{name}.previous.log")

    async def _run_container(self, rp: RunningPod, pod: dict, container: dict, volumes: dict[str, Path],
                             restarts: int, last_state: dict | None, init: bool) -> tuple[int, str, str]:
        name = container.get("name", "container")
        image = container.get("image") or ""
        await self.puller.ensure(
            pod["spec"]["nodeName"], container, lambda type_, reason, message: self._event(rp, type_, reason, message),
            lambda reason, message: self._container_status(rp, pod, name, {
                "name": name, "image": image, "imageID": "", "ready": False, "started": False,
                "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}},
                **({"lastState": last_state} if last_state else {})}, init))
        mapping = resolve_image(image, self.images)
        argv = self._argv(container, mapping)
        who = identity(pod, container)
        psc, csc = (pod["spec"].get("securityContext") or {}), (container.get("securityContext") or {})
        if self.sandbox.isolating and (who.uid in (None, 0)) and csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            raise PodFailure("CreateContainerConfigError", "Error: container has runAsNonRoot and image will run "
                             "as root (set runAsUser)")
        isolated = self.sandbox.isolating
        mounts = volume_mounts(container, volumes)
        env = self._env(rp, pod, container, mapping, [] if isolated else [(m, h) for m, h, _ in mounts], isolated)
        home = env.get("HOME") or "/root"
        workdir = container.get("workingDir") or mapping.home or home
        if isolated:
            scratch = self._pod_dir(rp) / "containers" / name
            scratch.mkdir(parents=True, exist_ok=True)
            if not any(home == m or home.startswith(m + "/") for m, _, _ in mounts):
                (scratch / "home").mkdir(exist_ok=True)
                if who.uid is not None:
                    os.chown(scratch / "home", who.uid, who.gid or 0)
                mounts.append((home, scratch / "home", False))
            if not any(workdir == m or workdir.startswith(m + "/") for m, _, _ in mounts):
                workdir = home
            if who.uid in (None, 0) and os.geteuid() == 0:
                cfg = self.state_dir / "node-jupyter-config"
                mounts.append((str(cfg), cfg, True))
            argv = [a.replace("0.0.0.0", rp.ip) for a in argv]
            argv[0] = _COMMAND_ALIASES.get(argv[0], argv[0])
            if "/" not in argv[0]:
                found = shutil.which(argv[0], path=env.get("PATH"))
                argv[0] = found or argv[0]
            full = self.sandbox.argv(argv, mounts, workdir, who)
            cwd = None
        else:
            argv = [translate(a, rp.ip, [(m, h) for m, h, _ in mounts]) for a in argv]
            argv[0] = _COMMAND_ALIASES.get(argv[0], argv[0])
            cwd = translate_path(workdir, [(m, h) for m, h, _ in mounts])
            if not Path(cwd).is_dir():
                cwd = env.get("HOME") if Path(env.get("HOME", "/nonexistent")).is_dir() else str(self._pod_dir(rp))
            full = argv
        memory, cpu = limits(container)
        cgroup = Cgroup(f"{rp.uid[:8]}-{name}-{restarts}", memory, cpu) \
            if self.sandbox.limiting and (memory or cpu) else None
        self._event(rp, "Normal", "Created", f"Created container {name}")
        logfile = open(self._pod_dir(rp) / f"{name}.log", "ab")

        def in_child() -> None:
            if cgroup is not None:
                cgroup.join()

        try:
            proc = await asyncio.create_subprocess_exec(
                *full, env=env, cwd=cwd, stdout=logfile, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=in_child)
        except (FileNotFoundError, PermissionError) as e:
            if cgroup is not None:
                cgroup.remove()
            raise PodFailure("StartError", f"failed to start container {name}: {full[0]!r}: {e.strerror}") from e
        finally:
            logfile.close()
        rp.procs[name] = proc
        prober = None
        try:
            if rp.stopping:  # deleted while the process was being created: _kill saw no process to stop
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                return -9, "Error", now_iso()
            started_at = now_iso()
            self._event(rp, "Normal", "Started", f"Started container {name}")
            running = {"name": name, "image": image, "imageID": f"local://{image}", "started": True,
                       "restartCount": restarts, "state": {"running": {"startedAt": started_at}},
                       **({"lastState": last_state} if last_state else {})}
            rp.launched[name] = Launch(env, cwd if not isolated else None, who, isolated)
            exited = asyncio.ensure_future(proc.wait())
            if not init:
                probe = container.get("readinessProbe")
                self._container_status(rp, pod, name, dict(running, ready=probe is None), init)
                if probe is not None:
                    prober = asyncio.ensure_future(self._probe_readiness(rp, pod, container, running, probe, exited))
            code = await exited
            reason = "Completed" if code == 0 else "Error"
            if code < 0:
                code = 128 - code
            if cgroup is not None and cgroup.oom_killed():
                code, reason = 137, "OOMKilled"
            return code, reason, started_at
        finally:
            if prober is not None:
                prober.cancel()
            rp.procs.pop(name, None)
            rp.launched.pop(name, None)
            if cgroup is not None:
                cgroup.remove()

    async def _probe_readiness(self, rp: RunningPod, pod: dict, container: dict, running: dict, probe: dict,
                               exited: asyncio.Future) -> None:
        """Run the container's readinessProbe until it exits; post `ready` whenever the probe's verdict changes."""
        name = container.get("name", "container")
        state = Readiness.of(probe)
        await asyncio.wait([exited], timeout=float(probe.get("initialDelaySeconds") or 0))
        period = float(probe.get("periodSeconds") or 10)
        while not exited.done() and not rp.stopping:
            ok = await check(probe, container, rp.ip, lambda command: self._exec_code(pod, name, command))
            if exited.done() or rp.stopping:
                return
            before = state.ready
            if not ok:
                self._event(rp, "Warning", "Unhealthy", f"Readiness probe failed: {_describe(probe)}")
            if state.record(ok) != before:
                self._container_status(rp, pod, name, dict(running, ready=state.ready), False)
            await asyncio.wait([exited], timeout=period)

    async def _exec_code(self, pod: dict, container: str, command: list[str]) -> int:
        proc = await self.exec_process(pod, container, command, stdin=False)
        try:
            await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
        return proc.returncode

    async def exec_process(self, pod: dict, container: str | None, command: list[str],
                           stdin: bool) -> asyncio.subprocess.Process:
        """Start `command` in a running container of `pod`, as `kubectl exec` does: in the container's mount
        namespace (its volumes, its /tmp), root and working directory, as its user, with its environment; stdout and
        stderr piped. PodFailure when there is no such running container."""
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        name = container or (names[0] if names else None)
        if name not in names:
            raise PodFailure("BadRequest", f"container {name} is not valid for pod {pod['metadata']['name']}")
        rp = self.pods.get(pod["metadata"]["uid"])
        proc = rp.procs.get(name) if rp is not None else None
        launch = rp.launched.get(name) if rp is not None else None
        if proc is None or proc.returncode is not None or launch is None:
            raise PodFailure("BadRequest", f'unable to upgrade connection: container not found ("{name}")')
        argv = self.sandbox.enter(proc.pid, list(command), launch.who) if launch.isolated else list(command)
        try:
            return await asyncio.create_subprocess_exec(
                *argv, env=launch.env, cwd=launch.cwd, start_new_session=True,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise PodFailure("BadRequest", f"exec {command[0]!r} in container {name}: {e.strerror}") from e

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

    def _env(self, rp: RunningPod, pod: dict, container: dict, mapping: ImageMapping,
             mounts: list[tuple[str, Path]], isolated: bool = False) -> dict[str, str]:
        env = dict(self._base_env)
        env["HOSTNAME"] = rp.name
        if mapping.home:
            env["HOME"] = mapping.home
        env.update(mapping.env)
        env.update(container_env(self.store, pod, container, ip=rp.ip))
        env = {k: expand(v, env) for k, v in env.items()}
        out = {k: translate(v, rp.ip or "127.0.0.1", mounts) for k, v in env.items()}
        home = out.get("HOME")
        if isolated:
            out.setdefault("HOME", "/root" if identity(pod, container).uid in (None, 0) else "/home/user")
            out.pop("JUPYTER_CONFIG_PATH", None) if identity(pod, container).uid not in (None, 0) else None
        elif not home or not Path(home).is_dir():  # an unmounted home: the pod's own scratch directory
            out["HOME"] = str(self._pod_dir(rp) / "home")
            Path(out["HOME"]).mkdir(exist_ok=True)
        return out

    # --- stopping -----------------------------------------------------------------------------------------------------

    async def _kill(self, rp: RunningPod, grace: int, remove: bool) -> None:
        procs = {n: p for n, p in rp.procs.items() if p.returncode is None}
        for name, proc in procs.items():
            self._event(rp, "Normal", "Killing", f"Stopping container {name}")
            _signal_group(proc.pid, signal.SIGTERM)
        if procs:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs.values()],
                               timeout=max(grace, 0) or 0.01)
        for proc in procs.values():
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                log.error("pod %s/%s: process %s survived SIGKILL", rp.namespace, rp.name, proc.pid)
        for t in [rp.task, *rp.tasks]:
            if t is not None and not t.done():
                t.cancel()
        self.pods.pop(rp.uid, None)
        if rp.ip:
            self.addresses.give_back(rp.ip)
            rp.ip = None
        if remove:
            pod = self._current(rp)
            if pod is not None:
                self.store.remove("pods", rp.namespace, rp.name)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every pod's processes (devcluster exit): SIGTERM, then SIGKILL after `grace` seconds."""
        procs = [p for rp in self.pods.values() for p in rp.procs.values() if p.returncode is None]
        for p in procs:
            _signal_group(p.pid, signal.SIGTERM)
        if procs:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=grace)
        for p in procs:
            _signal_group(p.pid, signal.SIGKILL)
        for rp in self.pods.values():
            for t in [rp.task, *rp.tasks]:
                if t is not None:
                    t.cancel()


def _describe(probe: dict) -> str:
    if "httpGet" in probe:
        return f"HTTP probe of {probe['httpGet'].get('path') or '/'} on port {probe['httpGet'].get('port')}"
    if "tcpSocket" in probe:
        return f"TCP probe of port {probe['tcpSocket'].get('port')}"
    return f"command {(probe.get('exec') or {}).get('command')}"


def _signal_group(pid: int, sig: int) -> None:
    """Signal a container's process group. SIGTERM spares the group's leader when it is bwrap (which would exit
    at once and take the container with it): the container's own processes get the signal, as in a runtime."""
    if sig == signal.SIGTERM:
        try:
            leader = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            leader = ""
        if leader == "bwrap":
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) != pid:
                    try:
                        if os.getpgid(int(entry)) == pid:
                            os.kill(int(entry), sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
