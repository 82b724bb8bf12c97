"""``hubfleet usage --since 7d --by group|user|profile [--csv]``: server usage from the hub's database.

Reads the usage records the spawner keeps (:func:`hubfleet.spawners.queue_store.usage`): per key, the number of
servers, server-hours, GPU-hours and CPU-hours (requested cores) within the window; a running server counts up to
now. ``--db-url`` defaults to the z2jh hub's database (from the chart's mounted values), else
``sqlite:///jupyterhub.sqlite``.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s`` (or plain seconds) -> seconds (> 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration; write e.g. 7d, 12h, 30m")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _run(args) -> int:
    from ..db import Database, DatabaseUnavailable, migrate, z2jh_db_url
    from ..db.url import HUB_DEFAULT_URL
    from . import queue_store

    try:
        window = parse_window(args.since)
    except ValueError as e:
        print(f"--since: {e}", file=sys.stderr)
        return 2
    url = args.db_url
    if not url:
        found = z2jh_db_url()
        if found:
            url, env = found
            os.environ.update(env)
        else:
            url = HUB_DEFAULT_URL
    db = Database(url, timeout=args.db_timeout)
    now = time.time()
    try:
        migrate(db, queue_store.QUEUE)
        rows = db.run(lambda conn: queue_store.usage(conn, since=now - window, by=args.by, now=now))
    except DatabaseUnavailable as e:
        print(str(e), file=sys.stderr)
        return 1
    finally:
        db.dispose()
    fields = ["key", "servers", "hours", "gpu_hours", "cpu_hours"]
    if args.csv:
        out = csv.writer(sys.stdout)
        out.writerow([args.by] + fields[1:])
        for r in rows:
            out.writerow([r["key"], r["servers"]] + [f"{r[f]:.3f}" for f in fields[2:]])
        return 0
    print(f"usage in the last {args.since} by {args.by}:")
    print(f"  {args.by:<24} {'servers':>8} {'hours':>10} {'GPU-hours':>10} {'CPU-hours':>10}")
    for r in rows:
        print(f"  {r['key']:<24} {r['servers']:>8} {r['hours']:>10.2f} {r['gpu_hours']:>10.2f} {r['cpu_hours']:>10.2f}")
    if not rows:
        print("  (no servers ran in this window)")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("usage", help="report server usage (GPU-hours, CPU-hours) from the hub's database",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--since", default="7d", help="the window, e.g. 7d, 24h, 30m (default 7d)")
    p.add_argument("--by", choices=("user", "group", "profile"), default="user", help="group the usage by")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--db-url", default="", help="the hub's database, as JupyterHub.db_url")
    p.add_argument("--db-timeout", type=float, default=10.0, help="seconds to wait for the database")
    p.set_defaults(func=_run)
