"""`backend` as a grid axis: per-point backends, sim_vs_real.csv, the summary and report
sections. No Ray and no real kernel: `compute` runs chunks in this process and the backends
are stand-ins (the synthetic rows as 'sim', a fake returning plausible kernel rows)."""

from __future__ import annotations

import polars as pl
import pytest
from hydra import compose, initialize_config_dir

from sweep import app, runner, synthetic
from sweep import backend as backend_mod
from sweep.cli import CONF_DIR
from sweep.errors import SweepError
from sweep.grid import expand, point_hash


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose("config", overrides=["+grid=real_check", f"output.root={tmp_path}",
                                            "sim.duration_s=1.0", "sim.warmup_s=0.2",
                                            *overrides])


def _fake_kernel(params, seeds):
    rows = []
    for s in seeds:
        row = synthetic.run_point(params, s)
        rounds = 100.0 * params.workload.threads
        row.update(rounds=rounds, throughput_rounds_s=rounds / 1.5, pgfault=300.0 * rounds,
                   pgmajfault=2.0, retry_mmap_drop=None, retry_io_miss=None,
                   backend="kernel", kernel_release="fake")
        rows.append(row)
    return rows


@pytest.fixture
def in_process(monkeypatch):
    """Chunks run here (no Ray); 'sim' is the synthetic stand-in, 'kernel' the fake."""
    seen: list[str] = []

    def compute(units, points, backend, cluster, target_s, in_flight, retries, on_rows):
        seen.append(backend)
        items = [(u.point_hash, points[u.point_hash].params.to_dict(),
                  [(u.replicate, u.seed)]) for u in units]
        on_rows(runner.run_chunk(backend, items))

    monkeypatch.setitem(backend_mod.BACKENDS, "sim", synthetic_sim)
    monkeypatch.setitem(backend_mod.BACKENDS, "kernel", _fake_kernel)
    monkeypatch.setattr(app, "compute", compute)
    import ray  # run_chunk asks Ray for its node id, which would start a local Ray here

    def no_ray():
        raise RuntimeError("not under Ray")
    monkeypatch.setattr(ray, "get_runtime_context", no_ray)
    monkeypatch.setattr(app, "connect",
                        lambda *a, **k: runner.Cluster(address=None, cpus=2, kernel_runners=1))
    return seen


def synthetic_sim(params, seeds):
    return [synthetic.run_point(params, s) for s in seeds]


def test_backend_axis_writes_sim_vs_real(tmp_path, in_process):
    cfg = _cfg(tmp_path, "output.report=false")
    assert app.run_sweep(cfg) == 0
    assert in_process == ["sim", "kernel"]  # one backend after the other, sim first
    run = (tmp_path / "real_check" / "latest").resolve()
    pts = pl.read_parquet(run / "points.parquet")
    assert pts.height == 12 and (pts["status"] == "ok").all()
    assert sorted(pts["backend"].unique().to_list()) == ["kernel", "sim"]
    assert pts.columns.count("backend") == 1
    table = pl.read_csv(run / "sim_vs_real.csv")
    axes = [c for c in table.columns[:table.columns.index("metric")]]
    assert "backend" not in axes and "workload.threads" in axes and "policy" in axes
    assert table.columns[len(axes):] == ["metric", "simulated", "measured", "ratio", "n_sim",
                                         "n_kernel"]
    metrics = table["metric"].unique().to_list()
    for m in ("rounds", "throughput_rounds_s", "pgfault_per_round", "pgmajfault_per_round"):
        assert m in metrics
    # The fake measures no retry counters: they are left out, not compared with nothing.
    assert "retry_mmap_drop" not in metrics
    # 3 thread counts x the metrics both backends have, each from 2 replicates apiece.
    assert table.height == 3 * len(metrics)
    assert table["workload.threads"].unique().sort().to_list() == [1, 2, 4]
    assert (table["n_sim"] == 2).all() and (table["n_kernel"] == 2).all()
    r = table.filter((pl.col("workload.threads") == 2)
                     & (pl.col("metric") == "pgfault_per_round")).row(0, named=True)
    assert r["measured"] == pytest.approx(300.0)
    assert r["ratio"] == pytest.approx(r["simulated"] / r["measured"])
    summary = (run / "summary.md").read_text()
    assert "## Simulated vs measured" in summary
    assert "| workload.threads | metric | simulated | measured | ratio |" in summary


