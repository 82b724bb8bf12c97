"""The ``hubfleet`` command line.

Subcommands live next to the feature they belong to; each module exposes ``add_parser(subparsers)`` which registers
its subcommand and sets ``func`` (a callable taking the parsed args and returning an exit code). Only the module of
the subcommand being run is imported, so ``hubfleet users ...`` does not pay for importing KubeSpawner.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "users": ("hubfleet.authenticators.cli", "manage local accounts and identity bindings (add, passwd, list, bindings, unbind)"),
    "profiles": ("hubfleet.spawners.cli", "check a ProfileSpawner profiles file"),
    "scheduler-extender": ("hubfleet.scheduler_plugin.cli", "run the kube-scheduler extender (bin packing, GPU-aware)"),
    "culler": ("hubfleet.services.culler.cli", "run the per-profile idle-culler service (a JupyterHub service)"),
    "values": ("hubfleet.config.cli", "check or migrate z2jh Helm values (values check, values migrate)"),
    "usage": ("hubfleet.spawners.usage_cli", "report server usage by user, group or profile (GPU-hours, CPU-hours)"),
    "pvcs": ("hubfleet.spawners.pvcs", "list or prune users' PVCs (home and named-server volumes)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubfleet", description="hubfleet: JupyterHub-on-Kubernetes plugin suite")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(module_name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
