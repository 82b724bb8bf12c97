"""`pip install hubfleet` on the stock z2jh 4.4.0 hub image changes none of the image's pinned packages.

The image (quay.io/jupyterhub/k8s-hub:4.4.0) is Python 3.12 with the frozen requirements in
``../shared/z2jh-4.4.0/hub-image-requirements.txt``. pip resolves hubfleet together with every pin of that file
(``--ignore-installed --dry-run``, so nothing is installed and the current venv does not matter): if hubfleet required
another version of any pinned package, the resolver would fail. What it adds beyond the image is printed and must be
what the README says it adds.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# the same on every Python stack (Helm, Traefik, pip resolution): `make test` runs it with the first stack only
pytestmark = pytest.mark.stack_independent

REPO = Path(__file__).resolve().parents[2]


def _z2jh_dir() -> Path:
    for cand in (os.environ.get("HUBFLEET_Z2JH_DIR"), REPO.parent / "shared" / "z2jh-4.4.0"):
        if cand and (Path(cand) / "hub-image-requirements.txt").is_file():
            return Path(cand)
    pytest.fail("the z2jh 4.4.0 chart data (hub-image-requirements.txt) is missing: set HUBFLEET_Z2JH_DIR")


def _python312() -> str:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3"))) or \
        [p for p in [shutil.which("python3.12")] if p]
    if not found:
        pytest.fail("Python 3.12 (the hub image's Python) is missing: pyenv install 3.12")
    return found[-1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.split(";")[0].strip()
    return pins


def test_pip_install_hubfleet_keeps_every_pin_of_the_stock_hub_image(tmp_path):
    pins = _pins(_z2jh_dir() / "hub-image-requirements.txt")
    # pycurl and psycopg2 are in the image prebuilt; building them here needs libcurl/libpq headers
    reqs = tmp_path / "image.txt"
    reqs.write_text("".join(f"{n}=={v}\n" for n, v in pins.items() if n not in ("pycurl", "psycopg2")))
    # a copy of the sources: pip prepares metadata in the tree it is given, and the repo's src/ is on the path of
    # the suites running beside this one
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    report = tmp_path / "report.json"
    out = subprocess.run(
        [_python312(), "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--report", str(report),
         "-r", str(reqs), str(source)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"pip could not install hubfleet beside the image's pins:\n{out.stderr[-3000:]}"
    chosen = {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    changed = {n: (pins[n], v) for n, v in chosen.items() if n in pins and pins[n] != v}
    assert not changed, f"hubfleet changes pinned packages of the hub image: {changed}"
    added = sorted(set(chosen) - set(pins) - {"hubfleet"})
    print("pip install hubfleet adds to the stock hub image:", ", ".join(added) or "nothing")
    readme = (REPO / "README.md").read_text()
    line = next((ln for ln in readme.splitlines() if "adds to the stock hub image" in ln), "")
    assert line, "the README says what `pip install hubfleet` adds to the stock hub image"
    named = sorted(_norm(x) for x in re.findall(r"`([A-Za-z0-9_.-]+)`", line))
    assert named == added, f"README names {named}, pip adds {added}"
