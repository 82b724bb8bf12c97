"""The wheel users install: built from the sources with `python -m build`, installed non-editable into a clean venv
(no system site-packages, not the repo's src/), then its entry points load, the spawn form renders from the packaged
templates and CSS, and `hubfleet --help` works. deploy/hub-image/Dockerfile is the one the README shows.

How the clean venv gets hubfleet's dependencies: the wheel is installed with `--no-deps`, and one `.pth` line puts the
test stack's site-packages *after* the venv's own, so the dependencies are the versions this suite runs on (both
stacks) without a PyPI download. What that does not show, dependency resolution, is checked separately: every
`Requires-Dist` of the installed wheel must be satisfied by what the venv sees."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from hubfleet.config.values import load_values
from tests.integration.platform.conftest import CHART, require_chart
from tests.procs import REPO

CHECK = r"""
import importlib.metadata as md, json, sys
from importlib import resources
from packaging.requirements import Requirement

import hubfleet
out = {"hubfleet_file": hubfleet.__file__, "entry_points": {}, "unmet": []}
for group in ("jupyterhub.authenticators", "jupyterhub.spawners", "console_scripts"):
    for ep in md.entry_points(group=group):
        if ep.dist is not None and ep.dist.name == "hubfleet":
            obj = ep.load()
            out["entry_points"][f"{group}:{ep.name}"] = f"{obj.__module__}.{obj.__qualname__}"
for line in md.requires("hubfleet") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # an extra (test, devcluster, bench, values)
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        out["unmet"].append(f"{req}: not installed")
        continue
    if not req.specifier.contains(have, prereleases=True):
        out["unmet"].append(f"{req}: have {have}")

from hubfleet.spawners import form
from hubfleet.spawners.profiles import parse_catalog
import yaml
demo = resources.files("hubfleet.spawners").joinpath("demo_profiles.yaml").read_text()
catalog = parse_catalog(yaml.safe_load(demo))
out["profiles"] = [p.display_name for p in catalog.profiles]
out["form"] = form.render_form(form.build_cards(catalog.profiles))
out["login_template"] = resources.files("hubfleet.authenticators").joinpath("templates/login.html").is_file()
print(json.dumps(out))
"""


# Packages of the stock hub image (hub-image-requirements.txt) that `pip install hubfleet` is allowed to change, each
# with the README's reason (issue 7: "changes no pinned package, or the README names each one it changes and why").
ACCEPTED_PIN_CHANGES: dict[str, str] = {}


def run(argv, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building in the worktree would leave build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # isolated build: pip fetches the build-system's setuptools/wheel (cached after the first run)
    run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", source], timeout=600)
    wheel = next((tmp / "dist").glob("hubfleet-*.whl"))

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)  # no --system-site-packages
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], timeout=300)
    venv_site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (venv_site / "zz-test-stack-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp)}  # no PYTHONPATH: not the repo's src/
    return {"venv": venv, "python": python, "site": venv_site, "wheel": wheel, "env": env, "cwd": tmp}


def test_the_wheel_installs_and_its_entry_points_load(installed):
    proc = run([installed["python"], "-c", CHECK], env=installed["env"], cwd=installed["cwd"], timeout=120)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["hubfleet_file"].startswith(str(installed["site"])), out["hubfleet_file"]  # the wheel, not src/
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {f"jupyterhub.authenticators:{k}" for k in project["entry-points"]["jupyterhub.authenticators"]}
    declared |= {f"jupyterhub.spawners:{k}" for k in project["entry-points"]["jupyterhub.spawners"]}
    declared |= {f"console_scripts:{k}" for k in project["scripts"]}
    assert set(out["entry_points"]) == declared
    assert out["entry_points"]["jupyterhub.spawners:hubfleet"] == "hubfleet.spawners.spawner.ProfileSpawner"
    unmet = [u for u in out["unmet"] if u.split(">")[0].split("=")[0].split("<")[0] not in ACCEPTED_PIN_CHANGES]
    assert unmet == [], ("`pip install hubfleet` would change these packages of this stack: " + "; ".join(unmet))
    readme = (REPO / "README.md").read_text()
    assert all(name in readme for name in ACCEPTED_PIN_CHANGES), "the README names each pin hubfleet changes"
    # the spawn form, rendered from the templates and CSS inside the wheel
    html = out["form"]
    assert out["profiles"] and all(name in html for name in out["profiles"])
    assert "<style>" in html and 'name="profile"' in html
    assert out["login_template"]


def test_hubfleet_help_from_the_installed_script(installed):
    script = installed["venv"] / "bin" / "hubfleet"
    proc = run([script, "--help"], env=installed["env"], cwd=installed["cwd"], timeout=60)
    for command in ("users", "profiles", "culler", "values", "scheduler-extender", "pvcs"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout
    for command in ("demo", "devcluster"):  # hubfleet-devcluster's commands, not the product's
        assert not re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout
    proc = run([script, "values", "check", "--help"], env=installed["env"], cwd=installed["cwd"], timeout=60)
    assert "--chart DIR" in proc.stdout


def test_the_wheel_carries_the_product_only(installed):
    """`pip install hubfleet` in the hub image brings no devcluster, no demo, no pytest plugin and no extra that
    pulls JupyterLab: those are hubfleet-devcluster's."""
    import zipfile

    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    stray = [n for n in names if re.search(r"devcluster|(^|/)demo\.py$|pytest_plugin", n)]
    assert stray == [], f"the product wheel carries devcluster files: {stray}"
    assert not re.search(r"^Provides-Extra: devcluster$", metadata, re.M), metadata
    assert not re.search(r"^Requires-Dist: jupyter-?lab", metadata, re.M | re.I), metadata
    assert "pytest11" not in entry_points and "devcluster" not in entry_points, entry_points
    assert not (installed["site"] / "hubfleet_devcluster").exists()


def test_the_readme_shows_the_hub_image_dockerfile():
    dockerfile = (REPO / "deploy" / "hub-image" / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    require_chart()
    stock = load_values(CHART / "values.yaml")["hub"]["image"]  # the image the chart's hub runs by default
    assert instructions[0] == f"FROM {stock['name']}:{stock['tag']}" == "FROM quay.io/jupyterhub/k8s-hub:4.4.0"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert any(re.search(rf"pip install .*hubfleet=={re.escape(version)}\b", line) for line in instructions)
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```dockerfile\n(.*?)```", readme, re.S)
    assert block, "README has no dockerfile block"
    shown = [line.strip() for line in block.group(1).splitlines()]
    assert [line for line in shown if line and not line.startswith("#")] == instructions
    assert "deploy/hub-image/Dockerfile" in readme
