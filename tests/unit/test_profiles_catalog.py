"""Loading profiles: the file is read off the event loop and only when it changed; bad input is one clear message
(the profile, the key and the fix), the same from ``hubfleet profiles check``, the hub's start-up log and a spawn."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from tornado import web

from hubfleet.cli import main
from hubfleet.spawners import ProfileSpawner
from hubfleet.spawners import catalog as catalog_module

from . import test_profiles_spawner
from .test_profiles_spawner import make_spawner, rest

no_cluster = test_profiles_spawner.no_cluster  # the fixture: a fake pod reflector, no cluster

GOOD = """
profiles:
  - slug: small
    display_name: Small
    default: true
"""

#: (profiles file, what the message must say) — the bad inputs issue #11 names, and the fix each one gets.
BAD = [
    ("profiles:\n  - slug: small\n    cpus: 2\n",
     "profile 'small': unknown key 'cpus'; known keys: access, claim_window, cpu,", "remove the key or correct its spelling"),
    ("profiles:\n  - slug: gpu\n    memory: {limit: 4 gallons}\n",
     "profile 'gpu': memory.limit: expected a size like 512M or 4G, got '4 gallons'", "write e.g. memory: 4G"),
    ("profiles:\n  - slug: setup\n    init_containers:\n      - {name: fetch}\n",
     "profile 'setup': init_containers[0]: 'image' is required", "give the container an image"),
    ("profiles:\n  - slug: logs\n    extra_containers:\n      - {name: notebook, image: 'fluent/fluent-bit:3'}\n",
     "profile 'logs': extra_containers[0].name: 'notebook' is already the name of the notebook server's container",
     "rename this container, e.g. notebook-sidecar"),
    ("profiles:\n  - slug: x\n    image_pull_policy: Sometimes\n",
     "profile 'x': image_pull_policy: 'Sometimes' is not one of: Always, IfNotPresent, Never", "docs/spawner.md"),
    ("profiles: [\n", "not valid YAML", "check the indentation"),
]


@pytest.fixture
def fresh_catalogs(monkeypatch):
    monkeypatch.setattr(ProfileSpawner, "_catalogs", catalog_module.CatalogSource())
    monkeypatch.setattr(ProfileSpawner, "_checked", set())


async def test_profiles_file_is_read_off_the_loop_and_only_when_it_changed(tmp_path, monkeypatch, fresh_catalogs):
    path = tmp_path / "profiles.yaml"
    path.write_text(GOOD)
    reads = []
    real = catalog_module.read_document

    def counting(p):
        reads.append(threading.current_thread() is threading.main_thread())
        return real(p)

    monkeypatch.setattr(catalog_module, "read_document", counting)
    spawner = make_spawner(profiles_file=str(path))
    for _ in range(3):
        html = await spawner.get_options_form()  # one card: no form; the catalog is still loaded
        assert [p.slug for p in await spawner.visible_profiles()] == ["small"]
    assert html == "" and reads == [False], "read once, in a worker thread"

    path.write_text(GOOD + "  - slug: large\n    display_name: Large\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert [p.slug for p in await spawner.visible_profiles()] == ["small", "large"]
    assert reads == [False, False]
    assert 'id="hf-profile-large"' in await spawner.get_options_form()
    assert reads == [False, False]


@pytest.mark.parametrize("text, message, fix", BAD)
async def test_bad_profiles_file_same_message_everywhere(tmp_path, capsys, caplog, fresh_catalogs, text, message,
                                                         fix):
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    assert main(["profiles", "check", str(path)]) == 1
    printed = capsys.readouterr().err.strip()
    assert printed.startswith(f"{path}:") and message in printed and fix in printed, printed
    assert "Traceback" not in printed

    spawner = make_spawner(profiles_file=str(path))  # the hub creates spawners at start-up: the error is logged
    await asyncio.gather(*ProfileSpawner._check_tasks)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(printed in line for line in logged), logged
    with pytest.raises(web.HTTPError) as e:  # and a spawn is refused with it, before any Kubernetes call
        await rest(spawner, {}).load_user_options()
    assert e.value.status_code == 500 and printed in e.value.log_message
    assert spawner.api.calls == []


def test_profiles_check_missing_file(tmp_path, capsys):
    assert main(["profiles", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
