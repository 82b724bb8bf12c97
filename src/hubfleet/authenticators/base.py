"""The hubfleet Authenticator base: policy traits, group sync, and the composition of ordered backends.

Shape (after oauthenticator): :class:`HubfleetBaseAuthenticator` owns everything that is the same for every backend
— username normalisation, blank-password refusal, allow/block/admin decisions, group mapping and group sync —
and calls two small hooks a backend implements:

- ``authenticate_password(username, password) -> BackendResult | None`` (password backends), and
- ``lookup_user(username) -> BackendResult | None`` (re-read groups at refresh, without a password).

Each backend (``ldap.py``, ``local.py``, ``oidc.py``) is a complete Authenticator on its own.
:class:`HubfleetAuthenticator` composes several of them in order: the login form tries the password backends in
turn (the first that authenticates wins) and every OIDC backend gets its own "Sign in with ..." button with
``/hub/oauth_login/<name>`` and ``/hub/oauth_callback/<name>`` handlers. The policy of the authenticator the hub
runs (the composite, or a backend used on its own) is the one applied; a ``backends[]`` entry may set the
per-backend policy options in :data:`PER_BACKEND_POLICY` for its own users (see ``composite.py``).

One login path for every backend (:meth:`HubfleetBaseAuthenticator.get_authenticated_user`): the username is
normalised once (:meth:`~HubfleetBaseAuthenticator.canonical_username` before a password backend is asked, or
oauthenticator's ``normalize_username`` call for an OIDC claim), the backend's :class:`BackendResult` goes through
the policy once (:meth:`~HubfleetBaseAuthenticator.auth_model`: :meth:`~HubfleetBaseAuthenticator.rules_for` the
backend, then :func:`.policy.evaluate`), then JupyterHub's ``post_auth_hook`` and the identity binding.

Identity binding: each hub user is bound to the ``(backend, subject)`` of their first login — the backend's name
and its stable identifier for the account (:attr:`BackendResult.subject`: the LDAP entry's entryUUID / objectGUID /
DN, the OIDC ``sub``, the local account name). A later login whose backend or subject differs is refused on the login
page; an admin re-links with ``hubfleet users unbind NAME`` (the next login binds again). The authenticator the hub
runs owns the bindings, ``self.bindings`` (a :class:`~.binding.BindingStore` in the hub's database, `db_url`);
the backends of a composite share their owner's.

A backend that overrides ``authenticate`` (OIDC) puts the subject in the :class:`BackendResult` and builds the
model with ``self.owner.auth_model(result, auth_state)`` (None: refused). The owner's ``get_authenticated_user``
then checks and records the binding for every login path, once (it reads ``hubfleet_backend`` / ``hubfleet_subject`` from the
model's auth_state, which :meth:`auth_model` fills). At refresh, a backend checks with
``await self.owner.bindings.check(user.name, backend, subject, login=False)`` (False: log the user out).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any as TAny
from urllib.parse import urlparse

from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LogoutHandler
from tornado import web
from traitlets import Any, Bool, Dict, Float, Integer, Set, Unicode, default, validate

from . import policy
from .binding import BindingStore, BindingStoreError
from ..errors import HubfleetError


class HubfleetAuthError(HubfleetError):
    """Base of every error raised by hubfleet's authenticators."""


class ConfigError(HubfleetAuthError, ValueError):
    """A configuration value is wrong; the message names the option, the value and the fix."""


class BackendUnavailable(HubfleetAuthError):
    """The backend's server could not be reached or did not answer in time (the user is not at fault)."""

    def __init__(self, label: str, detail: str):
        super().__init__(f"{label}: {detail}")
        self.label = label
        self.detail = detail


class BackendMisconfigured(HubfleetAuthError):
    """The backend answered but refused *our* configuration (e.g. the service account's password is wrong)."""

    def __init__(self, label: str, detail: str, fix: str = ""):
        super().__init__(f"{label}: {detail}", fix=fix or None)
        self.label = label
        self.detail = detail


class LoginRefused(HubfleetAuthError):
    """A login refused for a reason the user must be told (shown on the login page as is; holds no secret)."""


#: Policy options a ``HubfleetAuthenticator.backends[]`` entry may set for the users of that backend only; every
#: other policy option (allowed_users, admin_users, blocked_users, allow_all, username_*) is refused in an entry.
PER_BACKEND_POLICY = ("allowed_groups", "admin_groups", "group_mapping", "group_mapping_only", "group_prefix",
                      "lowercase_groups")


