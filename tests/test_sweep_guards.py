"""A sweep stopped by SIGTERM, a broken grid file, and run directories that are complete or
absent (synthetic backend)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import polars as pl
from _sweep_util import REPO, latest, metrics_sorted, run_sweep, store_synthetic_rows, stored_keys
from hydra import compose, initialize_config_dir

from sweep import app
from sweep.cli import CONF_DIR
from sweep.store import PointStore

ARGS = ["+grid=smoke", "backend=synthetic", "grid.axes.workload.threads=[4,5,6,7,8,9]",
        "sweep.chunk_target_s=0.5"]


def test_sigterm_stops_cleanly_and_the_rerun_resumes(tmp_path):
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "SWEEP_SYNTHETIC_WORK_S": "0.3"}
    proc = subprocess.Popen([sys.executable, "-m", "sweep", *ARGS, f"output.root={root}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(stored_keys(root)) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("terminated: finished chunks are in the store; "
                                            "run the same command to resume")
    assert not (root / "smoke").exists()  # no run directory, not even a partial one
    stored = len(stored_keys(root))
    assert 0 < stored < 24
    done = run_sweep(ARGS, root, check=True)
    assert f"{stored} cached, {24 - stored} to compute" in done.stderr
    pts = pl.read_parquet(latest(root) / "points.parquet")
    assert pts.height == 24 and set(pts["status"]) == {"ok"}
    # The same rows as a sweep never interrupted (computed here, without Ray).
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=[*ARGS, f"output.root={tmp_path / 'clean'}"])
    name, points, units = app.plan(cfg, overrides=[])
    store_synthetic_rows(tmp_path / "clean", points, units)
    clean = app.write_run_dir(cfg, tmp_path / "clean", name, points, units,
                              PointStore(tmp_path / "clean"), n_cached=0)
    assert metrics_sorted(latest(root)).equals(metrics_sorted(clean))


def test_a_run_directory_is_published_whole(tmp_path):
    run_sweep(["+grid=smoke", "backend=synthetic"], tmp_path, check=True)
    names = [p.name for p in (tmp_path / "smoke").iterdir()]
    assert not [n for n in names if n.endswith(".partial")]
    run = latest(tmp_path)
    assert (run / "report.html").is_file() and (run / "run.json").is_file()
    assert f"Run <code>{run.name}</code>" in (run / "report.html").read_text()


def test_a_broken_grid_file_names_its_file_and_line(tmp_path):
    conf = tmp_path / "conf" / "grid"
    conf.mkdir(parents=True)
    (conf / "broken.yaml").write_text("defaults:\n  - base_grid\nname: broken\naxes:\n"
                                      "  workload:\n    threads: [4, 8\n")
    proc = run_sweep(["--config-dir", str(tmp_path / "conf"), "+grid=broken"],
                     tmp_path / "out", timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {conf / 'broken.yaml'}:6:14: invalid YAML: ")
