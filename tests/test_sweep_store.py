"""Point store, chunk planning, model-version invalidation and the report hook (no Ray)."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types

import polars as pl
import pytest
from _sweep_util import REPO, store_synthetic_rows
from hydra import compose, initialize_config_dir

import core
from sweep import app
from sweep.cli import CONF_DIR
from sweep.grid import expand, units_of
from sweep.runner import ChunkPlanner, run_chunk
from sweep.errors import SweepError
from sweep.store import PointStore


def _cfg(root, *extra):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose("config", overrides=["+grid=smoke", "backend=synthetic",
                                            f"output.root={root}", *extra])


def _fill_store(root, cfg):
    """Compute the grid's rows in this process (run_chunk without Ray) into the store."""
    _, points, units = app.plan(cfg)
    store_synthetic_rows(root, points, units)
    return points, units


def test_store_roundtrip_newest_wins_and_failed_is_not_done(tmp_path):
    store = PointStore(tmp_path)
    store.append([{"point_hash": "a", "replicate": 0, "seed": 1, "status": "failed",
                   "error": "boom"}])
    assert store.done([("a", 0, 1)]) == set()
    store.append([{"point_hash": "a", "replicate": 0, "seed": 1, "status": "ok", "rounds": 3,
                   "kernel_release": "6.1"}])
    fresh = PointStore(tmp_path)  # re-read the index from disk
    assert fresh.done([("a", 0, 1), ("a", 1, 1)]) == {("a", 0, 1)}
    rows = fresh.rows([("a", 0, 1)]).collect()
    assert rows.height == 1 and rows["rounds"][0] == 3.0 and rows["status"][0] == "ok"
    assert "kernel_release" in rows["extra_json"][0]


def test_a_writer_killed_inside_its_index_transaction_leaves_no_torn_entry(tmp_path):
    """The store's form of a torn manifest line: a writer dies after its part's rename,
    with the part's row and half its entries inserted but not committed. The next store
    sees the index as it was before (the part unknown, its runs not done) and writes on."""
    store = PointStore(tmp_path)
    store.append([{"point_hash": "a", "replicate": 0, "seed": 1, "status": "ok"}])
    script = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
from sweep.store import PointStore
db = PointStore({str(tmp_path)!r}).db()
(PointStore({str(tmp_path)!r}).parts_dir / "part-torn.parquet").write_bytes(b"PAR1 rows")
db.execute("BEGIN")
db.execute("INSERT INTO parts VALUES ('part-torn.parquet', 'x', 9, 0)")
db.execute("INSERT INTO entries(part, point_hash, replicate, seed, status) "
           "VALUES ('part-torn.parquet', 'b', 0, 1, 'ok')")
os._exit(9)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    fresh = PointStore(tmp_path)
    assert fresh.entries() == [("a", 0)]
    assert fresh.done([("a", 0, 1), ("b", 0, 1)]) == {("a", 0, 1)}
    fresh.append([{"point_hash": "b", "replicate": 0, "seed": 1, "status": "ok"}])
    assert PointStore(tmp_path).done([("b", 0, 1)]) == {("b", 0, 1)}


def test_a_dead_writers_temporary_file_is_removed(tmp_path):
    store = PointStore(tmp_path)
    store.append([{"point_hash": "a", "replicate": 0, "seed": 1, "status": "ok"}])
    dead = store.parts_dir / ".part-x.parquet.999999999.tmp"   # no such pid
    mine = store.parts_dir / f".part-y.parquet.{os.getpid()}.tmp"
    dead.write_bytes(b"half")
    mine.write_bytes(b"half")
    fresh = PointStore(tmp_path)
    assert fresh.done([("a", 0, 1)]) == {("a", 0, 1)}
    assert not dead.exists() and mine.exists()


