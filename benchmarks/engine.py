"""Engine speed: events per wall second and simulated seconds per wall second, one core.

Runs the presets of conf/scenario/ as they ship (seed_thrash, seed_thrash_small,
seed_swapin, app_launch) under baseline and vma_retry, each for `--duration` simulated
seconds (warm-up a quarter of it; app_launch ends when the launch does). Compilation is
excluded (a tiny run first loads or builds the cache); the figures cover the whole
simulated time, warm-up included. Peak RSS is the process's maximum resident set so far.

    python benchmarks/engine.py [--duration 20] [--only seed_thrash]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import core
from sweep.app import scenario_params

PRESETS = ("seed_thrash", "seed_thrash_small", "seed_swapin", "app_launch")


def measure(name: str, base: dict, policy: str, duration: float) -> None:
    sim = {"duration_s": duration, "warmup_s": duration / 4}
    if name == "app_launch":
        sim = {}
    d = {g: dict(v) for g, v in base.items()}
    d["policy"] = {"name": policy}
    d.setdefault("sim", {}).update(sim)
    p = core.Params.from_dict(d)
    t0 = time.perf_counter()
    row = core.simulate(p, 1)
    wall = time.perf_counter() - t0
    simulated = row["sim_time_s"] + p.sim.warmup_s
    if name == "app_launch":
        simulated = row["launch_ms"] / 1e3 if row["launch_ms"] else p.sim.duration_s
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:18s} {policy:10s} sim {simulated:7.2f} s  wall {wall:7.2f} s  "
          f"events {row['events']:>11,d}  events/s {row['events'] / wall:>10,.0f}  "
          f"sim-s/wall-s {simulated / wall:6.2f}  peak RSS {rss_mb:6.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--only", choices=PRESETS)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    except (AttributeError, OSError):
        pass
    # Compile (or load the cache) outside the measurement.
    core.simulate(core.Params.from_dict({"machine": {"cores": 2}, "workload": {
        "threads": 2, "file_mb": 1}, "sim": {"duration_s": 0.01, "warmup_s": 0.0}}), 0)
    presets = scenario_params()
    for name in PRESETS:
        if args.only and args.only != name:
            continue
        for policy in ("baseline", "vma_retry"):
            measure(name, presets[name], policy, args.duration)


if __name__ == "__main__":
    main()
