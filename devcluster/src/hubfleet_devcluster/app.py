"""Running the devcluster: the API server, the scheduler loop and the process kubelet in one asyncio process."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import signal
from pathlib import Path

import yaml

from .api import DevClusterAPI, serve
from .gc import GarbageCollector
from .kubelet import DEFAULT_IMAGES, ImageMapping, ProcessKubelet
from .nodes import NodeSpec, default_nodes
from .scheduler import ExtenderConfig, Scheduler
from .schemas import definitions
from .tls import ensure_certificates, server_context, write_private

log = logging.getLogger("hubfleet_devcluster")

# What a real cluster keeps in etcd across a restart that users' data depends on. Pods are not kept: stopping the
# devcluster terminates them (their processes are gone), and the hub sees them gone at its next poll.
PERSISTED = ("namespaces", "persistentvolumeclaims", "secrets", "configmaps", "services", "serviceaccounts")


class Persistence:
    """Keeps the PERSISTED objects in STATE/objects.json, rewritten (atomically) whenever one of them changes."""

    def __init__(self, store, path: Path):
        self.store, self.path = store, path

    def load(self) -> int:
        if not self.path.exists():
            return 0
        try:
            saved = json.loads(self.path.read_text())
        except ValueError as e:
            raise SystemExit(f"{self.path} is not valid JSON ({e}); move it away to start with an empty cluster")
        n = 0
        for plural in PERSISTED:
            for obj in saved.get(plural, []):
                self.store.restore(plural, obj)
                n += 1
        return n

    def attach(self) -> None:
        self.store.listeners.append(lambda t, plural, o: self.save() if plural in PERSISTED else None)

    def save(self) -> None:
        data = {plural: self.store.list(plural) for plural in PERSISTED}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)


def kubeconfig_text(url: str, token: str, ca_pem: bytes, namespace: str = "default") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "devcluster",
        "clusters": [{"name": "devcluster", "cluster": {"server": url, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": "devcluster", "user": {"token": token}}],
        "contexts": [{"name": "devcluster",
                      "context": {"cluster": "devcluster", "user": "devcluster", "namespace": namespace}}],
    }, sort_keys=False)


def _load_token(path: Path) -> str:
    """The API's bearer token: kept in STATE/token (mode 0600) so kubeconfigs stay valid across restarts."""
    try:
        token = path.read_text().strip()
        if len(token) >= 32:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


class DevCluster:
    """A one-machine stand-in for Kubernetes. `start()` serves the API and writes `state_dir/kubeconfig`."""

    def __init__(self, state_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 nodes: list[NodeSpec] | None = None, extenders: dict[str, list[ExtenderConfig]] | None = None,
                 images: tuple[ImageMapping, ...] = DEFAULT_IMAGES, faults: dict | None = None,
                 restart_backoff: float = 10.0, image_pull_backoff: float = 10.0):
        self.state_dir = Path(state_dir).resolve()
        self.host, self.port = host, port
        self.nodes = nodes if nodes is not None else default_nodes()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.token = _load_token(self.state_dir / "token")
        self.api = DevClusterAPI(token=self.token)
        if faults:
            self.api.faults.update(faults)
        self.scheduler = Scheduler(self.api.store, extenders, faults=self.api.faults)
        self.kubelet = ProcessKubelet(self.api.store, self.state_dir, images, backoff=restart_backoff,
                                      faults=self.api.faults, pull_backoff=image_pull_backoff)
        self.api.logs = self.kubelet
        self.gc = GarbageCollector(self.api.store)
        self.persistence = Persistence(self.api.store, self.state_dir / "objects.json")
        self._runner = None
        self._tasks: list[asyncio.Task] = []

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    async def start(self) -> None:
        definitions()  # the schemas every write is decoded with (~1 s to parse on a busy machine): before serving
        restored = self.persistence.load()
        if restored:
            log.info("restored %d objects (volumes claims, secrets, ...) from %s", restored, self.persistence.path)
        self.persistence.attach()
        for spec in self.nodes:
            self.api.store.create("nodes", None, spec.to_object())
        ca, crt, key = ensure_certificates(self.state_dir / "pki", self.host)
        self._runner, self.port = await serve(self.api, self.host, self.port, server_context(crt, key))
        self._tasks = [asyncio.ensure_future(self.scheduler.run()), asyncio.ensure_future(self.kubelet.run()),
                       asyncio.ensure_future(self.gc.run()), asyncio.ensure_future(self._sweep())]
        write_private(self.kubeconfig_path, kubeconfig_text(self.url, self.token, ca.read_bytes()))
        # whole or not at all: whoever waits for the file (make demo, the tests) must never read it half-written
        info = self.state_dir / "devcluster.json"
        partial = info.with_suffix(".json.partial")
        partial.write_text(json.dumps({"url": self.url, "pid": os.getpid(), "ca": str(ca)}))
        os.replace(partial, info)
        log.info("devcluster API at %s, %d nodes, kubeconfig %s", self.url, len(self.nodes), self.kubeconfig_path)

    async def _sweep(self) -> None:
        """Expire what has a TTL (events an hour after their pod), once a minute."""
        while True:
            await asyncio.sleep(60)
            self.api.store.sweep_expired()

    async def stop(self) -> None:
        await self.kubelet.shutdown()
        self.api.store.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        for name in ("devcluster.json",):
            try:
                (self.state_dir / name).unlink()
            except FileNotFoundError:
                pass


async def run_forever(cluster: DevCluster) -> None:
    await cluster.start()
    print(f"devcluster ready: {cluster.url}  (KUBECONFIG={cluster.kubeconfig_path})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("devcluster stopping: terminating pods", flush=True)
    await cluster.stop()
