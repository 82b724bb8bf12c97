"""``hubfleet-culler``: a hub-managed idle-culler service with per-profile policies.

Run as ``python -m hubfleet.services.culler`` or ``hubfleet culler`` (a JupyterHub service: it reads
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``). One sweep:

1. list every user with a ready server (``GET /users?state=ready``, paginated; plus ``state=inactive`` when users
   are culled), all pages first — the list is offset-paginated, so stopping servers while paging would shift the
   offsets and skip users;
2. decide each server with the pure :func:`.arbiter.cull_decision` (its profile's policy, or the default one);
3. stop the culled servers with up to ``concurrency`` stops in flight at once, then delete users whose servers are
   all gone when ``cull_users`` allows it.

What comes from jupyterhub-idle-culler 2.0.0 and what does not (read from its ``__init__.py``):

- reused: its ``utcnow`` (the one clock both can be mocked through) and ``make_ssl_context`` (internal SSL), its
  option names and defaults (``--timeout``, ``--cull-every``, ``--concurrency``, ``--max-age``, ``--cull-users``,
  ``--cull-admin-users``, ``--cull-default-servers``, ``--cull-named-servers``, ``--remove-named-servers``,
  ``--api-page-size``, ``--url``), its decision rules and its hook shape (see :mod:`.arbiter`).
- rewritten: ``cull_idle()`` itself. It creates one coroutine per user and awaits them one after another, so its
  ``--concurrency`` semaphore never has more than one stop in flight (a sweep of 1,000 culls took 18–20 s here,
  bounded by the hub's ~15 ms per stop, and a stop that waits for a pod to go makes it slower still); its hook gets
  neither ``user_options`` nor ``started``, so a per-profile ``max_age`` cannot be expressed through it; it has no
  retries; it runs under ``IOLoop.start()`` with no SIGTERM handling, so a hub shutting it down waits for its stop
  timeouts (~34 s measured here). Here SIGTERM/SIGINT cancel the sweep and exit at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jupyterhub_idle_culler import make_ssl_context, utcnow
from traitlets import Bool, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import Application

from .arbiter import (
    CullConfigError,
    CullPolicy,
    combine_for_user,
    cull_decision,
    policies_from_config,
    policy_for,
    user_cull_decision,
)
from .hub_api import HubAPI, HubAPIError

log = logging.getLogger("hubfleet.culler")


@dataclass
class SweepResult:
    users_listed: int = 0
    servers_seen: int = 0
    culled: int = 0
    slow_to_stop: int = 0
    users_deleted: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"sweep: {self.servers_seen} ready servers of {self.users_listed} users, {self.culled} culled"
                f" ({self.slow_to_stop} still stopping), {self.users_deleted} users deleted,"
                f" {len(self.errors)} errors in {self.seconds:.2f}s")


class CullerApp(Application):
    name = "hubfleet-culler"
    description = ("Cull idle JupyterHub servers with per-profile policies (a JupyterHub service; reads "
                   "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN).")

    url = Unicode(
        help="""The JupyterHub API URL, e.g. http://hub:8081/hub/api. Default: $JUPYTERHUB_API_URL, which the hub
        sets for its managed services.""",
    ).tag(config=True)

    @default("url")
    def _url_default(self):
        return os.environ.get("JUPYTERHUB_API_URL", "")

    timeout = Int(
        3600,
        help="""Idle timeout in seconds of the default policy: servers whose profile has no policy of its own (or
        that name no profile) are culled after this long without activity. z2jh's `cull.timeout`.""",
    ).tag(config=True)

    max_age = Int(
        0,
        help="""Maximum age in seconds of the default policy: servers are culled this long after they started,
        even if active. 0: no limit.""",
    ).tag(config=True)

    cull_users = Bool(
        False,
        help="""Default policy: also delete users whose servers are all culled and who are themselves inactive
        for `timeout` (for temporary users). Needs the `delete:users` and `read:users` scopes.""",
    ).tag(config=True)

    cull_admin_users = Bool(
        True,
        help="""Whether admin users may be deleted (only with `cull_users`). Admins' servers are culled like
        anyone's.""",
    ).tag(config=True)

    cull_default_servers = Bool(True, help="Whether default (unnamed) servers are culled for inactivity.").tag(
        config=True)
    cull_named_servers = Bool(True, help="Whether named servers are culled for inactivity.").tag(config=True)
    remove_named_servers = Bool(
        False,
        help="""Remove culled named servers (`{"remove": true}`) instead of only stopping them; with
        ProfileSpawner this also deletes their PVC.""",
    ).tag(config=True)

    policies_file = Unicode(
        "",
        help="""YAML file of per-profile policies, keyed on the profile slug a server was started with
        (`user_options["profile"]`, which ProfileSpawner sets):

            default: {timeout: 8h}            # optional; overrides --timeout/--max-age/--cull-users
            profiles:
              gpu: {timeout: 30m}
              small: {timeout: 8h}
              long-running: {never: true, max_age: 7d}

        Keys a profile leaves out come from the default policy. Durations: seconds, or 30m, 8h, 7d, 2w. Re-read
        when it changes (a z2jh `hub.extraFiles` ConfigMap update); a broken update is logged and the last good
        policies stay in force.""",
    ).tag(config=True)

    cull_every = Int(
        0,
        help="""Seconds between sweeps. 0: half the shortest idle timeout of any policy, between 1 and 600
        seconds.""",
    ).tag(config=True)

    concurrency = Int(
        10,
        help="""Maximum number of stop/delete requests in flight at once. Unlike jupyterhub-idle-culler 2.0.0, whose
        stops run one after another, these really overlap; the hub's own work per stop is the limit.""",
    ).tag(config=True)

    api_page_size = Int(0, help="Users per page of `GET /users`; 0: the hub's default page size.").tag(config=True)
    request_timeout = Float(60.0, help="Seconds before one hub API request is given up (then retried).").tag(
        config=True)
    retries = Int(4, help="Retries of a hub API request answered 429, 5xx or not at all, with exponential backoff.").tag(
        config=True)
    once = Bool(False, help="Run one sweep and exit (status 1 if any request failed).").tag(config=True)
    ssl_enabled = Bool(False, help="Whether the hub API uses internal SSL (JupyterHub's `internal_ssl`).").tag(
        config=True)
    internal_certs_location = Unicode(
        "internal-ssl", help="Where the internal-SSL certificates are (only with `ssl_enabled`).").tag(config=True)

    aliases = {
        "url": "CullerApp.url",
        "timeout": "CullerApp.timeout",
        "max-age": "CullerApp.max_age",
        "cull-users": "CullerApp.cull_users",
        "cull-admin-users": "CullerApp.cull_admin_users",
        "cull-default-servers": "CullerApp.cull_default_servers",
        "cull-named-servers": "CullerApp.cull_named_servers",
        "remove-named-servers": "CullerApp.remove_named_servers",
        "policies-file": "CullerApp.policies_file",
        "cull-every": "CullerApp.cull_every",
        "concurrency": "CullerApp.concurrency",
        "api-page-size": "CullerApp.api_page_size",
        "request-timeout": "CullerApp.request_timeout",
        "retries": "CullerApp.retries",
        "ssl-enabled": "CullerApp.ssl_enabled",
        "internal-certs-location": "CullerApp.internal_certs_location",
        "log-level": "Application.log_level",
    }
    flags = {
        "once": ({"CullerApp": {"once": True}}, once.help),
    }

    # option -> (the check, how to say it); one validator for all of them, errors name the CLI flag
    _RANGES = {
        "timeout": (lambda v: v >= 1, "must be at least 1 second"),
        "concurrency": (lambda v: v >= 1, "must be at least 1"),
        "max_age": (lambda v: v >= 0, "must be 0 or more"),
        "cull_every": (lambda v: v >= 0, "must be 0 or more"),
        "api_page_size": (lambda v: v >= 0, "must be 0 or more"),
        "retries": (lambda v: v >= 0, "must be 0 or more"),
        "request_timeout": (lambda v: v > 0, "must be more than 0 seconds"),
    }

    @validate(*_RANGES)
    def _check_range(self, proposal):
        ok, rule = self._RANGES[proposal.trait.name]
        value = proposal.value
        if not ok(value):
            raise TraitError(f"--{proposal.trait.name.replace('_', '-')} {rule}, not {value}")
        return value

    @default("log_level")
    def _log_level_default(self):
        return logging.INFO

    @default("log_format")
    def _log_format_default(self):
        return "[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"

    # --- policies ------------------------------------------------------------------------------------------------

    def base_policy(self) -> CullPolicy:
        return CullPolicy(timeout=float(self.timeout), max_age=float(self.max_age), cull_users=self.cull_users)

    def load_policies(self) -> tuple[dict[str, CullPolicy], CullPolicy]:
        """Read ``policies_file`` (or none: everything gets the default policy). Raises CullConfigError."""
        if not self.policies_file:
            return {}, self.base_policy()
        try:
            text = Path(self.policies_file).read_text()
        except OSError as e:
            raise CullConfigError(f"--policies-file {self.policies_file!r}: {e.strerror}") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise CullConfigError(f"--policies-file {self.policies_file!r}: not valid YAML: {e}") from e
        try:
            return policies_from_config(data, default=self.base_policy())
        except CullConfigError as e:
            raise CullConfigError(f"--policies-file {self.policies_file!r}: {e}") from e

    def _refresh_policies(self) -> None:
        if not self.policies_file:
            return
        try:
            mtime = os.stat(self.policies_file).st_mtime_ns
        except OSError as e:
            log.error("policies file %s: %s; keeping the last good policies", self.policies_file, e.strerror)
            return
        if mtime == self._policies_mtime:
            return
        try:
            self.policies, self.default_policy = self.load_policies()
        except CullConfigError as e:
            log.error("%s; keeping the last good policies", e)
        else:
            log.info("policies reloaded from %s: %s", self.policies_file, self._describe_policies())
        self._policies_mtime = mtime

    def _describe_policies(self) -> str:
        parts = [f"{slug}: {p.describe()}" for slug, p in self.policies.items()]
        return "; ".join(parts + [f"default: {self.default_policy.describe()}"])

    def effective_cull_every(self) -> float:
        if self.cull_every:
            return float(self.cull_every)
        timeouts = [p.timeout for p in [*self.policies.values(), self.default_policy] if not p.never]
        return min(max(min(timeouts, default=1200) / 2, 1.0), 600.0)

    def initialize(self, argv=None):
        super().initialize(argv)
        self.policies, self.default_policy = self.load_policies()
        self._policies_mtime = os.stat(self.policies_file).st_mtime_ns if self.policies_file else None

    # --- one sweep -----------------------------------------------------------------------------------------------

    async def sweep(self, api: HubAPI) -> SweepResult:
        t0 = time.monotonic()
        result = SweepResult()
        now = utcnow()
        users: list[dict] = []
        states = ["ready", "inactive"] if self._user_culling_possible() else ["ready"]
        for state in states:
            async for user in api.iter_users(state=state, page_size=self.api_page_size):
                users.append(user)
        result.users_listed = len(users)
        sem = asyncio.Semaphore(self.concurrency)
        await asyncio.gather(*(self._handle_user(api, sem, user, now, result) for user in users))
        result.seconds = time.monotonic() - t0
        return result

    def _user_culling_possible(self) -> bool:
        return self.default_policy.cull_users or any(p.cull_users for p in self.policies.values())

    async def _handle_user(self, api: HubAPI, sem: asyncio.Semaphore, user: dict, now, result: SweepResult):
        name = user["name"]
        servers = user.get("servers") or {}
        to_cull, kept, culled_policies = [], 0, []
        for server_name, server in servers.items():
            server = {"name": server_name, **server}
            result.servers_seen += 1
            decision = cull_decision(server=server, user=user, now=now, policies=self.policies,
                                     default=self.default_policy, cull_default_servers=self.cull_default_servers,
                                     cull_named_servers=self.cull_named_servers)
            label = f"{name}/{server_name}" if server_name else name
            if decision.cull:
                to_cull.append((server_name, label, decision.reason))
                culled_policies.append(policy_for(server, self.policies, self.default_policy)[1])
            else:
                kept += 1
                log.debug("keep %s: %s", label, decision.reason)

        async def stop(server_name, label, reason) -> bool:
            async with sem:
                log.info("cull %s: %s", label, reason)
                try:
                    res = await api.stop_server(name, server_name, remove=self.remove_named_servers)
                except HubAPIError as e:
                    log.error("cull %s failed: %s", label, e)
                    result.errors.append(str(e))
                    return False
            if res.status == 202:
                result.slow_to_stop += 1
                log.warning("cull %s: server is slow to stop", label)
            result.culled += 1
            return res.stopped

        stopped = await asyncio.gather(*(stop(*c) for c in to_cull))
        left = kept + sum(1 for s in stopped if not s)
        policy = combine_for_user(culled_policies, self.default_policy)
        if not policy.cull_users:
            return
        decision = user_cull_decision(user=user, now=now, policy=policy, servers_left=left,
                                      cull_admin_users=self.cull_admin_users)
        if not decision.cull:
            log.debug("keep user %s: %s", name, decision.reason)
            return
        async with sem:
            log.info("cull user %s: %s", name, decision.reason)
            try:
                await api.delete_user(name)
            except HubAPIError as e:
                log.error("cull user %s failed: %s", name, e)
                result.errors.append(str(e))
                return
        result.users_deleted += 1

    # --- running -------------------------------------------------------------------------------------------------

    def make_api(self) -> HubAPI:
        ssl_options = None
        if self.ssl_enabled:
            loc = self.internal_certs_location
            ssl_options = make_ssl_context(f"{loc}/hub-internal/hub-internal.key",
                                           f"{loc}/hub-internal/hub-internal.crt", f"{loc}/hub-ca/hub-ca.crt")
        return HubAPI(self.url, os.environ.get("JUPYTERHUB_API_TOKEN", ""), request_timeout=self.request_timeout,
                      retries=self.retries, max_clients=self.concurrency + 2, ssl_options=ssl_options)

    async def run(self) -> int:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        api = self.make_api()
        every = self.effective_cull_every()
        log.info("culling every %.0fs, %d stops at a time; policies: %s", every, self.concurrency,
                 self._describe_policies())
        failed = False
        try:
            while not stopping.is_set():
                self._refresh_policies()
                task = asyncio.ensure_future(self.sweep(api))
                stop_wait = asyncio.ensure_future(stopping.wait())
                await asyncio.wait([task, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                if not task.done():  # SIGTERM mid-sweep: in-flight stops are the hub's to finish
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    log.info("stopping: sweep cancelled")
                    break
                stop_wait.cancel()
                try:
                    result = task.result()
                except (HubAPIError, OSError) as e:
                    log.error("sweep failed: %s", e)
                    failed = True
                else:
                    log.info("%s", result.summary())
                    failed = bool(result.errors)
                if self.once:
                    break
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=every)
                except asyncio.TimeoutError:
                    pass
        finally:
            api.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 1 if failed and self.once else 0

    def start(self) -> int:
        return asyncio.run(self.run())


def main(argv: list[str] | None = None) -> int:
    app = CullerApp()
    try:
        app.initialize(argv)
        if not app.url:
            raise CullConfigError("--url: the hub API URL is not set; give --url or set JUPYTERHUB_API_URL "
                                  "(e.g. http://hub:8081/hub/api)")
        if not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise CullConfigError("JUPYTERHUB_API_TOKEN is not set: the culler needs its service's token")
    except (TraitError, CullConfigError) as e:
        print(f"hubfleet-culler: {e}", file=sys.stderr)
        return 2
    logging.getLogger("hubfleet").setLevel(app.log_level)
    if not logging.getLogger("hubfleet").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(app.log_format))
        logging.getLogger("hubfleet").addHandler(handler)
    return app.start()
