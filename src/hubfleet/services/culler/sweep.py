"""One sweep of the culler: list, decide (:mod:`.arbiter`), ask the activity sources, warn, stop, delete users.

1. list every user with a ready server (``GET /users?state=ready``, plus ``state=inactive`` when users may be
   culled), all pages first — the list is offset-paginated, so stopping servers while paging would skip users;
2. one GPU query per distinct window (:class:`.activity.PrometheusGPU`) when a policy judges by GPU use, and one
   ``GET /hub/api/budgets`` with ``--cull-over-budget`` (which running servers have a used-up usage budget, as the
   hub's spawn gate counts it; when it cannot be read, nobody is culled for a budget that sweep);
3. each user is handled on its own: a record the culler cannot handle is logged and skipped, never the sweep;
   per server: its policy (:func:`.arbiter.resolve_policy`), a decision, and — only when that decision would warn
   or cull and the policy spares busy kernels — the server's kernels, then the decision again;
4. warnings go to every configured notifier; a failed delivery is logged, counted and retried at the next sweep,
   and the warning still counts (the cull comes ``warn_before`` after it, so no cull is lost);
5. consolidation (:mod:`.nodes`), when a policy has ``consolidate``: the servers kept above that have been idle
   ``idle_after`` are planned together with the nodes' usage, and warned, stopped or their warning withdrawn;
6. stops and kernel checks (the hub mints a token for the one server, the server asks the hub about it) run
   through a :class:`Gate` whose width :class:`.limiter.AdaptiveLimit` sets from the hub's answer time, sampled
   every ``probe_interval`` while the sweep runs (never more than ``--concurrency``), and which spreads their starts
   evenly over the time a stop takes (never ``limit`` stops at once, whose database commits would then queue up
   in the hub together).

With ``dry_run`` nothing is stopped, deleted or sent: each would-be warning and cull is printed with its reason.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

from jupyterhub_idle_culler import utcnow

from ...errors import explain
from .activity import SourceError, pod_of
from .arbiter import (
    Activity,
    BudgetState,
    Decision,
    parse_date,
    Warned,
    combine_for_user,
    cull_decision,
    profile_of,
    resolve_policy,
    user_cull_decision,
)
from .hub_api import HubAPI, HubAPIError
from .limiter import AdaptiveLimit, nearest_rank
from .nodes import Candidate, Consolidator
from .notify import Notice, NotifyError
from .state import remember_cull, snapshot

log = logging.getLogger("hubfleet.culler")

# users per page when --api-page-size is 0: the hub builds a page in one go on its event loop, and a page of 200
# users with servers held it for a few hundred ms in bench_culler (10,000 users), the hub's p99 for everyone
PAGE_SIZE = 50


@dataclass
class SweepResult:
    users_listed: int = 0
    servers_seen: int = 0
    culled: int = 0
    warned: int = 0
    spared: int = 0
    slow_to_stop: int = 0
    users_deleted: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_limit: int = 0

    def summary(self) -> str:
        return (f"sweep: {self.servers_seen} ready servers of {self.users_listed} users, {self.culled} culled"
                f" ({self.slow_to_stop} still stopping), {self.warned} warned, {self.spared} spared busy,"
                f" {self.users_deleted} users deleted, {self.skipped} records skipped, {len(self.errors)} errors"
                f" in {self.seconds:.2f}s (up to {self.max_limit} stops at once)")


@dataclass
class WarnState:
    warned: Warned
    started: str | None
    notice: Notice
    pending: set[str]  # notifiers that have not delivered it yet


class Gate:
    """An asyncio semaphore whose width is ``limit.limit`` at every moment (it may change while tasks wait), and
    whose entries are ``limit.spacing()`` seconds apart (stops spread evenly rather than started in bursts)."""

    def __init__(self, limit: AdaptiveLimit, clock=time.monotonic, sleep=asyncio.sleep):
        self.limit, self.clock, self._sleep = limit, clock, sleep
        self.in_flight = 0
        self.held = False  # no one enters while held (the probe measures the hub's floor first)
        self._waiters: collections.deque = collections.deque()
        self._next_start = float("-inf")
        self._started: dict = {}  # task -> when it entered (its hold time feeds the spacing)

    async def __aenter__(self):
        while self.held or self.in_flight >= self.limit.limit:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
        self.in_flight += 1
        now = self.clock()
        start = max(now, self._next_start)
        self._next_start = start + self.limit.spacing()
        if start > now:
            try:
                await self._sleep(start - now)
            except BaseException:
                self.in_flight -= 1
                self.wake()
                raise
        self._started[asyncio.current_task()] = self.clock()

    async def __aexit__(self, *exc):
        started = self._started.pop(asyncio.current_task(), None)
        if started is not None:
            self.limit.held(self.clock() - started)
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        free = 0 if self.held else self.limit.limit - self.in_flight
        while free > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1


def _metric_profile(server: dict, label: str) -> str:
    slug = profile_of(server)
    if slug:
        return slug
    if label.startswith("profile unknown"):
        return "unknown"
    if label.startswith("profile "):
        return label.split()[1]
    return "default"


class Sweeper:
    """Holds what lasts between sweeps (warnings given, the adaptive limit) and runs one sweep at a time.

    ``cfg`` is the :class:`.app.CullerApp` (policies, switches); ``profiles``: ProfileSpawner's parsed profiles for
    resolving servers that name none.
    """

    def __init__(self, cfg, api: HubAPI, *, metrics, notifiers=(), kernels=None, gpu=None, profiles=(),
                 dry_run: bool = False, out=print, public_url: str = "", probe_interval: float = 0.1, nodes=None):
        self.cfg, self.api, self.metrics = cfg, api, metrics
        self.notifiers = [n for n in notifiers if n.enabled]
        self.kernels, self.gpu, self.profiles = kernels, gpu, tuple(profiles)
        self.dry_run, self.out, self.public_url = dry_run, out, public_url.rstrip("/")
        self.probe_interval = probe_interval
        target = getattr(cfg, "hub_latency_target", 0.025)
        self.limit = AdaptiveLimit(maximum=cfg.concurrency, target=target or 1e9,
                                   limit=cfg.concurrency if not target else 0)
        self.gate = Gate(self.limit)
        self.warned: dict[tuple[str, str], WarnState] = {}
        self.culled: collections.OrderedDict = collections.OrderedDict()  # (user, server) -> its last cull
        self._said: set = set()  # one log line per server for things that do not change between sweeps
        self.latencies: list[float] = []
        self.consolidator = Consolidator(nodes)
        self._candidates: list[Candidate] = []
        self._budgets: dict | None = None  # this sweep's budget states (see _budget_states)

    # --- the sweep -------------------------------------------------------------------------------------------------

    async def sweep(self) -> SweepResult:
        t0 = time.monotonic()
        result = SweepResult()
        now = utcnow()
        cfg = self.cfg
        users: list = []
        self.latencies = []
        self._candidates = []
        states = ["ready", "inactive"] if self._user_culling_possible() else ["ready"]
        for state in states:
            try:
                async for user in self.api.iter_users(state=state, page_size=cfg.api_page_size or PAGE_SIZE):
                    users.append(user)
            except HubAPIError:
                self.metrics.hub_api_errors.labels("list").inc()
                raise
        result.users_listed = len(users)
        log.debug("listed %d users in %.2fs", len(users), time.monotonic() - t0)
        gpu_idle = await self._gpu_idle()
        self._budgets = await self._budget_states()
        seen: set = set()
        probe_stop = asyncio.Event()
        self.gate.held = self.limit.target < 1e9
        probe = asyncio.ensure_future(self._probe(probe_stop, result))
        try:
            await asyncio.gather(*(self._isolated(user, now, result, gpu_idle, seen) for user in users))
            await self.consolidator.run(self, self._candidates, now, result)
        finally:
            probe_stop.set()
            await asyncio.gather(probe, return_exceptions=True)
            self.gate.held = False
        for key in [k for k in self.warned if k not in seen]:  # server gone (stopped by its user, or culled)
            del self.warned[key]
        result.seconds = time.monotonic() - t0
        self.metrics.sweep_seconds.observe(result.seconds)
        if self.latencies and log.isEnabledFor(logging.DEBUG):
            ordered = sorted(self.latencies)
            log.debug("hub answer times during the sweep: median %.1f ms, p90 %.1f ms, max %.1f ms (%d samples); "
                      "stops in flight: %s; %.0f ms between starts at the end", 1e3 * nearest_rank(ordered, 0.5),
                      1e3 * nearest_rank(ordered, 0.9), 1e3 * ordered[-1], len(ordered),
                      " ".join(f"{t - t0:.1f}s:{n}" for t, n in list(self.limit.history)[-40:]) or self.limit.limit,
                      1e3 * self.limit.spacing())
        return result

    def state(self) -> dict:
        """The warnings given and the last culls, for the admin page (:func:`.state.snapshot`)."""
        return snapshot(self.warned, self.culled)

    def _user_culling_possible(self) -> bool:
        cfg = self.cfg
        return cfg.default_policy.cull_users or any(p.cull_users for p in cfg.policies.values())

    async def _probe(self, stop: asyncio.Event, result: SweepResult) -> None:
        result.max_limit = self.limit.limit
        if self.limit.target >= 1e9:
            return
        calibration = []
        for _ in range(5):  # the floor: the hub's answer time before our stops add to it
            try:
                calibration.append(await self.api.ping())
            except Exception:  # noqa: BLE001
                break
        self.limit.calibrate(calibration)
        self.gate.held = False
        self.gate.wake()
        while not stop.is_set():
            try:
                latency = await self.api.ping()
            except Exception:  # noqa: BLE001  (no answer: as slow as can be)
                latency = 10.0
            self.latencies.append(latency)
            self.limit.observe(latency, time.monotonic())
            self.metrics.concurrency.set(self.limit.limit)
            result.max_limit = max(result.max_limit, self.limit.limit)
            self.gate.wake()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.probe_interval)
            except asyncio.TimeoutError:
                pass

    async def _gpu_idle(self) -> dict:
        cfg = self.cfg
        if self.gpu is None:
            return {}
        needs = {self._gpu_need(p) for p in [*cfg.policies.values(), cfg.default_policy]
                 if p.gpu_idle_below is not None and not p.never}
        if not needs:
            return {}
        try:
            return await self.gpu.idle_for(needs)
        except SourceError as e:
            self.metrics.source_errors.labels("prometheus").inc()
            log.warning("GPU activity unknown this sweep (%s): GPU servers are judged by browser activity", e)
            return {}

    async def _budget_states(self) -> dict | None:
        """``{(user, server): BudgetState}`` of the running servers a budget applies to (a server not in it has
        none); None when not asked (``--cull-over-budget`` off) or the hub could not tell (logged, counted)."""
        if not getattr(self.cfg, "cull_over_budget", False):
            return None
        try:
            servers = await self.api.budgets()
            states = {}
            for s in servers:
                texts = [b["text"] for b in s["budgets"] if not b["ok"]]
                states[(s["user"], s["server"])] = BudgetState(bool(s["used_up"]), "; ".join(texts))
        except (HubAPIError, ValueError, KeyError, TypeError) as e:
            self.metrics.source_errors.labels("budgets").inc()
            hint = " (the hub has no /hub/api/budgets: register hubfleet.spawners.queue_web.handlers(), as " \
                   "enable_queue does)" if isinstance(e, HubAPIError) and e.status == 404 else ""
            log.error("budgets unknown this sweep: %s%s; nobody is culled for a budget", e, hint)
            return None
        return states

    @staticmethod
    def _gpu_need(policy) -> tuple:
        windows = {policy.timeout}
        if policy.consolidate is not None:
            windows.add(policy.consolidate.idle_after)
        if policy.warn_before:
            windows.add(policy.timeout - policy.warn_before)
        return policy.gpu_idle_below, tuple(sorted(windows, reverse=True))

    async def _isolated(self, user, now, result: SweepResult, gpu_idle: dict, seen: set) -> None:
        try:
            await self._handle_user(user, now, result, gpu_idle, seen)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001  (one record must not end the sweep)
            name = user.get("name") if isinstance(user, dict) else None
            log.error("user %s: skipped this sweep: %s", name if isinstance(name, str) else repr(user)[:80],
                      explain(e) if str(e) else type(e).__name__)
            result.skipped += 1
            result.errors.append(f"user {name!r}: {type(e).__name__}: {e}")
            self.metrics.record_errors.inc()

    def _say_once(self, key, message: str, *args) -> None:
        if key not in self._said:
            self._said.add(key)
            log.info(message, *args)

    async def busy_kernels_or_unknown(self, user: dict, server: dict) -> int | None:
        """Busy kernels of a server for consolidation; unknown counts as busy (1): nobody is stopped early on a
        guess."""
        if self.kernels is None:
            return None
        try:
            async with self.gate:
                return await self.kernels.busy_kernels(user["name"], server["name"], server.get("url") or "")
        except SourceError as e:
            self.metrics.source_errors.labels("kernels").inc()
            log.warning("server %s: kernels unknown (%s); not stopped for consolidation", _label(user["name"],
                        server), e)
            return 1

    async def consolidation_warn(self, c: Candidate, reason: str, now, result: SweepResult) -> WarnState:
        decision = Decision(False, reason, "warn", "consolidate")
        where = _label(c.user["name"], c.server)
        return await self._warn(c.user, c.server, where, decision, c.policy, c.profile, c.label, now, result,
                                keep=False)

    async def consolidation_redeliver(self, c: Candidate, ws: WarnState) -> None:
        """A consolidation warning some notifier has not delivered yet: tried again (the stop still waits)."""
        if ws.pending and not self.dry_run:
            await self._deliver(ws, c.user, _label(c.user["name"], c.server))

    async def consolidation_stop(self, c: Candidate, reason: str, result: SweepResult) -> None:
        await self._stop(c.user["name"], c.server["name"], _label(c.user["name"], c.server),
                         Decision(True, reason, "cull", "consolidate"), c.profile, result)

    def _candidate(self, user: dict, server: dict, now, policy, label: str, profile: str, gpu_idle: dict) -> None:
        stamp = server.get("last_activity") or server.get("started")
        idle = (now - parse_date(stamp)).total_seconds() if stamp else None
        gpu_for = None
        if policy.gpu_idle_below is not None:
            pod = pod_of(server)
            gpu_for = gpu_idle.get(self._gpu_need(policy), {}).get(pod) if pod else None
        self._candidates.append(Candidate(user, server, policy, label, profile, idle, gpu_for))

    async def _decide(self, user: dict, server: dict, now, gpu_idle: dict) -> tuple[Decision, str, object]:
        cfg, name = self.cfg, user["name"]
        label, policy, certain = resolve_policy(server=server, user=user, policies=cfg.policies,
                                                default=cfg.default_policy, profiles=self.profiles)
        key = (name, server["name"], server.get("started"))
        if not certain:
            self._say_once(("uncertain", key), "server %s: user_options name no profile and the user's default "
                           "profile cannot be told (no groups in the user model): %s", _label(name, server), label)
        elif profile_of(server) is None and not self.profiles and cfg.policies:
            self._say_once(("noprofile", key), "server %s: user_options name no profile; the default policy "
                           "applies (give --profiles-file to resolve the user's default profile)",
                           _label(name, server))
        activity = Activity()
        if policy.gpu_idle_below is not None and self.gpu is not None:
            pod = pod_of(server)
            idle = gpu_idle.get(self._gpu_need(policy), {}).get(pod) if pod else None
            if idle is None:
                self._say_once(("nogpu", key), "server %s: no GPU utilisation for pod %s; judged by browser "
                               "activity", _label(name, server), "/".join(pod) if pod else "(unknown: no state)")
            activity = Activity(gpu_idle_for=idle)
        ws = self.warned.get((name, server["name"]))
        warned = ws.warned if ws is not None and ws.started == server.get("started") else None
        budget = None if self._budgets is None else self._budgets.get((name, server["name"]), BudgetState(False))
        kwargs = dict(server=server, user=user, now=now, policies=cfg.policies, default=cfg.default_policy,
                      cull_default_servers=cfg.cull_default_servers, cull_named_servers=cfg.cull_named_servers,
                      policy=policy, label=label, warned=warned, budget=budget)
        decision = cull_decision(activity=activity, **kwargs)
        if decision.action != "keep" and policy.spare_busy_kernels and self.kernels is not None:
            try:  # the hub mints and deletes a token, and the server checks it with the hub: the hub's load too
                async with self.gate:
                    busy = await self.kernels.busy_kernels(name, server["name"], server.get("url") or "")
            except SourceError as e:
                self.metrics.source_errors.labels("kernels").inc()
                log.warning("server %s: kernels unknown (%s); judged by its last activity", _label(name, server), e)
            else:
                decision = cull_decision(activity=replace(activity, busy_kernels=busy), **kwargs)
        return decision, label, policy

    async def _handle_user(self, user: dict, now, result: SweepResult, gpu_idle: dict, seen: set) -> None:
        name = user["name"]
        if not isinstance(name, str):
            raise TypeError(f"user name is {type(name).__name__}, not a string")
        servers = user.get("servers") or {}
        to_cull, kept, culled_policies = [], 0, []
        for server_name, server in servers.items():
            server = {**server, "name": server_name}
            result.servers_seen += 1
            key = (name, server_name)
            seen.add(key)
            decision, label, policy = await self._decide(user, server, now, gpu_idle)
            profile = _metric_profile(server, label)
            where = _label(name, server)
            ws = self.warned.get(key)
            if decision.action == "cull":
                to_cull.append((server_name, where, decision, profile))
                culled_policies.append(policy)
                continue
            kept += 1
            if decision.action == "warn":
                await self._warn(user, server, where, decision, policy, profile, label, now, result)
            elif decision.action == "wait":
                if ws is not None and ws.pending and not self.dry_run:
                    await self._deliver(ws, user, where)
            else:
                allowed = cfg_kind(self.cfg, server)
                if policy.consolidate is not None and allowed and decision.why != "busy" \
                        and server.get("ready", True) and not server.get("pending"):
                    self._candidate(user, server, now, policy, label, profile, gpu_idle)
                if ws is not None:
                    del self.warned[key]
                    self.metrics.warnings_cancelled.labels(profile).inc()
                    log.info("warning for %s cancelled: %s", where, decision.reason)
                if decision.why == "busy":
                    result.spared += 1
                    self.metrics.spared.labels(profile).inc()
                    log.info("spare %s: %s", where, decision.reason)
                else:
                    log.debug("keep %s: %s", where, decision.reason)

        stopped = await asyncio.gather(*(self._stop(name, *c, result) for c in to_cull))
        left = kept + sum(1 for s in stopped if not s)
        await self._maybe_delete_user(user, now, left, culled_policies, result)

    async def _warn(self, user, server, where, decision, policy, profile, label, now, result,
                    keep=True) -> WarnState:
        cull_after = now + timedelta(seconds=policy.warn_before)
        notice = Notice(user=user["name"], server=server["name"], profile=label,
                        reason=decision.reason.removeprefix("warn: "),
                        cull_after=cull_after.strftime("%Y-%m-%dT%H:%M:%SZ"), warn_before=policy.warn_before,
                        server_url=(self.public_url + (server.get("url") or "")) if self.public_url else "",
                        why=decision.why or "idle")
        kind = decision.why if decision.why in ("max_age", "budget") else "idle"
        ws = WarnState(Warned(now, kind), server.get("started"), notice, {n.name for n in self.notifiers})
        if keep:  # the idle culler's own warning (consolidation keeps its warnings in .nodes.Consolidator)
            self.warned[(user["name"], server["name"])] = ws
        result.warned += 1
        self.metrics.warnings.labels(profile, decision.why or "idle").inc()
        log.info("warn %s: %s", where, decision.reason.removeprefix("warn: "))
        if self.dry_run:
            self.out(f"would warn {where}: {decision.reason.removeprefix('warn: ')}")
            ws.pending.clear()
            return ws
        if self.notifiers:
            await self._deliver(ws, user, where)
        return ws

    async def _deliver(self, ws: WarnState, user: dict, where: str) -> None:
        model = user
        for notifier in self.notifiers:
            if notifier.name not in ws.pending:
                continue
            try:
                if notifier.scopes() and "auth_state" not in (model or {}):
                    model = await self.api.get_user(user["name"])
                await notifier.notify(ws.notice, model)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001  (a notifier's failure is that warning's, never the user's sweep)
                self.metrics.notify_failures.labels(notifier.name).inc()
                why = str(e) if isinstance(e, (NotifyError, HubAPIError)) else f"{type(e).__name__}: {e}"
                log.warning("warn %s: not delivered: %s; tried again at the next sweep (the cull still waits "
                            "until %s)", where, why, ws.notice.cull_after)
            else:
                ws.pending.discard(notifier.name)
                log.info("warn %s: sent by %s", where, notifier.name)

    async def _stop(self, name, server_name, where, decision, profile, result) -> bool:
        if self.dry_run:
            self.out(f"would cull {where}: {decision.reason}")
            log.info("cull %s (dry run): %s", where, decision.reason)
            result.culled += 1
            return True
        async with self.gate:
            log.info("cull %s: %s", where, decision.reason)
            try:
                res = await self.api.stop_server(name, server_name, remove=self.cfg.remove_named_servers)
            except HubAPIError as e:
                self.metrics.hub_api_errors.labels("stop").inc()
                log.error("cull %s failed: %s", where, e)
                result.errors.append(str(e))
                return False
        self.warned.pop((name, server_name), None)
        remember_cull(self.culled, (name, server_name), at=utcnow(), why=decision.why or "idle",
                      reason=decision.reason)
        if res.status == 202:
            result.slow_to_stop += 1
            log.warning("cull %s: server is slow to stop", where)
        result.culled += 1
        self.metrics.culls.labels(profile, decision.why or "idle").inc()
        return res.stopped

    async def _maybe_delete_user(self, user, now, left, culled_policies, result) -> None:
        cfg, name = self.cfg, user["name"]
        policy = combine_for_user(culled_policies, cfg.default_policy)
        if not policy.cull_users:
            return
        decision = user_cull_decision(user=user, now=now, policy=policy, servers_left=left,
                                      cull_admin_users=cfg.cull_admin_users)
        if not decision.cull:
            log.debug("keep user %s: %s", name, decision.reason)
            return
        if self.dry_run:
            self.out(f"would delete user {name}: {decision.reason}")
            result.users_deleted += 1
            return
        async with self.gate:
            log.info("cull user %s: %s", name, decision.reason)
            try:
                await self.api.delete_user(name)
            except HubAPIError as e:
                self.metrics.hub_api_errors.labels("delete").inc()
                log.error("cull user %s failed: %s", name, e)
                result.errors.append(str(e))
                return
        result.users_deleted += 1
        self.metrics.users_deleted.inc()


def cfg_kind(cfg, server: dict) -> bool:
    """Whether servers of this kind (named or default) may be stopped for inactivity at all."""
    return cfg.cull_named_servers if server.get("name") else cfg.cull_default_servers


def _label(name: str, server: dict) -> str:
    return f"{name}/{server['name']}" if server.get("name") else name


__all__ = ["Sweeper", "SweepResult", "Gate"]
