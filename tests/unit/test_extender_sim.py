"""The churn simulation (bench/sim_churn.py): trace files are validated line by line, and the placements behave as
their names say on small hand-made traces (the full-day figures are a bench: ``python -m bench bench_sim``)."""

from __future__ import annotations

import json

import pytest

from bench.sim_churn import (PLACEMENTS, TraceError, UNTAINTED_POOLS, Simulation, load_trace, parse_trace,
                             simulate)


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
    assert len(TRACES) == 2
    for path in TRACES:
        assert path.stat().st_size < 2 * 2**20
        trace = load_trace(path)
        assert len(trace) > 1000 and trace == sorted(trace, key=lambda a: a.time)


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
