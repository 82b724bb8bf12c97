"""Small LDAP helpers of the LDAP backend: result-code meanings, DN and filter escaping, subject values."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

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


#: Attributes holding an entry's stable identifier, looked for in this order when `subject_attribute` is empty:
#: OpenLDAP / RFC 4530 ``entryUUID``, Active Directory ``objectGUID``.
STABLE_ID_ATTRIBUTES = ("entryUUID", "objectGUID")


def _raw_values(raw_attributes: Mapping, name: str) -> list:
    for key, values in raw_attributes.items():
        if key.lower() == name.lower():
            return list(values) if isinstance(values, (list, tuple)) else [values]
    return []


def entry_subject(dn: str, raw_attributes: Mapping, subject_attribute: str = "") -> str:
    """The subject an LDAP account is bound by (one function for login, refresh and the binding's upgrade).

    With ``subject_attribute``: its single value ("" when the entry has none or several: no subject, the login is
    refused). Without: the entry's ``entryUUID`` or ``objectGUID`` when it has one (a re-created account with the
    same DN gets a new one), else its normalised DN. ``objectGUID``'s 16 bytes read as a UUID (little-endian
    fields, as Active Directory shows it)."""
    for name in ([subject_attribute] if subject_attribute else STABLE_ID_ATTRIBUTES):
        values = _raw_values(raw_attributes, name)
        if len(values) == 1 and values[0] not in (b"", ""):
            value = values[0]
            if isinstance(value, (bytes, bytearray)):
                if name.lower() == "objectguid" and len(value) == 16:
                    return str(uuid.UUID(bytes_le=bytes(value)))
                try:
                    return bytes(value).decode("utf-8").strip()
                except UnicodeDecodeError:
                    return bytes(value).hex()
            return str(value).strip()
        if subject_attribute:
            return ""
    return normalize_dn(dn)


def previous_subject(dn: str, subject: str) -> str:
    """The subject the same account was bound by under the earlier default (its normalised DN) when ``subject``
    is another one, else "": a binding to it is moved to ``subject`` once."""
    key = normalize_dn(dn)
    return key if subject and subject != key else ""


def dn_under(dn: str, base: str) -> bool:
    """True when ``dn`` is strictly below ``base`` (compared as normalised DNs)."""
    key, base_key = normalize_dn(dn), normalize_dn(base)
    return bool(base_key) and key.endswith("," + base_key)


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
