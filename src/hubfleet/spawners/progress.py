"""Spawn progress a person understands, and failures explained and kept (a KubeSpawner mixin).

- ``progress()``: every Kubernetes event of the spawn (KubeSpawner's ``raw_event``), and the container states that
  have no event (``OOMKilled``, ``CrashLoopBackOff``, ``ErrImagePull``), becomes one sentence from the rules in
  :mod:`.events` (``progress_rules`` first), prefixed by the honest phase; the bar follows the phase. The first
  message is the profile's usual spawn time (p50/p90 of its last spawns, :mod:`.history_db`).
  kubespawner 7.0 and 7.1 have no hook to reword events: the stable interface is ``progress()`` yielding
  ``{"progress", "message", "raw_event"}``, so this wraps it (the same on both).
- :meth:`explain_failure`: when a start fails, the error the user reads is one sentence that says why and what to
  do; :meth:`keep_failure` (called by ``stop()``, which the hub runs after a failed start, before the pod is
  deleted) saves the pod's last events and each container's last log lines in the hub's database
  (:mod:`.failures_db`; bounded, text that is not UTF-8 replaced).
- :meth:`_record_spawn_time`: a successful spawn's duration, for the usual spawn time.

Database trouble never fails a spawn: it is logged, and the page shows no usual time (or the failure is not kept).
"""

from __future__ import annotations

import asyncio
import sys
import time

from traitlets import Dict, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from . import events as _ev
from .events import RuleError

_PROGRESS = {"waiting": 10, "scheduled": 30, "pulling": 45, "starting": 75, "ready": 100}


