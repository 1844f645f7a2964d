"""The tables of docs/studies/debate.md, from a run of the debate grid.

    python -m sweep scenario=fork_stall +grid=debate
    python -m sweep scenario=fork_stall +grid=debate_sensitivity
    python docs/studies/debate_tables.py results/debate/latest results/debate_sensitivity/latest

Each cell is the mean over the replicates, with the 95 % confidence interval's half-width
where the run has three or more.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from sweep.aggregate import read_aggregate

POLICIES = ["baseline", "vma_retry", "vma_retry_uptodate", "retry_hard", "hold_vma_io",
            "hold_file_vma_io", "mmap_lock_only"]
PRESET = {"workload.threads": 16, "workload.fork_vmas": 8987, "workload.fork_period_ms": 100.0,
          "device.throttle_read_mbps": 2.0}
FIGURES = [("fork p50 ms", "fork_latency_p50_ms", 1), ("fork p99 ms", "fork_latency_p99_ms", 1),
           ("fork max ms", "fork_latency_max_ms", 1),
           ("fg fault p99 us", "fault_latency_p99_us", 0),
           ("fg traces/s", "throughput_rounds_s", 1),
           ("fg time in mmap_lock %", "time_mmap_lock_pct", 1),
           ("VMA writer wait max ms", "vma_writer_wait_max_us", -3),
           ("bg fault p99 ms", "bg_fault_latency_p99_us", -3)]


def cell(r: dict, metric: str, digits: int) -> str:
    scale = 1.0
    if digits < 0:                          # microseconds shown in ms
        scale, digits = 1e-3, 1
    m = r.get(f"{metric}_mean")
    if m is None:
        return "-"
    ci = r.get(f"{metric}_ci95")
    s = f"{m * scale:.{digits}f}"
    return s + (f" ± {ci * scale:.{digits}f}" if ci is not None else "")


def pick(agg: pl.DataFrame, **where) -> list[dict]:
    for k, v in where.items():
        agg = agg.filter(pl.col(k) == v)
    return list(agg.iter_rows(named=True))


def table(agg: pl.DataFrame, where: dict, figures) -> str:
    lines = ["| policy | fork_lock | " + " | ".join(f[0] for f in figures) + " |",
             "|---|---|" + "---|" * len(figures)]
    for pol in POLICIES:
        for fl in ("all", "cow"):
            rows = pick(agg, policy=pol, **{"policy.fork_lock": fl}, **where)
            if not rows:
                continue
            r = rows[0]
            lines.append(f"| {pol} | {fl} | "
                         + " | ".join(cell(r, m, d) for _, m, d in figures) + " |")
    return "\n".join(lines)


def sweep_table(agg: pl.DataFrame, axis: str, values, metric: str, digits: int,
                fixed: dict) -> str:
    lines = ["| policy | " + " | ".join(f"{axis} {v}" for v in values) + " |",
             "|---|" + "---|" * len(values)]
    for pol in POLICIES:
        cells = []
        for v in values:
            rows = pick(agg, policy=pol, **{"policy.fork_lock": "all", axis: v}, **fixed)
            cells.append(cell(rows[0], metric, digits) if rows else "-")
        lines.append(f"| {pol} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "results/debate/latest")
    agg = read_aggregate(run / "aggregate.csv")
    print(f"Run: {run.resolve().name}\n")
    print("## At the preset (8,987 VMAs, a fork every 100 ms, background reads at 2 MB/s)\n")
    print(table(agg, PRESET, FIGURES), "\n")
    rest = {k: v for k, v in PRESET.items() if k != "device.throttle_read_mbps"}
    for title, metric, digits in [("fork p99 ms", "fork_latency_p99_ms", 1),
                                  ("foreground fault p99 us", "fault_latency_p99_us", 0),
                                  ("foreground traces/s", "throughput_rounds_s", 1)]:
        print(f"## {title} by the background group's throttle (MB/s; 0: none), fork_lock=all\n")
        print(sweep_table(agg, "device.throttle_read_mbps", [0.0, 2.0, 0.5], metric, digits,
                          rest), "\n")
    for axis, values, title in [("workload.threads", [8, 16], "busy threads"),
                                ("workload.fork_vmas", [4140, 8987], "VMAs"),
                                ("workload.fork_period_ms", [100.0, 400.0], "fork period")]:
        fixed = {k: v for k, v in PRESET.items() if k != axis}
        print(f"## fork p50 ms by {title}, fork_lock=all\n")
        print(sweep_table(agg, axis, values, "fork_latency_p50_ms", 1, fixed), "\n")
        print(f"## foreground traces/s by {title}, fork_lock=all\n")
        print(sweep_table(agg, axis, values, "throughput_rounds_s", 1, fixed), "\n")
    if len(sys.argv) > 2:
        sensitivity(Path(sys.argv[2]))
    return 0


SENS_POLICIES = ["baseline", "vma_retry", "hold_vma_io", "hold_file_vma_io"]


def sensitivity(run: Path) -> None:
    """debate_sensitivity: each unknown's two values, the others at one setting."""
    agg = read_aggregate(run / "aggregate.csv")
    print(f"## Sensitivity (run {run.resolve().name})\n")
    combos = [(shared, pos, mem, tail) for shared in (False, True) for pos in (0, 100)
              for mem in (0, 188) for tail in (0.0, 1.0)]
    for metric, digits, title in [("fork_latency_p50_ms", 1, "fork p50 ms"),
                                  ("throughput_rounds_s", 1, "foreground traces/s")]:
        print(f"### {title}\n")
        hdr = ["bg file", "bg VMA at", "memcg MB", "tail %"]
        cols = [f"{p} / {fl}" for p in SENS_POLICIES for fl in ("all", "cow")]
        print("| " + " | ".join(hdr + cols) + " |")
        print("|" + "---|" * (len(hdr) + len(cols)))
        for shared, pos, mem, tail in combos:
            where = {"workload.fork_bg_shared": shared, "workload.fork_bg_pos_pct": pos,
                     "memcg.max_mb": mem, "device.io_tail_pct": tail}
            cells = []
            for pol in SENS_POLICIES:
                for fl in ("all", "cow"):
                    rows = pick(agg, policy=pol, **{"policy.fork_lock": fl}, **where)
                    cells.append(cell(rows[0], metric, digits) if rows else "-")
            first = ["shared" if shared else "private", f"{pos} %", str(mem or "none"),
                     str(tail)]
            print("| " + " | ".join(first + cells) + " |")
        print()


if __name__ == "__main__":
    sys.exit(main())
