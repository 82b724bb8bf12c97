"""A real PostgreSQL server for tests (Debian ``postgresql``): one per session, one database per test.

``initdb`` (trust authentication, user ``hub``) into a fresh directory, then ``postgres`` in the foreground in its
own process group on a free port (stopped by group in the finaliser). As root, both run as the ``postgres`` user
(PostgreSQL refuses root). fsync is off: the data is thrown away.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import Proc, free_port

USER = "hub"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(argv: list) -> list:
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + [str(a) for a in argv]


@dataclass
class Postgres:
    proc: Proc
    port: int
    root: Path
    created: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.created.append(name)
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect the clients; SIGTERM would wait for every pooled connection)."""
        if self.proc.popen.poll() is None:
            try:
                os.killpg(self.proc.popen.pid, signal.SIGINT)
                self.proc.popen.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin): run `make install` "
                           "(apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="hubfleet-pg-"))  # not under pytest's 0700 tmp: the postgres user reads it
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    t0 = time.monotonic()
    subprocess.run(_as_postgres([bindir / "initdb", "-D", data, "-A", "trust", "-U", USER, "--no-sync",
                                 "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = Proc("postgres", _as_postgres([bindir / "postgres", "-D", data, "-p", port, "-k", root,
                                          "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                          "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                                          "-c", "max_connections=200"]), root)
    try:
        proc.wait_for_port("127.0.0.1", port, timeout=60)
    except BaseException:
        proc.stop()
        raise
    import psycopg2

    deadline = time.monotonic() + 60
    while True:  # the port opens before the server accepts sessions ("the database system is starting up")
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres", connect_timeout=5).close()
            break
        except psycopg2.OperationalError as e:
            if time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"PostgreSQL on port {port} not accepting sessions: {e}\n{proc.log_tail()}")
            time.sleep(0.05)
    pg = Postgres(proc, port, root)
    print(f"PostgreSQL on port {port} ready in {time.monotonic() - t0:.2f}s")
    return pg
