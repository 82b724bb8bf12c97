"""``pre_spawn_hooks`` / ``post_stop_hooks`` for ProfileSpawner: keyword-only callables (or ``"module:function"``
strings), sync or async, run in order."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping

from tornado import web

from . import compat
from .profiles import ProfileConfigError, ResolvedChoice, merge_overrides


class TraitView(Mapping):
    """Read-only mapping over a configurable's current trait values (the ``base`` of ``overrides_for``)."""

    def __init__(self, obj):
        self._obj = obj

    def __getitem__(self, name):
        if not self._obj.has_trait(name):
            raise KeyError(name)
        return getattr(self._obj, name)

    def __iter__(self):
        return iter(self._obj.trait_names())

    def __len__(self):
        return len(self._obj.trait_names())


class HookRunner:
    """Mixin for ProfileSpawner (needs the hook traits, ``_apply_traits``, ``_release_quota``)."""

    @staticmethod
    def _resolve_hook(hook):
        if isinstance(hook, str):
            module, _, attr = hook.partition(":")
            if not attr:
                raise ProfileConfigError(f"hook {hook!r}: expected 'module:function'")
            return getattr(importlib.import_module(module), attr)
        return hook

    async def _run_pre_spawn_hooks(self, choice: ResolvedChoice) -> None:
        try:
            for hook in self.pre_spawn_hooks:
                result = self._resolve_hook(hook)(spawner=self, choice=choice)
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    self._apply_traits(merge_overrides(TraitView(self), result))
        except Exception as e:
            self._release_quota()
            self._refused = True
            if isinstance(e, web.HTTPError) and e.status_code < 500:
                compat.refusal_not_failure(self)  # a hook's refusal, as JupyterHub 6 sees it
            raise

    async def run_post_stop_hook(self):
        await _maybe_await(super().run_post_stop_hook())
        for hook in self.post_stop_hooks:
            try:
                await _maybe_await(self._resolve_hook(hook)(spawner=self, choice=self.choice))
            except Exception:
                self.log.exception("user:%s post_stop_hooks: %r failed", self.user.name, hook)


async def _maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value
