"""Generate the two shipped churn traces (seeded, so the files are reproducible):
``python -m bench.gen_traces`` writes ``bench/traces/*.jsonl`` (see bench/sim_churn.py for the format).

- ``school-day``: 2,000 users; classes at 09:00 (300 students within 10 minutes), 11:00 (200) and 14:00 (250) on
  the small profile for ~75 minutes, plus staff and researchers all day (small, medium, GPU).
- ``research-day``: 800 researchers over a working day with a 10:00 GPU workshop (60 within 10 minutes), long
  medium sessions and GPU bursts, plus a lunchtime tutorial (120 on small).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent / "traces"


def _session(rng: random.Random, profile: str) -> float:
    median = {"small": 45 * 60, "medium": 3 * 3600, "gpu": 40 * 60, "gpu-2": 60 * 60}[profile]
    return min(10 * 3600, rng.lognormvariate(0, 0.8) * median)


def _background(rng, users, start, end, n, mix):
    out = []
    for _ in range(n):
        t = rng.uniform(start, end)
        profile = rng.choices(list(mix), weights=list(mix.values()))[0]
        out.append((t, rng.choice(users), profile, _session(rng, profile)))
    return out


def _class(rng, users, at, n, minutes=10, profile="small", length=75 * 60):
    return [(at + rng.uniform(0, minutes * 60), u, profile, max(600, rng.gauss(length, 600)))
            for u in rng.sample(users, n)]


def _no_overlap(records):
    """One server per user: a user's next session starts after their previous one ended."""
    busy: dict[str, float] = {}
    out = []
    for t, user, profile, duration in sorted(records):
        if busy.get(user, -1) > t:
            continue
        busy[user] = t + duration + 3600
        out.append({"time": round(t, 1), "user": user, "profile": profile, "duration": round(duration, 1)})
    return out


def school_day(rng: random.Random) -> list[dict]:
    users = [f"u{i:04d}" for i in range(2000)]
    students, staff = users[:1500], users[1500:]
    h = 3600
    records = (_class(rng, students, 9 * h, 300) + _class(rng, students, 11 * h, 200)
               + _class(rng, students, 14 * h, 250)
               + _background(rng, students, 8 * h, 20 * h, 600, {"small": 1.0})
               + _background(rng, staff, 7 * h, 19 * h, 700, {"small": 0.45, "medium": 0.4, "gpu": 0.12,
                                                               "gpu-2": 0.03}))
    return _no_overlap(records)


def research_day(rng: random.Random) -> list[dict]:
    users = [f"r{i:03d}" for i in range(800)]
    h = 3600
    records = (_class(rng, users, 10 * h, 60, profile="gpu", length=90 * 60)
               + _class(rng, users, 12.5 * h, 120, profile="small", length=60 * 60)
               + _background(rng, users, 7 * h, 22 * h, 1300, {"small": 0.35, "medium": 0.4, "gpu": 0.2,
                                                                "gpu-2": 0.05}))
    return _no_overlap(records)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, fn, seed in (("school-day", school_day, 13), ("research-day", research_day, 31)):
        records = fn(random.Random(seed))
        path = HERE / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        print(f"{path}: {len(records)} sessions, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
