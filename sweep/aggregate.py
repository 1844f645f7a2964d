"""The CSVs and summary of a run dir, each one lazy Polars query from `points.parquet`.

Group keys are the grid's axes (dotted config keys as column names) plus `policy`; every
output is sorted by them, policies in the order of core.POLICIES. Statistics use only rows
with status ok. The 95% CI is the half-width t(0.975, n-1) x std / sqrt(n), given only for
three or more replicates (MIN_CI_N): from two, t(0.975, 1) = 12.7 makes it wider than
anything it could say, so the summary shows those points themselves instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

import core
from core.metrics import HIST_BUCKET_LABELS, METRIC_COLUMNS, MIN_ROUNDS_PER_THREAD, N_HIST

STATS = ("mean", "std", "ci95", "min", "max")
# Fewest replicates for a 95% CI.
MIN_CI_N = 3
# Host timings of a replicate: they measure the machine that ran it, not the policy.
HOST_COLUMNS = ("wall_s", "events_per_s")
HEADLINE = ["throughput_rounds_s", "miss_drop_pct", "retry_mmap_drop", "retry_io_miss",
            "mmap_read_wait_avg_us"]
# The headline of each workload's summary; file_thrash's is HEADLINE.
WORKLOAD_HEADLINE = {
    "file_thrash": HEADLINE,
    "swapin": ["swapin_rounds", "pageout_rounds", "pgmajfault", "vma_lock_retry",
               "mmap_read_count", "mmap_read_wait_avg_us"],
    "app_launch": ["launch_ms", "vma_lock_retry", "mmap_read_count", "mmap_read_wait_avg_us",
                   "mmap_write_wait_avg_us", "vma_writer_wait_max_us"],
    "fork_stall": ["fork_latency_p50_ms", "fork_latency_p99_ms", "fork_latency_max_ms",
                   "fault_latency_p99_us", "throughput_rounds_s", "vma_writer_wait_max_us",
                   "mmap_write_wait_avg_us"],
}
# The cover letter's Before / After / Change % tables: lock acquisitions and the workload's
# own figures, then the two wait histograms.
LETTER_METRICS = {
    "swapin": ["pageout_rounds", "swapin_rounds"],
    "app_launch": ["launch_ms"],
    "fork_stall": ["fork_latency_p50_ms", "fork_latency_p99_ms", "fork_latency_max_ms",
                   "fault_latency_p99_us", "throughput_rounds_s"],
}
LOCK_METRICS = ["mmap_read_count", "mmap_read_wait_total_us", "mmap_read_wait_avg_us",
                "mmap_write_count", "mmap_write_wait_total_us", "mmap_write_wait_avg_us",
                "vma_lock_success", "vma_lock_retry", "vma_lock_abort",
                "vma_writer_wait_max_us"]
# Student t quantiles t(0.975, df) for df = 1..30; beyond that the normal 1.96 is within 2%.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def _t975(n: pl.Expr) -> pl.Expr:
    table = {df + 1: t for df, t in enumerate(_T975, start=1)}
    return n.replace_strict(table, default=1.96, return_dtype=pl.Float64)


def read_aggregate(path: Path) -> pl.DataFrame:
    """aggregate.csv with every statistic a float: a statistic null in every row (the ci95
    of points with fewer than three replicates) reads back as text otherwise."""
    agg = pl.read_csv(path, infer_schema_length=None)
    stats = [c for c in agg.columns if c.endswith(tuple(f"_{s}" for s in STATS))
             and agg[c].dtype == pl.String]
    return agg.with_columns(pl.col(stats).cast(pl.Float64, strict=False)) if stats else agg


def _policy_order() -> pl.Expr:
    return pl.col("policy").replace_strict(
        {p: i for i, p in enumerate(core.POLICIES)}, default=len(core.POLICIES),
        return_dtype=pl.Int32)


def _sorted(lf: pl.LazyFrame, axes: Sequence[str], extra: Sequence[str] = ()) -> pl.LazyFrame:
    return (lf.with_columns(_policy_rank=_policy_order())
            .sort([*axes, "_policy_rank", *extra], nulls_last=True)
            .drop("_policy_rank"))


def aggregate(points_path: Path, axes: Sequence[str]) -> pl.DataFrame:
    """Per point across its ok replicates: mean, std, ci95, min, max of every metric."""
    keys = [*axes, "policy", "point_hash"]
    ok = pl.col("status") == "ok"
    per_metric = []
    for m in METRIC_COLUMNS:
        col = pl.col(m).filter(ok)
        per_metric += [col.mean().alias(f"{m}_mean"), col.std().alias(f"{m}_std"),
                       col.count().alias(f"_n_{m}"),
                       col.min().alias(f"{m}_min"), col.max().alias(f"{m}_max")]
    ci = [pl.when(pl.col(f"_n_{m}") >= MIN_CI_N)
          .then(_t975(pl.col(f"_n_{m}")) * pl.col(f"{m}_std") / pl.col(f"_n_{m}").sqrt())
          .alias(f"{m}_ci95") for m in METRIC_COLUMNS]
    order = [*keys, "n_ok", "n_failed",
             *[f"{m}_{s}" for m in METRIC_COLUMNS for s in STATS]]
    return (pl.scan_parquet(points_path)
            .group_by(keys)
            .agg([ok.sum().alias("n_ok"), (~ok).sum().alias("n_failed"), *per_metric])
            .with_columns(ci)
            .select(order)
            .pipe(_sorted, axes)
            .collect())


def compare(points_path: Path, axes: Sequence[str],
            metrics: Sequence[str] = tuple(m for m in METRIC_COLUMNS
                                           if m not in HOST_COLUMNS)) -> pl.DataFrame:
    """Each non-baseline policy against baseline at the same other axes, long per metric:
    before and after are means over ok replicates, change_abs = after - before,
    change_pct = 100 (after - before) / before (null for a zero base). Host timings
    (HOST_COLUMNS) are not policy effects and are left out.
    """
    means = (pl.scan_parquet(points_path)
             .filter(pl.col("status") == "ok")
             .group_by([*axes, "policy"])
             .agg([pl.col(m).mean() for m in metrics])
             .unpivot(index=[*axes, "policy"], on=list(metrics), variable_name="metric",
                      value_name="value"))
    base = (means.filter(pl.col("policy") == "baseline")
            .select([*axes, "metric", pl.col("value").alias("before")]))
    change = 100.0 * (pl.col("value") - pl.col("before")) / pl.col("before").abs()
    return (means.filter(pl.col("policy") != "baseline")
            .join(base, on=[*axes, "metric"], how="inner", nulls_equal=True)
            .select([*axes, "policy", "metric", "before", pl.col("value").alias("after"),
                     (pl.col("value") - pl.col("before")).alias("change_abs"),
                     pl.when(pl.col("before") != 0).then(change).alias("change_pct")])
            .with_columns(_metric_rank=pl.col("metric").replace_strict(
                {m: i for i, m in enumerate(metrics)}, return_dtype=pl.Int32))
            .pipe(_sorted, axes, ["_metric_rank"])
            .drop("_metric_rank")
            .collect())


def histograms(points_path: Path, axes: Sequence[str]) -> pl.DataFrame:
    cols = {f"mmap_{lock}_hist_{i}": (lock, i) for lock in ("read", "write")
            for i in range(N_HIST)}
    labels = pl.Series(HIST_BUCKET_LABELS)
    return (pl.scan_parquet(points_path)
            .filter(pl.col("status") == "ok")
            .group_by([*axes, "policy"])
            .agg([pl.col(c).mean() for c in cols])
            .unpivot(index=[*axes, "policy"], on=list(cols), variable_name="column",
                     value_name="count_mean")
            .with_columns(
                lock=pl.col("column").str.extract(r"mmap_(read|write)_hist_"),
                bucket=pl.col("column").str.extract(r"_(\d+)$").cast(pl.Int32))
            .with_columns(bucket_label=pl.lit(labels).gather(pl.col("bucket")))
            .select([*axes, "policy", "lock", "bucket", "bucket_label", "count_mean"])
            .pipe(_sorted, axes, ["lock", "bucket"])
            .collect())


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def _mean_ci(r: dict, metric: str) -> str:
    """`mean ± ci95` (Student t half-width) from MIN_CI_N replicates; from two, the mean
    and both points (`mean (min, max)`); from one, the value."""
    mean, ci = r.get(f"{metric}_mean"), r.get(f"{metric}_ci95")
    n = r.get("n_ok") or 0
    if mean is None or n < 2:
        return _fmt(mean)
    if n < MIN_CI_N or ci is None:
        lo, hi = r.get(f"{metric}_min"), r.get(f"{metric}_max")
        return _fmt(mean) if lo is None or lo == hi else f"{_fmt(mean)} ({_fmt(lo)}, {_fmt(hi)})"
    return f"{_fmt(mean)} ± {_fmt(ci)}"


def change_text(before: float | None, after: float | None, metric: str) -> str:
    """The change of a metric against baseline: a difference in percentage points for a
    metric that is itself a percentage, the absolute difference from a zero base (a
    percentage of nothing says nothing), else a percentage of the base."""
    if before is None or after is None:
        return "-"
    if metric.endswith("_pct"):
        return f"{after - before:+.3g} pp"
    if abs(before) < 1e-12:
        return f"{after - before:+.3g}"
    return f"{100.0 * (after - before) / abs(before):+.1f}%"


# A replicate that made no progress after warm-up: no round completed (file_thrash, swapin's
# swap-in rounds) or, for app_launch, the launch never finished. Null when the run failed.
STALLED = (pl.when(pl.col("status") != "ok").then(None)
           .when(pl.col("swapin_rounds").is_not_null()).then(pl.col("swapin_rounds") == 0)
           .when(pl.col("rounds").is_not_null()).then(pl.col("rounds") == 0)
           .otherwise(pl.col("launch_ms").is_null()))


def _stalled_warning(run_dir: Path, axis_hdr: Sequence[str]) -> list[str]:
    """A warning naming the points where some replicate made no progress at all."""
    path = run_dir / "points.parquet"
    if not path.exists():
        return []
    if "stalled" not in pl.read_parquet_schema(path):
        return []
    pts = pl.read_parquet(path, columns=[*axis_hdr, "policy", "stalled"])
    stalled = pts.filter(pl.col("stalled").fill_null(False))
    if stalled.height == 0:
        return []
    out = [f"**Warning: {stalled.height} replicate(s) made no progress.** No thread "
           "completed a round after warm-up (or the launch did not finish): the point is "
           "stalled (a livelock, or far too short a run). Column `stalled`.", ""]
    for r in stalled.unique(subset=[*axis_hdr, "policy"], maintain_order=True).iter_rows(
            named=True):
        at = ", ".join(f"{a}={r[a]}" for a in [*axis_hdr, "policy"])
        out.append(f"- {at}")
    return [*out, ""]


def _short_run_warning(agg: pl.DataFrame, axis_hdr: Sequence[str]) -> list[str]:
    """A warning naming the points where some replicate ran too short for stable rates
    (core.metrics.MIN_ROUNDS_PER_THREAD; for app_launch, a launch that did not finish)."""
    if "short_run_max" not in agg.columns:
        return []
    short = agg.filter(pl.col("short_run_max") > 0)
    if short.height == 0:
        return []
    warning = (f"**Warning: {short.height} point(s) ran too short.** In at least one "
               f"replicate a thread completed fewer than {MIN_ROUNDS_PER_THREAD} rounds "
               "after warm-up (or the launch did not finish), so their rates are not "
               "stable: lengthen `sim.duration_s`. Columns `short_run`, "
               "`min_thread_rounds`.")
    out = [warning, ""]
    for r in short.iter_rows(named=True):
        at = ", ".join(f"{a}={r[a]}" for a in [*axis_hdr, "policy"])
        out.append(f"- {at or r['policy']}: fewest rounds of a thread "
                   f"{_fmt(r.get('min_thread_rounds_min'))}")
    return [*out, ""]


def summary(run_dir: Path, grid_name: str, axes: Sequence[str], n_points: int,
            n_units: int, n_cached: int, failed: pl.DataFrame,
            sim_vs_real: pl.DataFrame | None = None) -> str:
    agg = read_aggregate(run_dir / "aggregate.csv")
    cmp = pl.read_csv(run_dir / "compare.csv", infer_schema_length=None)
    lines = [f"# Sweep `{grid_name}`", "",
             (f"{n_points} points x replicates = {n_units} rows ({n_cached} from the store, "
              f"{n_units - n_cached} computed), model {core.MODEL_VERSION}."), ""]
    # Axes with one value are stated once, not repeated in every row.
    axis_hdr = [a for a in axes if agg[a].n_unique() > 1]
    fixed = [a for a in axes if a not in axis_hdr]
    if fixed and agg.height:
        lines += ["Same for every point: "
                  + ", ".join(f"`{a}={agg[a][0]}`" for a in fixed) + ".", ""]
    # A grid over presets (a `scenario` axis) mixes workloads: one table for each.
    workloads = list(dict.fromkeys(_row_workload(r) for r in agg.iter_rows(named=True)))
    for workload in workloads:
        headline = WORKLOAD_HEADLINE[workload]
        title = "## Per point (mean ± 95% CI half-width over replicates)"
        lines += [title + (f": {workload}" if len(workloads) > 1 else ""), "",
                  "| " + " | ".join([*axis_hdr, "policy", "n", *headline]) + " |",
                  "|" + "---|" * (len(axis_hdr) + 2 + len(headline))]
        for r in agg.iter_rows(named=True):
            if _row_workload(r) != workload:
                continue
            cells = [str(r[a]) for a in axis_hdr] + [r["policy"], str(r["n_ok"])]
            cells += [_mean_ci(r, m) for m in headline]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += _stalled_warning(run_dir, axis_hdr)
    lines += _short_run_warning(agg, axis_hdr)
    if "file_thrash" in workloads:
        lines += file_thrash_letter(agg, axis_hdr)
    workload = workloads[0] if len(workloads) == 1 else "file_thrash"
    headline = WORKLOAD_HEADLINE[workload]
    if cmp.height:
        wide = cmp.filter(pl.col("metric").is_in(headline))
        lines += ["## Policy vs baseline (means; change in % of baseline, in percentage "
                  "points for a percentage, absolute from a zero base)", "",
                  "| " + " | ".join([*axis_hdr, "policy", *headline]) + " |",
                  "|" + "---|" * (len(axis_hdr) + 1 + len(headline))]
        keys = [*axis_hdr, "policy"]
        for grp in wide.partition_by(keys, maintain_order=True):
            first = grp.row(0, named=True)
            by_metric = {r["metric"]: r for r in grp.iter_rows(named=True)}
            cells = [str(first[a]) for a in keys]
            for m in headline:
                r = by_metric.get(m)
                cells.append("-" if r is None else
                             f"{_fmt(r['before'])} → {_fmt(r['after'])} "
                             f"({change_text(r['before'], r['after'], m)})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if workload in LETTER_METRICS:
            lines += letter_tables(cmp, axis_hdr, LOCK_METRICS + LETTER_METRICS[workload])
    if sim_vs_real is not None:
        lines += sim_vs_real_section(sim_vs_real, [a for a in axis_hdr if a != "backend"])
    lines += ["## Failed points", ""]
    if failed.height == 0:
        lines.append("None.")
    else:
        for r in failed.iter_rows(named=True):
            at = ", ".join(f"{a}={r[a]}" for a in [*axes, "policy"])
            first = (r["error"] or "").strip().splitlines()[:1]
            lines.append(f"- {at}, replicate {r['replicate']}: {r['error_type']}: "
                         f"{first[0] if first else ''}")
    lines.append("")
    return "\n".join(lines)


def _row_workload(r: dict) -> str:
    """Which workload one aggregate row measured: its own figures are the non-null ones."""
    if r.get("swapin_rounds_mean") is not None:
        return "swapin"
    if r.get("launch_ms_mean") is not None:
        return "app_launch"
    if r.get("forks_mean") is not None:
        return "fork_stall"
    return "file_thrash"


# The published file_thrash table's columns (the series' cover letter), in its order.
FILE_LETTER = [("Total Rounds", "rounds"), ("Throughput (rounds/s)", "throughput_rounds_s"),
               ("Miss/Drop %", "miss_drop_pct"), ("RETRY_MMAP_DROP", "retry_mmap_drop"),
               ("RETRY_IO_MISS", "retry_io_miss")]


def group_rows(rows: list[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by their values of `keys`, groups and rows in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return groups


def file_thrash_letter(agg: pl.DataFrame, axis_hdr: Sequence[str]) -> list[str]:
    """The cover letter's file_thrash Before/After table, one per combination of the other
    axes: a row per policy (mean ± 95% CI over replicates, as `_mean_ci` shows them)."""
    rows = [r for r in agg.iter_rows(named=True) if _row_workload(r) == "file_thrash"]
    if not rows:
        return []
    lines = ["## file_thrash as the series cover letter tabulates it", "",
             "Counts over the measured time (after warm-up); mean ± 95% CI half-width.", ""]
    for key, grp in group_rows(rows, axis_hdr).items():
        if axis_hdr:
            lines += ["### " + ", ".join(f"`{a}={v}`" for a, v in zip(axis_hdr, key)), ""]
        lines += ["| Case | " + " | ".join(t for t, _ in FILE_LETTER) + " |",
                  "|" + "---|" * (len(FILE_LETTER) + 1)]
        for r in grp:
            lines.append(f"| {r['policy']} | "
                         + " | ".join(_mean_ci(r, m) for _, m in FILE_LETTER) + " |")
        lines.append("")
    return lines


def letter_tables(cmp: pl.DataFrame, axis_hdr: Sequence[str],
                  metrics: Sequence[str]) -> list[str]:
    """For each policy against baseline, the cover letter's three tables: the figures in
    `metrics`, then the mmap_lock read and write wait histograms; Before / After / Change %."""
    lines = ["## Cover-letter tables (each policy against baseline)", ""]
    keys = [*axis_hdr, "policy"]
    for grp in cmp.partition_by(keys, maintain_order=True):
        first = grp.row(0, named=True)
        by_metric = {r["metric"]: r for r in grp.iter_rows(named=True)}
        at = ", ".join(f"`{a}={first[a]}`" for a in axis_hdr)
        lines += [f"### {first['policy']} against baseline" + (f" at {at}" if at else ""), ""]
        tables = [("Metric", list(metrics), None)]
        for lock in ("read", "write"):
            tables.append((f"mmap_lock {lock} wait (us)",
                           [f"mmap_{lock}_hist_{i}" for i in range(N_HIST)], HIST_BUCKET_LABELS))
        for head, names, labels in tables:
            lines += [f"| {head} | Before | After | Change |", "|---|---|---|---|"]
            for i, m in enumerate(names):
                r = by_metric.get(m)
                label = labels[i] if labels else m
                if r is None:
                    lines.append(f"| {label} | - | - | - |")
                else:
                    lines.append(f"| {label} | {_fmt(r['before'])} | {_fmt(r['after'])} | "
                                 f"{change_text(r['before'], r['after'], m)} |")
            lines.append("")
    return lines


# Metrics of the summary's sim-vs-real table (sim_vs_real.csv has every compared metric).
SIM_VS_REAL_HEADLINE = ["throughput_rounds_s", "rounds", "pgfault_per_round",
                        "pgmajfault_per_round", "retry_mmap_drop", "retry_io_miss",
                        "drops_per_round", "misses_per_round"]


def sim_vs_real_section(table: pl.DataFrame, axis_hdr: Sequence[str]) -> list[str]:
    """Markdown lines of "Simulated vs measured": the table of sim_vs_real.csv for the
    headline metrics, one line per point and metric."""
    lines = ["## Simulated vs measured", "",
             ("Points run on both backends (`sim_vs_real.csv`, every compared metric): "
              "means over ok replicates; ratio = simulated / measured (above 1: the model "
              "counts more than the kernel)."), ""]
    shown = table.filter(pl.col("metric").is_in(SIM_VS_REAL_HEADLINE)) if table.height \
        else table
    if shown.height == 0:
        return lines + ["No point has ok rows on both the sim and the kernel backend.", ""]
    hdr = [a for a in axis_hdr if a in table.columns]
    if "policy" in table.columns and table["policy"].n_unique() > 1:
        hdr.append("policy")
    lines += ["| " + " | ".join([*hdr, "metric", "simulated", "measured", "ratio"]) + " |",
              "|" + "---|" * (len(hdr) + 4)]
    for r in shown.iter_rows(named=True):
        cells = [str(r[a]) for a in hdr] + [r["metric"], _fmt(r["simulated"]),
                                            _fmt(r["measured"]), _fmt(r["ratio"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines
