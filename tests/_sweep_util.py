"""Helpers for the sweep tests: run the CLI in a subprocess, read a run dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from sweep.backend import sim_available

REPO = Path(__file__).resolve().parent.parent

# The real simulator once core/simulate.py has landed; the synthetic stand-in before that
# (or when SWEEP_TEST_BACKEND says so).
BACKEND = os.environ.get("SWEEP_TEST_BACKEND") or (
    "sim" if sim_available() else "synthetic")

# Small points for the real simulator: seconds per grid on 2 cores.
TINY = ["machine.cores=2", "sim.duration_s=0.2", "sim.warmup_s=0.05"]


def run_sweep(args: list[str], root: Path | str, env: dict | None = None, timeout: float = 240,
              check: bool | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sweep", *args, f"output.root={root}"]
    if not any(a.startswith("backend=") for a in args):
        cmd.append(f"backend={BACKEND}")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    if env and "RAY_ADDRESS" in env:
        full_env["RAY_ADDRESS"] = env["RAY_ADDRESS"]
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def latest(root: Path, grid: str = "smoke") -> Path:
    return (root / grid / "latest").resolve()


def stored_keys(root: Path) -> list[tuple[str, int]]:
    """Every (point hash, replicate) the store of `root` has committed, in commit order
    (its index.sqlite's entries; read-only, so a running sweep is not disturbed)."""
    import sqlite3

    path = root / ".store" / "index.sqlite"
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return [(h, int(r)) for h, r in
                    db.execute("SELECT point_hash, replicate FROM entries ORDER BY id")]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []  # created but not yet initialised


def metrics_sorted(run_dir: Path) -> pl.DataFrame:
    """points.parquet without per-run columns (wall times, nodes), sorted by key."""
    from core.metrics import METRIC_COLUMNS
    drop_cols = {"wall_s", "events_per_s"}
    cols = ["point_hash", "replicate", "seed", "status",
            *[c for c in METRIC_COLUMNS if c not in drop_cols]]
    return pl.read_parquet(run_dir / "points.parquet", columns=cols).sort(
        ["point_hash", "replicate"])


def run_point(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sweep.point", *args]
    if not any(a.startswith("backend=") for a in args):
        cmd.append(f"backend={BACKEND}")
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)


def store_synthetic_rows(root: Path, points, units) -> None:
    """Compute `units` on the synthetic backend in this process (run_chunk without Ray) and
    append their rows to the store of `root`."""
    import core
    from sweep.runner import run_chunk
    from sweep.store import PointStore

    by_hash = {p.point_hash: p for p in points}
    items = [(u.point_hash, by_hash[u.point_hash].params.to_dict(), [(u.replicate, u.seed)])
             for u in units]
    rows = run_chunk("synthetic", items)
    for r in rows:
        r.update(backend="synthetic", model_version=core.MODEL_VERSION)
    PointStore(root).append(rows)
