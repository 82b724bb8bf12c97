"""The spawn queue for ProfileSpawner: join instead of a refusal, admit when a slot frees, record usage.

A profile with ``queue: true`` whose quota is full (or whose queue is not empty: a direct spawn never overtakes
it) does not refuse the spawn with "Quota full": the request joins the profile's queue in the hub's database
(:mod:`.queue_store`) and the spawn ends at once with the outcome ``queued`` (so a queued request is not a pending
spawn: it holds no ``concurrent_spawn_limit`` place and no ``start_timeout`` runs). When a server of a queued
profile stops (whoever stopped it: its user, the culler, an admin, or the hub's poll finding it dead) and
periodically (``queue_admit_interval``, which also resumes after a hub restart), the admitter picks the next
request with :mod:`.queue_policy` (fair share or FIFO), claims it in the database (exactly one claim wins) and
starts its server through the hub's REST API with the options it was queued with; that spawn then consumes the
claim. A request whose user is gone (404) or may no longer use the profile (403) is dropped with a log line.

When the database cannot be reached, spawns of queued profiles are refused (fail closed); other profiles do not
touch it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import time
from datetime import datetime, timezone
from typing import ClassVar
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Dict, Float, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from ..cullpolicies import CullConfigError, CullPolicy, load_policies, parse_duration
from ..db import DatabaseUnavailable, migrate
from . import queue_notify, queue_policy, queue_store
from .coalesce import Coalesced
from .profiles import ProfileError, QuotaExceeded, RunningServer, quota_violation

log = logging.getLogger("hubfleet.queue")

UNAVAILABLE = ("The queue of profile {profile!r} is unavailable right now: the hub's database cannot be reached. "
               "Try again in a minute, or pick another profile.")


class QueueUnavailable(ProfileError):
    """The queue's database cannot be reached: a spawn of a queued profile is refused (fail closed)."""

    status = 503
    reason = "unavailable"


class QueueRefusal(QuotaExceeded):
    """The spawn joined the profile's queue (a refusal with the outcome ``queued``)."""

    status = 429
    reason = "queued"


