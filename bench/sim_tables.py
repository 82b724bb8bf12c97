"""The GPU-scarcity and consolidation tables of ``python -m bench bench_sim`` (bench/sim_gpu.py,
bench/sim_consolidate.py), on every shipped trace."""

from __future__ import annotations

from pathlib import Path

from bench.sim_churn import PLACEMENTS, load_trace, simulate
from bench.sim_consolidate import (COME_BACK, SWEEP, WARN_BEFORE, ShortTimeoutSimulation, policies,
                                   simulate_consolidation)
from bench.sim_gpu import ADMIT_LATENCY, MAX_AGE, MODES, RETRY, SCARCITY, simulate_gpu

IDLE_AFTER = 600.0
THRESHOLD = 25.0  # node_requests_below, percent: the example
LEVER = (50.0, 75.0, 100.0)  # the same with more of the node left requested


def gpu_table(traces: list[Path]) -> list[dict]:
    rows = []
    for path in traces:
        quotas, weights = SCARCITY.get(path.stem, ({"gpu": 8, "gpu-2": 3}, {}))
        trace = load_trace(path)
        for mode in MODES:
            r = simulate_gpu(trace, quotas=quotas, mode=mode, weights=weights)
            rows.append({"trace": path.stem, "mode": mode, "quotas": quotas, "weights": weights,
                         **{k: v for k, v in r.items() if not isinstance(v, dict) or k == "group_shares"}})
    head = (f"{'trace':<14}{'mode':<12}{'GPU sess':>9}{'to GPU p50/p95/max min':>24}{'mean':>6}"
            f"{'idle slot-h':>12}{'GPU-h shares':>24}{'Jain w/e':>11}{'shown-wait error p5/p50/p95 min':>33}"
            f"{'past at-latest':>16}")
    print(f"\nGPU scarcity: quotas per trace, retry every {RETRY[0] / 60:.0f}-{RETRY[1] / 60:.0f} min vs the queue "
          f"(admission {ADMIT_LATENCY:g} s after a stop), GPU max_age {MAX_AGE / 3600:g} h, hubfleet placement")
    print(head)
    print("-" * len(head))
    for r in rows:
        shares = "/".join(f"{g} {s:.2f}" for g, s in r["group_shares"].items())
        error = ("-" if not r["shown"] else
                 f"{r['error_p5_min']:+.0f}/{r['error_p50_min']:+.0f}/{r['error_p95_min']:+.0f} (n={r['shown']})")
        late = "-" if not r["with_at_latest"] else f"{r['past_at_latest']}/{r['with_at_latest']}"
        print(f"{r['trace']:<14}{r['mode']:<12}{r['gpu_sessions']:>9}"
              f"{r['wait_p50_min']:>10.0f}/{r['wait_p95_min']:.0f}/{r['wait_max_min']:.0f}".ljust(47)
              + f"{r['mean_wait_min']:>6.0f}{r['idle_slot_hours']:>12.2f}{shares:>24}"
              f"{r['jain']:>6.2f}/{r['jain_entitled']:.2f}{error:>33}{late:>16}")
    print("(to GPU: arrival to the pod bound on a node; idle slot-h: quota slots free while someone of that profile "
          "waited; shares: GPU-hours per group to the day's last GPU arrival;\n Jain w: over shares / weight shares, "
          "e: over GPU-hours / weighted max-min entitlement (a group asking less than its share is entitled to what "
          "it asked);\n shown-wait error: admission minus the expected admission shown at joining (negative: "
          "earlier than shown); past at-latest: admitted after the shown 'at the latest')")
    return rows


def consolidation_table(traces: list[Path]) -> list[dict]:
    rows = []
    runs = [("MostAllocated", "MostAllocated", None, COME_BACK), ("placement alone", "hubfleet", None, COME_BACK),
            ("consolidation alone", "MostAllocated", THRESHOLD, COME_BACK),
            ("both", "hubfleet", THRESHOLD, COME_BACK),
            ("both, come back 0 %", "hubfleet", THRESHOLD, 0.0), ("both, come back 50 %", "hubfleet", THRESHOLD, 0.5)]
    runs += [(f"both, below {t:g} %", "hubfleet", t, COME_BACK) for t in LEVER]
    runs += [(f"consolidation, below {t:g} %", "MostAllocated", t, COME_BACK) for t in LEVER]
    runs += [("ref: idle timeout 10 min", "MostAllocated", "timeout", 0.0)]
    for path in traces:
        trace = load_trace(path)
        group = []
        for label, placement, below, come_back in runs:
            if below is None:
                r = simulate(trace, placement)
            elif below == "timeout":
                r = ShortTimeoutSimulation(trace, PLACEMENTS[placement], idle_after=IDLE_AFTER).run()
            else:
                r = simulate_consolidation(trace, PLACEMENTS[placement], policies=policies(IDLE_AFTER, below),
                                           come_back=come_back)
            group.append({"trace": path.stem, "run": label, "placement": placement, "below": below,
                          "come_back": come_back, **{k: v for k, v in r.items() if not isinstance(v, dict)}})
        base = group[0]["node_hours"]
        for r in group:
            r["vs_most_allocated"] = r["node_hours"] / base - 1
        rows += group
    head = (f"{'trace':<14}{'run':<28}{'node-h':>8}{'vs MostAlloc':>14}{'stops/day':>11}{'lost idle p50/p95 min':>23}"
            f"{'came back/warned':>18}{'idle reached':>14}")
    print(f"\nConsolidation: idle_after {IDLE_AFTER / 60:g} min, node_requests_below {THRESHOLD:g} % (what stays "
          f"requested), warn_before {WARN_BEFORE / 60:g} min, sweep every {SWEEP / 60:g} min, a warned user comes "
          f"back within the warning in {COME_BACK:.0%} of cases (unless the row says otherwise)")
    print(head)
    print("-" * len(head))
    for r in rows:
        cost = ("-", "-", "-", "-") if r["below"] in (None, "timeout") else (
            f"{r['stops_per_day']:.0f}", f"{r['lost_idle_p50_min']:.0f}/{r['lost_idle_p95_min']:.0f}",
            f"{r['came_back']}/{r['warnings']}", f"{r['idle_reached']:.0%}")
        print(f"{r['trace']:<14}{r['run']:<28}{r['node_hours']:>8.0f}{r['vs_most_allocated']:>+13.1%}{cost[0]:>12}"
              f"{cost[1]:>23}{cost[2]:>18}{cost[3]:>14}")
    print("(lost idle: the normal cull time minus the consolidation stop, per stopped server; came back: warnings "
          "that lapsed because the user was active within them;\n idle reached: of the servers idle >= idle_after at a "
          "sweep, the share on a node being emptied; 'below N %': node_requests_below N; 100 % = every idle server "
          "after idle_after, i.e. a shorter idle timeout;\n ref: every server stopped 10 min after its user's last activity, "
          "without a warning: the most stopping idle servers can save)")
    return rows
