"""``hubfleet profiles check FILE``: validate a profiles YAML document and print what it declares.

Exit status 0 when the document is valid, 1 with the error (naming the field and value) when it is not, 2 when the
file cannot be read.
"""

from __future__ import annotations

import sys

import yaml

from .profiles import ProfileConfigError, format_bytes, format_cpu, parse_catalog

_DEMO = "hubfleet/spawners/demo_profiles.yaml (in the package)"


def _check(args) -> int:
    try:
        with open(args.file) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        print(f"{args.file}: {e.strerror}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(f"{args.file}: not valid YAML: {e}", file=sys.stderr)
        return 1
    try:
        catalog = parse_catalog(data)
    except ProfileConfigError as e:
        print(f"{args.file}: {e}", file=sys.stderr)
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
        print(f"  {p.slug}{' (default)' if p.default else ''}: {resources}; for {p.access.describe()}; "
              f"images {images}{other}")
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