def test_report_has_the_section_and_plot(tmp_path, in_process):
    pytest.importorskip("matplotlib")
    from sweep.report import SIM_VS_REAL_PLOT, write_report
    cfg = _cfg(tmp_path, "output.report=false", "replicates=1")
    assert app.run_sweep(cfg) == 0
    run = (tmp_path / "real_check" / "latest").resolve()
    html = write_report(run, quiet=True).read_text()
    assert '<h2 id="sim-vs-real">Simulated vs measured</h2>' in html
    assert SIM_VS_REAL_PLOT in html
    assert (run / "plots" / SIM_VS_REAL_PLOT).is_file()
    # The section is not repeated among the summary tables.
    assert html.count("Simulated vs measured</h") == 1


def test_no_sim_vs_real_without_both_backends(tmp_path, in_process):
    cfg = _cfg(tmp_path, "output.report=false", "grid.axes.backend=[sim]", "replicates=1")
    assert app.run_sweep(cfg) == 0
    run = (tmp_path / "real_check" / "latest").resolve()
    assert not (run / "sim_vs_real.csv").exists()
    assert "Simulated vs measured" not in (run / "summary.md").read_text()


def test_backend_axis_is_part_of_the_hash():
    import core
    base = core.Params().to_dict()
    pts = expand(base, {"backend": ["sim", "kernel"], "workload.threads": [1]})
    assert [p.backend for p in pts] == ["sim", "kernel"]
    assert pts[0].point_hash == point_hash(pts[0].params, "sim")
    assert pts[1].point_hash == point_hash(pts[1].params, "kernel")
    assert pts[0].point_hash != pts[1].point_hash
    # The same point through the top-level setting has the same hash (shared cache).
    (top,) = expand(base, {"workload.threads": [1]}, backend="kernel")
    assert top.point_hash == pts[1].point_hash
    # Exclude rules may name the backend.
    kept = expand(base, {"backend": ["sim", "kernel"], "workload.threads": [1, 2]},
                  exclude=[{"backend": "kernel", "workload.threads": 2}])
    assert [(p.backend, p.params.workload.threads) for p in kept] == [
        ("sim", 1), ("sim", 2), ("kernel", 1)]


def test_unknown_backend_value_is_one_line_error(tmp_path):
    with pytest.raises(SweepError) as e:
        app.plan(_cfg(tmp_path, "grid.axes.backend=[sim,kernl]"))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == "grid.axes.backend: unknown backend 'kernl'; one of kernel, sim, synthetic"


def test_unknown_backend_value_on_the_command_line(tmp_path):
    from _sweep_util import run_sweep
    proc = run_sweep(["+grid=real_check", "grid.axes.backend=[sim,nope]"], tmp_path,
                     timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [("error: grid.axes.backend: unknown backend 'nope'; one of kernel, "
                      "sim, synthetic")], proc.stderr
    assert not (tmp_path / "real_check").exists()


def test_remeasure_reruns_kernel_points_only(tmp_path, in_process):
    cfg = _cfg(tmp_path, "output.report=false")
    assert app.run_sweep(cfg) == 0
    assert in_process == ["sim", "kernel"]
    in_process.clear()
    assert app.run_sweep(cfg) == 0
    assert in_process == []                       # everything served from the store
    assert app.run_sweep(_cfg(tmp_path, "output.report=false", "sweep.remeasure=true")) == 0
    assert in_process == ["kernel"]               # measurements again, simulations cached
    pts = pl.read_parquet((tmp_path / "real_check" / "latest").resolve() / "points.parquet")
    assert pts.height == 12 and (pts["status"] == "ok").all()