class SpawnQueue(LoggingConfigurable):
    """Mixin for ProfileSpawner (needs ``load_catalog``, ``_running_servers``, ``_pod_key``, ``_refusal``, and
    ``_hubfleet_db`` and ``db_timeout`` of :class:`.progress.SpawnProgress`)."""

    queue_order = Unicode(queue_policy.FAIR_SHARE, config=True, help="""
        Who is admitted next when a slot of a queued profile frees: ``fair_share`` (the waiting request whose
        group has used the least of its weighted share of GPU time over ``queue_window``, FIFO inside a group) or
        ``fifo`` (by joining). See docs/queue.md.""")

    queue_group_weights = Dict(config=True, help="""
        Fair share weights per group, e.g. ``{"physics": 2, "chemistry": 1}``: a group with weight 2 is entitled to
        twice the use of a group with weight 1. A group without a weight has weight 1. Each weight must be > 0.
        A user's use is accounted to the first (by name) of their groups that has a weight, else to their first
        group.""")

    queue_window = Float(7 * 86400, config=True, help="""
        The window (seconds) over which fair share counts each group's use (default 7 days). Must be > 0.""")

    queue_admit_interval = Float(10.0, config=True, help="""
        Seconds between the admitter's periodic passes over the queues (besides the pass at every stop of a queued
        profile's server); it also resumes admission after a hub restart. Must be > 0.""")

    queue_listing_ttl = Float(1.0, config=True, help="""
        Seconds for which the queue's listing (every request's place, expected start and upper bound) is computed
        once and shared by every spawn page and ``/hub/api/queue`` request: each waiting user's page polls every
        3 s, and computing the places for every poll costs the hub a pass over the whole queue. A join, a leave or
        an admission in this hub shows at once whatever this says. 0: computed for every request (requests that
        arrive while one computation runs still share it).""")

    queue_api_token = Unicode(config=True, help="""
        The hub API token the admitter starts admitted servers with (``POST /hub/api/users/<name>/servers/<server>``):
        a service token whose role has the scope ``servers`` (start and stop any user's servers) and nothing else.
        Default: the environment variable ``HUBFLEET_QUEUE_API_TOKEN``. Empty: queued requests are never admitted
        automatically (logged at start).""")

    queue_claim_window = Union([Float(), Unicode()], default_value=0.0, config=True, help="""
        How long an admitted user has to start their server, for every queued profile without a ``claim_window`` of
        its own: seconds or a duration such as ``"10m"``. 0 (default): the admitter starts the server for the user.
        Otherwise, when a slot frees, the next in line is admitted and told "your server is ready to start: start
        within 10 min" (on the spawn page, ``/hub/api/queue`` and the configured notifiers); the slot is theirs
        alone (nobody else is admitted to it, no direct spawn takes it) until they start or the window ends, when
        it passes to the next in line (logged). See docs/queue.md.""")

    queue_cull_policies_file = Unicode("", config=True, help="""
        The culler's policies file (the one given to the culler as ``--policies-file``, e.g.
        ``culler_service(policies_file=...)``), read for each profile's ``max_age``: a waiting user is shown when a
        slot frees *at the latest* (from the earliest ``started + max_age`` of the profile's running servers).
        Empty (default), or a profile whose policy has no ``max_age``: "no upper bound" is shown. The culler's
        ``--max-age`` option is not seen here: give the default ``max_age`` in the file's ``default:`` section. A
        file that cannot be read or parsed is logged naming this option, and no upper bound is shown.""")

    @validate("queue_claim_window")
    def _check_claim_window(self, proposal):
        try:
            return parse_duration(proposal.value, field="ProfileSpawner.queue_claim_window", zero_ok=True)
        except CullConfigError as e:
            raise ValueError(f"{e}; 0 starts the server for the user") from e

    @default("queue_api_token")
    def _default_queue_api_token(self):
        return os.environ.get("HUBFLEET_QUEUE_API_TOKEN", "")

    @validate("queue_order")
    def _check_queue_order(self, proposal):
        if proposal.value not in queue_policy.ORDERS:
            raise ValueError(f"ProfileSpawner.queue_order: expected one of {', '.join(queue_policy.ORDERS)}, "
                             f"got {proposal.value!r}")
        return proposal.value

    @validate("queue_group_weights")
    def _check_weights(self, proposal):
        try:
            return queue_policy.check_weights(proposal.value, field="ProfileSpawner.queue_group_weights")
        except queue_policy.QueuePolicyError as e:
            raise ValueError(str(e)) from e

    @validate("queue_window", "queue_admit_interval")
    def _check_positive(self, proposal):
        if not proposal.value > 0:
            raise ValueError(f"ProfileSpawner.{proposal.trait.name}: expected seconds > 0, got {proposal.value!r}")
        return proposal.value

    @validate("queue_listing_ttl")
    def _check_not_negative(self, proposal):
        if not proposal.value >= 0:
            raise ValueError(f"ProfileSpawner.queue_listing_ttl: expected seconds >= 0, got {proposal.value!r}")
        return proposal.value

    _admit_lock: ClassVar[asyncio.Lock | None] = None
    _admitter: ClassVar[asyncio.Task | None] = None
    _listings: ClassVar[dict] = {}  # hubfleet's database -> its queue listing, shared (coalesce.Coalesced)
    _max_ages: ClassVar[dict] = {}  # policies file -> (its mtime, {profile: max_age} and None -> the default's)

    def _claim_window(self, profile) -> float:
        """Seconds an admitted user of `profile` has to start (0: the server is started for them)."""
        return profile.claim_window if profile.claim_window is not None else float(self.queue_claim_window)

    async def _max_age(self, slug: str) -> float | None:
        """The culler's ``max_age`` (seconds) for `slug` from ``queue_cull_policies_file``; None when there is none
        or the file cannot be used (logged once per version of the file)."""
        path = self.queue_cull_policies_file
        if not path:
            return None
        try:
            mtime = (await asyncio.to_thread(os.stat, path)).st_mtime
        except OSError as e:
            mtime, ages = None, CullConfigError(f"{path}: {e.strerror or e}")
        cached = SpawnQueue._max_ages.get(path)
        if cached is not None and cached[0] == mtime:
            ages = cached[1]
        elif mtime is not None:
            try:
                policies, default_policy = await asyncio.to_thread(
                    load_policies, path, default=CullPolicy(), what="ProfileSpawner.queue_cull_policies_file")
                ages = {s: p.max_age for s, p in policies.items()} | {None: default_policy.max_age}
            except CullConfigError as e:
                ages = e
        if (cached is None or cached[0] != mtime) and isinstance(ages, Exception):
            self.log.error("queue: no 'at the latest' shown: ProfileSpawner.queue_cull_policies_file: %s", ages)
        SpawnQueue._max_ages[path] = (mtime, ages)
        if isinstance(ages, Exception):
            return None
        return ages.get(slug, ages.get(None)) or None

    async def _check_queue_configuration(self) -> None:
        """At start-up: log a policies file or an admission hook that cannot be used."""
        await self._max_age("")
        try:
            queue_notify.enabled_notifiers(self)
        except Exception as e:  # noqa: BLE001
            self.log.error("queue: admissions will not be notified by the hook: %s", e)

    # ---- the database --------------------------------------------------------------------------------------------
    async def _queue_call(self, fn, *args, write=False, **kwargs):
        db = self._hubfleet_db()
        if queue_store.QUEUE.name not in db.migrated:
            await db.call_blocking(migrate, db, queue_store.QUEUE)
        try:
            return await db.call(lambda conn: fn(conn, *args, **kwargs), write=write)
        finally:
            if write and db in SpawnQueue._listings:  # what users are shown follows each change at once
                SpawnQueue._listings[db].clear()

    # ---- at spawn ------------------------------------------------------------------------------------------------
    async def _queue_gate(self, choice, quotas) -> None:
        """Let the spawn through, or join the profile's queue and refuse with the outcome ``queued``. Called with
        the quotas that apply to a ``queue: true`` profile, before the quota slot is reserved."""
        slug, user = choice.profile.slug, choice.user
        try:
            rows = await self._queue_call(queue_store.entries, profile=slug)
            mine = next((r for r in rows if r.user == user), None)
            if mine is not None and mine.state == queue_store.ADMITTED:
                await self._queue_call(queue_store.drop, mine.id, write=True)  # this spawn consumes the admission
                return
            others = [r for r in rows if r.user != user]
            full = quota_violation(quotas, self._running_servers(exclude=self._pod_key()), profile=slug,
                                   groups=choice.groups, user=user)
            if not full and not others:
                if mine is not None:  # first in line and a slot is free: this spawn is the admission
                    await self._queue_call(queue_store.drop, mine.id, write=True)
                return
            group = queue_policy.accounting_group(groups=choice.groups, weights=self.queue_group_weights)
            entry, added = await self._queue_call(
                queue_store.join, user=user, server_name=self.name or "", profile=slug, group=group,
                user_options=choice.user_options(), now=time.time(), write=True)
            rows = [r for r in await self._queue_call(queue_store.entries, profile=slug)
                    if r.state == queue_store.WAITING]  # an admission waiting for its user to start is not in line
        except DatabaseUnavailable as e:
            self.log.error("user:%s queue of %s: %s", user, slug, e)
            self._refused = True
            raise self._refusal(QueueUnavailable(UNAVAILABLE.format(profile=slug)), slug) from e
        try:
            places = await self._places(rows)
        except DatabaseUnavailable as e:  # joined already; only the place in the message is unknown
            self.log.error("user:%s queue of %s: place not read: %s", user, slug, e)
            places = {}
        position = places.get(entry.id, len(rows))
        self.log.info("user:%s %s the queue of %s at position %d of %d", user, "joined" if added else "is in",
                      slug, position, len(rows))
        self._refused = True
        self._start_admitter()
        raise self._refusal(QueueRefusal(
            f"Queued: '{choice.profile.display_name}' is full; you are number {position} of {len(rows)} waiting. "
            "Your server starts by itself when a slot frees; follow your place on the spawn page or at "
            "/hub/api/queue. Leave the queue there if you change your mind."), slug)

    _background: ClassVar[set] = set()

    def _in_background(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        SpawnQueue._background.add(task)
        task.add_done_callback(SpawnQueue._background.discard)

    def _record_usage_start(self, choice) -> None:
        """Write the usage record of a server that started (in the background: a slow database never delays a
        start; an unreachable one is logged)."""
        if choice is None:
            return
        profile = choice.profile
        values = dict(user=choice.user, server_name=self.name or "", profile=profile.slug, groups=choice.groups,
                      gpus=profile.gpu.count if profile.gpu is not None else 0,
                      cpu=profile.cpu_guarantee or profile.cpu_limit or 0,
                      memory=profile.mem_guarantee or profile.mem_limit or 0, now=time.time())
        self._in_background(self._write_usage(queue_store.record_start, values))

    def _record_usage_stop(self) -> None:
        """Close the usage record of a server that stopped, then run an admission pass."""
        values = dict(user=self.user.name, server_name=self.name or "", now=time.time())
        self._in_background(self._write_usage(queue_store.record_stop, values, admit=True))

    async def _write_usage(self, fn, values, admit=False) -> None:
        try:
            await self._queue_call(fn, **values, write=True)
        except DatabaseUnavailable as e:
            self.log.error("user:%s usage record (%s) not written: %s", values["user"], fn.__name__, e)
        if admit:
            await self._admit_pass()

    # ---- admission -----------------------------------------------------------------------------------------------
    def _start_admitter(self) -> None:
        """The periodic admission pass (one per hub process), started by the first spawner that needs it."""
        cls = SpawnQueue
        if cls._admitter is None or cls._admitter.done():
            cls._admitter = asyncio.ensure_future(self._admit_forever())

    async def _admit_forever(self) -> None:
        while True:
            await self._admit_pass()
            await asyncio.sleep(self.queue_admit_interval)

    async def _admit_pass(self) -> None:
        try:
            await self.admit_queued()
        except DatabaseUnavailable as e:
            self.log.error("queue: admission pass skipped: %s", e)
        except Exception:  # noqa: BLE001 - the periodic loop must survive any one pass
            self.log.exception("queue: admission pass failed")

    async def admit_queued(self) -> int:
        """Admit as many queued requests as there are free slots; how many were admitted."""
        if SpawnQueue._admit_lock is None:
            SpawnQueue._admit_lock = asyncio.Lock()
        async with SpawnQueue._admit_lock:
            catalog = await self.load_catalog()
            queued = {p.slug: p for p in catalog.profiles if p.queue}
            if not queued:
                return 0
            rows = await self._queue_call(queue_store.entries)
            if not rows:
                return 0
            await self._start_watching_pods()
            uses = await self._queue_call(queue_store.uses, since=time.time() - self.queue_window,
                                          weights=self.queue_group_weights)
            usage = queue_policy.group_usage(uses=uses, now=time.time(), window=self.queue_window)
            admitted = 0
            for slug in {r.profile for r in rows}:
                profile = queued.get(slug)
                mine = [r for r in rows if r.profile == slug]
                if profile is None:
                    for r in mine:
                        log.warning("queue: dropping %s's request for %r: the profile no longer queues", r.user, slug)
                        await self._queue_call(queue_store.drop, r.id, write=True)
                    continue
                admitted += await self._admit_profile(catalog, profile, mine, usage)
            return admitted

    async def _admit_profile(self, catalog, profile, rows, usage) -> int:
        from .profiles import applicable_quotas  # noqa: PLC0415

        window = self._claim_window(profile)
        for r in [r for r in rows if r.state == queue_store.ADMITTED]:
            if queue_policy.claim_expired(admitted_at=r.admitted_at, claim_window=window, now=time.time()) \
                    and await self._queue_call(queue_store.drop, r.id, write=True):
                self.log.info("queue: %s did not start %r within %s of the admission: the slot passes to the next "
                              "in line", r.user, r.profile, _duration(window))
                rows = [x for x in rows if x.id != r.id]
        running = self._running_servers()
        # admissions whose spawn has not started yet hold their slot
        running += [RunningServer(f"queue/{r.id}", r.profile, frozenset([r.group]) if r.group else frozenset(), r.user)
                    for r in rows if r.state == queue_store.ADMITTED]
        waiting = {r.id: r for r in rows if r.state == queue_store.WAITING}
        order = queue_policy.admission_order(queue=[r.request() for r in waiting.values()], usage=usage,
                                             weights=self.queue_group_weights, order=self.queue_order)
        admitted = 0
        for request in order:
            entry = waiting[request.seq]
            groups = frozenset([entry.group]) if entry.group else frozenset()
            quotas = applicable_quotas(catalog.quotas, profile.slug, groups)
            if quota_violation(quotas, running, profile=profile.slug, groups=groups, user=entry.user):
                continue
            now = time.time()
            if not await self._queue_call(queue_store.claim, entry.id, now=now, write=True):
                continue
            if window:  # the slot waits for its user: told, not started
                self.log.info("queue: admitted %s to %r (server %r): start within %s, by %s", entry.user,
                              entry.profile, entry.server_name, _duration(window), _clock(now + window))
                outcome = "started"
            else:
                outcome = await self._request_start(entry)
            if outcome == "started":
                admitted += 1
                running.append(RunningServer(f"queue/{entry.id}", profile.slug, groups, entry.user))
                self._in_background(self._tell_admitted(entry, profile, now + window if window else None))
            elif outcome == "drop":
                await self._queue_call(queue_store.drop, entry.id, write=True)
            else:
                await self._queue_call(queue_store.unclaim, entry.id, write=True)
                break
        return admitted

    async def _request_start(self, entry) -> str:
        """Start the admitted request's server through the hub API: ``started``, ``drop`` (the user is gone or may
        no longer use the profile) or ``retry``."""
        token = self.queue_api_token
        if not token:
            log.warning("queue: %s admitted to %r but ProfileSpawner.queue_api_token is empty: not started",
                        entry.user, entry.profile)
            return "retry"
        user = quote(entry.user, safe="")
        server = quote(entry.server_name, safe="")
        path = f"users/{user}/servers/{server}" if entry.server_name else f"users/{user}/server"
        url = self.hub.api_url.rstrip("/") + "/" + path
        request = HTTPRequest(url, method="POST", body=json.dumps(entry.user_options),
                              headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
                              request_timeout=max(30.0, self.db_timeout))
        try:
            await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            body = e.response.body.decode(errors="replace")[:300] if e.response is not None else ""
            if e.code in (403, 404):
                log.warning("queue: dropping %s's request for %r: the hub refused its start (%s %s)", entry.user,
                            entry.profile, e.code, body)
                return "drop"
            if e.code == 400 and "already" in body:
                log.info("queue: %s's server for %r is already running; request done", entry.user, entry.profile)
                return "drop"
            log.error("queue: starting %s's %r server failed: %s %s", entry.user, entry.profile, e.code, body)
            return "retry"
        except OSError as e:
            log.error("queue: starting %s's %r server failed: %s", entry.user, entry.profile, e)
            return "retry"
        log.info("queue: admitted %s to %r (server %r)", entry.user, entry.profile, entry.server_name)
        return "started"

    async def _tell_admitted(self, entry, profile, start_by: float | None) -> None:
        """Notify the admitted user by the configured notifiers (in the background; failures are logged)."""
        try:
            notifiers = queue_notify.enabled_notifiers(self)
            if not notifiers:
                return
            settings = getattr(self.user, "settings", None) or {}
            public = settings.get("public_url")
            base = f"{public.scheme}://{public.netloc}" if public else ""
            path = "/".join(quote(p, safe="") for p in (entry.user, entry.server_name) if p)
            notice = queue_notify.admission_notice(user=entry.user, server=entry.server_name, profile=profile,
                                                   start_by=start_by, url=f"{base}{self.hub.base_url}spawn/{path}")
            await queue_notify.notify_admission(notifiers, notice, await self._user_model(entry.user), log=self.log)
        except Exception:  # noqa: BLE001  (a notification never breaks an admission)
            self.log.exception("queue: notifying %s of the admission to %r failed", entry.user, entry.profile)

    async def _user_model(self, name: str) -> dict:
        """``{"name", "auth_state"}`` of a hub user (auth state None when it cannot be read: then only the
        ``SMTPNotifier.to`` template gives an address)."""
        model = {"name": name, "auth_state": None}
        try:
            from jupyterhub import orm  # noqa: PLC0415
            from jupyterhub.user import User  # noqa: PLC0415

            orm_user = orm.User.find(self.user.db, name)
            if orm_user is not None:
                model["auth_state"] = await User(orm_user, self.user.settings).get_auth_state()
        except Exception as e:  # noqa: BLE001
            self.log.warning("queue: auth state of %s not read: %s: %s", name, type(e).__name__, e)
        return model

    # ---- what a user sees ----------------------------------------------------------------------------------------
    async def _places(self, waiting) -> dict[int, int]:
        """``entry id -> place`` of one profile's `waiting` rows in the order of admission (the group use over
        ``queue_window`` and ``queue_order`` the admitter uses): the one place arithmetic of what anyone is shown."""
        now = time.time()
        uses = await self._queue_call(queue_store.uses, since=now - self.queue_window,
                                      weights=self.queue_group_weights)
        return queue_policy.positions(queue=[r.request() for r in waiting],
                                      usage=queue_policy.group_usage(uses=uses, now=now, window=self.queue_window),
                                      weights=self.queue_group_weights, order=self.queue_order)

    async def queue_listing(self, user: str | None = None) -> list[dict]:
        """Each queued request (`user`'s, or everyone's), by profile, admitted first, then by place: its user,
        profile, server, state, ``position`` (:meth:`_places`; 0 when admitted), how many wait, when a slot frees at
        the latest and the expected start (epoch seconds, or None) and, admitted with a claim window, by when to
        start (``start_by``). Everyone's listing is computed once for all callers within ``queue_listing_ttl``."""
        db = self._hubfleet_db()
        shared = SpawnQueue._listings.get(db) or SpawnQueue._listings.setdefault(db, Coalesced())
        return [r for r in await shared.get(self._listing, self.queue_listing_ttl) if user is None or r["user"] == user]

    async def _listing(self) -> list[dict]:
        rows = await self._queue_call(queue_store.entries)
        out = []
        now = time.time()
        profiles = {p.slug: p for p in (await self.load_catalog()).profiles} if rows else {}
        for slug in sorted({r.profile for r in rows}):
            same = [r for r in rows if r.profile == slug]
            window = self._claim_window(profiles[slug]) if slug in profiles else 0.0
            places = await self._places([r for r in same if r.state == queue_store.WAITING])
            lengths = await self._queue_call(queue_store.session_lengths, profile=slug)
            session = statistics.median(lengths) if lengths else None
            started = [s for _, _, s in await self._queue_call(queue_store.running, profile=slug)]
            max_age = await self._max_age(slug)
            deadlines = queue_policy.max_age_deadlines(
                started=started, admitted=[r.admitted_at or now for r in same if r.state == queue_store.ADMITTED],
                max_age=max_age, claim_window=window)
            for entry in sorted(same, key=lambda r: places.get(r.id, 0)):
                shown = queue_policy.shown_wait(
                    now=now, position=places[entry.id], waiting=len(places), deadlines=deadlines, max_age=max_age,
                    expected_ends=[s + session for s in started] if session else (), expected_session=session,
                    claim_window=window) if entry.id in places else None
                start_by = (entry.admitted_at + window if window and entry.state == queue_store.ADMITTED
                            and entry.admitted_at is not None else None)
                out.append({
                    "user": entry.user, "profile": entry.profile, "server_name": entry.server_name,
                    "state": entry.state, "joined_at": entry.joined_at, "position": shown.position if shown else 0,
                    "waiting": len(places), "at_latest": shown.at_latest if shown else None,
                    "expected": shown.expected if shown else None, "start_by": start_by, "claim_window": window,
                    "user_options": entry.user_options,
                })
        return out

    async def queue_status(self, user: str) -> dict:
        """``{"user", "queued": [...], "budgets": [...]}``: ``user``'s requests (:meth:`queue_listing`) and budgets."""
        queued = await self.queue_listing(user)
        _, groups, _ = self._identity()
        return {"user": user, "queued": queued,
                "budgets": await self.budget_status(user, groups) if self.budgets else []}

    async def _queue_panel(self, catalog, user: str) -> str:
        """The spawn form's queue panel (the user's place, updated by the page itself, and a leave button); empty
        when no profile queues."""
        if not any(p.queue for p in catalog.profiles) and not self.budgets:
            return ""
        try:
            status = await self.queue_status(user)
        except DatabaseUnavailable as e:
            self.log.error("user:%s queue panel: %s", user, e)
            status = {"error": "The queue is unavailable right now (the hub's database cannot be reached)."}
        return _PANEL.replace("__STATUS__", json.dumps(status).replace("<", "\\u003c"))


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min" if minutes and not rest else (f"{minutes} min {rest} s" if minutes else f"{rest} s")


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S UTC")


_PANEL = """
<div id="hubfleet-queue" class="alert alert-info" style="display:none" aria-live="polite"></div>
<script>
(function () {
  var box = document.getElementById("hubfleet-queue");
  var hub = window.jhdata && window.jhdata.base_url ? window.jhdata.base_url : "/hub/";
  var base = hub + "api/queue", user = "";
  var seen = {}, left = {};
  function xsrf() {
    var input = document.querySelector("input[name=_xsrf]");
    return (window.jhdata && window.jhdata.xsrf_token) || (input ? input.value : "");
  }
  function when(t) { return t ? new Date(t * 1000).toLocaleString() : "unknown"; }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}); }
  function start(q) {
    var who = encodeURIComponent(user), path = q.server_name ? "/servers/" + encodeURIComponent(q.server_name) :
      "/server";
    fetch(hub + "api/users/" + who + path, {method: "POST", credentials: "same-origin",
      headers: {"X-XSRFToken": xsrf(), "Content-Type": "application/json"}, body: JSON.stringify(q.user_options)})
      .then(function (r) {
        if (r.ok) { window.location = hub + "spawn-pending/" + who +
          (q.server_name ? "/" + encodeURIComponent(q.server_name) : ""); }
        else { r.json().then(function (e) { box.appendChild(document.createTextNode(" " + e.message)); }); }
      });
  }
  function render(status) {
    box.textContent = "";
    if (status.error) { box.style.display = ""; box.textContent = status.error; return; }
    user = status.user || user;
    var now = {};
    (status.queued || []).forEach(function (q) {
      now[q.profile] = true;
      var p = document.createElement("p");
      p.className = "hubfleet-queue-entry";
      p.dataset.profile = q.profile;
      if (q.state === "admitted" && q.start_by) {
        p.className += " hubfleet-queue-claim";
        p.textContent = "Your '" + q.profile + "' server is ready to start: admitted, start by " +
          clock(q.start_by) + ". After that the slot passes to the next in line. ";
        var s = document.createElement("button");
        s.type = "button"; s.className = "btn btn-sm btn-primary hubfleet-queue-start";
        s.textContent = "Start now";
        s.onclick = function () { start(q); };
        p.appendChild(s);
      } else if (q.state === "admitted") {
        p.textContent = "Your '" + q.profile + "' slot is free: your server is starting.";
      } else {
        p.textContent = "You are number " + q.position + " of " + q.waiting + " waiting for '" + q.profile +
          "'. Expected start: " + when(q.expected) + "; at the latest: " +
          (q.at_latest ? when(q.at_latest) : "no upper bound") + ". " + (q.claim_window ?
          "When your turn comes you have " + Math.round(q.claim_window / 60) + " min to start; you will be told." :
          "Your server starts by itself; you may close this page.");
        var b = document.createElement("button");
        b.type = "button"; b.className = "btn btn-sm btn-secondary hubfleet-queue-leave";
        b.textContent = "Leave the queue";
        b.onclick = function () {
          left[q.profile] = true;
          fetch(base + "/" + encodeURIComponent(q.profile), {method: "DELETE", credentials: "same-origin",
            headers: {"X-XSRFToken": xsrf()}}).then(poll);
        };
        p.appendChild(document.createTextNode(" ")); p.appendChild(b);
      }
      box.appendChild(p);
    });
    (status.budgets || []).forEach(function (b) {
      var p = document.createElement("p");
      p.className = "hubfleet-budget" + (b.ok ? "" : " text-danger");
      p.textContent = "Budget: " + b.text + ".";
      box.appendChild(p);
    });
    Object.keys(seen).forEach(function (profile) {
      if (!now[profile] && !left[profile] && seen[profile].start_by && Date.now() / 1000 >= seen[profile].start_by) {
        var e = document.createElement("p");
        e.className = "hubfleet-queue-expired";
        e.textContent = "Your '" + profile + "' server was not started in time: the slot passed to the next in line.";
        box.appendChild(e);
      } else if (!now[profile] && !left[profile]) {
        var p = document.createElement("p");
        p.className = "hubfleet-queue-admitted";
        p.textContent = "Your '" + profile + "' server was admitted from the queue and is starting. ";
        var a = document.createElement("a"); a.href = (window.jhdata && window.jhdata.base_url || "/hub/") + "home";
        a.textContent = "Go to your servers"; p.appendChild(a);
        box.appendChild(p);
      }
    });
    seen = {};
    (status.queued || []).forEach(function (q) { seen[q.profile] = q; });
    box.style.display = box.childNodes.length ? "" : "none";
  }
  function poll() {
    fetch(base, {credentials: "same-origin", headers: {"X-XSRFToken": xsrf()}})
      .then(function (r) { return r.json(); }).then(render).catch(function () {});
  }
  render(__STATUS__);
  setInterval(poll, 3000);
})();
</script>
"""
