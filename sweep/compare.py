"""`python -m sweep.compare RUN_A RUN_B`: the same points in two runs, side by side.
`python -m sweep.compare RUN --published [--preset NAME]`: a run's file_thrash points beside
the published rows of `data/published/<preset>.csv`.

Two runs match point by point on their axis columns and `policy` (not on the point hash: a
new model version or another root seed gives the same point another hash). For each
headline metric of the points' workload the table shows A's and B's mean (± 95% CI from
three replicates), the change from A to B (in percentage points for a percentage, absolute
from a zero base) and whether the two intervals are apart. `--out DIR` also writes the
table as compare.md and one plot per metric (A and B side by side, per point). Computes
nothing; reads each run's aggregate.csv. Exit 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from sweep.aggregate import (
    WORKLOAD_HEADLINE,
    _mean_ci,
    _row_workload,
    change_text,
    group_rows,
    read_aggregate,
)
from sweep.errors import SweepError
from sweep.validity import FILE_COLUMNS, PUBLISHED_DIR, _published, _table


def _agg(run: Path) -> pl.DataFrame:
    path = run / "aggregate.csv"
    if not path.is_file():
        raise SweepError(f"{run}: not a run directory (no aggregate.csv)")
    return read_aggregate(path)


def _keys(agg: pl.DataFrame) -> list[str]:
    """The axis columns and policy (everything before point_hash in aggregate.csv)."""
    return agg.columns[:agg.columns.index("point_hash")]


def _apart(a: dict, b: dict, metric: str) -> str:
    """'yes' when both 95% CIs exist and do not overlap, 'no' when they overlap, '' else."""
    ma, ca = a.get(f"{metric}_mean"), a.get(f"{metric}_ci95")
    mb, cb = b.get(f"{metric}_mean"), b.get(f"{metric}_ci95")
    if None in (ma, ca, mb, cb):
        return ""
    return "yes" if abs(ma - mb) > ca + cb else "no"


def compare_runs(run_a: Path, run_b: Path) -> tuple[str, list[dict]]:
    """Markdown of the comparison and its rows (key values, metric, a, b) for plotting."""
    a, b = _agg(run_a), _agg(run_b)
    keys_a, keys_b = _keys(a), _keys(b)
    if keys_a != keys_b:
        raise SweepError(f"the runs have different axes: {', '.join(keys_a)} against "
                         f"{', '.join(keys_b)}")
    keys = keys_a
    joined = a.join(b, on=keys, how="inner", suffix="__b", nulls_equal=True)
    if joined.height == 0:
        raise SweepError("the runs have no point in common (same axes and policy values)")
    only_a, only_b = a.height - joined.height, b.height - joined.height
    lines = [f"# {run_a} (A) against {run_b} (B)", "",
             f"{joined.height} points in both; {only_a} only in A, {only_b} only in B. Mean "
             "± 95% CI half-width (from three replicates); change from A to B; 'apart': the "
             "two intervals do not overlap.", ""]
    varying = [k for k in keys if joined[k].n_unique() > 1 or k == "policy"]
    rows = []
    for r in joined.iter_rows(named=True):
        ra = {k: v for k, v in r.items() if not k.endswith("__b")}
        rb = {**{k: r[k] for k in keys},
              **{k[:-3]: v for k, v in r.items() if k.endswith("__b")}}
        for m in WORKLOAD_HEADLINE[_row_workload(ra)]:
            rows.append({**{k: r[k] for k in varying}, "metric": m, "a": ra, "b": rb})
    for m in dict.fromkeys(x["metric"] for x in rows):
        lines += [f"## {m}", "",
                  "| " + " | ".join([*varying, "A", "B", "change", "apart"]) + " |",
                  "|" + "---|" * (len(varying) + 4)]
        for x in rows:
            if x["metric"] != m:
                continue
            ma, mb = x["a"].get(f"{m}_mean"), x["b"].get(f"{m}_mean")
            cells = [str(x[k]) for k in varying]
            cells += [_mean_ci(x["a"], m), _mean_ci(x["b"], m), change_text(ma, mb, m),
                      _apart(x["a"], x["b"], m)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines), rows


def plot_changes(rows: list[dict], out: Path) -> list[Path]:
    """One PNG per metric: A and B means (with CIs where there are) for each point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for m in dict.fromkeys(x["metric"] for x in rows):
        sel = [x for x in rows if x["metric"] == m]
        labels = [", ".join(f"{v}" for k, v in x.items() if k not in ("metric", "a", "b"))
                  for x in sel]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(sel) + 2), 3.8))
        xs = np.arange(len(sel))
        for i, (side, colour) in enumerate((("a", "#808080"), ("b", "#1f77b4"))):
            ys = np.array([x[side].get(f"{m}_mean") or np.nan for x in sel], dtype=float)
            es = np.array([x[side].get(f"{m}_ci95") or 0.0 for x in sel], dtype=float)
            lower = np.minimum(es, np.nan_to_num(ys))  # never below zero
            ax.bar(xs + (i - 0.5) * 0.4, ys, width=0.4, yerr=[lower, es], capsize=3,
                   color=colour, label="A" if side == "a" else "B")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(m)
        ax.legend()
        fig.tight_layout()
        path = out / f"compare_{m}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def against_published(run: Path, preset: str) -> str:
    """A run's file_thrash rows per point beside the published rows of `preset`; in a run
    over presets (a `scenario` axis), each preset's own published rows where it has any."""
    published = _published(preset)
    if published is None:
        avail = sorted(p.stem for p in PUBLISHED_DIR.glob("*.csv"))
        raise SweepError(f"no published rows for '{preset}' (available: {', '.join(avail)})")
    agg = _agg(run)
    rows = [r for r in agg.iter_rows(named=True) if _row_workload(r) == "file_thrash"]
    if not rows:
        raise SweepError(f"{run}: no file_thrash point to hold against published rows")
    keys = [k for k in _keys(agg) if k != "policy" and agg[k].n_unique() > 1]
    dur = float(published["duration_s"][0])
    lines = [f"# {run} beside the published {preset} rows", "",
             f"Counts (rounds, RETRY_*) of the model are scaled to the published {dur:.0f} s "
             "from each point's measured time.", ""]
    for key, grp in group_rows(rows, keys).items():
        if keys:
            lines += ["## " + ", ".join(f"{k}={v}" for k, v in zip(keys, key)), ""]
        # A run over presets holds each against its own published rows where it has any.
        own = _published(str(grp[0]["scenario"])) if "scenario" in grp[0] else None
        lines += _table(grp, FILE_COLUMNS, own if own is not None else published,
                        float(own["duration_s"][0]) if own is not None else dur)
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.compare",
                                 description="Compare two runs, or a run with the published "
                                             "rows.")
    ap.add_argument("runs", nargs="+", type=Path, help="RUN_A RUN_B, or RUN with --published")
    ap.add_argument("--published", action="store_true",
                    help="hold one run's file_thrash points against data/published/")
    ap.add_argument("--preset", default="seed_thrash",
                    help="which published rows (data/published/<preset>.csv)")
    ap.add_argument("--out", type=Path, help="also write compare.md and plots here")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.published:
            if len(args.runs) != 1:
                raise SweepError("--published takes one run directory")
            text, rows = against_published(args.runs[0], args.preset), []
        else:
            if len(args.runs) != 2:
                raise SweepError("give two run directories (RUN_A RUN_B), or one with "
                                 "--published")
            text, rows = compare_runs(*args.runs)
        print(text)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "compare.md").write_text(text + "\n")
            plots = plot_changes(rows, args.out) if rows else []
            print(f"sweep.compare: wrote {args.out / 'compare.md'} and {len(plots)} plots",
                  file=sys.stderr)
    except SweepError as e:
        print(f"sweep.compare: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
