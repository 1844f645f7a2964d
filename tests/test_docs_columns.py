"""docs/columns.md documents every output column: each metric of core.METRIC_COLUMNS exactly
once as a table row, and no row for a column the code does not write.

The non-metric columns the page documents are listed here (NON_METRIC_COLUMNS) and checked
against what the code writes: STORE_SCHEMA for points.parquet, the kernel backend's
EXTRA_COLUMNS for extra_json, and the columns sweep.aggregate and sim_vs_real_table return
for a tiny hand-made points.parquet (no simulation). Renaming a column in the code, or
adding one, fails here until the page follows.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from core.metrics import METRIC_COLUMNS
from sweep import aggregate as agg
from sweep.kernel_backend import EXTRA_COLUMNS, sim_vs_real_table
from sweep.store import STORE_SCHEMA

DOC = Path(__file__).resolve().parent.parent / "docs" / "columns.md"
AXIS = "workload.threads"  # a stand-in grid axis

# Every column the page documents besides the metrics, by file. `<axis>` stands for the
# grid's axis columns, `<metric>_<stat>` for aggregate.csv's statistics of each metric.
NON_METRIC_COLUMNS = {
    "points.parquet": ["<axis>", "policy", "seed", "replicate", "point_hash", "status",
                       "error_type", "error", "node_id", "point_wall_s", "point_cpu_s",
                       "backend", "model_version", "params_json", "extra_json", "stalled"],
    "extra_json": ["kernel_release", "lru", "read_ahead_kb", "cores_used", "params_ignored",
                   "memcg_path", "pgpgin_pages", "loadavg_1m_before", "vmstat_delta",
                   "kmem_peak_mb"],
    "aggregate.csv": ["n_ok", "n_failed", "<metric>_mean", "<metric>_std", "<metric>_ci95",
                      "<metric>_min", "<metric>_max"],
    "compare.csv": ["metric", "before", "after", "change_abs", "change_pct"],
    "histograms.csv": ["lock", "bucket", "bucket_label", "count_mean"],
    "sim_vs_real.csv": ["metric", "simulated", "measured", "ratio", "n_sim", "n_kernel"],
}


def doc_rows() -> list[str]:
    """The first cell of every table body row of the page, without its backticks."""
    names = []
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            continue
        first = line.split("|")[1].strip()
        if first == "column" or re.fullmatch(r"[-: ]+", first):
            continue  # header, separator
        m = re.fullmatch(r"`([^`]+)`", first)
        assert m, f"docs/columns.md: a table row must start with one `column`: {line}"
        names.append(m.group(1))
    return names


def test_every_metric_is_one_row():
    rows = doc_rows()
    for m in METRIC_COLUMNS:
        assert rows.count(m) == 1, f"metric {m!r} is a row of docs/columns.md " \
                                   f"{rows.count(m)} times, not once"


def test_no_row_for_an_unknown_column():
    known = set(METRIC_COLUMNS) | {c for cols in NON_METRIC_COLUMNS.values() for c in cols}
    unknown = [r for r in doc_rows() if r not in known]
    assert not unknown, f"docs/columns.md has rows for columns the code does not write: {unknown}"
    documented = set(doc_rows())
    missing = sorted(known - documented)
    assert not missing, f"docs/columns.md has no row for {missing}"


@pytest.fixture(scope="module")
def points_path(tmp_path_factory) -> Path:
    """A points.parquet as write_run_dir lays it out: two policies, each point on the sim and
    the kernel backend, two ok replicates each; every metric 1.0 (2.0 under vma_retry)."""
    rows = []
    for policy, value in (("baseline", 1.0), ("vma_retry", 2.0)):
        for backend in ("sim", "kernel"):
            for rep in range(2):
                row = dict.fromkeys(STORE_SCHEMA)
                row.update({c: value for c in METRIC_COLUMNS})
                row.update(point_hash=f"{policy}-{backend}", replicate=rep, seed=rep,
                           backend=backend, status="ok")
                rows.append({AXIS: 8, "policy": policy, **row})
    path = tmp_path_factory.mktemp("run") / "points.parquet"
    schema = {AXIS: pl.Int64, "policy": pl.String, **STORE_SCHEMA}
    pl.DataFrame(rows, schema=schema).write_parquet(path)
    return path


def _own_columns(frame: pl.DataFrame) -> list[str]:
    """The columns of an output besides the axis and policy key columns."""
    return [c for c in frame.columns if c not in (AXIS, "policy")]


def test_documented_columns_are_the_written_ones(points_path):
    """NON_METRIC_COLUMNS against the code: a renamed or added column fails here."""
    # points.parquet (sweep.app.write_run_dir): the axes, policy, then STORE_SCHEMA.
    written = ["<axis>", "policy", *(c for c in STORE_SCHEMA if c not in METRIC_COLUMNS),
               "stalled"]
    assert sorted(NON_METRIC_COLUMNS["points.parquet"]) == sorted(written)
    # extra_json holds the kernel backend's columns that are not STORE_SCHEMA columns.
    extra = [c for c in EXTRA_COLUMNS if c not in STORE_SCHEMA]
    assert sorted(NON_METRIC_COLUMNS["extra_json"]) == sorted(extra)

    aggregate = agg.aggregate(points_path, [AXIS])
    stats = [f"{m}_{s}" for m in METRIC_COLUMNS for s in agg.STATS]
    assert [c for c in aggregate.columns if c in stats] == stats
    own = [c for c in _own_columns(aggregate) if c not in stats and c != "point_hash"]
    assert sorted(NON_METRIC_COLUMNS["aggregate.csv"]) == sorted(
        own + [f"<metric>_{s}" for s in agg.STATS])

    compare = agg.compare(points_path, [AXIS])
    # vma_retry against baseline, per metric but the host timings
    assert compare.height == len(METRIC_COLUMNS) - len(agg.HOST_COLUMNS)
    assert sorted(NON_METRIC_COLUMNS["compare.csv"]) == sorted(_own_columns(compare))

    histograms = agg.histograms(points_path, [AXIS])
    assert sorted(NON_METRIC_COLUMNS["histograms.csv"]) == sorted(_own_columns(histograms))

    svr = sim_vs_real_table(pl.read_parquet(points_path), [AXIS, "policy"])
    assert svr.height > 0
    assert sorted(NON_METRIC_COLUMNS["sim_vs_real.csv"]) == sorted(_own_columns(svr))
