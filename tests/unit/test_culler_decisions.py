"""The pure decisions beyond idleness: warnings, busy kernels, GPU use, default-profile resolution, the limiter."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import timedelta

import pytest

from hubfleet.services.culler.arbiter import (
    Activity,
    BudgetState,
    CullPolicy,
    Warned,
    cull_decision,
    most_lenient,
    policies_from_config,
    resolve_policy,
)
from hubfleet.services.culler.limiter import AdaptiveLimit
from hubfleet.spawners.profiles import parse_catalog
from tests.unit.test_culler_arbiter import DAY, HOUR, MIN, NOW, USER, server

POLICIES, DEFAULT = policies_from_config({
    "default": {"timeout": "8h"},
    "profiles": {
        "gpu": {"timeout": "30m", "warn_before": "10m", "gpu_idle_below": 5},
        "small": {"timeout": "8h", "spare_busy_kernels": True, "max_age": "7d"},
        "warned": {"timeout": "1h", "warn_before": "15m", "max_age": "2d"},
    },
})


def decide(srv, **kw):
    return cull_decision(server=srv, user=USER, now=NOW, policies=POLICIES, default=DEFAULT, **kw)


def ago(seconds):
    return NOW - timedelta(seconds=seconds)


# --- warnings ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("idle, warned, action, reason_part", [
    (40 * MIN, None, "keep", "inactive for 00:40:00 < 01:00:00"),
    (46 * MIN, None, "warn", "culled in 00:15:00 unless active"),             # 14 min before the cull: warn now
    (61 * MIN, None, "warn", "inactive for 01:01:00 >= 01:00:00"),            # due but never warned: warn first
    (61 * MIN, Warned(ago(5 * MIN)), "wait", "warned 00:05:00 ago"),         # no cull before warn_before has passed
    (76 * MIN, Warned(ago(15 * MIN)), "cull", "warned 00:15:00 ago"),        # warn_before after the warning: cull
    (3 * MIN, Warned(ago(5 * MIN)), "keep", "inactive for 00:03:00"),        # activity after the warning cancels it
])
def test_warning_comes_first_and_activity_cancels_it(idle, warned, action, reason_part):
    d = decide(server("warned", idle=idle, age=DAY), warned=warned)
    assert d.action == action, d
    assert reason_part in d.reason
    assert d.cull is (action == "cull")


USED_UP = BudgetState(True, "you have used 20.1 of 20 GPU-hours in the last 7 days")


@pytest.mark.parametrize("budget, warned, action, reason_part", [
    (BudgetState(False), None, "keep", "inactive for 00:01:00 < 00:30:00"),          # within budget: idle rules only
    (USED_UP, None, "warn", "budget used up: you have used 20.1 of 20 GPU-hours in the last 7 days (profile gpu); "
                            "culled in 00:10:00 unless the budget frees up"),
    (USED_UP, Warned(ago(5 * MIN), "budget"), "wait", "warned 00:05:00 ago"),         # the notice period runs
    (USED_UP, Warned(ago(10 * MIN), "budget"), "cull", "budget used up: you have used 20.1 of 20 GPU-hours"),
    (BudgetState(False), Warned(ago(10 * MIN), "budget"), "keep", "inactive for 00:01:00"),  # freed: cancelled
    (None, Warned(ago(10 * MIN), "budget"), "wait", "cannot be read now: not culled for it"),  # fail closed
    (None, None, "keep", "inactive for 00:01:00"),                                    # not asked: no budget cull
])
def test_a_used_up_budget_is_warned_then_culled_unless_it_frees_up(budget, warned, action, reason_part):
    d = decide(server("gpu", idle=MIN, age=HOUR), warned=warned, budget=budget)  # active: idleness culls nothing
    assert d.action == action, d
    assert reason_part in d.reason, d.reason
    assert d.why == ("budget" if action in ("warn", "wait", "cull") else "")


def test_a_used_up_budget_culls_whatever_the_policy_says_of_idleness():
    never = policies_from_config({"profiles": {"long": {"never": True}}})[0]
    d = cull_decision(server=server("long", idle=MIN, age=HOUR), user=USER, now=NOW, policies=never,
                      default=DEFAULT, budget=USED_UP)
    assert (d.action, d.why) == ("cull", "budget"), d  # no warn_before: culled at once
    d = decide(server("gpu", idle=MIN, age=HOUR), warned=Warned(ago(10 * MIN), "budget"), budget=USED_UP,
               cull_named_servers=False, cull_default_servers=False)
    assert (d.action, d.why) == ("cull", "budget"), d


def test_max_age_warning_is_not_cancelled_by_activity():
    srv = server("warned", idle=0, age=2 * DAY - 10 * MIN)
    assert decide(srv).action == "warn" and decide(srv).why == "max_age"
    d = decide(server("warned", idle=0, age=2 * DAY + 5 * MIN), warned=Warned(ago(10 * MIN), "max_age"))
    assert d.action == "wait"  # active, but max_age stays due; only the notice period holds it
    d = decide(server("warned", idle=0, age=2 * DAY + 15 * MIN), warned=Warned(ago(15 * MIN), "max_age"))
    assert d.cull and "age 48:15:00 >= max_age 48:00:00" in d.reason


# --- busy kernels --------------------------------------------------------------------------------------------------

def test_busy_kernel_spares_an_idle_server_up_to_max_age():
    idle = server("small", idle=9 * 3600, age=DAY)
    assert decide(idle).cull and decide(idle, activity=Activity(busy_kernels=0)).cull
    spared = decide(idle, activity=Activity(busy_kernels=1))
    assert not spared.cull and spared.why == "busy" and "spared: 1 busy kernel(s)" in spared.reason
    old = decide(server("small", idle=9 * 3600, age=8 * DAY), activity=Activity(busy_kernels=2))
    assert old.cull and old.why == "max_age" and "2 busy kernel(s)" in old.reason and "max_age 168:00:00" in old.reason


@pytest.mark.parametrize("warn_before", [0, 15 * MIN])
def test_a_server_that_always_answers_busy_is_culled_at_max_age(warn_before):
    """A user's server says what it likes about its kernels: "busy" at every sweep must not keep it past max_age
    (plus the notice period when warnings are on)."""
    policy = CullPolicy(timeout=HOUR, max_age=DAY, spare_busy_kernels=True, warn_before=warn_before)
    started, every, warned = NOW - timedelta(seconds=DAY), 5 * MIN, None
    for sweep in range(1000):
        now = started + timedelta(seconds=HOUR + sweep * every)
        srv = {"name": "", "ready": True, "url": "/user/alice/", "user_options": {},
               "last_activity": started.isoformat(), "started": started.isoformat()}
        d = cull_decision(server=srv, user=USER, now=now, policies={}, default=policy, policy=policy,
                          label="default policy", activity=Activity(busy_kernels=1), warned=warned)
        if d.action == "warn":
            warned = Warned(now, "max_age" if d.why == "max_age" else "idle")
        if d.cull:
            break
        assert d.action in ("keep", "warn", "wait"), d
    age = (now - started).total_seconds()
    assert d.cull and d.why == "max_age", d
    assert DAY <= age <= DAY + warn_before + every, f"culled at age {age / HOUR:.2f} h: {d.reason}"


def test_busy_kernels_do_not_count_without_the_policy():
    d = decide(server(None, idle=9 * 3600), activity=Activity(busy_kernels=3))
    assert d.cull


# --- GPU use ------------------------------------------------------------------------------------------------------

def test_gpu_server_is_judged_by_gpu_use_not_by_the_browser():
    open_tab = server("gpu", idle=10, age=DAY)  # the browser keeps posting activity
    d = decide(open_tab, activity=Activity(gpu_idle_for=30 * MIN), warned=Warned(ago(10 * MIN)))
    assert d.cull and d.why == "gpu_idle" and "GPU under 5 % for 00:30:00 >= 00:30:00" in d.reason
    assert decide(open_tab, activity=Activity(gpu_idle_for=20 * MIN)).action == "warn"
    assert decide(open_tab, activity=Activity(gpu_idle_for=0)).action == "keep"
    # no GPU data: browser activity decides
    assert decide(open_tab, activity=Activity(gpu_idle_for=None)).action == "keep"
    assert decide(server("gpu", idle=40 * MIN, age=DAY), activity=Activity()).action == "warn"


def test_gpu_idleness_is_capped_by_the_servers_age():
    d = decide(server("gpu", idle=0, age=5 * MIN), activity=Activity(gpu_idle_for=30 * MIN))
    assert d.action == "keep" and "00:05:00" in d.reason


# --- which policy ------------------------------------------------------------------------------------------------

CATALOG = parse_catalog({"profiles": [
    {"slug": "small", "display_name": "Small"},
    {"slug": "gpu", "display_name": "GPU", "default": True, "access": {"groups": ["gpu-users"]}},
]})


@pytest.mark.parametrize("user, label, timeout, certain", [
    ({"name": "ann", "groups": ["gpu-users"]}, "profile gpu (the user's default)", 1800, True),
    ({"name": "bob", "groups": []}, "profile small (the user's default)", 8 * 3600, True),
    ({"name": "cy"}, "profile unknown (one of gpu, small: the most lenient of their policies)", 8 * 3600, False),
])
def test_a_server_without_profile_gets_its_default_profiles_policy(user, label, timeout, certain):
    got_label, policy, got_certain = resolve_policy(server=server(None, idle=DAY), user=user, policies=POLICIES,
                                                    default=DEFAULT, profiles=CATALOG.profiles)
    assert (got_label, policy.timeout, got_certain) == (label, timeout, certain)


def test_a_recorded_profile_wins_and_no_catalog_means_the_default_policy():
    label, policy, _ = resolve_policy(server=server("small"), user={"name": "ann", "groups": ["gpu-users"]},
                                      policies=POLICIES, default=DEFAULT, profiles=CATALOG.profiles)
    assert label == "profile small" and policy is POLICIES["small"]
    label, policy, certain = resolve_policy(server=server(None), user=USER, policies=POLICIES, default=DEFAULT)
    assert (label, policy, certain) == ("default policy", DEFAULT, True)


def test_most_lenient_culls_no_sooner_than_any():
    p = most_lenient([CullPolicy(timeout=1800, warn_before=600, gpu_idle_below=5),
                      CullPolicy(timeout=7200, max_age=86400, spare_busy_kernels=True)])
    assert (p.timeout, p.max_age, p.warn_before, p.spare_busy_kernels, p.gpu_idle_below) == \
        (7200, 0, 600, True, None)


# --- the limiter --------------------------------------------------------------------------------------------------

def test_limit_halves_when_the_hub_is_slow_and_creeps_up_when_it_is_fast():
    lim = AdaptiveLimit(maximum=10, target=0.02, cooldown=0.25, window=1)
    assert lim.limit == 4
    assert lim.observe(0.005, now=1.0) == 5
    assert lim.observe(0.005, now=1.1) == 5      # cooldown
    assert lim.observe(0.018, now=2.0) == 5      # between 3/4 of the target and the target: hold
    assert lim.observe(0.080, now=3.0) == 2
    assert lim.observe(0.080, now=4.0) == 1
    assert lim.observe(0.080, now=5.0) == 1      # never under the minimum
    for t in range(6, 30):
        lim.observe(0.001, now=float(t))
    assert lim.limit == 10                       # never over --concurrency
    with pytest.raises(ValueError):
        AdaptiveLimit(maximum=0)


def test_one_slow_sample_is_noise_slow_answers_at_the_90th_percentile_are_the_queue():
    lim = AdaptiveLimit(maximum=20, target=0.02, cooldown=0.0, window=20, settle=10, quantile=0.9)
    for t in range(9):
        lim.observe(0.005, now=float(t))
    assert lim.limit == 4                         # no decision before the window holds `settle` samples
    for t, latency in enumerate([0.300] + [0.005] * 10, start=9):
        lim.observe(latency, now=float(t))
    assert lim.limit > 4                          # one 300 ms spike in the window did not halve it
    raised = lim.limit
    lim.observe(0.050, now=20.0)
    assert lim.limit == raised + 1                # the spike and one slow answer: 2 in 20 are the slow tenth
    lim.observe(0.050, now=21.0)                  # 3 slow answers in 20: the 90th percentile is slow
    assert lim.limit == (raised + 1) // 2


def test_by_default_the_median_of_the_last_second_is_the_signal():
    lim = AdaptiveLimit(maximum=10, target=0.02, cooldown=0.0, limit=8)
    for t, latency in enumerate([0.005, 0.300, 0.005, 0.300, 0.005, 0.005, 0.300, 0.005, 0.005, 0.005]):
        lim.observe(latency, now=float(t))
    assert lim.limit == 10                        # 3 slow answers in 10: the median is fast
    for t in range(10, 16):
        lim.observe(0.050, now=float(t))
    assert lim.limit == 5                         # 6 of the last 10 slow: halved


def test_a_halving_waits_for_answers_given_after_it_before_halving_again():
    lim = AdaptiveLimit(maximum=16, target=0.02, cooldown=0.0, window=20, settle=10, limit=16)
    for t in range(10):
        lim.observe(0.100, now=float(t))
    assert lim.limit == 8
    for t in range(10, 19):                       # still slow: the stops started at 16 are still in flight
        lim.observe(0.100, now=float(t))
    assert lim.limit == 8                         # the window was emptied by the halving: 9 samples < settle
    lim.observe(0.100, now=19.0)
    assert lim.limit == 4
    assert [n for _, n in lim.history] == [8, 4]  # once per settle period, not once per sample down to 1


def test_a_busy_machine_raises_the_bar_to_twice_the_floor():
    lim = AdaptiveLimit(maximum=10, target=0.02, cooldown=0.0, window=3, settle=3)
    lim.calibrate([0.030, 0.035, 0.040])  # before any stop: the machine alone makes answers take 30-40 ms
    assert lim.bar == pytest.approx(0.07)
    for t in range(10):
        lim.observe(0.040, now=float(t))
    assert lim.limit == 10
    for t in range(10, 22):  # the queue the culler causes: 4x the floor
        lim.observe(0.140, now=float(t))
    assert lim.limit == 1
    lim.calibrate([0.002])
    assert lim.bar == 0.02


def test_starts_are_spread_over_the_time_a_stop_holds_its_slot():
    lim = AdaptiveLimit(maximum=10, target=0.02, limit=5)
    assert lim.spacing() == 0                     # nothing measured yet: no spacing
    lim.held(0.100)
    assert lim.spacing() == pytest.approx(0.020)  # 5 stops of 100 ms in flight = one start every 20 ms
    for _ in range(50):
        lim.held(0.200)
    assert lim.spacing() == pytest.approx(0.040, rel=0.01)  # the average follows slower stops
    lim.limit = 10
    assert lim.spacing() == pytest.approx(0.020, rel=0.01)  # a wider limit: starts closer together


class VirtualTime:
    """A clock that moves only when every task waits: sleeps wake in deadline order, no real time passes."""

    def __init__(self):
        self.now, self._sleepers, self._seq = 0.0, [], itertools.count()

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), fut))
        await fut

    async def run(self, coros) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        for _ in range(100_000):
            for _ in range(50):  # let every task run until it waits
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                break
            assert self._sleepers, "tasks wait for something other than the virtual clock"
            deadline, _, fut = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            fut.set_result(None)
        await asyncio.gather(*tasks)


async def test_the_gate_spreads_starts_evenly_instead_of_in_bursts():
    """Twenty 100 ms stops through a gate of 5: after the first burst, one start every 20 ms (100 ms / 5), never
    5 at the same moment; the stops in flight never exceed 5 and the throughput is the same (5 per 100 ms)."""
    from hubfleet.services.culler.sweep import Gate

    vt = VirtualTime()
    lim = AdaptiveLimit(maximum=5, target=1e9, limit=5)
    gate = Gate(lim, clock=lambda: vt.now, sleep=vt.sleep)
    starts, in_flight = [], [0, 0]

    async def stop():
        async with gate:
            starts.append(vt.now)
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            await vt.sleep(0.100)
            in_flight[0] -= 1

    await vt.run(stop() for _ in range(20))
    later = starts[5:]                              # the first 5 know no stop duration yet: a burst
    gaps = [round(b - a, 6) for a, b in zip(later, later[1:])]
    assert starts[:5] == [0.0] * 5
    assert min(gaps) == pytest.approx(0.020) and max(gaps) == pytest.approx(0.020), starts
    assert in_flight[1] <= 5 and gate.in_flight == 0
    assert vt.now == pytest.approx(0.100 + 15 * 0.020 + 0.100 - 0.020, abs=0.021)  # 5 per 100 ms, as unpaced


def test_a_long_running_culler_remembers_a_bounded_number_of_limit_changes():
    from hubfleet.services.culler.limiter import HISTORY
    lim = AdaptiveLimit(maximum=8, cooldown=0, settle=1, window=1)
    for i in range(10 * HISTORY):  # alternating slow and fast answers: a change at every sample
        lim.observe(1.0 if i % 2 else 0.0, float(i))
    assert len(lim.history) == HISTORY
    assert lim.history[-1] == (10 * HISTORY - 1, lim.limit)
