"""``HubfleetAuthenticator``: ordered backends (LDAP, local accounts, OIDC, any other Authenticator) under one policy.

The password backends are tried in order at the login form; each OIDC or OAuth backend has its own button and
handlers. An entry of any other kind (a ``jupyterhub.authenticators`` entry point or an import path) is wrapped by
:class:`~.foreign.ForeignBackend`.
Refresh asks the backend the user is bound to (the bindings, ``binding.py``), so it works the same after a
hub restart. A ``backends[]`` entry may set the options of :data:`~.base.PER_BACKEND_POLICY` for its own users;
any other policy option in an entry is refused at start-up.
"""

from __future__ import annotations

import importlib
import inspect
import re

from traitlets import Dict, List, Unicode, Union

from .base import (PER_BACKEND_POLICY, BackendMisconfigured, BackendUnavailable, ConfigError,
                   HubfleetBaseAuthenticator, HubfleetLogoutHandler, LoginRefused)
from .binding import BindingStoreError
from .foreign import WRAPPER_OPTIONS, ForeignBackend, resolve

BACKEND_KINDS = {
    "ldap": "hubfleet.authenticators.ldap:HubfleetLDAPAuthenticator",
    "local": "hubfleet.authenticators.local:HubfleetLocalAuthenticator",
    "oidc": "hubfleet.authenticators.oidc:HubfleetOIDCAuthenticator",
}

#: Options of the whole hub: set them on HubfleetAuthenticator, never in one backend's entry.
_HUB_WIDE = set(HubfleetBaseAuthenticator.class_trait_names(config=True)) - set(PER_BACKEND_POLICY) - {
    "executor_threads", "login_timeout", "unavailable_message", "misconfigured_message"}


