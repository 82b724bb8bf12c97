"""Which groups an LDAP user is in: the group search, ``memberOf``, nested groups or AD's in-chain rule — only
groups under ``group_search_base`` (and only ``group_dns`` when set).

:func:`user_groups` does no I/O itself: the LDAP backend passes ``search(filter) -> [(group DN, name)]``, which
searches under ``group_search_base`` on its connection, and its own options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import policy
from .ldap_util import dn_under, normalize_dn, rdn_value, render_filter

Search = Callable[[str], Iterable[tuple[str, str]]]


def user_groups(opts, search: Search, *, dn: str, username: str, member_of: Iterable[str],
                warn: Callable[[str], None]) -> list[str]:
    """The group names of the user ``dn``. ``opts`` has the LDAP backend's group options (``group_search_base``,
    ``group_search_filter``, ``use_member_of``, ``nested_groups``, ``nested_groups_max_depth``,
    ``nested_group_filter``, ``ad_in_chain``, ``ad_in_chain_filter``, ``group_dns``); ``member_of``: the entry's
    ``memberOf`` values. A ``memberOf`` value outside ``group_search_base`` is ignored: anyone allowed to create a
    group elsewhere in the directory could give it an admin group's name."""
    if not opts.group_search_base:
        return []
    names: dict[str, str] = {}  # normalised group DN -> group name
    direct: set[str] = set()
    if opts.ad_in_chain:
        for gdn, name in search(render_filter(opts.ad_in_chain_filter, dn=dn)):
            names.setdefault(normalize_dn(gdn), name)
        return _named(names, set(names), opts.group_dns)
    if opts.group_search_filter:
        for gdn, name in search(render_filter(opts.group_search_filter, dn=dn, username=username)):
            key = normalize_dn(gdn)
            names.setdefault(key, name)
            direct.add(key)
    if opts.use_member_of:
        for gdn in member_of:
            if not dn_under(str(gdn), opts.group_search_base):
                continue  # a group made elsewhere in the directory
            key = normalize_dn(str(gdn))
            names.setdefault(key, rdn_value(str(gdn)))
            direct.add(key)
    if not opts.nested_groups:
        return _named(names, direct, opts.group_dns)
    originals: dict[str, str] = {}

    def parents_of(key: str):
        out = []
        for gdn, name in search(render_filter(opts.nested_group_filter, dn=originals.get(key, key))):
            pkey = normalize_dn(gdn)
            names.setdefault(pkey, name)
            originals.setdefault(pkey, gdn)
            out.append(pkey)
        return out

    walked = policy.expand_nested_groups(direct, parents_of, max_depth=opts.nested_groups_max_depth)
    if walked.truncated:
        warn(f"user:{username} nested groups deeper than nested_groups_max_depth="
             f"{opts.nested_groups_max_depth} were ignored")
    return _named(names, walked.groups, opts.group_dns)


def _named(names: dict[str, str], keys: set[str], group_dns) -> list[str]:
    if group_dns:
        keys = keys & {normalize_dn(dn) for dn in group_dns}
    return sorted({names[k] for k in keys if k in names})
