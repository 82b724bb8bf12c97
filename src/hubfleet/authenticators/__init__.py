"""Authenticators: one hubfleet Authenticator composing LDAP/AD (ldap3), OIDC (oauthenticator) and local-account
backends, with allow/block lists, admin and allowed groups, and group sync into JupyterHub groups.

Entry points (``c.JupyterHub.authenticator_class = ...``):

- ``hubfleet``        — :class:`HubfleetAuthenticator`, ordered backends under one policy;
- ``hubfleet-ldap``   — :class:`HubfleetLDAPAuthenticator` on its own;
- ``hubfleet-local``  — :class:`HubfleetLocalAuthenticator` on its own (YAML accounts file, ``hubfleet users``);
- ``hubfleet-oidc``   — :class:`HubfleetOIDCAuthenticator` on its own (GenericOAuthenticator + discovery, JWKS).

Every name is imported lazily, so that ``import hubfleet.authenticators`` stays cheap and the pure
:mod:`.policy` can be imported without JupyterHub or tornado (tests/unit/test_purity.py checks it).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    "BackendResult": ".base",
    "BackendUnavailable": ".base",
    "ConfigError": ".base",
    "HubfleetAuthError": ".base",
    "HubfleetAuthenticator": ".composite",
    "BackendMisconfigured": ".base",
    "LoginRefused": ".base",
    "HubfleetBaseAuthenticator": ".base",
    "HubfleetLDAPAuthenticator": ".ldap",
    "HubfleetLocalAuthenticator": ".local",
    "HubfleetOIDCAuthenticator": ".oidc",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
