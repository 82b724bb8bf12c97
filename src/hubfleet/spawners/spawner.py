"""ProfileSpawner: KubeSpawner with profiles as data, server-side choice validation, quotas, storage and hardening.

This module only wires traits and overrides KubeSpawner's hooks; the rules live in the pure
:mod:`hubfleet.spawners.profiles` and :mod:`hubfleet.spawners.form`.

Where each check happens:

- ``options_from_form`` (form and ``GET /hub/spawn?profile=...``): parses the posted fields and validates them, so a
  tampered form is refused with the error shown on the spawn page.
- ``load_user_options`` (the first step of ``start()``, for every path including ``POST
  /hub/api/users/<name>/server``): validates ``user_options`` again, applies the profile's trait overrides, reserves
  a quota slot and runs ``pre_spawn_hooks``. A refusal raises ``tornado.web.HTTPError`` before any PVC or pod is
  created.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
from collections.abc import Mapping
from typing import ClassVar

import yaml
from kubespawner import KubeSpawner
from kubespawner.slugs import is_valid_label, safe_slug
from tornado import web
from traitlets import Bool, Callable, Dict, List, Unicode, Union, default, observe

from . import form as _form
from .profiles import (
    PROFILE_LABEL,
    Catalog,
    ProfileConfigError,
    ProfileError,
    QuotaCounts,
    QuotaExceeded,
    ResolvedChoice,
    RunningServer,
    applicable_quotas,
    merge_overrides,
    overrides_for,
    parse_catalog,
    quota_violation,
    validate_choice,
    visible_profiles,
)

USER_LABEL = "hubfleet.io/user"
GROUPS_ANNOTATION = "hubfleet.io/groups"
USERNAME_ANNOTATION = "hubfleet.io/username"

_HOOK_HELP = """
    Each hook is a callable (or a ``"module:function"`` string), sync or async, called with keyword arguments only:
    ``hook(spawner=spawner, choice=choice)`` where ``choice`` is the resolved
    :class:`hubfleet.spawners.profiles.ResolvedChoice` (None if no profile was resolved). Accept ``**kwargs`` so
    that new arguments do not break your hook.
