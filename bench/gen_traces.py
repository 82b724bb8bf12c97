"""Generate the two shipped churn traces (seeded, so the files are reproducible):
``python -m bench.gen_traces`` writes ``bench/traces/*.jsonl`` (see bench/sim_churn.py for the format).

- ``school-day``: 2,000 users; classes at 09:00 (300 students within 10 minutes), 11:00 (200) and 14:00 (250) on
  the small profile for ~75 minutes, plus staff and researchers all day (small, medium, GPU).
- ``research-day``: 800 researchers over a working day with a 10:00 GPU workshop (60 within 10 minutes), long
  medium sessions and GPU bursts, plus a lunchtime tutorial (120 on small).
- ``lab-day`` (two groups, equal weights): ``vision`` (300 users) asks for twice the GPU sessions of ``nlp``
  (100 users) all day; both ask for more than half the GPU quota; CPU sessions of both beside.
- ``course-day`` (two groups, weights course 1 : research 2 in the bench): ``course`` (600 students) with GPU labs
  at 10:00 and 14:00 and GPU homework all afternoon, ``research`` (120) with steady GPU and long medium sessions.

The last two carry each session's ``group``; the first two carry none.
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


def _no_overlap(records, groups=None):
    """One server per user: a user's next session starts after their previous one ended."""
    busy: dict[str, float] = {}
    out = []
    for t, user, profile, duration in sorted(records):
        if busy.get(user, -1) > t:
            continue
        busy[user] = t + duration + 3600
        rec = {"time": round(t, 1), "user": user, "profile": profile, "duration": round(duration, 1)}
        if groups is not None:
            rec["group"] = groups(user)
        out.append(rec)
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


def lab_day(rng: random.Random) -> list[dict]:
    vision = [f"v{i:03d}" for i in range(300)]
    nlp = [f"n{i:03d}" for i in range(100)]
    h = 3600
    records = (_background(rng, vision, 8 * h, 19 * h, 320, {"gpu": 0.85, "gpu-2": 0.15})
               + _background(rng, nlp, 8 * h, 19 * h, 160, {"gpu": 0.85, "gpu-2": 0.15})
               + _background(rng, vision + nlp, 7 * h, 21 * h, 900, {"small": 0.6, "medium": 0.4}))
    return _no_overlap(records, groups=lambda u: "vision" if u[0] == "v" else "nlp")


def course_day(rng: random.Random) -> list[dict]:
    course = [f"c{i:03d}" for i in range(600)]
    research = [f"s{i:03d}" for i in range(120)]
    h = 3600
    records = (_class(rng, course, 10 * h, 40, profile="gpu", length=60 * 60)
               + _class(rng, course, 14 * h, 40, profile="gpu", length=60 * 60)
               + _background(rng, course, 15 * h, 22 * h, 160, {"gpu": 1.0})
               + _background(rng, course, 8 * h, 22 * h, 900, {"small": 1.0})
               + _background(rng, research, 8 * h, 20 * h, 200, {"gpu": 0.75, "gpu-2": 0.25})
               + _background(rng, research, 7 * h, 19 * h, 150, {"medium": 1.0}))
    return _no_overlap(records, groups=lambda u: "course" if u[0] == "c" else "research")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, fn, seed in (("school-day", school_day, 13), ("research-day", research_day, 31),
                           ("lab-day", lab_day, 47), ("course-day", course_day, 59)):
        records = fn(random.Random(seed))
        path = HERE / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        print(f"{path}: {len(records)} sessions, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
