"""`python -m sweep.validity <run dir>`: the validity tables of a `+grid=validity` run.

For each preset of the run (its `scenario` axis), the model's figures per policy (mean and
95% CI half-width over replicates, from the run's aggregate.csv) beside the published rows
of `data/published/<preset>.csv` where there are any. Published counters cover the
published run's length (600 s); the model's are scaled to that length from its own
measured time, and the table says so. Prints Markdown; docs/validity.md is written from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from sweep import resources
from sweep.aggregate import read_aggregate
from sweep.errors import SweepError

PUBLISHED_DIR = resources.PUBLISHED_DIR

# Per workload: (column title, aggregate metric, scaled to the published duration?)
FILE_COLUMNS = [
    ("rounds", "rounds", True),
    ("rounds/s", "throughput_rounds_s", False),
    ("miss/drop %", "miss_drop_pct", False),
    ("RETRY_MMAP_DROP", "retry_mmap_drop", True),
    ("RETRY_IO_MISS", "retry_io_miss", True),
    ("drops/round", "drops_per_round", False),
    ("misses/round", "misses_per_round", False),
    ("fewest rounds of a thread", "min_thread_rounds", False),
]
SWAPIN_COLUMNS = [
    ("swap-in rounds", "swapin_rounds", False),
    ("page-out rounds", "pageout_rounds", False),
    ("pgmajfault", "pgmajfault", False),
    ("VMA-lock retries", "vma_lock_retry", False),
    ("mmap_lock reads", "mmap_read_count", False),
    ("read wait avg µs", "mmap_read_wait_avg_us", False),
]
APP_COLUMNS = [
    ("launch ms", "launch_ms", False),
    ("mmap_lock reads", "mmap_read_count", False),
    ("read wait total µs", "mmap_read_wait_total_us", False),
    ("read wait avg µs", "mmap_read_wait_avg_us", False),
    ("mmap_lock writes", "mmap_write_count", False),
    ("write wait total µs", "mmap_write_wait_total_us", False),
    ("write wait avg µs", "mmap_write_wait_avg_us", False),
]
HIST_LABELS = ["<1", "1-10", "10-100", "100-1k", "1k-10k", "10k-100k", "100k-1M", ">=1M"]


def _fmt(v) -> str:
    if v is None:
        return ""
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def _cell(r: dict, metric: str, scale: float) -> str:
    mean, ci = r.get(f"{metric}_mean"), r.get(f"{metric}_ci95")
    if mean is None:
        return "-"
    if ci is None or (r.get("n_ok") or 0) < 2:
        return _fmt(mean * scale)
    return f"{_fmt(mean * scale)} ± {_fmt(ci * scale)}"


def _published(preset: str) -> pl.DataFrame | None:
    path = PUBLISHED_DIR / f"{preset}.csv"
    return pl.read_csv(path) if path.exists() else None


def _table(rows: list[dict], columns, published: pl.DataFrame | None,
           duration_s: float | None) -> list[str]:
    head = ["case", "n", *[c[0] for c in columns]]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if published is not None:
        for p in published.iter_rows(named=True):
            cells = [f"published {p['case']}", ""]
            for _, metric, _ in columns:
                v = p.get(metric)
                if v is None and metric == "drops_per_round" and p.get("rounds"):
                    v = p["retry_mmap_drop"] / p["rounds"]
                if v is None and metric == "misses_per_round" and p.get("rounds"):
                    v = p["retry_io_miss"] / p["rounds"]
                cells.append(_fmt(v) if v is not None else "")
            out.append("| " + " | ".join(cells) + " |")
    for r in rows:
        measured = r.get("sim_time_s_mean") or 0.0
        scale = duration_s / measured if duration_s and measured else 1.0
        cells = [f"model {r['policy']}", str(r["n_ok"])]
        cells += [_cell(r, metric, scale if scaled else 1.0) for _, metric, scaled in columns]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _histograms(rows: list[dict]) -> list[str]:
    out = []
    for lock in ("read", "write"):
        head = ["policy", *[f"{lb} µs" for lb in HIST_LABELS]]
        out += [f"`mmap_lock` {lock} waits (count per bucket, mean over replicates):", "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["policy"]] + [_fmt(r.get(f"mmap_{lock}_hist_{i}_mean")) or "0"
                                     for i in range(len(HIST_LABELS))]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def validity_tables(run_dir: Path) -> str:
    agg_path = run_dir / "aggregate.csv"
    if not agg_path.exists():
        raise SweepError(f"{agg_path}: missing (run `python -m sweep +grid=validity` first)")
    agg = read_aggregate(agg_path)
    if "scenario" not in agg.columns:
        raise SweepError(f"{run_dir}: not a run over presets (no `scenario` axis)")
    lines = []
    for preset in agg["scenario"].unique(maintain_order=True).to_list():
        rows = [r for r in agg.filter(pl.col("scenario") == preset).iter_rows(named=True)]
        published = _published(preset)
        if rows[0].get("swapin_rounds_mean") is not None:
            columns, dur = SWAPIN_COLUMNS, None
        elif rows[0].get("launch_ms_mean") is not None:
            columns, dur = APP_COLUMNS, None
        else:
            columns = FILE_COLUMNS
            dur = float(published["duration_s"][0]) if published is not None else None
        lines += [f"### {preset}", ""]
        if dur:
            note = (f"Counts (rounds, RETRY_*) of the model are scaled to the published "
                    f"{dur:.0f} s from the model's measured time "
                    f"({_fmt(rows[0].get('sim_time_s_mean'))} s).")
            lines += [note, ""]
        lines += _table(rows, columns, published, dur)
        lines.append("")
        if columns is APP_COLUMNS:
            lines += _histograms(rows)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m sweep.validity <run dir>  (e.g. results/validity/latest)",
              file=sys.stderr)
        return 2
    try:
        print(validity_tables(Path(argv[0])))
    except SweepError as e:
        print(f"sweep.validity: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
