"""backend=kernel through the sweep: the kernel_runner resource on local Ray, extra columns."""

from __future__ import annotations

import importlib.util
import json
import shutil

import polars as pl
import pytest
from _sweep_util import latest, run_sweep

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sweep.kernel_backend") is None
    or not (shutil.which("cc") or shutil.which("gcc")),
    reason="needs sweep/kernel_backend.py and a C compiler")


def test_kernel_point_runs_through_the_sweep(tmp_path):
    args = ["+grid=real_check", "grid.axes.backend=[kernel]", "grid.axes.workload.threads=[1]",
            "replicates=1", "grid.axes.sim.duration_s=[1.0]", "grid.axes.sim.warmup_s=[0.2]"]
    proc = run_sweep(args, tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pts = pl.read_parquet(latest(tmp_path, "real_check") / "points.parquet")
    assert pts.height == 1 and pts["status"][0] == "ok", pts["error"][0]
    assert pts["backend"][0] == "kernel" and pts["rounds"][0] > 0
    extra = json.loads(pts["extra_json"][0])
    assert "kernel_release" in extra
