"""Plots and a self-contained HTML report of a run directory, from its stored files alone.

`write_report(run_dir)` reads `aggregate.csv`, `histograms.csv`, `points.parquet`,
`summary.md` and `config.yaml` (nothing is recomputed), writes `plots/*.png` and
`report.html` (every image embedded as a data URI, no external CSS or JS, so it renders with
no network). Plots that would be empty or meaningless for the grid (an axis with one value, a
metric that is null everywhere) are skipped. Missing or unreadable inputs raise ReportError,
whose message is one line naming the file.

    python -m sweep.report results/memcg/latest
"""

from __future__ import annotations

import base64
import html
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

import core
from sweep.aggregate import change_text, read_aggregate

SIM_VS_REAL = "sim_vs_real.csv"
# Plot of the "Simulated vs measured" section (shown there, not among the other plots).
SIM_VS_REAL_PLOT = "sim_vs_real_throughput_vs_threads.png"
REQUIRED = ("config.yaml", "summary.md", "aggregate.csv", "histograms.csv", "points.parquet")

# Colours fixed per policy so every figure reads the same way; baseline is the dark
# reference line, the series' policies are the saturated colours.
POLICY_STYLE = {
    "baseline": {"color": "#404040", "marker": "o"},
    "vma_retry": {"color": "#1f77b4", "marker": "s"},
    "vma_retry_uptodate": {"color": "#d62728", "marker": "^"},
    "retry_hard": {"color": "#2ca02c", "marker": "D"},
    "hold_vma_io": {"color": "#9467bd", "marker": "v"},
    "mmap_lock_only": {"color": "#ff7f0e", "marker": "P"},
}
_FALLBACK_COLORS = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"]

METRIC_LABEL = {
    "throughput_rounds_s": "throughput (rounds/s)",
    "miss_drop_pct": "retries that lost their I/O\n(% of mmap_lock drops)",
    "fault_latency_p99_us": "fault latency p99 (µs)",
}
AXIS_LABEL = {
    "workload.threads": "threads",
    "machine.cores": "cores",
    "memcg.high_mb": "memory.high (MB)",
    "memcg.max_mb": "memory.max (MB)",
    "memcg.swap_max_mb": "memory.swap.max (MB)",
    "workload.file_mb": "file size (MB)",
    "device.ra_kb": "readahead (KB)",
}
_UNIT_SUFFIX = {"_mb": "MB", "_kb": "KB", "_s": "s", "_ms": "ms", "_us": "µs", "_ns": "ns",
                "_pct": "%"}


class ReportError(Exception):
    """A run directory the report cannot be made from; the message is one line."""


@dataclass
class Run:
    dir: Path
    grid: str
    axes: list[str]          # every grid axis column, in aggregate.csv order
    varying: list[str]       # axes with more than one value (x axes if numeric, else facets)
    fixed: dict[str, object]  # axes with a single value
    agg: pl.DataFrame
    hist: pl.DataFrame
    points: pl.DataFrame
    summary_md: str
    config_yaml: str
    policies: list[str]
    # sim_vs_real.csv, when the run has points on both the sim and the kernel backend.
    sim_vs_real: pl.DataFrame | None = None


# ---- reading --------------------------------------------------------------------------------

def _read(run_dir: Path, name: str, reader):
    path = run_dir / name
    if not path.is_file():
        raise ReportError(f"{path}: missing")
    try:
        return reader(path)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ReportError(f"{path}: unreadable ({type(e).__name__}: {first[:200]})") from e