def own_policy_options(composite, child, spec: dict) -> set[str]:
    """The options of :data:`PER_BACKEND_POLICY` that ``child``'s own configuration sets: its ``backends[]`` entry
    (``spec``), the config sections only it reads (``c.HubfleetOIDCAuthenticator``, ``c.GenericOAuthenticator``,
    ...; not ``c.Authenticator``, which configures the composite too), and translated ldapauthenticator options."""
    shared = set(type(composite).mro())
    sections = [k.__name__ for k in type(child).mro() if k not in shared]
    configured = set(spec) | set(getattr(child, "compat_options", ()))
    for name in sections:
        if name in composite.config:
            configured |= set(composite.config[name])
    return {k for k in PER_BACKEND_POLICY if k in configured}


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class HubfleetAuthenticator(HubfleetBaseAuthenticator):
    """One Authenticator composing ordered backends (LDAP, local accounts, OIDC) under one policy.

    Configure the backends in order; each entry is a kind (``"ldap"``, ``"local"``, ``"oidc"``) or a dict with
    ``kind``, an optional ``name`` and any of that backend's options::

        c.JupyterHub.authenticator_class = "hubfleet"
        c.HubfleetAuthenticator.backends = [
            "ldap",                                    # options from c.HubfleetLDAPAuthenticator
            {"kind": "local", "users_file": "/srv/hub/users.yaml"},
            {"kind": "oidc", "name": "keycloak", "login_service": "Keycloak", "issuer": "https://...",
             "group_prefix": "kc-", "admin_groups": set()},   # per-backend policy for Keycloak's users
        ]
    """

    backend_label = "hubfleet"

    backends = List(
        Union([Unicode(), Dict()]),
        default_value=["local"],
        config=True,
        help="""The ordered backends. Each entry is a kind (``"ldap"``, ``"local"``, ``"oidc"``, any other
        ``jupyterhub.authenticators`` entry point such as ``"github"`` or ``"google"``, or an import path
        ``"package.module:Class"``) or a dict with ``kind``, an optional ``name`` (unique; used in OAuth URLs
        ``/hub/oauth_login/<name>``) and that backend's options, which override the class config
        (``c.HubfleetLDAPAuthenticator...``, ``c.GitHubOAuthenticator...``).

        The login form tries the password backends (ldap, local) in this order; the first that accepts the
        username and password wins, so list the authoritative directory first. Each OIDC backend gets a
        "Sign in with <login_service>" button, and so does each OAuthenticator class (its callback:
        its ``oauth_callback_url``, default ``<public_url>/hub/oauth_callback/<name>``). Each hub user is bound to
        the backend of their first login.

        An entry (or the backend's class config) may set `allowed_groups`, `admin_groups`, `group_mapping`,
        `group_mapping_only`, `group_prefix` and `lowercase_groups` for the users of that backend only (e.g. a
        ``group_prefix`` so that an IdP's groups can never satisfy the directory's `admin_groups`). Other
        policy options (`allowed_users`, `admin_users`, `blocked_users`, `allow_all`, `username_*`, ...) are
        hub-wide: set them on HubfleetAuthenticator; in an entry they are refused at start-up.
        """,
    )

    _children = List()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._children = self._build_backends()

    def _build_backends(self):
        children = []
        seen: set[str] = set()
        shared = {
            "enable_auth_state": self.enable_auth_state,
            "manage_groups": self.manage_groups,
            "login_timeout": self.login_timeout,
        }
        for i, entry in enumerate(self.backends):
            spec = {"kind": entry} if isinstance(entry, str) else dict(entry)
            kind = spec.pop("kind", None)
            if not isinstance(kind, str) or not kind:
                raise ConfigError(f"HubfleetAuthenticator.backends[{i}]: set 'kind' ({sorted(BACKEND_KINDS)}, an "
                                  f"entry point of jupyterhub.authenticators, or 'package.module:Class').")
            name = spec.pop("name", kind)
            where = f"HubfleetAuthenticator.backends[{i}] ({kind} {name!r})"
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise ConfigError(
                    f"HubfleetAuthenticator.backends[{i}]: name {name!r} must be lowercase letters, digits, - or _."
                )
            if name in seen:
                raise ConfigError(
                    f"HubfleetAuthenticator.backends[{i}]: name {name!r} is used twice; "
                    f"give each backend a unique 'name'."
                )
            seen.add(name)
            extra: dict = {}
            if kind in BACKEND_KINDS:
                cls = _load(BACKEND_KINDS[kind])
                options, known = spec, set(cls.class_trait_names(config=True))
            else:  # any other Authenticator class, wrapped (foreign.py); the class's options go to it
                cls, inner_cls = ForeignBackend, resolve(kind, where)
                ours = set(PER_BACKEND_POLICY) | WRAPPER_OPTIONS
                extra = {"inner_class": inner_cls, "inner_options": {k: v for k, v in spec.items() if k not in ours}}
                options, spec = spec, {k: v for k, v in spec.items() if k in ours}
                known = set(inner_cls.class_trait_names(config=True)) | ours
            unknown = sorted(set(options) - known)
            if unknown:
                raise ConfigError(
                    f"{where}: unknown option(s) {unknown}; "
                    f"see `python -m hubfleet.config.docgen` for {cls.__name__}'s options."
                    if not extra else f"{where}: unknown option(s) {unknown}; "
                    f"{extra['inner_class'].__name__} has no such configurable options."
                )
            hub_wide = sorted(set(options) & _HUB_WIDE - set(shared))
            if hub_wide:
                raise ConfigError(
                    f"{where}: {hub_wide} apply to the whole hub, not one backend; set them on "
                    f"HubfleetAuthenticator (an entry may set only {list(PER_BACKEND_POLICY)})."
                )
            try:
                child = cls(parent=self, policy_owner=self, backend_name=name, **shared, **spec, **extra)
            except ConfigError:
                raise
            except Exception as e:  # traitlets raises TraitError / TypeError for unknown or badly typed options
                raise ConfigError(f"{where}: {e}") from e
            child._policy_overrides = own_policy_options(self, child, spec)
            if child._policy_overrides:
                self.log.info("backend %s: own policy options %s", name, sorted(child._policy_overrides))
            if (self.admin_groups or self.admin_users) and not child.trust_admin_groups:
                self.log.info("backend %s: the hub's admin_groups %s do not make its users admins, and its users "
                              "named in admin_users %s are refused (set \"trust_admin_groups\": True on its entry "
                              "if it is trusted to name admins)", name, sorted(self.admin_groups),
                              sorted(self.admin_users))
            children.append(child)
        if not children:
            raise ConfigError("HubfleetAuthenticator.backends is empty; configure at least one backend.")
        routes: dict[str, str] = {}
        for child in children:
            for path, *_ in child.composed_handlers():  # (path, handler) or (path, handler, kwargs)
                if path in routes:
                    raise ConfigError(
                        f"HubfleetAuthenticator.backends: {routes[path]!r} and {child.backend_name!r} both use "
                        f"/hub{path}; give each OAuth backend its own oauth_callback_url (each registered with "
                        f"its provider) or its own name.")
                routes[path] = child.backend_name
        return children

    @property
    def password_backend(self):  # type: ignore[override]
        return any(c.password_backend for c in self._children)

    def backend_by_name(self, name):
        for child in self._children:
            if child.backend_name == name:
                return child
        return None

    async def authenticate(self, handler, data):
        backend = getattr(handler, "hubfleet_backend", None)
        if backend is not None:  # an OIDC callback
            model = await backend.authenticate(handler, data)
            if model:
                self._origin[model["name"]] = backend.backend_name
            return model
        if not self.password_backend:
            return None
        return await super().authenticate(handler, data)

    async def authenticate_password(self, username, password):
        unavailable: list[BackendUnavailable | BackendMisconfigured] = []
        refused: list[LoginRefused] = []
        for child in self._children:
            if not child.password_backend:
                continue
            try:
                result = await child.authenticate_password(username, password)
            except (BackendUnavailable, BackendMisconfigured) as e:
                self.log.error("user:%s backend %s unavailable: %s", username, child.backend_name, e.detail)
                unavailable.append(e)
                continue
            except LoginRefused as e:
                refused.append(e)
                continue
            if result is not None:
                result.backend = child.backend_name
                child._origin[result.name] = child.backend_name
                return result
        if unavailable:
            # nobody accepted the password and at least one backend could not be asked: say so
            raise unavailable[0]
        if refused:
            raise refused[0]
        return None

    async def lookup_user(self, username):
        bound = await self.bindings.lookup(username)
        if bound is not None:
            child = self.backend_by_name(bound.backend)
            if child is None:
                self.log.warning("user:%s is bound to backend %r, which is no longer configured", username,
                                 bound.backend)
                return None
            children = [child]
        else:  # logged in before bindings existed: the first backend that finds them binds them
            children = [c for c in self._children if c.password_backend]
        for child in children:
            result = await child.lookup_user(username)
            if result is not None:
                result.backend = child.backend_name
                return result
        return None

    async def refresh_user(self, user, handler=None):
        self._prepare_handler_for_refresh(handler)
        try:
            bound = await self.bindings.lookup(user.name)
        except BindingStoreError as e:
            self.log.error("user:%s refresh: bindings unusable (%s); login required", user.name, e)
            return False
        origin = bound.backend if bound else self._origin.get(user.name)
        if origin is None and self.enable_auth_state:
            state = await user.get_auth_state() or {}
            origin = state.get("hubfleet_backend")
        child = self.backend_by_name(origin) if origin else None
        if child is not None and (not child.password_backend or getattr(child, "owns_refresh", False)):
            return await child.refresh_user(user, handler)
        return await super().refresh_user(user, handler)

    async def pre_spawn_start(self, user, spawner):
        """The bound backend's own ``pre_spawn_start`` (an OAuthenticator's, for a wrapped class)."""
        try:
            bound = await self.bindings.lookup(user.name)
        except BindingStoreError:
            bound = None
        child = self.backend_by_name(bound.backend) if bound else None
        result = child.pre_spawn_start(user, spawner) if child is not None else None
        if inspect.isawaitable(result):
            await result

    def oidc_buttons(self):
        return [b for c in self._children for b in c.oidc_buttons()]

    def login_page_parts(self, base_url):
        parts: dict[str, str] = {}
        for child in self._children:
            for k, v in child.login_page_parts(base_url).items():
                parts[k] = parts.get(k, "") + v
        return parts

    def get_handlers(self, app):
        handlers = [("/login", _login_handler()), ("/logout", HubfleetLogoutHandler)]
        for child in self._children:
            handlers.extend(child.composed_handlers())
        return handlers


def _login_handler():
    from .accounts_handlers import HubfleetLoginHandler

    return HubfleetLoginHandler