class SpawnProgress(LoggingConfigurable):
    """Mixin for :class:`~hubfleet.spawners.ProfileSpawner` (a KubeSpawner); its options are ProfileSpawner's."""

    progress_rules = List(Dict(), help="""
        Rules that word the Kubernetes events of a spawn, checked before the built-in table (docs/spawner.md lists
        it); a rule with a built-in rule's ``name`` replaces it. Each rule: ``name``, ``reason`` (the event's
        reason, exactly), ``pattern`` (a Python regular expression searched in the event's message; its named
        groups may be used in the texts), ``text`` (the progress sentence), and optionally ``phase`` (waiting,
        scheduled, pulling, starting, ready, failed), ``level`` (info, warning, error) and ``advice`` (the failure
        page's sentence when this event is why the spawn failed). Texts may name ``{profile}``,
        ``{memory_limit}``, ``{its_memory_limit}``, ``{larger_profile}``, ``{image}``, ``{message}``. A rule that
        does not compile is logged at start-up and refuses every spawn, naming the rule.

        Example::

            c.ProfileSpawner.progress_rules = [
                {"name": "unschedulable-gpu", "reason": "FailedScheduling", "pattern": r"Insufficient nvidia\\.com/gpu",
                 "text": "All A100s are in use; your server starts when one is free.", "phase": "waiting"},
            ]
        """).tag(config=True)

    failure_log_lines = Integer(100, help="""
        When a spawn fails, keep each container's last this many log lines (and the pod's last
        ``failure_events`` events) in the hub's database, readable after the pod is deleted. 0: keep no logs.
        """).tag(config=True)

    failure_events = Integer(30, help="How many of a failed spawn's last events to keep.").tag(config=True)

    failure_log_bytes = Integer(64 * 1024, help="""
        At most this many bytes of each container's log are read when a spawn fails (before the last
        ``failure_log_lines`` lines are kept).""").tag(config=True)

    db_url = Unicode("", help="""
        The database holding hubfleet's tables (spawn durations, saved failures, the spawn queue and the usage
        records), as a SQLAlchemy URL like
        ``JupyterHub.db_url``. Empty (default): the hub's own database (``JupyterHub.db_url``, with
        ``JupyterHub.db_kwargs``).""").tag(config=True)

    db_timeout = Float(5.0, help="""
        Upper bound (seconds) on each of hubfleet's statements in the database; when it does not answer in time,
        the page shows no usual spawn time and a failure is logged but not kept (the spawn itself goes on), while
        spawns of queued profiles, and of profiles a budget applies to, are refused with a message (fail closed).
        """).tag(config=True)

    _rules: tuple | None = None
    _phase = ""
    _rules_checked: set = set()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = repr(self.progress_rules)
        if key not in SpawnProgress._rules_checked:  # said once at start-up (the hub's first spawner)
            SpawnProgress._rules_checked.add(key)
            try:
                self.progress_rule_table
            except RuleError as e:
                self.log.error("progress rules: invalid configuration: %s", e)

    @property
    def progress_rule_table(self) -> tuple:
        """The compiled rules (``progress_rules`` first); :class:`RuleError` naming a rule that does not compile."""
        if self._rules is None:
            self._rules = _ev.compile_rules(self.progress_rules)
        return self._rules

    def check_progress_rules(self) -> None:
        """Refuse the spawn (like a bad profiles configuration) while ``progress_rules`` has a broken rule."""
        from .profiles import ProfileConfigError  # noqa: PLC0415

        try:
            self.progress_rule_table
        except RuleError as e:
            raise self._refusal(ProfileConfigError(e.message, fix=e.fix)) from e

    # ------------------------------------------------------------------ the database

    def _hubfleet_db(self):
        """The one database of hubfleet's tables (spawn durations, saved failures, the queue and usage records):
        ``db_url``, else the hub's own. :class:`~hubfleet.db.DatabaseUnavailable` when there is none to open."""
        from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

        from ..db import DatabaseUnavailable, shared  # noqa: PLC0415
        from ..db.url import HUB_DEFAULT_URL  # noqa: PLC0415

        kwargs = None
        url = self.db_url
        if not url:
            app = _hub_app()
            if app is None:  # not inside a hub (a script, a test): no database to guess at
                raise DatabaseUnavailable("no database: set ProfileSpawner.db_url outside a JupyterHub process")
            url = getattr(app, "db_url", "") or HUB_DEFAULT_URL
            kwargs = getattr(app, "db_kwargs", None)
        try:
            return shared(url, timeout=self.db_timeout, engine_kwargs=kwargs)
        except (ImportError, SQLAlchemyError) as e:  # e.g. the URL's driver is not installed
            raise DatabaseUnavailable(f"hubfleet's database: {e}") from e

    async def _db_call(self, fn, *args):
        from ..db import migrate  # noqa: PLC0415
        from . import failures_db, history_db  # noqa: PLC0415

        db = self._hubfleet_db()
        await db.call_blocking(lambda: migrate(db, history_db.COMPONENT, failures_db.COMPONENT, logger=self.log))
        return await db.call(fn, *args, write=True)

    # ------------------------------------------------------------------ what this spawn is

    def _profile_name(self) -> str:
        choice = getattr(self, "choice", None)
        return choice.profile.display_name or choice.profile.slug if choice is not None else ""

    def _profile_slug(self) -> str:
        choice = getattr(self, "choice", None)
        return choice.profile.slug if choice is not None else ""

    async def _larger_profile(self) -> str:
        """The display name of the smallest profile this user may pick with more memory than this one."""
        choice = getattr(self, "choice", None)
        if choice is None:
            return ""
        mine = self.mem_limit or choice.profile.mem_limit or 0
        try:
            from .profiles import visible_profiles  # noqa: PLC0415

            catalog = await self.load_catalog()
            name, groups, is_admin = self._identity()
            bigger = [p for p in visible_profiles(catalog.profiles, name, groups, is_admin)
                      if p.mem_limit and mine and p.mem_limit > mine]
        except Exception:  # a hint, never a reason to fail
            return ""
        bigger.sort(key=lambda p: p.mem_limit)
        return (bigger[0].display_name or bigger[0].slug) if bigger else ""

    async def _context(self) -> dict:
        return _ev.context_for(profile=self._profile_name(), memory_limit=self.mem_limit or None,
                               larger_profile=await self._larger_profile(), image=self.image or "")

    def _pod(self) -> dict | None:
        reflector = getattr(self, "pod_reflector", None)
        return reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None

    # ------------------------------------------------------------------ progress

    async def _usual_time(self) -> str:
        slug = self._profile_slug()
        if not slug:
            return ""
        from .history_db import read_durations  # noqa: PLC0415

        try:
            durations = await self._db_call(read_durations, slug)
        except Exception as e:
            self.log.warning("spawn history: cannot read durations for %s: %s", slug, e)
            return ""
        return _ev.usual_time(self._profile_name(), durations)

    def _word(self, event: dict, context: dict) -> tuple[dict, _ev.Progress]:
        p = _ev.describe(event, context, self.progress_rule_table)
        if p.phase:
            self._phase = p.phase
        phase = _ev.PHASE_WORDS.get(self._phase, "")
        message = f"[{phase}] {p.message}" if phase else p.message
        return {"message": message, "level": p.level, "phase": self._phase}, p

    async def progress(self):
        self._phase = "waiting"
        usual = await self._usual_time()
        if usual:
            yield {"progress": 1, "message": usual}
        context = await self._context()
        seen_states: set = set()
        shown: set = set()  # a sentence already on the page says nothing new the second time

        def new_states():
            for state in _ev.status_events(self._pod()):
                key = (state["container"], state["reason"])
                if key not in seen_states:
                    seen_states.add(key)
                    worded, _p = self._word(state, {**context, "container": state["container"]})
                    yield {"progress": _PROGRESS.get(self._phase, 50), **worded}

        def once(items):
            for item in items:
                if item.get("message") not in shown:
                    shown.add(item.get("message"))
                    yield item

        events = super().progress().__aiter__()
        pending = asyncio.ensure_future(events.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=1)
                if pending not in done:  # the pod's own state between events: after the events that led to it
                    for item in once(new_states()):
                        yield item
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    break
                pending = asyncio.ensure_future(events.__anext__())
                raw = item.get("raw_event") if isinstance(item, dict) else None
                if raw is None:
                    yield item
                    continue
                worded, _p = self._word(raw, context)
                for out in once([{**item, **worded, "progress": max(_PROGRESS.get(self._phase, 0), 1)}]):
                    yield out
        finally:
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()  # retrieved: an ended generator's StopAsyncIteration is not an error

    # ------------------------------------------------------------------ success and failure

    _tasks: set = set()

    def record_spawn_time(self, seconds: float) -> None:
        """Record a successful spawn's duration in the background (the server is ready; nobody waits for this)."""
        self._start_returned = time.monotonic()
        task = asyncio.ensure_future(self._record_spawn_time(seconds))
        SpawnProgress._tasks.add(task)
        task.add_done_callback(SpawnProgress._tasks.discard)

    async def _record_spawn_time(self, seconds: float) -> None:
        slug = self._profile_slug()
        if not slug:
            return
        from .history_db import record_duration  # noqa: PLC0415

        try:
            await self._db_call(record_duration, slug, seconds)
        except Exception as e:
            self.log.warning("spawn history: cannot record %s: %s", slug, e)

    async def _container_logs(self, pod: dict | None) -> dict[str, str]:
        """Each container's last log lines (the previous run's for a container waiting to restart), bounded."""
        if not pod or self.failure_log_lines <= 0:
            return {}
        status = pod.get("status") or {}
        out: dict[str, str] = {}
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            name = cs.get("name")
            state = cs.get("state") or {}
            if not name or not (state.get("running") or state.get("terminated") or cs.get("lastState")):
                continue
            # a container waiting to restart: its last run's log (previous), else whatever the kubelet still has;
            # one running again after a restart: this run's log, or the last run's while this one has written nothing
            restarted = bool(cs.get("lastState"))
            tries = [True, False] if state.get("waiting") and restarted else [False, True] if restarted else [False]
            for previous in tries:
                text, ok = await self._read_log(name, previous)
                if (ok and text.strip()) or previous is tries[-1]:
                    out[name] = text
                    break
        return out

    async def _read_log(self, container: str, previous: bool) -> tuple[str, bool]:
        """(the log's last lines, read?) — its text, or why it could not be read."""
        try:
            resp = await self.api.read_namespaced_pod_log(
                self.pod_name, self.namespace, container=container, previous=previous,
                tail_lines=self.failure_log_lines, limit_bytes=self.failure_log_bytes,
                _preload_content=False, _request_timeout=5)
            try:
                data = await resp.read()
            finally:
                resp.release()
        except Exception as e:
            return f"(the log could not be read: {e})", False
        text = data.decode("utf-8", errors="replace")
        if resp.status >= 400:
            return f"(the log could not be read: HTTP {resp.status} {text[:300]})", False
        return text, True

    _failed_spawn: tuple | None = None
    _start_returned: float | None = None

    async def explain_failure(self, error: BaseException) -> str:
        """The one sentence for the error page (``""`` when nothing explains it); the failure is remembered, so
        :meth:`keep_failure` saves its events and logs when the hub stops the server, before the pod is
        deleted."""
        raw_events = [e for e in (self.events or []) if e.get("message")]
        why = _ev.explain_failure(raw_events, self._pod(), await self._context(), self.progress_rule_table)
        sentence = why.sentence if why is not None else ""
        self._failed_spawn = (sentence or str(error), raw_events)
        self.log.info("user:%s spawn failed (%s): %s", self.user.name, why.rule if why else "unexplained",
                      sentence or error)
        return sentence

    async def explain_failed_wait(self) -> None:
        """Called by ``stop()``. When the pod ran but the server never answered (the hub's ``http_timeout``), the
        hub stops the server while it handles its own TimeoutError ("Server at ... didn't respond"); when the pod
        says why (a container out of memory, a crash loop), that error is given the sentence instead
        (``jupyterhub_message``, which JupyterHub's spawn page shows, and its text, for JupyterHub 5.5)."""
        returned, self._start_returned = self._start_returned, None
        if self._failed_spawn is not None or returned is None or time.monotonic() - returned > self.http_timeout + 5:
            return  # not the hub giving up on a server that never answered
        error = sys.exc_info()[1]
        if not isinstance(error, Exception):
            return
        sentence = await self.explain_failure(error)
        if sentence:
            error.jupyterhub_message = sentence
            error.args = (sentence,)

    async def settle_failure(self) -> None:
        """Called by ``stop()`` before the pod is deleted: :meth:`explain_failed_wait`, then :meth:`keep_failure`."""
        await self.explain_failed_wait()
        await self.keep_failure()

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

    async def keep_failure(self) -> None:
        """Save the last failed start's events and each container's last log lines in the hub's database (once;
        at most ~10 s, whatever the API and the database do)."""
        if self._failed_spawn is None:
            return
        reason, raw_events = self._failed_spawn
        self._failed_spawn = None
        pod = self._pod()
        raw_events = [e for e in (self.events or []) if e.get("message")] or raw_events
        kept = [{"type": e.get("type"), "reason": e.get("reason"), "message": e.get("message"),
                 "count": e.get("count"), "last": e.get("lastTimestamp") or e.get("eventTime")}
                for e in raw_events[-self.failure_events:]]
        try:
            async with asyncio.timeout(10):
                logs = await self._container_logs(pod)
                from .failures_db import record_failure  # noqa: PLC0415

                await self._db_call(lambda conn: record_failure(
                    conn, user=self.user.name, server=self.name or "", profile=self._profile_slug(),
                    pod=self.pod_name, reason=reason, events=kept, logs=logs,
                    max_events=self.failure_events, max_lines=self.failure_log_lines))
        except Exception as e:
            self.log.warning("user:%s failed spawn of %s not kept: %s", self.user.name, self.pod_name, e)


def _hub_app():
    try:
        from jupyterhub.app import JupyterHub  # noqa: PLC0415
    except ImportError:
        return None
    return JupyterHub.instance() if JupyterHub.initialized() else None
