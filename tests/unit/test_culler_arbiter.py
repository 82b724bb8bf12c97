"""The pure per-profile cull decisions: policies documents and decision tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jupyterhub_idle_culler as idle_culler
import pytest

from hubfleet.services.culler.arbiter import (
    CullConfigError,
    CullPolicy,
    combine_for_user,
    cull_decision,
    format_td,
    idle_culler_hook,
    parse_date,
    policies_from_config,
    user_cull_decision,
)

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
MIN, HOUR, DAY = 60, 3600, 86400

POLICIES, DEFAULT = policies_from_config({
    "default": {"timeout": "8h"},
    "profiles": {
        "gpu": {"timeout": "30m"},
        "small": {"timeout": "8h"},
        "long-running": {"never": True, "max_age": "7d"},
        "exempt": {"never": True},
    },
})


def iso(seconds_ago: float | None) -> str | None:
    if seconds_ago is None:
        return None
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def server(profile=None, idle=None, age=2 * DAY, name="", ready=True, pending=None, options=None):
    return {
        "name": name, "ready": ready, "pending": pending, "url": f"/user/u/{name}",
        "last_activity": iso(idle), "started": iso(age),
        "user_options": options if options is not None else ({"profile": profile} if profile else {}),
    }


USER = {"name": "alice", "admin": False}


@pytest.mark.parametrize("srv, cull, reason_part", [
    # GPU: 30 minutes
    (server("gpu", idle=31 * MIN), True, "inactive for 00:31:00 >= 00:30:00 (profile gpu)"),
    (server("gpu", idle=30 * MIN), True, "profile gpu"),            # the limit itself culls, as idle-culler's >=
    (server("gpu", idle=29 * MIN), False, "00:29:00 < 00:30:00 (profile gpu)"),
    # small: 8 hours; equally idle as the culled GPU server, kept
    (server("small", idle=31 * MIN), False, "(profile small)"),
    (server("small", idle=8 * HOUR + 1), True, "profile small"),
    # long-running: never for idleness, culled at 7 days of age
    (server("long-running", idle=30 * DAY, age=6 * DAY), False, "never culled for inactivity (profile long-running)"),
    (server("long-running", idle=0, age=7 * DAY), True, "age 168:00:00 >= max_age 168:00:00"),
    (server("exempt", idle=365 * DAY, age=365 * DAY), False, "never culled"),
    # no profile / unknown profile: default policy (8 h)
    (server(None, idle=9 * HOUR), True, "default policy"),
    (server(None, idle=7 * HOUR), False, "default policy"),
    (server("retired", idle=9 * HOUR), True, "profile retired (no policy: default)"),
    (server(None, idle=9 * HOUR, options={"profile": ["gpu"]}), True, "default policy"),  # malformed: not a slug
    # idle-culler's rules
    (server("gpu", idle=DAY, pending="spawn"), False, "pending spawn"),
    (server("gpu", idle=DAY, ready=False), False, "not ready"),
    (server("gpu", idle=None, age=31 * MIN), True, "inactive for 00:31:00"),  # no activity yet: since started
    (server("gpu", idle=None, age=10 * MIN), False, "inactive for 00:10:00"),
])
def test_cull_decision_table(srv, cull, reason_part):
    d = cull_decision(server=srv, user=USER, now=NOW, policies=POLICIES, default=DEFAULT)
    assert d.cull is cull
    assert reason_part in d.reason


def test_active_just_now_is_not_judged_by_age():
    """last_activity == now is 0 s inactive, not 'no activity' (a falsy timedelta must not fall back to age)."""
    d = cull_decision(server=server("gpu", idle=0, age=DAY), user=USER, now=NOW, policies=POLICIES, default=DEFAULT)
    assert not d.cull and "inactive for 00:00:00" in d.reason


@pytest.mark.parametrize("name, kwargs, cull", [
    ("", {"cull_default_servers": False}, False),
    ("", {"cull_named_servers": False}, True),
    ("nb", {"cull_named_servers": False}, False),
    ("nb", {"cull_default_servers": False}, True),
])
def test_default_and_named_server_switches(name, kwargs, cull):
    d = cull_decision(server=server("gpu", idle=DAY, name=name), user=USER, now=NOW, policies=POLICIES,
                      default=DEFAULT, **kwargs)
    assert d.cull is cull, d.reason


def test_max_age_applies_even_when_idleness_culling_is_off_for_named_servers():
    policies, default = policies_from_config({"profiles": {"gpu": {"timeout": "30m", "max_age": "1d"}}})
    d = cull_decision(server=server("gpu", idle=0, age=2 * DAY, name="nb"), user=USER, now=NOW, policies=policies,
                      default=default, cull_named_servers=False)
    assert d.cull and "max_age" in d.reason


def test_admins_servers_are_culled_like_anyones():
    d = cull_decision(server=server("gpu", idle=DAY), user={"name": "root", "admin": True}, now=NOW,
                      policies=POLICIES, default=DEFAULT)
    assert d.cull


def test_decision_is_keyword_only_and_forward_compatible():
    with pytest.raises(TypeError):
        cull_decision(server(), USER, NOW, POLICIES, DEFAULT)  # noqa: positional use is refused
    d = cull_decision(server=server("gpu", idle=DAY), user=USER, now=NOW, policies=POLICIES, default=DEFAULT,
                      some_future_context={"x": 1})
    assert d.cull


# --- users ---------------------------------------------------------------------------------------------------------

def user(idle=None, age=30 * DAY, admin=False):
    return {"name": "bob", "admin": admin, "last_activity": iso(idle), "created": iso(age)}


CULL_USERS = CullPolicy(timeout=HOUR, cull_users=True)


@pytest.mark.parametrize("u, policy, left, kwargs, cull, reason_part", [
    (user(idle=2 * HOUR), CULL_USERS, 0, {}, True, "inactive for 02:00:00"),
    (user(idle=10 * MIN), CULL_USERS, 0, {}, False, "inactive for 00:10:00"),
    (user(idle=2 * HOUR), CULL_USERS, 1, {}, False, "1 server(s) still running"),
    (user(idle=2 * HOUR), CullPolicy(timeout=HOUR), 0, {}, False, "cull_users is off"),
    (user(idle=2 * HOUR, admin=True), CULL_USERS, 0, {"cull_admin_users": False}, False, "admin users"),
    (user(idle=2 * HOUR, admin=True), CULL_USERS, 0, {}, True, "inactive"),
    (user(idle=0, age=3 * DAY), CullPolicy(timeout=HOUR, max_age=2 * DAY, cull_users=True), 0, {}, True, "max_age"),
    (user(idle=None, age=2 * HOUR), CULL_USERS, 0, {}, True, "inactive for 02:00:00"),
])
def test_user_cull_decision_table(u, policy, left, kwargs, cull, reason_part):
    d = user_cull_decision(user=u, now=NOW, policy=policy, servers_left=left, **kwargs)
    assert d.cull is cull
    assert reason_part in d.reason


def test_user_is_kept_unless_every_culled_servers_policy_allows_user_culling():
    default = CullPolicy(timeout=HOUR, cull_users=True)
    assert combine_for_user([CullPolicy(timeout=60, cull_users=True)], default).cull_users
    assert not combine_for_user([CullPolicy(timeout=60, cull_users=True), CullPolicy(timeout=60)], default).cull_users
    assert combine_for_user([], default).cull_users
    assert not combine_for_user([], CullPolicy(timeout=HOUR)).cull_users


# --- policies documents --------------------------------------------------------------------------------------------

def test_policies_document_inherits_from_the_default():
    policies, default = policies_from_config(
        {"default": {"timeout": "2h", "max_age": "30d"}, "profiles": {"gpu": {"timeout": 1800}, "lr": {"never": True}}},
        default=CullPolicy(timeout=HOUR, cull_users=True))
    assert default == CullPolicy(timeout=7200, max_age=30 * DAY, cull_users=True)
    assert policies["gpu"] == CullPolicy(timeout=1800, max_age=30 * DAY, cull_users=True)
    assert policies["lr"].never and policies["lr"].max_age == 30 * DAY


def test_a_profile_timeout_overrides_a_never_default():
    policies, default = policies_from_config({"default": {"never": True}, "profiles": {"gpu": {"timeout": "1h"}}})
    assert default.never and not policies["gpu"].never


def test_empty_document_and_a_bare_mapping_is_refused():
    assert policies_from_config(None, default=CullPolicy(timeout=5)) == ({}, CullPolicy(timeout=5))
    with pytest.raises(CullConfigError, match="unknown key 'gpu'; known keys: default, profiles"):
        policies_from_config({"gpu": {"timeout": "30m"}})  # a typo'd 'profiles:' must not become a profile


@pytest.mark.parametrize("doc, message", [
    ({"profiles": {"gpu": {"timeout": "30 minutes"}}},
     "profiles.gpu.timeout: expected a duration like 1800, '30m', '8h' or '7d', got '30 minutes'"),
    ({"profiles": {"gpu": {"timeout": -5}}}, "profiles.gpu.timeout: expected a duration > 0, got -5"),
    ({"profiles": {"gpu": {"timeout": True}}}, "profiles.gpu.timeout: expected number or string or null, got bool"),
    ({"profiles": {"gpu": {"timeout": 0}}}, "profiles.gpu.timeout: a duration must be more than 0, got 0; to switch "
                                            "idle culling off give never: true"),
    ({"profiles": {"gpu": {"timeout": "30m", "warn_before": "0m"}}},
     "profiles.gpu.warn_before: a duration must be more than 0, got '0m'; leave warn_before out"),
    ({"profiles": {"gpu": {"max_age": 0}}}, "profiles.gpu.max_age: a duration must be more than 0, got 0; leave "
                                            "max_age out (or null) for no age limit"),
    ({"profiles": {"gpu": {"timeout": "30m", "warn_before": "45m"}}},
     "profiles.gpu.warn_before: 00:45:00 is not shorter than timeout 00:30:00"),
    ({"profiles": {"gpu": {"gpu_idle_below": 0}}}, "profiles.gpu.gpu_idle_below: 0 is less than or equal to the"),
    ({"profiles": {"gpu": {"never": "yes"}}}, "profiles.gpu.never: expected boolean, got str 'yes'"),
    ({"profiles": {"gpu": {"idle": "30m"}}},
     "profiles.gpu: unknown key 'idle'; known keys: consolidate, cull_users, gpu_idle_below, max_age, never, "
     "spare_busy_kernels, timeout, warn_before"),
    ({"profiles": {"GPU!": {"timeout": "30m"}}}, "profiles: 'GPU!' does not match"),
    ({"profiles": {"gpu": "30m"}}, "profiles.gpu: expected object or null, got str '30m'"),
    ({"profiles": ["gpu"]}, "profiles: expected object or null, got list"),
    (["gpu"], "(top level): expected object, got list"),
    ({"default": {"max_age": "forever"}}, "default.max_age: expected a duration like"),
])
def test_policy_errors_name_field_and_value(doc, message):
    with pytest.raises(CullConfigError) as e:
        policies_from_config(doc)
    assert message in str(e.value)


def test_unknown_profile_is_refused_when_the_spawners_profiles_are_known():
    doc = {"profiles": {"gpu": {"timeout": "30m"}, "gpu-xl": {"timeout": "10m"}}}
    with pytest.raises(CullConfigError, match="profiles.gpu-xl: unknown profile 'gpu-xl'; the spawner's profiles "
                                              "are: gpu, small"):
        policies_from_config(doc, known_profiles=["small", "gpu"])
    assert set(policies_from_config(doc, known_profiles=["gpu", "gpu-xl"])[0]) == {"gpu", "gpu-xl"}


@pytest.mark.parametrize("text, seconds", [(90, 90), (1.5, 1.5), ("45", 45), ("30m", 1800), ("8h", 28800),
                                           ("7d", 604800), ("2w", 1209600), (" 1.5h ", 5400)])
def test_durations(text, seconds):
    policies, _ = policies_from_config({"profiles": {"p": {"timeout": text}}})
    assert policies["p"].timeout == seconds


# --- agreement with jupyterhub-idle-culler ---------------------------------------------------------------------------

@pytest.mark.parametrize("stamp", ["2026-11-25T10:00:00.123456Z", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00",
                                   "2026-11-25T10:00:00+02:00", "2026-11-25T10:00:00.5+00:00"])
def test_parse_date_matches_idle_culler(stamp):
    assert parse_date(stamp) == idle_culler.parse_date(stamp)
    assert parse_date(stamp).tzinfo is not None


@pytest.mark.parametrize("td", [None, "n/a", timedelta(0), timedelta(seconds=59), timedelta(hours=30, seconds=61),
                                timedelta(days=8, minutes=5)])
def test_format_td_matches_idle_culler(td):
    assert format_td(td) == idle_culler.format_td(td)


def test_idle_culler_hook_applies_per_profile_timeouts_inside_stock_idle_culler():
    hook = idle_culler_hook(POLICIES, DEFAULT)
    gpu, small = server("gpu"), server("small")
    assert hook(inactive=timedelta(minutes=31), inactive_limit=3600, server=gpu) is True
    assert hook(inactive=timedelta(minutes=31), inactive_limit=60, server=small) is False
    assert hook(inactive=timedelta(days=99), inactive_limit=60, server=server("exempt")) is False
    assert hook(inactive=None, inactive_limit=60, server=gpu) is False
