"""A user's server answers the busy-kernel check however it likes: slowly, hugely, with HTML, with JSON nested past
any parser, or by dropping the connection. Each is "unknown": the server is judged by its last activity (so an idle
one is culled), the user's record is never skipped, and every token minted for a check is deleted. Against the
in-process hub of test_culler_http.py, whose users' servers accept only the token minted for them."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from hubfleet.services.culler.app import CullerApp
from hubfleet.services.culler.hub_api import HubAPI
from tests.integration.culler.test_culler_http import TOKEN, FakeHub, fake_hub, iso  # noqa: F401


def idle_server(name: str) -> dict:
    return {"servers": {"": {"ready": True, "pending": None, "url": f"/user/{name}/", "started": iso(7200),
                             "last_activity": iso(3600), "user_options": {}}}}


async def test_untrusted_answers_are_unknown_and_the_server_judged_by_its_activity(fake_hub, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hubfleet.culler")
    behaviours = {"slow": "slow", "huge": "huge", "garbage": "garbage", "deep": "deep", "reset": "reset",
                  "busy": "busy", "idle": "idle"}
    hub = FakeHub({name: idle_server(name) for name in behaviours}, page_size=50)
    hub.server_behaviour = behaviours
    url = await fake_hub(hub)
    policies = tmp_path / "p.yaml"
    policies.write_text("default: {timeout: 10m, spare_busy_kernels: true}\n")
    app = CullerApp()
    app.initialize([f"--url={url}", f"--policies-file={policies}", f"--server-url={url.removesuffix('/hub/api')}",
                    "--request-timeout=1"])
    api = HubAPI(url, TOKEN, backoff=0.01, retries=1)
    result = await app.sweep(api)
    api.close()

    assert result.skipped == 0 and not result.errors, result.summary()
    assert sorted(hub.deleted) == ["deep", "garbage", "huge", "idle", "reset", "slow"], result.summary()
    assert result.spared == 1 and hub.users["busy"]["servers"]  # the one that answered "busy" properly
    for name, why in [("slow", "no answer"), ("huge", "no answer"), ("garbage", "not JSON"), ("deep", "not JSON"),
                      ("reset", "no answer")]:
        line = next((x for x in caplog.text.splitlines() if f"server {name}: kernels unknown (GET " in x), "")
        assert why in line and "judged by its last activity" in line, (name, caplog.text)
    assert hub.tokens_minted == len(behaviours) and hub.tokens_deleted == len(behaviours) and not hub.tokens
    assert hub.server_auth and all(a.startswith("token ") and TOKEN not in a for a in hub.server_auth)
    assert TOKEN not in caplog.text


async def test_a_role_without_tokens_is_named_at_start_with_the_fix(fake_hub, tmp_path):
    """A role written for the culler before it minted per-server tokens (``access:servers``, no ``tokens``): every
    busy-kernel check would fail, so the culler says so once, at start, with the fix."""
    hub = FakeHub({}, page_size=50)
    url = await fake_hub(hub)
    app = CullerApp()
    app.initialize([f"--url={url}", f"--server-url={url.removesuffix('/hub/api')}"])
    api = HubAPI(url, TOKEN, backoff=0.01, retries=1)
    assert await app.missing_scopes(api) == ""
    hub.token_scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers", "access:servers"]
    missing = await app.missing_scopes(api)
    api.close()
    assert "--server-url is set but the culler's token lacks the `tokens` scope" in missing
    assert "Add `tokens` to the culler's role" in missing


async def test_the_service_says_at_start_what_it_cannot_do_and_whom_it_trusts(fake_hub, tmp_path):
    hub = FakeHub({}, page_size=50)
    hub.token_scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers", "access:servers"]
    url = await fake_hub(hub)
    policies = tmp_path / "p.yaml"
    policies.write_text("profiles:\n  small: {timeout: 8h, spare_busy_kernels: true}\n"
                        "  capped: {timeout: 8h, spare_busy_kernels: true, max_age: 7d}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubfleet.services.culler", "--once", f"--policies-file={policies}",
        f"--server-url={url.removesuffix('/hub/api')}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "JUPYTERHUB_API_URL": url, "JUPYTERHUB_API_TOKEN": TOKEN})
    out = (await asyncio.wait_for(proc.communicate(), timeout=60))[0].decode()
    assert proc.returncode == 0, out
    assert "the culler's token lacks the `tokens` scope" in out, out
    assert "policies small spare busy kernels with no max_age: a server whose user makes it answer 'busy' is " \
           "never culled" in out, out
