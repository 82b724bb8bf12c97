"""Who may see whose servers on the admin page, decided from the scopes of the viewer's OAuth token.

A viewer whose token holds an unfiltered ``admin:servers`` (JupyterHub's admins) or the page's custom scope (an
operator grants it to support staff through a role) sees every server; anyone else sees their own only. A scope
with a filter (``admin:servers!user=alice``) does not widen the view: fail closed.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_SCOPE = "admin:servers"
DEFAULT_VIEW_SCOPE = "custom:hubfleet-admin-page:view"


@dataclass(frozen=True)
class Viewer:
    name: str
    sees_all: bool

    def may_see(self, owner: str) -> bool:
        return self.sees_all or owner == self.name


def viewer(user_model: dict, view_scope: str = DEFAULT_VIEW_SCOPE) -> Viewer:
    """The :class:`Viewer` for a user model from HubOAuth (``name``, ``scopes``)."""
    scopes = set(user_model.get("scopes") or ())
    return Viewer(str(user_model.get("name") or ""), bool(scopes & {ADMIN_SCOPE, view_scope}))
