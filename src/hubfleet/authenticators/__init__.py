"""Authenticators: one hubfleet Authenticator composing LDAP/AD (ldap3), OIDC (oauthenticator) and local-account
backends, with allow/block lists, admin and allowed groups, and group sync into JupyterHub groups. (Issue #3.)

Entry points (``c.JupyterHub.authenticator_class = ...``):

- ``hubfleet``        — :class:`HubfleetAuthenticator`, ordered backends under one policy;
- ``hubfleet-ldap``   — :class:`HubfleetLDAPAuthenticator` on its own;
- ``hubfleet-local``  — :class:`HubfleetLocalAuthenticator` on its own (YAML accounts file, ``hubfleet users``);
- ``hubfleet-oidc``   — :class:`HubfleetOIDCAuthenticator` on its own (GenericOAuthenticator + discovery, JWKS).

The backend classes are imported lazily so that ``import hubfleet.authenticators`` stays cheap.
"""

from .base import (
    BackendResult,
    BackendUnavailable,
    ConfigError,
    HubfleetAuthenticator,
    HubfleetAuthError,
    HubfleetBaseAuthenticator,
)

__all__ = [
    "BackendResult",
    "BackendUnavailable",
    "ConfigError",
    "HubfleetAuthError",
    "HubfleetAuthenticator",
    "HubfleetBaseAuthenticator",
    "HubfleetLDAPAuthenticator",
    "HubfleetLocalAuthenticator",
    "HubfleetOIDCAuthenticator",
]

_LAZY = {
    "HubfleetLDAPAuthenticator": ".ldap",
    "HubfleetLocalAuthenticator": ".local",
    "HubfleetOIDCAuthenticator": ".oidc",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