def _need(df: pl.DataFrame, path: Path, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: corrupt (missing columns {', '.join(missing)})")


def load_run(run_dir: Path | str) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a run directory")
    run_dir = run_dir.resolve()
    import yaml  # comes with Hydra/OmegaConf

    config_yaml = _read(run_dir, "config.yaml", lambda p: p.read_text())
    try:
        cfg = yaml.safe_load(config_yaml)
    except yaml.YAMLError as e:
        raise ReportError(f"{run_dir / 'config.yaml'}: unreadable (invalid YAML: "
                          f"{str(e).splitlines()[0]})") from e
    if not isinstance(cfg, dict):
        raise ReportError(f"{run_dir / 'config.yaml'}: corrupt (not a mapping)")
    summary_md = _read(run_dir, "summary.md", lambda p: p.read_text())
    agg = _read(run_dir, "aggregate.csv", read_aggregate)
    _need(agg, run_dir / "aggregate.csv", ["policy", "n_ok", "throughput_rounds_s_mean"])
    hist = _read(run_dir, "histograms.csv", lambda p: pl.read_csv(p, infer_schema_length=None))
    _need(hist, run_dir / "histograms.csv",
          ["policy", "lock", "bucket", "bucket_label", "count_mean"])
    points = _read(run_dir, "points.parquet", pl.read_parquet)
    _need(points, run_dir / "points.parquet", ["policy", "status"])

    axes = agg.columns[:agg.columns.index("policy")]
    _need(hist, run_dir / "histograms.csv", axes)
    varying, fixed = [], {}
    for a in axes:
        if agg.height and agg[a].n_unique() > 1:
            varying.append(a)
        elif agg.height and agg[a].n_unique() == 1:
            fixed[a] = agg[a][0]
    order = {p: i for i, p in enumerate(core.POLICIES)}
    policies = sorted(agg["policy"].unique().to_list(), key=lambda p: (order.get(p, 99), p))
    grid = ((cfg.get("grid") or {}).get("name") if isinstance(cfg.get("grid"), dict) else None)
    svr = None
    if (run_dir / SIM_VS_REAL).is_file():
        svr = _read(run_dir, SIM_VS_REAL, lambda p: pl.read_csv(p, infer_schema_length=None))
        _need(svr, run_dir / SIM_VS_REAL, ["metric", "simulated", "measured", "ratio"])
    return Run(dir=run_dir, grid=grid or run_dir.parent.name, axes=list(axes),
               varying=varying, fixed=fixed, agg=agg, hist=hist, points=points,
               summary_md=summary_md, config_yaml=config_yaml, policies=policies,
               sim_vs_real=svr)


# ---- plotting helpers -----------------------------------------------------------------------

def _axis_label(col: str) -> str:
    if col in AXIS_LABEL:
        return AXIS_LABEL[col]
    for suf, unit in _UNIT_SUFFIX.items():
        if col.endswith(suf):
            return f"{col} ({unit})"
    return col


def _style(policy: str, i: int) -> dict:
    return POLICY_STYLE.get(policy, {"color": _FALLBACK_COLORS[i % len(_FALLBACK_COLORS)],
                                     "marker": "o"})


def _fmt_val(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _fixed_text(run: Run, also: dict[str, object] | None = None) -> str:
    items = {**run.fixed, **(also or {})}
    return ", ".join(f"{k}={_fmt_val(v)}" for k, v in items.items())


def _tied(run: Run, x: str) -> list[str]:
    """Varying axes that move together with x (a zip group): same partition of the points."""
    n = run.agg[x].n_unique()
    return [a for a in run.varying if a != x
            and run.agg.select(pl.struct(x, a).n_unique()).item() == n
            and run.agg[a].n_unique() == n]


def _facets(run: Run, x: str) -> list[str]:
    """The other varying axes, one representative per zip group, x's own group excluded."""
    out, seen = [], set(_tied(run, x)) | {x}
    for a in run.varying:
        if a in seen:
            continue
        out.append(a)
        seen |= {a, *_tied(run, a)}
    return out


def _primary_axes(run: Run) -> list[str]:
    """One axis per zip group (the first listed), so a zipped pair gives one figure."""
    out, seen = [], set()
    for a in run.varying:
        if a not in seen:
            out.append(a)
            seen |= {a, *_tied(run, a)}
    return out


def _x_label(run: Run, x: str) -> str:
    tied = _tied(run, x)
    if not tied:
        return _axis_label(x)
    below = "second line" if len(tied) == 1 else "lines below"
    return _axis_label(x) + f"  ({below}: " + ", ".join(_axis_label(t) for t in tied) + ")"


def _x_ticklabels(run: Run, x: str, xs: list) -> list[str]:
    tied = _tied(run, x)
    if not tied:
        return [_fmt_val(v) for v in xs]
    out = []
    for v in xs:
        row = run.agg.filter(pl.col(x) == v).row(0, named=True)
        out.append(_fmt_val(v) + "".join(f"\n({_fmt_val(row[t])})" for t in tied))
    return out


def _title(run: Run, what: str) -> list[str]:
    """Title paragraphs: what is drawn, then the parameters every point shares."""
    fixed = _fixed_text(run)
    return [f"grid {run.grid}: {what}"] + (["fixed: " + fixed] if fixed else [])


def _panel_grid(n: int) -> tuple[int, int]:
    ncols = 2 if n in (2, 4) else min(n, 3)
    return (n + ncols - 1) // ncols, ncols


def _new_fig(n_panels: int, panel_w: float = 5.2, panel_h: float = 3.8, sharey: bool = True):
    import matplotlib.pyplot as plt
    rows, cols = _panel_grid(n_panels)
    fig, axs = plt.subplots(rows, cols, figsize=(panel_w * cols + 0.6, panel_h * rows + 1.5),
                            sharey=sharey, squeeze=False, layout="constrained")
    flat = list(axs.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _save(fig, path: Path, title: list[str], legend_title: str = "policy") -> Path:
    import matplotlib.pyplot as plt
    # Wrapped to the figure's width (about 12 characters per inch at this size).
    width = max(int(fig.get_figwidth() * 12), 40)
    lines = [w for para in title for w in textwrap.wrap(para, width)]
    fig.suptitle("\n".join(lines), fontsize=10.5, x=0.01, ha="left")
    # One legend for the figure, above the panels, so it never covers data.
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if handles:
        most = max(1, int(fig.get_figwidth() // 2.3))
        rows = -(-len(labels) // most)
        ncol = -(-len(labels) // rows)  # balanced rows: 6 labels, room for 5 -> 2 x 3
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol,
                   title=legend_title, fontsize=9, title_fontsize=9, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _combos(df: pl.DataFrame, cols: list[str]) -> list[dict]:
    if not cols:
        return [{}]
    return df.select(cols).unique().sort(cols).to_dicts()


def _filter(df: pl.DataFrame, combo: dict) -> pl.DataFrame:
    for k, v in combo.items():
        df = df.filter(pl.col(k) == v)
    return df


def _combo_text(combo: dict) -> str:
    out = []
    for k, v in combo.items():
        m = re.match(r"^(.*) \((.*)\)$", _axis_label(k))
        out.append(f"{m.group(1)}={_fmt_val(v)} {m.group(2)}" if m
                   else f"{_axis_label(k)}={_fmt_val(v)}")
    return ", ".join(out)


def _has(run: Run, metric: str) -> bool:
    col = f"{metric}_mean"
    return col in run.agg.columns and run.agg[col].drop_nulls().len() > 0


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")


# ---- the plots ------------------------------------------------------------------------------

def _annotate_change(ax, sub: pl.DataFrame, metric: str, x: str, xs: list,
                     policies: list[str]) -> None:
    """Above each x, every policy's change of the mean against baseline, in its colour."""
    for xv in xs:
        at = sub.filter(pl.col(x) == xv)
        means = dict(zip(at["policy"], at[f"{metric}_mean"], strict=True))
        cis = dict(zip(at["policy"], at[f"{metric}_ci95"].fill_null(0.0), strict=True))
        base = means.get("baseline")
        if base is None:
            continue
        top = max((m + cis.get(p, 0.0)) for p, m in means.items() if m is not None)
        k = 0
        for i, pol in enumerate(policies):
            m = means.get(pol)
            if pol == "baseline" or m is None:
                continue
            ax.annotate(change_text(base, m, metric), xy=(xv, top),
                        xytext=(0, 4 + 11 * k), textcoords="offset points", ha="center",
                        va="bottom", fontsize=8.5, fontweight="bold",
                        color=_style(pol, i)["color"])
            k += 1


def _metric_vs_axis(run: Run, metric: str, x: str, path: Path, what: str,
                    annotate_change: bool = False) -> Path | None:
    facets = _facets(run, x)
    combos = _combos(run.agg, facets)
    import numpy as np
    fig, axs = _new_fig(len(combos))
    drawn = False
    n_pol = len(run.policies)
    for ax, combo in zip(axs, combos, strict=True):
        sub = _filter(run.agg, combo)
        xs = sorted(sub[x].unique().to_list())
        # Policies with equal values would hide each other: shift each a little sideways.
        dodge = 0.012 * (max(xs) - min(xs)) if len(xs) > 1 else 0.0
        for i, pol in enumerate(run.policies):
            d = sub.filter(pl.col("policy") == pol).sort(x)
            d = d.filter(pl.col(f"{metric}_mean").is_not_null())
            if d.height == 0:
                continue
            st = _style(pol, i)
            xv = [v + (i - (n_pol - 1) / 2) * dodge for v in d[x].to_list()]
            mean = d[f"{metric}_mean"].to_numpy()
            ci = d[f"{metric}_ci95"].fill_null(0.0).to_numpy() \
                if f"{metric}_ci95" in d.columns else 0 * mean
            base = pol == "baseline"
            ax.plot(xv, mean, label=pol, color=st["color"], marker=st["marker"],
                    # Later policies thinner, so one drawn over an equal one leaves it visible.
                    linestyle="--" if base else "-",
                    linewidth=2.0 if base else max(3.4 - 0.7 * (i - 1), 1.4),
                    markersize=6, zorder=3)
            # Every plotted metric is a count, rate or share: the band stops at zero.
            ax.fill_between(xv, np.maximum(mean - ci, 0.0), mean + ci, color=st["color"],
                            alpha=0.15,
                            linewidth=0, zorder=2)
            drawn = True
        if annotate_change:
            _annotate_change(ax, sub, metric, x, xs, run.policies)
        ax.set_xticks(xs)
        ax.set_xticklabels(_x_ticklabels(run, x, xs))
        ax.set_xlabel(_x_label(run, x))
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax.grid(True, alpha=0.3)
        if combo:
            ax.set_title(_combo_text(combo), fontsize=10)
    if not drawn:
        import matplotlib.pyplot as plt
        plt.close(fig)
        return None
    # After every panel is drawn: the shared y range must cover all of them.
    for ax in axs:
        ax.relim()
        ax.autoscale_view()
    hi = axs[0].get_ylim()[1]
    # Headroom for the change labels stacked above the highest point; a little room below
    # zero so a policy at exactly 0 (no lost I/O) shows as a line, not as the axis itself.
    axs[0].set_ylim(-0.025 * hi, hi * (1.12 + 0.06 * n_pol) if annotate_change else hi)
    legend = "policy (band: 95% CI" + ("; labels: change of the mean vs baseline)"
                                       if annotate_change else ")")
    return _save(fig, path, _title(run, what), legend)


def _memcg_axis(run: Run) -> str | None:
    for a in ("memcg.high_mb", "memcg.max_mb"):
        if a in run.varying and run.agg[a].dtype.is_numeric():
            return a
    return None


def _hist_plot(run: Run, lock: str, path: Path) -> Path | None:
    h = run.hist.filter(pl.col("lock") == lock)
    if h.height == 0 or h["count_mean"].drop_nulls().len() == 0 \
            or (h["count_mean"].fill_null(0) <= 0).all():
        return None
    facet_axes = _primary_axes(run)
    combos = _combos(h, facet_axes)
    labels = (h.select("bucket", "bucket_label").unique().sort("bucket"))
    # Trim buckets that are empty everywhere at either end: they only add blank space.
    nz = (h.group_by("bucket").agg(pl.col("count_mean").fill_null(0).max())
          .filter(pl.col("count_mean") > 0)["bucket"])
    lo, hi = nz.min(), nz.max()
    labels = labels.filter(pl.col("bucket").is_between(lo, hi))
    buckets = labels["bucket"].to_list()
    pols = [p for p in run.policies if p in set(h["policy"].to_list())]
    fig, axs = _new_fig(len(combos), panel_w=max(6.0, 1.5 + 0.2 * len(buckets) * len(pols)),
                        panel_h=3.8)
    pols = [p for p in run.policies if p in set(h["policy"].to_list())]
    width = 0.8 / max(len(pols), 1)
    import numpy as np
    ymin = None
    for ax, combo in zip(axs, combos, strict=True):
        sub = _filter(h, combo)
        used = set(sub.filter(pl.col("count_mean") > 0)["bucket"].to_list())
        in_use = np.array([b in used for b in buckets])
        for i, pol in enumerate(pols):
            d = sub.filter(pl.col("policy") == pol)
            vals = {b: c for b, c in zip(d["bucket"], d["count_mean"], strict=True)}
            ys = np.array([vals.get(b) or 0.0 for b in buckets], dtype=float)
            pos = ys[ys > 0]
            if pos.size:
                ymin = pos.min() if ymin is None else min(ymin, pos.min())
            st = _style(pol, i)
            xs = np.arange(len(buckets)) + (i - (len(pols) - 1) / 2) * width
            ax.bar(xs, np.where(ys > 0, ys, np.nan), width=width, label=pol,
                   color=st["color"], edgecolor="black" if pol == "baseline" else "none",
                   linewidth=0.6, hatch="//" if pol == "baseline" else None, alpha=0.9)
            # A log axis cannot show zero; say it where another policy has waits, or the
            # empty slot looks like missing data.
            for xz in xs[(ys <= 0) & in_use]:
                ax.text(xz, 0.02, "0", transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=7.5, color=st["color"], fontweight="bold")
        ax.set_yscale("log")
        ax.set_xlim(-0.5, len(buckets) - 0.5)
        ax.set_xticks(range(len(buckets)))
        ax.set_xticklabels(labels["bucket_label"].to_list(), rotation=30, ha="right",
                           fontsize=8)
        ax.set_xlabel("wait time bucket (µs)")
        ax.set_ylabel(f"mmap_lock {lock} waits\n(count, mean per run, log)")
        ax.grid(True, axis="y", alpha=0.3, which="major")
        if combo:
            ax.set_title(_combo_text(combo), fontsize=10)
    if ymin is not None:
        axs[0].set_ylim(bottom=max(ymin * 0.5, 1e-3))
    zero = [p for p in pols if (h.filter(pl.col("policy") == p)["count_mean"]
                                   .fill_null(0) <= 0).all()]
    what = f"mmap_lock {lock} wait histogram, baseline against each policy"
    if zero:
        what += f" ({', '.join(zero)}: no {lock} waits at all)"
    return _save(fig, path, _title(run, what), "policy ('0': no waits in that bucket)")


def _bars_per_policy(run: Run, metric: str, path: Path, what: str) -> Path | None:
    """One group of bars per point (combination of the varying axes), one bar per policy."""
    if not _has(run, metric):
        return None
    import matplotlib.pyplot as plt
    import numpy as np
    facet_axes = _primary_axes(run)
    combos = _combos(run.agg, facet_axes)
    fig, axs = _new_fig(1, panel_w=max(6.0, 1.4 * len(combos) * max(len(run.policies), 2)
                                       / 2), panel_h=4.2)
    ax = axs[0]
    width = 0.8 / len(run.policies)
    base_ys = None
    for i, pol in enumerate(run.policies):
        ys, es = [], []
        for combo in combos:
            d = _filter(run.agg, combo).filter(pl.col("policy") == pol)
            v = d[f"{metric}_mean"][0] if d.height else None
            e = d[f"{metric}_ci95"][0] if d.height and f"{metric}_ci95" in d.columns else None
            ys.append(np.nan if v is None else v)
            es.append(0.0 if e is None else e)
        st = _style(pol, i)
        xs = np.arange(len(combos)) + (i - (len(run.policies) - 1) / 2) * width
        # Whiskers never below zero (every metric here is a count, a time or a rate).
        lower = [min(e, y) if not np.isnan(y) else 0.0 for y, e in zip(ys, es, strict=True)]
        ax.bar(xs, ys, width=width, yerr=[lower, es], capsize=3, label=pol, color=st["color"],
               edgecolor="black" if pol == "baseline" else "none", linewidth=0.6,
               hatch="//" if pol == "baseline" else None, alpha=0.9)
        if pol == "baseline":
            base_ys = ys
        elif base_ys is not None:  # change against baseline above each bar
            for xb, y, e, b0 in zip(xs, ys, es, base_ys, strict=True):
                if not (np.isnan(y) or np.isnan(b0)):
                    ax.annotate(change_text(b0, y, metric), xy=(xb, y + e),
                                xytext=(0, 3), textcoords="offset points", ha="center",
                                va="bottom", fontsize=8, fontweight="bold",
                                color=st["color"])
    ax.set_xticks(range(len(combos)))
    ax.set_xticklabels([_combo_text(c).replace(", ", "\n") or "all points" for c in combos],
                       fontsize=8.5)
    ax.set_ylabel(METRIC_LABEL[metric])
    ax.grid(True, axis="y", alpha=0.3)
    if not combos or combos == [{}]:
        ax.set_xticklabels([""])
    plt.setp(ax.get_xticklabels(), ha="center")
    return _save(fig, path, _title(run, what),
                 "policy (whisker: 95% CI; labels: change vs baseline)")


def _sim_vs_real_plot(run: Run, path: Path, metric: str = "throughput_rounds_s",
                      x: str = "workload.threads") -> Path | None:
    """`metric` against `x`, the sim backend's line against the kernel's (one panel per
    combination of the other varying axes); None without a backend axis holding both, an
    `x` axis, or data."""
    if "backend" not in run.axes or x not in run.axes or not _has(run, metric) \
            or not run.agg[x].dtype.is_numeric():
        return None
    agg = run.agg.filter(pl.col("backend").is_in(["sim", "kernel"]))
    if set(agg["backend"].unique().to_list()) != {"sim", "kernel"}:
        return None
    import numpy as np
    facets = [a for a in _facets(run, x) if a != "backend"]
    combos = _combos(agg, facets)
    fig, axs = _new_fig(len(combos))
    drawn = False
    style = {"sim": {"color": "#1f77b4", "marker": "o", "linestyle": "-"},
             "kernel": {"color": "#d62728", "marker": "s", "linestyle": "--"}}
    for ax, combo in zip(axs, combos, strict=True):
        sub = _filter(agg, combo)
        xs = sorted(sub[x].unique().to_list())
        for backend in ("sim", "kernel"):
            for pol in run.policies:
                d = (sub.filter((pl.col("backend") == backend) & (pl.col("policy") == pol))
                     .filter(pl.col(f"{metric}_mean").is_not_null()).sort(x))
                if d.height == 0:
                    continue
                label = backend if len(run.policies) == 1 else f"{backend} ({pol})"
                mean = d[f"{metric}_mean"].to_numpy()
                ci = d[f"{metric}_ci95"].fill_null(0.0).to_numpy()
                xv = d[x].to_list()
                ax.plot(xv, mean, label=label, markersize=6, linewidth=2.0, zorder=3,
                        **style[backend])
                ax.fill_between(xv, np.maximum(mean - ci, 0.0), mean + ci,
                                color=style[backend]["color"], alpha=0.15, linewidth=0)
                drawn = True
        ax.set_xticks(xs)
        ax.set_xticklabels(_x_ticklabels(run, x, xs))
        ax.set_xlabel(_x_label(run, x))
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if combo:
            ax.set_title(_combo_text(combo), fontsize=10)
    if not drawn:
        import matplotlib.pyplot as plt
        plt.close(fig)
        return None
    return _save(fig, path, _title(run, f"{METRIC_LABEL.get(metric, metric)} against "
                                        f"{_axis_label(x)}: simulated and measured"),
                 "backend (band: 95% CI)")


def make_plots(run: Run) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    plots = run.dir / "plots"
    plots.mkdir(exist_ok=True)
    for old in plots.glob("*.png"):  # a re-run must not leave plots of an older report
        old.unlink()
    out: list[Path | None] = []
    xs = [a for a in _primary_axes(run) if run.agg[a].dtype.is_numeric()]
    if not xs and len(run.policies) > 1:
        # Only the policy (or non-numeric axes) varies: no line to draw, bars instead.
        out.append(_bars_per_policy(run, "throughput_rounds_s",
                                    plots / "throughput_per_policy.png",
                                    "throughput per policy"))
    if _has(run, "throughput_rounds_s"):
        for x in xs:
            out.append(_metric_vs_axis(
                run, "throughput_rounds_s", x, plots / f"throughput_vs_{_slug(x)}.png",
                f"throughput against {_axis_label(x)}, one line per policy",
                annotate_change=True))
    mx = _memcg_axis(run)
    if mx and _has(run, "miss_drop_pct"):
        out.append(_metric_vs_axis(
            run, "miss_drop_pct", mx, plots / f"miss_drop_pct_vs_{_slug(mx)}.png",
            "retries that lost their I/O against the memcg limit"))
    for lock in ("read", "write"):
        out.append(_hist_plot(run, lock, plots / f"mmap_{lock}_wait_hist.png"))
    out.append(_bars_per_policy(run, "fault_latency_p99_us", plots / "fault_latency_p99.png",
                                "page fault latency p99 per policy"))
    if run.sim_vs_real is not None:
        out.append(_sim_vs_real_plot(run, plots / SIM_VS_REAL_PLOT))
    return [p for p in out if p is not None]


# ---- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1.1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em;display:block;max-width:100%;
overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.6em;overflow:auto;font-size:.82em;
max-height:30em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
.failed td{background:#fff0f0}
details summary{cursor:pointer;color:#345}
"""


def _inline(text: str) -> str:
    out, parts = [], re.split(r"(`[^`]*`)", text)
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            s = html.escape(p)
            s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
            out.append(s)
    return "".join(out)


def _cells(line: str) -> list[str]:
    s = line.strip()
    s = s.removeprefix("|")
    s = s.removesuffix("|")
    return [c.strip() for c in s.split("|")]


def markdown_to_html(md: str, heading_shift: int = 1) -> str:
    """The Markdown summary.md uses: ATX headings, pipe tables, '-' lists, paragraphs."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", s)
        if m:
            lvl = min(len(m.group(1)) + heading_shift, 6)
            out.append(f"<h{lvl}>{_inline(m.group(2))}</h{lvl}>")
            i += 1
            continue
        if s.startswith("|") and i + 1 < len(lines) \
                and re.match(r"^\|?\s*:?-{2,}", lines[i + 1].strip()):
            head = _cells(s)
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                       + "</tr></thead><tbody>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
            out.append("</tbody></table>")
            continue
        if re.match(r"^[-*]\s+", s):
            out.append("<ul>")
            while i < len(lines) and re.match(r"^[-*]\s+", lines[i].strip()):
                item = re.sub(r"^[-*]\s+", "", lines[i].strip())
                out.append(f"<li>{_inline(item)}</li>")
                i += 1
            out.append("</ul>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not re.match(
                r"^(#{1,6}\s|\||[-*]\s)", lines[i].strip()):
            para.append(lines[i].strip())
            i += 1
        out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return ("<table" + c + "><thead><tr>"
            + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(_fmt_val(v))}</td>" for v in r)
                      + "</tr>" for r in rows)
            + "</tbody></table>")


def _failed_html(run: Run) -> tuple[str, int]:
    bad = run.points.filter(pl.col("status") != "ok")
    if bad.height == 0:
        return "<p>None: every run finished.</p>", 0
    cols = [a for a in run.varying if a in bad.columns] + ["policy"]
    cols += [c for c in ("replicate", "seed", "status", "error_type") if c in bad.columns]
    rows = []
    for r in bad.iter_rows(named=True):
        err = (r.get("error") or "").strip().splitlines()
        rows.append([r[c] if r[c] is not None else "" for c in cols]
                    + [err[-1] if err else ""])
    body = _table(cols + ["error (last line)"], rows, "failed")
    return body, bad.height


def _axes_html(run: Run) -> str:
    rows = []
    for a in run.axes:
        vals = run.agg[a].unique().sort().to_list()
        rows.append([a, ", ".join(_fmt_val(v) for v in vals),
                     "varies" if len(vals) > 1 else "fixed"])
    rows.append(["policy", ", ".join(run.policies),
                 "varies" if len(run.policies) > 1 else "fixed"])
    return _table(["axis", "values", ""], rows)


def _summary_tables(md: str) -> str:
    """summary.md without its title (the page has one) and its failed-points list (the
    page lists failed runs from points.parquet, with more detail)."""
    out, skip = [], False
    for line in md.splitlines():
        if re.match(r"^#\s", line):
            continue
        if re.match(r"^##\s", line):
            low = line.strip().lower()
            skip = low.startswith(("## failed", "## simulated vs measured"))
        if not skip:
            out.append(line)
    return "\n".join(out)


def _figure(p: Path) -> str:
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return (f'<figure id="{html.escape(p.stem)}"><img alt="{html.escape(p.name)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>plots/{html.escape(p.name)}</figcaption></figure>")


def _sim_vs_real_html(run: Run, plot: Path | None) -> str:
    t = run.sim_vs_real
    assert t is not None
    parts = ['<h2 id="sim-vs-real">Simulated vs measured</h2>',
             ("<p>Every point run on both backends (<code>sim_vs_real.csv</code>): means "
              "over ok replicates; ratio = simulated / measured (above 1: the model counts "
              "more than the kernel). A metric appears only where the kernel measured "
              "it.</p>")]
    if plot is not None:
        parts.append(_figure(plot))
    if t.height == 0:
        parts.append("<p>No point has ok rows on both the sim and the kernel backend.</p>")
        return "\n".join(parts)
    keys = [c for c in t.columns if c not in ("metric", "simulated", "measured", "ratio",
                                              "n_sim", "n_kernel")]
    keys = [k for k in keys if t[k].n_unique() > 1]

    def num(v):
        if v is None:
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"

    rows = [[r[k] for k in keys] + [r["metric"], num(r["simulated"]), num(r["measured"]),
                                     num(r["ratio"]), r["n_sim"], r["n_kernel"]]
            for r in t.iter_rows(named=True)]
    parts.append(_table([*keys, "metric", "simulated", "measured", "ratio", "n sim",
                         "n kernel"], rows))
    return "\n".join(parts)


def render_html(run: Run, plots: list[Path], shown_as: Path | None = None) -> str:
    n_ok = int((run.points["status"] == "ok").sum())
    svr_plot = next((p for p in plots if p.name == SIM_VS_REAL_PLOT), None)
    plots = [p for p in plots if p.name != SIM_VS_REAL_PLOT]
    failed, n_failed = _failed_html(run)
    shown = shown_as or run.dir
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Sweep {html.escape(run.grid)}: {html.escape(shown.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Sweep <code>{html.escape(run.grid)}</code></h1>",
        (f"<p>Run <code>{html.escape(shown.name)}</code> ({html.escape(str(shown))}): "
         f"{run.points.height} runs, {n_ok} ok, {n_failed} failed; {len(plots)} plots. "
         "Generated by <code>python -m sweep.report</code> from the stored files.</p>"),
        '<h2 id="parameters">Parameters</h2>', _axes_html(run),
        ("<details><summary>Full resolved config (config.yaml)</summary>"
         f"<pre>{html.escape(run.config_yaml)}</pre></details>"),
        '<h2 id="tables">Tables (summary.md)</h2>',
        markdown_to_html(_summary_tables(run.summary_md), heading_shift=1),
        '<h2 id="plots">Plots</h2>',
    ]
    if not plots:
        parts.append("<p>No plot applies to this grid.</p>")
    for p in plots:
        parts.append(_figure(p))
    if run.sim_vs_real is not None:
        parts.append(_sim_vs_real_html(run, svr_plot))
    parts += [f'<h2 id="failed">Failed runs ({n_failed})</h2>', failed,
              "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(run_dir: Path | str, quiet: bool = False,
                 shown_as: Path | None = None) -> Path:
    """Write plots/*.png and report.html into run_dir; return the report's path.
    `shown_as`: the directory the page names (a sweep writes its run directory under a
    temporary name and renames it when it is complete)."""
    run = load_run(run_dir)
    plots = make_plots(run)
    out = run.dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_html(run, plots, shown_as), encoding="utf-8")
    tmp.replace(out)
    if not quiet:
        print(f"report: wrote {(shown_as or run.dir) / out.name} ({len(plots)} plots)")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m sweep.report <run dir>   (e.g. results/memcg/latest)",
              file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        write_report(args[0])
    except ReportError as e:
        print(f"sweep.report: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
