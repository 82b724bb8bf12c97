"""LDAP / Active Directory backend (ldap3), never blocking the hub's event loop.

- Servers: one or more URLs tried in order (failover); a server that failed is tried last for
  `server_retry_interval` seconds. StartTLS by default, LDAPS, or an explicit ``insecure`` mode; certificates are
  validated against `tls_ca_file` (or the system store).
- Users: bound by DN template(s) (``uid={username},ou=people,...``; the name is escaped with ``escape_rdn``) or
  found by a search with a service account (the filter value is escaped with ``escape_filter_chars``), then bound
  with the user's password. The entry's `username_attribute` must equal the typed name after normalisation.
- Groups: a group search (groupOfNames ``member``, groupOfUniqueNames ``uniqueMember``, posixGroup ``memberUid``)
  and/or the user's ``memberOf``, only groups under `group_search_base` (or listed in `group_dns`); nested groups by a breadth-first walk with a depth limit and cycle detection, or
  by Active Directory's in-chain matching rule (``1.2.840.113556.1.4.1941``) when `ad_in_chain` is on.
- Identity: the subject a hub user is bound to (base.py) is the entry's ``entryUUID`` / ``objectGUID`` when it has
  one, else its normalised DN, or the value of `subject_attribute` (:func:`.ldap_util.entry_subject`) — so a second
  `bind_dn_templates` entry or a re-created account with the same DN cannot silently become an existing hub user.
- Search mode binds for unknown names too (against a DN that does not exist), so they cost the same round trips as
  a wrong password.
- ldapauthenticator 2.0's options (``c.LDAPAuthenticator.*``) are read through ``ldap_compat.py``.
- Blocking ldap3 calls run on the authenticator's bounded thread pool; each worker thread keeps (reuses) one
  connection for user binds and one bound as the service account. Connect and operation timeouts bound every call.
"""

from __future__ import annotations

import math
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field

import ldap3
from ldap3.core import exceptions as lexc
from jupyterhub.auth import Authenticator
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, Union, validate

from . import ldap_compat, ldap_groups
from .ldap_util import (  # noqa: F401 -- the DN helpers stay importable from here
    SEARCH_UNAVAILABLE_CODES, STABLE_ID_ATTRIBUTES, bind_outcome, entry_subject, normalize_dn, previous_subject,
    rdn_value, render_dn, render_filter, values_of,
)
from .base import (BackendMisconfigured, BackendResult, BackendUnavailable, ConfigError, HubfleetBaseAuthenticator,
                   trust_admin_groups_trait)

# ldap3 errors that mean "the connection or server is unusable" rather than "wrong credentials".
_CONNECTION_ERRORS = (lexc.LDAPCommunicationError, lexc.LDAPStartTLSError, lexc.LDAPSSLConfigurationError,
                      lexc.LDAPResponseTimeoutError, lexc.LDAPMaximumRetriesError, ssl.SSLError, OSError)
@dataclass
class _Entry:
    dn: str
    attributes: dict
    raw: dict = field(default_factory=dict)  # raw_attributes (bytes), for the subject


