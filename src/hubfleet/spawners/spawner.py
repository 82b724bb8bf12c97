"""ProfileSpawner: KubeSpawner with profiles as data, server-side choice validation, quotas, storage and hardening.

This module only wires traits and overrides KubeSpawner's hooks; the rules live in the pure
:mod:`hubfleet.spawners.profiles` and :mod:`hubfleet.spawners.form`, the JupyterHub 5/6 differences in
:mod:`.compat`, the non-blocking profiles loading in :mod:`.catalog`, storage safety in :mod:`.storage`.

Where each check happens (the same on JupyterHub 5.5 and 6.x):

- ``run_options_from_form`` / ``options_from_query`` (the form, ``/hub/spawn?profile=...`` and ``?opt-profile=...``,
  which JupyterHub awaits before it starts a spawn): parse (``options_from_form`` itself returns the dict, as
  KubeSpawner's does) and validate, so a tampered form is refused with the error shown on the spawn page, and a
  refusal is never a failed spawn (JupyterHub 5.5 counts every failed spawn towards ``consecutive_failure_limit``).
- ``apply_user_options`` (JupyterHub calls it before ``pre_spawn_hook`` and ``start``, on every path): validate the
  choice, so a REST request is refused before anything runs.
- ``load_user_options`` (the first step of KubeSpawner's start coroutine, for every path including both REST body
  shapes): validate ``user_options`` again, fall back to the default profile for a stale *saved* choice, apply the
  profile's trait overrides, record the resolved choice in ``user_options``, reserve a quota slot and run
  ``pre_spawn_hooks``. A refusal (JupyterHub 6's ``SpawnException``, an ``HTTPError`` on 5.5) comes before any PVC
  or pod is created.

The call shapes are KubeSpawner's (``options_from_form`` returns a dict, ``start()`` schedules the spawn and returns
the future that ``progress()`` follows); docs/spawner.md lists what differs on purpose.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Mapping
from typing import ClassVar

import sqlalchemy
from kubespawner import KubeSpawner
from kubespawner.slugs import is_valid_label, safe_slug
from traitlets import Bool, Callable, Dict, Integer, List, Unicode, Union, default

from . import compat
from . import form as _form
from . import metrics as _metrics
from .catalog import CatalogSource
from .profiles import (
    Catalog,
    ChoiceError,
    ProfileConfigError,
    ProfileError,
    QuotaCounts,
    ResolvedChoice,
    applicable_quotas,
    deep_merge,
    overrides_for,
    resolve_choice,
    visible_profiles,
)
from .accounting import QuotaAccounting
from .hooks import HookRunner, TraitView
from .budgets import UsageBudgets
from .progress import SpawnProgress
from .queueing import SpawnQueue
from .retry import TransientRetry
from .storage import StorageSafety


_HOOK_HELP = """
    Each hook is a callable (or a ``"module:function"`` string), sync or async, called with keyword arguments only:
    ``hook(spawner=spawner, choice=choice)`` where ``choice`` is the resolved
    :class:`hubfleet.spawners.profiles.ResolvedChoice` (None if no profile was resolved). Accept ``**kwargs`` so
    that new arguments do not break your hook.
