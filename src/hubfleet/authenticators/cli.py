"""``hubfleet users ...``: manage the local accounts file of ``HubfleetLocalAuthenticator``.

    hubfleet users add NAME [--group G ...] [--admin] --file F [--password-stdin]
    hubfleet users passwd NAME --file F [--password-stdin]
    hubfleet users remove NAME --file F
    hubfleet users list --file F
    hubfleet users unbind NAME [--db-url URL]   # re-link: the next login binds NAME to its backend account again
    hubfleet users bindings [--db-url URL]
    hubfleet users accounts [--pending] [--db-url URL]  # self-service accounts in the hub's database
    hubfleet users approve NAME [--reject] [--group G ...] [--admin] [--db-url URL]
    hubfleet users reset NAME [--password-stdin] [--totp] [--db-url URL]   # new password, lock lifted

Passwords are read with a hidden prompt (asked twice), or one line from standard input with ``--password-stdin``
(never from the command line, where other users could see them); at most 72 bytes (bcrypt's limit). ``--rounds``
is the bcrypt cost, 4..31, default 12 (``HubfleetLocalAuthenticator.bcrypt_rounds``' default: use the same value as
the hub so that unknown names and wrong passwords cost the same). The file is written atomically, mode 0600.
The bindings live in the hub's database: ``--db-url`` (a SQLAlchemy URL, as ``JupyterHub.db_url``) defaults to
the one the z2jh chart gives the hub (read from its mounted values in the hub pod, with ``hub.db.password``), else
``sqlite:///jupyterhub.sqlite`` in the current directory (the hub's data directory, ``/srv/jupyterhub``).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from . import policy
from ..errors import HubfleetError
from .binding import BindingStore, BindingStoreError
from .local import (DEFAULT_ROUNDS, MAX_ROUNDS, MIN_ROUNDS, UsersFileError, hash_password, load_users_file,
                    password_too_long, write_users_file)


def _rounds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not MIN_ROUNDS <= n <= MAX_ROUNDS:
        raise argparse.ArgumentTypeError(f"bcrypt cost must be between {MIN_ROUNDS} and {MAX_ROUNDS}, not {n}")
    return n


def _read_password(args) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return None
    if not policy.password_acceptable(password):
        print("error: the password is empty or only whitespace", file=sys.stderr)
        return None
    why = password_too_long(password)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return None
    return password


def _name(raw: str) -> str | None:
    name = policy.normalize_username(raw)
    if name is None:
        print(f"error: {raw!r} is not a valid username (lowercase letters, digits, '.', '_', '@', '-'; "
              f"at most {policy.DEFAULT_MAX_USERNAME_LENGTH} characters)", file=sys.stderr)
    return name


def cmd_add(args) -> int:
    name = args.name
    doc = load_users_file(args.file)
    if name in doc["users"]:
        print(f"error: user {name!r} already exists in {args.file}; use 'hubfleet users passwd'", file=sys.stderr)
        return 1
    password = _read_password(args)
    if password is None:
        return 2
    doc["users"][name] = {
        "password_hash": hash_password(password, args.rounds),
        "groups": sorted(set(args.group or [])),
        "admin": bool(args.admin),
    }
    write_users_file(args.file, doc)
    print(f"added {name} to {args.file}")
    return 0


def cmd_passwd(args) -> int:
    name = args.name
    doc = load_users_file(args.file)
    if name not in doc["users"]:
        print(f"error: no user {name!r} in {args.file}; add it with 'hubfleet users add'", file=sys.stderr)
        return 1
    password = _read_password(args)
    if password is None:
        return 2
    doc["users"][name]["password_hash"] = hash_password(password, args.rounds)
    write_users_file(args.file, doc)
    print(f"password changed for {name}")
    return 0


def cmd_remove(args) -> int:
    name = args.name
    doc = load_users_file(args.file)
    if doc["users"].pop(name, None) is None:
        print(f"error: no user {name!r} in {args.file}", file=sys.stderr)
        return 1
    write_users_file(args.file, doc)
    print(f"removed {name} from {args.file}")
    return 0


def cmd_list(args) -> int:
    doc = load_users_file(args.file)
    for name, entry in sorted(doc["users"].items()):
        flags = " (admin)" if entry.get("admin") else ""
        print(f"{name}{flags}: {', '.join(entry.get('groups') or []) or '-'}")
    return 0


def _database(args):
    import os

    from ..db import Database, z2jh_db_url
    from ..db.url import HUB_DEFAULT_URL

    url = args.db_url
    if not url:
        found = z2jh_db_url()
        if found:
            url, env = found
            os.environ.update(env)  # as the chart's jupyterhub_config.py does for the hub
        else:
            url = HUB_DEFAULT_URL
    return Database(url, timeout=args.db_timeout)


def _store(args) -> BindingStore:
    return BindingStore(_database(args))


def _accounts(args):
    from .accounts_db import AccountStore

    return AccountStore(_database(args))


def cmd_accounts(args) -> int:
    from . import accounts_db as adb

    for a in _accounts(args).run(adb.list_accounts, adb.PENDING if args.pending else None):
        extra = [a.status, a.source, "2fa" if a.totp else "", "admin" if a.admin else ""]
        print(f"{a.name}: {a.email or '-'}; {', '.join(a.groups) or '-'}; {' '.join(x for x in extra if x)}")
    return 0


def cmd_approve(args) -> int:
    from . import accounts_db as adb

    name = args.name
    store = _accounts(args)
    acct = store.run(adb.decide, name, not args.reject, "hubfleet users", write=True)
    if acct is None:
        print(f"error: no account {name!r} in {store.db.display_url}", file=sys.stderr)
        return 1
    if args.group is not None or args.admin:
        store.run(adb.set_groups, name, args.group or acct.groups, args.admin or acct.admin, write=True)
    print(f"{name}: {'rejected (removed)' if args.reject else 'approved'}")
    return 0


def cmd_reset(args) -> int:
    from . import accounts_db as adb

    name = args.name
    store = _accounts(args)
    if store.run(adb.get_account, name) is None:
        print(f"error: no account {name!r} in {store.db.display_url}", file=sys.stderr)
        return 1
    password = _read_password(args)
    if password is None:
        return 2
    store.run(adb.set_password, name, hash_password(password, args.rounds), write=True)
    store.run(adb.clear_failures, [f"user:{name}"], write=True)
    if args.totp:
        store.run(adb.remove_totp, name, write=True)
    print(f"password reset for {name}" + (" (second factor removed)" if args.totp else ""))
    return 0


def cmd_unbind(args) -> int:
    name = args.name
    store = _store(args)
    old = store.unbind(name)
    if old is None:
        print(f"{name} is not bound in {store.db.display_url}; nothing to do")
        return 0
    print(f"unbound {name} (was {old.backend}: {old.subject}); their next login binds them again")
    return 0


def cmd_bindings(args) -> int:
    for name, b in _store(args).all().items():
        print(f"{name}: {b.backend}: {b.subject}")
    return 0


def _guard(func):
    """Run one subcommand: its NAME (if any) normalised first (exit 2 when invalid), errors printed (exit 1)."""

    def run(args) -> int:
        if getattr(args, "name", None) is not None:
            args.name = _name(args.name)
            if args.name is None:
                return 2
        try:
            return func(args)
        except (UsersFileError, BindingStoreError, HubfleetError) as e:  # DatabaseUnavailable too
            print(f"error: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"error: {getattr(args, 'file', None) or '-'}: {e.strerror or e}", file=sys.stderr)
            return 1

    return run


def add_parser(subparsers) -> None:
    users = subparsers.add_parser("users", help="manage local accounts (YAML file for the hubfleet local backend)")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    def command(action: str, help: str, func, *, name: bool = False, file: bool = False, password: bool = False,
                db: bool = False):
        """One subcommand: NAME, the options its kind takes (accounts file, password, hub database), its function."""
        p = sub.add_parser(action, help=help)
        if name:
            p.add_argument("name")
        if file:
            p.add_argument("--file", "-f", required=True, help="the YAML accounts file (created if missing)")
        if password:
            p.add_argument("--password-stdin", action="store_true",
                           help="read the password as one line from standard input instead of prompting")
            p.add_argument("--rounds", type=_rounds, default=DEFAULT_ROUNDS,
                           help=f"bcrypt cost, {MIN_ROUNDS}..{MAX_ROUNDS} (default {DEFAULT_ROUNDS}; use the "
                                f"hub's HubfleetLocalAuthenticator.bcrypt_rounds)")
        if db:
            p.add_argument("--db-url", default="",
                           help="the hub's database, as JupyterHub.db_url (default: the z2jh hub's, read from the "
                                "chart's values in the hub pod; else sqlite:///jupyterhub.sqlite)")
            p.add_argument("--db-timeout", type=float, default=10.0,
                           help="seconds to wait for the database (default 10)")
        p.set_defaults(func=_guard(func))
        return p

    p = command("add", "add an account", cmd_add, name=True, file=True, password=True)
    p.add_argument("--group", "-g", action="append", help="a group (repeat for several)")
    p.add_argument("--admin", action="store_true", help="make the user a JupyterHub admin")
    command("passwd", "set an account's password", cmd_passwd, name=True, file=True, password=True)
    command("remove", "remove an account", cmd_remove, name=True, file=True)
    command("list", "list accounts and their groups", cmd_list, file=True)
    command("unbind", "re-link: forget which backend account a hub user is bound to", cmd_unbind, name=True, db=True)
    command("bindings", "list which backend account each hub user is bound to", cmd_bindings, db=True)
    p = command("accounts", "list the self-service accounts in the hub's database", cmd_accounts, db=True)
    p.add_argument("--pending", action="store_true", help="only those waiting for approval")
    p = command("approve", "approve (or --reject) a self-service account waiting for approval", cmd_approve,
                name=True, db=True)
    p.add_argument("--reject", action="store_true", help="reject: remove the account")
    p.add_argument("--group", "-g", action="append", help="set its groups (repeat for several)")
    p.add_argument("--admin", action="store_true", help="make the user a JupyterHub admin")
    p = command("reset", "set a new password for a self-service account (and lift its lock)", cmd_reset,
                name=True, password=True, db=True)
    p.add_argument("--totp", action="store_true", help="also remove its second factor (a lost phone)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubfleet")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # python -m hubfleet.authenticators.cli users ...: without the other subcommands' imports
    sys.exit(main())
