"""A store a database engineer would trust: every part is checked against the checksum
recorded when it was committed; a damaged, truncated, replaced or garbage part is
quarantined and its rows are computed again in the same run, giving the same final rows; a
file the index does not know is never read; two sweeps on one store compute each run once.
Synthetic backend, subprocess sweeps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _sweep_util import REPO, latest, stored_keys, metrics_sorted, run_sweep

ARGS = ["+grid=smoke", "backend=synthetic"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    run_sweep(ARGS, root, check=True)
    return metrics_sorted(latest(root))


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "bitflip":
        b = bytearray(data)
        b[len(b) // 3] ^= 0x04
        path.write_bytes(bytes(b))


def test_damaged_parts_are_quarantined_and_recomputed(tmp_path, reference):
    """Four parts damaged four ways at once, and a stranger file: each damaged part found,
    set aside with one line, and its rows computed again in the same run, giving the rows
    of an undamaged store; the stranger is left alone."""
    args = [*ARGS, "sweep.chunk_target_s=0.001"]   # a part per point: 4 parts
    run_sweep(args, tmp_path, check=True)
    parts = sorted((tmp_path / ".store" / "parts").glob("part-*.parquet"))
    assert len(parts) >= 4
    original = parts[0].read_bytes()
    for path, how in zip(parts, ["truncated", "garbage", "bitflip"]):
        _damage(path, how)
    parts[3].write_bytes(original)   # replaced by another valid part of the same store
    # A file the index does not know is never read (nor quarantined).
    (tmp_path / ".store" / "parts" / "part-stranger.parquet").write_bytes(b"not parquet")
    before = len(stored_keys(tmp_path))
    proc = run_sweep(args, tmp_path, check=True)
    warn = [ln for ln in proc.stderr.splitlines() if ln.startswith("store: ")]
    assert len(warn) == 4, proc.stderr
    for path in parts[:4]:
        assert sum(path.name in w for w in warn) == 1
        assert (tmp_path / ".store" / "quarantine" / path.name).is_file()
    # Their rows left the index with them and were computed again into new parts.
    assert len(stored_keys(tmp_path)) == before and " to compute on " in proc.stderr
    assert metrics_sorted(latest(tmp_path)).equals(reference)
    again = run_sweep(args, tmp_path, check=True)        # and now nothing is wrong
    assert "nothing to compute" in again.stderr and "store: " not in again.stderr
    assert (tmp_path / ".store" / "parts" / "part-stranger.parquet").is_file()


def test_two_sweeps_at_once_compute_each_run_once(tmp_path, reference):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "SWEEP_SYNTHETIC_WORK_S": "0.3"}
    cmd = [sys.executable, "-m", "sweep", *ARGS, "ray.num_cpus=1",
           f"output.root={tmp_path}"]
    a = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out_a, err_a = a.communicate(timeout=300)
    out_b, err_b = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    keys = stored_keys(tmp_path)
    assert len(keys) == 8 and len(set(keys)) == 8        # each of the 8 runs committed once
    runs = sorted(p for p in (tmp_path / "smoke").iterdir() if p.name != "latest")
    assert len(runs) == 2
    for run in runs:
        assert metrics_sorted(run).equals(reference)
