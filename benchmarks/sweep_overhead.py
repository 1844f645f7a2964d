"""Overhead of the sweep framework: how much of the CPUs' time goes to points.

Runs a grid of points that each keep one CPU busy for about one second, on an embedded local
Ray with all CPUs of this machine, into a fresh output root, and prints:

- busy CPU seconds: the sum over replicates of the CPU time their worker spent in the
  backend (for the synthetic backend a busy loop of exactly --work-s CPU-s);
- efficiency = busy / (CPUs x wall), for the compute phase (first task submitted to last row
  stored) and for the whole command (Ray start, planning, store, CSVs, summary);
- occupancy = wall inside runs / (CPUs x wall): the share of the CPU slots' time spent
  inside a run; unlike efficiency it does not drop when other programs share the CPUs, so
  it isolates the framework's own gaps (scheduling, start-up, writing outputs);
- per-run overhead = (CPUs x wall - wall inside runs) / runs.

On an idle machine efficiency and occupancy agree.

    python benchmarks/sweep_overhead.py                      # synthetic 1 s points
    python benchmarks/sweep_overhead.py --backend sim        # real simulator points
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# A real-simulator point of about one second (a 4-core, 8-thread, 4 MB point of 0.5
# simulated seconds; the numba compile of each worker's first point counts as overhead).
SIM_POINT = ["machine.cores=4", "workload.file_mb=4", "memcg.high_mb=16", "memcg.max_mb=20",
             "sim.duration_s=0.5", "sim.warmup_s=0.1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="synthetic", choices=["synthetic", "sim"])
    ap.add_argument("--points", type=int, default=30, help="grid points (x 2 seeds)")
    ap.add_argument("--work-s", type=float, default=1.0, help="synthetic CPU-s per run")
    ap.add_argument("--chunk-target-s", type=float, default=20.0)
    args = ap.parse_args()

    os.environ["SWEEP_SYNTHETIC_WORK_S"] = str(args.work_s)
    from hydra import compose, initialize_config_dir

    from sweep import app
    from sweep.cli import CONF_DIR
    from sweep.runner import local_cpus

    root = Path(tempfile.mkdtemp(prefix="sweep_overhead_"))
    # Distinct points of equal cost: machine.noise_busy_us does nothing while noise is off.
    busy_us = [500 + i for i in range(args.points)]
    overrides = ["+grid=smoke", f"backend={args.backend}", f"output.root={root}",
                 "grid.axes.workload.threads=[8]",
                 f"+grid.axes.machine.noise_busy_us=[{','.join(map(str, busy_us))}]",
                 "grid.axes.policy.name=[baseline]", "replicates=2", "output.report=false",
                 f"sweep.chunk_target_s={args.chunk_target_s}"]
    if args.backend == "sim":
        # Replace the smoke axes by a one-second point; threads stays the varying axis.
        overrides += [f"grid.axes.{kv.split('=')[0]}=[{kv.split('=')[1]}]" for kv in SIM_POINT]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=overrides)

    phase: dict[str, float] = {}
    real_compute = app.compute

    def timed_compute(*a, **kw):
        t = time.perf_counter()
        try:
            return real_compute(*a, **kw)
        finally:
            phase["compute"] = time.perf_counter() - t

    app.compute = timed_compute
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    status = app.run_sweep(cfg)
    whole = time.perf_counter() - t0
    pts = pl.read_parquet(root / "smoke" / "latest" / "points.parquet")
    cpus = local_cpus()
    runs = pts.height
    busy = pts["point_cpu_s"].sum()
    in_worker = pts["point_wall_s"].sum()
    print(f"backend {args.backend}: {runs} runs ({args.points} points x 2 seeds) on {cpus} "
          f"CPUs, status {status}, failed {pts.filter(pl.col('status') != 'ok').height}; "
          f"1-min load average before start {load_before:.2f} (other work on the machine "
          f"lowers the figures below)")
    print(f"busy CPU s (CPU time of the runs in the workers): {busy:.1f}, "
          f"{busy / runs:.3f} s per run; wall inside the workers {in_worker:.1f} s")
    for name, wall in [("compute phase", phase.get("compute", float("nan"))),
                       ("whole command", whole)]:
        eff = busy / (cpus * wall)
        occupancy = in_worker / (cpus * wall)
        over = (cpus * wall - in_worker) / runs
        print(f"{name:14s}: wall {wall:6.1f} s, efficiency {eff:.3f} (busy CPU / (CPUs x "
              f"wall)), occupancy {occupancy:.3f} (in-run wall / (CPUs x wall)), "
              f"overhead {over * 1000:.0f} ms per run")


if __name__ == "__main__":
    main()