def hub_app(obj):
    """The JupyterHub application the configurable ``obj`` runs in (None in tools and unit tests)."""
    while obj is not None:
        if hasattr(obj, "public_url") and hasattr(obj, "hub_prefix"):
            return obj
        obj = getattr(obj, "parent", None)
    return None


def public_origin(app) -> str:
    """``scheme://host[:port]`` of ``app``'s ``JupyterHub.public_url``; "" when it is not set. URLs the hub sends
    out (OAuth callbacks, links in mails) are built from it, never from a request's Host header."""
    if app is None or not app.public_url:
        return ""
    u = urlparse(app.public_url)
    return f"{u.scheme}://{u.netloc}"


def trust_admin_groups_trait(default: bool) -> Bool:
    """``trust_admin_groups``, declared by each backend with its own default (True: ldap, local; False: oidc)."""
    return Bool(
        default,
        config=True,
        help=f"""Inside ``hubfleet`` (the composite): trust this backend for admin: its users named in the
        composite's `admin_users`, or in its `admin_groups`, are admins. Default {default} for this kind of
        backend. Off, its users named in `admin_users` are refused, and a user is an admin only through this
        backend's own `admin_groups` (its ``backends[]`` entry or class config) or
        an admin flag it reports itself (the local accounts file): group names sent by a less-trusted provider
        or directory never make admins through admin groups meant for another backend. Without the composite
        this option has no effect (the backend's `admin_groups` are its own).""",
    )


@dataclass
class BackendResult:
    """What a backend knows about an authenticated (or looked-up) user, before policy is applied."""

    name: str
    groups: list[str] = field(default_factory=list)
    admin: bool | None = None  # an admin flag from the backend itself (local accounts file), else None
    attributes: dict[str, TAny] = field(default_factory=dict)  # goes into auth_state
    backend: str = ""
    # the backend's stable identifier for this account (LDAP entry DN or objectGUID, OIDC ``sub``, local name):
    # a hub user is bound to (backend, subject) at first login and a later login with another one is refused
    subject: str = ""


