"""Pre-flight checks of ``hubfleet values migrate``: what the migrated hub would refuse at start-up, found before the
rollout rather than by a hub that does not come back.

Each check runs the part's own pure validator, so the rule lives in one place: ldapauthenticator options go
through ``hubfleet.authenticators.ldap_compat.translate`` (the alias table ``hubfleet-ldap`` reads
``c.LDAPAuthenticator`` with), and ``singleuser.profileList`` goes through ``hubfleet.spawners.profiles.parse_catalog``
(what ProfileSpawner parses KubeSpawner's ``profile_list`` with). If the installed hubfleet has no such validator,
the finding says so: the hub then checks at start-up. Pure: those validators import no I/O framework.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping

from ..errors import HubfleetError, explain

# (kind, key, text), as Migration.add takes them
Add = Callable[[str, str, str], None]


def check_ldap_options(options: Mapping, add: Add, *, authenticator_options: Iterable[str] | None = None) -> None:
    """Report how ``hubfleet-ldap`` reads a ``hub.config.LDAPAuthenticator`` section, or what it would refuse.

    ``authenticator_options``: JupyterHub's Authenticator option names (``allowed_users``, ``admin_users``, ...),
    which keep their names in that section. Without them, every option the alias table does not know is taken as one
    (the hub still refuses a misspelt option at start-up).
    """
    key = "hub.config.LDAPAuthenticator"
    try:
        from ..authenticators import ldap_compat  # noqa: PLC0415  (pure; only for an LDAP site)
    except ImportError:
        add("kept", key, "not checked here (this hubfleet has no ldap_compat table); hubfleet-ldap checks the "
                         "options when the hub starts")
        return
    known = set(ldap_compat.OPTIONS)
    passthrough = set(authenticator_options) if authenticator_options is not None else set(options) - known
    try:
        translation = ldap_compat.translate(options, passthrough=passthrough)
    except HubfleetError as e:
        add("decide", key, f"hubfleet-ldap would not start: {explain(e)}; change it before the rollout")
        return
    for note in translation.notes:  # option names and their new names; never a password's value
        add("kept", key, note)


def check_profile_list(profile_list: list, add: Add) -> None:
    """Report a ``singleuser.profileList`` entry that ProfileSpawner (like KubeSpawner) would refuse."""
    key = "singleuser.profileList"
    try:
        from ..spawners.profiles import parse_catalog  # noqa: PLC0415  (pure)
    except ImportError:
        parse_catalog = None
    if parse_catalog is None or "profile_list" not in inspect.signature(parse_catalog).parameters:
        add("kept", key, "not checked here (this hubfleet's ProfileSpawner does not parse profile_list yet)")
        return
    try:
        catalog = parse_catalog([], profile_list=profile_list)
    except HubfleetError as e:
        add("decide", key, f"ProfileSpawner would refuse it: {explain(e)}")
        return
    add("kept", key, f"checked: {len(catalog.profiles)} profile(s) parse as ProfileSpawner parses them")
