"""The words match the code: every option the README and docs/ name exists, and no docstring tells history.

An option is named in prose as ``c.Class.option`` or ``Class.option`` and in z2jh values as a ``Class:`` key under
``hub.config`` followed by its options. Each such name of a hubfleet class (or of an anchor class hubfleet
configures: KubeSpawner, Authenticator, JupyterHub, ...) must be a configurable trait of that class; a renamed or
removed option then fails here instead of silently doing nothing in an operator's config.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from hubfleet.config import docgen

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", ROOT / "devcluster" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = [p for p in DOCS if p.name not in ("config-reference.md", "upgrading.md")]  # generated / history by design


def _anchor_classes() -> dict[str, type]:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.spawner import Spawner
    from kubespawner import KubeSpawner
    from oauthenticator.generic import GenericOAuthenticator
    from oauthenticator.oauth2 import OAuthenticator

    return {c.__name__: c for c in (JupyterHub, Authenticator, Spawner, KubeSpawner, OAuthenticator,
                                    GenericOAuthenticator)}


def known_classes() -> dict[str, type]:
    classes = _anchor_classes()
    for cls in docgen.hubfleet_entry_points():
        for k in cls.__mro__:
            if hasattr(k, "class_traits") and k.__module__.startswith("hubfleet."):
                classes[k.__name__] = k
    return classes


PROSE = re.compile(r"(?<![\w.])(?:c\.)?([A-Z][A-Za-z0-9]+)\.([a-z_][a-z0-9_]*)\b(?!\*)")  # `Class.prefix_*`: a family
FENCE = re.compile(r"```ya?ml\n(.*?)```", re.S)


def named_in_prose(text: str, classes: dict[str, type]):
    for m in PROSE.finditer(text):
        cls, opt = m.group(1), m.group(2)
        if cls in classes:
            yield cls, opt


def named_in_values(text: str, classes: dict[str, type]):
    """``hub.config.<Class>.<option>`` keys of the YAML examples (documents that do not parse are skipped)."""
    for block in FENCE.findall(text):
        try:
            doc = yaml.safe_load(block)
        except yaml.YAMLError:
            continue
        config = ((doc or {}).get("hub") or {}).get("config") if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            continue
        for cls, opts in config.items():
            if cls in classes and isinstance(opts, dict):
                for opt in opts:
                    yield cls, opt


def _cases():
    classes = known_classes()
    seen = set()
    for path in DOCS:
        text = path.read_text()
        for cls, opt in [*named_in_prose(text, classes), *named_in_values(text, classes)]:
            if (path.name, cls, opt) not in seen:
                seen.add((path.name, cls, opt))
                yield pytest.param(path.name, cls, opt, id=f"{path.name}:{cls}.{opt}")


def test_docs_name_options():
    """The scan finds the options the docs are known to name (a scan that finds nothing tests nothing)."""
    found = {(c, o) for _, c, o in (p.values for p in _cases())}
    assert ("ProfileSpawner", "profiles_file") in found
    assert ("HubfleetAuthenticator", "backends") in found
    assert len(found) > 40


@pytest.mark.parametrize("doc,cls,opt", list(_cases()))
def test_every_option_named_in_docs_exists(doc, cls, opt):
    classes = known_classes()
    klass = classes[cls]
    traits = klass.class_traits(config=True)
    # config given to a base class reaches the subclasses that define the option (`c.Authenticator.admin_groups`
    # configures every authenticator with `admin_groups`, as z2jh's docs use it)
    below = {n for k in classes.values() if issubclass(k, klass) for n in k.class_traits(config=True)}
    method = callable(getattr(klass, opt, None))  # prose may name a method (`ProfileSpawner.stop`)
    assert opt in traits or opt in below or method, (
        f"{doc} names {cls}.{opt}, which is not an option of {klass.__module__}.{cls}: "
        f"fix the doc or the option (close: {sorted(n for n in traits if n[:4] == opt[:4])[:5]})"
    )


def test_prose_scan_can_fail():
    """The checker flags a name that is not an option."""
    classes = known_classes()
    assert list(named_in_prose("set `c.ProfileSpawner.no_such_option = 1`", classes)) == [
        ("ProfileSpawner", "no_such_option")]
    assert "no_such_option" not in classes["ProfileSpawner"].class_traits(config=True)


ISSUE_REF = re.compile(r"\b[Ii]ssue\s*#?\d+|\(#\d+\)")


def _docstrings():
    for path in sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "devcluster" / "src").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    yield path.relative_to(ROOT), getattr(node, "name", "<module>"), doc


def test_no_issue_numbers_in_docstrings():
    """Docstrings say what the code does; which ticket asked for it belongs in the history (upstream projects'
    issues, like ``kubespawner #880``, are fine: they point at what the code works around)."""
    bad = [f"{p}:{name}: {m.group(0)!r}" for p, name, doc in _docstrings() for m in ISSUE_REF.finditer(doc)]
    assert not bad, "\n".join(bad)
