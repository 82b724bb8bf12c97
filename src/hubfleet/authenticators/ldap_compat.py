"""ldapauthenticator 2.0's options, read by ``HubfleetLDAPAuthenticator`` (pure: no ldap3, no JupyterHub).

A site running ``ldapauthenticator.LDAPAuthenticator`` switches with ``c.JupyterHub.authenticator_class =
"hubfleet-ldap"`` and keeps its ``c.LDAPAuthenticator.*`` lines (z2jh: ``hub.config.LDAPAuthenticator``). Every
ldapauthenticator 2.0 option is in :data:`OPTIONS`: mapped onto hubfleet's options (with its value translated) or
refused with what to use instead. :func:`translate` returns the hubfleet settings and one log line per option
("ldapauthenticator's X is read as Y"); the table in docs/authenticators.md is :func:`option_table`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import HubfleetError


class LdapCompatError(HubfleetError, ValueError):
    """An ldapauthenticator option hubfleet cannot honour; the message names it and what to use instead."""


#: ldapauthenticator's ``tls_strategy`` values -> hubfleet's.
TLS_STRATEGIES = {"before_bind": "starttls", "on_connect": "ldaps", "insecure": "insecure"}

#: option -> (hubfleet option(s) it becomes, how) — the documentation of :func:`translate`, one line per option.
OPTIONS: dict[str, tuple[str, str]] = {
    "server_address": ("server_urls", "with server_port and tls_strategy: ``ldap[s]://ADDRESS:PORT``"),
    "server_port": ("server_urls", "the URL's port (default 636 with on_connect, else 389)"),
    "use_ssl": ("tls_strategy", "True -> ``ldaps`` (ldapauthenticator: on_connect); False has no effect"),
    "tls_strategy": ("tls_strategy", "before_bind -> starttls, on_connect -> ldaps, insecure -> insecure"),
    "tls_kwargs": ("tls_ca_file", "``ca_certs_file`` -> tls_ca_file; ``validate=CERT_REQUIRED`` accepted; any "
                                  "other key refused (certificates are always validated)"),
    "bind_dn_template": ("bind_dn_templates", "a string or a list; blank entries dropped; with lookup_dn not "
                                              "used (hubfleet binds as the DN the lookup found)"),
    "allowed_groups": ("allowed_groups, group_search_base, group_dns",
                       "group DNs -> their first RDN value as hub group names; group_dns = the DNs (no other "
                       "group counts); group_search_base = the DNs' common parent, so that the group search finds "
                       "them"),
    "group_search_filter": ("group_search_filter", "``{userdn}`` -> ``{dn}``, ``{uid}`` -> ``{username}``"),
    "group_attributes": ("-", "accepted at its default; other values refused (membership is group_search_filter)"),
    "valid_username_regex": ("username_pattern", "the same regular expression"),
    "lookup_dn": ("user_search_base", "True: search mode (hubfleet searches when bind_dn_templates is empty)"),
    "user_search_base": ("user_search_base", "the same"),
    "user_attribute": ("username_attribute", "the same attribute (uid, sAMAccountName)"),
    "lookup_dn_search_filter": ("user_search_filter", "``{login_attr}`` -> ``{username_attribute}``, "
                                                      "``{login}`` -> ``{username}``"),
    "lookup_dn_search_user": ("search_bind_dn", "the same DN"),
    "lookup_dn_search_password": ("search_bind_password", "the same password"),
    "lookup_dn_user_dn_attribute": ("-", "not needed (hubfleet binds as the DN it found); refused with "
                                         "use_lookup_dn_username = True when it differs from user_attribute"),
    "use_lookup_dn_username": ("-", "False accepted; True refused unless the attribute is user_attribute "
                                    "(the hub name is the typed name, checked against username_attribute)"),
    "escape_userdn": ("-", "no effect (removed in ldapauthenticator 2.0; hubfleet always escapes)"),
    "search_filter": ("user_search_filter", "with lookup_dn: ANDed into the user search (``{userattr}`` -> "
                                            "``{username_attribute}``); without lookup_dn refused"),
    "attributes": ("-", "no effect (only what ldapauthenticator fetched with search_filter)"),
    "auth_state_attributes": ("auth_state_attributes", "a list: each attribute in auth_state under its own "
                                                       "name and in ``auth_state['user_attributes']`` as a list"),
}

_DEFAULT_GROUP_ATTRIBUTES = ["member", "uniqueMember", "memberUid"]


@dataclass
class Translation:
    settings: dict = field(default_factory=dict)  # hubfleet option -> value
    notes: list[str] = field(default_factory=list)  # one log line per translated option


def unescape_value(value: str) -> str:
    """An RFC 4514 attribute value without its escapes (``a\\,b`` and ``a\\2Cb`` -> ``a,b``)."""
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1 : i + 3]
            if len(nxt) == 2 and all(c in "0123456789abcdefABCDEF" for c in nxt):
                out.append(chr(int(nxt, 16)))
                i += 3
                continue
            out.append(value[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_dn(dn: str) -> list[tuple[str, str]]:
    """``cn=a\\,b,ou=g`` -> ``[("cn", "a,b"), ("ou", "g")]`` (RFC 4514 escapes; no multi-valued RDNs)."""
    rdns, start, i = [], 0, 0
    while i <= len(dn):
        if i < len(dn) and dn[i] == "\\":
            i += 2
            continue
        if i == len(dn) or dn[i] == ",":
            rdns.append(dn[start:i])
            start = i + 1
        i += 1
    out = []
    for rdn in rdns:
        attr, eq, value = rdn.partition("=")
        if not eq or not attr.strip():
            raise LdapCompatError(f"{dn!r} is not a DN (expected attr=value,attr=value)")
        out.append((attr.strip(), unescape_value(value.strip())))
    return out


def _join(rdns: list[tuple[str, str]]) -> str:
    def esc(v: str) -> str:
        return "".join("\\" + c if c in ',+"\\<>;=' else c for c in v)

    return ",".join(f"{a}={esc(v)}" for a, v in rdns)


def common_parent(dns: Iterable[str]) -> str:
    """The longest DN every one of ``dns``' parents ends with (compared case-insensitively)."""
    parents = [split_dn(dn)[1:] for dn in dns]
    if not parents:
        return ""
    shortest = min(len(p) for p in parents)
    n = 0
    while n < shortest:
        keys = {(p[-1 - n][0].lower(), p[-1 - n][1].lower()) for p in parents}
        if len(keys) != 1:
            break
        n += 1
    return _join(parents[0][len(parents[0]) - n:]) if n else ""


