"""A deterministic stand-in for the simulator, for tests and overhead benchmarks.

Rows are a pure function of (params, seed): same columns as core.simulate, plausible
magnitudes, no meaning. Knobs come from the environment so they reach Ray workers:
SWEEP_SYNTHETIC_WORK_S busy-loops that many CPU seconds per replicate (default 0);
SWEEP_SYNTHETIC_FAIL="key=value[,key=value]" raises for points whose params match all pairs
(the pseudo-key `seed_parity` = seed % 2 fails single replicates).
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

import core
from core.metrics import METRIC_COLUMNS, N_HIST

_POLICY_GAIN = {"baseline": 1.0, "vma_retry": 1.8, "vma_retry_uptodate": 1.6,
                "retry_hard": 1.2, "hold_vma_io": 0.9, "mmap_lock_only": 0.8}


class SyntheticFailure(RuntimeError):
    pass


def _should_fail(params: core.Params, seed: int) -> bool:
    spec = os.environ.get("SWEEP_SYNTHETIC_FAIL", "")
    if not spec:
        return False
    flat = {f"{g}.{k}": str(v) for g, sub in params.to_dict().items() for k, v in sub.items()}
    flat["seed_parity"] = str(seed % 2)
    pairs = [p.split("=", 1) for p in spec.split(",") if "=" in p]
    return all(flat.get(k) == v for k, v in pairs)


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        for i in range(10_000):
            x += i * i


def run_point(params: core.Params, seed: int) -> dict:
    if _should_fail(params, seed):
        raise SyntheticFailure(f"synthetic failure for policy {params.policy.name}, "
                               f"threads {params.workload.threads}")
    work = float(os.environ.get("SWEEP_SYNTHETIC_WORK_S", "0") or 0)
    t0 = time.perf_counter()
    if work > 0:
        _burn(work)
    key = hashlib.sha256(f"{params.to_dict()}|{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    w, m = params.workload, params.memcg
    measured = max(params.sim.duration_s - params.sim.warmup_s, 1e-3)
    pressure = (w.threads * w.file_mb) / m.high_mb if m.high_mb else 0.0
    tput = (params.machine.cores * _POLICY_GAIN.get(params.policy.name, 1.0)
            / (1.0 + pressure) * rng.uniform(0.9, 1.1) * 10)
    rounds = int(tput * measured)
    drops = int(rounds * 40 * min(pressure, 8) / 8)
    misses = int(drops * (0.45 if params.policy.name == "baseline" else 0.02))
    row: dict = {c: None for c in METRIC_COLUMNS}
    row.update(rounds=rounds, throughput_rounds_s=rounds / measured,
               pgfault=rounds * w.file_mb * 16, pgmajfault=drops,
               retry_mmap_drop=drops, retry_io_miss=misses,
               miss_drop_pct=100.0 * misses / drops if drops else None,
               mmap_read_count=rounds * 10, mmap_write_count=rounds * 2,
               mmap_read_wait_avg_us=float(rng.uniform(1, 1000)),
               mmap_write_wait_avg_us=float(rng.uniform(1, 100)),
               sim_time_s=measured, events=rounds * 1500,
               wall_s=time.perf_counter() - t0)
    for lock in ("read", "write"):
        counts = rng.multinomial(row[f"mmap_{lock}_count"], np.ones(N_HIST) / N_HIST)
        for i, c in enumerate(counts):
            row[f"mmap_{lock}_hist_{i}"] = int(c)
    return row