"""


class _TraitView(Mapping):
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


def _escape_template(value: str) -> str:
    """KubeSpawner ``str.format``s labels and annotations; keep user data literal."""
    return value.replace("{", "{{").replace("}", "}}")


class ProfileSpawner(KubeSpawner):
    """KubeSpawner with profiles declared as data, re-validated on every spawn path, with quotas counted from live
    pods, a per-user home PVC and hardened pod defaults.

    Select it with ``c.JupyterHub.spawner_class = "hubfleet"``.
    """

    # Quota slots reserved by spawns whose pods the reflector may not show yet; shared by every instance in the hub.
    _reservations: ClassVar[dict[str, RunningServer]] = {}
    # Parsed catalogs by their (file, mtime, config) key; shared, since every spawner carries the same config.
    _catalog_cache: ClassVar[dict[str, Catalog]] = {}

    profiles = Union(
        [List(Dict()), Dict()],
        default_value=[],
        help="""
        Server profiles, declared as data: a list of profile mappings, or a mapping with ``profiles``, ``quotas``
        and ``group_volumes`` keys (the same document ``profiles_file`` holds). See docs/spawner.md for every key.

        Example::

            c.ProfileSpawner.profiles = [
                {"slug": "small", "display_name": "Small", "cpu": {"limit": 1}, "memory": {"limit": "2G"}},
                {"slug": "gpu", "display_name": "GPU", "gpu": {"count": 1}, "quota": 2,
                 "access": {"groups": ["gpu-users"]}},
            ]

        Replaces KubeSpawner's ``profile_list``, which is ignored when profiles are declared here.
        """,
    ).tag(config=True)

    profiles_file = Unicode(
        "",
        help="""
        Path of a YAML profiles document (``profiles``, ``quotas``, ``group_volumes``), e.g. mounted from
        ``hub.extraFiles`` in z2jh values. Read again whenever the file changes. Combined with ``profiles``: the
        slugs must not clash.
        """,
    ).tag(config=True)

    quotas = List(
        Dict(),
        help="""
        Quotas on concurrently running servers, each ``{"max_servers": N, "profile": slug, "group": name}``
        (``profile`` and ``group`` optional). ``{"group": "class-a", "profile": "gpu", "max_servers": 10}`` means
        members of class-a may run at most 10 gpu servers at once. Counted from live pods.
        """,
    ).tag(config=True)

    group_volumes = Dict(
        help="""
        Shared volumes per group: ``{"class-a": [{"name": "course", "claim": "course-data",
        "mount_path": "/home/jovyan/course", "read_only": True}]}``. Members of the group get them mounted in every
        profile. ``claim`` names a PVC; ``source`` takes any Kubernetes volume source (``{"nfs": {...}}``).
        """,
    ).tag(config=True)

    pre_spawn_hooks = List(
        Union([Callable(), Unicode()]),
        help="""
        Hooks run in order after the profile is applied and a quota slot reserved, just before the PVC and pod are
        created. A hook may return a dict of trait overrides (merged like ``kubespawner_override``, as new
        values) or None. Raising refuses the spawn (an ``HTTPError`` keeps its status and message).
        KubeSpawner's single ``pre_spawn_hook`` still runs too, earlier (before ``start``).
        """
        + _HOOK_HELP,
    ).tag(config=True)

    post_stop_hooks = List(
        Union([Callable(), Unicode()]),
        help="""
        Hooks run in order after the server stopped (also after a refused or failed start), after KubeSpawner's
        single ``post_stop_hook``. Errors are logged, not raised.
        """
        + _HOOK_HELP,
    ).tag(config=True)

    home_mount_path = Unicode(
        "/home/jovyan",
        help="Where the per-user (per-named-server) PVC is mounted by the default ``volumes``/``volume_mounts``.",
    ).tag(config=True)

    hide_form_for_single_choice = Bool(
        True,
        help="Skip the spawn form when the user can pick only one profile and it offers no image choice.",
    ).tag(config=True)

    # ------------------------------------------------------------------ hardened and storage defaults

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("gid")
    def _default_gid(self):
        return 100

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("container_security_context")
    def _default_container_security_context(self):
        return {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    @default("pod_security_context")
    def _default_pod_security_context(self):
        return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    @default("storage_access_modes")
    def _default_storage_access_modes(self):
        return ["ReadWriteOnce"]

    @default("volumes")
    def _default_volumes(self):
        return [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]

    @default("volume_mounts")
    def _default_volume_mounts(self):
        return [{"name": "home", "mountPath": self.home_mount_path}]

    # ------------------------------------------------------------------ configuration

    @observe("profiles", "profiles_file", "quotas", "group_volumes")
    def _profiles_changed(self, change):
        self._catalog_key = None

    _catalog_key = None
    _catalog_value = None

    def catalog(self) -> Catalog:
        """The parsed profiles, quotas and group volumes (cached; the file is re-read when it changes)."""
        mtime = None
        if self.profiles_file:
            try:
                mtime = os.stat(self.profiles_file).st_mtime_ns
            except OSError as e:
                raise ProfileConfigError(f"ProfileSpawner.profiles_file {self.profiles_file!r}: {e.strerror}") from e
        key = (self.profiles_file, mtime)
        if self._catalog_key == key and self._catalog_value is not None:
            return self._catalog_value
        config_key = json.dumps(
            [self.profiles_file, mtime, self.profiles, self.quotas, self.group_volumes], sort_keys=True, default=repr
        )
        cached = self._catalog_cache.get(config_key)
        if cached is None:
            cached = self._parse_catalog()
            if len(self._catalog_cache) > 16:
                self._catalog_cache.clear()
            self._catalog_cache[config_key] = cached
        self._catalog_key, self._catalog_value = key, cached
        return cached

    def _parse_catalog(self) -> Catalog:
        file_doc = None
        if self.profiles_file:
            with open(self.profiles_file) as f:
                try:
                    file_doc = yaml.safe_load(f)
                except yaml.YAMLError as e:
                    raise ProfileConfigError(f"ProfileSpawner.profiles_file {self.profiles_file!r}: {e}") from e
        inline = self.profiles
        if file_doc is not None and inline:
            file_doc = _as_document(file_doc)
            inline_doc = _as_document(inline)
            merged = {
                "profiles": list(file_doc.get("profiles", [])) + list(inline_doc.get("profiles", [])),
                "quotas": list(file_doc.get("quotas", [])) + list(inline_doc.get("quotas", [])),
                "group_volumes": {**file_doc.get("group_volumes", {}), **inline_doc.get("group_volumes", {})},
            }
        else:
            merged = file_doc if file_doc is not None else inline
        return parse_catalog(merged, quotas=self.quotas, group_volumes=self.group_volumes)

    # ------------------------------------------------------------------ who is asking

    def _identity(self) -> tuple[str, frozenset[str], bool]:
        user = self.user
        groups = frozenset(g.name for g in getattr(user, "groups", None) or ())
        return user.name, groups, bool(getattr(user, "admin", False))

    def visible_profiles(self):
        """The profiles this spawner's user may use."""
        name, groups, is_admin = self._identity()
        return visible_profiles(self.catalog().profiles, name, groups, is_admin)

    def _http_error(self, error: ProfileError) -> web.HTTPError:
        if isinstance(error, ProfileConfigError):
            self.log.error("profiles: invalid configuration: %s", error)
            message = f"The server profiles are misconfigured ({error}); tell an administrator."
            status = 500
        else:
            self.log.warning("user:%s spawn refused: %s", self.user.name, error)
            message, status = str(error), error.status
        exc = web.HTTPError(status, message)
        exc.jupyterhub_message = message  # shown as-is on the spawn page
        return exc

    # ------------------------------------------------------------------ the form

    @default("options_form")
    def _default_options_form(self):
        return self._render_profile_form

    async def _render_profile_form(self, spawner=None):
        try:
            catalog = self.catalog()
        except ProfileError as e:
            raise self._http_error(e) from e
        if not catalog.profiles:
            return KubeSpawner._options_form_default(self)
        name, groups, is_admin = self._identity()
        visible = visible_profiles(catalog.profiles, name, groups, is_admin)
        if (
            self.hide_form_for_single_choice
            and len(visible) == 1
            and len(visible[0].images) <= 1
            and not visible[0].other_image_pattern
            and not applicable_quotas(catalog.quotas, visible[0].slug, groups)
        ):
            return ""
        counts = QuotaCounts()
        if catalog.quotas:
            await self._start_watching_pods()
            counts = QuotaCounts(self._running_servers())
        cards = _form.build_cards(
            visible, quotas=catalog.quotas, counts=counts, groups=groups, user_options=self.user_options
        )
        return _form.render_form(cards)

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._profile_options_from_form

    def _profile_options_from_form(self, formdata):
        return self._validated_options(_form.form_to_user_options, formdata,
                                       lambda: KubeSpawner._options_from_form(self, formdata))

    def options_from_query(self, query_data):
        """``/hub/spawn?profile=medium&image=scipy`` (or the form's field names), validated like the form."""
        return self._validated_options(_form.query_to_user_options, query_data,
                                       lambda: super(ProfileSpawner, self).options_from_query(query_data))

    def _validated_options(self, parse, data, without_profiles):
        """The user_options parsed from a form or a query string, checked against what this user may choose (an
        HTTP 400/403 naming the problem otherwise); KubeSpawner's own parsing when no profiles are declared."""
        try:
            catalog = self.catalog()
            if not catalog.profiles:
                return without_profiles()
            options = parse(data)
            name, groups, is_admin = self._identity()
            validate_choice(catalog.profiles, options, name, groups, is_admin)
        except ProfileError as e:
            raise self._http_error(e) from e
        return options

    # ------------------------------------------------------------------ start: validate, apply, reserve, hooks

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self._check_user_options

    def _check_user_options(self, spawner, user_options):
        """JupyterHub >= 5.3 calls this before ``pre_spawn_hook`` and ``start``: refuse a bad choice that early too.
        (Applying happens in ``load_user_options``, which checks again.)"""
        try:
            catalog = self.catalog()
            if catalog.profiles:
                name, groups, is_admin = self._identity()
                validate_choice(catalog.profiles, user_options, name, groups, is_admin)
        except ProfileError as e:
            raise self._http_error(e) from e

    choice: ResolvedChoice | None = None
    _refused = False
    _trait_backup: dict | None = None

    async def load_user_options(self):
        """Validate ``user_options`` (every spawn path), apply the profile, reserve a quota slot, run the hooks."""
        self._refused = False
        try:
            catalog = self.catalog()
        except ProfileError as e:
            self._refused = True
            raise self._http_error(e) from e
        if not catalog.profiles:
            return await super().load_user_options()
        name, groups, is_admin = self._identity()
        try:
            choice = validate_choice(catalog.profiles, self.user_options, name, groups, is_admin)
        except ProfileError as e:
            self._refused = True
            raise self._http_error(e) from e

        self._restore_traits()
        overrides = overrides_for(choice, base=_TraitView(self), group_volumes=catalog.group_volumes)
        overrides["extra_labels"] = {
            **overrides["extra_labels"],
            USER_LABEL: safe_slug(name, is_valid=is_valid_label),
        }
        overrides["extra_annotations"] = {
            **self.extra_annotations,
            GROUPS_ANNOTATION: _escape_template(json.dumps(sorted(groups))),
            USERNAME_ANNOTATION: _escape_template(name),
        }
        self._apply_traits(overrides)
        self.choice = choice
        self.log.info("user:%s server %r: profile %s image %s", name, self.name, choice.profile.slug, self.image)

        quotas = applicable_quotas(catalog.quotas, choice.profile.slug, choice.groups)
        if quotas:
            await self._start_watching_pods()  # read-only (list + watch); shared by every spawner in the hub
            self._reserve_quota(choice, quotas)
        await self._run_pre_spawn_hooks(choice)

    def _reserve_quota(self, choice: ResolvedChoice, quotas: list) -> None:
        """Check the quotas against live pods plus pending reservations and reserve a slot.

        Race-free within one hub: there is no ``await`` between counting and recording the reservation, so no other
        spawn on the event loop can interleave (an asyncio lock around this would never be contended).
        """
        key = self._pod_key()
        message = quota_violation(
            quotas, self._running_servers(exclude=key), profile=choice.profile.slug, groups=choice.groups
        )
        if message:
            self._refused = True
            raise self._http_error(QuotaExceeded(message))
        ProfileSpawner._reservations[key] = RunningServer(key, choice.profile.slug, choice.groups)

    def _pod_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    def _release_quota(self) -> None:
        ProfileSpawner._reservations.pop(self._pod_key(), None)

    def _running_servers(self, exclude: str | None = None) -> list[RunningServer]:
        """Servers that count against quotas: live hubfleet pods (not finished) plus reservations, once per pod."""
        servers: dict[str, RunningServer] = {}
        reflector = self.pod_reflector
        for key, pod in list(reflector.pods.items()) if reflector is not None else ():
            metadata = pod.get("metadata") or {}
            profile = (metadata.get("labels") or {}).get(PROFILE_LABEL)
            if not profile or key == exclude:
                continue
            if ((pod.get("status") or {}).get("phase")) in ("Succeeded", "Failed"):
                continue
            try:
                groups = frozenset(json.loads((metadata.get("annotations") or {}).get(GROUPS_ANNOTATION, "[]")))
            except (TypeError, ValueError):
                groups = frozenset()
            servers[key] = RunningServer(key, profile, groups)
        for key, server in ProfileSpawner._reservations.items():
            if key != exclude:
                servers.setdefault(key, server)
        return list(servers.values())

    def _restore_traits(self) -> None:
        """Undo the previous start's overrides so a new choice starts from the configured values."""
        for name, value in (self._trait_backup or {}).items():
            setattr(self, name, value)
        self._trait_backup = {}

    def _apply_traits(self, overrides: Mapping) -> None:
        backup = self._trait_backup if self._trait_backup is not None else {}
        for name, value in overrides.items():
            if not self.has_trait(name):
                raise self._http_error(ProfileConfigError(f"kubespawner_override: unknown KubeSpawner trait {name!r}"))
            if callable(value) and not isinstance(value, type):
                value = value(self)  # KubeSpawner's convention for kubespawner_override callables
            backup.setdefault(name, getattr(self, name))
            setattr(self, name, value)
        self._trait_backup = backup

    # ------------------------------------------------------------------ hooks

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
                    self._apply_traits(merge_overrides(_TraitView(self), result))
        except Exception:
            self._release_quota()
            self._refused = True
            raise

    async def run_post_stop_hook(self):
        await _maybe_await(super().run_post_stop_hook())
        for hook in self.post_stop_hooks:
            try:
                await _maybe_await(self._resolve_hook(hook)(spawner=self, choice=self.choice))
            except Exception:
                self.log.exception("user:%s post_stop_hooks: %r failed", self.user.name, hook)

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        # Give up a little before the hub's own start_timeout, saying what was seen: when the hub's timeout fires
        # first, the spawn page only shows "Spawn failed: " (an empty TimeoutError).
        deadline = max(self.start_timeout - min(1.0, self.start_timeout * 0.1), 0.1)
        future = super().start()
        try:
            async with asyncio.timeout(deadline):
                return await future
        except TimeoutError:
            future.cancel()
            raise TimeoutError(self._not_ready_message(deadline)) from None
        finally:
            # success: the running pod now counts itself; failure: the slot is free (a leftover pod still counts)
            self._release_quota()

    def _not_ready_message(self, waited: float) -> str:
        """What a user (and the admin they ask) needs when a server does not come up in time."""
        pod = (self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}") if self.pod_reflector else None) or {}
        status = pod.get("status") or {}
        phase = status.get("phase") or "not created"
        detail = f"pod {self.pod_name} is {phase}"
        for cs in status.get("containerStatuses") or []:
            if cs.get("state", {}).get("running") and not cs.get("ready"):
                detail += f", its container runs but nothing answers on port {self.port}"
            waiting = cs.get("state", {}).get("waiting")
            if waiting:
                detail += f", container waiting: {waiting.get('reason')} {waiting.get('message', '')}".rstrip()
        events = [e for e in self.events if e.get("message")]
        last = f" Last event: {events[-1]['message']}." if events else ""
        return (f"Your server did not become ready within {waited:.0f} seconds ({detail}).{last} "
                "Try again; if it keeps failing, ask an admin to look at the pod's events and logs.")

    async def stop(self, now=False):
        if self._refused:
            # the last start was refused before any PVC or pod was created: nothing to delete
            self._refused = False
            self._release_quota()
            return
        try:
            await super().stop(now=now)
        finally:
            self._release_quota()


def _as_document(data) -> dict:
    if isinstance(data, Mapping):
        return dict(data)
    return {"profiles": list(data or [])}


async def _maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value
