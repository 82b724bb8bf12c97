"""Writing files that hold secrets: one helper for the whole project.

:func:`write_private` writes a file whole or not at all, readable by its owner only from the moment it exists: the
bytes go to a new temporary file in the same directory, created with mode 0600 and ``O_EXCL`` (``mkstemp``: a name
nobody can have prepared, no symlink followed, whatever the umask), flushed to disk, then renamed over the target.
A reader sees the old file or the new one, never a half-written one, and nobody else sees either.

Pure standard library: no import beyond ``os``/``tempfile``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_private"]

PRIVATE_MODE = 0o600


def write_private(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically with mode 0600, creating its directory.

    An existing file at ``path`` is replaced (its mode and owner go with it); on any error the temporary file is
    removed and the target is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), PRIVATE_MODE)  # mkstemp creates 0600 already; stated so nothing can widen it
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
