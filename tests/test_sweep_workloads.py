"""The swapin, app_launch and debate grids end to end at a reduced size: every policy runs,
and compare.csv / summary.md carry the cover letter's Before / After / Change tables."""

from __future__ import annotations

import polars as pl
import pytest
from _sweep_util import BACKEND, latest, run_sweep

import core

pytestmark = pytest.mark.skipif(BACKEND != "sim", reason="needs the simulator backend")

REDUCED = {
    "swapin": ["grid.axes.workload.anon_mb=[2]", "grid.axes.machine.cores=[2]",
               "grid.axes.sim.duration_s=[0.1]"],
    "app_launch": ["grid.axes.workload.threads=[4]", "grid.axes.workload.app_touches=[60]",
                   "grid.axes.machine.cores=[2]", "replicates=1"],
    "debate": ["scenario=fork_stall", "grid.axes.workload.threads=[2]",
               "grid.axes.workload.fork_vmas=[500]", "grid.axes.workload.fork_period_ms=[20.0]",
               "grid.axes.device.throttle_read_mbps=[0.0,2.0]", "+grid.axes.machine.cores=[2]",
               "+grid.axes.sim.duration_s=[0.2]", "+grid.axes.sim.warmup_s=[0.05]",
               "replicates=1"],
}


@pytest.mark.parametrize("grid", sorted(REDUCED))
def test_workload_grid_end_to_end(grid, tmp_path):
    run_sweep([f"+grid={grid}", *REDUCED[grid]], tmp_path, check=True, timeout=600)
    run = latest(tmp_path, grid)
    pts = pl.read_parquet(run / "points.parquet")
    assert set(pts["status"]) == {"ok"}
    assert set(pts["policy"]) == set(core.POLICIES)
    if grid == "swapin":
        assert set(pts["device.swap"]) == {"zram", "disk"}
        assert (pts["swapin_rounds"] > 0).all() and (pts["pageout_rounds"] > 0).all()
        assert (pts["pswpout"] > 0).all()
        assert pts["launch_ms"].null_count() == pts.height
    elif grid == "debate":
        assert set(pts["policy.fork_lock"]) == {"all", "cow"}
        # unthrottled, every fork returns; throttled, a fork may still wait at the end
        free = pts.filter(pl.col("device.throttle_read_mbps") == 0)
        assert (free["forks"] > 0).all() and (free["fork_latency_max_ms"] > 0).all()
        assert pts["launch_ms"].null_count() == pts.height
    else:
        assert (pts["launch_ms"] > 0).all()
        assert pts["swapin_rounds"].null_count() == pts.height
    cmp = pl.read_csv(run / "compare.csv", infer_schema_length=None)
    own = {"swapin": ["pageout_rounds", "swapin_rounds"],
           "debate": ["fork_latency_p50_ms", "fork_latency_max_ms"]}.get(grid, ["launch_ms"])
    for m in [*own, "mmap_read_count", "mmap_read_hist_0", "mmap_write_hist_7"]:
        assert m in set(cmp["metric"]), m
    summary = (run / "summary.md").read_text()
    assert "## Cover-letter tables" in summary
    assert "### vma_retry against baseline" in summary
    assert "| mmap_lock read wait (us) | Before | After | Change |" in summary
    assert "| [1000000,inf) |" in summary
    for m in own:
        assert f"| {m} |" in summary
