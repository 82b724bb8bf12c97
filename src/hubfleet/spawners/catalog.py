"""Where the profiles come from, read without blocking the hub's event loop.

Sources, combined into one :class:`~hubfleet.spawners.profiles.Catalog`: ``ProfileSpawner.profiles_file`` (YAML),
``ProfileSpawner.profiles`` (inline), KubeSpawner's ``profile_list`` (list, dict or callable), plus the
``quotas``, ``group_volumes`` and ``max_servers_per_user`` traits. The file is stat'ed and, only when its mtime or
size changed, re-read and parsed in a worker thread; everything parsed is cached by its inputs and shared by every
spawner of the hub.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Mapping

from .profiles import Catalog, ProfileConfigError, parse_catalog, read_document

_MAX_CACHED = 16


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=repr)


def _merge_documents(file_doc, inline):
    if file_doc is None:
        return inline
    if not inline:
        return file_doc
    a, b = _as_document(file_doc), _as_document(inline)
    return {
        **{k: v for k, v in {**a, **b}.items() if k not in ("profiles", "quotas", "group_volumes")},
        "profiles": list(a.get("profiles", [])) + list(b.get("profiles", [])),
        "quotas": list(a.get("quotas", [])) + list(b.get("quotas", [])),
        "group_volumes": {**a.get("group_volumes", {}), **b.get("group_volumes", {})},
    }


def _as_document(data) -> dict:
    return dict(data) if isinstance(data, Mapping) else {"profiles": list(data or [])}


class CatalogSource:
    """One per hub process (a class attribute of ProfileSpawner): the file's last stat and document, and parsed
    catalogs by their inputs."""

    def __init__(self):
        self._file_stamp: dict[str, tuple] = {}
        self._file_doc: dict[str, object] = {}
        self._parsed: dict[str, Catalog] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    async def _read_file(self, path: str):
        """The file's document; concurrent callers share one stat-and-read."""
        if path in self._inflight:
            return await asyncio.shield(self._inflight[path])
        future = asyncio.ensure_future(self._stat_and_read(path))
        self._inflight[path] = future
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._inflight.pop(path, None)
            else:
                future.add_done_callback(lambda _f: self._inflight.pop(path, None))

    async def _stat_and_read(self, path: str):
        try:
            st = await asyncio.to_thread(os.stat, path)
        except OSError as e:
            raise ProfileConfigError(f"ProfileSpawner.profiles_file {path!r}: {e.strerror}",
                                     fix="check the path (in z2jh: hub.extraFiles mountPath)") from e
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._file_stamp.get(path) != stamp or path not in self._file_doc:
            doc = await asyncio.to_thread(read_document, path)
            self._file_doc[path], self._file_stamp[path] = doc, stamp
        return self._file_doc[path]

    async def get(self, spawner) -> Catalog:
        """The catalog for ``spawner``'s configuration (a callable ``profile_list`` is called with the spawner)."""
        file_doc = await self._read_file(spawner.profiles_file) if spawner.profiles_file else None
        profile_list = spawner.profile_list
        if callable(profile_list):
            profile_list = profile_list(spawner)
            if inspect.isawaitable(profile_list):
                profile_list = await profile_list
        source = spawner.profiles_file or "ProfileSpawner.profiles"
        key = _key(source, self._file_stamp.get(spawner.profiles_file), spawner.profiles, profile_list,
                   spawner.quotas, spawner.group_volumes, spawner.max_servers_per_user)
        catalog = self._parsed.get(key)
        if catalog is None:
            document = _merge_documents(file_doc, spawner.profiles)
            catalog = await asyncio.to_thread(  # schema validation of a large document takes milliseconds
                parse_catalog, document, quotas=spawner.quotas, group_volumes=spawner.group_volumes,
                profile_list=profile_list or None, max_servers_per_user=spawner.max_servers_per_user, source=source)
            if len(self._parsed) >= _MAX_CACHED:
                self._parsed.clear()
            self._parsed[key] = catalog
        return catalog

    def clear(self) -> None:
        self._file_stamp.clear()
        self._file_doc.clear()
        self._parsed.clear()
