"""Every spawn path of the installed JupyterHub (5.5 or 6.x) resolves and validates the same way, in a real hub on
the devcluster: the form, ``?profile=`` and ``?opt-profile=`` query strings, REST bodies in both versions' shapes,
named servers with JupyterHub 6 names and display names; refusals show the same message on every path; the resolved
profile is recorded in ``user_options`` for every spawn, a default-profile one (``{}``) too.

Run it on both stacks: ``../run-tests tests/integration/spawner`` and ``VENV=/work/main/.venv-hub ../run-tests ...``.
"""

from __future__ import annotations

import requests
from markupsafe import escape
from prometheus_client.parser import text_string_to_metric_families
from concurrent.futures import ThreadPoolExecutor

from tests.procs import wait_for

from .test_profile_spawner import (
    IMG,
    hub_config,
    hub_version,
    logged_in_page,
    make_users,
    pod,
    spawn,
    stop,
    stop_all,
)

PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True, "image": IMG,
     "cpu": {"guarantee": 0.01, "limit": 1}, "memory": {"guarantee": "64M", "limit": "1G"}},
    {"slug": "medium", "display_name": "Medium", "image": IMG, "access": {"groups": ["researchers"]},
     "cpu": {"guarantee": 0.01, "limit": 2}, "memory": {"guarantee": "64M", "limit": "1G"}},
]
DISALLOWED = "profile 'medium' is not available to you; choose one of: small"


def server_model(hub, user, server=""):
    status, body = hub.api("GET", f"/users/{user}")
    assert status == 200, body
    return (body.get("servers") or {}).get(server) or {}


def spawn_page(session, hub, query: str = "", server: str = "", user: str = ""):
    path = f"/hub/spawn/{user}/{server}" if server else "/hub/spawn"
    return session.get(f"{hub.url}{path}{query}", timeout=60, allow_redirects=False)


def test_every_spawn_path_resolves_and_refuses_the_same_way(start_hub, devcluster):
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles = {PROFILES!r}\nc.JupyterHub.concurrent_spawn_limit = 0"))
    version = hub_version(hub)
    users = ["form", "query", "optq", "rest6", "rest5", "restdefault", "named", "nobody"]
    make_users(hub, *users, groups={"researchers": users[:-1]})
    sessions = {u: hub.login(u) for u in ("form", "query", "optq", "nobody")}

    # -- each path asks for 'medium' (or nothing) and gets it; the choice is recorded in user_options
    def form(u):
        s = sessions[u]
        return s.post(f"{hub.url}/hub/spawn", data={"profile": "medium", "_xsrf": s.cookies.get("_xsrf")},
                      timeout=60, allow_redirects=False).status_code

    accepted = {
        "form": lambda: form("form"),
        "query": lambda: spawn_page(sessions["query"], hub, "?profile=medium").status_code,
        "optq": lambda: spawn_page(sessions["optq"], hub, "?opt-profile=medium").status_code,
        "rest6": lambda: hub.api("POST", "/users/rest6/server", json={"user_options": {"profile": "medium"}})[0],
        "rest5": lambda: hub.api("POST", "/users/rest5/server", json={"profile": "medium"})[0],
        "restdefault": lambda: hub.api("POST", "/users/restdefault/server", json={})[0],
        "named": lambda: hub.api("POST", "/users/named/servers/ws-1",
                                 json={"user_options": {"profile": "medium"}, "display_name": "My analysis"})[0],
    }
    with ThreadPoolExecutor(len(accepted)) as pool:
        statuses = dict(zip(accepted, pool.map(lambda f: f(), accepted.values())))
    assert all(s in (201, 202, 302) for s in statuses.values()), statuses
    for user in accepted:
        server = "ws-1" if user == "named" else ""
        hub.wait_ready(user, server, timeout=120)
        expected = "small" if user == "restdefault" else "medium"
        assert pod(devcluster, user, server)["metadata"]["labels"]["hubfleet.io/profile"] == expected, user
        model = server_model(hub, user, server)
        assert model["user_options"]["profile"] == expected, (user, model)
    if version >= (6, 0):
        assert server_model(hub, "named", "ws-1").get("display_name") == "My analysis"

    # -- the same disallowed request is refused with the same message on every path, and starts nothing
    s = sessions["nobody"]
    r = s.post(f"{hub.url}/hub/spawn", data={"profile": "medium", "_xsrf": s.cookies.get("_xsrf")}, timeout=60)
    assert r.status_code == 403 and str(escape(DISALLOWED)) in r.text, r.text[-1500:]
    for query in ("?profile=medium", "?opt-profile=medium"):
        r = spawn_page(s, hub, query)
        assert r.status_code == 403 and str(escape(DISALLOWED)) in r.text, (query, r.status_code, r.text[-1500:])
    for body in ({"user_options": {"profile": "medium"}}, {"profile": "medium"}):
        status, answer = hub.api("POST", "/users/nobody/server", json=body)
        assert (status, answer.get("message")) == (403, DISALLOWED), (body, status, answer)
        hub.wait_stopped("nobody")
    status, answer = hub.api("POST", "/users/nobody/servers/ws-2", json={"user_options": {"profile": "medium"},
                                                                        "display_name": "x"})
    assert (status, answer.get("message")) == (403, DISALLOWED), answer
    assert devcluster.pods(selector="hub.jupyter.org/username=nobody") == []

    # -- a named server with an invalid name is refused with the rule (JupyterHub 6 refuses it itself)
    status, answer = hub.api("POST", "/users/nobody/servers/Bad_Name", json={})
    assert status == 400, answer
    if version >= (6, 0):
        assert "Invalid server_name" in answer["message"], answer
    else:
        assert "a server name must be 1-30 characters" in answer["message"], answer
    stop_all(hub, devcluster)


