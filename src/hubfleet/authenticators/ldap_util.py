"""Small LDAP helpers of the LDAP backend: result-code meanings, DN and filter escaping, subject values."""

from __future__ import annotations

import uuid

from ldap3.core import exceptions as lexc
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from .ldap_compat import unescape_value

# result codes a server uses to say it cannot serve right now (searches)
SEARCH_UNAVAILABLE_CODES = {51, 52, 53, 80}  # busy, unavailable, unwillingToPerform, other
# on a bind only busy/unavailable are an outage: 389-DS/FreeIPA answer 53 for an inactivated account, and 80
# ("other") is a per-account refusal too
BIND_UNAVAILABLE_CODES = {51, 52}


def bind_outcome(ok: bool, code: int | None) -> str:
    """``"ok"``, ``"unavailable"`` (try again later) or ``"refused"`` (wrong password, inactive account, ...)."""
    if ok:
        return "ok"
    return "unavailable" if code in BIND_UNAVAILABLE_CODES else "refused"


def subject_value(value) -> str:
    """An attribute value as a subject string: objectGUID's 16 bytes as a UUID, other bytes as hex."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if isinstance(value, (bytes, bytearray)):
        return str(uuid.UUID(bytes_le=bytes(value))) if len(value) == 16 else bytes(value).hex()
    return str(value).strip() if value not in (None, "") else ""


def normalize_dn(dn: str) -> str:
    """A comparison key for a DN: attribute types and values lowercased, no spaces around separators."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
        return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _sep in parts)
    except (lexc.LDAPInvalidDnError, ValueError):
        return dn.strip().lower()


def rdn_value(dn: str) -> str:
    """The value of a DN's first RDN (``cn=data-science,ou=groups,...`` -> ``data-science``), unescaped."""
    try:
        _attr, value, _sep = parse_dn(dn, escape=False, strip=True)[0]
    except (lexc.LDAPInvalidDnError, ValueError, IndexError):
        return dn
    return unescape_value(value)


def render_filter(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders in an LDAP filter template with RFC 4515-escaped values."""
    return template.format(**{k: escape_filter_chars(v) for k, v in values.items()})


def render_dn(template: str, username: str) -> str:
    """Fill ``{username}`` in a DN template with the RFC 4514-escaped name."""
    return template.format(username=escape_rdn(username))


def values_of(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
