"""``hubfleet-culler``: a hub-managed idle-culler service with per-profile policies.

Run as ``python -m hubfleet.services.culler`` or ``hubfleet culler`` (a JupyterHub service: it reads
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``). This module holds the options and the run loop; one sweep is
:mod:`.sweep`, the decisions :mod:`.arbiter`, the policies file :mod:`.policies`, warnings :mod:`.notify`, busy
kernels and GPU use :mod:`.activity`, metrics :mod:`.metrics`.

What comes from jupyterhub-idle-culler (2.0.0 and 1.4.0, read from their ``__init__.py``) and what does not:

- reused: its ``utcnow`` (the one clock both can be mocked through) and ``make_ssl_context`` (internal SSL), its
  option names and values (``--timeout``, ``--cull-every``, ``--concurrency``, ``--max-age``, ``--cull-users``,
  ``--cull-admin-users``, ``--cull-default-servers``, ``--cull-named-servers``, ``--remove-named-servers``,
  ``--api-page-size``, ``--url``), its decision rules and its hook shape (see :mod:`.arbiter`). One default differs
  on purpose: ``--cull-admin-users`` is False here (idle-culler and z2jh: True), see its help.
- rewritten: ``cull_idle()`` itself. It creates one coroutine per user and awaits them one after another, so its
  ``--concurrency`` semaphore never has more than one stop in flight; its hook gets neither ``user_options`` nor
  ``started``; it has no retries; it runs under ``IOLoop.start()`` with no SIGTERM handling, so a hub shutting it
  down waits for its stop timeouts (~34 s measured here). Here SIGTERM/SIGINT cancel the sweep and exit at once,
  and a failed sweep is logged and retried with backoff: the service never exits on one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from jupyterhub_idle_culler import make_ssl_context
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Application

from ...errors import HubfleetError, explain
from ..certprobe import CertificateProbe
from .arbiter import CullConfigError, CullPolicy
from .hub_api import HubAPI
from .notify import NOTIFIER_CLASSES, HookNotifier, NotifyError, SMTPNotifier, WebhookNotifier, check_hook
from .policies import load_policies

log = logging.getLogger("hubfleet.culler")


class CullerApp(Application):
    name = "hubfleet-culler"
    description = ("Cull idle JupyterHub servers with per-profile policies (a JupyterHub service; reads "
                   "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN).")
    classes = [*NOTIFIER_CLASSES, CertificateProbe]

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
        help="""Default policy: also DELETE users whose servers are all culled and who are themselves inactive
        for `timeout` (for temporary users). Deleting a user deletes its hub account, tokens and groups
        membership and, with KubeSpawner's default `c.KubeSpawner.delete_pvc = True` (ProfileSpawner keeps
        it), its home volume (PVC) with every file in it. Leave it off for real users; set
        `c.KubeSpawner.delete_pvc = False` if you turn it on and want to keep the volumes. Needs the
        `delete:users` and `read:users` scopes.""",
    ).tag(config=True)

    cull_admin_users = Bool(
        False,
        help="""Whether admin users may be DELETED (only with `cull_users`). False by default, unlike
        jupyterhub-idle-culler and z2jh (`cull.adminUsers: true`): deleting an admin account (and, with
        `delete_pvc`, its home volume) is not what an operator expects from an idle culler. Admins' *servers*
        are culled like anyone's (as z2jh does); give admins a profile with `never: true` to exempt them.""",
    ).tag(config=True)

    cull_default_servers = Bool(True, help="Whether default (unnamed) servers are culled for inactivity.").tag(
        config=True)
    cull_named_servers = Bool(True, help="Whether named servers are culled for inactivity.").tag(config=True)
    remove_named_servers = Bool(
        False,
        help="""Remove culled named servers (`{"remove": true}`) instead of only stopping them; with
        ProfileSpawner (KubeSpawner's default `delete_pvc`) this also deletes their PVC.""",
    ).tag(config=True)

    cull_over_budget = Bool(
        False,
        help="""Also stop running servers whose usage budget (`c.ProfileSpawner.budgets`) is used up: warned like
        an idle server (reason `budget`, the message naming the use and the budget), stopped `warn_before` (of
        the server's policy) after the warning unless enough of the budget frees up meanwhile, whatever the
        policy's `timeout` or `never`. The hub counts the use, with the arithmetic that refuses spawns, and
        tells the culler at each sweep (`GET /hub/api/budgets`, registered by
        `hubfleet.config.queue.enable_queue`; the `read:servers` scope the culler holds anyway). When the hub
        cannot tell, nobody is stopped for a budget that sweep (logged).""",
    ).tag(config=True)

    policies_file = Unicode(
        "",
        help="""YAML file of per-profile policies, keyed on the profile slug a server was started with
        (`user_options["profile"]`, which ProfileSpawner sets):

            default: {timeout: 8h}            # optional; overrides --timeout/--max-age/--cull-users
            profiles:
              gpu: {timeout: 30m, warn_before: 10m, gpu_idle_below: 5}
              small: {timeout: 8h, spare_busy_kernels: true}
              long-running: {never: true, max_age: 7d}

        Keys: timeout, max_age, never, cull_users, warn_before, spare_busy_kernels, gpu_idle_below (see
        docs/culler.md). Keys a profile leaves out come from the default policy. Durations: seconds, or 30m, 8h,
        7d, 2w; an unknown key, a zero or negative duration or (with `profiles_file`) an unknown profile is an
        error at start-up. Re-read when it changes (a z2jh `hub.extraFiles` ConfigMap update); a broken update
        is logged and the last good policies stay in force.""",
    ).tag(config=True)

    profiles_file = Unicode(
        "",
        help="""ProfileSpawner's profiles file (`c.ProfileSpawner.profiles_file`). With it, a policy for a profile
        that does not exist is refused at start-up, and a server whose `user_options` name no profile (started
        before ProfileSpawner recorded it) is judged under the policy of the profile ProfileSpawner would have
        chosen: the user's default (groups read with `read:users:groups`).""",
    ).tag(config=True)

    cull_every = Int(
        0,
        help="""Seconds between sweeps. 0: half the shortest idle timeout (or warning period) of any policy,
        between 1 and 600 seconds.""",
    ).tag(config=True)

    concurrency = Int(
        10,
        help="""Maximum number of stop/delete requests in flight at once. Unlike jupyterhub-idle-culler, whose
        stops run one after another, these really overlap; within this maximum the number adapts to the hub's
        answer times (`hub_latency_target`).""",
    ).tag(config=True)

    hub_latency_target = Float(
        0.025,
        help="""Seconds: during a sweep the culler samples the hub's `GET /hub/api/` answer time every 0.1 s
        (without its token), halves its stops in flight when the median of the last 1 s of samples is slower
        than this and adds one when it is under three quarters of it (never over `concurrency`), so that
        the hub stays responsive for its users. Either way the stops' starts are spread evenly over the time a
        stop takes, not sent in bursts. 0: always `concurrency` stops in flight.""",
    ).tag(config=True)

    dry_run = Bool(
        False,
        help="""Print what each sweep would warn, cull and delete, and why, but stop, delete and send nothing.""",
    ).tag(config=True)

    server_url = Unicode(
        "",
        help="""URL through which the culler reaches users' servers for `spare_busy_kernels` (their
        `/api/status` and `/api/kernels`), e.g. http://proxy-public in z2jh. The culler's own token is never sent
        there: for each check the hub mints a token owned by the server's user that reaches only that server and
        expires within a minute (deleted after the check); this needs the `tokens` scope. Required when a policy
        sets `spare_busy_kernels`.""",
    ).tag(config=True)

    public_url = Unicode(
        "",
        help="""The hub's public URL (e.g. https://hub.example.org), used in warnings as the link to the server;
        empty: warnings carry no link.""",
    ).tag(config=True)

    prometheus_url = Unicode(
        "",
        help="""Prometheus URL for `gpu_idle_below` policies (GPU use from NVIDIA's DCGM exporter), e.g.
        http://prometheus-server.monitoring. The pod is read from the server's KubeSpawner state (the
        `admin:server_state` scope). Required when a policy sets `gpu_idle_below`.""",
    ).tag(config=True)
    gpu_metric = Unicode("DCGM_FI_DEV_GPU_UTIL", help="GPU utilisation metric (percent) in Prometheus.").tag(
        config=True)
    gpu_pod_label = Unicode("pod", help="Label of `gpu_metric` holding the pod name.").tag(config=True)
    gpu_namespace_label = Unicode("namespace", help="Label of `gpu_metric` holding the pod's namespace.").tag(
        config=True)

    extender_url = Unicode(
        "",
        help="""The scheduler extender's consolidation listener (its `--consolidation-port`), e.g.
        http://hubfleet-scheduler-consolidation:8889, for profiles with `consolidate`: their idle servers on
        nearly empty nodes are stopped early so that the cluster autoscaler can remove the node. The culler reads
        node usage there (`GET /nodes`: the extender watches nodes and pods with its own ServiceAccount, so the
        culler holds no Kubernetes credentials) and tells it which nodes are being emptied (`PUT /draining`: new
        pods go elsewhere when they fit elsewhere). Required when a policy sets `consolidate`; when it does not
        answer, nobody is warned or stopped for consolidation that sweep.""",
    ).tag(config=True)

    pool_label = Unicode(
        "cloud.google.com/gke-nodepool",
        help="""Node label naming a node's pool (its autoscaling group), e.g. cloud.google.com/gke-nodepool (GKE),
        eks.amazonaws.com/nodegroup (EKS), kubernetes.azure.com/agentpool (AKS). Nodes without it form one pool
        "". Used with `pool_min_nodes`.""",
    ).tag(config=True)

    pool_min_nodes = Dict(
        {},
        help="""The cluster autoscaler's minimum size of each node pool, `{pool: nodes}` (as in the autoscaler's
        own configuration, which is not readable from the cluster): consolidation empties at most `live nodes -
        minimum` nodes of a pool, since the autoscaler would keep the others anyway. A pool not listed has no
        minimum applied.""",
    ).tag(config=True)

    @validate("pool_min_nodes")
    def _check_pool_min_nodes(self, proposal):
        for pool, size in proposal.value.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise TraitError(f"--pool-min-nodes {pool}: expected a number of nodes >= 0, got {size!r}")
        return proposal.value

    metrics_port = Int(
        -1,
        help="""Port to serve Prometheus metrics on (`/metrics`, and `/services/<name>/metrics` behind the hub).
        -1: the port of $JUPYTERHUB_SERVICE_URL when the hub gives the service a URL, else none; 0: none.""",
    ).tag(config=True)

    api_page_size = Int(0, help="""Users per page of `GET /users`; 0: 50 (the hub builds each page in one go on its
        event loop, so small pages keep its answers to everyone else short).""").tag(config=True)
    request_timeout = Float(60.0, help="Seconds before one hub API request is given up (then retried).").tag(
        config=True)
    retries = Int(4, help="Retries of a hub API request answered 429, 5xx or not at all, with exponential backoff.").tag(
        config=True)
    once = Bool(False, help="Run one sweep and exit (status 1 if any request failed).").tag(config=True)
    ssl_enabled = Bool(False, help="Whether the hub API uses internal SSL (JupyterHub's `internal_ssl`).").tag(
        config=True)
    internal_certs_location = Unicode(
        "internal-ssl", help="Where the internal-SSL certificates are (only with `ssl_enabled`).").tag(config=True)
    config_file = Unicode("", help="A Python config file (`c.CullerApp....`, `c.SMTPNotifier....`).").tag(
        config=True)

    aliases = {
        "url": "CullerApp.url",
        "timeout": "CullerApp.timeout",
        "max-age": "CullerApp.max_age",
        "cull-users": "CullerApp.cull_users",
        "cull-admin-users": "CullerApp.cull_admin_users",
        "cull-default-servers": "CullerApp.cull_default_servers",
        "cull-named-servers": "CullerApp.cull_named_servers",
        "remove-named-servers": "CullerApp.remove_named_servers",
        "cull-over-budget": "CullerApp.cull_over_budget",
        "policies-file": "CullerApp.policies_file",
        "profiles-file": "CullerApp.profiles_file",
        "cull-every": "CullerApp.cull_every",
        "concurrency": "CullerApp.concurrency",
        "hub-latency-target": "CullerApp.hub_latency_target",
        "server-url": "CullerApp.server_url",
        "public-url": "CullerApp.public_url",
        "prometheus-url": "CullerApp.prometheus_url",
        "extender-url": "CullerApp.extender_url",
        "metrics-port": "CullerApp.metrics_port",
        "api-page-size": "CullerApp.api_page_size",
        "request-timeout": "CullerApp.request_timeout",
        "retries": "CullerApp.retries",
        "ssl-enabled": "CullerApp.ssl_enabled",
        "internal-certs-location": "CullerApp.internal_certs_location",
        "config": "CullerApp.config_file",
        "smtp-host": "SMTPNotifier.host",
        "smtp-port": "SMTPNotifier.port",
        "smtp-from": "SMTPNotifier.sender",
        "smtp-to": "SMTPNotifier.to",
        "smtp-to-auth-state": "SMTPNotifier.to_auth_state",
        "webhook-url": "WebhookNotifier.url",
        "warn-hook": "HookNotifier.hook",
        "log-level": "Application.log_level",
    }
    flags = {
        "once": ({"CullerApp": {"once": True}}, once.help),
        "dry-run": ({"CullerApp": {"dry_run": True}}, dry_run.help),
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
        "hub_latency_target": (lambda v: v >= 0, "must be 0 or more seconds"),
        "metrics_port": (lambda v: -1 <= v <= 65535, "must be a port, 0 (none) or -1 (from JUPYTERHUB_SERVICE_URL)"),
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

    def load_profiles(self) -> tuple:
        """ProfileSpawner's parsed profiles from ``profiles_file`` (none without it). Raises CullConfigError."""
        if not self.profiles_file:
            return ()
        from ...spawners.profiles import parse_catalog  # noqa: PLC0415  (pure; one model of profiles)
        from ...yamlfile import load_yaml  # noqa: PLC0415

        try:
            doc = load_yaml(self.profiles_file, what="--profiles-file")
        except HubfleetError as e:
            raise CullConfigError(str(e)) from e
        try:
            return tuple(parse_catalog(doc).profiles)
        except HubfleetError as e:
            raise CullConfigError(f"--profiles-file {self.profiles_file}: {e}") from e

    def load_policies(self) -> tuple[dict[str, CullPolicy], CullPolicy]:
        """Read ``policies_file`` (or none: everything gets the default policy). Raises CullConfigError."""
        if not self.policies_file:
            return {}, self.base_policy()
        known = [p.slug for p in self.profiles] if self.profiles_file else None
        return load_policies(self.policies_file, default=self.base_policy(), known_profiles=known)

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
            policies, default_policy = self.load_policies()
            self._check_sources(policies, default_policy)
        except CullConfigError as e:
            log.error("%s; keeping the last good policies", e)
        else:
            self.policies, self.default_policy = policies, default_policy
            log.info("policies reloaded from %s: %s", self.policies_file, self._describe_policies())
        self._policies_mtime = mtime

    def _describe_policies(self) -> str:
        parts = [f"{slug}: {p.describe()}" for slug, p in self.policies.items()]
        return "; ".join(parts + [f"default: {self.default_policy.describe()}"])

    def _check_sources(self, policies, default_policy) -> None:
        every = [*policies.values(), default_policy]
        if any(p.spare_busy_kernels for p in every) and not self.server_url:
            raise CullConfigError("a policy sets spare_busy_kernels but --server-url is not set; give the URL "
                                  "through which users' servers are reached, e.g. --server-url=http://proxy-public")
        if any(p.gpu_idle_below is not None for p in every) and not self.prometheus_url:
            raise CullConfigError("a policy sets gpu_idle_below but --prometheus-url is not set; give the "
                                  "Prometheus that scrapes the DCGM exporter")
        if any(p.consolidate is not None for p in every) and not self.extender_url:
            raise CullConfigError("a policy sets consolidate but --extender-url is not set; give the scheduler "
                                  "extender's consolidation listener, e.g. "
                                  "--extender-url=http://hubfleet-scheduler-consolidation:8889")

    def effective_cull_every(self) -> float:
        if self.cull_every:
            return float(self.cull_every)
        every = [*self.policies.values(), self.default_policy]
        periods = [p.timeout for p in every if not p.never] + [p.warn_before for p in every if p.warn_before]
        return min(max(min(periods, default=1200) / 2, 1.0), 600.0)

    def initialize(self, argv=None, load: bool = True):
        """Parse the options; with ``load`` also read the profiles and policies files (:meth:`load_all`)."""
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
        if load:
            self.load_all()

    def load_all(self) -> None:
        """Read the profiles and policies files and check the notifiers; raises CullConfigError. (Slow on the
        stock hub image: jsonschema's format checkers take seconds to import there, so :func:`main` serves
        metrics first — the hub gives a managed service with a URL 10 s to answer.)"""
        self.profiles = self.load_profiles()
        self.policies, self.default_policy = self.load_policies()
        self._check_sources(self.policies, self.default_policy)
        self._policies_mtime = os.stat(self.policies_file).st_mtime_ns if self.policies_file else None
        self.notifiers = [cls(parent=self) for cls in NOTIFIER_CLASSES]
        try:
            check_hook(next(n for n in self.notifiers if isinstance(n, HookNotifier)))
        except NotifyError as e:
            raise CullConfigError(str(e)) from e

    # --- running -------------------------------------------------------------------------------------------------

    def make_api(self) -> HubAPI:
        ssl_options = None
        if self.ssl_enabled:
            loc = self.internal_certs_location
            ssl_options = make_ssl_context(f"{loc}/hub-internal/hub-internal.key",
                                           f"{loc}/hub-internal/hub-internal.crt", f"{loc}/hub-ca/hub-ca.crt")
        return HubAPI(self.url, os.environ.get("JUPYTERHUB_API_TOKEN", ""), request_timeout=self.request_timeout,
                      retries=self.retries, max_clients=self.concurrency + 2, ssl_options=ssl_options)

    def make_sweeper(self, api: HubAPI, metrics=None, out=print):
        from .activity import KernelProbe, PrometheusGPU  # noqa: PLC0415
        from .metrics import Metrics  # noqa: PLC0415
        from .sweep import Sweeper  # noqa: PLC0415

        kernels = KernelProbe(self.server_url, api, timeout=min(self.request_timeout, 10)) if self.server_url \
            else None
        gpu = PrometheusGPU(self.prometheus_url, metric=self.gpu_metric, pod_label=self.gpu_pod_label,
                            namespace_label=self.gpu_namespace_label) if self.prometheus_url else None
        from .nodes import NodeUsage  # noqa: PLC0415

        nodes = NodeUsage(self.extender_url, pool_label=self.pool_label, pool_min_nodes=self.pool_min_nodes,
                          timeout=min(self.request_timeout, 10)) if self.extender_url else None
        return Sweeper(self, api, metrics=metrics or Metrics(), notifiers=self.notifiers, kernels=kernels, gpu=gpu,
                       profiles=self.profiles, dry_run=self.dry_run, out=out, public_url=self.public_url,
                       nodes=nodes)

    async def missing_scopes(self, api: HubAPI) -> str:
        """What the culler's token lacks for the features configured, said with the fix; "" when nothing is
        missing or the hub cannot tell now (the sweeps then say what fails)."""
        if not self.server_url:
            return ""
        try:
            scopes = (await api.whoami()).get("scopes") or []
        except Exception as e:  # noqa: BLE001  (a start-up hint only: the hub may not be up yet)
            log.debug("could not read the token's scopes: %s", e)
            return ""
        if "tokens" in scopes:
            return ""
        return ("--server-url is set but the culler's token lacks the `tokens` scope, so the hub will not mint the "
                "per-server token of a busy-kernel check: every check fails and busy servers are judged by their "
                "last activity (culled when idle). Add `tokens` to the culler's role (culler_service(server_url=...) "
                "does); `access:servers` is no longer used")

    async def sweep(self, api: HubAPI):
        """One sweep with a fresh sweeper (tests and ``--once``); the service keeps one across sweeps."""
        sweeper = self.make_sweeper(api)
        return await sweeper.sweep()

    def _serve_metrics(self, metrics, state=None):
        port, prefix = self.metrics_port, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        host = "127.0.0.1"
        if port == -1:
            service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
            if not service_url:
                return None
            from urllib.parse import urlparse  # noqa: PLC0415

            parsed = urlparse(service_url)
            port, host = parsed.port or 80, parsed.hostname or "127.0.0.1"
        if not port:
            return None
        from tornado.httpserver import HTTPServer  # noqa: PLC0415

        from .metrics import metrics_app, service_access  # noqa: PLC0415

        authorize = service_access(self.url, os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                                   os.environ.get("JUPYTERHUB_SERVICE_NAME", "hubfleet-culler"))
        server = HTTPServer(metrics_app(metrics, prefix, state=state, authorize=authorize))
        server.listen(port, host)
        log.info("metrics on http://%s:%d/metrics (and %smetrics), state on /state", host, port, prefix)
        return server

    async def run(self, load: bool = False) -> int:
        from .metrics import Metrics  # noqa: PLC0415

        metrics = Metrics()
        sweeper = None  # made once the files are read; the state answers empty until then
        metrics_server = self._serve_metrics(
            metrics, state=lambda: sweeper.state() if sweeper is not None else {"warned": [], "culled": []})
        if load:
            try:
                await asyncio.to_thread(self.load_all)
            except HubfleetError as e:
                print(f"hubfleet-culler: {e}", file=sys.stderr)
                if metrics_server is not None:
                    metrics_server.stop()
                return 2
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        api = self.make_api()
        sweeper = self.make_sweeper(api, metrics)
        missing = await self.missing_scopes(api)
        if missing:
            log.error("%s", missing)
        probe = CertificateProbe(parent=self, registry=metrics.registry)  # HTTPS certificates, on the same /metrics
        probing = asyncio.ensure_future(probe.run(stopping)) if probe.hosts else None
        every = self.effective_cull_every()
        log.info("culling every %.0fs, up to %d stops at a time%s; policies: %s", every, self.concurrency,
                 " (dry run: nothing is stopped)" if self.dry_run else "", self._describe_policies())
        warned = [s for s, p in self.policies.items() if p.warn_before]
        if warned and not sweeper.notifiers:
            log.warning("profiles %s warn before culling, but no notifier is configured: warnings are only "
                        "logged", ", ".join(warned))
        trusting = [s for s, p in [*self.policies.items(), ("(default)", self.default_policy)]
                    if p.spare_busy_kernels and not p.max_age]
        if trusting:
            log.warning("policies %s spare busy kernels with no max_age: a server whose user makes it answer "
                        "'busy' is never culled; give them a max_age", ", ".join(trusting))
        failed, failures = False, 0
        try:
            while not stopping.is_set():
                self._refresh_policies()
                task = asyncio.ensure_future(sweeper.sweep())
                stop_wait = asyncio.ensure_future(stopping.wait())
                await asyncio.wait([task, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                if not task.done():  # SIGTERM mid-sweep: in-flight stops are the hub's to finish
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    log.info("stopping: sweep cancelled")
                    break
                stop_wait.cancel()
                delay = every
                try:
                    result = task.result()
                except Exception as e:  # noqa: BLE001  (the service outlives any one sweep)
                    failures += 1
                    failed = True
                    metrics.sweep_failures.inc()
                    delay = min(every, 2.0 ** min(failures, 10))
                    log.error("sweep failed: %s; retrying in %.0fs", explain(e) if str(e) else type(e).__name__,
                              delay)
                else:
                    failures = 0
                    log.info("%s", result.summary())
                    failed = bool(result.errors)
                if self.once:
                    break
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            if probing is not None:
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)
            api.close()
            if metrics_server is not None:
                metrics_server.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 1 if failed and self.once else 0

    def start(self, load: bool = False) -> int:
        return asyncio.run(self.run(load=load))


def main(argv: list[str] | None = None) -> int:
    app = CullerApp()
    try:
        app.initialize(argv, load=False)
        if not app.url:
            raise CullConfigError("--url: the hub API URL is not set; give --url or set JUPYTERHUB_API_URL "
                                  "(e.g. http://hub:8081/hub/api)")
        if not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise CullConfigError("JUPYTERHUB_API_TOKEN is not set: the culler needs its service's token")
    except (TraitError, HubfleetError) as e:
        print(f"hubfleet-culler: {e}", file=sys.stderr)
        return 2
    logging.getLogger("hubfleet").setLevel(app.log_level)
    if not logging.getLogger("hubfleet").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(app.log_format))
        logging.getLogger("hubfleet").addHandler(handler)
    return app.start(load=True)
