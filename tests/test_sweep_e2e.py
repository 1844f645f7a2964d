"""End to end: `python -m sweep +grid=smoke` in a subprocess, outputs, cache, determinism."""

from __future__ import annotations

import json

import polars as pl
import pytest
from _sweep_util import BACKEND, latest, stored_keys, metrics_sorted, run_point, run_sweep

from core.metrics import HIST_BUCKET_LABELS, METRIC_COLUMNS
from sweep.aggregate import HOST_COLUMNS

AXES = ["machine.cores", "workload.threads", "workload.file_mb", "memcg.high_mb",
        "memcg.max_mb", "sim.duration_s", "sim.warmup_s"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    run_sweep(["+grid=smoke"], root, check=True)
    return root, latest(root)


def test_smoke_writes_every_output(smoke):
    root, run = smoke
    assert run.parent.name == "smoke" and (root / "smoke" / "latest").is_symlink()
    for name in ["points.parquet", "aggregate.csv", "compare.csv", "histograms.csv",
                 "config.yaml", "summary.md"]:
        assert (run / name).is_file(), name
    pts = pl.read_parquet(run / "points.parquet")
    # smoke: 2 thread counts x 2 policies = 4 points, 2 seeds each.
    assert pts.height == 8
    for col in [*AXES, "policy", "seed", "replicate", "point_hash", *METRIC_COLUMNS, "status",
                "error", "node_id", "point_wall_s", "point_cpu_s"]:
        assert col in pts.columns, col
    assert pts["status"].to_list() == ["ok"] * 8
    assert pts.select(pl.struct("point_hash", "replicate").n_unique()).item() == 8

    agg = pl.read_csv(run / "aggregate.csv")
    assert agg.height == 4
    for m in METRIC_COLUMNS:
        for s in ("mean", "std", "ci95", "min", "max"):
            assert f"{m}_{s}" in agg.columns
    assert agg["n_ok"].to_list() == [2] * 4
    # Sorted by the axes, baseline before vma_retry.
    assert agg["workload.threads"].to_list() == [4, 4, 8, 8]
    assert agg["policy"].to_list() == ["baseline", "vma_retry"] * 2

    cmp = pl.read_csv(run / "compare.csv", infer_schema_length=None)
    assert cmp.columns == [*AXES, "policy", "metric", "before", "after", "change_abs",
                           "change_pct"]
    # vma_retry vs baseline at 2 thread counts, every metric but the host timings
    assert cmp.height == 2 * (len(METRIC_COLUMNS) - len(HOST_COLUMNS))
    assert set(cmp["policy"]) == {"vma_retry"}

    hist = pl.read_csv(run / "histograms.csv")
    assert hist.columns == [*AXES, "policy", "lock", "bucket", "bucket_label", "count_mean"]
    assert hist.height == 4 * 2 * len(HIST_BUCKET_LABELS)
    assert hist["bucket_label"].to_list()[:8] == HIST_BUCKET_LABELS

    summary = (run / "summary.md").read_text()
    assert "throughput_rounds_s" in summary and "## Failed points" in summary
    assert "backend: " + BACKEND in (run / "config.yaml").read_text()


def test_rerun_computes_nothing(smoke, tmp_path):
    root, first = smoke
    before = stored_keys(root)
    proc = run_sweep(["+grid=smoke"], root, check=True)
    assert "nothing to compute" in proc.stderr
    assert stored_keys(root) == before
    second = latest(root)
    assert second != first
    assert metrics_sorted(second).equals(metrics_sorted(first))


def test_extending_an_axis_computes_only_new_points(smoke):
    root, _ = smoke
    before = set(stored_keys(root))
    proc = run_sweep(["+grid=smoke", "grid.axes.workload.threads=[4,8,6]"], root, check=True)
    after = stored_keys(root)
    new = [k for k in after if k not in before]
    # One new thread count x 2 policies x 2 seeds, each computed once.
    assert len(new) == 4 and len(set(new)) == 4
    assert "8 cached, 4 to compute" in proc.stderr
    assert pl.read_parquet(latest(root) / "points.parquet").height == 12


def test_same_rows_whatever_the_chunking_and_cpus(smoke, tmp_path):
    _, first = smoke
    ref = metrics_sorted(first)
    run_sweep(["+grid=smoke", "sweep.chunk_target_s=1000", "ray.num_cpus=1"], tmp_path / "a",
              check=True)
    run_sweep(["+grid=smoke", "sweep.chunk_target_s=0.001", "sweep.in_flight_per_cpu=1"],
              tmp_path / "b", check=True)
    assert metrics_sorted(latest(tmp_path / "a")).equals(ref)
    assert metrics_sorted(latest(tmp_path / "b")).equals(ref)


def test_dry_run_plans_and_writes_nothing(tmp_path):
    proc = run_sweep(["+grid=smoke", "sweep.dry_run=true"], tmp_path, check=True)
    assert "4 points x 2 replicates = 8 runs" in proc.stdout and "8 to compute" in proc.stdout
    assert not tmp_path.joinpath(".store").exists() and not tmp_path.joinpath("smoke").exists()


def test_failed_point_is_a_row_and_the_sweep_goes_on(tmp_path):
    proc = run_sweep(["+grid=smoke", "backend=synthetic"], tmp_path,
                     env={"SWEEP_SYNTHETIC_FAIL": "workload.threads=8,policy.name=vma_retry"})
    assert proc.returncode == 1, proc.stderr
    run = latest(tmp_path)
    pts = pl.read_parquet(run / "points.parquet")
    failed = pts.filter(pl.col("status") == "failed")
    assert failed.height == 2 and pts.filter(pl.col("status") == "ok").height == 6
    assert failed["error_type"].to_list() == ["SyntheticFailure"] * 2
    assert "synthetic failure" in failed["error"][0]
    assert "SyntheticFailure" in (run / "summary.md").read_text()
    # A rerun retries the failed point only.
    before = len(stored_keys(tmp_path))
    proc = run_sweep(["+grid=smoke", "backend=synthetic"], tmp_path, check=True)
    assert len(stored_keys(tmp_path)) == before + 2


def test_point_prints_one_json_row_per_replicate():
    proc = run_point(["machine.cores=2", "workload.threads=4", "workload.file_mb=2",
                      "memcg.high_mb=8", "memcg.max_mb=10", "sim.duration_s=0.2",
                      "sim.warmup_s=0.05", "replicates=2"])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2
    for r in rows:
        assert set(METRIC_COLUMNS) <= set(r)
        assert r["machine.cores"] == 2 and r["workload.threads"] == 4
        assert isinstance(r["seed"], int)
    assert rows[0]["seed"] != rows[1]["seed"]


def test_point_row_equals_the_grid_row(smoke):
    """sweep.point with the grid's root seed reproduces the grid's replicate 0 exactly."""
    _, run = smoke
    ref = (pl.read_parquet(run / "points.parquet")
           .filter((pl.col("workload.threads") == 4) & (pl.col("policy") == "baseline")
                   & (pl.col("replicate") == 0)).row(0, named=True))
    proc = run_point(["machine.cores=2", "workload.threads=4", "workload.file_mb=2",
                      "memcg.high_mb=8", "memcg.max_mb=10", "sim.duration_s=0.2",
                      "sim.warmup_s=0.05", "seed=0"])
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout.splitlines()[0])
    assert row["seed"] == ref["seed"] and row["point_hash"] == ref["point_hash"]
    for m in ("rounds", "pgfault", "retry_mmap_drop", "mmap_read_count"):
        assert row[m] == ref[m] or (row[m] is None and ref[m] is None), m


def test_relative_output_root_and_no_litter_in_cwd(tmp_path):
    """output.root is relative to where the command ran; Hydra leaves nothing else there."""
    proc = run_sweep(["+grid=smoke", "backend=synthetic", "grid.axes.workload.threads=[4]",
                      "replicates=1"], "out", cwd=tmp_path, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], proc.stderr
    assert (tmp_path / "out" / "smoke" / "latest" / "points.parquet").is_file()
