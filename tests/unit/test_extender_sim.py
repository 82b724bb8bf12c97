"""The churn simulation (bench/sim_churn.py): trace files are validated line by line, and the placements behave as
their names say on small hand-made traces (the full-day figures are a bench: ``python -m bench bench_sim``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.sim_churn import (PLACEMENTS, TraceError, UNTAINTED_POOLS, Simulation, load_trace, parse_trace,
                             simulate)


TRACES_DIR = Path(__file__).resolve().parents[2] / "bench" / "traces"


def line(**kw) -> str:
    rec = {"time": 0, "user": "u1", "profile": "small", "duration": 600}
    rec.update(kw)
    return json.dumps({k: v for k, v in rec.items() if v is not ...})


@pytest.mark.parametrize("bad, message", [
    ("{not json", "t.jsonl:2: not a JSON object"),
    ("[1, 2]", "t.jsonl:2: expected an object {time, user, profile, duration}"),
    (line(time="09:00"), "t.jsonl:2: field 'time': expected a non-negative number of seconds, got '09:00'"),
    (line(time=-5), "t.jsonl:2: field 'time': expected a non-negative number of seconds, got -5"),
    (line(duration=None), "t.jsonl:2: field 'duration': expected a non-negative number of seconds, got None"),
    (line(duration=True), "t.jsonl:2: field 'duration'"),
    (line(user=""), "t.jsonl:2: field 'user': expected a user name (string), got ''"),
    (line(user=...), "t.jsonl:2: field 'user'"),
    (line(profile="huge"), "t.jsonl:2: field 'profile': 'huge' is not a profile of the simulation; choose one of: "
                           "small, medium, gpu, gpu-2"),
])
def test_a_malformed_trace_names_the_line_and_field(bad, message):
    with pytest.raises(TraceError) as e:
        parse_trace(line() + "\n" + bad + "\n", name="t.jsonl")
    assert message in str(e.value)


def test_shipped_traces_parse_and_are_small():
    from bench.bench_sim import TRACES
    assert len(TRACES) == 4
    for path in TRACES:
        assert path.stat().st_size < 2 * 2**20
        trace = load_trace(path)
        assert len(trace) > 800 and trace == sorted(trace, key=lambda a: a.time)


def _burst(n: int, profile: str = "small", at: float = 0.0, duration: float = 3600) -> list:
    return parse_trace("\n".join(line(time=at + i, user=f"u{at}-{i}", profile=profile, duration=duration)
                                 for i in range(n)))


def test_cpu_pods_stay_off_gpu_nodes_only_with_hubfleet():
    # one GPU pod brings up a GPU node; then more CPU pods than the two CPU nodes hold: the built-in placements put
    # the overflow on the (untainted) GPU node, hubfleet waits for a CPU node instead
    trace = sorted(_burst(1, "gpu") + _burst(80, at=60), key=lambda a: a.time)
    least = simulate(trace, "LeastAllocated", UNTAINTED_POOLS)
    most = simulate(trace, "MostAllocated", UNTAINTED_POOLS)
    ours = simulate(trace, "hubfleet", UNTAINTED_POOLS)
    assert least["cpu_pods_on_gpu_nodes"] > 0 and most["cpu_pods_on_gpu_nodes"] > 0
    assert ours["cpu_pods_on_gpu_nodes"] == 0 and ours["gpu_node_hours_on_cpu_pods"] == 0
    assert ours["never_bound"] == 0


def test_pending_pods_trigger_a_scale_up_and_empty_nodes_go():
    sim = Simulation(_burst(100), PLACEMENTS["MostAllocated"])
    r = sim.run()
    assert r["never_bound"] == 0
    assert r["peak_nodes"] >= 4  # 100 x 2Gi on 64Gi nodes: 4 nodes, 2 at the start
    assert 30 <= r["pending_max_s"] <= 200  # waited for the scale-up (30 s pending, 10 s scan, 90 s boot)
    live = [n for n in sim.nodes.values() if n.removed_at is None]
    assert len(live) == 2  # back to the pool minimum once every pod ended and the nodes were empty 10 minutes


def test_most_allocated_packs_where_least_allocated_spreads():
    trace = _burst(10, duration=600)
    most, least = Simulation(trace, PLACEMENTS["MostAllocated"]), Simulation(trace, PLACEMENTS["LeastAllocated"])
    most.run(), least.run()
    assert len({p.node for p in most.pods}) == 1
    assert len({p.node for p in least.pods}) == 2


def test_gpu_pods_do_not_fragment_where_best_fit_does():
    # 1-GPU and 2-GPU sessions on 4-GPU nodes: packing by allocation (MostAllocated, i.e. best fit) spends the free
    # pairs and leaves lone free GPUs on two nodes while a 2-GPU pod waits; hubfleet keeps a pair free
    trace = parse_trace("\n".join(json.dumps(r) for r in [
        {"time": 600, "user": "u0", "profile": "gpu", "duration": 600},
        {"time": 1200, "user": "u1", "profile": "gpu-2", "duration": 600},
        {"time": 1800, "user": "u2", "profile": "gpu-2", "duration": 3600},
        {"time": 2400, "user": "u3", "profile": "gpu", "duration": 600},
        {"time": 2700, "user": "u4", "profile": "gpu", "duration": 7200},
        {"time": 3300, "user": "u5", "profile": "gpu-2", "duration": 3600}]))
    most, ours = simulate(trace, "MostAllocated"), simulate(trace, "hubfleet")
    assert most["fragmentation_pendings"] == 1
    assert ours["fragmentation_pendings"] == 0 and ours["never_bound"] == 0
    assert ours["node_hours"] <= most["node_hours"]


def test_fragmentation_counts_only_pods_that_would_fit_in_the_free_gpus_in_total():
    # one node with 3 x 1-GPU running; a 2-GPU pod arrives with 1 GPU free in total: it waits for a scale-up,
    # which is not fragmentation
    trace = sorted(_burst(3, "gpu", duration=7200) + _burst(1, "gpu-2", at=600), key=lambda a: a.time)
    for placement in ("MostAllocated", "hubfleet"):
        r = simulate(trace, placement)
        assert r["fragmentation_pendings"] == 0 and r["never_bound"] == 0 and r["peak_nodes"] == 2 + 2, placement


def test_the_bound_is_below_every_placement_and_counts_boot_and_tail():
    from bench.sim_churn import lower_bound
    trace = load_trace(TRACES_DIR / "school-day.jsonl")[:500]
    bound = lower_bound(trace)
    for placement in PLACEMENTS:
        r = simulate(trace, placement)
        assert bound <= r["node_hours"], placement
        assert r["bound_own_node_hours"] <= r["node_hours"], placement
    # one 1-GPU session of 1 h (+30 min culler) at 00:10: the GPU node boots 90 s first; the CPU pool's two nodes
    # stay from 0 to the end
    one = _burst(1, "gpu", at=600, duration=1800)
    assert lower_bound(one) == pytest.approx((2 * (600 + 3600) + (90 + 3600)) / 3600)
    assert simulate(one, "hubfleet")["node_hours"] > lower_bound(one)
    # a node that emptied is kept 10 minutes: two sessions 5 minutes apart need the node in between too
    two = _burst(1, "gpu", at=600, duration=0) + _burst(1, "gpu", at=600 + 1800 + 300, duration=0)
    assert lower_bound(two) == pytest.approx((2 * (600 + 3900) + 90 + 3900) / 3600)
    # without the GPU taint CPU pods may use GPU nodes: no bound
    assert lower_bound(one, UNTAINTED_POOLS) is None


def test_the_oracle_beats_most_allocated_by_knowing_when_sessions_end():
    # the first 800 sessions of the school day (to its 09:00 class and beyond): knowing every end, the oracle puts
    # sessions that end together on the same nodes
    trace = load_trace(TRACES_DIR / "school-day.jsonl")[:800]
    most, oracle = simulate(trace, "MostAllocated"), simulate(trace, "oracle")
    assert oracle["node_hours"] < 0.95 * most["node_hours"]
    assert oracle["fragmentation_pendings"] == 0 and oracle["cpu_pods_on_gpu_nodes"] == 0
