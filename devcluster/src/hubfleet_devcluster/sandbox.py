"""What makes a pod's process behave like a container when the devcluster runs as root: its own mount namespace
(bubblewrap) in which only its volumes appear, at their mountPaths, and no other pod's; the pod's runAsUser,
runAsGroup and fsGroup (setpriv); cpu and memory limits (cgroups v1: a container over its memory limit is killed
and reported OOMKilled). Without root, bwrap, setpriv or writable cgroups, `Sandbox.check()` says once what is not
enforced and the kubelet runs plain processes."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from hubfleet.quantity import QuantityError, parse_quantity

log = logging.getLogger("hubfleet_devcluster.sandbox")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_HIDDEN_TOP = {"proc", "dev", "sys", "tmp", "root", "home", "run", "mnt", "media", "lost+found", "var", "old_root"}


@dataclass
class Identity:
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]


def identity(pod: dict, container: dict) -> Identity:
    """The user a container runs as: its securityContext over the pod's (fsGroup joins the groups)."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    groups = [g for g in [psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])] if g is not None]
    if uid is not None and gid is None:
        gid = 0  # as the container runtime does when the image names no group
    return Identity(uid, gid, tuple(dict.fromkeys(int(g) for g in groups)))


class Cgroup:
    """A container's v1 `memory` and `cpu` groups."""

    def __init__(self, name: str, memory: int | None, cpu_millis: int | None):
        self.dirs: list[Path] = []
        self.memory_dir: Path | None = None
        if memory:
            d = CGROUP_ROOT / "memory" / "hubfleet-devcluster" / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "memory.limit_in_bytes").write_text(str(memory))
            for knob, value in (("memory.swappiness", "0"), ("memory.memsw.limit_in_bytes", str(memory))):
                try:
                    (d / knob).write_text(value)
                except OSError:
                    pass
            self.dirs.append(d)
            self.memory_dir = d
        if cpu_millis:
            d = CGROUP_ROOT / "cpu" / "hubfleet-devcluster" / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "cpu.cfs_period_us").write_text("100000")
            (d / "cpu.cfs_quota_us").write_text(str(max(1000, cpu_millis * 100)))
            self.dirs.append(d)

    def join(self) -> None:
        """Put the calling process in the groups (runs in the child, before exec)."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        if self.memory_dir is None:
            return False
        try:
            for line in (self.memory_dir / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill ") and int(line.split()[1]) > 0:
                    return True
            return int((self.memory_dir / "memory.failcnt").read_text()) > 0 and False
        except (OSError, ValueError):
            return False

    def remove(self) -> None:
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


def limits(container: dict) -> tuple[int | None, int | None]:
    """(memory bytes, cpu millicores) from the container's limits."""
    lim = (container.get("resources") or {}).get("limits") or {}
    try:
        memory = int(parse_quantity(lim["memory"])) if "memory" in lim else None
        cpu = int(parse_quantity(lim["cpu"]) * 1000) if "cpu" in lim else None
    except QuantityError:
        return None, None
    return memory, cpu