def test_a_full_disk_is_one_line_with_what_was_saved(tmp_path, monkeypatch):
    store = PointStore(tmp_path)
    store.append([{"point_hash": "a", "replicate": 0, "seed": 1, "status": "ok"}])

    def full(self, path, *a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    with pytest.raises(SweepError, match=r"No space left on device\): 1 rows are saved there; "
                                         "free space .* run the same command to resume"):
        store.append([{"point_hash": "b", "replicate": 0, "seed": 1, "status": "ok"}])
    assert not list(store.parts_dir.glob(".*.tmp"))
    assert PointStore(tmp_path).done([("a", 0, 1), ("b", 0, 1)]) == {("a", 0, 1)}


def test_a_row_of_another_seed_is_not_this_units_row(tmp_path):
    """Another root seed gives the same (point, replicate) another seed: nothing is reused."""
    store = PointStore(tmp_path)
    store.append([{"point_hash": "a", "replicate": 0, "seed": 1, "status": "ok", "rounds": 3}])
    fresh = PointStore(tmp_path)
    assert fresh.done([("a", 0, 2)]) == set()
    assert fresh.rows([("a", 0, 2)]).collect().height == 0
    assert fresh.rows([("a", 0, 1)]).collect().height == 1


def test_planner_calibrates_then_packs_to_target():
    base = core.Params(machine=core.MachineParams(cores=2)).to_dict()
    points = expand(base, {"workload.threads": list(range(1, 41))})
    units = units_of(points, 2, 0)
    planner = ChunkPlanner(units, {p.point_hash: p for p in points}, target_s=10.0, cpus=2)
    first = planner.next_chunk()
    assert len(first) == 2 and len({u.point_hash for u in first}) == 1  # one point's seeds
    # Measured: 0.01 s per (thread x simulated second).
    planner.observe(sum(planner.cost(u) for u in first), 0.01 * sum(planner.cost(u)
                                                                      for u in first))
    chunks = [first]
    while planner.pending:
        chunks.append(planner.next_chunk())
    assert sum(len(c) for c in chunks) == len(units)
    flat = [u for c in chunks for u in c]
    assert sorted(flat, key=units.index) == units  # nothing lost or repeated
    costs = [planner.cost(u) for u in flat]
    assert costs == sorted(costs, reverse=True)  # longest first
    est = [sum(planner.cost(u) for u in c) * 0.01 for c in chunks[1:]]
    assert all(e <= 10.0 + 1e-9 or len(c) == 1 for e, c in zip(est, chunks[1:]))
    assert len(chunks) > 3


def test_new_model_version_misses_the_store(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    _, units = _fill_store(tmp_path, cfg)
    _, _, same = app.plan(cfg)
    assert PointStore(tmp_path).done([u.key for u in same]) \
        == {u.key for u in units}
    monkeypatch.setattr(core, "MODEL_VERSION", core.MODEL_VERSION + "+1")
    _, _, bumped = app.plan(cfg)
    assert PointStore(tmp_path).done([u.key for u in bumped]) == set()


@pytest.mark.parametrize("report", [True, False])
def test_report_hook_called_when_present_and_enabled(tmp_path, monkeypatch, report):
    cfg = _cfg(tmp_path, f"output.report={str(report).lower()}")
    _fill_store(tmp_path, cfg)
    calls = []
    mod = types.ModuleType("sweep.report")
    mod.__spec__ = importlib.machinery.ModuleSpec("sweep.report", loader=None)
    mod.write_report = lambda run_dir, shown_as: calls.append((run_dir, shown_as))
    monkeypatch.setitem(sys.modules, "sweep.report", mod)
    assert app.run_sweep(cfg) == 0  # everything cached: no Ray needed
    run_dir = (tmp_path / "smoke" / "latest").resolve()
    # The report is made in the run directory before it is published under its name.
    partial = run_dir.parent / f".{run_dir.name}.partial"
    assert calls == ([(partial, run_dir)] if report else [])
    assert pl.read_parquet(run_dir / "points.parquet").height == 8


def test_one_bad_replicate_does_not_fail_the_others(monkeypatch):
    monkeypatch.setenv("SWEEP_SYNTHETIC_FAIL", "seed_parity=1")
    params = core.Params(machine=core.MachineParams(cores=2)).to_dict()
    rows = run_chunk("synthetic", [("h", params, [(0, 10), (1, 11), (2, 12)])])
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error_type"] == "SyntheticFailure" and rows[1]["rounds"] is None
    assert rows[0]["rounds"] is not None and rows[0]["error"] is None
    assert [r["replicate"] for r in rows] == [0, 1, 2] and rows[2]["seed"] == 12


def test_runs_another_sweep_finished_before_our_claim_are_not_computed_again(tmp_path,
                                                                            monkeypatch):
    """Two sweeps at once: the other one planned, computed, committed and released two runs
    while this one was between its own plan and its claim (Ray starting, say). This one's
    claim then finds no live claim on them, and must find their rows instead."""
    cfg = _cfg(tmp_path)
    _, points, units = app.plan(cfg)
    real_claim = PointStore.claim

    def claim_after_the_other_sweep(self, keys):
        if not PointStore(tmp_path).done([u.key for u in units[:2]]):
            store_synthetic_rows(tmp_path, points, units[:2])
        return real_claim(self, keys)
    monkeypatch.setattr(PointStore, "claim", claim_after_the_other_sweep)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert app.run_sweep(cfg) == 0
    db = PointStore(tmp_path).db()
    counts = db.execute("SELECT point_hash, replicate, COUNT(*) FROM entries "
                        "GROUP BY point_hash, replicate").fetchall()
    assert len(counts) == len(units) and all(n == 1 for _, _, n in counts)


def test_rows_computed_outside_ray_start_no_ray(tmp_path):
    """run_chunk outside a Ray worker (python -m sweep.point, these tests) asks Ray for the
    node only when Ray runs: asking starts a local Ray instance and leaves it running."""
    import ray
    _fill_store(tmp_path, _cfg(tmp_path))
    assert not ray.is_initialized()