def test_named_server_names_from_the_spawn_page_and_no_names_in_metrics(start_hub, devcluster):
    """``/hub/spawn/<user>/<name>?display_name=...`` (JupyterHub 6) and the plain name (both versions); by default
    the hub's /hub/metrics names no user and no group member (``export_user_group_info`` is off)."""
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles = {PROFILES[:1]!r}"))
    make_users(hub, "rita", groups={"hub-admins": ["rita"]})
    session = hub.login("rita")
    r = spawn_page(session, hub, "?display_name=Rita%27s%20work", server="work-1", user="rita")
    assert r.status_code in (302, 303), r.status_code
    hub.wait_ready("rita", "work-1", timeout=120)
    model = server_model(hub, "rita", "work-1")
    assert model["user_options"] == {"profile": "small", "image": "default"}
    if hub_version(hub) >= (6, 0):
        assert model["display_name"] == "Rita's work"
    wait_for("rita's pod to run", lambda: pod(devcluster, "rita", "work-1")["status"]["phase"] == "Running", 30)
    r = requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.admin_token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert "hubfleet_running_servers{" in r.text  # ProfileSpawner's collector is there ...
    assert "jupyterhub_user_group_info" not in r.text and "rita" not in r.text  # ... without anyone's name
    stop_all(hub, devcluster)


def test_stale_choice_falls_back_as_the_user_sees_it_and_metrics(start_hub, devcluster, artifacts):
    """A saved choice the user may no longer use: the form preselects the default with a note (screenshot), a
    spawn that names no options starts the default with a progress message; the hub's /hub/metrics shows it all."""
    # slow_spawn_timeout 0: the REST POST answers at once, so the progress stream is read while the spawn runs
    hub = start_hub(hub_config(f"c.ProfileSpawner.profiles = {PROFILES!r}\n"
                               "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
                               "c.ProfileSpawner.export_user_group_info = True"))
    make_users(hub, "stale", "other", groups={"researchers": ["stale"], "teachers": ["other"]})
    assert spawn(hub, "stale", {"profile": "medium"})[0] in (201, 202)
    hub.wait_ready("stale", timeout=120)
    stop(hub, "stale")
    status, body = hub.api("DELETE", "/groups/researchers/users", json={"users": ["stale"]})
    assert status == 200, body

    shot = artifacts / "spawner-stale-choice.png"
    text = screenshot_stale_form(hub, "stale", shot)
    assert "Your last choice (profile 'medium') is no longer available" in text, text
    assert "the default profile 'Small' is selected" in text, text
    assert shot.stat().st_size > 10_000

    # the admin panel's start button / a REST POST without options reuses the saved choice: default, with a note
    status, body = hub.api("POST", "/users/stale/server")
    assert status in (201, 202), body
    status, progress = hub.api("GET", "/users/stale/server/progress", timeout=120)  # SSE, ends when ready
    assert status == 200, progress
    hub.wait_ready("stale", timeout=120)
    assert pod(devcluster, "stale")["metadata"]["labels"]["hubfleet.io/profile"] == "small"
    assert server_model(hub, "stale")["user_options"] == {"profile": "small", "image": "default"}
    assert any("is no longer available" in line and "starting the default profile 'Small' instead" in line
               for line in progress.splitlines()), progress
    # an explicit request for it is still refused
    status, body = spawn(hub, "other", {"profile": "medium"})
    assert (status, body.get("message")) == (403, DISALLOWED), body

    r = requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.admin_token}"}, timeout=30)
    assert r.status_code == 200, r.text
    text = r.text
    lines = [line for line in text.splitlines() if line.startswith(("hubfleet_", "jupyterhub_user_group_info"))]
    (artifacts / "spawner-metrics.txt").write_text("\n".join(lines) + "\n")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("hubfleet_spawn_duration_seconds_count", outcome="success", profile="small") == 1, lines
    assert value("hubfleet_spawn_refusals_total", profile="medium", reason="disallowed") == 1, lines
    assert value("hubfleet_running_servers", profile="small") == 1, lines
    assert value("jupyterhub_user_group_info", username="other", usergroup="teachers") == 1, lines
    assert value("jupyterhub_user_group_info", username="stale", usergroup="researchers") is None, lines
    stop_all(hub, devcluster)


def screenshot_stale_form(hub, user, path) -> str:
    with logged_in_page(hub, user, width=1000, height=700) as page:
        page.goto(f"{hub.url}/hub/spawn", timeout=30_000)
        page.wait_for_selector(".hf-message", timeout=30_000)
        assert page.locator("#hf-profile-small").is_checked()
        assert page.locator("#hf-profile-medium").count() == 0
        page.screenshot(path=str(path), full_page=True)
        return page.locator(".hf-message").inner_text()