class Sandbox:
    """Builds the command line that runs a container's process in its own mount namespace as its user."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir).resolve()
        self.bwrap = shutil.which("bwrap")
        self.setpriv = shutil.which("setpriv")
        self.missing = self.check()

    def check(self) -> list[str]:
        """What is not enforced here (empty: everything is)."""
        missing = []
        if os.geteuid() != 0:
            missing.append("runAsUser/runAsGroup/fsGroup (the devcluster is not root)")
        if not self.bwrap:
            missing.append("a private mount namespace per pod (install bubblewrap: apt-get install bubblewrap)")
        if not self.setpriv:
            missing.append("runAsUser (setpriv from util-linux is missing)")
        for hierarchy in ("memory", "cpu"):
            probe = CGROUP_ROOT / hierarchy / "hubfleet-devcluster"
            try:
                probe.mkdir(parents=True, exist_ok=True)
            except OSError:
                missing.append(f"{hierarchy} limits (cgroup v1 {CGROUP_ROOT / hierarchy} is not writable)")
        return missing

    @property
    def isolating(self) -> bool:
        return os.geteuid() == 0 and bool(self.bwrap) and bool(self.setpriv)

    @property
    def limiting(self) -> bool:
        return not any(m.startswith(("memory", "cpu")) for m in self.missing)

    def _exposed(self, program: str) -> list[Path]:
        """Host paths a container needs although they lie in a hidden folder: the interpreter and its packages, and
        the installation the container's program belongs to (another venv's python and that venv's base)."""
        wanted = {Path(sys.prefix), Path(sys.base_prefix), *(Path(p) for p in sys.path if p)}
        if os.path.isabs(program):
            real = Path(program).resolve()
            wanted |= {real.parent.parent, Path(program).parent.parent}
            cfg = Path(program).parent.parent / "pyvenv.cfg"
            if cfg.is_file():
                for line in cfg.read_text().splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() == "home" and value.strip():
                        wanted.add(Path(value.strip()).parent)
        wanted |= {Path(p) for p in os.environ.get("PYTHONPATH", "").split(":") if p}
        out = []
        for p in sorted(wanted):
            p = p.resolve() if p.exists() else p
            if p.exists() and p.is_dir() and not any(p.is_relative_to(o) for o in out):
                out.append(p)
        return out

    def _mount_points(self, mounts: list[tuple[str, Path, bool]]) -> list[str]:
        """Room for mount points the host lacks: bwrap cannot create one inside a read-only system folder (z2jh's
        ``/usr/local/etc/jupyterhub/jupyterhub_config.py``, which an image would have), so the nearest folder that
        exists is rebuilt as a tmpfs holding read-only binds of its entries, where the mount point can be made."""
        args: list[str] = []
        done: list[Path] = []
        for mount_path, _, _ in sorted(mounts, key=lambda m: len(m[0])):
            p = Path(mount_path)
            if len(p.parts) < 2 or p.parts[1] in _HIDDEN_TOP or p.exists():
                continue  # on a tmpfs bwrap writes to, or there already
            if any(p.is_relative_to(m) for m, _, _ in mounts if m != mount_path):
                continue  # inside another volume: made in that volume's directory, as a kubelet would
            anc = p.parent
            while not anc.exists():
                anc = anc.parent
            if anc == Path("/") or any(anc.is_relative_to(d) for d in done) or self.state_dir.is_relative_to(anc):
                continue
            done.append(anc)
            args += ["--tmpfs", str(anc)]
            for entry in sorted(os.listdir(anc)):
                e = anc / entry
                args += ["--symlink", os.readlink(e), str(e)] if e.is_symlink() else ["--ro-bind", str(e), str(e)]
        return args

    def argv(self, argv: list[str], mounts: list[tuple[str, Path, bool]], cwd: str, who: Identity) -> list[str]:
        """`argv` wrapped in bwrap (+ setpriv when the pod names a user). `mounts`: (mountPath, host dir, readOnly)."""
        args = [self.bwrap, "--die-with-parent", "--tmpfs", "/"]
        for entry in sorted(os.listdir("/")):
            path = Path("/") / entry
            if entry in _HIDDEN_TOP:
                continue
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--dev", "/dev", "--proc", "/proc", "--ro-bind", "/sys", "/sys", "--tmpfs", "/tmp",
                 "--tmpfs", "/run", "--dir", "/home", "--dir", "/var/tmp"]
        for sub in ("lib", "cache", "local"):
            if Path(f"/var/{sub}").is_dir():
                args += ["--ro-bind", f"/var/{sub}", f"/var/{sub}"]
        if any(self.state_dir.is_relative_to(Path("/") / top) for top in os.listdir("/")
               if top not in _HIDDEN_TOP and Path("/", top).is_dir()):
            args += ["--tmpfs", str(self.state_dir)]  # no pod sees the devcluster's state (volumes, token)
        args += self._mount_points(mounts)
        for mount_path, host, read_only in sorted(mounts, key=lambda m: len(m[0])):
            args += ["--ro-bind" if read_only else "--bind", str(host), mount_path]
        for p in self._exposed(argv[0]):  # after the volumes, so that a volume mounted over /root hides no interpreter
            hidden = p.parts[1] in _HIDDEN_TOP if len(p.parts) > 1 else False
            covered = any(p.is_relative_to(m) for m, _, _ in mounts)
            if hidden or covered or p.is_relative_to(self.state_dir):
                if hidden and not covered:  # bwrap would copy a 0700 /root's mode to the folders it makes
                    for parent in reversed(p.parents[:-1]):
                        args += ["--perms", "0755", "--dir", str(parent)]
                args += ["--ro-bind", str(p), str(p)]
        args += ["--chdir", cwd, "--"]
        return args + self.as_user(who) + argv

    def as_user(self, who: Identity) -> list[str]:
        """The setpriv prefix that runs a command as the pod's user and groups (none when it names no user)."""
        if who.uid is None:
            return []
        groups = ",".join(str(g) for g in who.groups)
        return [self.setpriv, f"--reuid={who.uid}", f"--regid={who.gid or 0}",
                f"--groups={groups}" if groups else "--clear-groups", "--"]

    def enter(self, pid: int, argv: list[str], who: Identity) -> list[str]:
        """`argv` run inside the mount namespace, root and working directory of the container whose bwrap process
        group is `pid` (what ``kubectl exec`` and exec probes run), as the container's user."""
        mine = os.readlink("/proc/self/ns/mnt")
        target = pid
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == pid and os.readlink(f"/proc/{entry}/ns/mnt") != mine:
                        target = int(entry)
                        break
                except OSError:
                    pass
        return ["nsenter", "-t", str(target), "-m", "-r", "-w", "--", *self.as_user(who), *argv]


def prepare_volume(host: Path, who: Identity) -> None:
    """fsGroup's effect on a volume: group-owned by fsGroup, group-writable, setgid directories (as the kubelet
    does, only when the top directory is not already so)."""
    if not who.groups or os.geteuid() != 0:
        return
    gid = who.groups[0]
    st = host.stat()
    if st.st_gid == gid and st.st_mode & 0o2070 == 0o2070:
        return
    for root, dirs, files in os.walk(host):
        for name in [*dirs, *files]:
            p = Path(root) / name
            os.lchown(p, -1, gid)
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | (0o2070 if p.is_dir() else 0o060))
    os.chown(host, -1, gid)
    host.chmod(host.stat().st_mode | 0o2070)
