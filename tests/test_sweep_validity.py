"""sweep/validity.py: the validity tables from a run directory (no simulation)."""

from __future__ import annotations

import polars as pl
import pytest

from sweep.errors import SweepError
from sweep.validity import main, validity_tables


def _agg(tmp_path, rows):
    pl.DataFrame(rows).write_csv(tmp_path / "aggregate.csv")
    return tmp_path


def test_file_thrash_rows_beside_the_published_ones_scaled_to_600_s(tmp_path):
    run = _agg(tmp_path, [{
        "scenario": "seed_thrash", "policy": "baseline", "n_ok": 3,
        "rounds_mean": 4000.0, "rounds_ci95": 100.0, "throughput_rounds_s_mean": 40.0,
        "throughput_rounds_s_ci95": 1.0, "miss_drop_pct_mean": 10.0,
        "miss_drop_pct_ci95": 2.0, "retry_mmap_drop_mean": 200_000.0,
        "retry_mmap_drop_ci95": None, "retry_io_miss_mean": 20_000.0,
        "retry_io_miss_ci95": None, "drops_per_round_mean": 50.0,
        "drops_per_round_ci95": None, "misses_per_round_mean": 5.0,
        "misses_per_round_ci95": None, "min_thread_rounds_mean": 7.0,
        "min_thread_rounds_ci95": None, "sim_time_s_mean": 100.0,
        "swapin_rounds_mean": None, "launch_ms_mean": None}])
    md = validity_tables(run)
    assert "| published baseline_run1 |  | 22,711 | 37.9 | 45.0 | 970,078 | 436,956 | 42.7 |" in md
    # 4000 rounds in 100 s measured is 24,000 per 600 s; the CI scales with it
    assert "| model baseline | 3 | 24,000 ± 600 | 40.0 ± 1 | 10.0 ± 2 | 1,200,000 |" in md
    assert "scaled to the published 600 s" in md


def test_a_run_without_presets_or_files_is_one_line(tmp_path, capsys):
    with pytest.raises(SweepError, match="aggregate.csv: missing"):
        validity_tables(tmp_path)
    _agg(tmp_path, [{"policy": "baseline", "n_ok": 1}])
    assert main([str(tmp_path)]) == 2
    assert "no `scenario` axis" in capsys.readouterr().err