class HubfleetLDAPAuthenticator(HubfleetBaseAuthenticator):
    """Authenticate against LDAP or Active Directory; groups from group search and/or memberOf, nested groups."""

    backend_label = "LDAP"
    #: options set from ``c.LDAPAuthenticator`` (ldapauthenticator's names), which count as this backend's own
    compat_options: frozenset[str] = frozenset()

    trust_admin_groups = trust_admin_groups_trait(True)

    server_urls = List(
        Unicode(),
        config=True,
        help="""LDAP server URLs, tried in order (failover),
        e.g. ``["ldap://ldap1.example.org", "ldap://ldap2.example.org"]``.

        Use ``ldap://`` with `tls_strategy` ``starttls`` (default) or ``insecure``, and ``ldaps://`` with ``ldaps``.
        A port may be given (``ldap://ldap1:3890``). A server that fails is tried last for `server_retry_interval`.
        """,
    )

    tls_strategy = Enum(
        ["starttls", "ldaps", "insecure", "before_bind", "on_connect"],
        default_value="starttls",
        config=True,
        help="""How the connection is protected: ``starttls`` (default; upgrade an ``ldap://`` connection),
        ``ldaps`` (TLS from the first byte, ``ldaps://`` URLs) or ``insecure`` (no TLS at all: passwords travel
        in clear text; only for a directory on the same host or in tests). ldapauthenticator's names are
        accepted too: ``before_bind`` = ``starttls``, ``on_connect`` = ``ldaps``.
        """,
    )

    @validate("tls_strategy")
    def _validate_tls_strategy(self, proposal):
        return ldap_compat.TLS_STRATEGIES.get(proposal["value"], proposal["value"])

    tls_ca_file = Unicode(
        "",
        config=True,
        help="""PEM file of the CA(s) that signed the servers' certificates. Empty: the system's trust store.
        Certificates are always validated (and their host name checked) unless `tls_strategy` is ``insecure``.
        """,
    )

    connect_timeout = Float(
        5.0,
        config=True,
        help="""Seconds to wait for a TCP connection to one server before trying the next.""",
    )

    operation_timeout = Float(
        10.0,
        config=True,
        help="""Seconds to wait for any one answer from the server (TLS handshake, bind, search); rounded up to
        whole seconds. A server that does not answer in time makes the login page say the service is unavailable.
        A login against a hanging server waits about twice this long (a reused connection that went silent is
        retried once on a fresh one), and never longer than `login_timeout`.
        """,
    )

    server_retry_interval = Float(
        30.0,
        config=True,
        help="""After a server fails to connect, try it only after the other servers for this many seconds.

        The servers that have not failed recently are tried first, in the order of `server_urls`; the skipped ones
        follow, so a login is never refused while some server could answer it.""",
    )

    bind_dn_templates = List(
        Unicode(),
        config=True,
        help="""DN templates to bind as, tried in order, e.g. ``["uid={username},ou=people,dc=example,dc=org"]``.

        ``{username}`` is replaced by the normalised, RFC 4514-escaped username. When empty, users are found by
        a search (`user_search_base`, `user_search_filter`) with the service account (`search_bind_dn`).
        """,
    )

    search_bind_dn = Unicode(
        "",
        config=True,
        help="""DN of the service account used to search for users and groups (empty: anonymous searches).""",
    )

    search_bind_password = Unicode(
        "",
        config=True,
        help="""Password of `search_bind_dn`. Never logged. Prefer setting it from an environment variable.""",
    )

    user_search_base = Unicode(
        "",
        config=True,
        help="""Base DN under which users are searched for (search mode, when `bind_dn_templates` is empty).""",
    )

    user_search_filter = Unicode(
        "({username_attribute}={username})",
        config=True,
        help="""Filter finding one user. ``{username}`` is the escaped username, ``{username_attribute}`` is
        `username_attribute`. Zero or several matches refuse the login.
        """,
    )

    username_attribute = Unicode(
        "uid",
        config=True,
        help="""Attribute holding the login name (``uid``; ``sAMAccountName`` on Active Directory). Its value,
        normalised, must equal the normalised typed username and becomes the hub username.
        """,
    )

    group_search_base = Unicode(
        "",
        config=True,
        help="""Base DN under which groups are read: the group search, nested groups, and `use_member_of`
        (a ``memberOf`` value outside it is ignored, so a group someone made elsewhere in the directory, e.g.
        ``cn=hub-admins,ou=projects``, never counts). Empty: no groups.""",
    )

    group_dns = List(
        Unicode(),
        config=True,
        help="""When set, only these groups (by DN, compared case-insensitively) count; every other group the
        user is in is ignored. ldapauthenticator's `allowed_groups` DNs are read as this list.""",
    )

    group_search_filter = Unicode(
        "(|(member={dn})(uniqueMember={dn})(memberUid={username}))",
        config=True,
        help="""Filter finding the groups a user is a direct member of. ``{dn}`` is the user's escaped DN,
        ``{username}`` the escaped username. The default covers groupOfNames (``member``), groupOfUniqueNames
        (``uniqueMember``) and posixGroup (``memberUid``); restrict it with an objectClass if other entries under
        `group_search_base` carry those attributes. Empty: no group search (groups from `use_member_of` only).
        """,
    )

    group_name_attribute = Unicode(
        "cn",
        config=True,
        help="""Attribute of a group entry used as the group name (groups from `memberOf` use their DN's first
        RDN value).""",
    )

    use_member_of = Bool(
        False,
        config=True,
        help="""Also take groups from the user's `member_of_attribute` (Active Directory, or OpenLDAP's memberof
        overlay). Only groups under `group_search_base` count (required with this option).
        """,
    )

    member_of_attribute = Unicode(
        "memberOf",
        config=True,
        help="""The attribute listing a user's group DNs when `use_member_of` is on.""",
    )

    nested_groups = Bool(
        False,
        config=True,
        help="""Resolve nested groups: a member of group A, where A is a member of B, is in A and B.

        Walks parent groups breadth-first (search `nested_group_filter` under `group_search_base`) up to
        `nested_groups_max_depth` levels, visiting every group at most once (cycles terminate). With
        `ad_in_chain`, one Active Directory in-chain query replaces the walk.
        """,
    )

    nested_groups_max_depth = Integer(
        5,
        config=True,
        help="""How many levels of parent groups `nested_groups` follows above the direct groups.""",
    )

    nested_group_filter = Unicode(
        "(|(member={dn})(uniqueMember={dn}))",
        config=True,
        help="""Filter finding the parent groups of a group; ``{dn}`` is the group's escaped DN.""",
    )

    ad_in_chain = Bool(
        False,
        config=True,
        help="""Use Active Directory's LDAP_MATCHING_RULE_IN_CHAIN (OID 1.2.840.113556.1.4.1941) to get every
        group a user belongs to, directly or nested, in one search (`ad_in_chain_filter`). AD only.
        """,
    )

    ad_in_chain_filter = Unicode(
        "(member:1.2.840.113556.1.4.1941:={dn})",
        config=True,
        help="""Filter used with `ad_in_chain`; ``{dn}`` is the user's escaped DN.""",
    )

    auth_state_attributes = Union(
        [Dict(key_trait=Unicode(), value_trait=Unicode()), List(Unicode())],
        default_value={"mail": "mail", "displayName": "display_name"},
        config=True,
        help="""User entry attributes copied into auth_state: ``{ldap_attribute: auth_state_key}``.
        Single values are stored as a string, several as a list. The entry's DN is stored as ``dn``.
        ldapauthenticator's list form (``["mail", "uidNumber"]``) is accepted: each attribute under its own name,
        and all of them as lists in ``auth_state["user_attributes"]`` as ldapauthenticator stores them.
        """,
    )

    subject_attribute = Unicode(
        "",
        config=True,
        help="""Attribute holding the account's stable identifier, to which the hub user is bound at first login
        (e.g. ``nsUniqueId`` on 389-DS). Empty (default): the entry's ``entryUUID`` (OpenLDAP) or ``objectGUID``
        (Active Directory) when it has one, else its DN (a user whose entry is then moved or renamed must be
        re-linked with ``hubfleet users unbind NAME``). A hub user bound to the DN before (the earlier default)
        is moved to the entry's identifier at their next login or refresh. With this option set, an entry without
        the attribute cannot log in.
        """,
    )

    def __init__(self, **kwargs):
        self._local = threading.local()
        self._down_until: dict[str, float] = {}
        self._servers: list[ldap3.Server] = []
        self._logged_config_errors: set[str] = set()
        super().__init__(**kwargs)
        # search mode binds unknown names against this DN, which no entry has (the same round trips as a wrong
        # password; a failed bind to it can lock no account)
        self._nobody_dn = f"cn=hubfleet-nobody-{secrets.token_hex(8)},{self.user_search_base}"
        self._servers = [self._make_server(url) for url in self.server_urls]

    # ---- configuration -------------------------------------------------------------------------------------
    def _read_ldapauthenticator_config(self) -> None:
        """Apply ``c.LDAPAuthenticator.*`` (ldapauthenticator 2.0) through the alias table of ldap_compat.py."""
        if "LDAPAuthenticator" not in self.config:
            return
        section = dict(self.config["LDAPAuthenticator"])
        if not section:
            return
        own = set(self.config.get(type(self).__name__, {})) | set(self.config.get("HubfleetLDAPAuthenticator", {}))
        try:
            tr = ldap_compat.translate(section, own=own, passthrough=Authenticator.class_trait_names(config=True))
        except ldap_compat.LdapCompatError as e:
            raise ConfigError(str(e)) from e
        for line in tr.notes:
            self.log.info(line)
        for name, value in tr.settings.items():
            setattr(self, name, value)
        self.compat_options = frozenset(tr.settings)

    def check_config(self):
        self._read_ldapauthenticator_config()
        super().check_config()
        cls = type(self).__name__
        if not self.server_urls:
            raise ConfigError(f"{cls}.server_urls is empty; set e.g. ['ldap://ldap.example.org'].")
        for url in self.server_urls:
            scheme = url.split("://", 1)[0].lower() if "://" in url else ""
            if scheme not in ("ldap", "ldaps"):
                raise ConfigError(f"{cls}.server_urls: {url!r} must start with ldap:// or ldaps://.")
            if self.tls_strategy == "ldaps" and scheme != "ldaps":
                raise ConfigError(f"{cls}.server_urls: {url!r} must be ldaps:// when tls_strategy is 'ldaps'.")
            if self.tls_strategy in ("starttls", "insecure") and scheme != "ldap":
                raise ConfigError(
                    f"{cls}.server_urls: {url!r} is ldaps:// but tls_strategy is {self.tls_strategy!r}; "
                    f"set tls_strategy = 'ldaps' or use an ldap:// URL."
                )
        if self.tls_ca_file and self.tls_strategy == "insecure":
            raise ConfigError(f"{cls}.tls_ca_file is set but tls_strategy is 'insecure' (no TLS): pick one.")
        if not self.bind_dn_templates and not self.user_search_base:
            raise ConfigError(f"{cls}: set bind_dn_templates (bind by DN) or user_search_base (search for users).")
        for t in self.bind_dn_templates:
            if "{username}" not in t:
                raise ConfigError(f"{cls}.bind_dn_templates: {t!r} has no {{username}} placeholder.")
        if self.search_bind_dn and not self.search_bind_password:
            raise ConfigError(f"{cls}.search_bind_password is empty for search_bind_dn {self.search_bind_dn!r}.")
        if "{username}" not in self.user_search_filter:
            raise ConfigError(f"{cls}.user_search_filter {self.user_search_filter!r} has no {{username}} placeholder.")
        if self.use_member_of and not self.group_search_base:
            raise ConfigError(
                f"{cls}.use_member_of needs group_search_base: memberOf lists groups anywhere in the directory, and "
                f"only those under group_search_base count; set it to the DN under which your groups live "
                f"(or group_dns to the exact group DNs).")
        if self.nested_groups and not self.group_search_base:
            raise ConfigError(f"{cls}.nested_groups needs group_search_base (where parent groups are searched).")
        if self.ad_in_chain and not self.group_search_base:
            raise ConfigError(f"{cls}.ad_in_chain needs group_search_base.")
        if self.nested_groups_max_depth < 0:
            raise ConfigError(f"{cls}.nested_groups_max_depth must be >= 0, not {self.nested_groups_max_depth}.")
        if isinstance(self.auth_state_attributes, list):  # ldapauthenticator's form
            self._user_attributes_list = list(self.auth_state_attributes)
            self.auth_state_attributes = {a: a for a in self.auth_state_attributes}
        for name in ("connect_timeout", "operation_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{cls}.{name} must be positive, not {getattr(self, name)}.")

    def _make_server(self, url: str) -> ldap3.Server:
        tls = None
        if self.tls_strategy != "insecure":
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=self.tls_ca_file or None,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        return ldap3.Server(
            url,
            use_ssl=self.tls_strategy == "ldaps",
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=self.connect_timeout,
        )

    # ---- connections (one per worker thread and purpose, reused) -------------------------------------------
    def _open(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """Open a connection to the first working server (failover), TLS started, optionally bound."""
        now = time.monotonic()
        # a server skipped after a failure is tried after the others, not never: when the one whose skip ran out is
        # still dead, a server that has come back must answer rather than the login being refused
        up = [s for s in self._servers if self._down_until.get(s.name, 0) <= now]
        candidates = up + [s for s in self._servers if s not in up]
        failures = []
        for server in candidates:
            conn = ldap3.Connection(
                server,
                receive_timeout=max(1, math.ceil(self.operation_timeout)),
                raise_exceptions=False,
                read_only=True,
                auto_referrals=False,
                client_strategy=ldap3.SYNC,
            )
            try:
                conn.open(read_server_info=False)
                if self.tls_strategy == "starttls" and not conn.start_tls(read_server_info=False):
                    raise lexc.LDAPStartTLSError(f"StartTLS refused: {conn.result}")
                if user is not None:
                    ok = conn.rebind(user=user, password=password, read_server_info=False)
                    code = (conn.result or {}).get("result")
                    if bind_outcome(ok, code) == "unavailable":
                        raise lexc.LDAPCommunicationError(f"server unavailable (result {code})")
                    if not ok:
                        conn.unbind()
                        raise self._misconfigured(
                            f"the service account bind as {user!r} was refused by {server.name} "
                            f"({(conn.result or {}).get('description')}, result {code})",
                            "check HubfleetLDAPAuthenticator.search_bind_dn and search_bind_password")
            except _CONNECTION_ERRORS as e:
                self._down_until[server.name] = time.monotonic() + self.server_retry_interval
                failures.append(f"{server.name}: {type(e).__name__}: {e}")
                try:
                    conn.unbind()
                except Exception:
                    pass
                continue
            self._down_until.pop(server.name, None)
            return conn
        raise BackendUnavailable(self.backend_label, "; ".join(failures) or "no server configured")

    def _misconfigured(self, detail: str, fix: str) -> BackendMisconfigured:
        """The error for a configuration the directory refuses, logged once per distinct problem."""
        if detail not in self._logged_config_errors:
            self._logged_config_errors.add(detail)
            self.log.error("LDAP configuration error: %s; %s (logins through LDAP fail until it is fixed)",
                           detail, fix)
        return BackendMisconfigured(self.backend_label, detail, fix)

    def _conn(self, purpose: str) -> tuple[ldap3.Connection, bool]:
        conn = getattr(self._local, purpose, None)
        if conn is not None and not conn.closed:
            return conn, False
        if purpose == "service" and self.search_bind_dn:
            conn = self._open(self.search_bind_dn, self.search_bind_password)
        else:
            conn = self._open()
        setattr(self._local, purpose, conn)
        return conn, True

    def _drop(self, purpose: str) -> None:
        conn = getattr(self._local, purpose, None)
        setattr(self._local, purpose, None)
        if conn is not None:
            try:
                conn.unbind()
            except Exception:
                pass

    def _with(self, purpose: str, func):
        """Run ``func(conn)`` on this thread's connection; reconnect once if a reused connection went stale."""
        for _attempt in range(2):
            conn, fresh = self._conn(purpose)
            try:
                return func(conn)
            except _CONNECTION_ERRORS as e:
                self._drop(purpose)
                if fresh:
                    raise BackendUnavailable(self.backend_label, f"{type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")

    @staticmethod
    def _search(conn: ldap3.Connection, base: str, flt: str, attributes, scope=ldap3.SUBTREE) -> list[_Entry]:
        ok = conn.search(base, flt, search_scope=scope, attributes=list(attributes), size_limit=0)
        code = (conn.result or {}).get("result")
        if not ok and code in SEARCH_UNAVAILABLE_CODES:
            raise lexc.LDAPCommunicationError(f"search failed: {conn.result}")
        return [
            _Entry(r["dn"], dict(r.get("attributes") or {}), dict(r.get("raw_attributes") or {}))
            for r in (conn.response or [])
            if r.get("type") == "searchResEntry"
        ]

    # ---- the login (runs on a worker thread) ------------------------------------------------------------------
    def _user_attributes(self) -> list[str]:
        attrs = {self.username_attribute, *self.auth_state_attributes}
        attrs.update([self.subject_attribute] if self.subject_attribute else STABLE_ID_ATTRIBUTES)
        if self.use_member_of:
            attrs.add(self.member_of_attribute)
        return sorted(attrs)

    def _bind(self, dn: str, password: str) -> bool:
        def bind(conn):
            try:
                ok = conn.rebind(user=dn, password=password, read_server_info=False)
            except lexc.LDAPBindError as e:  # ldap3 turns "connection closed by the server" into this
                raise lexc.LDAPSessionTerminatedByServerError(str(e)) from e
            code = (conn.result or {}).get("result")
            outcome = bind_outcome(ok, code)
            if outcome == "unavailable":
                raise lexc.LDAPCommunicationError(f"bind failed: {conn.result}")
            if outcome == "refused" and code not in (49, None):
                self.log.warning("LDAP bind as %s refused by the server: %s (result %s)", dn,
                                 (conn.result or {}).get("description"), code)
            return outcome == "ok"

        return self._with("auth", bind)

    def _find_user(self, username: str) -> _Entry | None:
        flt = render_filter(self.user_search_filter.replace("{username_attribute}", self.username_attribute),
                            username=username)
        entries = self._with("service", lambda c: self._search(c, self.user_search_base, flt, self._user_attributes()))
        if len(entries) > 1:
            self.log.warning("user:%s matches %d LDAP entries; refusing an ambiguous login", username, len(entries))
            return None
        return entries[0] if entries else None

    def _read_entry(self, purpose: str, dn: str) -> _Entry | None:
        entries = self._with(
            purpose, lambda c: self._search(c, dn, "(objectClass=*)", self._user_attributes(), scope=ldap3.BASE)
        )
        return entries[0] if entries else None

    def _matches(self, entry: _Entry, username: str) -> str | None:
        """The canonical hub name when the entry's username attribute equals the typed name, else None."""
        values = entry.attributes.get(self.username_attribute) or []
        if isinstance(values, str):
            values = [values]
        for v in values:
            if self.canonical_username(str(v)) == username:
                return username
        self.log.warning("user:%s refused: entry %s has %s=%r", username, entry.dn, self.username_attribute, values)
        return None

    def _groups(self, purpose: str, entry: _Entry, username: str) -> list[str]:
        def search(flt: str) -> list[tuple[str, str]]:
            attrs = [self.group_name_attribute]
            found = self._with(purpose, lambda c: self._search(c, self.group_search_base, flt, attrs))
            out = []
            for g in found:
                value = g.attributes.get(self.group_name_attribute)
                if isinstance(value, list):
                    value = value[0] if value else None
                out.append((g.dn, str(value) if value else rdn_value(g.dn)))
            return out

        return ldap_groups.user_groups(self, search, dn=entry.dn, username=username,
                                       member_of=values_of(entry.attributes.get(self.member_of_attribute)),
                                       warn=self.log.warning)

    def _result(self, username: str, entry: _Entry, groups: list[str]) -> BackendResult:
        subject = entry_subject(entry.dn, entry.raw, self.subject_attribute)
        if not subject:
            self.log.warning("LDAP entry %s has no single %s value: no subject to bind to", entry.dn,
                             self.subject_attribute)
        attributes = self._attributes(entry)
        previous = previous_subject(entry.dn, subject)
        if previous:  # read by the identity binding, which moves a binding to the DN to ``subject``
            attributes["hubfleet_previous_subject"] = previous
        return BackendResult(name=username, groups=groups, attributes=attributes, backend=self.backend_name,
                             subject=subject)

    def _attributes(self, entry: _Entry) -> dict:
        out = {"dn": entry.dn}
        if getattr(self, "_user_attributes_list", None):
            out["user_attributes"] = {a: [str(v) for v in values_of(entry.attributes.get(a))]
                                      for a in self._user_attributes_list}
        for attr, key in self.auth_state_attributes.items():
            value = entry.attributes.get(attr)
            if isinstance(value, list):
                value = [str(v) for v in value]
                value = value[0] if len(value) == 1 else (value or None)
            if value not in (None, [], ""):
                out[key] = value if isinstance(value, list) else str(value)
        return out

    def _login(self, username: str, password: str) -> BackendResult | None:
        if self.bind_dn_templates:
            for template in self.bind_dn_templates:
                dn = render_dn(template, username)
                if self._bind(dn, password):
                    break
            else:
                return None
            # read as the user just bound, on the same connection
            entry = self._read_entry("auth", dn)
            purpose = "service" if self.search_bind_dn else "auth"
        else:
            entry = self._find_user(username)
            if entry is None:  # bind anyway: an unknown name costs the round trips of a wrong password
                self._bind(self._nobody_dn, password)
                return None
            if not self._bind(entry.dn, password):
                return None
            purpose = "service"
        if entry is None or self._matches(entry, username) is None:
            return None
        return self._result(username, entry, self._groups(purpose, entry, username))

    def _lookup(self, username: str) -> BackendResult | None:
        if self.user_search_base:
            entry = self._find_user(username)
        else:
            entry = None
            for template in self.bind_dn_templates:
                entry = self._read_entry("service", render_dn(template, username))
                if entry:
                    break
        if entry is None or self._matches(entry, username) is None:
            return None
        return self._result(username, entry, self._groups("service", entry, username))

    # ---- async hooks ----------------------------------------------------------------------------------------
    async def authenticate_password(self, username, password):
        result = await self.run_blocking(self._login, username, password)
        if result is None:
            self.log.warning("user:%s LDAP login failed", username)
        return result

    async def lookup_user(self, username):
        return await self.run_blocking(self._lookup, username)
