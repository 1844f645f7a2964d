"""What a run directory says: run.json, config.yaml as run, compare.csv without host
timings, CIs only from three replicates, changes against a near-zero base. No Ray: rows are
computed in this process on the synthetic backend."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from _sweep_util import store_synthetic_rows
from hydra import compose, initialize_config_dir

import core
from sweep import app
from sweep.aggregate import HOST_COLUMNS, _mean_ci, change_text
from sweep.cli import CONF_DIR
from sweep.errors import SweepError
from sweep.store import PointStore


def _run_dir(root, *extra):
    overrides = ["+grid=smoke", "backend=synthetic", f"output.root={root}", *extra]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=overrides)
    name, points, units = app.plan(cfg, overrides=list(extra))
    store_synthetic_rows(root, points, units)
    return app.write_run_dir(cfg, root, name, points, units, PointStore(root), n_cached=0)


def test_run_json_and_config_as_run(tmp_path):
    run = _run_dir(tmp_path, "seed=3", "workload.threads=6")
    info = json.loads((run / "run.json").read_text())
    assert info["model_version"] == core.MODEL_VERSION and info["root_seed"] == 3
    assert info["replicates"] == 2 and info["points"] == 2 and info["runs"] == 4
    assert set(info["packages"]) >= {"ray", "numba", "polars", "hydra-core"}
    assert info["packages"]["polars"] == pl.__version__
    assert len(info["git_commit"] or "x" * 40) == 40
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # The threads axis [4, 8] was replaced by the command line's 6; cores is an axis.
    assert cfg["grid"]["axes"]["workload.threads"] == [6]
    assert cfg["grid"]["axes"]["policy.name"] == ["baseline", "vma_retry"]
    assert cfg["machine"]["cores"] == app.AXIS_MARK
    assert cfg["workload"]["threads"] == app.AXIS_MARK
    assert cfg["seed"] == 3


def test_compare_leaves_out_host_timings(tmp_path):
    run = _run_dir(tmp_path)
    cmp = pl.read_csv(run / "compare.csv")
    assert not set(HOST_COLUMNS) & set(cmp["metric"].unique().to_list())
    assert "throughput_rounds_s" in cmp["metric"].to_list()
    assert "change_abs" in cmp.columns


def test_ci_needs_three_replicates(tmp_path):
    two = pl.read_csv(_run_dir(tmp_path / "a") / "aggregate.csv", infer_schema_length=None)
    assert two["throughput_rounds_s_ci95"].null_count() == two.height
    three = pl.read_csv(_run_dir(tmp_path / "b", "replicates=3") / "aggregate.csv",
                        infer_schema_length=None)
    assert three["throughput_rounds_s_ci95"].null_count() == 0


def test_mean_ci_text():
    r = {"n_ok": 2, "x_mean": 5.0, "x_ci95": None, "x_min": 4.0, "x_max": 6.0}
    assert _mean_ci(r, "x") == "5 (4, 6)"
    r = {"n_ok": 3, "x_mean": 5.0, "x_ci95": 0.5, "x_min": 4.0, "x_max": 6.0}
    assert _mean_ci(r, "x") == "5 ± 0.5"
    assert _mean_ci({"n_ok": 1, "x_mean": 5.0}, "x") == "5"


def test_change_text_near_zero_base():
    assert change_text(0.00941, 0.0, "miss_drop_pct") == "-0.00941 pp"
    assert change_text(45.0, 1.5, "miss_drop_pct") == "-43.5 pp"
    assert change_text(0.0, 3.0, "retry_io_miss") == "+3"
    assert change_text(40.0, 80.0, "throughput_rounds_s") == "+100.0%"
    assert change_text(None, 1.0, "rounds") == "-"


def test_compile_is_announced_once(monkeypatch, capsys):
    from sweep import backend
    warm = set()
    monkeypatch.setattr(backend, "jit_cache_warm", lambda ws: warm.issuperset(ws))

    def compile_it(ws):
        warm.update(ws)
        return 12.0
    monkeypatch.setattr(backend, "warm_simulator", compile_it)
    app.compile_once("sweep x", ["file_thrash", "swapin"])
    app.compile_once("sweep x", ["swapin"])
    err = capsys.readouterr().err.splitlines()
    assert err == ["sweep x: compiling the simulator for file_thrash, swapin (first run of "
                   f"this version of core/ on this machine, {app.COMPILE_S}; cached "
                   "afterwards)", "sweep x: compiled in 12 s"]


def test_dry_run_lists_the_points_and_estimates_from_stored_runs(tmp_path):
    _run_dir(tmp_path)  # stores the smoke grid's 8 runs (synthetic rows with a wall time)
    overrides = ["+grid=smoke", "backend=synthetic", f"output.root={tmp_path}",
                 "grid.axes.workload.threads=[4,8,16]"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=overrides)
    name, points, units = app.plan(cfg, overrides=overrides[3:])
    store = PointStore(tmp_path)
    by_hash = {p.point_hash: p for p in points}
    done = store.done([u.key for u in units])
    todo = [u for u in units if u.key not in done]
    text = app.dry_run_text(cfg, "sweep smoke", points, units, todo, done, store, by_hash)
    lines = text.splitlines()
    assert lines[0].startswith("sweep smoke: 6 points x 2 replicates = 12 runs; 8 already in")
    assert "| workload.threads | policy |" in lines
    assert "| 16 | vma_retry |" in lines
    assert "synthetic: 4 runs, about" in lines[-1]
    assert "median speed over 4 stored points of this grid" in lines[-1]


def test_a_point_that_makes_no_progress_is_stalled(tmp_path):
    from sweep.aggregate import STALLED, _stalled_warning
    pts = pl.DataFrame({
        "workload.threads": [8, 8, 16, 16, 4, 4],
        "policy": ["baseline", "vma_retry", "baseline", "baseline", "baseline", "baseline"],
        "status": ["ok", "ok", "ok", "failed", "ok", "ok"],
        "rounds": [0.0, 5.0, None, None, None, None],          # file_thrash
        "swapin_rounds": [None, None, 0.0, None, None, None],  # swapin
        "launch_ms": [None, None, None, None, None, 250.0],    # app_launch
    }).with_columns(stalled=STALLED)
    assert pts["stalled"].to_list() == [True, False, True, None, True, False]
    pts.write_parquet(tmp_path / "points.parquet")
    warning = _stalled_warning(tmp_path, ["workload.threads"])
    assert warning[0].startswith("**Warning: 3 replicate(s) made no progress.**")
    assert warning[2:5] == ["- workload.threads=8, policy=baseline",
                            "- workload.threads=16, policy=baseline",
                            "- workload.threads=4, policy=baseline"]


def test_a_run_directory_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    from sweep import aggregate
    cfg_root = tmp_path
    _run_dir(cfg_root)  # fills the store
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=["+grid=smoke", "backend=synthetic",
                                            f"output.root={cfg_root}"])

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(aggregate, "histograms", full)
    before = sorted(p.name for p in (cfg_root / "smoke").iterdir())
    with pytest.raises(SweepError, match=r"No space left on device\): every computed row is "
                                         "in .*; free space and run the same command"):
        app.run_sweep(cfg)
    assert sorted(p.name for p in (cfg_root / "smoke").iterdir()) == before
