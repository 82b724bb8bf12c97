"""The churn simulation's GPU scarcity (bench/sim_gpu.py) and consolidation (bench/sim_consolidate.py) on small
hand-made traces: they run the product's queue, quota and consolidation decisions and measure what they say (the
full-day tables are a bench: ``python -m bench bench_sim``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.sim_churn import PLACEMENTS, POOLS, Pool, Simulation, load_trace, parse_trace
from bench.sim_consolidate import ConsolidationSimulation, policies
from bench.sim_gpu import ADMIT_LATENCY, MAX_AGE, GpuSimulation, jain

TRACES_DIR = Path(__file__).resolve().parents[2] / "bench" / "traces"


def trace(*rows) -> list:
    return parse_trace("\n".join(json.dumps(dict(zip(("time", "user", "profile", "duration", "group"), r)))
                                 for r in rows))


def run(rows, mode, quotas=None, weights=None):
    sim = GpuSimulation(trace(*rows), quotas=quotas or {"gpu": 1}, mode=mode, weights=weights or {})
    sim.run()
    return sim, sim.gpu_results()


TWO = (0, "a0", "gpu", 600, "a"), (60, "b0", "gpu", 600, "b")  # one slot; the second waits 40 minutes


def test_the_queue_admits_the_moment_a_slot_frees_where_retrying_leaves_it_idle():
    queued, q = run(TWO, "fifo")
    retried, r = run(TWO, "retry")
    first_end = queued.pods[0].ended_at
    assert first_end == queued.pods[0].bound_at + 600 + 1800
    assert queued.admitted_at[1] == first_end + ADMIT_LATENCY
    assert q["idle_slot_hours"] * 3600 == pytest.approx(ADMIT_LATENCY)
    assert retried.admitted_at[1] > first_end + ADMIT_LATENCY  # the next try, 2-5 minutes apart
    assert r["idle_slot_hours"] * 3600 == pytest.approx(retried.admitted_at[1] - first_end)


@pytest.mark.parametrize("mode", ["retry", "fifo", "fair_share"])
def test_no_slot_is_given_twice(mode):
    rows = [(i * 30, f"u{i}", "gpu", 300 * (i % 4), "ab"[i % 2]) for i in range(20)]
    sim, _ = run(rows, mode, quotas={"gpu": 3})
    spans = sorted((sim.admitted_at[i], +1) for i in sim.admitted_at) + sorted(
        (sim.pods[i].ended_at, -1) for i in sim.admitted_at)
    held = peak = 0
    for _, d in sorted(spans, key=lambda e: (e[0], e[1])):
        held += d
        peak = max(peak, held)
    assert peak == 3 and len(sim.admitted_at) == 20


def test_fair_share_admits_the_group_that_used_less_where_fifo_keeps_the_order():
    rows = [(0, "a0", "gpu", 0, "a"), (10, "a1", "gpu", 0, "a"), (20, "a2", "gpu", 0, "a"), (30, "b1", "gpu", 0, "b")]
    fifo, _ = run(rows, "fifo")
    fair, _ = run(rows, "fair_share")
    assert sorted(fifo.admitted_at, key=fifo.admitted_at.get) == [0, 1, 2, 3]
    assert sorted(fair.admitted_at, key=fair.admitted_at.get) == [0, 3, 1, 2]  # b1 overtakes: a has used 30 min


def test_the_shown_wait_uses_the_max_age_deadline_and_the_learned_session_length():
    sim, r = run(TWO, "fifo")
    shown = sim.shown[1]
    assert (shown.position, shown.waiting) == (1, 1)
    assert shown.at_latest == sim.admitted_at[0] + MAX_AGE  # max_age counts from the spawn
    assert shown.expected == 60 + 3600  # a0's pod still Pending (GPU node booting), Lifetimes' prior of one hour
    assert r["shown"] == 1 and r["past_at_latest"] == 0
    assert r["error_p50_min"] == pytest.approx((sim.admitted_at[1] - shown.expected) / 60)


def test_a_user_waiting_for_a_profile_has_one_place():
    rows = TWO + ((120, "b0", "gpu", 600, "b"),)
    _, r = run(rows, "fair_share")
    assert r["merged"] == 1 and r["gpu_sessions"] == 2


def test_jain():
    assert jain([1, 1]) == 1 and jain([1, 0]) == 0.5 and jain([2, 1]) == pytest.approx(0.9)


CPU_ONLY = (Pool("cpu", POOLS[0].allocatable, {}, min_nodes=0), POOLS[1])


def test_consolidation_stops_idle_servers_so_the_node_goes_and_never_an_active_one():
    # 10 small sessions of 10 minutes and one of 5 hours on one node of a pool without a minimum; the idle ones sit
    # an hour before the culler's timeout
    rows = [(i, f"u{i}", "small", 600) for i in range(10)] + [(20, "worker", "small", 5 * 3600)]
    plain = Simulation(trace(*rows), PLACEMENTS["MostAllocated"], CPU_ONLY)
    plain.run()
    sim = ConsolidationSimulation(trace(*rows), PLACEMENTS["MostAllocated"], policies=policies(600, 25),
                                  come_back=0.0, pools=CPU_ONLY)
    r = sim.run()
    c = sim.consolidation_results()
    assert c["stops_per_day"] == 11 and c["came_back"] == 0
    worker = sim.pods[10]
    assert all(p.ended_at < p.bound_at + 600 + 3600 for p in sim.pods[:10])  # stopped while the worker worked
    assert 35 <= c["lost_idle_p50_min"] <= 45  # stopped after 10 idle + up to 5 (sweep) + 10 (warning) minutes
    # the worker: never while active; once idle and alone on the node, stopped like the others
    assert worker.bound_at + 5 * 3600 + 20 * 60 <= worker.ended_at <= worker.bound_at + 5 * 3600 + 26 * 60
    assert r["node_hours"] < plain.results()["node_hours"] - 0.5

    alone = [(i, f"u{i}", "small", 600) for i in range(10)]
    plain = Simulation(trace(*alone), PLACEMENTS["MostAllocated"], CPU_ONLY).run()
    sim = ConsolidationSimulation(trace(*alone), PLACEMENTS["MostAllocated"], policies=policies(600, 25),
                                  come_back=0.0, pools=CPU_ONLY)
    assert sim.run()["node_hours"] < plain["node_hours"] - 0.5  # the node goes about 40 minutes earlier


def test_users_who_always_come_back_are_never_stopped():
    rows = [(i, f"u{i}", "small", 600) for i in range(10)]
    sim = ConsolidationSimulation(trace(*rows), PLACEMENTS["MostAllocated"], policies=policies(600, 25),
                                  come_back=1.0, pools=CPU_ONLY)
    sim.run()
    c = sim.consolidation_results()
    assert c["stops_per_day"] == 0 and c["came_back"] == c["warnings"] > 0


def test_the_traces_with_groups():
    for name, groups in (("lab-day", {"vision", "nlp"}), ("course-day", {"course", "research"})):
        t = load_trace(TRACES_DIR / f"{name}.jsonl")
        assert {a.group for a in t} == groups
        gpu = [a for a in t if a.profile.startswith("gpu")]
        by_group = {g: sum(1 for a in gpu if a.group == g) for g in groups}
        assert max(by_group.values()) >= 1.5 * min(by_group.values())  # unequal demand


def test_fairness_against_weights_and_against_what_each_group_asked():
    # one slot, 1-hour servers (30 min work + 30 min idle); a queues three behind its running one, b one; the day
    # ends at the last arrival (3 h). b asks for 1 h of the 3: entitled to it, a to the rest
    rows = [(i * 10, f"a{i}", "gpu", 1800, "a") for i in range(4)] + [(40, "b0", "gpu", 1800, "b"),
                                                                      (3 * 3600, "a9", "gpu", 1800, "a")]
    _, fifo = run(rows, "fifo")
    _, fair = run(rows, "fair_share")
    assert fifo["group_shares"]["b"] == 0 and fifo["jain_entitled"] == pytest.approx(0.5)
    assert fair["group_shares"]["b"] == pytest.approx(1 / 3, abs=0.01)
    assert fair["jain_entitled"] == pytest.approx(1.0, abs=0.01)
    assert fair["jain"] == pytest.approx(jain([2 / 3 / 0.5, 1 / 3 / 0.5]), abs=0.01)