class HubfleetBaseAuthenticator(Authenticator):
    """Policy shared by every hubfleet backend: normalisation, allow/block/admin, group mapping and sync."""

    #: Shown in messages: "The login service (LDAP) is unavailable ...".
    backend_label = "hubfleet"
    #: True when the backend checks a username and password from the login form.
    password_backend = True

    # ---- policy traits -------------------------------------------------------------------------------------
    allowed_groups = Set(
        config=True,
        help="""Hub group names (after `group_mapping` / `group_prefix`) whose members may log in.

        A user in at least one of these groups is allowed, in addition to `allowed_users` and admins.
        Membership is read from the backend at every login and refresh, so removing a user from the group
        in the directory takes effect at their next login or refresh.
        """,
    ).tag(allow_config=True)

    admin_groups = Set(
        config=True,
        help="""Hub group names (after mapping) whose members are JupyterHub admins.

        When set, a user who leaves every admin group loses admin status at their next login or refresh
        (unless they are in `admin_users`).
        """,
    )

    group_mapping = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""Rename backend groups to hub groups, e.g. ``{"cn-jupyter-users": "users"}``.

        Map a group to the empty string to drop it. With `group_mapping_only`, unmapped groups are dropped.
        Applied before `group_prefix`; `allowed_groups` and `admin_groups` name the resulting hub groups.
        """,
    )

    group_mapping_only = Bool(
        False,
        config=True,
        help="""Only sync groups listed in `group_mapping`; every other backend group is ignored.""",
    )

    group_prefix = Unicode(
        "",
        config=True,
        help="""A prefix put in front of every synced hub group name (after `group_mapping`), e.g. ``"ldap-"``.""",
    )

    lowercase_groups = Bool(
        False,
        config=True,
        help="""Lowercase backend group names before mapping (directories often compare group names
        case-insensitively).""",
    )

    username_lowercase = Bool(
        True,
        config=True,
        help="""Lowercase usernames typed into the login form or returned by a backend.""",
    )

    username_max_length = Integer(
        policy.DEFAULT_MAX_USERNAME_LENGTH,
        config=True,
        help="""Refuse usernames longer than this many characters before any backend is asked.""",
    )

    @default("username_pattern")
    def _default_username_pattern(self):
        return policy.DEFAULT_USERNAME_PATTERN

    @validate("username_pattern")
    def _validate_username_pattern(self, proposal):
        err = policy.check_pattern(proposal["value"])
        if err:
            raise ConfigError(f"{type(self).__name__}.username_pattern: {err}")
        return proposal["value"]

    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    @default("allow_existing_users")
    def _default_allow_existing_users(self):
        # JupyterHub defaults this to True when allowed_users is set and then adds every user who ever logged in
        # to allowed_users, so leaving an allowed group would never revoke access. oauthenticator uses False too.
        return False

    refresh_outage_grace = Float(
        0.0,
        config=True,
        help="""Seconds a session is kept when the backend cannot be reached at refresh, counted from the user's
        last successful check (login or refresh) by this hub process. 0 (default): fail closed — a user whose
        backend is unreachable at refresh must log in again (which succeeds once it is back). A user the backend
        answers is *not found* is always logged out.
        """,
    )

    misconfigured_message = Unicode(
        "The login service ({label}) is not configured correctly; the hub's administrators must fix it.",
        config=True,
        help="""Message shown on the login page when a backend refuses the hub's own configuration (e.g. the
        LDAP service account's password is wrong). The details are logged once, as a configuration error.""",
    )

    refresh_groups = Bool(
        True,
        config=True,
        help="""Re-read the user's groups (and admin status) from the backend when JupyterHub refreshes auth.

        JupyterHub refreshes a user's auth data when it is older than `auth_refresh_age` (seconds).
        A user who was removed from a group loses it; a user who is no longer allowed, or whom the backend they
        are bound to no longer finds (also after a hub restart), must log in again. False: refresh asks no
        backend, so removed users keep their session until the cookie expires.
        """,
    )

    unavailable_message = Unicode(
        "The login service ({label}) is unavailable right now; try again in a minute.",
        config=True,
        help="""Message shown on the login page when a backend server is down or does not answer in time.

        ``{label}`` is replaced by the backend's label (e.g. ``LDAP``).
        """,
    )

    executor_threads = Integer(
        8,
        config=True,
        help="""Size of the thread pool running this backend's blocking calls (LDAP operations, bcrypt checks).

        Logins beyond this many at once wait for a free thread; the hub's event loop is never blocked.
        """,
    )

    login_timeout = Float(
        30.0,
        config=True,
        help="""Upper bound (seconds) on one backend's work for one login, including time queued for a thread.

        Past it the login page shows `unavailable_message`. Backends have their own, shorter, network timeouts.
        """,
    )

    executor = Any(help="The bounded thread pool (created on first use, sized by `executor_threads`).")

    @default("executor")
    def _default_executor(self):
        return ThreadPoolExecutor(self.executor_threads, thread_name_prefix=f"hubfleet-{self.backend_label.lower()}")

    # ---- identity bindings (binding.py) -------------------------------------------------------------------
    db_url = Unicode(
        "",
        config=True,
        help="""The database holding hubfleet's tables (the identity bindings), as a SQLAlchemy URL like
        `JupyterHub.db_url`. Empty (default): the hub's own database — `JupyterHub.db_url`, with
        `JupyterHub.db_kwargs` — where hubfleet keeps its own ``hubfleet_*`` tables beside JupyterHub's.
        """,
    )

    db_timeout = Float(
        5.0,
        config=True,
        help="""Upper bound (seconds) on connecting to the database and on each of hubfleet's statements there.
        When the database does not answer in time, the login is refused ("Sign-in is unavailable"): nobody
        signs in without the binding check.""",
    )

    subject_store_file = Unicode(
        "hubfleet-subjects.json",
        config=True,
        help="""A JSON subject store written by an earlier hubfleet, imported into the database once (names
        already bound in the database keep their binding; the file is left in place and read only at the first
        login after each hub start). Relative paths are in the hub's working directory. Empty: import nothing.
        """,
    )

    policy_owner = Any(
        None,
        help="The authenticator whose policy applies (the composite when this backend is composed, else itself).",
    )

    backend_name = Unicode(help="The name of this backend inside a composite (also its URL part for OIDC).")

    @default("backend_name")
    def _default_backend_name(self):
        return self.backend_label.lower()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._origin: dict[str, str] = {}  # username -> backend name of the last login (cache; logout)
        self._verified: dict[str, float] = {}  # username -> last successful check (login or refresh); the owner's
        self._policy_overrides: set[str] = set()  # PER_BACKEND_POLICY options set in this backend's entry
        self.check_config()
        self.bindings = self.policy_owner.bindings if self.policy_owner is not None else BindingStore.of(self)

    # ---- configuration checks --------------------------------------------------------------------------
    def check_config(self) -> None:
        """Check option combinations once at start-up; raise :class:`ConfigError` naming the option and value."""
        cls = type(self).__name__
        if self.username_pattern:
            err = policy.check_pattern(self.username_pattern)
            if err:
                raise ConfigError(f"{cls}.username_pattern: {err}")
        if self.username_max_length < 1:
            raise ConfigError(f"{cls}.username_max_length must be at least 1, not {self.username_max_length}.")
        if self.executor_threads < 1:
            raise ConfigError(f"{cls}.executor_threads must be at least 1, not {self.executor_threads}.")
        if self.login_timeout <= 0:
            raise ConfigError(f"{cls}.login_timeout must be positive, not {self.login_timeout}.")
        if self.refresh_outage_grace < 0:
            raise ConfigError(f"{cls}.refresh_outage_grace must be >= 0, not {self.refresh_outage_grace}.")
        if self.db_timeout <= 0:
            raise ConfigError(f"{cls}.db_timeout must be positive, not {self.db_timeout}.")
        if (self.allowed_groups or self.admin_groups) and not self.manage_groups:
            raise ConfigError(
                f"{cls}.allowed_groups/admin_groups need {cls}.manage_groups = True "
                f"(it is False): groups are only known when they are synced."
            )
        if self.username_lowercase:
            for trait in ("allowed_users", "blocked_users", "admin_users"):
                names = getattr(self, trait)
                lowered = {n.strip().lower() for n in names}
                if lowered != names:
                    setattr(self, trait, lowered)

    @property
    def owner(self) -> HubfleetBaseAuthenticator:
        return self.policy_owner or self

    # ---- normalisation ------------------------------------------------------------------------------------
    def canonical_username(self, raw: str) -> str | None:
        """The normalised username, or None when the input must be refused before any backend call.

        Inside a composite, the composite's normalisation applies to every backend.
        """
        if self.policy_owner is not None and self.policy_owner is not self:
            return self.policy_owner.canonical_username(raw)
        return policy.normalize_username(
            raw,
            lowercase=self.username_lowercase,
            username_map=self.username_map,
            pattern=self.username_regex or self.username_pattern or None,
            max_length=self.username_max_length,
        )

    def normalize_username(self, username):
        name = self.canonical_username(username)
        # JupyterHub then calls validate_username(), which refuses the empty string.
        return name if name is not None else ""

    def validate_username(self, username):
        if not super().validate_username(username):
            return False
        return self.canonical_username(username) == username

    # ---- the policy, applied to a BackendResult -------------------------------------------------------------
    def backend_by_name(self, name):
        return self if name == self.backend_name else None

    def rules_for(self, backend: str) -> policy.Rules:
        """The policy for users of ``backend``: the hub-wide sets, each option of :data:`PER_BACKEND_POLICY` from
        the backend's own configuration where it sets one, else this authenticator's. The hub's `admin_users` and
        `admin_groups` only through a backend with `trust_admin_groups`; an untrusted backend's user named in
        `admin_users` is refused. An unknown backend gets no group rights (fail closed)."""
        child = self.backend_by_name(backend)
        own = set(PER_BACKEND_POLICY) if child is self else (child._policy_overrides if child is not None else set())
        trusted = child is self or bool(getattr(child, "trust_admin_groups", False))

        def value(option: str):
            return getattr(child if option in own else self, option)

        admin_groups = value("admin_groups") if "admin_groups" in own else self.admin_groups if trusted else ()
        return policy.Rules(
            allow_all=self.allow_all, allowed_users=frozenset(self.allowed_users),
            blocked_users=frozenset(self.blocked_users), admin_users=frozenset(self.admin_users if trusted else ()),
            reserved_users=frozenset(() if trusted else self.admin_users),
            allowed_groups=frozenset(value("allowed_groups") if child is not None else ()),
            admin_groups=frozenset(admin_groups), group_mapping=dict(value("group_mapping")),
            group_mapping_only=value("group_mapping_only"), group_prefix=value("group_prefix"),
            lowercase_groups=value("lowercase_groups"),
        )

    def auth_model(self, result: BackendResult, auth_state: dict | None = None, *,
                   backend_allows: str = "") -> dict | None:
        """The policy step of every login and refresh, once: ``result`` (whose ``name`` is the already normalised
        hub username) under :meth:`rules_for` its backend, one :func:`policy.evaluate` call. JupyterHub's auth
        model (name, admin, groups, auth_state), or None when the policy refuses the user (the reason is
        logged)."""
        backend = result.backend or self.backend_name
        groups, decision = policy.evaluate(self.rules_for(backend), username=result.name,
                                           backend_groups=result.groups, backend_admin=result.admin,
                                           backend_allows=backend_allows)
        if not decision.allowed:
            self.log.warning("user:%s denied (%s): %s", result.name, backend, decision.reason)
            return None
        self.log.info("user:%s allowed (%s): %s", result.name, backend, decision.reason)
        state = dict(auth_state or {})
        state.update(result.attributes)
        state["hubfleet_backend"] = backend
        state["hubfleet_subject"] = result.subject
        state["backend_groups"] = sorted(set(result.groups))
        model = {"name": result.name, "admin": decision.admin, "auth_state": state}
        if self.manage_groups:
            model["groups"] = groups
        return model

    async def get_authenticated_user(self, handler, data):
        """The hub's login entry point, one path for every backend: :meth:`authenticate` (the name normalised
        once, the backend asked, :meth:`auth_model` deciding once), ``post_auth_hook``, the identity binding.
        (JupyterHub's own would normalise again and ask ``check_allowed`` for a decision already made.)"""
        model = await self.authenticate(handler, data)
        if not model:
            return None
        model.setdefault("user_info", None)
        model = await self.run_post_auth_hook(handler, model)
        if model and self.policy_owner is None:  # the hub's own authenticator: every login path comes here
            state = model.get("auth_state") or {}
            await self.bindings.check(model["name"], state.get("hubfleet_backend") or self.backend_name,
                                      state.get("hubfleet_subject") or "", login=True,
                                      previous_subject=state.get("hubfleet_previous_subject") or "")
            self._verified[model["name"]] = time.monotonic()  # a login is a successful check
        return model

    # ---- the password flow -----------------------------------------------------------------------------------
    async def authenticate(self, handler, data):
        data = data or {}
        raw = data.get("username", "")
        username = self.canonical_username(raw)
        if username is None:
            self.log.warning("login refused: invalid username (%d chars)", len(raw) if isinstance(raw, str) else -1)
            return None
        if not policy.password_acceptable(data.get("password")):
            self.log.warning("user:%s login refused: blank or unusable password", username)
            return None
        if username in self.owner.blocked_users:
            self.log.warning("user:%s login refused: in blocked_users", username)
            return None
        try:
            result = await self.authenticate_password(username, data["password"])
        except BackendUnavailable as e:
            self.log.error("user:%s login failed: %s unavailable: %s", username, e.label, e.detail)
            raise web.HTTPError(503, self.unavailable_message.format(label=e.label)) from e
        except BackendMisconfigured as e:  # logged (once) where it was detected
            raise web.HTTPError(503, self.misconfigured_message.format(label=e.label)) from e
        except LoginRefused as e:
            self.log.warning("user:%s login refused: %s", username, e.message)
            raise web.HTTPError(403, e.message) from e
        if result is None:
            return None
        model = self.auth_model(result)
        if model:
            self._origin[result.name] = result.backend or self.backend_name
        return model

    async def authenticate_password(self, username: str, password: str) -> BackendResult | None:
        """Check ``password`` for the (normalised) ``username``. Override in password backends."""
        return None

    async def lookup_user(self, username: str) -> BackendResult | None:
        """Look ``username`` up without a password (for refresh). None when the backend does not know them."""
        return None

    async def run_blocking(self, func, *args):
        """Run a blocking call on the bounded executor, bounded by `login_timeout`."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, func, *args)
        try:
            return await asyncio.wait_for(fut, self.login_timeout)
        except asyncio.TimeoutError as e:
            raise BackendUnavailable(self.backend_label, f"no answer within login_timeout={self.login_timeout}s") from e

    # ---- refresh -------------------------------------------------------------------------------------------
    @staticmethod
    def _prepare_handler_for_refresh(handler) -> None:
        """Work around JupyterHub 6.1: on a cookie-authenticated request, ``refresh_auth`` reads
        ``handler._token_authenticated``, which only token authentication sets; when refresh_user returns False
        that raises AttributeError ("Failed to get current user") instead of asking for a new login."""
        if handler is not None and not hasattr(handler, "_token_authenticated"):
            handler._token_authenticated = False

    def _outage(self, name: str, e: HubfleetAuthError) -> bool:
        """Refresh during a backend outage: fail closed unless the last good check is within the grace."""
        last = self.owner._verified.get(name)
        if self.refresh_outage_grace and last is not None and time.monotonic() - last <= self.refresh_outage_grace:
            self.log.warning("user:%s refresh: %s; session kept (refresh_outage_grace=%ss)", name, e,
                             self.refresh_outage_grace)
            return True
        self.log.warning("user:%s refresh: %s; login required (fail closed)", name, e)
        return False

    def _warn_if_tokenless(self, label: str) -> None:
        """At start-up, for a backend whose sessions are re-validated with the provider's tokens (OAuth)."""
        if not self.enable_auth_state and self.refresh_groups and self.auth_refresh_age:
            self.log.warning("%s: without enable_auth_state no tokens are kept, so sessions cannot be re-validated: "
                             "users must sign in again every auth_refresh_age (%ss). Set enable_auth_state = True "
                             "(with JUPYTERHUB_CRYPT_KEY), or refresh_groups = False to keep sessions unchecked.",
                             label, self.auth_refresh_age)

    def _tokenless_refresh(self, name: str, label: str) -> bool:
        """Refresh of a session the provider must be asked about when no tokens are kept (no
        ``enable_auth_state``): nothing to re-validate with, so the user logs in again unless ``refresh_groups``
        is off (fail closed). One rule for every OAuth backend, hubfleet's own and wrapped ones."""
        if not self.refresh_groups:
            return True
        self.log.info("user:%s: %s keeps no tokens without enable_auth_state; login required", name, label)
        return False

    async def refresh_user(self, user, handler=None):
        self._prepare_handler_for_refresh(handler)
        if not self.refresh_groups:
            return True
        try:
            result = await self.lookup_user(user.name)
        except (BackendUnavailable, BackendMisconfigured) as e:
            return self._outage(user.name, e)
        except BindingStoreError as e:
            self.log.error("user:%s refresh: bindings unusable (%s); login required", user.name, e)
            return False
        if result is None:
            # after a restart nothing is remembered in memory: a user no backend finds is logged out
            self.log.warning("user:%s is not found by %s; login required", user.name, self.backend_label)
            return False
        backend = result.backend or self.backend_name
        if not await self.bindings.check(user.name, backend, result.subject, login=False,
                                         previous_subject=result.attributes.get("hubfleet_previous_subject", "")):
            return False
        self.owner._verified[user.name] = time.monotonic()
        model = self.auth_model(result)
        if not model:
            return False
        if not self.enable_auth_state:
            model.pop("auth_state", None)
        return model

    # ---- login page ------------------------------------------------------------------------------------------
    def oidc_buttons(self) -> list[tuple[str, str]]:
        """(label, url relative to the hub base) per OIDC backend; empty for a password backend."""
        return []

    def composed_handlers(self) -> list[tuple]:
        """Extra handlers this backend needs when it runs inside a composite (OIDC login/callback)."""
        return []

    def get_custom_html(self, base_url):
        from .login_page import render

        return render(self, base_url)

    def login_page_parts(self, base_url: str) -> dict[str, str]:
        """HTML for the login page: ``fields`` (inside the password form), ``links`` (below it)."""
        return {}


class HubfleetLogoutHandler(LogoutHandler):
    """Logout; users who came through an OIDC backend are sent on to that provider's logout URL."""

    async def handle_logout(self):
        user = self.current_user
        self._hubfleet_redirect = None
        if user is None:
            return
        owner = self.authenticator
        backend_name = getattr(owner, "_origin", {}).get(user.name)
        if backend_name is None and hasattr(owner, "bindings"):
            try:
                bound = await owner.bindings.lookup(user.name)
            except BindingStoreError:
                bound = None
            backend_name = bound.backend if bound else None
        backend = owner.backend_by_name(backend_name) if hasattr(owner, "backend_by_name") else owner
        if backend is not None and hasattr(backend, "provider_logout_url"):
            self._hubfleet_redirect = await backend.provider_logout_url(self)
        self.clear_cookie("oauthenticator-state")

    async def render_logout_page(self):
        if getattr(self, "_hubfleet_redirect", None):
            self.redirect(self._hubfleet_redirect)
            return
        await super().render_logout_page()
