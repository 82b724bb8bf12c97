"""``hubfleet culler [options]``: the idle-culler service (options as ``python -m hubfleet.services.culler``)."""

from __future__ import annotations

import argparse


def _run(args) -> int:
    from .app import main

    return main(list(args.culler_args))


def add_parser(subparsers) -> None:
    # every argument goes to the traitlets application (its --help-all lists them): prefix_chars="+" stops argparse
    # from reading --timeout=... as an option of its own
    p = subparsers.add_parser("culler", add_help=False, prefix_chars="+",
                              help="run the per-profile idle-culler service (see: hubfleet culler --help-all)")
    p.add_argument("culler_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_run)
