"""``hubfleet profiles check FILE``: validate a profiles YAML document and print what it declares.

Exit status 0 when the document is valid, 1 with the error when it is not (the same message the hub logs at start-up:
the file, the profile, the key and the fix), 2 when the file cannot be read.
"""

from __future__ import annotations

import os
import sys

from .profiles import ProfileConfigError, format_bytes, format_cpu, parse_catalog, read_document

_DEMO = "hubfleet/spawners/demo_profiles.yaml (in the package)"


def _check(args) -> int:
    if not os.path.isfile(args.file):
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    try:
        catalog = parse_catalog(read_document(args.file), source=args.file)
    except ProfileConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"{args.file}: {len(catalog.profiles)} profiles, {len(catalog.quotas)} quotas, "
          f"{sum(len(v) for v in catalog.group_volumes.values())} group volumes: OK")
    for p in catalog.profiles:
        resources = ", ".join(filter(None, [
            f"cpu {format_cpu(p.cpu_guarantee) or '-'}..{format_cpu(p.cpu_limit) or '-'}",
            f"memory {format_bytes(p.mem_guarantee) or '-'}..{format_bytes(p.mem_limit) or '-'}",
            f"{p.gpu.count} x {p.gpu.resource}" if p.gpu else "",
        ]))
        images = ", ".join(i.image for i in p.images) or "(spawner default image)"
        other = f"; other images matching {p.other_image_pattern!r}" if p.other_image_pattern else ""
        extra = "".join([
            f"; options {', '.join(o.name for o in p.options)}" if p.options else "",
            f"; {len(p.init_containers)} init container(s)" if p.init_containers else "",
            f"; sidecars {', '.join(c['name'] for c in p.extra_containers)}" if p.extra_containers else "",
        ])
        print(f"  {p.slug}{' (default)' if p.default else ''}: {resources}; for {p.access.describe()}; "
              f"images {images}{other}{extra}")
    for q in catalog.quotas:
        print(f"  quota: {q.describe()}")
    for group, volumes in catalog.group_volumes.items():
        for v in volumes:
            mode = "read-only" if v.read_only else "read-write"
            print(f"  group {group}: volume {v.name} at {v.mount_path} ({mode})")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("profiles", help="ProfileSpawner profiles tools",
                              description="Tools for ProfileSpawner profiles documents.")
    sub = p.add_subparsers(dest="profiles_command", metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="validate a profiles YAML document",
                           description=f"Validate a profiles YAML document (example: {_DEMO}).")
    check.add_argument("file", help="the YAML file (profiles, quotas, group_volumes)")
    check.set_defaults(func=_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
