"""Lazy package exports: a package ``__init__`` names what it offers and which submodule defines it, and nothing is
imported until first use. So ``import hubfleet.spawners.profiles`` does not load KubeSpawner through
``hubfleet/spawners/__init__.py`` (tests/unit/test_purity.py checks every pure module)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping


def lazy_exports(package: str, table: Mapping[str, str]):
    """``(__getattr__, __dir__, __all__)`` for a package whose ``table`` maps name -> relative submodule."""
    table = dict(table)

    def __getattr__(name):
        if name in table:
            return getattr(importlib.import_module(table[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(importlib.import_module(package).__dict__) | set(table))

    return __getattr__, __dir__, sorted(table)
