"""Engine speed: events per wall second and simulated seconds per wall second, one core.

Runs the presets of conf/scenario/ as they ship (seed_thrash, seed_thrash_small,
seed_swapin, app_launch) under baseline and vma_retry, each for `--duration` simulated
seconds (warm-up a quarter of it; app_launch ends when the launch does), `--repeat` times.
Compilation is excluded (a tiny run first loads or builds the cache); the figures cover the
whole simulated time, warm-up included.

- events/s: the engine's own rate, events over the time of the event loop (the row's
  `events_per_s`); building the point's arrays is not events.
- sim-s/wall-s: simulated seconds over the wall time of the whole point, arrays built and
  row read included: what a user waits for. `build` is the arrays' part of it (on a
  fresh VM the first touch of a few hundred MB can take 0.5 s; later, about 0.1 s).
- Each figure is the median of the repeats, with their range: one run of this 2-CPU VM
  varies by up to 20 % from the next (the same code, minutes apart).
- Peak RSS is the maximum resident set of a process that ran that preset alone (each
  preset runs in a fresh interpreter: Python, numba and the loaded simulator are ~0.3 GB
  of it), what one Ray worker needs for the point.
- `--cold-start` also times the main job (`python -m sweep +grid=memcg`) from an empty
  numba cache and an empty output root (both temporary directories): compiling included,
  as a first run on a fresh machine (73-81 s here, 2026-12-03; it compiles file_thrash's
  engine only, core.engine.ENGINES).

    python benchmarks/engine.py [--duration 20] [--repeat 3] [--only seed_thrash] [--cold-start]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import core
from core.engine import run
from core.simulator import build_state, row_from_state
from sweep.app import scenario_params

PRESETS = ("seed_thrash", "seed_thrash_small", "seed_swapin", "app_launch", "fork_stall")
# Presets that end by themselves: the figures cover their own simulated time.
ENDS_ITSELF = ("app_launch",)


def measure(name: str, base: dict, policy: str, duration: float, repeat: int) -> None:
    sim = {"duration_s": duration, "warmup_s": duration / 4}
    if name in ENDS_ITSELF:
        sim = {}
    d = {g: dict(v) for g, v in base.items()}
    d["policy"] = {"name": policy}
    d.setdefault("sim", {}).update(sim)
    p = core.Params.from_dict(d)
    rates, speeds, builds = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        S = build_state(p)
        t1 = time.perf_counter()
        run(S, np.int64(1))
        t2 = time.perf_counter()
        row = row_from_state(p, S, t2 - t1)
        wall = time.perf_counter() - t0
        del S
        simulated = row["sim_time_s"] + p.sim.warmup_s
        if name in ENDS_ITSELF:
            simulated = row["launch_ms"] / 1e3 if row["launch_ms"] else p.sim.duration_s
        rates.append(row["events"] / (t2 - t1))
        speeds.append(simulated / wall)
        builds.append(t1 - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def fig(xs, fmt):
        return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}-{fmt(max(xs))})"
    print(f"{name:18s} {policy:10s} sim {simulated:6.2f} s  events {row['events']:>11,d}  "
          f"events/s {fig(rates, lambda x: f'{x / 1e6:.2f} M')}  "
          f"sim-s/wall-s {fig(speeds, lambda x: f'{x:.2f}')}  "
          f"build {fig(builds, lambda x: f'{x:.2f} s')}  peak RSS {rss_mb:.0f} MB", flush=True)


def cold_start() -> None:
    """The main job from an empty numba cache and output root, timed end to end."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, FAULTSIM_CACHE_DIR=cache)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sweep", "+grid=memcg",
                               f"output.root={out}"], env=env, capture_output=True, text=True)
        took = time.perf_counter() - t0
    compiled = [ln for ln in proc.stderr.splitlines() if "compiled in" in ln]
    print(f"cold main job: {took:.0f} s end to end, exit {proc.returncode}"
          + (f" ({compiled[0].split(': ', 1)[1]})" if compiled else ""), flush=True)


def child(name: str, duration: float, repeat: int) -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    # Compile (or load the cache) outside the measurement.
    core.simulate(core.Params.from_dict({"machine": {"cores": 2}, "workload": {
        "threads": 2, "file_mb": 1}, "sim": {"duration_s": 0.01, "warmup_s": 0.0}}), 0)
    presets = scenario_params()
    for policy in ("baseline", "vma_retry"):
        measure(name, presets[name], policy, duration, repeat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=PRESETS)
    ap.add_argument("--cold-start", action="store_true",
                    help="also time the main job from an empty numba cache")
    ap.add_argument("--child", choices=PRESETS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.duration, args.repeat)
        return
    for name in PRESETS:
        if args.only and args.only != name:
            continue
        subprocess.run([sys.executable, __file__, "--child", name, "--duration",
                        str(args.duration), "--repeat", str(args.repeat)], check=True)
    if args.cold_start:
        cold_start()


if __name__ == "__main__":
    main()
