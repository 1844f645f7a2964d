"""Engine speed: events per wall second and simulated seconds per wall second, one core.

Runs the seed configuration (data/published/seed_thrash.csv: 256 cores, 500 threads, 16 MB files,
memory.high 1 GiB / memory.max 1.2 GiB, 1 MB readahead as conf/scenario/seed_thrash.yaml) and the scaled-down one
(32 cores, 64 threads, 128/154 MB), and the swapin test (5 writers, 5 readers, 100 MB on
zram), baseline and vma_retry. Compilation is excluded (a
tiny run first loads or builds the cache); the figures cover the whole simulated time,
warm-up included. Peak RSS is the process's maximum resident set.

    python benchmarks/engine.py [--duration 2.0] [--only small|seed]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import core

SEED = {"machine": {"cores": 256}, "workload": {"threads": 500, "file_mb": 16},
        "memcg": {"high_mb": 1024, "max_mb": 1229}, "device": {"ra_kb": 1024}}
SMALL = {"machine": {"cores": 32}, "workload": {"threads": 64, "file_mb": 16},
         "memcg": {"high_mb": 128, "max_mb": 154}, "device": {"ra_kb": 1024}}
# The series' swap test as published (scenario seed_swapin), on zram.
SWAPIN = {"machine": {"cores": 8},
          "workload": {"name": "swapin", "writers": 5, "readers": 5, "anon_mb": 100},
          "memcg": {"swap_max_mb": 1024}, "device": {"swap": "zram", "sparse": False}}


def measure(name: str, base: dict, policy: str, duration: float) -> None:
    p = core.Params.from_dict({**base, "policy": {"name": policy},
                               "sim": {"duration_s": duration, "warmup_s": duration / 4}})
    t0 = time.perf_counter()
    row = core.simulate(p, 1)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:6s} {policy:10s} sim {duration:5.2f} s  wall {wall:7.2f} s  "
          f"events {row['events']:>10,d}  events/s {row['events'] / wall:>10,.0f}  "
          f"sim-s/wall-s {duration / wall:6.3f}  rounds/s {row['throughput_rounds_s']:8.1f}  "
          f"peak RSS {rss_mb:6.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--only", choices=["small", "seed", "swapin"])
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    except (AttributeError, OSError):
        pass
    # Compile (or load the cache) outside the measurement.
    core.simulate(core.Params.from_dict({"machine": {"cores": 2}, "workload": {
        "threads": 2, "file_mb": 1}, "sim": {"duration_s": 0.01, "warmup_s": 0.0}}), 0)
    for name, base in (("small", SMALL), ("seed", SEED), ("swapin", SWAPIN)):
        if args.only and args.only != name:
            continue
        for policy in ("baseline", "vma_retry"):
            measure(name, base, policy, args.duration)


if __name__ == "__main__":
    main()