"""


class ProfileSpawner(SpawnQueue, UsageBudgets, SpawnProgress, QuotaAccounting, HookRunner, StorageSafety,
                     TransientRetry, KubeSpawner):
    """KubeSpawner with profiles declared as data, re-validated on every spawn path, with quotas counted from live
    pods, a per-user home PVC and hardened pod defaults.

    Select it with ``c.JupyterHub.spawner_class = "hubfleet"``.
    """

    # The profiles file's last stat and parsed catalogs; shared, since every spawner carries the same config.
    _catalogs: ClassVar[CatalogSource] = CatalogSource()

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

        KubeSpawner's ``profile_list`` is read too (into the same model): both may be used, with distinct slugs.
        """,
    ).tag(config=True)

    profiles_file = Unicode(
        "",
        help="""
        Path of a YAML profiles document (``profiles``, ``quotas``, ``group_volumes``, ``group_rules``,
        ``max_servers_per_user``), e.g. mounted from ``hub.extraFiles`` in z2jh values. Re-read (in a worker
        thread, never on the hub's event loop) only when its modification time or size changed. Combined with
        ``profiles`` and ``profile_list``: the slugs must not clash.
        """,
    ).tag(config=True)

    profile_list = Union(
        [List(Dict()), Callable(), Dict()],
        default_value=[],
        help="""
        KubeSpawner's ``profile_list``, accepted as it is: a list of profiles, kubespawner 7.1's dict form
        (``{key: profile}``, ordered by key) or a callable ``f(spawner)`` (sync or async) returning either. Every key
        KubeSpawner documents works (``display_name``, ``slug``, ``description``, ``default``,
        ``kubespawner_override``, ``profile_options`` with ``choices`` and ``unlisted_choice``), re-validated on
        the server for every spawn path; hubfleet's keys (``access``, ``quota``, ``max_per_user``, ``cpu``,
        ``memory``, ``gpu``, ``priority_class_name``, ...) may be added to the same entries. Also accepted on
        kubespawner 7.0, which lacks the dict form.
        """,
    ).tag(config=True)

    max_servers_per_user = Integer(
        None,
        allow_none=True,
        help="""
        At most this many servers (default and named, any profile) running at once per user, counted like the
        other quotas (live pods plus pending spawns). A profile's own ``max_per_user`` limits one profile.
        None: no limit.
        """,
    ).tag(config=True)

    check_server_names = Bool(
        True,
        help="""
        Refuse to start a named server whose name breaks JupyterHub 6's rule (1-30 characters of ``[a-z0-9-]``,
        starting with a letter), stating the rule. JupyterHub 6 refuses such new names itself; on JupyterHub 5.5
        this keeps names valid for the upgrade.
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

    profile_environment_variable = Unicode("", help="""
        Name of an environment variable that carries the chosen profile's slug into the server (e.g.
        ``HUBFLEET_PROFILE``). Empty (the default): none, the server's environment is KubeSpawner's. A profile's own
        ``env`` may set any variable too.""").tag(config=True)

    hide_form_for_single_choice = Bool(
        True,
        help="Skip the spawn form when the user can pick only one profile and it offers no image choice.",
    ).tag(config=True)

    export_user_group_info = Bool(False, help="""
        Publish ``jupyterhub_user_group_info{username, usergroup}`` (one sample per group membership, for the stock
        group dashboard) on ``/hub/metrics``. Off by default: it names every user and every admin-group member to
        anything allowed to scrape the hub.""").tag(config=True)

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

    _checked: ClassVar[set] = set()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_configuration_once()

    def _check_configuration_once(self) -> None:
        """Log a bad profiles configuration when the hub creates its first spawner (at start-up for running
        servers), with the same message ``hubfleet profiles check`` prints; spawns then refuse with it."""
        if callable(self.profile_list):
            return
        key = json.dumps([self.profiles_file, self.profiles, self.profile_list, self.quotas, self.group_volumes,
                          self.max_servers_per_user], sort_keys=True, default=repr)
        if key in ProfileSpawner._checked:
            return
        ProfileSpawner._checked.add(key)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # created outside the hub's loop (a script, a test): check right here
            try:
                self._check_sync()
            except ProfileError as e:
                self.log.error("profiles: invalid configuration: %s", e)
            return
        task = loop.create_task(self._check_async())  # in the hub: off the loop, like every other read
        ProfileSpawner._check_tasks.add(task)
        task.add_done_callback(ProfileSpawner._check_tasks.discard)

    _check_tasks: ClassVar[set] = set()

    async def _check_async(self) -> None:
        try:
            if any(p.queue for p in (await self.load_catalog()).profiles):
                self._start_admitter()  # also resumes admissions after a hub restart
                await self._check_queue_configuration()
        except ProfileError as e:
            self.log.error("profiles: invalid configuration: %s", e)

    def _check_sync(self) -> None:
        from .catalog import _merge_documents  # noqa: PLC0415
        from .profiles import parse_catalog, read_document  # noqa: PLC0415

        doc = read_document(self.profiles_file) if self.profiles_file else None
        parse_catalog(_merge_documents(doc, self.profiles), quotas=self.quotas, group_volumes=self.group_volumes,
                      profile_list=self.profile_list or None, max_servers_per_user=self.max_servers_per_user,
                      source=self.profiles_file or "ProfileSpawner.profiles")

    async def load_catalog(self) -> Catalog:
        """The parsed profiles, quotas and group volumes (cached; the file is re-read off the event loop, and only
        when it changed)."""
        return await self._catalogs.get(self)

    # ------------------------------------------------------------------ who is asking

    def _identity(self) -> tuple[str, frozenset[str], bool]:
        """(name, group names, admin) of this spawner's user (groups: JupyterHub groups or plain strings)."""
        user = self.user
        groups = frozenset(g if isinstance(g, str) else g.name for g in getattr(user, "groups", None) or ())
        return user.name, groups, bool(getattr(user, "admin", False))

    async def visible_profiles(self):  # the profiles this spawner's user may use
        name, groups, is_admin = self._identity()
        return visible_profiles((await self.load_catalog()).profiles, name, groups, is_admin)

    def _refusal(self, error: ProfileError, profile: str = ""):
        if isinstance(error, ProfileConfigError):
            self.log.error("profiles: invalid configuration: %s", error)
            message = f"The server profiles are misconfigured ({error}); tell an administrator."
        else:
            self.log.warning("user:%s spawn refused: %s", self.user.name, error)
            message = str(error)
        _metrics.REFUSALS.labels(reason=error.reason, profile=profile or "").inc()
        compat.refusal_not_failure(self)
        return compat.refusal(error.status, message, error.reason)

    async def _resolve(self, user_options, *, named: bool = False):
        """(catalog, choice) for ``user_options``, or a refusal; choice is None when no profiles are declared. A
        choice the spawn's request did not name (the last spawn's, reused) falls back to the default profile when it
        is no longer allowed; a named one (``named``, or so says the request) is refused."""
        try:
            catalog = await self.load_catalog()
        except ProfileError as e:
            raise self._refusal(e) from e
        if not catalog.profiles:
            return catalog, None
        options = compat.unwrap_options(user_options)
        name, groups, is_admin = self._identity()
        saved = not (named or compat.names_options(getattr(getattr(self, "handler", None), "request", None)))
        try:
            if self.name and self.check_server_names and (problem := compat.server_name_problem(self.name)):
                raise ChoiceError(problem)
            choice = resolve_choice(catalog.profiles, options, name, groups, is_admin, saved=saved)
        except ProfileError as e:
            asked = options.get("profile") if isinstance(options, Mapping) else None
            raise self._refusal(e, asked if isinstance(asked, str) else "") from e
        return catalog, choice

    # ------------------------------------------------------------------ the form

    @default("options_form")
    def _default_options_form(self):
        return self._render_profile_form

    async def _render_profile_form(self, spawner=None):
        try:
            catalog = await self.load_catalog()
        except ProfileError as e:
            raise self._refusal(e) from e
        if not catalog.profiles:
            return ""
        name, groups, is_admin = self._identity()
        visible = visible_profiles(catalog.profiles, name, groups, is_admin)
        saved = compat.unwrap_options(self.user_options) or {}
        choice = None
        if saved:
            try:
                choice = resolve_choice(catalog.profiles, saved, name, groups, is_admin, saved=True)
            except ProfileError:
                choice = None
        note = (choice.fallback_form if choice is not None else None) or ""
        refused_query, self._refused_query = self._refused_query, False
        if (
            self.hide_form_for_single_choice
            and not refused_query  # else JupyterHub would start the default instead of showing the refusal
            and not note  # show why the saved choice is not preselected
            and len(visible) == 1
            and len(visible[0].images) <= 1
            and not visible[0].other_image_pattern
            and not visible[0].options
            and not applicable_quotas(catalog.quotas, visible[0].slug, groups)
        ):
            return ""
        counts = QuotaCounts()
        if catalog.quotas:
            await self._start_watching_pods()
            counts = QuotaCounts(self._running_servers())
        cards = _form.build_cards(
            visible, quotas=catalog.quotas, counts=counts, groups=groups, user=name,
            user_options={} if note or choice is None else saved,
        )
        return _form.render_form(cards, message=note) + await self._queue_panel(catalog, name)

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._profile_options_from_form

    def _profile_options_from_form(self, formdata):
        """The ``user_options`` a posted form asks for (a refusal naming a malformed field otherwise)."""
        try:
            return _form.form_to_user_options(formdata)
        except ProfileError as e:
            raise self._refusal(e) from e

    def run_options_from_form(self, form_data):
        """What JupyterHub awaits for a posted form: ``options_from_form`` (sync or async, KubeSpawner's call), then
        the choice checked against what this user may choose, before the hub starts any spawn."""
        return self._named_choice(super().run_options_from_form(form_data))

    async def options_from_query(self, query_data):
        """``/hub/spawn?profile=medium&image=scipy`` or ``?opt-profile=medium`` (JupyterHub 6 spelling, also on
        5.5), or the form's field names: parsed and checked like the form, before the hub starts any spawn."""
        try:
            try:
                options = _form.query_to_user_options(compat.strip_query_prefix(query_data))
            except ProfileError as e:
                raise self._refusal(e) from e
            return await self._named_choice(options)
        except Exception:
            self._refused_query = True  # the hub then shows the form with the refusal, even for a single choice
            raise

    async def _named_choice(self, options):
        if inspect.isawaitable(options):
            options = await options
        await self._resolve(options, named=True)
        return options

    # ------------------------------------------------------------------ start: validate, apply, reserve, hooks

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self._check_user_options

    async def _check_user_options(self, spawner, user_options):
        """JupyterHub calls this before ``pre_spawn_hook`` and ``start``: refuse a choice this user may not make
        before anything runs. (Applying happens in ``load_user_options``, which checks again.)"""
        self._refused = False
        try:
            await self._resolve(user_options)
        except Exception:
            self._refused = True  # nothing was created: stop() has nothing to delete
            raise

    choice: ResolvedChoice | None = None
    _refused_query = _refused = False
    _trait_backup: dict | None = None
    _notes: list | None = None  # the progress notes of this start (a stale choice replaced)
    _last_recorded: dict | None = None

    async def load_user_options(self):
        """Validate ``user_options`` (every spawn path), apply the profile, record it, reserve a quota slot, run
        the hooks."""
        self._refused = False
        self._notes = []
        try:
            self.check_progress_rules()
            catalog, choice = await self._resolve(self.user_options)
        except Exception:
            self._refused = True
            raise
        if choice is None:
            return await super().load_user_options()
        name = choice.user
        if choice.fallback:
            self.log.warning("user:%s server %r: %s", name, self.name, choice.fallback)
            self._notes.append(choice.fallback)

        self._restore_traits()
        overrides = overrides_for(choice, base=TraitView(self), group_volumes=catalog.group_volumes,
                                  group_rules=catalog.group_rules, user_slug=safe_slug(name, is_valid=is_valid_label),
                                  profile_environment_variable=self.profile_environment_variable)
        self._apply_traits(overrides)
        self.choice = choice
        self._record(choice)
        self.log.info("user:%s server %r: profile %s image %s", name, self.name, choice.profile.slug, self.image)

        await self._budget_gate(choice)  # usage budgets over a window (none configured: nothing is read)
        quotas = applicable_quotas(catalog.quotas, choice.profile.slug, choice.groups)
        if quotas:
            await self._start_watching_pods()  # read-only (list + watch); shared by every spawner in the hub
            if choice.profile.queue:
                await self._queue_gate(choice, quotas)  # joins the queue (and refuses) when full or not empty
            self._reserve_quota(choice, quotas)
        await self._run_pre_spawn_hooks(choice)

    def _record(self, choice: ResolvedChoice) -> None:
        """The resolved choice into ``user_options`` (and the database row, so the admin panel, the culler and the
        metrics see the profile of every server, a default-profile one too) and into the stored state."""
        recorded = choice.user_options()
        self.user_options = recorded
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None:
            orm_spawner.user_options = dict(recorded)  # a new object, so SQLAlchemy sees the change
            _commit(orm_spawner)
        self._last_recorded = {"profile": choice.profile.slug, "image": self.image, "user_options": recorded}

    def get_state(self):
        state = super().get_state()
        state.update({"hubfleet": dict(self._last_recorded)} if self._last_recorded else {})
        return state

    def load_state(self, state):
        super().load_state(state)
        if isinstance(recorded := (state or {}).get("hubfleet"), dict):
            self._last_recorded = recorded

    async def progress(self):
        """KubeSpawner's progress events, with hubfleet's notes (a stale choice replaced) as they appear."""
        sent = 0
        events = super().progress().__aiter__()
        pending = asyncio.ensure_future(events.__anext__())
        try:
            while True:
                notes = self._notes or []
                while sent < len(notes):  # first: a spawn on a fast cluster may end within the next wait
                    yield {"progress": 5, "message": notes[sent]}
                    sent += 1
                done, _ = await asyncio.wait({pending}, timeout=0.2)
                if pending in done:
                    try:
                        event = pending.result()
                    except StopAsyncIteration:
                        break
                    yield event
                    pending = asyncio.ensure_future(events.__anext__())
        finally:
            if not pending.done():
                pending.cancel()

    def _restore_traits(self) -> None:
        """Undo the previous start's overrides so a new choice starts from the configured values."""
        for name, value in (self._trait_backup or {}).items():
            setattr(self, name, value)
        self._trait_backup = {}

    def _apply_traits(self, overrides: Mapping) -> None:
        backup = self._trait_backup if self._trait_backup is not None else {}
        for name, value in overrides.items():
            if not self.has_trait(name):
                raise self._refusal(ProfileConfigError(f"kubespawner_override: unknown KubeSpawner trait {name!r}",
                                                       fix="check the trait name in KubeSpawner's reference"))
            current = getattr(self, name)
            if callable(value) and not isinstance(value, type):
                value = value(self)  # KubeSpawner's convention for kubespawner_override callables
                if isinstance(value, Mapping) and isinstance(current, Mapping):
                    value = deep_merge(current, value)
            backup.setdefault(name, current)
            setattr(self, name, value)
        self._trait_backup = backup

    # ------------------------------------------------------------------ lifecycle

    async def _start(self):
        """KubeSpawner's start coroutine (which ``start()`` schedules and ``progress()`` follows), timed for the
        metrics and given up a little before the hub's own ``start_timeout``, saying what was seen: when the hub's
        timeout fires first, the spawn page only shows "Spawn failed: " (an empty TimeoutError)."""
        _metrics.install(type(self), getattr(self.user, "db", None), user_groups=self.export_user_group_info)
        deadline = max(self.start_timeout - min(1.0, self.start_timeout * 0.1), 0.1)
        started = time.monotonic()
        outcome = "failure"
        future = asyncio.ensure_future(super()._start())
        try:
            async with asyncio.timeout(deadline):
                result = await future
            outcome = "success"
            self.record_spawn_time(time.monotonic() - started)
            self._record_usage_start(self.choice)
            return result
        except TimeoutError as e:
            future.cancel()
            raise TimeoutError(await self.explain_failure(e) or self._not_ready_message(deadline)) from None
        finally:
            # success: the running pod now counts itself; failure: the slot is free (a leftover pod still counts)
            self._release_quota()
            if self._refused:
                outcome = "refused"
            profile = self.choice.profile.slug if self.choice is not None else ""
            _metrics.SPAWN_DURATION.labels(profile=profile, outcome=outcome).observe(time.monotonic() - started)

    async def stop(self, now=False):
        if self._refused:
            # the last start was refused before any PVC or pod was created: nothing to delete
            self._refused = False
            self._release_quota()
            return
        try:
            await self.settle_failure()  # a failed start explained, its events and logs kept, before the pod goes
            await super().stop(now=now)
        finally:
            self._release_quota()
        self._record_usage_stop()


def _commit(orm_object) -> None:
    """Commit the hub's session holding ``orm_object`` (none: not a hub object, nothing to do), as JupyterHub
    commits before every await: a change left pending is flushed by the next query of any other request, and on
    SQLite that flush holds the database's write lock until some later commit, which hubfleet's own writes (a queue
    join) would have to wait for."""
    state = sqlalchemy.inspect(orm_object, raiseerr=False)
    if state is not None and state.session is not None:
        state.session.commit()