def _values(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def translate(ldapauth: Mapping, *, own: Iterable[str] = (), passthrough: Iterable[str] = ()) -> Translation:
    """Translate a ``c.LDAPAuthenticator`` section into hubfleet settings.

    ``own``: options also set on the hubfleet class (a clash is an error: keep one). ``passthrough``: JupyterHub
    Authenticator options (allowed_users, admin_users, allow_all, ...), which keep their name and value.
    Raises :class:`LdapCompatError` naming the option for anything hubfleet cannot honour.
    """
    out = Translation()
    own = set(own)
    passthrough = set(passthrough)
    opts = dict(ldapauth)

    def put(target: str, value, source: str, how: str = "") -> None:
        if target in own:
            raise LdapCompatError(
                f"c.LDAPAuthenticator.{source} and c.HubfleetLDAPAuthenticator.{target} are both set; keep one")
        out.settings[target] = value
        out.notes.append(f"ldapauthenticator's {source} is read as {target}" + (f" ({how})" if how else ""))

    def note(source: str, why: str) -> None:
        out.notes.append(f"ldapauthenticator's {source} is accepted: {why}")

    unknown = sorted(k for k in opts if k not in OPTIONS and k not in passthrough)
    if unknown:
        raise LdapCompatError(f"c.LDAPAuthenticator.{unknown[0]} is not an ldapauthenticator 2.0 option "
                              f"hubfleet knows", fix="remove it, or see docs/authenticators.md for the table")
    for k in sorted(k for k in opts if k in passthrough):
        put(k, opts.pop(k), k, "a JupyterHub Authenticator option")

    strategy = opts.pop("tls_strategy", None)
    if strategy is not None:
        name = getattr(strategy, "name", strategy)  # ldapauthenticator.TlsStrategy or its name
        if name not in TLS_STRATEGIES:
            raise LdapCompatError(f"c.LDAPAuthenticator.tls_strategy {strategy!r} is not one of "
                                  f"{sorted(TLS_STRATEGIES)}")
        strategy = TLS_STRATEGIES[name]
    use_ssl = opts.pop("use_ssl", None)
    if use_ssl:
        strategy = "ldaps"
        note("use_ssl", "True means tls_strategy = 'ldaps' (on_connect)")
    elif use_ssl is False:
        note("use_ssl", "False has no effect")
    strategy = strategy or "starttls"
    if "tls_strategy" in ldapauth or use_ssl:
        put("tls_strategy", strategy, "tls_strategy", f"{strategy!r}")

    address = opts.pop("server_address", None)
    port = opts.pop("server_port", None)
    if address:
        scheme = "ldaps" if strategy == "ldaps" else "ldap"
        if "://" in address:
            url = address
        else:
            url = f"{scheme}://{address}:{port or (636 if strategy == 'ldaps' else 389)}"
        put("server_urls", [url], "server_address/server_port", url)
    elif port:
        raise LdapCompatError("c.LDAPAuthenticator.server_port is set without server_address")

    tls_kwargs = dict(opts.pop("tls_kwargs", None) or {})
    if tls_kwargs:
        ca = tls_kwargs.pop("ca_certs_file", None)
        validate = tls_kwargs.pop("validate", 2)  # ssl.CERT_REQUIRED
        if validate != 2:
            raise LdapCompatError("c.LDAPAuthenticator.tls_kwargs validate other than ssl.CERT_REQUIRED is "
                                  "refused: hubfleet always validates certificates",
                                  fix="give the CA with tls_kwargs ca_certs_file (or HubfleetLDAPAuthenticator."
                                      "tls_ca_file), or tls_strategy 'insecure' for a directory on the same host")
        if tls_kwargs:
            raise LdapCompatError(f"c.LDAPAuthenticator.tls_kwargs {sorted(tls_kwargs)} have no hubfleet "
                                  f"equivalent", fix="only ca_certs_file (-> tls_ca_file) is read")
        if ca:
            put("tls_ca_file", ca, "tls_kwargs['ca_certs_file']")

    templates = [t for t in _values(opts.pop("bind_dn_template", None)) if t]
    lookup = bool(opts.pop("lookup_dn", False))
    if templates and lookup:
        note("bind_dn_template", "with lookup_dn it is not used: hubfleet binds as the DN the lookup found "
                                 "(the entry whose password ldapauthenticator's template checked)")
    elif templates:
        put("bind_dn_templates", templates, "bind_dn_template")
    if lookup:
        note("lookup_dn", "users are searched for (user_search_base) and bound as the DN found")

    base = opts.pop("user_search_base", None)
    if base:
        put("user_search_base", base, "user_search_base")
    elif lookup:
        raise LdapCompatError("c.LDAPAuthenticator.lookup_dn needs user_search_base")
    user_attr = opts.pop("user_attribute", None)
    if user_attr:
        put("username_attribute", user_attr, "user_attribute")
    user_filter = opts.pop("lookup_dn_search_filter", None)
    search_filter = opts.pop("search_filter", None)
    if user_filter or search_filter:
        flt = (user_filter or "({login_attr}={login})").replace("{login_attr}", "{username_attribute}") \
            .replace("{login}", "{username}")
        if search_filter:
            if not lookup:
                raise LdapCompatError("c.LDAPAuthenticator.search_filter without lookup_dn has no hubfleet "
                                      "equivalent", fix="set lookup_dn = True (and user_search_base), or use "
                                                        "allowed_groups / allowed_users")
            extra = search_filter.replace("{userattr}", "{username_attribute}")
            flt = f"(&{flt}{extra})"
        put("user_search_filter", flt, "lookup_dn_search_filter/search_filter", flt)
    if opts.pop("attributes", None):
        note("attributes", "no effect (ldapauthenticator only fetched them with search_filter)")
    user = opts.pop("lookup_dn_search_user", None)
    if user:
        put("search_bind_dn", user, "lookup_dn_search_user")
    password = opts.pop("lookup_dn_search_password", None)
    if password:
        put("search_bind_password", password, "lookup_dn_search_password")
    dn_attr = opts.pop("lookup_dn_user_dn_attribute", None)
    if opts.pop("use_lookup_dn_username", False) and dn_attr and dn_attr != (user_attr or "uid"):
        raise LdapCompatError(
            f"c.LDAPAuthenticator.use_lookup_dn_username = True with lookup_dn_user_dn_attribute {dn_attr!r}: "
            f"hubfleet's hub name is the typed name, checked against username_attribute",
            fix="map names with c.Authenticator.username_map, or set user_attribute to the attribute holding "
                "the name users type")
    if dn_attr:
        note("lookup_dn_user_dn_attribute", "not needed (hubfleet binds as the DN it found)")
    if opts.pop("escape_userdn", None) is not None:
        note("escape_userdn", "no effect (removed in ldapauthenticator 2.0; hubfleet always escapes)")

    regex = opts.pop("valid_username_regex", None)
    if regex:
        put("username_pattern", regex, "valid_username_regex")

    group_filter = opts.pop("group_search_filter", None)
    if group_filter:
        put("group_search_filter", group_filter.replace("{userdn}", "{dn}").replace("{uid}", "{username}"),
            "group_search_filter")
    group_attributes = opts.pop("group_attributes", None)
    if group_attributes is not None and list(group_attributes) != _DEFAULT_GROUP_ATTRIBUTES:
        raise LdapCompatError(f"c.LDAPAuthenticator.group_attributes {list(group_attributes)!r}: hubfleet decides "
                              f"membership with group_search_filter only",
                              fix="put the attributes into group_search_filter, e.g. (member={userdn})")
    groups = _values(opts.pop("allowed_groups", None))
    if groups:
        rdns = [split_dn(dn)[0] for dn in groups]
        attrs = {a.lower() for a, _v in rdns}
        if len(attrs) != 1:
            raise LdapCompatError(f"c.LDAPAuthenticator.allowed_groups name their groups by different attributes "
                                  f"{sorted(attrs)}", fix="list groups named by one attribute (cn)")
        names = [v for _a, v in rdns]
        if len({n.lower() for n in names}) != len(names):
            raise LdapCompatError(f"c.LDAPAuthenticator.allowed_groups {groups!r} has two groups with the same "
                                  f"name in different places: hub group names would clash")
        parent = common_parent(groups)
        if not parent:
            raise LdapCompatError(f"c.LDAPAuthenticator.allowed_groups {groups!r} share no parent DN")
        put("allowed_groups", set(names), "allowed_groups", f"hub groups {sorted(names)}")
        put("group_search_base", parent, "allowed_groups", f"groups are searched under {parent}")
        put("group_dns", list(groups), "allowed_groups", "only these groups count")
        if attrs != {"cn"}:
            put("group_name_attribute", rdns[0][0], "allowed_groups")

    attrs_list = opts.pop("auth_state_attributes", None)
    if attrs_list:
        put("auth_state_attributes", list(attrs_list), "auth_state_attributes",
            "auth_state[attr] and auth_state['user_attributes'][attr]")
    if opts:
        raise AssertionError(f"untranslated ldapauthenticator options {sorted(opts)}")  # OPTIONS is incomplete
    return out


def option_table() -> str:
    """The Markdown table of :data:`OPTIONS` (docs/authenticators.md)."""
    rows = ["| ldapauthenticator 2.0 | hubfleet | how |", "|---|---|---|"]
    rows += [f"| `{k}` | {'`' + t + '`' if t != '-' else '-'} | {how} |" for k, (t, how) in OPTIONS.items()]
    return "\n".join(rows)
