"""The ``hubfleet`` command line.

Subcommands live next to the feature they belong to; each module exposes ``add_parser(subparsers)`` which registers
its subcommand and sets ``func`` (a callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, attribute) pairs; a module that is not there yet is skipped, so features can land one at a time.
_SUBCOMMANDS = [
    ("hubfleet.devcluster.cli", "add_parser"),
    ("hubfleet.demo", "add_parser"),
    ("hubfleet.authenticators.cli", "add_parser"),
    ("hubfleet.spawners.cli", "add_parser"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubfleet", description="hubfleet: JupyterHub-on-Kubernetes plugin suite")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, attr in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        getattr(module, attr)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
