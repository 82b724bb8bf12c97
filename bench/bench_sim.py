"""The churn simulation (bench/sim_churn.py) on the shipped traces: kube-scheduler's defaults (LeastAllocated),
z2jh's user-scheduler (MostAllocated cpu:1 memory:1) and hubfleet (its extender's own filter/prioritize code), with
the cluster-autoscaler model, beside the offline oracle and the lower bound (bench/sim_bound.py). ``python -m bench
bench_sim`` (or ``python -m bench.bench_sim TRACE...``; ``python -m bench.bench_sim --seeds N``: totals over 2N other
generated traces).

Two cluster variants: the GPU pool tainted (as GKE/EKS GPU pools are; the headline) and untainted (CPU pods may land
on GPU nodes unless a placement keeps them off). Then two more tables (bench/sim_tables.py): GPU scarcity (retry
against the queue, FIFO against fair share; bench/sim_gpu.py) and consolidation (bench/sim_consolidate.py). Results
go to stdout and test-artifacts/bench_sim.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench._common import save_results
from bench.sim_churn import PLACEMENTS, POOLS, UNTAINTED_POOLS, load_trace, lower_bound_by_pool, simulate
from bench.sim_tables import consolidation_table, gpu_table

TRACES = sorted((Path(__file__).parent / "traces").glob("*.jsonl"))
COLUMNS = (("node_hours", "node-h", "{:.0f}"), ("pool_node_hours", "cpu+gpu pools", "{0[cpu]:.0f}+{0[gpu]:.0f}"),
           ("peak_nodes", "peak", "{}"),
           ("gpu_node_hours_on_cpu_pods", "CPU-pod-h on GPU", "{:.0f}"),
           ("fragmentation_pendings", "GPU frag", "{}"), ("pending_p95_s", "p95 Pending", "{:.0f}s"),
           ("pending_max_s", "max Pending", "{:.0f}s"), ("preemptions", "preempt", "{}"))


def main(paths: list[str] | None = None) -> None:
    traces = [Path(p) for p in paths] if paths else TRACES
    rows = []
    for pools_name, pools in (("GPU pool tainted", POOLS), ("GPU pool untainted", UNTAINTED_POOLS)):
        for path in traces:
            trace = load_trace(path)
            group = []
            for placement in PLACEMENTS:
                t = time.perf_counter()
                r = simulate(trace, placement, pools)
                group.append({"cluster": pools_name, "trace": path.stem, "placement": placement,
                              "sessions": len(trace), "seconds": time.perf_counter() - t, **r})
                own = r["bound_own_node_hours"]
                if own is not None and own > r["node_hours"]:
                    raise AssertionError(f"{path.stem}/{placement}: bound {own:.1f} above the run "
                                         f"{r['node_hours']:.1f}")
            bound = lower_bound_by_pool(trace, pools)
            if bound is not None:
                group.append({"cluster": pools_name, "trace": path.stem, "placement": "bound",
                              "node_hours": sum(bound.values()), "pool_node_hours": bound})
            base = next(r["node_hours"] for r in group if r["placement"] == "MostAllocated")
            for r in group:
                r["vs_most_allocated"] = r["node_hours"] / base - 1
            rows += group
    head = f"{'cluster':<20}{'trace':<14}{'placement':<16}" + "".join(f"{c[1]:>18}" for c in COLUMNS) + \
        f"{'vs MostAlloc':>14}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['cluster']:<20}{r['trace']:<14}{r['placement']:<16}"
              + "".join(f"{fmt.format(r[key]) if key in r else '-':>18}" for key, _, fmt in COLUMNS)
              + f"{r['vs_most_allocated']:>+13.1%}")
    print("(node-h: node-hours of the day incl. boot and the 10 min empty before removal; CPU-pod-h on GPU: hours "
          "CPU-only pods ran on GPU nodes; GPU frag: GPU pods Pending while enough GPUs were free in total;\n"
          " oracle: knows when each session ends (not runnable); bound: no placement can do better, pods bound on "
          "arrival and packed as a fluid, boot + 10 min tail per node kept (bench/sim_bound.py); none without the "
          "GPU taint, where CPU pods may use GPU nodes)")
    gpu = gpu_table(traces)
    consolidation = consolidation_table(traces)
    save_results("bench_sim", {"rows": rows, "gpu": gpu, "consolidation": consolidation})


def seeds(n: int) -> None:
    """Robustness: the shipped traces' generators with `n` other seeds each (100, 101, ...), totals per placement,
    so that a rule tuned to the two shipped files shows here."""
    import json
    import random

    from bench import gen_traces
    from bench.sim_churn import parse_trace
    totals: dict[str, dict] = {p: {"node_hours": 0.0, "fragmentation_pendings": 0, "traces_fragmented": 0}
                               for p in PLACEMENTS}
    bound = 0.0
    for seed in range(100, 100 + n):
        for generate in (gen_traces.school_day, gen_traces.research_day):
            trace = parse_trace("\n".join(json.dumps(r) for r in generate(random.Random(seed))))
            here = sum(lower_bound_by_pool(trace).values())
            bound += here
            for placement, total in totals.items():
                r = simulate(trace, placement)
                if r["node_hours"] < here or r["bound_own_node_hours"] > r["node_hours"]:
                    print(f"  seed {seed} {generate.__name__} {placement}: {r['node_hours']:.1f} node-h, below the "
                          f"bound {here:.1f} or its own {r['bound_own_node_hours']:.1f}")
                total["node_hours"] += r["node_hours"]
                total["fragmentation_pendings"] += r["fragmentation_pendings"]
                total["traces_fragmented"] += r["fragmentation_pendings"] > 0
    base = totals["MostAllocated"]["node_hours"]
    print(f"{2 * n} generated traces (seeds 100-{99 + n}), GPU pool tainted:")
    for placement, t in totals.items():
        print(f"  {placement:<16}{t['node_hours']:>9.0f} node-h ({t['node_hours'] / base - 1:+.1%})"
              f"{t['fragmentation_pendings']:>5} GPU frag pendings in {t['traces_fragmented']} traces")
    print(f"  {'bound':<16}{bound:>9.0f} node-h ({bound / base - 1:+.1%})")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1:2] == ["--seeds"]:
        seeds(int(sys.argv[2]))
    else:
        main(sys.argv[1:])
